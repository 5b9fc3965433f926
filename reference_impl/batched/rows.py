"""The rows of a batched decode: each request's checks, its token buffer, stop conditions and stats.

A batched request gives one prompt per row and, per row or once for all, ``max_new_tokens``, the
sampling configuration, an EOS token, ``min_new_tokens``, stop sequences and ``logprobs``, and one
generator per row. Every row is checked like a single-sequence request before any model runs, and
keeps its own ``CallState`` (its penalty history: its prompt and the tokens it emitted),
``TokenSink`` and ``StatsCounter``, so its result is its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from ..checks import check_features, check_request, default_generator
from ..errors import InvalidLengthError
from ..kv import model_device
from ..output import TokenSink
from ..processing import CAPABILITIES, CallState
from ..sampling import SamplingConfig
from ..stats import DecodeResult, StatsCounter
from .cache import PassCounts

BATCHED_CAPABILITIES = CAPABILITIES  # every request feature, per row

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
    call: CallState  # the row's processing: its own sampling, history, min_new_tokens, EOS and logprobs
    target_counts: PassCounts | None = None
    draft_counts: PassCounts | None = None

    @property
    def finished(self) -> bool:
        return self.sink.finished

    def pending(self, cached: int) -> torch.Tensor:
        """(k,) committed tokens not yet in a cache holding ``cached`` of them."""
        return self.seq[cached : self.length]

    @property
    def sampling(self) -> SamplingConfig:
        return self.call.sampling

    def processed(self, logits: torch.Tensor, drafted: torch.Tensor | tuple = ()) -> torch.Tensor:
        """(n, vocab) logits of the row's last n positions, after each prefix of ``drafted`` -> processed logits."""
        return self.call.processed(logits, drafted)

    def commit(self, tokens: list[int]) -> int:
        """Append the step's new tokens; returns how many were emitted (EOS, a stop, max_new_tokens end it).
        The emitted ones, and only those, join the row's history."""
        self.seq[self.length : self.length + len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        self.length += len(tokens)
        emitted = self.sink.emit(tokens, self.call.step_logprobs)
        self.call.record(tokens[:emitted], self.seq.device)
        self.call.step_logprobs = None
        return emitted

    def result(self) -> DecodeResult:
        self.counter.new_tokens = len(self.sink.tokens)
        return DecodeResult(tokens=self.sink.tokens, stats=self.counter.freeze(self.target_counts, self.draft_counts),
                            logprobs=self.sink.logprobs)


def per_row(value: T | Sequence[T], rows: int, name: str) -> list[T]:
    """One value for every row, or a list with one per row."""
    if isinstance(value, (list, tuple)):
        if len(value) != rows:
            raise InvalidLengthError(
                f"{name} has {len(value)} entries for {rows} prompts; pass one per prompt, or a single value for all"
            )
        return list(value)
    return [value] * rows  # type: ignore[list-item]


def stops_per_row(stop: object, rows: int) -> list[object]:
    """``stop``: one list of token-id sequences for every row (``[[13, 13], [2]]``), or one such list per row
    (``[[[13, 13]], [], [[2]]]``: three levels of lists) -> the stop list of each row, unchecked."""
    nested = isinstance(stop, (list, tuple)) and len(stop) > 0 and all(
        isinstance(s, (list, tuple)) and all(isinstance(q, (list, tuple)) for q in s) for s in stop)
    return per_row(list(stop), rows, "stop (one list of stop sequences per row)") if nested else [stop] * rows


@dataclass(frozen=True)
class RowRequest:
    """What a batched call asks of every row beyond its prompt: each field shared, or a list with one per row."""

    max_new_tokens: int | Sequence[int]
    sampling: SamplingConfig | Sequence[SamplingConfig]
    eos_token_id: int | Sequence[int | None] | None = None
    generators: Sequence[torch.Generator | None] | None = None
    on_token: Sequence[Callable[[int], None] | None] | None = None
    min_new_tokens: int | Sequence[int] = 0
    stop: Sequence = ()
    logprobs: int | Sequence[int | None] | None = None

    def split(self, n: int) -> list[tuple]:
        """-> n tuples (max_new_tokens, sampling, eos, generator, on_token, min_new_tokens, stop, logprobs)."""
        if isinstance(self.generators, torch.Generator):
            raise InvalidLengthError(
                "generators must be a list with one torch.Generator (or None) per prompt, not one shared generator: "
                "a shared generator makes each row's tokens depend on the other rows"
            )
        return list(zip(
            per_row(self.max_new_tokens, n, "max_new_tokens"), per_row(self.sampling, n, "sampling"),
            per_row(self.eos_token_id, n, "eos_token_id"),
            per_row(list(self.generators), n, "generators") if self.generators is not None else [None] * n,
            list(self.on_token) if self.on_token is not None else [None] * n,
            per_row(self.min_new_tokens, n, "min_new_tokens"), stops_per_row(self.stop, n),
            per_row(self.logprobs, n, "logprobs"), strict=True))


def make_rows(model: torch.nn.Module, prompts: Sequence[torch.Tensor], request: RowRequest,
              call_state: type[CallState] = CallState) -> list[Row]:
    """Check every row of a batched request and build its state; bad input fails before any model runs."""
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise InvalidLengthError(
            f"prompts must be a non-empty list of (1, prompt_len) LongTensors, got {type(prompts).__name__}"
            + (" of length 0" if isinstance(prompts, (list, tuple)) else "")
        )
    vocab = model.get_output_embeddings().weight.shape[0]
    rows = []
    for prompt, (new_tokens, sampling, eos_id, generator, callback, floor, stop, logprobs) in zip(
            prompts, request.split(len(prompts)), strict=True):
        check_request(model, prompt, new_tokens, sampling, generator)
        floor, stop, logprobs = check_features(floor, stop, logprobs)
        if generator is None and not sampling.greedy:
            generator = default_generator(model_device(model))
        seq = torch.empty(prompt.shape[1] + new_tokens, dtype=torch.long, device=prompt.device)
        seq[: prompt.shape[1]] = prompt[0]
        sink = TokenSink(new_tokens, eos_id, callback, stop=stop, min_new_tokens=floor, logprobs=logprobs is not None)
        call = call_state.of(prompt, vocab, sampling, floor, eos_id, logprobs)
        rows.append(Row(seq, prompt.shape[1], prompt.shape[1], sink, StatsCounter(), generator, call))
    return rows
