"""Performance baselines: one import for what makes two runs comparable, how they are stored, and the verdict.

The work is split by job; this module gathers the public names so callers need one import:

- ``fingerprint.py``: what a measurement contributes (raw timing samples, deterministic figures)
  and the fingerprint that decides what is comparable (device fields only for timings).
- ``store.py``: JSON files under ``baselines/``, atomic saves, ``BaselineError`` for a corrupt or
  foreign file.
- ``verdicts.py``: the statistics (effect beyond a threshold and a one-sided paired test, bootstrap
  interval, control decoder) and ``compare``, the verdict of a run against its stored baseline.
- ``ab.py``: the same-job comparison of the decoder under test with the base branch's decoder,
  timed interleaved in one run: the timing verdict that does not depend on the machine.
"""
from __future__ import annotations

from .fingerprint import (
    TIMING_ONLY_FIELDS,
    deterministic_figures,
    differing_fields,
    fingerprint,
    fingerprint_key,
    model_digest,
    prompt_digest,
    timing_samples,
)
from .store import FORMAT, VERSION, BaselineError, StoredBaseline, baseline_file, load_baselines, save_baseline
from .verdicts import (
    ALPHA,
    CONFIDENCE,
    CONTROL_METRICS,
    DRIFT_LIMIT,
    LOOSE_TOLERANCE,
    RERECORD,
    STRUCTURAL_FIGURES,
    TIMING_METRICS,
    Comparison,
    FigureVerdict,
    Metric,
    MetricVerdict,
    compare,
    compare_deterministic,
    compare_samples,
    compare_timing,
)

__all__ = [
    "ALPHA", "CONFIDENCE", "CONTROL_METRICS", "DRIFT_LIMIT", "FORMAT", "LOOSE_TOLERANCE", "RERECORD",
    "STRUCTURAL_FIGURES", "TIMING_METRICS", "TIMING_ONLY_FIELDS", "VERSION", "BaselineError", "Comparison",
    "FigureVerdict", "Metric", "MetricVerdict", "StoredBaseline", "baseline_file", "compare", "compare_deterministic",
    "compare_samples", "compare_timing", "deterministic_figures", "differing_fields", "fingerprint",
    "fingerprint_key", "load_baselines", "model_digest", "prompt_digest", "save_baseline", "timing_samples",
]
