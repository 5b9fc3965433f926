"""Check 2, the sampling law: sampled output follows the target's distribution.

The rejection step in closed form and by Monte Carlo, the per-token sampling-law tests on table
pairs (TV 0.02 per setting), the joint sequence law on transformer pairs, seeds and precision,
the mutant companions that each test must reject, and the sweep harness behind the stated rates.
"""
