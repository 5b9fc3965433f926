"""Small distribution biases that real engines shipped, planted in the reference decoder.

The catalogue's subtle mutants: each is a ``tests.support.mutants.PatchedDecoder`` subclass (so it satisfies
the decoder protocol and its counts are honest) that differs from the reference by one bug, a bias
of a few hundredths of total variation or less. Lines that change behaviour are marked ``# BUG``;
each mutant's bug is a class attribute, and with it set to the neutral value (``NEUTRAL``) the
mutant draws exactly the reference's tokens (tests/law/test_subtle_mutants.py checks that), so a
mutant is its bug and nothing else.

``python -m tests.support.subtle_mutants`` computes each mutant's bias on the catalogue pair (module
``subtle_mutant_tv``) and writes docs/measurements/subtle-mutant-tv.json.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import ClassVar

import torch

from reference_impl.kv import check_finite
from reference_impl.sampling import (
    accept_probs,
    accepted_prefix_length,
    probs_dtype,
    probs_from_logits,
    residual_probs,
    sample,
    warp_logits,
)

from .mutants import PatchedDecoder


def draw_uniforms(gamma, dtype, generator):
    """The acceptance uniforms, as the reference draws them (one place, so a test can pin them)."""
    return torch.rand(gamma, generator=generator, dtype=dtype)


def next_dists(target_probs, draft_probs):
    """(gamma + 1, vocab): the residual at each draft position, then the target's bonus distribution."""
    gamma = draft_probs.shape[0]
    return torch.cat([residual_probs(target_probs[:gamma], draft_probs), target_probs[gamma:]])


class _AcceptDecoder(PatchedDecoder):
    """The reference rejection step with the accept test as a method: ``accepts(uniforms, ratio)``."""

    def verify(self, target_probs, draft_probs, draft_tokens, generator):
        generator = self.rng(generator)
        gamma = draft_tokens.shape[0]
        uniforms = draw_uniforms(gamma, target_probs.dtype, generator)
        ratio = accept_probs(target_probs[:gamma], draft_probs, draft_tokens)
        n_accepted = accepted_prefix_length(self.accepts(uniforms, ratio))
        return n_accepted, sample(next_dists(target_probs, draft_probs)[n_accepted].unsqueeze(0), generator)[0]


# --- 1. random numbers shared between draws ----------------------------------------------------


class SharedNoiseDecoder(PatchedDecoder):
    """vLLM PR #54282: the draft's Gumbel noise and the recovery resample shared one random offset
    (TV ~0.0125 there, against a noise floor of 0.003-0.0055).

    ``torch.multinomial(probs, 1)`` is itself an exponential race, argmax(probs / E) with
    E ~ Exp(1) per token, so the draft token below is the reference's own draw. The bug: at a
    rejection at position j the residual token is argmax(residual_j / E_j) with the noise E_j that
    drew draft token j, not fresh noise. Knowing draft token j won its race makes the residual
    token depend on it; the acceptance test is untouched.
    """

    share = True
    NEUTRAL: ClassVar[dict] = {"share": False}

    def draft_token(self, logits, sampling, generator):
        probs = probs_from_logits(logits, sampling)
        noise = torch.empty_like(probs).exponential_(generator=self.rng(generator))
        self._noise = [*getattr(self, "_noise", []), noise]  # the step's noises, for the recovery draw
        return (probs / noise).argmax(), probs

    def verify(self, target_probs, draft_probs, draft_tokens, generator):
        generator = self.rng(generator)
        gamma = draft_tokens.shape[0]
        noises, self._noise = self._noise[-gamma:], []
        uniforms = draw_uniforms(gamma, target_probs.dtype, generator)
        n_accepted = accepted_prefix_length(uniforms < accept_probs(target_probs[:gamma], draft_probs, draft_tokens))
        dist = next_dists(target_probs, draft_probs)[n_accepted]
        n = int(n_accepted)
        shared = self.share and n < gamma  # BUG: the noise that drew draft token n draws the residual token too
        noise = noises[n] if shared else torch.empty_like(dist).exponential_(generator=generator)
        return n_accepted, (dist / noise).argmax()


def inverse_cdf(probs, uniform):
    """(vocab,), 0-d in [0, 1) -> the token whose CDF interval holds ``uniform`` (token-id order)."""
    cdf = probs.cumsum(dim=-1)
    return torch.searchsorted(cdf, (uniform * cdf[-1]).view(1), right=True).clamp(max=probs.shape[-1] - 1)[0]


class SharedUniformDecoder(PatchedDecoder):
    """vLLM PR #54282 in inverse-CDF form: the draft token at position j is drawn by inverse CDF
    from a uniform u_j, and at a rejection at j the residual token is drawn by inverse CDF with the
    same u_j, so it lands near the rejected token in the vocabulary order.

    Its neutral form draws every token by inverse CDF with a fresh uniform: exact in law, but not the
    reference's tokens (torch.multinomial is an exponential race). The bias depends on the order of
    the vocabulary, so on a ``table_pair`` it differs between states.
    """

    share = True
    NEUTRAL: ClassVar[dict] = {"share": False}

    def draft_token(self, logits, sampling, generator):
        probs = probs_from_logits(logits, sampling)
        uniform = torch.rand((), generator=self.rng(generator), dtype=probs.dtype)
        self._uniforms = [*getattr(self, "_uniforms", []), uniform]
        return inverse_cdf(probs, uniform), probs

    def verify(self, target_probs, draft_probs, draft_tokens, generator):
        generator = self.rng(generator)
        gamma = draft_tokens.shape[0]
        kept, self._uniforms = self._uniforms[-gamma:], []
        uniforms = draw_uniforms(gamma, target_probs.dtype, generator)
        n_accepted = accepted_prefix_length(uniforms < accept_probs(target_probs[:gamma], draft_probs, draft_tokens))
        n = int(n_accepted)
        shared = self.share and n < gamma  # BUG: draft token n's uniform reused for the residual draw
        uniform = kept[n] if shared else torch.rand((), generator=generator, dtype=target_probs.dtype)
        return n_accepted, inverse_cdf(next_dists(target_probs, draft_probs)[n], uniform)


# --- 2. acceptance in reduced precision ----------------------------------------------------------


class AcceptBf16Decoder(_AcceptDecoder):
    """The accept test run in the model's dtype: ``u.bfloat16() < ratio.bfloat16()``, both rounded to
    nearest. A ratio of 1 becomes a rejection when u rounds up to 1.0 (u >= 1 - 2**-9), and every
    other ratio is moved to the midpoint below its bf16 neighbour: biases of order 2**-9.
    """

    dtype = torch.bfloat16
    NEUTRAL: ClassVar[dict] = {"dtype": None}

    def accepts(self, uniforms, ratio):
        if self.dtype is None:
            return uniforms < ratio
        return uniforms.to(self.dtype) < ratio.to(self.dtype)  # BUG: both rounded to bf16


class UniformBf16Decoder(_AcceptDecoder):
    """The uniform drawn in the model's dtype, as ``torch.rand(..., dtype=probs.dtype)`` does when the
    probabilities are bf16. torch's bf16 uniform is a float32 uniform rounded to nearest with 1.0
    wrapped to 0: 2,304 values, 2**-9 of its mass at exactly 0, steps of 2**-8 near 1. So
    P(u < ratio) is every ratio > 0 moved up by up to ~2**-8: acceptance slightly too generous.
    (It also draws from the generator differently, so its tokens part from the reference's at once.)
    """

    dtype = torch.bfloat16
    NEUTRAL: ClassVar[dict] = {"dtype": None}

    def verify(self, target_probs, draft_probs, draft_tokens, generator):
        if self.dtype is None:
            return super().verify(target_probs, draft_probs, draft_tokens, generator)
        generator = self.rng(generator)
        gamma = draft_tokens.shape[0]
        uniforms = draw_uniforms(gamma, self.dtype, generator).to(target_probs.dtype)  # BUG: a bf16 draw
        ratio = accept_probs(target_probs[:gamma], draft_probs, draft_tokens)
        n_accepted = accepted_prefix_length(uniforms < ratio)
        return n_accepted, sample(next_dists(target_probs, draft_probs)[n_accepted].unsqueeze(0), generator)[0]

    def accepts(self, uniforms, ratio):
        return uniforms < ratio


# --- 3. a miscalibrated accept probability ------------------------------------------------------


class AcceptScaledDecoder(_AcceptDecoder):
    """min(1, 1.05 * target / draft): acceptance 5% too generous, the residual left as it was."""

    scale = 1.05
    NEUTRAL: ClassVar[dict] = {"scale": 1.0}

    def accepts(self, uniforms, ratio):
        return uniforms < (self.scale * ratio).clamp(max=1.0)  # BUG: scaled


class AcceptShiftedDecoder(_AcceptDecoder):
    """min(1, target / draft + 0.02): an additive slack (a tolerance) on the ratio; tokens the target
    gives probability 0 are accepted 2% of the time."""

    shift = 0.02
    NEUTRAL: ClassVar[dict] = {"shift": 0.0}

    def accepts(self, uniforms, ratio):
        return uniforms < (ratio + self.shift).clamp(max=1.0)  # BUG: shifted


class UniformInclusiveDecoder(_AcceptDecoder):
    """SGLang #35771: ``u <= ratio`` instead of ``u < ratio``, so a draft token with target probability 0
    is accepted when the uniform is exactly 0. torch's float64 uniform is k / 2**53, so that (and
    u == ratio) has probability 2**-53: unreachable by any sampling test, caught by a unit test."""

    inclusive = True
    NEUTRAL: ClassVar[dict] = {"inclusive": False}

    def accepts(self, uniforms, ratio):
        if self.inclusive:
            return uniforms <= ratio  # BUG: inclusive
        return uniforms < ratio


# --- 4. warpers that differ from the target's, on both sides -------------------------------------


def warp_top_p_first(logits, sampling):
    """Temperature, top-p, then top-k. The same set as a nucleus computed on the top-k tokens'
    probabilities before top-k's renormalisation (both keep the top-k tokens whose full-distribution
    mass before them is < top_p). The reference takes the nucleus of the renormalised top-k law."""
    logits = logits.to(probs_dtype(logits)) / sampling.temperature
    nucleus = warp_logits(logits, replace(sampling, temperature=1.0, top_k=0))  # BUG: top-p before top-k
    return warp_logits(nucleus, replace(sampling, temperature=1.0, top_p=1.0))


def warp_nucleus_exclusive(logits, sampling):
    """The nucleus stops before the token that crosses top_p (cumulative mass <= top_p kept, the most
    likely token always): the classic filter without its "shift right by one" step."""
    logits = warp_logits(logits, replace(sampling, top_p=1.0))
    if sampling.top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    remove_sorted = sorted_logits.softmax(dim=-1).cumsum(dim=-1) > sampling.top_p  # BUG: crossing token removed
    remove_sorted[..., 0] = False
    return logits.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), -math.inf)


class WarperDecoder(PatchedDecoder):
    """Draft and target warped by ``warp`` (the same wrong way): lossless with respect to the wrongly
    warped target, so the output's law is that target's, not the reference's. Only top-k and top-p
    warpers are affected, so these mutants differ only under those settings."""

    warp = staticmethod(warp_logits)

    def draft_token(self, logits, sampling, generator):
        probs = self.warp(logits, sampling).softmax(dim=-1)
        return sample(probs.unsqueeze(0), self.rng(generator))[0], probs

    def target_probs(self, target_logits, sampling):
        return self.warp(target_logits, sampling).softmax(dim=-1)

    def _target_step(self, seq, length, sampling, generator):
        logits = self._target.forward(seq[self._target.length : length])[-1]
        if sampling.greedy:
            token = logits.argmax()
        else:
            token = sample(self.warp(logits, sampling).softmax(dim=-1).unsqueeze(0), self.rng(generator))[0]
        check_finite(bool(torch.isfinite(logits).all()), "target")
        seq[length] = token
        return [int(token)]


class WarperOrderDecoder(WarperDecoder):
    """SGLang PR #36173 (top-k, renormalise, then top-p: a wrong nucleus): top-p before top-k."""

    warp = staticmethod(warp_top_p_first)  # BUG
    NEUTRAL: ClassVar[dict] = {"warp": staticmethod(warp_logits)}


class TopPBoundaryDecoder(WarperDecoder):
    """The nucleus without the token that crosses top_p (on both sides).

    The literal ``>`` for ``>=`` on the mass before a token (the reference's test) differs only when
    that mass equals top_p exactly, which no pair of the suite produces; this is the reachable form.
    """

    warp = staticmethod(warp_nucleus_exclusive)  # BUG
    NEUTRAL: ClassVar[dict] = {"warp": staticmethod(warp_logits)}


# --- 6. a warper applied to the draft's probabilities but not to its sampling -----------------------


class DraftSampledUnwarpedDecoder(PatchedDecoder):
    """The draft token is drawn from the raw softmax (no temperature, top-k or top-p) while the warped
    probabilities are what the verifier is told (the mirror image of transformers #47932)."""

    unwarped = True
    NEUTRAL: ClassVar[dict] = {"unwarped": False}

    def draft_token(self, logits, sampling, generator):
        probs = probs_from_logits(logits, sampling)
        drawn_from = logits.to(probs.dtype).softmax(dim=-1) if self.unwarped else probs  # BUG: unwarped
        return sample(drawn_from.unsqueeze(0), self.rng(generator))[0], probs


SUBTLE_MUTANTS = {
    "shared_noise": SharedNoiseDecoder,
    "shared_uniform": SharedUniformDecoder,
    "accept_bf16": AcceptBf16Decoder,
    "uniform_bf16": UniformBf16Decoder,
    "accept_scaled": AcceptScaledDecoder,
    "accept_shifted": AcceptShiftedDecoder,
    "uniform_inclusive": UniformInclusiveDecoder,
    "warper_order": WarperOrderDecoder,
    "top_p_boundary": TopPBoundaryDecoder,
    "draft_sampled_unwarped": DraftSampledUnwarpedDecoder,
}


def neutral(name):
    """The mutant ``name`` with its bug switched off (a subclass with the ``NEUTRAL`` attributes)."""
    cls = SUBTLE_MUTANTS[name]
    return type(f"Neutral{cls.__name__}", (cls,), dict(cls.NEUTRAL))


if __name__ == "__main__":
    from .subtle_mutant_tv import main

    main()
