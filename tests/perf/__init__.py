"""Check 3, performance and the gate: timings side by side with the baseline, stored baselines, same-job A/B.

Wall-clock figures are never asserted here; deterministic counts and same-run ratios are.
"""
