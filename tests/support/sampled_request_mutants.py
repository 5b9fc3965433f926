"""Request-feature bugs that greedy requests cannot show: each the reference speculative decoder with one hook
replaced and the bug marked ``# BUG``, usable as ``--specdec-impl tests.support.sampled_request_mutants:<Name>``.

- ``InPlaceLogprobsDecoder``: right tokens, wrong sampled logprobs (caught deterministically by the exact
  logprobs check on sampled requests, tests/greedy/test_request_mutants.py);
- ``MinPSkippedInVerifyDecoder``: a wrong sampled law (caught by the processed-law PIT,
  tests/law/test_processed_law.py);
- ``DraftPenaltiesDroppedDecoder``: lossless, but its acceptance falls (caught only by the per-state acceptance
  test, tests/law/test_processed_acceptance.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from reference_impl.processing import CallState
from reference_impl.speculative import SpeculativeDecoder


class _InPlaceTemperature(CallState):
    def keep_logprobs(self, processed: torch.Tensor, raw: torch.Tensor, tokens: list[int]) -> None:
        if not self.sampling.greedy:  # BUG: the sampler divided the logits by T in place first (vLLM PR #30846)
            processed = processed / self.sampling.temperature
        super().keep_logprobs(processed, raw, tokens)


class InPlaceLogprobsDecoder(SpeculativeDecoder):
    """Sampled logprobs read after the sampler's in-place temperature scaling: the temperature counted twice."""

    call_state = _InPlaceTemperature


class MinPSkippedInVerifyDecoder(SpeculativeDecoder):
    """Min-p left out of the speculative step (judged argmax-invariant, vLLM #42744): only the tokens of plain target
    passes (the first, and a last one left alone) are drawn with it."""

    def step(self, seq: torch.Tensor, length: int, gamma: int, sampling: Any, generator: Any) -> Any:
        return super().step(seq, length, gamma, dataclasses.replace(sampling, min_p=0.0), generator)  # BUG


class _DraftPenaltiesDropped(CallState):
    def processed(self, logits: torch.Tensor, drafted: Any = ()) -> torch.Tensor:
        if isinstance(drafted, list) and self.history is not None:  # a draft pass (the reference passes a list)
            plain = dataclasses.replace(self.sampling, repetition_penalty=1.0, presence_penalty=0.0,
                                        frequency_penalty=0.0)  # BUG: the draft proposes without the penalties
            return CallState.processed(dataclasses.replace(self, sampling=plain), logits, drafted)
        return super().processed(logits, drafted)


class DraftPenaltiesDroppedDecoder(SpeculativeDecoder):
    """The draft proposes from its law without the penalties (TensorRT-LLM PR #17701's shape on the draft side):
    the output law stays the target's, since verification corrects it, but acceptance falls."""

    call_state = _DraftPenaltiesDropped


SAMPLED_REQUEST_MUTANTS = {cls.__name__: cls for cls in (InPlaceLogprobsDecoder, MinPSkippedInVerifyDecoder,
                                                         DraftPenaltiesDroppedDecoder)}
