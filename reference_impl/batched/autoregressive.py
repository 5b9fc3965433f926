"""The batched autoregressive baseline: the target alone, one pass per token for the whole batch.

Rows of different prompt lengths share each pass (``BatchedLM``: left padding, masks, explicit
positions); each row processes its logits with its own history (``processing.CallState``), samples
with its own generator and leaves the batch when it finishes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..kv import check_finite
from ..sampling import GREEDY, SamplingConfig, choose_token
from ..stats import DecodeResult
from .cache import BatchedLM
from .rows import BATCHED_CAPABILITIES, RowRequest, make_rows


class BatchedAutoregressiveDecoder:
    """Greedy or sampled decoding of a batch of prompts with the target model and one shared KV cache."""

    name = "autoregressive-batched"
    capabilities = BATCHED_CAPABILITIES

    def __init__(self, target: torch.nn.Module, draft: torch.nn.Module | None = None, **options: object) -> None:
        if options:
            raise TypeError(f"BatchedAutoregressiveDecoder takes no options, got {sorted(options)}")
        self.target = target
        self._target = BatchedLM(target)

    def generate(self, input_ids: torch.Tensor, *, max_new_tokens: int, sampling: SamplingConfig = GREEDY,
                 gamma: int | None = None, eos_token_id: int | None = None, generator: torch.Generator | None = None,
                 on_token: Callable[[int], None] | None = None, min_new_tokens: int = 0,
                 stop: Sequence[Sequence[int]] = (), logprobs: int | None = None) -> DecodeResult:
        """The single-sequence protocol: a batch of one. ``gamma`` is accepted and ignored."""
        request = RowRequest(max_new_tokens, sampling, eos_token_id, [generator], [on_token], min_new_tokens, [stop],
                             logprobs)
        return self._decode([input_ids], request)[0]

    def generate_batch(self, prompts: Sequence[torch.Tensor], *, max_new_tokens: int | Sequence[int],
                       sampling: SamplingConfig | Sequence[SamplingConfig] = GREEDY, gamma: int | None = None,
                       eos_token_id: int | Sequence[int | None] | None = None,
                       generators: Sequence[torch.Generator | None] | None = None,
                       min_new_tokens: int | Sequence[int] = 0, stop: Sequence = (),
                       logprobs: int | Sequence[int | None] | None = None) -> list[DecodeResult]:
        """(1, L_i) prompts -> one result per row. ``gamma`` is accepted and ignored."""
        request = RowRequest(max_new_tokens, sampling, eos_token_id, generators, None, min_new_tokens, stop, logprobs)
        return self._decode(prompts, request)

    def _decode(self, prompts: Sequence[torch.Tensor], request: RowRequest) -> list[DecodeResult]:
        rows = make_rows(self.target, prompts, request)
        target = self._target
        target.reset(len(rows))
        for row, counts in zip(rows, target.counts, strict=True):
            row.target_counts = counts
        active = list(rows)
        with torch.inference_mode():
            while active := self._drop_finished(active):
                raw = target.forward([row.pending(target.lengths[b]) for b, row in enumerate(active)])[:, -1]
                processed = [row.processed(raw[b : b + 1]) for b, row in enumerate(active)]  # (1, vocab) each
                tokens = [choose_token(processed[b][0], row.sampling, row.generator) for b, row in enumerate(active)]
                *token_ids, finite = torch.stack([*tokens, torch.isfinite(raw).all()]).tolist()
                check_finite(bool(finite), "target")
                for b, (row, token_id) in enumerate(zip(active, token_ids, strict=True)):
                    first = row.length == row.prompt_len
                    row.call.keep_logprobs(processed[b], raw[b : b + 1], [token_id])
                    row.commit([token_id])
                    if first:
                        row.counter.forwards_before_first_token = row.target_counts.forwards
        return [row.result() for row in rows]

    def _drop_finished(self, active: list) -> list:
        keep = [b for b, row in enumerate(active) if not row.finished]
        if len(keep) < len(active):
            self._target.select(keep)
        return [active[b] for b in keep]
