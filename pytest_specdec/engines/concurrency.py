"""Many requests in flight on one engine: outputs per request, throughput and per-request latency under load.

``in_flight`` sends ``width`` requests at a time (a thread each: the engine sees concurrent
streams, as a deployed server does) and times each one from the client's side (``perf.timing``).
``load_figures`` reduces a run to the figures of the concurrency table: throughput (all generated
tokens / wall time of the whole run), median TTFT and TPOT per request, and the engine's own
per-request draft counts summed (``timings`` of llama.cpp's final event: drafted, accepted).
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..perf.timing import TimedDecode, Timer


@dataclass(frozen=True)
class Request:
    """One request of a mixed load: its prompt (1, L), budget, sampling and seed."""

    prompt: Any
    max_new_tokens: int
    sampling: Any
    seed: int


def in_flight(decoder: Any, requests: list[Request], width: int) -> tuple[list[TimedDecode], float]:
    """Run ``requests`` with ``width`` in flight; -> (each request's timed decode, in order; wall seconds)."""
    import torch

    timer = Timer()

    def send(request: Request) -> TimedDecode:
        generator = torch.Generator().manual_seed(request.seed)
        return timer.time(decoder, request.prompt, max_new_tokens=request.max_new_tokens, sampling=request.sampling,
                          generator=generator)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=width) as pool:
        timed = list(pool.map(send, requests))
    return timed, time.perf_counter() - start


def load_figures(timed: list[TimedDecode], wall: float) -> dict[str, float]:
    """Throughput (tokens / wall s), median TTFT and TPOT (ms), drafted and accepted tokens of one run."""
    tokens = sum(t.n_tokens for t in timed)
    tpots = [t.tpot * 1e3 for t in timed if t.n_tokens > 1]
    return {
        "requests": len(timed), "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
        "ttft_ms": statistics.median(t.ttft * 1e3 for t in timed),
        "tpot_ms": statistics.median(tpots) if tpots else float("nan"),
        "drafted": sum(t.result.stats.drafted for t in timed), "accepted": sum(t.result.stats.accepted for t in timed),
    }
