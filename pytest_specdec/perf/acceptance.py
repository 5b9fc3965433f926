"""Acceptance per request: each timed decode's own alpha and acceptance rate, and their distribution.

The pooled alpha A / (A + R) sums counts over every request, so a few requests whose draft is
rejected at almost every step hide behind many easy ones. Here each request (one timed decode of
one prompt) gets its own alpha_i = A_i / (A_i + R_i) and acceptance rate A_i / drafted_i, and the
report shows their distribution: minimum, quartiles, maximum, a histogram over [0, 1] and the
worst request with its prompt. A request that judged no draft token (no step drafted anything) has
no alpha and is counted apart. Pure functions over ``PerfSamples``; no torch.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

BINS = 10  # histogram bins of width 0.1 over [0, 1]


@dataclass(frozen=True)
class RequestAcceptance:
    """One request: its index among the timed decodes, its prompt's index (None if unknown) and its figures."""

    index: int
    prompt: int | None
    accepted: int
    rejections: int
    drafted: int

    @property
    def alpha(self) -> float:
        judged = self.accepted + self.rejections
        return self.accepted / judged if judged else math.nan

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else math.nan


def per_request(samples: Any, prompts: int | None = None) -> list[RequestAcceptance]:
    """Every timed decode of ``samples`` as a request; ``prompts``: how many prompts the runs cycle through (the
    runs are repeat-major, prompt-minor, as ``measure_interleaved`` times them)."""
    out = []
    for i, run in enumerate(samples.runs):
        stats = run.result.stats
        out.append(RequestAcceptance(i, i % prompts if prompts else None, stats.accepted, stats.rejections,
                                     stats.drafted))
    return out


def prompts_of(record: Any) -> int | None:
    """How many prompts a ``PerfRecord``'s runs cycle through, from its protocol's repeat count."""
    repeats = (record.extra.get("protocol") or {}).get("repeats")
    runs = len(record.speculative.runs)
    return runs // repeats if repeats and runs % repeats == 0 else None


def histogram(values: list[float], bins: int = BINS) -> list[int]:
    """Counts of ``values`` in ``bins`` equal bins over [0, 1]; the last bin includes 1."""
    counts = [0] * bins
    for value in values:
        counts[min(int(value * bins), bins - 1)] += 1
    return counts


def quartiles(values: list[float]) -> dict[str, float]:
    """min, q1, median, q3, max (inclusive method: the quartiles of the data themselves)."""
    if not values:
        return {k: math.nan for k in ("min", "q1", "median", "q3", "max")}
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {"min": min(values), "q1": q1, "median": median, "q3": q3, "max": max(values)}


def distribution(record: Any) -> dict[str, Any]:
    """The per-request acceptance of a ``PerfRecord``'s decoder under test, as the report and the JSON show it."""
    requests = per_request(record.speculative, prompts_of(record))
    judged = [r for r in requests if not math.isnan(r.alpha)]
    alphas = [r.alpha for r in judged]
    worst = min(judged, key=lambda r: (r.alpha, r.index), default=None)
    return {
        "requests": len(requests),
        "without_drafts": len(requests) - len(judged),
        "pooled_alpha": record.speculative.alpha_estimate,
        "alpha": quartiles(alphas),
        "acceptance_rate": quartiles([r.acceptance_rate for r in judged if not math.isnan(r.acceptance_rate)]),
        "alpha_histogram": histogram(alphas),
        "worst": None if worst is None else {"request": worst.index, "prompt": worst.prompt, "alpha": worst.alpha,
                                             "accepted": worst.accepted, "rejections": worst.rejections},
        "alpha_per_request": alphas,
    }
