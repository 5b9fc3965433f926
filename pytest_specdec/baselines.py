"""Performance baselines: what makes two runs comparable, how they are stored, and the verdict.

- ``fingerprint``: the fields that decide comparability (the decoder's name, device, library
  versions, model pair and weights, dtype, gamma, sampling, prompts, protocol). Device fields
  decide only whether *timings* compare; deterministic figures (forward passes, acceptance)
  compare whenever the software, models and protocol match.
- ``load_baselines`` / ``save_baseline``: JSON files under ``baselines/``, one per model pair,
  entries keyed by a fingerprint digest. Saving is atomic and keeps every other entry; a corrupt
  or foreign file is a ``BaselineError`` that names the file and the fix.
- ``compare``: every timing metric has a direction and a threshold. A regression needs the
  effect beyond the threshold *and* a one-sided p-value below ``ALPHA`` on the raw samples. A
  comparable baseline ran the same prompts and repeats in the same order, so samples pair run by
  run: the effect is the median of new / stored per prompt and the test a Wilcoxon signed-rank
  test on their logarithms, and how much prompts differ from each other (length, acceptance) no
  longer hides a regression (unpaired samples fall back to the ratio of medians and Mann-Whitney
  U). A comparison whose bootstrap interval still straddles the
  threshold is ``inconclusive``. Timings are judged against a control, the baseline decoder
  timed interleaved in the same run: an absolute timing that got worse along with the control's
  is the machine, not the code, and no ratio is trusted when the control moved by more than
  ``DRIFT_LIMIT``. Deterministic figures are compared exactly (or with a tight tolerance where
  numerics legitimately differ).

On identically distributed samples the gate flags a metric with probability at most ``ALPHA``
(the effect threshold cuts it further); tests/test_baselines.py measures it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .report import atomic_write_text

FORMAT = "pytest-specdec-baselines"
VERSION = 1
ALPHA = 0.01  # one-sided significance level of a timing regression (and of an improvement)
CONFIDENCE = 0.95  # two-sided bootstrap interval of the ratio of medians
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 1729
DRIFT_LIMIT = 0.25  # the control decoder's median latency moved more than this: conditions differ too much
TIMING_ONLY_FIELDS = ("device", "torch_threads", "cuda")
RERECORD = "re-record after an intended change: pytest -m specdec_perf --specdec-save-baseline"


class BaselineError(Exception):
    """A baseline file is corrupt, foreign or from a newer format; the message names the file and the fix."""


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


# --- what is measured ---------------------------------------------------------------------------


def timing_samples(record: Any) -> dict[str, list[float]]:
    """Raw per-run samples of every timing metric, ratios paired run by run (same prompt, adjacent in time)."""
    spec, base = record.speculative.runs, record.baseline.runs

    def clean(values: Iterator[float]) -> list[float]:
        return [v for v in values if not math.isnan(v) and not math.isinf(v)]

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else math.nan

    return {
        "speedup": clean(ratio(s.tokens_per_s, b.tokens_per_s) for s, b in zip(spec, base, strict=True)),
        "ttft_ratio": clean(ratio(s.ttft, b.ttft) for s, b in zip(spec, base, strict=True)),
        "tpot_ratio": clean(ratio(s.tpot, b.tpot) for s, b in zip(spec, base, strict=True)),
        "ttft_s": clean(s.ttft for s in spec),
        "tpot_s": clean(s.tpot for s in spec),
        "tokens_per_s": clean(s.tokens_per_s for s in spec),
        "baseline_ttft_s": clean(b.ttft for b in base),
        "baseline_tpot_s": clean(b.tpot for b in base),
        "baseline_tokens_per_s": clean(b.tokens_per_s for b in base),
        "baseline_latency_s": clean(b.latency for b in base),
    }


def deterministic_figures(record: Any) -> dict[str, Any]:
    """Figures that do not depend on machine speed, per request or per token (independent of the repeat count)."""
    spec, base = record.speculative, record.baseline
    requests = max(len(spec.runs), 1)
    figures: dict[str, Any] = {
        "tokens_per_request": spec.total_tokens / requests,
        "alpha_estimate": spec.alpha_estimate,
        "mean_accepted_length": spec.mean_accepted_length,
        "target_forwards_per_token": spec.per_token("target_forwards"),
        "draft_forwards_per_token": spec.per_token("draft_forwards"),
        "target_tokens_fed_per_token": spec.per_token("target_tokens_fed"),
        "draft_tokens_fed_per_token": spec.per_token("draft_tokens_fed"),
        "prefills_per_request": (spec.count("target_prefills") + spec.count("draft_prefills")) / requests,
        "forwards_before_first_token": spec.count("forwards_before_first_token") / requests,
        "acceptance_by_position": list(spec.acceptance_by_position),
        "baseline.target_forwards_per_token": base.per_token("target_forwards"),
        "baseline.forwards_before_first_token": base.count("forwards_before_first_token") / max(len(base.runs), 1),
    }
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in figures.items()}


# --- fingerprint ----------------------------------------------------------------------------------


def model_digest(model: Any) -> str:
    """A short digest of a model's config (paths left out) and a strided sample of every parameter."""
    import torch

    digest = hashlib.sha256(type(model).__name__.encode())
    config = getattr(model, "config", None)
    if config is not None:
        skip = ("transformers_version", "dtype", "torch_dtype")
        settings = {k: v for k, v in config.to_dict().items() if not k.startswith("_") and k not in skip}
        digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, param in model.named_parameters():
            digest.update(f"{name}{tuple(param.shape)}".encode())
            if param.device.type != "meta":
                flat = param.detach().reshape(-1)
                sample = flat[:: max(1, flat.numel() // 256)][:256].to("cpu", torch.float64)
                digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def prompt_digest(prompts: list[Any]) -> str:
    """'8 prompts, sha 1a2b...': what prompts were measured, without storing them."""
    ids = [prompt.reshape(-1).tolist() for prompt in prompts]
    return f"{len(ids)} prompts, sha {hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:12]}"


def fingerprint(environment: dict[str, Any], pair: dict[str, Any], measurement: dict[str, Any]) -> dict[str, Any]:
    """The fields that decide what is comparable (all JSON scalars). ``pair``: ids, revision, digests, dtype."""
    gamma = measurement.get("gamma")
    return {
        "measurement": measurement["name"],
        "decoder": measurement["decoder"],
        "device": environment["device"],
        "torch_threads": environment.get("torch_threads"),
        "cuda": environment.get("cuda"),
        "torch": environment["torch"],
        "transformers": environment["transformers"],
        "target": pair["target"],
        "draft": pair["draft"],
        "revision": pair.get("revision"),
        "target_digest": pair["target_digest"],
        "draft_digest": pair["draft_digest"],
        "dtype": pair["dtype"],
        "gamma": "decoder default" if gamma is None else gamma,
        "sampling": measurement["sampling"],
        "prompts": measurement["prompts"],
        "max_new_tokens": measurement["max_new_tokens"],
        "repeats": measurement["repeats"],
    }


def fingerprint_key(fp: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]


def differing_fields(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (stored.get(k), new.get(k)) for k in sorted(set(stored) | set(new)) if stored.get(k) != new.get(k)}


# --- storage --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredBaseline:
    path: Path
    key: str
    fingerprint: dict[str, Any]
    timing: dict[str, list[float]]
    deterministic: dict[str, Any]
    saved: str = ""
    decoder: str = ""


def baseline_file(directory: Path, pair_label: str) -> Path:
    """One file per model pair: baselines/<pair>.json (a name safe on every file system)."""
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", pair_label).strip("-.") or "pair"
    return directory / f"{slug}.json"


def _read(path: Path) -> dict[str, Any]:
    fix = (f"restore it (git checkout -- {path}) or delete it and record again with --specdec-save-baseline")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise BaselineError(f"baseline file {path} is not UTF-8 text ({exc}); {fix}") from None
    except json.JSONDecodeError as exc:
        raise BaselineError(f"baseline file {path} is corrupt: not valid JSON ({exc}); {fix}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise BaselineError(
            f"{path} is not a pytest-specdec baseline file (format {found!r}, expected {FORMAT!r}); the baseline "
            f"folder must hold only files written by --specdec-save-baseline: move it out, or choose another "
            f"folder with --specdec-baseline-dir"
        )
    version = document.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise BaselineError(f"{path} has format version {version!r}; this pytest-specdec reads version {VERSION}: "
                            "upgrade pytest-specdec, or record the baseline again with this version")
    entries = document.get("entries")
    bad = not isinstance(entries, dict) or any(
        not isinstance(e, dict) or not isinstance(e.get("fingerprint"), dict) or not isinstance(e.get("timing"), dict)
        or not isinstance(e.get("deterministic"), dict) for e in entries.values())
    if bad:
        raise BaselineError(f"baseline file {path} is corrupt: an entry lacks fingerprint, timing or deterministic; "
                            f"{fix}")
    return document


def load_baselines(directory: Path) -> list[StoredBaseline]:
    """Every entry of every ``*.json`` file in ``directory`` (none if the folder does not exist)."""
    if not directory.is_dir():
        return []
    stored = []
    for path in sorted(directory.glob("*.json")):
        for key, entry in _read(path)["entries"].items():
            stored.append(StoredBaseline(path, key, entry["fingerprint"], entry["timing"], entry["deterministic"],
                                         entry.get("saved", ""), entry.get("decoder", "")))
    return stored


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise read-modify-write of baseline files between processes (POSIX; a no-op elsewhere)."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: atomic replace still guarantees whole files
        yield
        return
    with open(directory / ".lock", "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def save_baseline(path: Path, fp: dict[str, Any], timing: dict[str, list[float]], deterministic: dict[str, Any],
                  *, decoder: str, summary: dict[str, Any] | None = None) -> str:
    """Write or replace the entry for ``fp`` in ``path``, keeping every other entry; returns its key."""
    key = fingerprint_key(fp)
    with _locked(path.parent):
        document = _read(path) if path.exists() else {"format": FORMAT, "version": VERSION, "entries": {}}
        document["entries"][key] = _json_safe({
            "fingerprint": fp,
            "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "decoder": decoder,
            "summary": summary or {},
            "timing": {name: [round(v, 9) for v in values] for name, values in timing.items()},
            "deterministic": deterministic,
        })
        document["version"] = VERSION
        atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True) + "\n")
    return key


# --- comparison -----------------------------------------------------------------------------------


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
                f"threshold {self.threshold:.0%}; {self.test} one-sided p={self.pvalue:.2g} (alpha {ALPHA}); "
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


def compare_samples(metric: Metric, old: list[float], new: list[float], *, paired: bool = False) -> MetricVerdict:
    """Effect beyond the threshold and significance on the raw samples, or inconclusive.

    ``paired``: sample i of ``old`` and ``new`` measured the same prompt (the same protocol, so the
    same prompts and repeats in the same order); used only when both sides have as many positive
    samples. The effect is then the median of the run-by-run ratios, else the ratio of medians.
    """
    if len(old) < 3 or len(new) < 3:
        return MetricVerdict(metric.name, "inconclusive", math.nan, math.nan, math.nan, (math.nan, math.nan),
                             math.nan, metric.threshold, (len(old), len(new)), "fewer than 3 samples on one side")
    paired = paired and len(old) == len(new) and min(old) > 0 and min(new) > 0
    m_old, m_new = statistics.median(old), statistics.median(new)
    ratio = statistics.median(a / b for a, b in zip(new, old, strict=True)) if paired else m_new / m_old
    lo, hi = _bootstrap_interval(new, old, paired=paired)
    p_worse = _one_sided_p(new, old, paired=paired, larger=metric.lower_is_better)
    p_better = _one_sided_p(new, old, paired=paired, larger=not metric.lower_is_better)
    worse_by = ratio - 1 if metric.lower_is_better else 1 - ratio
    worst_case = hi - 1 if metric.lower_is_better else 1 - lo
    if worse_by > metric.threshold and p_worse < ALPHA:
        verdict = "regressed"
    elif -worse_by > metric.threshold and p_better < ALPHA:
        verdict = "improved"
    elif worst_case <= metric.threshold:
        verdict = "ok"
    else:
        verdict = "inconclusive"
    return MetricVerdict(metric.name, verdict, m_old, m_new, worse_by, (lo, hi), p_worse, metric.threshold,
                         (len(old), len(new)), paired=paired)


def _with_control(verdict: MetricVerdict, control: MetricVerdict | None, drift: float) -> MetricVerdict:
    """Downgrade a regression to inconclusive where the machine, not the code, explains it."""
    from dataclasses import replace

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
        return _json_safe({
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
