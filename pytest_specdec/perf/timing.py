"""Wall-clock measurement of one decode: what a user of the decoder feels.

- TTFT: from the call to the first token visible to the caller (every prefill before it counts).
- TPOT: (t_last - t_first) / (n - 1).
- Throughput: generated tokens / wall time of the whole call, never tokens per step.

Token times come from the decoder's ``on_token`` callback. On CUDA the device is synchronised
before the clock starts and after the call returns; tokens reach the callback only after their
values were copied to the host, so their timestamps are already synchronised.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads (None or 0: leave torch's setting), then restore it."""
    import torch

    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class TimedDecode:
    """One timed ``generate`` call: its result and its wall-clock figures (seconds)."""

    result: Any
    start: float
    token_times: tuple[float, ...]
    end: float

    @property
    def n_tokens(self) -> int:
        return len(self.token_times)

    @property
    def ttft(self) -> float:
        return self.token_times[0] - self.start if self.token_times else math.nan

    @property
    def tpot(self) -> float:
        n = len(self.token_times)
        return (self.token_times[-1] - self.token_times[0]) / (n - 1) if n > 1 else math.nan

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def tokens_per_s(self) -> float:
        return self.n_tokens / self.latency if self.latency > 0 else math.nan


def _synchronizer(device: str) -> Callable[[], None]:
    if device.startswith("cuda"):
        import torch

        return lambda: torch.cuda.synchronize(device)
    return lambda: None


class Timer:
    """Times decodes on one device: ``timer.time(decoder, input_ids, max_new_tokens=..., ...)``."""

    def __init__(self, device: str = "cpu", clock: Callable[[], float] = time.perf_counter) -> None:
        self.device = device
        self.clock = clock
        self._sync = _synchronizer(device)

    def time(self, decoder: Any, input_ids: Any, **generate_kwargs: Any) -> TimedDecode:
        token_times: list[float] = []
        user_callback = generate_kwargs.pop("on_token", None)

        def on_token(token: int) -> None:
            token_times.append(self.clock())
            if user_callback is not None:
                user_callback(token)

        self._sync()
        start = self.clock()
        result = decoder.generate(input_ids, on_token=on_token, **generate_kwargs)
        self._sync()
        end = self.clock()
        if len(token_times) != len(result.tokens):
            raise AssertionError(
                f"{getattr(decoder, 'name', decoder)} called on_token {len(token_times)} times for "
                f"{len(result.tokens)} tokens: the protocol asks for one call per token as it becomes visible"
            )
        return TimedDecode(result=result, start=start, token_times=tuple(token_times), end=end)

    def warm_up(self, decoder: Any, input_ids: Any, repeats: int = 1, **generate_kwargs: Any) -> None:
        """Run untimed decodes first (allocator, kernels, caches)."""
        for _ in range(repeats):
            decoder.generate(input_ids, **generate_kwargs)
        self._sync()
