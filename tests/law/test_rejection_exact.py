"""Check 1: the rejection step is exact, in closed form, to floating-point precision.

For per-position target and draft distributions, ``stats.step_law`` computes the output law of
one speculative step from the reference's own ``accept_probs`` and ``residual_probs``: position j
emits the draft token x with probability draft(x) * min(1, target(x) / draft(x)), else a token
from the residual; the last position emits the bonus token. Each position's law must equal the
target's, whatever the distributions: zeros in either, identical (everything accepted) or
disjoint supports (nothing accepted). No sampling, so no false positives: the tolerance is
float64 rounding.
"""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from pytest_specdec.law import stats

ATOL = 1e-12  # float64 rounding over vocabularies of <= 16 tokens


@st.composite
def distributions(draw, rows: int, vocab: int, zeros: bool = True) -> torch.Tensor:
    """(rows, vocab) float64 probabilities; with ``zeros``, any entry may be exactly 0."""
    weight = st.floats(1e-9, 1.0) | st.just(0.0) if zeros else st.floats(1e-3, 1.0)
    out = []
    for _ in range(rows):
        row = draw(st.lists(weight, min_size=vocab, max_size=vocab))
        if sum(row) == 0:
            row[draw(st.integers(0, vocab - 1))] = 1.0
        out.append(row)
    probs = torch.tensor(out, dtype=torch.float64)
    return probs / probs.sum(dim=-1, keepdim=True)


@st.composite
def step_inputs(draw, relation: str = "any") -> tuple[torch.Tensor, torch.Tensor]:
    """(target (gamma + 1, vocab), draft (gamma, vocab)), rows differing by position."""
    gamma = draw(st.integers(1, 5))
    vocab = draw(st.integers(2, 16))
    target = draw(distributions(gamma + 1, vocab))
    if relation == "identical":
        return target, target[:gamma].clone()
    if relation == "disjoint":
        split = draw(st.integers(1, vocab - 1))
        target_part = draw(distributions(gamma + 1, split))
        draft_part = draw(distributions(gamma, vocab - split))
        target = torch.cat([target_part, torch.zeros(gamma + 1, vocab - split, dtype=torch.float64)], dim=1)
        draft = torch.cat([torch.zeros(gamma, split, dtype=torch.float64), draft_part], dim=1)
        return target, draft
    return target, draw(distributions(gamma, vocab))


def exactness_error(target: torch.Tensor, draft: torch.Tensor, **fns) -> float:
    """max |P(step emits x at j | reaches j) - target_j(x)| over positions and tokens."""
    law = stats.step_law(target, draft, **fns)
    return float((law.token_probs - target).abs().max())


@given(step_inputs())
def test_each_position_emits_the_target_distribution(inputs):
    target, draft = inputs
    law = stats.step_law(target, draft)
    assert exactness_error(target, draft) < ATOL, f"\n{law.token_probs}\n!=\n{target}"
    assert torch.allclose(law.accepted_length.sum(), torch.ones((), dtype=torch.float64), atol=ATOL)


@given(step_inputs("identical"))
def test_identical_distributions_accept_everything(inputs):
    target, draft = inputs
    law = stats.step_law(target, draft)
    gamma = draft.shape[0]
    assert exactness_error(target, draft) < ATOL
    assert torch.allclose(law.betas, torch.ones(gamma, dtype=torch.float64), atol=ATOL)
    assert law.accepted_length[gamma] > 1 - ATOL  # every step emits gamma accepted tokens and the bonus


@given(step_inputs("disjoint"))
def test_disjoint_supports_accept_nothing(inputs):
    target, draft = inputs
    law = stats.step_law(target, draft)
    assert exactness_error(target, draft) < ATOL
    assert torch.all(law.betas == 0)
    assert law.accepted_length[0] == 1  # the first draft token is always rejected: the residual is the target


@given(step_inputs())
def test_acceptance_is_one_minus_total_variation(inputs):
    target, draft = inputs
    gamma = draft.shape[0]
    law = stats.step_law(target, draft)
    one_minus_tv = 1 - 0.5 * (target[:gamma] - draft).abs().sum(dim=-1)
    assert torch.allclose(law.betas, one_minus_tv, atol=ATOL)
    assert torch.allclose(law.betas, stats.acceptance_rates(target[:gamma], draft), atol=ATOL)


@given(st.floats(0.0, 1.0), st.integers(1, 8))
def test_accepted_length_law_is_the_truncated_geometric(beta, gamma):
    law = stats.accepted_length_law(torch.full((gamma,), beta, dtype=torch.float64))
    expected = [beta**k * (1 - beta) for k in range(gamma)] + [beta**gamma]
    assert torch.allclose(law, torch.tensor(expected, dtype=torch.float64), atol=ATOL)
    assert abs(float(law.sum()) - 1) < ATOL
