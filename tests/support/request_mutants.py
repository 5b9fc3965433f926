"""Deliberately broken request features: one per bug class engines shipped (FIELD-NOTES, "Request features under
speculation", "Stop sequences", "Returned logprobs"), each the reference speculative decoder with one hook replaced
and the bug marked ``# BUG``.

The hooks are the decoder's per-call processing state (``call_state``: what each position's processed law sees)
and its token sink (``token_sink``: where a stop acts). Every mutant is right on a plain request; each breaks only
where its feature meets speculation (a history that changes inside a step, a stop inside an accepted block).
Usable as ``--specdec-impl tests.support.request_mutants:<Name>``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from reference_impl.output import TokenSink
from reference_impl.processing import CallState, process_logits
from reference_impl.speculative import SpeculativeDecoder
from reference_impl.stats import TokenLogprob


class _LastTokenHistory(CallState):
    def record(self, tokens: list[int], device: torch.device) -> None:
        super().record(tokens[-1:], device)  # BUG: the step's last token only (SGLang PR #33643)


class PenaltyStateFromLastTokenDecoder(SpeculativeDecoder):
    """Penalty state updated with each step's last token only: repeats inside an accepted block go unpenalised."""

    call_state = _LastTokenHistory


class _StepCountHistory(CallState):
    def record(self, tokens: list[int], device: torch.device) -> None:
        super().record(tokens, device)
        if self.history is not None and tokens:
            self.history.generated -= len(tokens) - 1  # BUG: min_new_tokens counted in steps (SGLang PR #33643)


class MinTokensInStepsDecoder(SpeculativeDecoder):
    """``min_new_tokens`` counts steps, not tokens: EOS stays banned far too long."""

    call_state = _StepCountHistory


class _CommittedHistoryOnly(CallState):
    def processed(self, logits: torch.Tensor, drafted: Any = ()) -> torch.Tensor:
        return super().processed(logits, ())  # BUG: every row sees the history before the step, no draft tokens


class DraftTokensUnseenDecoder(SpeculativeDecoder):
    """Each verify row's penalties ignore the draft tokens before it in the same step."""

    call_state = _CommittedHistoryOnly


class _PenaltiesDropped(CallState):
    def processed(self, logits: torch.Tensor, drafted: Any = ()) -> torch.Tensor:
        if self.history is None or logits.shape[0] == 1:
            return super().processed(logits, drafted)
        seen, counts, generated = self.history.rows(torch.stack(list(drafted)))
        plain = dataclasses.replace(self.sampling, repetition_penalty=1.0, presence_penalty=0.0,
                                    frequency_penalty=0.0)  # BUG: penalties left out of verify
        return process_logits(logits, plain, seen, counts, generated, min_new_tokens=self.min_new_tokens,
                              eos_token_id=self.eos_token_id)


class PenaltiesIgnoredInVerifyDecoder(SpeculativeDecoder):
    """Repetition, presence and frequency penalties ignored by the verify pass (TensorRT-LLM PR #17701)."""

    call_state = _PenaltiesDropped


class _BiasOnBonusOnly(CallState):
    def processed(self, logits: torch.Tensor, drafted: Any = ()) -> torch.Tensor:
        out = super().processed(logits, drafted)
        if logits.shape[0] > 1:
            out = torch.cat([logits[:-1].to(out.dtype), out[-1:]])  # BUG: processors reach the bonus row only
        return out


class BiasOnBonusOnlyDecoder(SpeculativeDecoder):
    """Logit bias (and every history processor) applied to the bonus token only (SGLang PR #11555, vLLM #42744)."""

    call_state = _BiasOnBonusOnly


class _MinTokensOffByOne(CallState):
    @classmethod
    def of(cls, input_ids: torch.Tensor, vocab: int, sampling: Any, min_new_tokens: int, eos_token_id: Any,
           logprobs: Any) -> CallState:
        return super().of(input_ids, vocab, sampling, max(min_new_tokens - 1, 0), eos_token_id, logprobs)  # BUG


class MinTokensOffByOneDecoder(SpeculativeDecoder):
    """The EOS mask of ``min_new_tokens`` lifted one token early (vLLM PR #26317, #41758)."""

    call_state = _MinTokensOffByOne


class _BlockSink(TokenSink):
    """Emits a whole block, then applies ``cut`` to find where a stop ends it (None: no stop)."""

    def emit(self, tokens: list[int], logprobs: list[Any] | None = None) -> int:
        stops, self.stop = self.stop, ()
        start = len(self.tokens)
        emitted = super().emit(tokens, logprobs)
        self.stop = stops
        end = self.cut(start)
        if end is not None:
            del self.tokens[end:]
            if self.logprobs is not None:
                del self.logprobs[end:]
            self.finished = True
            return end - start
        return emitted

    def cut(self, start: int) -> int | None:
        raise NotImplementedError


class _LastTokensSink(_BlockSink):
    def cut(self, start: int) -> int | None:
        n = len(self.tokens)
        for s in self.stop:  # BUG: only a stop ending in the block's last len(s) + 1 tokens (SGLang PR #23802)
            for end in range(max(start, n - 1), n + 1):
                if end >= len(s) and tuple(self.tokens[end - len(s):end]) == s:
                    return end
        return None


class StopInLastTokensDecoder(SpeculativeDecoder):
    """A stop sequence early in a large accepted block is missed."""

    token_sink = _LastTokensSink


class _ListOrderSink(_BlockSink):
    def cut(self, start: int) -> int | None:
        for s in self.stop:  # BUG: the first stop in list order wins, not the earliest in the text (vLLM PR #49391)
            for end in range(start + 1, len(self.tokens) + 1):
                if end >= len(s) and end >= self.min_new_tokens and tuple(self.tokens[end - len(s):end]) == s:
                    return end
        return None


class StopInListOrderDecoder(SpeculativeDecoder):
    """Of two stops completing in one block, the first listed wins even when the other completes earlier."""

    token_sink = _ListOrderSink


class _UntrimmedSink(_BlockSink):
    def cut(self, start: int) -> int | None:
        for end in range(start + 1, len(self.tokens) + 1):
            if any(end >= len(s) and tuple(self.tokens[end - len(s):end]) == s for s in self.stop):
                self.finished = True  # BUG: stops, but keeps the block's tokens after the stop (vLLM PR #47616)
        return None


class StopNotTrimmedDecoder(SpeculativeDecoder):
    """Tokens (and their logprobs) after a stop sequence inside a block are returned."""

    token_sink = _UntrimmedSink


class _RawLogprobs(CallState):
    def keep_logprobs(self, processed: torch.Tensor, raw: torch.Tensor, tokens: list[int]) -> None:
        super().keep_logprobs(raw, raw, tokens)  # BUG: the law of the unprocessed logits (vLLM PR #30846's shape)


class UnprocessedLogprobsDecoder(SpeculativeDecoder):
    """Logprobs of the raw logits, not of the processed law the tokens were drawn from."""

    call_state = _RawLogprobs


class _ZeroAfterFirst(CallState):
    calls = 0

    def keep_logprobs(self, processed: torch.Tensor, raw: torch.Tensor, tokens: list[int]) -> None:
        super().keep_logprobs(processed, raw, tokens)
        if self.step_logprobs is not None and self.calls:
            self.step_logprobs = [TokenLogprob(0.0, r.top, r.raw) for r in self.step_logprobs]  # BUG (llama.cpp #27972)
        self.calls += 1


class ZeroLogprobsAfterFirstDecoder(SpeculativeDecoder):
    """Logprob 0.0 for every token after the first."""

    call_state = _ZeroAfterFirst


class _DraftLawLogprobs(CallState):
    draft_rows: tuple[torch.Tensor, ...] = ()

    def processed(self, logits: torch.Tensor, drafted: Any = ()) -> torch.Tensor:
        out = super().processed(logits, drafted)
        if isinstance(drafted, list):  # a draft pass (the reference passes its list of tokens drafted so far)
            self.draft_rows = (*self.draft_rows, out) if drafted else (out,)
        return out

    def keep_logprobs(self, processed: torch.Tensor, raw: torch.Tensor, tokens: list[int]) -> None:
        accepted = self.draft_rows[: len(tokens) - 1] if len(tokens) > 1 else []
        if accepted:  # BUG: an accepted draft token's logprob read from the draft's law
            processed = torch.cat([torch.cat(accepted).to(processed.dtype), processed[len(accepted):]])
        super().keep_logprobs(processed, raw, tokens)


class DraftLawLogprobsDecoder(SpeculativeDecoder):
    """Accepted draft tokens get the draft's log-probabilities, not the target's."""

    call_state = _DraftLawLogprobs


REQUEST_MUTANTS = {
    cls.__name__: cls
    for cls in (
        PenaltyStateFromLastTokenDecoder, MinTokensInStepsDecoder, DraftTokensUnseenDecoder,
        PenaltiesIgnoredInVerifyDecoder, BiasOnBonusOnlyDecoder, MinTokensOffByOneDecoder, StopInLastTokensDecoder,
        StopInListOrderDecoder, StopNotTrimmedDecoder, UnprocessedLogprobsDecoder, ZeroLogprobsAfterFirstDecoder,
        DraftLawLogprobsDecoder,
    )
}
