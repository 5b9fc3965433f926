"""The rows of a batched decode: each request's checks, its token buffer, stop conditions and stats.

A batched request gives one prompt per row and, per row or once for all, ``max_new_tokens``, an
EOS token and a generator. Every row is checked like a single-sequence request before any model
runs, and keeps its own ``TokenSink`` and ``StatsCounter``, so its result is its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from ..checks import check_request, check_supported, default_generator
from ..errors import InvalidLengthError
from ..kv import model_device
from ..output import TokenSink
from ..processing import CLASSIC
from ..sampling import SamplingConfig
from ..stats import DecodeResult, StatsCounter
from .cache import PassCounts

# the request features the batched decoders implement: min-p is a warper; the history-dependent ones are not yet
BATCHED_CAPABILITIES = CLASSIC | {"min_p"}

T = TypeVar("T")


@dataclass
class Row:
    """One request of the batch: its tokens so far (prompt first) and its tallies."""

    seq: torch.Tensor  # (prompt_len + max_new_tokens,); the first ``length`` entries are committed
    prompt_len: int
    length: int
    sink: TokenSink
    counter: StatsCounter
    generator: torch.Generator | None
    target_counts: PassCounts | None = None
    draft_counts: PassCounts | None = None

    @property
    def finished(self) -> bool:
        return self.sink.finished

    def pending(self, cached: int) -> torch.Tensor:
        """(k,) committed tokens not yet in a cache holding ``cached`` of them."""
        return self.seq[cached : self.length]

    def commit(self, tokens: list[int]) -> int:
        """Append the step's new tokens; returns how many were emitted (EOS and max_new_tokens stop it)."""
        self.seq[self.length : self.length + len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        self.length += len(tokens)
        return self.sink.emit(tokens)

    def result(self) -> DecodeResult:
        self.counter.new_tokens = len(self.sink.tokens)
        return DecodeResult(tokens=self.sink.tokens, stats=self.counter.freeze(self.target_counts, self.draft_counts))


def per_row(value: T | Sequence[T], rows: int, name: str) -> list[T]:
    """One value for every row, or a list with one per row."""
    if isinstance(value, (list, tuple)):
        if len(value) != rows:
            raise InvalidLengthError(
                f"{name} has {len(value)} entries for {rows} prompts; pass one per prompt, or a single value for all"
            )
        return list(value)
    return [value] * rows  # type: ignore[list-item]


def make_rows(
    model: torch.nn.Module,
    prompts: Sequence[torch.Tensor],
    max_new_tokens: int | Sequence[int],
    sampling: SamplingConfig,
    eos_token_id: int | Sequence[int | None] | None,
    generators: Sequence[torch.Generator | None] | None,
    on_token: Sequence[Callable[[int], None] | None] | None = None,
) -> list[Row]:
    """Check every row of a batched request and build its state; bad input fails before any model runs."""
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise InvalidLengthError(
            f"prompts must be a non-empty list of (1, prompt_len) LongTensors, got {type(prompts).__name__}"
            + (" of length 0" if isinstance(prompts, (list, tuple)) else "")
        )
    if isinstance(generators, torch.Generator):
        raise InvalidLengthError(
            "generators must be a list with one torch.Generator (or None) per prompt, not one shared generator: "
            "a shared generator makes each row's tokens depend on the other rows"
        )
    n = len(prompts)
    lengths, eos, gens = per_row(max_new_tokens, n, "max_new_tokens"), per_row(eos_token_id, n, "eos_token_id"), (
        per_row(list(generators), n, "generators") if generators is not None else [None] * n
    )
    callbacks = list(on_token) if on_token is not None else [None] * n
    rows = []
    for prompt, new_tokens, eos_id, generator, callback in zip(prompts, lengths, eos, gens, callbacks, strict=True):
        check_request(model, prompt, new_tokens, sampling, generator)
        check_supported("the batched reference decoders", sampling, BATCHED_CAPABILITIES)
        if generator is None and not sampling.greedy:
            generator = default_generator(model_device(model))
        seq = torch.empty(prompt.shape[1] + new_tokens, dtype=torch.long, device=prompt.device)
        seq[: prompt.shape[1]] = prompt[0]
        sink = TokenSink(new_tokens, eos_id, callback)
        rows.append(Row(seq, prompt.shape[1], prompt.shape[1], sink, StatsCounter(), generator))
    return rows
