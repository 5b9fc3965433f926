"""The sampling-law statistics on hand-made inputs: state encoding, rank law, impossible tokens, acceptance edges."""

from __future__ import annotations

import math

import pytest
import torch

from pytest_specdec.law import sampling_law


def test_states_read_the_prompt_then_the_emitted_tokens_newest_first():
    # vocab 3 ("no token" = 3), context 2: state = newest * 4 + previous
    counts = sampling_law.transition_counts([(2,)], [[0, 1]], vocab=3, context=2)
    assert counts.shape == (16, 3)
    first = 2 * 4 + 3  # after the prompt's only token, nothing before it
    second = 0 * 4 + 2
    assert counts[first, 0] == 1 and counts[second, 1] == 1 and int(counts.sum()) == 2
    with pytest.raises(ValueError, match=r"must lie in 0\.\.2"):
        sampling_law.transition_counts([(0,)], [[3]], vocab=3)


def test_rank_law_is_exact_on_permuted_rows_and_sees_a_shift_toward_the_top():
    base = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    probs = torch.stack([base[[0, 1, 2]], base[[2, 0, 1]], base[[1, 2, 0]], base])  # row s: token -> prob
    counts = torch.zeros(4, 3, dtype=torch.long)
    # 1,000 tokens in each of states 0-2 at their exact frequencies: rank counts 500 / 300 / 200 x 3
    for state in range(3):
        counts[state] = (probs[state] * 1000).round().long()
    exact = sampling_law.rank_test(counts, probs)
    assert exact.pvalue > 0.99 and exact.dof == 2
    shifted = counts.clone()
    for state in range(3):  # move 10% of the mass from the least to the most likely token of each state
        order = torch.argsort(-probs[state])
        shifted[state, order[0]] += 100
        shifted[state, order[2]] -= 100
    assert sampling_law.rank_test(shifted, probs).pvalue < 1e-10


def test_a_token_of_probability_zero_rejects_outright():
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], dtype=torch.float64)
    counts = torch.tensor([[50, 49, 1], [20, 30, 50]])
    result = sampling_law.conditional_test(counts, probs)
    assert result.impossible == 1 and result.rejects(1e-300)


def test_acceptance_edges():
    assert sampling_law.acceptance_test(10, 0, 1.0).pvalue == 1.0  # beta 1: every position accepted
    assert sampling_law.acceptance_test(10, 1, 1.0).rejects(1e-9)  # ... a rejection is impossible
    assert sampling_law.acceptance_test(1, 0, 0.0).rejects(1e-9)  # beta 0: an acceptance is impossible
    assert sampling_law.acceptance_test(0, 0, 0.5).pvalue == 1.0  # nothing drafted: nothing to test
    fair = sampling_law.acceptance_test(5_000, 5_000, 0.5)
    assert fair.z == 0 and fair.pvalue == 1.0
    shift = sampling_law.acceptance_reach(10_000, 0.5, 1e-4)
    biased = sampling_law.acceptance_test(round((0.5 + shift) * 10_000), round((0.5 - shift) * 10_000), 0.5)
    assert biased.rejects(1e-4) and math.isclose(biased.z, 2 * shift * 100, rel_tol=1e-3)
