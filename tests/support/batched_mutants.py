"""Deliberately broken batched decoders: one per batch bug class, each a one-hook subclass of the reference.

tests/greedy/test_batched_mutants.py shows the batch-invariance checks (tests/support/batched_checks.py) reject
every one of them. Every line that differs from the reference is marked ``# BUG``.
"""

from __future__ import annotations

import torch

from reference_impl.batched import BatchedLM, BatchedSpeculativeDecoder


class _WithLMs(BatchedSpeculativeDecoder):
    """The reference decoder with both caches replaced by ``lm_class``."""

    lm_class = BatchedLM

    def __init__(self, target, draft, **options):
        super().__init__(target, draft, **options)
        self._target, self._draft = self.lm_class(target), self.lm_class(draft)


class _NeighbourCacheLM(BatchedLM):
    def _compact(self):
        slots = max(self.lengths, default=0)
        if slots == self.valid.shape[1]:
            return
        order = torch.sort(self.valid.int(), dim=1, stable=True).indices[:, self.valid.shape[1] - slots :]
        self.valid = self.valid.gather(1, order)
        for layer in self.cache.layers:
            index = order.roll(1, dims=0)[:, None, :, None]  # BUG: row b's slots gathered from row b - 1's cache
            layer.keys = layer.keys.roll(1, dims=0).gather(2, index.expand(-1, *layer.keys.shape[1:2], -1,
                                                                             layer.keys.shape[3]))  # BUG
            layer.values = layer.values.roll(1, dims=0).gather(2, index.expand(-1, *layer.values.shape[1:2], -1,
                                                                                 layer.values.shape[3]))  # BUG


class NeighbourCache(_WithLMs):
    """A row reads another row's cache: compaction moves each row's slots into its neighbour's."""

    lm_class = _NeighbourCacheLM


class _NeighbourTokensLM(BatchedLM):
    def forward(self, chunks, keep=1):
        if len(chunks) > 1 and all(chunk.shape[0] == 1 for chunk in chunks):
            chunks = chunks[1:] + chunks[:1]  # BUG: one-token passes feed row b the tokens of row b + 1
        return super().forward(chunks, keep)


class NeighbourTokensInDraft(BatchedSpeculativeDecoder):
    """A row reads another row's tokens (a batch-order bug, vLLM #14645), in the draft only: greedy output
    stays right because the target verifies, so only the row's acceptance shows the leak."""

    def __init__(self, target, draft, **options):
        super().__init__(target, draft, **options)
        self._draft = _NeighbourTokensLM(draft)  # BUG (see _NeighbourTokensLM)


class _SlotPositionsLM(BatchedLM):
    def positions(self, new_valid):
        start = self.valid.shape[1]
        return torch.arange(start, start + new_valid.shape[1]).expand_as(new_valid)  # BUG: slot index, not own count


class SlotPositions(_WithLMs):
    """Positions from the cache slot index (a model's default without position_ids): padded rows are shifted."""

    lm_class = _SlotPositionsLM


class _PaddedOffByOneLM(BatchedLM):
    def positions(self, new_valid):
        padded = (~new_valid).any(dim=1, keepdim=True)
        return super().positions(new_valid) + padded.long()  # BUG: rows padded in this pass start one too late


class PaddedOffByOne(_WithLMs):
    """An off-by-one in a padded row's positions."""

    lm_class = _PaddedOffByOneLM


class _RollbackToBatchMaxLM(BatchedLM):
    def rollback(self, lengths):
        self.valid = self.valid & (self.valid.cumsum(1) <= max(lengths))  # BUG: batch-wide crop to the longest
        self.lengths = [min(old, new) for old, new in zip(self.lengths, lengths, strict=True)]
        self._compact()


class RollbackToBatchMax(_WithLMs):
    """Rollback to the batch's max accepted length instead of each row's own."""

    lm_class = _RollbackToBatchMaxLM


class FinishedRowsKeepDrafting(BatchedSpeculativeDecoder):
    """A finished row stays in the batch and keeps drafting (its tokens are no longer emitted)."""

    def row_gamma(self, row, gamma):
        return gamma if row.finished else super().row_gamma(row, gamma)  # BUG: finished rows still draft

    def _drop_finished(self, rows, active):
        for r in active:
            if rows[r].finished and rows[r].seq.shape[0] < 4096:  # room for the wasted steps' tokens
                rows[r].seq = torch.cat([rows[r].seq, rows[r].seq.new_zeros(4096)])
        return [] if all(rows[r].finished for r in active) else active  # BUG: finished rows never leave


MUTANTS = (NeighbourCache, NeighbourTokensInDraft, SlotPositions, PaddedOffByOne, RollbackToBatchMax,
           FinishedRowsKeepDrafting)
