"""Deliberately broken request features in a batch: each the batched reference with one hook replaced, the bug
marked ``# BUG``. Right on requests without history features; each breaks where a row's history must be its own
prompt and its own emitted tokens, counted in tokens.
Usable as ``--specdec-impl tests.support.batched_request_mutants:<Name>``.
"""

from __future__ import annotations

import functools

import torch

from reference_impl.batched import BatchedSpeculativeDecoder


class SharedHistory(BatchedSpeculativeDecoder):
    """One penalty state for the whole batch: a row's tokens count against every row (its history leaks)."""

    def step(self, rows, gammas):
        histories = [row.call.history for row in rows if row.call.history is not None]
        for row in rows:
            row.call.record = functools.partial(_record_into, histories)  # BUG: each row's tokens go to every history
        super().step(rows, gammas)


def _record_into(histories, tokens, device):
    for history in histories:
        if tokens:
            history.extend(torch.tensor(tokens, device=device))  # BUG (see SharedHistory)


class MinTokensPerBatchStep(BatchedSpeculativeDecoder):
    """``min_new_tokens`` counted in batch steps, not in the row's tokens: EOS stays banned too long."""

    def _decode(self, prompts, request, gamma):
        self.batch_steps = 0
        return super()._decode(prompts, request, gamma)

    def step(self, rows, gammas):
        super().step(rows, gammas)
        self.batch_steps += 1
        for row in rows:
            if row.call.history is not None:
                row.call.history.generated = self.batch_steps  # BUG: one per batch step, whatever the row emitted


class FinishedRowHistoryNotFrozen(BatchedSpeculativeDecoder):
    """Per-row states kept by batch slot and not compacted when a row leaves: the finished row's frozen state is
    taken over, and written on, by the row that moves into its slot (rows misaligned, vLLM PR #41758's shape)."""

    def _drop_finished(self, rows, active):
        keep = super()._drop_finished(rows, active)
        states = [rows[r].call for r in active]
        for slot, r in enumerate(keep):
            rows[r].call = states[slot]  # BUG: the state of slot `slot` before the compaction
        return keep


BATCHED_REQUEST_MUTANTS = {cls.__name__: cls for cls in (SharedHistory, MinTokensPerBatchStep,
                                                         FinishedRowHistoryNotFrozen)}
