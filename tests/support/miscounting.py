"""Decoders whose counts lie: each the reference decoder with one counting bug (marked ``# BUG``).

Tokens stay right; only the ``DecodeStats`` record (or what the models ran behind its back) is
wrong, so only the counters check (pytest_specdec/protocol/counters.py) and the greedy oracle of
tests/plugin/test_counters.py can catch them.
"""

from __future__ import annotations

import dataclasses

from transformers import DynamicCache

from reference_impl import SpeculativeDecoder
from reference_impl.kv import CachedLM
from reference_impl.output import TokenSink
from reference_impl.stats import DecodeResult, StatsCounter


class BonusCountedAsAccepted(StatsCounter):
    """vLLM #2658: the bonus token of a fully accepted step counted as an accepted draft token."""

    def record_step(self, gamma, n_accepted, rejected):
        super().record_step(gamma, n_accepted, rejected)
        self.accepted += n_accepted == gamma  # BUG


class BonusCountedAsDrafted(StatsCounter):
    """The bonus token recorded as one more drafted and accepted token: every count agrees with every other."""

    def record_step(self, gamma, n_accepted, rejected):
        full = n_accepted == gamma
        super().record_step(gamma + full, n_accepted + full, rejected)  # BUG


class CountingMutant(SpeculativeDecoder):
    counter_class = StatsCounter

    def generate(self, *args, **kwargs):
        import reference_impl.speculative as speculative

        saved = speculative.StatsCounter
        speculative.StatsCounter = self.counter_class
        try:
            return super().generate(*args, **kwargs)
        finally:
            speculative.StatsCounter = saved


class BonusAccepted(CountingMutant):
    counter_class = BonusCountedAsAccepted


class BonusDrafted(CountingMutant):
    counter_class = BonusCountedAsDrafted


class CountsEveryMatch(SpeculativeDecoder):
    """Accepted counted past the first rejection: every draft token equal to the target's choice (vLLM #17908)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        forward = self._target.forward

        def keep_verify(tokens, keep=1):
            logits = forward(tokens, keep)
            self.verified = (tokens[len(tokens) - keep + 1 :], logits)  # (the draft tokens, the target's logits)
            return logits

        self._target.forward = keep_verify

    def step(self, seq, length, gamma, sampling, generator):
        new, _ = super().step(seq, length, gamma, sampling, generator)
        drafts, logits = self.verified
        return new, int((drafts == logits[:-1].argmax(-1)).sum())  # BUG: a sum, not the agreeing prefix


class CountsWhatTheStepProduced(SpeculativeDecoder):
    """vLLM #56101: tokens past an EOS (or past max_new_tokens) counted as accepted although never emitted."""

    class Sink(TokenSink):
        def emit(self, tokens, logprobs=None):
            super().emit(tokens, logprobs)
            return len(tokens)  # BUG: what the step produced, not what was emitted

    token_sink = Sink


class UncountedPrefill(CachedLM):
    """A pass that starts from an empty cache is not counted as a forward pass."""

    def forward(self, tokens, keep=1):
        prefill = self.length == 0
        out = super().forward(tokens, keep)
        self.forwards -= prefill  # BUG
        return out


class TargetPrefillUncounted(SpeculativeDecoder):
    def __init__(self, target, draft, **options):
        super().__init__(target, draft, **options)
        self._target = UncountedPrefill(target)


class DraftPrefillUncounted(SpeculativeDecoder):
    def __init__(self, target, draft, **options):
        super().__init__(target, draft, **options)
        self._draft = UncountedPrefill(draft)


class HiddenDraftPassFirst(SpeculativeDecoder):
    """vLLM PR #23041 hidden: the draft reads the prompt before the target's first token, outside the counters."""

    def _target_step(self, seq, length, sampling, generator):
        if self._target.length == 0:
            cache = DynamicCache(config=self.draft.config)
            self.draft(input_ids=seq[:length].view(1, -1), cache=cache, logits_to_keep=1)  # BUG: an uncounted pass
        return super()._target_step(seq, length, sampling, generator)


class TokensFedPerPass(SpeculativeDecoder):
    """Tokens fed counted as one per pass."""

    def generate(self, *args, **kwargs):
        result = super().generate(*args, **kwargs)
        stats = dataclasses.replace(result.stats, target_tokens_fed=result.stats.target_forwards)  # BUG
        return DecodeResult(result.tokens, stats)
