"""Deliberately broken speculative samplers: one per sampling bug class in FIELD-NOTES.

The statistical suite proves its power by rejecting each of these (tests/law/test_mutations.py).
Three levels, matching the three checks:

- pure-function mutants (``accept_fn`` / ``residual_fn``) for the closed-form check;
- ``verify_*``: patched copies of ``reference_impl.sampling.verify_sampled`` (same signature,
  vmap-compatible) for the Monte Carlo check of the rejection step;
- ``*Decoder``: ``PatchedDecoder`` subclasses, each overriding one hook of a faithful copy of the
  reference step, for the end-to-end and seed checks.

Every line that differs from the reference is marked ``# BUG``.
"""

from __future__ import annotations

import torch

from reference_impl.checks import default_generator
from reference_impl.sampling import (
    accept_probs,
    accepted_prefix_length,
    probs_from_logits,
    residual_probs,
    sample,
    verify_greedy,
    verify_sampled,
)
from reference_impl.speculative import SpeculativeDecoder

# --- pure-function mutants (closed-form check) --------------------------------------------------


def accept_inverted(target_probs, draft_probs, draft_tokens):
    """min(1, draft / target): the ratio upside down (papers and codebases give p and q opposite meanings)."""
    return accept_probs(draft_probs, target_probs, draft_tokens)  # BUG: arguments swapped


def residual_unnormalised(target_probs, draft_probs):
    return (target_probs - draft_probs).clamp_min(0)  # BUG: not normalised


def residual_from_target(target_probs, draft_probs):
    return target_probs  # BUG: the target instead of norm(max(0, target - draft))


def residual_unclamped(target_probs, draft_probs):
    residual = target_probs - draft_probs  # BUG: no max(0, .)
    return residual / residual.sum(dim=-1, keepdim=True)


# --- rejection-step mutants (Monte Carlo check); all share verify_sampled's signature ----------


def _finish(target_probs, next_dists, n_accepted, generator):
    return n_accepted, sample(next_dists[n_accepted].unsqueeze(0), generator)[0]


def _residual_then_bonus(target_probs, draft_probs):
    gamma = draft_probs.shape[0]
    return torch.cat([residual_probs(target_probs[:gamma], draft_probs), target_probs[gamma:]])


def verify_uniform_zero(target_probs, draft_probs, draft_tokens, generator):
    """A hard-coded uniform draw of 0 (a vllm-ascend PR): everything with target > 0 is accepted."""
    gamma = draft_tokens.shape[0]
    uniforms = torch.zeros(gamma, dtype=target_probs.dtype)  # BUG
    n_accepted = accepted_prefix_length(uniforms < accept_probs(target_probs[:gamma], draft_probs, draft_tokens))
    return _finish(target_probs, _residual_then_bonus(target_probs, draft_probs), n_accepted, generator)


def verify_uniform_reused(target_probs, draft_probs, draft_tokens, generator):
    """One uniform draw reused for every draft position of the step."""
    gamma = draft_tokens.shape[0]
    uniforms = torch.rand(1, generator=generator, dtype=target_probs.dtype).expand(gamma)  # BUG
    n_accepted = accepted_prefix_length(uniforms < accept_probs(target_probs[:gamma], draft_probs, draft_tokens))
    return _finish(target_probs, _residual_then_bonus(target_probs, draft_probs), n_accepted, generator)


def verify_residual_unnormalised(target_probs, draft_probs, draft_tokens, generator):
    """max(0, target - draft) left unnormalised and sampled by inverse CDF (as fused kernels do).

    torch.multinomial renormalises its input, so with the reference's ``sample`` this bug is
    harmless; with a sampler that trusts its input to sum to 1 the missing mass lands on the
    last token.
    """
    gamma, vocab = draft_probs.shape
    uniforms = torch.rand(gamma, generator=generator, dtype=target_probs.dtype)
    n_accepted = accepted_prefix_length(uniforms < accept_probs(target_probs[:gamma], draft_probs, draft_tokens))
    residual = (target_probs[:gamma] - draft_probs).clamp_min(0)  # BUG: not normalised
    next_dists = torch.cat([residual, target_probs[gamma:]])
    cdf = next_dists[n_accepted].cumsum(dim=-1)
    uniform = torch.rand(1, generator=generator, dtype=target_probs.dtype)
    return n_accepted, torch.searchsorted(cdf, uniform, right=True).clamp(max=vocab - 1)[0]


def verify_residual_from_target(target_probs, draft_probs, draft_tokens, generator):
    """At a rejection, the next token comes from the target instead of the residual."""
    gamma = draft_tokens.shape[0]
    uniforms = torch.rand(gamma, generator=generator, dtype=target_probs.dtype)
    n_accepted = accepted_prefix_length(uniforms < accept_probs(target_probs[:gamma], draft_probs, draft_tokens))
    return _finish(target_probs, target_probs, n_accepted, generator)  # BUG: target rows, not residuals


def verify_bonus_from_draft(target_probs, draft_probs, draft_tokens, generator):
    """After all gamma accepts, the bonus token comes from the draft's (last) distribution."""
    gamma = draft_tokens.shape[0]
    uniforms = torch.rand(gamma, generator=generator, dtype=target_probs.dtype)
    n_accepted = accepted_prefix_length(uniforms < accept_probs(target_probs[:gamma], draft_probs, draft_tokens))
    next_dists = torch.cat([residual_probs(target_probs[:gamma], draft_probs), draft_probs[-1:]])  # BUG
    return _finish(target_probs, next_dists, n_accepted, generator)


def verify_bonus_dropped(target_probs, draft_probs, draft_tokens, generator):
    """After all gamma accepts, no bonus token (next_token -1: nothing emitted)."""
    n_accepted, next_token = verify_sampled(target_probs, draft_probs, draft_tokens, generator)
    return n_accepted, torch.where(n_accepted == draft_tokens.shape[0], -1, next_token)  # BUG


def verify_draft_one_hot(target_probs, draft_probs, draft_tokens, generator):
    """The draft's probabilities replaced by a one-hot of its token (vLLM #40149)."""
    one_hot = (torch.arange(draft_probs.shape[-1]) == draft_tokens.unsqueeze(-1)).to(draft_probs.dtype)  # BUG
    return verify_sampled(target_probs, one_hot, draft_tokens, generator)


VERIFY_MUTANTS = {
    "uniform_zero": verify_uniform_zero,
    "uniform_reused": verify_uniform_reused,
    "residual_unnormalised": verify_residual_unnormalised,
    "residual_from_target": verify_residual_from_target,
    "bonus_from_draft": verify_bonus_from_draft,
    "bonus_dropped": verify_bonus_dropped,
    "draft_one_hot": verify_draft_one_hot,
}


def greedy_proposal(draft_probs):
    """Draft decoded greedily (transformers #32867): the token is the argmax, the probs are reported as sampled."""
    return torch.zeros_like(draft_probs).scatter(-1, draft_probs.argmax(dim=-1, keepdim=True), 1.0)


# --- decoder mutants (end-to-end and seed checks) -------------------------------------------------


class PatchedDecoder(SpeculativeDecoder):
    """The reference step, copied with hooks (draft_token, target_probs, verify, bonus, rollback, rng).

    Unpatched it is token-for-token the reference decoder (tests/law/test_mutations.py checks that),
    so each subclass below differs from the reference by its one hook.
    """

    name = "patched"

    def draft_token(self, logits, sampling, generator):
        """(vocab,) -> (token, the probabilities the verifier is told the token was drawn from)."""
        probs = probs_from_logits(logits, sampling)
        return sample(probs.unsqueeze(0), self.rng(generator))[0], probs

    def target_probs(self, target_logits, sampling):
        return probs_from_logits(target_logits, sampling)

    def verify(self, target_probs, draft_probs, draft_tokens, generator):
        return verify_sampled(target_probs, draft_probs, draft_tokens, self.rng(generator))

    def bonus(self, next_token, draft_tokens, sampling, generator):
        """Called when all gamma were accepted; returns the bonus token (None: emit none)."""
        return next_token

    def rollback(self, length):
        self._target.rollback(length)
        self._draft.rollback(length)

    def rng(self, generator):
        return generator

    def step(self, seq, length, gamma, sampling, generator):
        pending = seq[self._draft.length : length]
        draft_tokens, draft_probs = [], []
        for _ in range(gamma):
            logits = self._draft.forward(pending)[-1]  # (vocab,)
            if sampling.greedy:
                token = logits.argmax()
            else:
                token, probs = self.draft_token(logits, sampling, generator)
                draft_probs.append(probs)
            draft_tokens.append(token)
            pending = token.view(1)
        draft_tokens = torch.stack(draft_tokens)  # (gamma,)
        verify_input = torch.cat([seq[self._target.length : length], draft_tokens])
        target_logits = self._target.forward(verify_input, keep=gamma + 1)  # (gamma + 1, vocab)
        if sampling.greedy:
            n_accepted, next_token = verify_greedy(target_logits, draft_tokens)
        else:
            target_probs = self.target_probs(target_logits, sampling)
            n_accepted, next_token = self.verify(target_probs, torch.stack(draft_probs), draft_tokens, generator)
        n = int(n_accepted)
        if n == gamma and not sampling.greedy:
            next_token = self.bonus(next_token, draft_tokens, sampling, generator)
        drafted = draft_tokens.tolist()
        seq[length : length + n] = draft_tokens[:n]
        if next_token is None:  # no token after the accepted prefix: re-feed the last accepted token
            self.rollback(length + n - 1)
            return drafted[:n], n
        seq[length + n] = next_token
        self.rollback(length + n)
        return [*drafted[:n], int(next_token)], n

    def _target_step(self, seq, length, sampling, generator):
        return super()._target_step(seq, length, sampling, self.rng(generator) if generator is not None else None)


class GreedyDraftDecoder(PatchedDecoder):
    """transformers #32867: the draft decodes greedily but its sampled distribution enters the ratio."""

    def draft_token(self, logits, sampling, generator):
        return logits.argmax(), probs_from_logits(logits, sampling)  # BUG: argmax, not a draw


class RawLogitDraftProbsDecoder(PatchedDecoder):
    """transformers #47932: the token comes from the warped logits, its probability from the raw ones."""

    def draft_token(self, logits, sampling, generator):
        token, _ = super().draft_token(logits, sampling, generator)
        return token, logits.double().softmax(dim=-1).to(logits.dtype)  # BUG: raw logits


class OneHotDraftDecoder(PatchedDecoder):
    """vLLM #40149: the draft's probabilities treated as one-hot."""

    def draft_token(self, logits, sampling, generator):
        token, probs = super().draft_token(logits, sampling, generator)
        return token, torch.zeros_like(probs).scatter(-1, token.view(1), 1.0)  # BUG


class UniformZeroDecoder(PatchedDecoder):
    def verify(self, target_probs, draft_probs, draft_tokens, generator):
        return verify_uniform_zero(target_probs, draft_probs, draft_tokens, generator)  # BUG


class ResidualFromTargetDecoder(PatchedDecoder):
    def verify(self, target_probs, draft_probs, draft_tokens, generator):
        return verify_residual_from_target(target_probs, draft_probs, draft_tokens, generator)  # BUG


class ResidualUnnormalisedDecoder(PatchedDecoder):
    def verify(self, target_probs, draft_probs, draft_tokens, generator):
        return verify_residual_unnormalised(target_probs, draft_probs, draft_tokens, generator)  # BUG


class BonusFromDraftDecoder(PatchedDecoder):
    """After all gamma accepts, the draft runs once more and its token is emitted as the bonus."""

    def bonus(self, next_token, draft_tokens, sampling, generator):
        logits = self._draft.forward(draft_tokens[-1:])[-1]  # BUG: the draft's next distribution
        return self.draft_token(logits, sampling, generator)[0]


class BonusDroppedDecoder(PatchedDecoder):
    """After all gamma accepts, no bonus token: lossless, but each such step emits gamma tokens, not gamma + 1."""

    def bonus(self, next_token, draft_tokens, sampling, generator):
        return None  # BUG


class TargetUnwarpedDecoder(PatchedDecoder):
    """Temperature, top-k and top-p applied to the draft only; the verifier sees the raw target."""

    def target_probs(self, target_logits, sampling):
        return target_logits.softmax(dim=-1)  # BUG: unwarped


class NoRollbackDecoder(PatchedDecoder):
    """Rejected positions stay in both KV caches: the bookkeeping moves back, the cache is not cropped."""

    def rollback(self, length):
        for lm in (self._target, self._draft):
            lm.length = min(lm.length, length)  # BUG: no crop


class RollbackOffByOneDecoder(PatchedDecoder):
    """The target's cache is cropped to one position too many (keeping the first rejected draft
    token) while its bookkeeping says the crop was exact, so the next tokens land one position late."""

    def rollback(self, length):
        self._target.rollback(length + 1)  # BUG: + 1
        self._target.length = min(self._target.length, length)
        self._draft.rollback(length)


class SeedIgnoredDecoder(PatchedDecoder):
    """The caller's generator is ignored; a freshly seeded one is used instead."""

    def rng(self, generator):
        if not hasattr(self, "_own"):
            self._own = default_generator(generator.device)  # BUG
        return self._own


class ReseededPerDrawDecoder(PatchedDecoder):
    """Every draw re-seeds a generator from the same seed (the "global RNG reseeded per draw" bug,
    without touching the real global RNG)."""

    def rng(self, generator):
        return torch.Generator(device=generator.device).manual_seed(generator.initial_seed())  # BUG


DECODER_MUTANTS = {
    "greedy_draft": GreedyDraftDecoder,
    "raw_logit_draft_probs": RawLogitDraftProbsDecoder,
    "draft_one_hot": OneHotDraftDecoder,
    "uniform_zero": UniformZeroDecoder,
    "residual_from_target": ResidualFromTargetDecoder,
    "residual_unnormalised": ResidualUnnormalisedDecoder,
    "bonus_from_draft": BonusFromDraftDecoder,
    "bonus_dropped": BonusDroppedDecoder,
    "target_unwarped": TargetUnwarpedDecoder,
    "no_rollback": NoRollbackDecoder,
    "rollback_off_by_one": RollbackOffByOneDecoder,
    "seed_ignored": SeedIgnoredDecoder,
    "reseeded_per_draw": ReseededPerDrawDecoder,
}


class PrecisionMismatchDecoder(PatchedDecoder):
    """DeepSpec #31: the draft token is drawn from bfloat16-rounded probabilities, the ratio uses float32 ones.

    The bias is of the order of bf16 rounding, far below any sampling test's reach: it is caught by
    checking that the distribution each draft token was drawn from is, bit for bit, the one verified.
    """

    def draft_token(self, logits, sampling, generator):
        probs = probs_from_logits(logits, sampling)
        drawn_from = probs.to(torch.bfloat16).to(probs.dtype)  # BUG: another precision
        return sample(drawn_from.unsqueeze(0), self.rng(generator))[0], probs
