"""Verdicts on timings and deterministic figures: the statistics of the performance gate.

Every timing metric has a direction and a threshold. A regression needs the effect beyond the
threshold *and* a one-sided p-value below ``ALPHA`` on the raw samples. Two sides that ran the
same prompts and repeats in the same order pair run by run: the effect is the median of new /
old per prompt and the test a Wilcoxon signed-rank test on their logarithms, so how much prompts
differ from each other (length, acceptance) does not hide a regression (unpaired samples fall
back to the ratio of medians and Mann-Whitney U). A comparison whose bootstrap interval still
straddles the threshold is ``inconclusive``.

``compare`` judges a run against the stored baseline of its fingerprint. Timings there are
judged against a control, the baseline decoder timed interleaved in the same run: an absolute
timing that got worse along with the control's is the machine, not the code, and no ratio is
trusted when the control moved by more than ``DRIFT_LIMIT``. Deterministic figures are compared
exactly (or with a tight tolerance where numerics legitimately differ).

On identically distributed samples the gate flags a metric with probability at most ``ALPHA``
(the effect threshold cuts it further); tests/perf/test_baselines.py measures it.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Any

from .fingerprint import TIMING_ONLY_FIELDS, differing_fields
from .store import StoredBaseline, json_safe

ALPHA = 0.01  # one-sided significance level of a timing regression (and of an improvement)
CONFIDENCE = 0.95  # two-sided bootstrap interval of the ratio of medians
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 1729
DRIFT_LIMIT = 0.25  # the control decoder's median latency moved more than this: conditions differ too much
RERECORD = "re-record after an intended change: pytest -m specdec_perf --specdec-save-baseline"


@dataclass(frozen=True)
class Metric:
    name: str
    lower_is_better: bool
    threshold: float  # relative worsening of the median that counts as a regression
    control: str | None = None  # for absolute timings: the baseline decoder's same metric
    label: str = ""


TIMING_METRICS = (
    Metric("speedup", False, 0.10, label="tok/s over the baseline decoder's, per run"),
    Metric("ttft_ratio", True, 0.10, label="TTFT over the baseline decoder's, per run"),
    Metric("tpot_ratio", True, 0.10, label="TPOT over the baseline decoder's, per run"),
    Metric("ttft_s", True, 0.15, control="baseline_ttft_s", label="TTFT, seconds"),
    Metric("tpot_s", True, 0.15, control="baseline_tpot_s", label="TPOT, seconds"),
    Metric("tokens_per_s", False, 0.15, control="baseline_tokens_per_s", label="tokens per wall-clock second"),
)
CONTROL_METRICS = {"baseline_ttft_s": True, "baseline_tpot_s": True, "baseline_tokens_per_s": False,
                   "baseline_latency_s": True}
STRUCTURAL_FIGURES = ("prefills_per_request", "forwards_before_first_token", "tokens_per_request",
                      "baseline.target_forwards_per_token", "baseline.forwards_before_first_token")
LOOSE_TOLERANCE = 0.02  # relative, where numerics legitimately differ (GPU, half precision, another device)


@dataclass(frozen=True)
class MetricVerdict:
    metric: str
    verdict: str  # "ok", "improved", "regressed", "inconclusive"
    baseline: float  # median of the stored samples
    new: float
    worse_by: float  # relative worsening of the median (negative: better)
    interval: tuple[float, float]  # bootstrap interval of new median / stored median
    pvalue: float  # one-sided Mann-Whitney U: new worse than stored
    threshold: float
    n: tuple[int, int]  # (stored, new) sample counts
    note: str = ""
    paired: bool = False  # run-by-run (same prompt) comparison: Wilcoxon signed-rank; else Mann-Whitney U
    alpha: float = ALPHA  # the one-sided significance level the verdict used

    @property
    def test(self) -> str:
        return "Wilcoxon signed-rank (paired by prompt)" if self.paired else "Mann-Whitney U"

    @property
    def effect(self) -> str:
        return "the median run-by-run ratio" if self.paired else "the ratio of medians"

    def evidence(self) -> str:
        lo, hi = self.interval
        text = (f"{self.metric}: baseline median {self.baseline:.4g} (n={self.n[0]}) -> now {self.new:.4g} "
                f"(n={self.n[1]}): {abs(self.worse_by):.1%} {'worse' if self.worse_by > 0 else 'better'}, "
                f"threshold {self.threshold:.0%}; {self.test} one-sided p={self.pvalue:.2g} (alpha {self.alpha}); "
                f"{CONFIDENCE:.0%} bootstrap interval of {self.effect} [{lo:.3f}, {hi:.3f}]")
        return f"{text}; {self.note}" if self.note else text


@dataclass(frozen=True)
class FigureVerdict:
    figure: str
    baseline: Any
    new: Any
    tolerance: float  # relative; 0 = exact
    ok: bool

    def evidence(self) -> str:
        rule = "must match exactly" if self.tolerance == 0 else f"tolerance {self.tolerance:.0%}"
        return (f"{self.figure}: baseline {self.baseline} -> now {self.new} ({rule}; a deterministic figure: "
                "forward passes and acceptance do not depend on machine speed)")


def _bootstrap_interval(new: list[float], old: list[float], *, paired: bool) -> tuple[float, float]:
    """Bootstrap interval of new / stored: the median of run-by-run ratios (paired) or the ratio of medians."""
    import numpy as np

    rng = np.random.default_rng(BOOTSTRAP_SEED)
    a, b = np.asarray(new), np.asarray(old)
    if paired:
        ratios = a / b
        ratios = np.median(ratios[rng.integers(0, ratios.size, (BOOTSTRAP_RESAMPLES, ratios.size))], axis=1)
    else:
        ma = np.median(a[rng.integers(0, a.size, (BOOTSTRAP_RESAMPLES, a.size))], axis=1)
        mb = np.median(b[rng.integers(0, b.size, (BOOTSTRAP_RESAMPLES, b.size))], axis=1)
        ratios = ma / mb
    tail = (1 - CONFIDENCE) / 2
    return float(np.quantile(ratios, tail)), float(np.quantile(ratios, 1 - tail))


def _one_sided_p(new: list[float], old: list[float], *, paired: bool, larger: bool) -> float:
    """p-value that ``new`` is larger (``larger``) or smaller than ``old``.

    Paired: Wilcoxon signed-rank on log(new_i / old_i), sample i of both being the same prompt and
    repeat of one protocol, so what differs between prompts (their length, their acceptance)
    cancels. Unpaired: Mann-Whitney U.
    """
    from scipy.stats import mannwhitneyu, wilcoxon

    alternative = "greater" if larger else "less"
    if not paired:
        return float(mannwhitneyu(new, old, alternative=alternative).pvalue)
    logs = [math.log(a / b) for a, b in zip(new, old, strict=True)]
    if not any(logs):
        return 1.0
    return float(wilcoxon(logs, alternative=alternative).pvalue)


def compare_samples(metric: Metric, old: list[float], new: list[float], *, paired: bool = False,
                    alpha: float = ALPHA) -> MetricVerdict:
    """Effect beyond the threshold and significance on the raw samples, or inconclusive.

    ``paired``: sample i of ``old`` and ``new`` measured the same prompt (the same protocol, so the
    same prompts and repeats in the same order); used only when both sides have as many positive
    samples. The effect is then the median of the run-by-run ratios, else the ratio of medians.
    """
    if len(old) < 3 or len(new) < 3:
        return MetricVerdict(metric.name, "inconclusive", math.nan, math.nan, math.nan, (math.nan, math.nan),
                             math.nan, metric.threshold, (len(old), len(new)), "fewer than 3 samples on one side",
                             alpha=alpha)
    paired = paired and len(old) == len(new) and min(old) > 0 and min(new) > 0
    m_old, m_new = statistics.median(old), statistics.median(new)
    ratio = statistics.median(a / b for a, b in zip(new, old, strict=True)) if paired else m_new / m_old
    lo, hi = _bootstrap_interval(new, old, paired=paired)
    p_worse = _one_sided_p(new, old, paired=paired, larger=metric.lower_is_better)
    p_better = _one_sided_p(new, old, paired=paired, larger=not metric.lower_is_better)
    worse_by = ratio - 1 if metric.lower_is_better else 1 - ratio
    worst_case = hi - 1 if metric.lower_is_better else 1 - lo
    if worse_by > metric.threshold and p_worse < alpha:
        verdict = "regressed"
    elif -worse_by > metric.threshold and p_better < alpha:
        verdict = "improved"
    elif worst_case <= metric.threshold:
        verdict = "ok"
    else:
        verdict = "inconclusive"
    return MetricVerdict(metric.name, verdict, m_old, m_new, worse_by, (lo, hi), p_worse, metric.threshold,
                         (len(old), len(new)), paired=paired, alpha=alpha)


def _with_control(verdict: MetricVerdict, control: MetricVerdict | None, drift: float) -> MetricVerdict:
    """Downgrade a regression to inconclusive where the machine, not the code, explains it."""
    if verdict.verdict != "regressed":
        return verdict
    if control is not None and not control.worse_by <= verdict.threshold / 2:
        return replace(verdict, verdict="inconclusive", note=(
            f"the baseline decoder timed alongside is {control.worse_by:.0%} worse on {control.metric} too: "
            "the machine is slower, not (only) the code"))
    if abs(drift) > DRIFT_LIMIT:
        return replace(verdict, verdict="inconclusive", note=(
            f"the baseline decoder's median latency moved {drift:+.0%} since the baseline was stored: "
            "conditions differ too much for this ratio to be trusted"))
    return verdict


def compare_timing(old: dict[str, list[float]], new: dict[str, list[float]]) -> list[MetricVerdict]:
    """Judge every timing metric; samples pair run by run (a comparable baseline ran the same protocol)."""

    def control_verdict(name: str) -> MetricVerdict:
        return compare_samples(Metric(name, CONTROL_METRICS[name], 0.0), old.get(name, []), new.get(name, []),
                               paired=True)

    latency = control_verdict("baseline_latency_s")
    drift = latency.new / latency.baseline - 1 if latency.baseline and not math.isnan(latency.baseline) else 0.0
    verdicts = []
    for metric in TIMING_METRICS:
        verdict = compare_samples(metric, old.get(metric.name, []), new.get(metric.name, []), paired=True)
        control = control_verdict(metric.control) if metric.control else None
        verdicts.append(_with_control(verdict, control, drift))
    return verdicts


def _matches(old: Any, new: Any, tolerance: float) -> bool:
    if isinstance(old, list) or isinstance(new, list):
        return (isinstance(old, list) and isinstance(new, list) and len(old) == len(new)
                and all(_matches(a, b, tolerance) for a, b in zip(old, new, strict=True)))
    if old is None or new is None:
        return old is None and new is None
    return math.isclose(float(old), float(new), rel_tol=max(tolerance, 1e-9), abs_tol=1e-12)


def compare_deterministic(old: dict[str, Any], new: dict[str, Any], *, exact: bool) -> list[FigureVerdict]:
    """Structural figures exactly; the rest exactly when ``exact``, else within ``LOOSE_TOLERANCE``."""
    verdicts = []
    for name in sorted(set(old) | set(new)):
        tolerance = 0.0 if exact or name in STRUCTURAL_FIGURES else LOOSE_TOLERANCE
        if not exact and name == "acceptance_by_position":
            tolerance = 2 * LOOSE_TOLERANCE
        verdicts.append(FigureVerdict(name, old.get(name), new.get(name), tolerance,
                                      _matches(old.get(name), new.get(name), tolerance)))
    return verdicts


@dataclass(frozen=True)
class Comparison:
    """The verdict of one measurement against the stored baseline."""

    measurement: str
    status: str  # "compared", "deterministic only" (device differs) or "no comparable baseline"
    baseline: StoredBaseline | None = None
    differing: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    timing: tuple[MetricVerdict, ...] = ()
    deterministic: tuple[FigureVerdict, ...] = ()
    note: str = ""

    @property
    def regressions(self) -> list[MetricVerdict | FigureVerdict]:
        return [f for f in self.deterministic if not f.ok] + [m for m in self.timing if m.verdict == "regressed"]

    @property
    def failed(self) -> bool:
        return bool(self.regressions)

    @property
    def inconclusive(self) -> list[MetricVerdict]:
        return [m for m in self.timing if m.verdict == "inconclusive"]

    def differences(self) -> str:
        return "; ".join(f"{k}: stored {a!r}, now {b!r}" for k, a, b in
                         ((k, *pair) for k, pair in self.differing.items())) or "the baseline folder is empty"

    def message(self) -> str:
        """The failure message: each regressed metric with the baseline, the new value and the evidence."""
        where = f"{self.baseline.path} entry {self.baseline.key}" if self.baseline else "none"
        lines = [f"specdec performance regression in {self.measurement}"]
        lines += [f"  {item.evidence()}" for item in self.regressions]
        if self.baseline is not None:
            lines.append(f"baseline: {where}, saved {self.baseline.saved} by {self.baseline.decoder or '?'}")
        lines.append(RERECORD)
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return json_safe({
            "measurement": self.measurement,
            "status": self.status,
            "failed": self.failed,
            "baseline": {"path": str(self.baseline.path), "key": self.baseline.key, "saved": self.baseline.saved}
            if self.baseline else None,
            "differing": {k: list(v) for k, v in self.differing.items()},
            "timing": [vars(m) | {"interval": list(m.interval), "n": list(m.n)} for m in self.timing],
            "deterministic": [vars(f) for f in self.deterministic],
            "note": self.note,
        })


def compare(stored: list[StoredBaseline], fp: dict[str, Any], timing: dict[str, list[float]],
            deterministic: dict[str, Any], *, exact_numerics: bool) -> Comparison:
    """Find the comparable baseline for ``fp`` and judge the new figures against it."""
    name = fp["measurement"]
    same = [s for s in stored if s.fingerprint == fp]
    if same:
        entry = same[-1]
        return Comparison(name, "compared", entry, {}, tuple(compare_timing(entry.timing, timing)),
                          tuple(compare_deterministic(entry.deterministic, deterministic, exact=exact_numerics)))

    def software(f: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in f.items() if k not in TIMING_ONLY_FIELDS}

    similar = [s for s in stored if software(s.fingerprint) == software(fp)]
    if similar:
        entry = similar[-1]
        return Comparison(name, "deterministic only", entry, differing_fields(entry.fingerprint, fp), (),
                          tuple(compare_deterministic(entry.deterministic, deterministic, exact=False)),
                          note="timings not compared: they were stored on another device")
    candidates = [s for s in stored if s.fingerprint.get("measurement") == name] or stored
    closest = min(candidates, key=lambda s: len(differing_fields(s.fingerprint, fp)), default=None)
    differing = differing_fields(closest.fingerprint, fp) if closest else {}
    return Comparison(name, "no comparable baseline", closest, differing)
