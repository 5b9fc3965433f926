"""Acceptance under history-dependent processing: the reported accepted count against the exact per-state beta.

Without penalties or bias a table pair accepts each draft position with one probability, beta = sum_x min(p, q),
and the accepted count is Binomial(trials, beta) (``sampling_law.acceptance_test``). Penalties and bias make p and
q depend on the whole prefix, so beta changes from state to state. This test fixes the states: each call asks for
three new tokens with gamma 1, so a decoder that takes its first token from the target's prefill and then runs one
step of one draft token reaches exactly one draft position, after the prompt and the first token. Given those
states, the call's accepted count is Bernoulli(beta_state), beta_state computed exactly from both models' processed
laws (``reference_impl.processing``, the same processing for both); the sum over calls is tested against the sum
of betas (normal approximation to a sum of independent Bernoullis, two-sided).

A draft that proposes from the wrong processed law (penalties left out of the draft, say) stays lossless, since
verification corrects it, and no output-law test can see it; its acceptance moves, and this test sees that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

NEW_TOKENS = 3  # the first token, then one step of one draft token and its bonus or correction
GAMMA = 1


@dataclass(frozen=True)
class PerStateAcceptance:
    accepted: int
    trials: int
    expected: float  # sum of beta over the states visited
    variance: float  # sum of beta (1 - beta)
    z: float
    p_value: float

    def rejects(self, alpha: float) -> bool:
        return self.p_value < alpha

    def describe(self) -> str:
        return (f"accepted {self.accepted} of {self.trials} draft positions; the states visited give "
                f"{self.expected:.1f} +- {math.sqrt(self.variance):.1f} (mean beta {self.expected / self.trials:.4f}, "
                f"observed {self.accepted / self.trials:.4f}); z = {self.z:.2f}, p = {self.p_value:.3g}")


def state_betas(target: Any, draft: Any, prompts: list[tuple[int, ...]], sequences: list[list[int]],
                sampling: Any) -> list[float]:
    """beta = sum_x min(p, q) at the state after each prompt and its first new token, from both processed laws."""
    import torch

    from reference_impl.processing import process_logits
    from reference_impl.sampling import probs_from_logits

    states = [(*prompt, tokens[0]) for prompt, tokens in zip(prompts, sequences, strict=True)]
    order = sorted(range(len(states)), key=lambda i: len(states[i]))  # one pass per length, rows in call order after
    laws = []
    for model in (target, draft):
        rows = []
        for length in sorted({len(state) for state in states}):
            ids = torch.tensor([state for state in states if len(state) == length], dtype=torch.long)
            with torch.inference_mode():
                logits = model(input_ids=ids.to(model.device), use_cache=False).logits[:, -1].double().cpu()
            seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, ids, True)
            counts = torch.zeros_like(logits).scatter_(1, ids[:, -1:], 1.0)  # the first new token, generated once
            rows.append(process_logits(logits, sampling, seen, counts, torch.ones(len(ids), dtype=torch.long)))
        laws.append(probs_from_logits(torch.cat(rows), sampling)[torch.argsort(torch.tensor(order))])
    return torch.minimum(*laws).sum(dim=-1).tolist()


def per_state_acceptance_test(accepted: int, rejections: int, betas: list[float]) -> PerStateAcceptance:
    """Two-sided test of ``accepted`` against a sum of independent Bernoulli(beta) trials, one per state."""
    from scipy.stats import norm

    trials = accepted + rejections
    if trials != len(betas):
        raise AssertionError(f"{trials} draft positions reached (accepted + rejections) in {len(betas)} calls of "
                             f"{NEW_TOKENS} tokens at gamma {GAMMA}: this test needs exactly one per call (the first "
                             "token from the target's prefill, then one step of one draft token)")
    expected = sum(betas)
    variance = sum(b * (1 - b) for b in betas)
    z = (accepted - expected) / math.sqrt(variance) if variance else (math.inf if accepted != expected else 0.0)
    return PerStateAcceptance(accepted, trials, expected, variance, z, float(2 * norm.sf(abs(z))))


def per_state_reach(betas: list[float], alpha: float, power: float = 0.99) -> float:
    """Smallest shift of every state's acceptance probability detected with ``power`` at level ``alpha``."""
    from scipy.stats import norm

    return (norm.isf(alpha / 2) + norm.isf(1 - power)) * math.sqrt(sum(b * (1 - b) for b in betas)) / len(betas)
