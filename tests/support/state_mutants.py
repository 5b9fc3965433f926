"""Deliberately broken decoders whose caches go wrong only far out, or only for recurrent state.

Each is the reference speculative decoder with one component replaced: a ``CachedLM`` subclass
(how a model's cache is fed and rolled back) or one hook of the step. None of them differs from
the reference on short, attention-only runs like the ones the suite tested before, so only the
long-context and recurrent tests (tests/greedy/test_long_context.py, tests/greedy/test_recurrent.py) can see
them. Every line that differs from the reference is marked ``# BUG``.
"""

from __future__ import annotations

import torch

from reference_impl.kv import CachedLM
from reference_impl.rollback import kv_crop
from reference_impl.speculative import SpeculativeDecoder

BLOCK = 256  # positions per cache block in the paged-cache mutant
VERIFIED_OK = 5  # tokens a verify pass may feed before the long-draft mutant corrupts the cache


def _crop_kv(cache, tokens_to_remove: int) -> None:
    """Crop the attention part of every layer (leaves recurrent states as they are)."""
    for layer in cache.layers:
        crop = kv_crop(layer)
        if crop is not None and tokens_to_remove > 0:
            crop(layer, -tokens_to_remove)


class MutantDecoder(SpeculativeDecoder):
    """The reference decoder with both models' caches of type ``lm_class``."""

    lm_class = CachedLM

    def __init__(self, target, draft, **options) -> None:
        super().__init__(target, draft, **options)
        self._target = self.lm_class(target)
        self._draft = self.lm_class(draft)


# --- long contexts, attention caches ---------------------------------------------------------------


class BlockBoundaryLM(CachedLM):
    """A paged cache whose rollback keeps one stale entry when the removed positions span a block
    boundary: the first rejected draft token stays cached while the bookkeeping says it left, so
    every later position is off by one. Never happens before position ``BLOCK``."""

    def rollback(self, length: int) -> None:
        if self.length > length and length // BLOCK != (self.length - 1) // BLOCK:
            self.cache.crop(length + 1 - self.length)  # BUG: one entry too few removed
            self.length = length
            return
        super().rollback(length)


class LongVerifyLM(CachedLM):
    """SGLang PR #33872: a pass that feeds more than ``VERIFIED_OK`` tokens (more than 4 draft tokens
    verified) writes the key and value of every later token over the slot of the fifth one."""

    def forward(self, tokens: torch.Tensor, keep: int = 1) -> torch.Tensor:
        start = self.length
        logits = super().forward(tokens, keep)
        if start > 0 and tokens.shape[-1] > VERIFIED_OK:
            first_bad = start + VERIFIED_OK
            for layer in self.cache.layers:
                for kv in (layer.keys, layer.values):
                    kv[..., first_bad:, :] = kv[..., first_bad - 1 : first_bad, :]  # BUG: slots overwritten
        return logits


class WindowIgnoredLM(CachedLM):
    """A cache and attention that ignore the model's sliding window: every position attends to the
    whole context. The same as the reference until the context is longer than the window."""

    def reset(self) -> None:
        from transformers import DynamicCache

        super().reset()
        self.cache = DynamicCache()  # BUG: full-attention layers, whatever the config says
        self._rollback.cache = self.cache

    def forward(self, tokens: torch.Tensor, keep: int = 1) -> torch.Tensor:
        config = self.model.config
        window, config.sliding_window = config.sliding_window, None  # BUG: no window in the mask
        try:
            return super().forward(tokens, keep)
        finally:
            config.sliding_window = window


class BlockBoundaryDecoder(MutantDecoder):
    lm_class = BlockBoundaryLM


class LongVerifyDecoder(MutantDecoder):
    lm_class = LongVerifyLM


class WindowIgnoredDecoder(MutantDecoder):
    lm_class = WindowIgnoredLM


class UnclampedGammaDecoder(SpeculativeDecoder):
    """Always drafts the full gamma, even when fewer tokens remain (the extra ones are dropped when
    emitted): near the end of the model's positions the draft and the verify pass run past the limit."""

    def _step_gamma(self, gamma, remaining: int) -> int:
        return 0 if remaining <= 1 else gamma  # BUG: not clamped to remaining - 1

    def step(self, seq, length, gamma, sampling, generator):
        room = torch.cat([seq, seq.new_zeros(gamma + 1)])  # a token buffer with room for the full gamma
        new, n_accepted = super().step(room, length, gamma, sampling, generator)
        seq.copy_(room[: seq.shape[0]])
        return new, n_accepted


# --- recurrent state -------------------------------------------------------------------------------


class StateNotRestoredLM(CachedLM):
    """vLLM #39273 in miniature: rolling back crops the attention cache but keeps the recurrent state
    as it is after the last fed token (the last drafted one), not the last accepted one. What
    ``DynamicCache.crop`` with past recording does to a hybrid model."""

    def rollback(self, length: int) -> None:
        if self.length > length:
            _crop_kv(self.cache, self.length - length)  # BUG: recurrent state left as it is
            self.length = length


class StateOneLateLM(CachedLM):
    """Rolls the recurrent state back to one position after the accepted prefix (it has seen the
    first rejected token); the attention cache and the bookkeeping are exact."""

    def forward(self, tokens: torch.Tensor, keep: int = 1) -> torch.Tensor:
        previous = getattr(self, "fed", tokens[:0])
        self.fed = torch.cat([previous[: self.length], tokens])
        return super().forward(tokens, keep)

    def rollback(self, length: int) -> None:
        if self.length <= length:
            return super().rollback(length)
        late = length + 1  # BUG: one position too far
        super().rollback(late)
        if self.length < late:  # catch up to ``late`` without counting it as a pass of the decoder
            catch_up = self.fed[self.length : late].view(1, -1)
            self.model(input_ids=catch_up, use_cache=True, **{self._cache_arg: self.cache})
        _crop_kv(self.cache, 1)
        self.length = length
        return None


class StateNotRestoredDecoder(MutantDecoder):
    lm_class = StateNotRestoredLM


class StateOneLateDecoder(MutantDecoder):
    lm_class = StateOneLateLM
