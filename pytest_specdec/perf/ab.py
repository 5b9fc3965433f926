"""Same-job A/B: the decoder under test against the base branch's decoder, timed interleaved in one run.

A stored baseline compares timings only on the machine that recorded it; a hosted runner changes
CPU and speed from job to job. Here the base branch's decoder (``--specdec-base-impl``, imported
from a second checkout or an installed wheel with ``--specdec-base-path``) runs beside the decoder
under test, on the same prompts, alternating which goes first, with the autoregressive baseline
timed alongside both. Run i of each is the same prompt and repeat, so every metric pairs run by
run and whatever the machine does to one, it does to the other: the verdict does not depend on
which machine ran the job.

Gated metrics (``AB_METRICS``), each the head's run over the base's run on the same prompt:
tokens per second (equal, run by run, to the ratio of their speedups over the autoregressive
baseline), TTFT and TPOT. Single decodes on a CPU vary by 15-20% from run to run even on a quiet
machine, more than a 10% slower target pass moves TTFT, so TTFT is judged on more but shorter
runs: after the main loop, head and base decode ``FIRST_TOKEN_TOKENS`` tokens of every prompt
``FIRST_TOKEN_REPEATS`` times, alternating (96 pairs on the perf tests' 8 prompts, for about the
cost of 4 full decodes each). A regression needs the median ratio worse than ``THRESHOLD`` and a
one-sided Wilcoxon signed-rank p below ``ALPHA`` on the logarithms of the ratios (baselines/verdicts.py).
Both were chosen on measured data; docs/ci.md gives the detection curve and the false alarms.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from .baselines.store import json_safe
from .baselines.verdicts import Metric, MetricVerdict, compare_samples
from .interleaved import measure_interleaved

THRESHOLD = 0.03  # relative worsening of the median run-by-run ratio that counts as a regression
ALPHA = 0.001  # one-sided significance level of the paired test, per metric
STATUS = "same-job A/B against the base decoder"
FIRST_TOKEN_TOKENS = 2  # the short runs TTFT is judged on: prefill, first token, one step
FIRST_TOKEN_REPEATS = 12
AB_METRICS = (
    Metric("tokens_per_s", False, THRESHOLD, label="tokens/s over the base decoder's, per run (= speedup ratio)"),
    Metric("ttft", True, THRESHOLD, label="TTFT over the base decoder's, per run"),
    Metric("tpot", True, THRESHOLD, label="TPOT over the base decoder's, per run"),
)


def _finite(value: float) -> bool:
    return not math.isnan(value) and not math.isinf(value) and value > 0


def paired_samples(head: Any, base: Any, metric: str) -> tuple[list[float], list[float]]:
    """(base, head) values of ``metric`` for the runs where both are finite and positive, in run order."""
    pairs = [(getattr(b, metric), getattr(h, metric)) for h, b in zip(head.runs, base.runs, strict=True)]
    kept = [(b, h) for b, h in pairs if _finite(b) and _finite(h)]
    return [b for b, _ in kept], [h for _, h in kept]


@dataclass(frozen=True)
class ABComparison:
    """The verdict of the decoder under test against the base decoder timed in the same run."""

    measurement: str
    base: str  # what was compared with: the base decoder's spec and where it came from
    timing: tuple[MetricVerdict, ...]
    speedup: float  # the decoder under test over the autoregressive baseline, this run
    base_speedup: float  # the base decoder over the same baseline, this run

    @property
    def regressions(self) -> list[MetricVerdict]:
        return [m for m in self.timing if m.verdict == "regressed"]

    @property
    def failed(self) -> bool:
        return bool(self.regressions)

    @property
    def note(self) -> str:
        return (f"speedup over the autoregressive baseline {self.speedup:.3f}x, base decoder "
                f"{self.base_speedup:.3f}x; timed interleaved in this run, so it holds on any machine")

    def message(self) -> str:
        lines = [f"specdec performance regression in {self.measurement} against the base decoder {self.base}, "
                 "timed interleaved in this run (same prompts, alternating order)"]
        lines += [f"  {m.evidence()}" for m in self.regressions]
        lines.append(f"  {self.note}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """The shape of a stored-baseline ``Comparison.as_dict`` so the summary and the report list it alike."""
        return json_safe({
            "measurement": self.measurement,
            "status": STATUS,
            "failed": self.failed,
            "baseline": {"path": self.base, "key": "same job", "saved": "this run"},
            "differing": {},
            "timing": [vars(m) | {"interval": list(m.interval), "n": list(m.n)} for m in self.timing],
            "deterministic": [],
            "note": self.note,
            "speedup": self.speedup,
            "base_speedup": self.base_speedup,
        })


def measure_first_tokens(timer: Any, head: Any, base: Any, prompts: list[Any],
                         generate_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The short runs TTFT is judged on: head and base alternating, ``FIRST_TOKEN_REPEATS`` times per prompt."""
    kwargs = {**generate_kwargs, "max_new_tokens": FIRST_TOKEN_TOKENS}
    return measure_interleaved(timer, {"speculative": head, "base": base}, prompts, repeats=FIRST_TOKEN_REPEATS,
                               warmup=0, generate_kwargs=kwargs, alternate=("speculative", "base"))


def sides(record: Any, metric: str) -> tuple[Any, Any]:
    short = record.first_tokens
    if metric == "ttft" and short:
        return short["speculative"], short["base"]
    return record.speculative, record.base


def compare_ab(record: Any, base: str, metrics: tuple[Metric, ...] = AB_METRICS) -> ABComparison:
    """Judge ``record.speculative`` (the head) against ``record.base``, run by run (TTFT on the short runs)."""
    if record.base is None:
        raise ValueError(f"{record.name} was measured without a base decoder: nothing to compare")
    verdicts = []
    for metric in metrics:
        old, new = paired_samples(*sides(record, metric.name), metric.name)
        verdicts.append(compare_samples(metric, old, new, paired=True, alpha=ALPHA))
    base_speedup = record.base.tokens_per_s / record.baseline.tokens_per_s
    return ABComparison(record.name, base, tuple(verdicts), record.speedup, base_speedup)


def median_ratio(record: Any, metric: str) -> float:
    """Median run-by-run head / base ratio of ``metric`` (for benchmarks and the report)."""
    old, new = paired_samples(*sides(record, metric), metric)
    return statistics.median(n / o for o, n in zip(old, new, strict=True)) if old else math.nan
