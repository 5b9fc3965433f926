"""The sampling-law tests: every emitted token against the target's exact next-token law, and the
decoder's reported acceptance against its exact law, with stated false-positive rates and reach.

Both tests run on a pair whose next-token law depends only on the previous token (a ``TableLM``
pair from ``reference_impl.models.table``), so the target's exact law of every token is a row of
its table, whatever prefix led there.

- ``conditional_test``: the tokens a decoder emitted, counted by (previous token, token), against
  the target's warped rows: Pearson chi-square per previous token (cells expecting < 5 pooled,
  observations on cells of probability 0 impossible and rejecting outright), summed over previous
  tokens; the sum is chi-square with the summed dof under the null, however the positions were
  reached (the Markov-chain goodness-of-fit test, Anderson & Goodman 1957). Every token is used,
  so a 32-token decode gives 32 observations where the joint sequence law gave one.
  Law compared: the decoder's next-token law given the previous token, pooled over all the tokens
  it emitted. Reach: power >= 0.99 against any decoder whose pooled conditional laws are at mean
  total variation >= ``detectable_tv`` from the target's (the mean weights each previous token by
  how many tokens followed it; TV measured on the test's bins): the noncentrality sum_s n_s
  chi2(q_s, p_s) >= 4 sum_s n_s TV_s^2 >= 4 n (mean TV)^2, and ``stats.power`` bounds the power
  at that noncentrality, conservatively with the largest dof the bins can have (``planned_dof``).
- ``acceptance_test``: when beta = sum_x min(target(x), draft(x)) is the same in every state (a
  ``table_pair``), each draft position a step reaches is accepted with probability beta, whatever
  came before, so the A accepted tokens out of A + R trials (R: steps ending in a rejection) are
  sequential Bernoulli(beta) trials: z = (A - beta T) / sqrt(beta (1 - beta) T) is standard normal
  (martingale central limit theorem; the number of trials may depend on the outcomes). It sees
  acceptance bugs (a miscalibrated or reduced-precision ratio, a reused uniform) far below what
  the output law shows, but it assumes token-level rejection sampling: a lossless decoder with
  another verification scheme (tree or multi-draft verification) fails it by design and should
  deselect it.

``sample_decodes`` (``sample_pool.py``) draws the decodes, on several processes where the
decoder can be rebuilt there. Pure functions of their inputs; torch and scipy imported lazily.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .stats import detectable_tv, goodness_of_fit, pool_bins


@dataclass(frozen=True)
class ConditionalResult:
    """The conditional-law test: the summed chi-square, its dof and p-value, and the per-state tables."""

    name: str
    n: int  # tokens tested
    statistic: float
    dof: int
    pvalue: float
    impossible: int  # tokens of probability 0 under the target's warped law
    per_state: tuple[Any, ...]  # (state, GofResult) for every state that was visited

    def rejects(self, alpha: float) -> bool:
        return self.impossible > 0 or not self.pvalue >= alpha

    @property
    def mean_tv(self) -> float:
        """The observed mean TV (weighted by tokens per state) on the test's bins; it includes sampling noise."""
        return sum(r.n * r.tv for _, r in self.per_state) / self.n if self.n else math.nan

    def describe(self, max_states: int = 4, max_rows: int = 8) -> str:
        head = (
            f"{self.name}: chi2 = {self.statistic:.1f}, dof = {self.dof}, p = {self.pvalue:.3g}, n = {self.n} tokens, "
            f"observed mean TV = {self.mean_tv:.4f}, impossible tokens = {self.impossible}"
        )
        worst = sorted(self.per_state, key=lambda sr: sr[1].pvalue)[:max_states]
        parts = [head, *(r.describe(max_rows) for _, r in worst)]
        return "\n".join(parts)


@dataclass(frozen=True)
class AcceptanceResult:
    accepted: int
    trials: int
    beta: float
    z: float
    pvalue: float

    def rejects(self, alpha: float) -> bool:
        return not self.pvalue >= alpha

    def describe(self) -> str:
        rate = self.accepted / self.trials if self.trials else math.nan
        return (
            f"acceptance: {self.accepted} of {self.trials} draft positions reached were accepted ({rate:.4f}), "
            f"exact beta = {self.beta:.4f}, z = {self.z:+.2f}, p = {self.pvalue:.3g}"
        )


def transition_counts(
    prompts: Sequence[Sequence[int]], sequences: Sequence[Sequence[int]], vocab: int, context: int = 1
) -> Any:
    """((vocab + 1) ** context, vocab) int64 counts of (state, token) over every emitted token.

    A token's state is its ``context`` previous tokens, prompt included, newest first in base
    ``vocab + 1`` with ``vocab`` for "no token" (before the prompt): the row layout of a ``TableLM``'s table.
    """
    import torch

    states, current = [], []
    for prompt, tokens in zip(prompts, sequences, strict=True):
        history = [*prompt, *tokens]
        for i in range(len(prompt), len(history)):
            state = 0
            for back in range(1, context + 1):
                state = state * (vocab + 1) + (history[i - back] if i - back >= 0 else vocab)
            states.append(state)
        current += tokens
    if current and (min(current) < 0 or max(current) >= vocab):
        raise ValueError(f"emitted token ids must lie in 0..{vocab - 1}, got {min(current)}..{max(current)}")
    index = torch.tensor(states, dtype=torch.long) * vocab + torch.tensor(current, dtype=torch.long)
    rows = (vocab + 1) ** context
    return torch.bincount(index, minlength=rows * vocab).view(rows, vocab)


def conditional_test(counts: Any, probs: Any, name: str = "next-token law") -> ConditionalResult:
    """(states, vocab) observed counts against (states, vocab) exact conditional laws (rows sum to 1)."""
    from scipy.stats import chi2

    statistic, dof, impossible, per_state = 0.0, 0, 0, []
    for state, (row, law) in enumerate(zip(counts.tolist(), probs.tolist(), strict=True)):
        if not sum(row):
            continue
        result = goodness_of_fit(row, law, name=f"state {state}")
        per_state.append((state, result))
        impossible += result.impossible
        if math.isfinite(result.statistic):
            statistic += result.statistic
        dof += result.dof
    pvalue = 0.0 if impossible else (float(chi2.sf(statistic, dof)) if dof else 1.0)
    n = int(counts.sum())
    return ConditionalResult(name, n, statistic, dof, pvalue, impossible, tuple(per_state))


def rank_test(counts: Any, probs: Any, name: str = "rank law") -> Any:
    """The emitted tokens' ranks under the target's law in their state (most likely first, ties by id),
    against the law of that rank: one goodness of fit with at most vocab - 1 dof.

    ``counts``: (states, vocab) from ``transition_counts``; ``probs``: (states, vocab) exact rows.
    Expected count of rank r: the sum over tokens of their state's r-th largest probability. When
    every row is a permutation of one vector (a ``table_pair``) the rank law is the same in every
    state and the test is exact; otherwise the ranks are independent but not identically distributed
    and the Pearson statistic is conservative (its variance is at most the multinomial's).
    """
    import torch

    order = torch.argsort(-probs, dim=-1, stable=True)  # (states, vocab): token of rank r in state s
    ranked_counts = counts.gather(1, order).sum(dim=0)  # (vocab,)
    visits = counts.sum(dim=1, keepdim=True).to(probs.dtype)
    ranked_probs = (probs.gather(1, order) * visits).sum(dim=0) / visits.sum()
    labels = [f"rank {r}" for r in range(probs.shape[1])]
    return goodness_of_fit(ranked_counts.tolist(), ranked_probs.tolist(), labels=labels, name=name)


def rank_reach(probs: Any, n_tokens: int, alpha: float, power: float = 0.99) -> float:
    """TV of the rank law detected with ``power`` by ``n_tokens`` tokens (dof: the rank law's bins, largest over
    states)."""
    import torch

    ranked = torch.sort(probs, dim=-1, descending=True).values
    dof = max(max(len(pool_bins([0] * len(row), row, [""] * len(row), n_tokens)[0]) - 1, 0) for row in ranked.tolist())
    return detectable_tv(n_tokens, dof, alpha, power)


def planned_dof(probs: Any, tokens_per_state: Sequence[float]) -> int:
    """The largest dof ``conditional_test`` can have for these laws and (expected) tokens per state."""
    total = 0
    for law, n in zip(probs.tolist(), tokens_per_state, strict=True):
        if n > 0:
            total += max(len(pool_bins([0] * len(law), law, [""] * len(law), max(int(n), 1))[0]) - 1, 0)
    return total


def conditional_reach(probs: Any, n_tokens: int, alpha: float, power: float = 0.99) -> float:
    """Mean TV detected with ``power`` at level ``alpha`` by ``n_tokens`` tokens, every state visited (conservative:
    the dof of a state's bins at ``n_tokens`` draws, the most it can have)."""
    dof = planned_dof(probs, [n_tokens] * probs.shape[0])
    return detectable_tv(n_tokens, dof, alpha, power)


def acceptance_test(accepted: int, rejections: int, beta: float) -> AcceptanceResult:
    """Two-sided z-test of ``accepted`` successes in ``accepted + rejections`` Bernoulli(``beta``) trials."""
    from scipy.stats import norm

    trials = accepted + rejections
    if trials == 0 or not 0 < beta < 1:
        # beta = 1: no rejection may happen; beta = 0: no acceptance may
        wrong = (beta >= 1 and rejections > 0) or (beta <= 0 and accepted > 0)
        return AcceptanceResult(accepted, trials, beta, math.inf if wrong else 0.0, 0.0 if wrong else 1.0)
    z = (accepted - beta * trials) / math.sqrt(beta * (1 - beta) * trials)
    return AcceptanceResult(accepted, trials, beta, z, float(2 * norm.sf(abs(z))))


def acceptance_reach(trials: int, beta: float, alpha: float, power: float = 0.99) -> float:
    """Smallest shift of the per-position acceptance probability from ``beta`` detected with ``power``."""
    from scipy.stats import norm

    return (norm.isf(alpha / 2) + norm.isf(1 - power)) * math.sqrt(beta * (1 - beta) / trials)
