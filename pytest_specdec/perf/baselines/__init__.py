"""Performance baselines: what makes two runs comparable, how they are stored, and the verdict.

- ``fingerprint``: what a measurement contributes (raw timing samples, deterministic figures)
  and the fingerprint that decides what is comparable (device fields only for timings).
- ``store``: JSON files under ``baselines/``, atomic saves (``atomic_write_text``, used by every
  writer of the plugin), ``BaselineError`` for a corrupt or foreign file.
- ``verdicts``: the statistics (effect beyond a threshold and a one-sided paired test, bootstrap
  interval, control decoder) and ``compare``, the verdict of a run against its stored baseline.

The same-job comparison with the base branch's decoder is ``perf.ab``. This package gathers the
public names so callers need one import (the flat layout's ``pytest_specdec.baselines``).
May import: ``perf``'s own modules, ``reference_impl`` and ``pytest_specdec.options``.
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
