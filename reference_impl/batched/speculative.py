"""The batched reference speculative decoder: the single-sequence algorithm, row by row, in shared passes.

Each step, every unfinished row drafts its own gamma (at most its remaining tokens - 1; 0 for
the first token, which comes from the target's prefill as in the single-sequence decoder), the
draft runs max(gamma) passes in which each row feeds only while it still drafts, the target
verifies all rows in one pass, and each row is accepted or rejected with its own generator, in
the same order of draws as ``SpeculativeDecoder``. Both caches then roll back to each row's own
accepted prefix (``BatchedLM.rollback``), and finished rows leave the batch. So a row's tokens
and stats do not depend on the other rows: in float64 they equal the single-sequence decoder's,
greedy or sampled with the same seed.

Request features act per row (``rows.Row.call``): each draft position and each verify row of a row is
processed with that row's own history plus the tokens it drafted before it, and only the tokens the
row emits (its EOS, stop, ``min_new_tokens`` and ``max_new_tokens`` applied one token at a time) join it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..checks import check_gamma, check_pair
from ..errors import InvalidGammaError
from ..kv import check_finite
from ..processing import CallState
from ..sampling import GREEDY, SamplingConfig, probs_from_logits, sample, verify_greedy, verify_sampled
from ..stats import DecodeResult
from .cache import BatchedLM
from .rows import BATCHED_CAPABILITIES, Row, RowRequest, make_rows

NO_TOKENS = torch.empty(0, dtype=torch.long)


class BatchedSpeculativeDecoder:
    """Draft-then-verify decoding of a batch of prompts of different lengths, exact per row."""

    name = "speculative-batched"
    capabilities = BATCHED_CAPABILITIES
    call_state = CallState  # each row's processing state (processing.CallState)

    def __init__(self, target: torch.nn.Module, draft: torch.nn.Module, *, gamma: int = 4) -> None:
        check_pair(target, draft)
        self.target, self.draft, self.gamma = target, draft, fixed_gamma(gamma)
        self._target, self._draft = BatchedLM(target), BatchedLM(draft)

    def generate(self, input_ids: torch.Tensor, *, max_new_tokens: int, sampling: SamplingConfig = GREEDY,
                 gamma: int | None = None, eos_token_id: int | None = None, generator: torch.Generator | None = None,
                 on_token: Callable[[int], None] | None = None, min_new_tokens: int = 0,
                 stop: Sequence[Sequence[int]] = (), logprobs: int | None = None) -> DecodeResult:
        """The single-sequence protocol: a batch of one."""
        request = RowRequest(max_new_tokens, sampling, eos_token_id, [generator], [on_token], min_new_tokens, [stop],
                             logprobs)
        return self._decode([input_ids], request, gamma)[0]

    def generate_batch(self, prompts: Sequence[torch.Tensor], *, max_new_tokens: int | Sequence[int],
                       sampling: SamplingConfig | Sequence[SamplingConfig] = GREEDY, gamma: int | None = None,
                       eos_token_id: int | Sequence[int | None] | None = None,
                       generators: Sequence[torch.Generator | None] | None = None,
                       min_new_tokens: int | Sequence[int] = 0, stop: Sequence = (),
                       logprobs: int | Sequence[int | None] | None = None) -> list[DecodeResult]:
        """(1, L_i) prompts -> one result per row; every request field shared or one per row, one generator per row."""
        request = RowRequest(max_new_tokens, sampling, eos_token_id, generators, None, min_new_tokens, stop, logprobs)
        return self._decode(prompts, request, gamma)

    def _decode(self, prompts: Sequence[torch.Tensor], request: RowRequest, gamma: int | None) -> list[DecodeResult]:
        gamma = fixed_gamma(self.gamma if gamma is None else gamma)
        rows = make_rows(self.target, prompts, request, self.call_state)
        self._target.reset(len(rows))
        self._draft.reset(len(rows))
        for row, target_counts, draft_counts in zip(rows, self._target.counts, self._draft.counts, strict=True):
            row.target_counts, row.draft_counts = target_counts, draft_counts
        active = self._drop_finished(rows, list(range(len(rows))))
        with torch.inference_mode():
            while active:
                gammas = [self.row_gamma(rows[r], gamma) for r in active]
                self.step([rows[r] for r in active], gammas)
                active = self._drop_finished(rows, active)
        return [row.result() for row in rows]

    def step(self, rows: list[Row], gammas: list[int]) -> None:
        """One speculative step for every row of the batch; commits each row's new tokens."""
        steps = max(gammas)
        # 1. Draft: pass j feeds each row still drafting its catch-up tokens (j = 0) or its last draft token;
        #    each row's law is processed with its own history plus the tokens it drafted so far.
        drafts, draft_probs, finite = [[] for _ in rows], [[] for _ in rows], [[] for _ in rows]
        for j in range(steps):
            chunks = [self._draft_chunk(b, row, drafts[b], j) if j < gammas[b] else NO_TOKENS
                      for b, row in enumerate(rows)]
            logits = self._draft.forward(chunks)[:, -1]  # (batch, vocab)
            for b, row in enumerate(rows):
                if j < gammas[b]:
                    finite[b].append(torch.isfinite(logits[b]).all())
                    token, probs = draw(row.processed(logits[b : b + 1], cat(drafts[b]))[0], row.sampling,
                                        row.generator)
                    drafts[b].append(token)
                    draft_probs[b].append(probs)

        # 2. One target pass over each row's pending token(s) and its drafts; row b's are its last gammas[b] + 1,
        #    verify row i processed with the row's history plus its first i drafts.
        chunks = [torch.cat([row.pending(self._target.lengths[b]), *drafts[b]]) for b, row in enumerate(rows)]
        target_logits = self._target.forward(chunks, keep=steps + 1)  # (batch, steps + 1, vocab)
        raw = [target_logits[b, steps - gammas[b] :] for b in range(len(rows))]  # (gamma_b + 1, vocab) each
        processed = [row.processed(raw[b], cat(drafts[b])) for b, row in enumerate(rows)]

        # 3. Accept or reject each row with its own generator; 4. one transfer to the host.
        verdicts = [verify_row(processed[b], drafts[b], draft_probs[b], [torch.isfinite(raw[b]).all(), *finite[b]],
                               row.sampling, row.generator) for b, row in enumerate(rows)]
        for b, (row, (n, new)) in enumerate(zip(rows, host(verdicts), strict=True)):
            row.call.keep_logprobs(processed[b], raw[b], new)
            emitted = row.commit(new)  # the emitted tokens join the row's history
            if row.length - len(new) == row.prompt_len:  # this step made the row's first token
                row.counter.forwards_before_first_token = row.target_counts.forwards + row.draft_counts.forwards
            if gammas[b]:
                row.counter.record_step(gammas[b], min(n, emitted), n < gammas[b] and emitted > n)

        # 5. Roll both caches back to each row's own accepted prefix; the new last token is fed next step.
        kept = [row.length - 1 for row in rows]
        self._target.rollback(kept)
        self._draft.rollback(kept)

    def row_gamma(self, row: Row, gamma: int) -> int:
        """0 for the first token (the target's prefill) and the last; else at most remaining - 1 draft tokens."""
        if row.length == row.prompt_len or row.sink.remaining <= 1:
            return 0
        return min(gamma, row.sink.remaining - 1)

    def _draft_chunk(self, b: int, row: Row, drafted: list[torch.Tensor], j: int) -> torch.Tensor:
        """What row b feeds the draft in pass j: the tokens the draft has not seen, then its last draft token."""
        return row.pending(self._draft.lengths[b]) if j == 0 else drafted[-1]

    def _drop_finished(self, rows: list[Row], active: list[int]) -> list[int]:
        """Finished rows leave both caches, so they cost nothing in later passes."""
        keep = [b for b, r in enumerate(active) if not rows[r].finished]
        if len(keep) < len(active):
            self._target.select(keep)
            self._draft.select(keep)
        return [active[b] for b in keep]


def fixed_gamma(gamma: object) -> int:
    if gamma == "auto":
        raise InvalidGammaError("the batched reference takes a fixed gamma (draft tokens per step), not 'auto': "
                                "auto gamma tracks one sequence's acceptance; pass an integer such as 4")
    return check_gamma(gamma)


def draw(logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator | None):
    """(vocab,) -> (1,) draft token and the (vocab,) distribution it was drawn from (None when greedy)."""
    if sampling.greedy:
        return logits.argmax().view(1), None
    probs = probs_from_logits(logits, sampling)
    return sample(probs.unsqueeze(0), generator), probs


def cat(tokens: list[torch.Tensor]) -> torch.Tensor:
    """A row's draft tokens so far, (1,) each -> (k,)."""
    return torch.cat(tokens) if tokens else NO_TOKENS


def verify_row(target_logits: torch.Tensor, drafts: list[torch.Tensor], draft_probs: list, finite: list,
               sampling: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """(gamma + 1, vocab) processed logits, gamma drafts, finiteness flags of the raw logits
    -> (gamma + 3,) [drafts..., n_accepted, next_token, all finite]."""
    draft_tokens = torch.cat(drafts) if drafts else NO_TOKENS.to(target_logits.device)
    if sampling.greedy:
        n_accepted, next_token = verify_greedy(target_logits, draft_tokens)
    elif drafts:
        target_probs = probs_from_logits(target_logits, sampling)
        n_accepted, next_token = verify_sampled(target_probs, torch.stack(draft_probs), draft_tokens, generator)
    else:  # no drafts: a plain target token, drawn exactly as the single-sequence decoder's target step
        n_accepted = torch.zeros((), dtype=torch.long, device=target_logits.device)
        next_token = sample(probs_from_logits(target_logits[-1], sampling).unsqueeze(0), generator)[0]
    return torch.cat([draft_tokens, torch.stack([n_accepted, next_token, torch.stack(finite).all().long()])])


def host(verdicts: list[torch.Tensor]) -> list[tuple[int, list[int]]]:
    """Per-row verdicts -> (n accepted, the accepted drafts plus the correction or bonus token), one transfer."""
    flat = torch.cat(verdicts).tolist()
    out, start = [], 0
    for verdict in verdicts:
        *drafted, n, next_id, finite = flat[start : start + verdict.shape[0]]
        start += verdict.shape[0]
        check_finite(bool(finite), "draft or target")
        out.append((n, [*drafted[:n], next_id]))
    return out
