"""The near-tie judge: a divergence at a tied position is legitimate, anywhere else it is a bug."""

from __future__ import annotations

import torch

from pytest_specdec.law.numerics import judge_greedy, tie_tolerance
from reference_impl import AutoregressiveDecoder
from reference_impl.models.tiny import tiny_pair

PROMPT = torch.tensor([[3, 17, 42, 8]])


def greedy(target, n=12):
    return AutoregressiveDecoder(target).generate(PROMPT, max_new_tokens=n).tokens


def test_identical_outputs():
    target, _ = tiny_pair("llama", "partial", dtype=torch.float32)
    tokens = greedy(target)
    assert judge_greedy(target, PROMPT, tokens, tokens).kind == "identical"


def test_divergence_at_a_clear_winner_is_a_bug():
    target, _ = tiny_pair("llama", "partial", dtype=torch.float32)
    expected = greedy(target)
    got = [*expected[:3], (expected[3] + 1) % 96, *expected[4:]]
    verdict = judge_greedy(target, PROMPT, got, expected)
    assert verdict.kind == "bug" and verdict.position == 3
    assert verdict.gap > verdict.tolerance
    assert "BUG" in verdict.describe()


def test_divergence_at_an_exact_tie_is_legitimate():
    target, _ = tiny_pair("llama", "partial", dtype=torch.float32)
    expected = greedy(target)
    winner, twin = expected[0], (expected[0] + 1) % 96
    with torch.no_grad():
        head = target.get_output_embeddings().weight
        head[twin] = head[winner]  # the two tokens now tie wherever the winner leads
    expected = greedy(target)
    got = [twin if token == winner else token for token in expected[:1]]
    verdict = judge_greedy(target, PROMPT, got, expected[:1])
    assert verdict.kind == "near_tie" and verdict.gap == 0.0


def test_float64_demands_strict_equality():
    target, _ = tiny_pair("llama", "partial", dtype=torch.float64)
    expected = greedy(target)
    with torch.no_grad():
        head = target.get_output_embeddings().weight
        head[(expected[0] + 1) % 96] = head[expected[0]]
    got = [(expected[0] + 1) % 96]
    assert judge_greedy(target, PROMPT, got, expected[:1]).kind == "bug"


def test_tolerance_grows_with_lower_precision():
    assert tie_tolerance(torch.float32, 10) < tie_tolerance(torch.float16, 10) < tie_tolerance(torch.bfloat16, 10)
