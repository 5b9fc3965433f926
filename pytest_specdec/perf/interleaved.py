"""Interleaved performance measurement of several decoders on the same prompts, same run.

Each repeat runs every decoder on every prompt in turn (A B A B ...), after warm-up, so slow
drift of the machine hits all decoders alike and same-run ratios stay meaningful. For a same-job
A/B (the decoder under test against the base branch's), the two swap places on every other
prompt (A B C, B A C, ...), so neither always runs first. Raw samples
are kept; medians summarise them. Deterministic counts (forward passes, acceptance) travel with
the timings, because they do not drift with machine noise.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from .timing import TimedDecode, Timer


@dataclass(frozen=True)
class PerfSamples:
    """Every timed decode of one decoder: raw wall-clock samples plus deterministic counts."""

    decoder: str
    runs: tuple[TimedDecode, ...]

    def samples(self, metric: str) -> list[float]:
        return [value for run in self.runs if not math.isnan(value := getattr(run, metric))]

    def median(self, metric: str) -> float:
        values = self.samples(metric)
        return statistics.median(values) if values else math.nan

    @property
    def total_tokens(self) -> int:
        return sum(run.n_tokens for run in self.runs)

    @property
    def tokens_per_s(self) -> float:
        """Aggregate wall-clock throughput: all tokens over all wall time."""
        wall = sum(run.latency for run in self.runs)
        return self.total_tokens / wall if wall > 0 else math.nan

    def count(self, name: str) -> int:
        return sum(getattr(run.result.stats, name, 0) for run in self.runs)

    @property
    def alpha_estimate(self) -> float:
        accepted, rejections = self.count("accepted"), self.count("rejections")
        return accepted / (accepted + rejections) if accepted + rejections else math.nan

    @property
    def mean_accepted_length(self) -> float:
        steps = self.count("steps")
        return 1 + self.count("accepted") / steps if steps else math.nan

    def per_token(self, name: str) -> float:
        return self.count(name) / self.total_tokens if self.total_tokens else math.nan

    @property
    def acceptance_by_position(self) -> list[float]:
        drafted: list[int] = []
        accepted: list[int] = []
        for run in self.runs:
            stats = run.result.stats
            for i, (d, a) in enumerate(zip(stats.drafted_by_position, stats.accepted_by_position, strict=True)):
                if i == len(drafted):
                    drafted.append(0)
                    accepted.append(0)
                drafted[i] += d
                accepted[i] += a
        return [a / d if d else math.nan for a, d in zip(accepted, drafted, strict=True)]

    def deterministic(self) -> dict[str, float]:
        """Figures that do not depend on machine speed."""
        return {
            "tokens": float(self.total_tokens),
            "alpha_estimate": self.alpha_estimate,
            "mean_accepted_length": self.mean_accepted_length,
            "target_forwards_per_token": self.per_token("target_forwards"),
            "draft_forwards_per_token": self.per_token("draft_forwards"),
            "prefills_per_request": (self.count("target_prefills") + self.count("draft_prefills")) / len(self.runs),
            "forwards_before_first_token": self.count("forwards_before_first_token") / len(self.runs),
        }

    def summary(self) -> dict[str, Any]:
        return {
            "decoder": self.decoder,
            "ttft_s": self.median("ttft"),
            "tpot_s": self.median("tpot"),
            "latency_s": self.median("latency"),
            "tokens_per_s": self.tokens_per_s,
            **self.deterministic(),
            "acceptance_by_position": self.acceptance_by_position,
            "samples": {m: self.samples(m) for m in ("ttft", "tpot", "latency", "tokens_per_s")},
        }


@dataclass(frozen=True)
class PerfRecord:
    """One side-by-side measurement: the decoder under test against the baseline."""

    name: str
    pair: str
    gamma: int | None
    sampling: str
    max_new_tokens: int
    speculative: PerfSamples
    baseline: PerfSamples
    extra: dict[str, Any] = field(default_factory=dict)
    base: PerfSamples | None = None  # the base branch's decoder, timed interleaved (same-job A/B)
    first_tokens: dict[str, PerfSamples] = field(default_factory=dict)  # A/B: short runs of head and base (ab.py)

    @property
    def speedup(self) -> float:
        """Wall-clock throughput of the decoder under test over the baseline's, same run."""
        return self.speculative.tokens_per_s / self.baseline.tokens_per_s

    @property
    def ttft_ratio(self) -> float:
        return self.speculative.median("ttft") / self.baseline.median("ttft")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pair": self.pair,
            "gamma": self.gamma,
            "sampling": self.sampling,
            "max_new_tokens": self.max_new_tokens,
            "speedup": self.speedup,
            "ttft_ratio": self.ttft_ratio,
            "speculative": self.speculative.summary(),
            "baseline": self.baseline.summary(),
            **({"base": self.base.summary(),
                "base_speedup": self.base.tokens_per_s / self.baseline.tokens_per_s} if self.base else {}),
            **self.extra,
        }


def measure_interleaved(
    timer: Timer,
    decoders: dict[str, Any],
    prompts: list[Any],
    *,
    repeats: int,
    warmup: int,
    generate_kwargs: dict[str, Any],
    seed: int = 0,
    alternate: tuple[str, str] | None = None,
) -> dict[str, PerfSamples]:
    """Warm every decoder up, then time each on each prompt, interleaved, ``repeats`` times.

    ``alternate``: two decoders that swap places in the order on every other run."""
    make_generator = generate_kwargs.pop("make_generator", None)
    for decoder in decoders.values():
        timer.warm_up(decoder, prompts[0], repeats=warmup, **generate_kwargs)
    runs: dict[str, list[TimedDecode]] = {name: [] for name in decoders}
    names = list(decoders)
    swapped = list(names)
    if alternate is not None:
        i, j = names.index(alternate[0]), names.index(alternate[1])
        swapped[i], swapped[j] = swapped[j], swapped[i]
    for repeat in range(repeats):
        for index, prompt in enumerate(prompts):
            for name in swapped if (repeat * len(prompts) + index) % 2 else names:
                decoder = decoders[name]
                kwargs = dict(generate_kwargs)
                if make_generator is not None:
                    kwargs["generator"] = make_generator(seed + 1000 * repeat + index)
                runs[name].append(timer.time(decoder, prompt, **kwargs))
    return {name: PerfSamples(name, tuple(r)) for name, r in runs.items()}
