"""Lossless-ness statistics: the exact laws a correct decoder follows, and the tests against them.

- ``stats``: goodness of fit (chi-square with pooled bins, G-test), power and detectable TV, the
  exact laws of the rejection step and of short sequences.
- ``sampling_law``: every emitted token against the target's exact next-token law on table pairs,
  and the reported acceptance against its exact law.
- ``sample_pool``: many sampled decodes, planned by seed, on spawned workers.
- ``batched``: batched decoding as a source of independent samples.
- ``pit``: the sequential probability integral transform, for large vocabularies (serving engines).
- ``numerics``: the near-tie judge for greedy divergences in low precision.

May import: ``protocol``, ``perf``, ``reference_impl`` and ``pytest_specdec.options``.
"""
