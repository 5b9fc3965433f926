"""Batched performance measurement: ``generate_batch`` of the decoder under test against the batched baseline.

One timed call decodes every prompt as one batch; each repeat times both decoders on the same
batch, in alternating order, after warm-up, so the per-repeat ratio is a same-run figure. The
timing samples (speedup per repeat, tokens/s, the baseline's latency as the drift control) and
the deterministic per-row counts are judged against the stored baseline of the measurement's
fingerprint with the same rules as the single-sequence measurements (``baselines.compare``).
TTFT and TPOT are not measured: the batched entry point has no per-token callback.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TimedBatch:
    """One timed ``generate_batch`` call: its per-row results and its wall time (seconds)."""

    results: tuple[Any, ...]
    wall_s: float

    @property
    def tokens(self) -> int:
        return sum(len(r.tokens) for r in self.results)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s > 0 else math.nan

    def count(self, name: str) -> int:
        return sum(getattr(r.stats, name, 0) for r in self.results)


def time_batch(decoder: Any, prompts: list[Any], clock: Callable[[], float] = time.perf_counter,
               sync: Callable[[], None] = lambda: None, **kwargs: Any) -> TimedBatch:
    sync()
    start = clock()
    results = decoder.generate_batch(prompts, **kwargs)
    sync()
    return TimedBatch(tuple(results), clock() - start)


def measure_batched(decoders: dict[str, Any], prompts: list[Any], *, repeats: int, warmup: int,
                    make_generators: Callable[[int], list[Any]] | None = None,
                    sync: Callable[[], None] = lambda: None, **kwargs: Any) -> dict[str, tuple[TimedBatch, ...]]:
    """Warm each decoder up on the batch, then time each ``repeats`` times, interleaved, order alternating."""
    for decoder in decoders.values():
        for _ in range(warmup):
            decoder.generate_batch(prompts, generators=make_generators(-1) if make_generators else None, **kwargs)
    runs: dict[str, list[TimedBatch]] = {name: [] for name in decoders}
    for repeat in range(repeats):
        names = list(decoders) if repeat % 2 == 0 else list(decoders)[::-1]
        for name in names:
            generators = make_generators(repeat) if make_generators else None
            runs[name].append(time_batch(decoders[name], prompts, sync=sync, generators=generators, **kwargs))
    return {name: tuple(r) for name, r in runs.items()}


@dataclass(frozen=True)
class BatchedPerfRecord:
    """The decoder under test's batched throughput against the batched baseline's, same run."""

    name: str
    pair: str
    batch: int
    gamma: int | None
    sampling: str
    max_new_tokens: int
    speculative: tuple[TimedBatch, ...]
    baseline: tuple[TimedBatch, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def speedups(self) -> list[float]:
        return [s.tokens_per_s / b.tokens_per_s for s, b in zip(self.speculative, self.baseline, strict=True)]

    @property
    def speedup(self) -> float:
        """Median over repeats of tok/s over the baseline's in the same repeat."""
        return statistics.median(self.speedups())

    def timing_samples(self) -> dict[str, list[float]]:
        return {"speedup": self.speedups(), "tokens_per_s": [s.tokens_per_s for s in self.speculative],
                "baseline_tokens_per_s": [b.tokens_per_s for b in self.baseline],
                "baseline_latency_s": [b.wall_s for b in self.baseline]}

    def deterministic(self) -> dict[str, float]:
        """Per-row counts pooled over the batch (one repeat: they do not change between repeats)."""
        run = self.speculative[0]
        accepted, rejections, steps = run.count("accepted"), run.count("rejections"), run.count("steps")
        per_token = {name: run.count(name) / run.tokens for name in
                     ("target_forwards", "draft_forwards", "target_tokens_fed", "draft_tokens_fed")}
        return {"batch": self.batch, "tokens_per_request": run.tokens / self.batch,
                "alpha_estimate": accepted / (accepted + rejections) if accepted + rejections else math.nan,
                "mean_accepted_length": 1 + accepted / steps if steps else math.nan,
                **{f"{name}_per_token": value for name, value in per_token.items()}}

    def note(self) -> str:
        spec = statistics.median(s.tokens_per_s for s in self.speculative)
        base = statistics.median(b.tokens_per_s for b in self.baseline)
        return (f"{self.name}: batch {self.batch}, {self.max_new_tokens} new tokens per row, {self.sampling}: "
                f"speculative {spec:.1f} tok/s, batched baseline {base:.1f} tok/s, speedup {self.speedup:.2f} "
                f"(median of {len(self.speculative)} paired repeats)")

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pair": self.pair, "batch": self.batch, "gamma": self.gamma,
                "sampling": self.sampling, "max_new_tokens": self.max_new_tokens, "speedup": self.speedup,
                "timing": self.timing_samples(), "deterministic": self.deterministic(), **self.extra}


def check_against_baseline(record: BatchedPerfRecord, *, options: Any, pair: Any, identity: dict[str, Any],
                           decoder_name: str, decoder_spec: str, results: Any) -> Any:
    """Compare with (or, with --specdec-save-baseline, save as) the stored baseline of the record's fingerprint;
    fails or skips the test as ``specdec_baseline_check`` does."""
    import pytest

    from ..options import SAVE_BASELINE
    from . import baselines
    from .environment import describe_environment

    measurement = {"name": record.name, "decoder": decoder_name, "gamma": record.gamma, "sampling": record.sampling,
                   **{k: record.extra["protocol"][k] for k in ("prompts", "max_new_tokens", "repeats")}}
    fp = baselines.fingerprint(describe_environment(pair.device), identity, measurement)
    timing, figures = record.timing_samples(), record.deterministic()
    exact = pair.device == "cpu" and pair.dtype in ("float32", "float64")
    try:
        comparison = baselines.compare(baselines.load_baselines(options.baseline_dir), fp, timing, figures,
                                       exact_numerics=exact)
        results.comparisons.append(comparison.as_dict())
        if options.save_baseline:
            path = baselines.baseline_file(options.baseline_dir, pair.label)
            key = baselines.save_baseline(path, fp, timing, figures, summary={"speedup": record.speedup},
                                          decoder=decoder_spec)
            results.notes.append(f"baseline for {record.name} saved to {path} (entry {key})")
            return comparison
    except baselines.BaselineError as exc:
        pytest.fail(str(exc), pytrace=False)
    if comparison.failed:
        pytest.fail(comparison.message(), pytrace=False)
    if comparison.status == "no comparable baseline":
        pytest.skip(f"no comparable baseline for {record.name} in {options.baseline_dir}: "
                    f"{comparison.differences()}; record one with {SAVE_BASELINE}")
    return comparison
