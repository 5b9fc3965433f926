"""The reference tree decoder on tiny transformers: greedy output equals the target's, token for token
(float64), its counts obey the chain's rules and the tree's, its sampled output follows the target's
exact law, and a tree decoder with a flattened mask, flattened positions or a cache that keeps a
rejected branch is caught by the same greedy test."""

from __future__ import annotations

import pytest
import torch

from pytest_specdec.law import stats
from pytest_specdec.protocol.counters import count_violations
from reference_impl import AutoregressiveDecoder, SamplingConfig
from reference_impl.tree_decoder import TreeDecoder
from tests.support.pairs import cached_pair
from tests.support.tree_mutants import DECODER_MUTANTS

pytestmark = pytest.mark.usefixtures("single_torch_thread")
PROMPTS = ([5, 7, 9, 11], [1, 2], [40])
BRANCHING = (3, 2, 1)
ALPHA = 1e-3


def greedy_mismatches(decoder_class, arch: str, relation: str = "partial", n: int = 24) -> list[str]:
    target, draft = cached_pair(arch, relation)
    baseline, decoder = AutoregressiveDecoder(target), decoder_class(target, draft, branching=BRANCHING)
    out = []
    for prompt in PROMPTS:
        ids = torch.tensor([prompt])
        expected = baseline.generate(ids, max_new_tokens=n).tokens
        result = decoder.generate(ids, max_new_tokens=n)
        if result.tokens != expected:
            out.append(f"{arch} {prompt}: {result.tokens} != {expected}")
        out += count_violations(result.stats, result.tokens, gamma=len(BRANCHING))
    return out


@pytest.mark.parametrize(("arch", "relation"), [(arch, "partial") for arch in ("llama", "gpt2", "qwen2", "mistral")]
                         + [("llama", "identical")])
def test_greedy_tree_decoding_equals_the_target(arch, relation):
    assert greedy_mismatches(TreeDecoder, arch, relation) == []


def test_the_counts_say_what_each_step_did():
    target, draft = cached_pair("llama", "identical")
    result = TreeDecoder(target, draft, branching=BRANCHING).generate(torch.tensor([PROMPTS[0]]), max_new_tokens=9)
    s = result.stats
    assert (s.tree_sizes, s.path_lengths, s.gammas) == ((15, 15), (3, 3), (3, 3))  # identical: every path is full
    assert (s.steps, s.accepted, s.target_forwards) == (2, 6, 3)  # prefill + one pass per step
    bad = type(s)(**{**s.__dict__, "path_lengths": (3, 4)})
    assert any("at most the tree's depth" in v for v in count_violations(bad, result.tokens, 3))


@pytest.mark.parametrize("name", sorted(DECODER_MUTANTS))
def test_each_broken_tree_decoder_fails_greedy_equality(name):
    assert greedy_mismatches(DECODER_MUTANTS[name], "llama")


@pytest.mark.specdec_statistical
def test_sampled_tree_decoding_follows_the_target_law():
    """3-token continuations at T=1, top-k 2 (8 sequences) on the tiny llama pair against the target's exact
    law: n = 3000, ALPHA = 1e-3, fixed seed; detects TV >= 0.052 with power 0.9 (the default run samples the
    decoder on a table pair, below)."""
    n = 3000
    target, draft = cached_pair("llama", "partial")
    decoder = TreeDecoder(target, draft, branching=(2, 1))
    sampling = SamplingConfig(temperature=1.0, top_k=2)
    result = stats.decoder_distribution_test(decoder, target, torch.tensor([PROMPTS[0]]), sampling, n=n, seed=0,
                                             length=3)
    assert stats.detectable_tv(n, result.dof, ALPHA, 0.9) < 0.055
    assert not result.rejects(ALPHA), result.describe()


def test_on_a_table_pair_the_tree_mask_sets_each_node_state():
    """``TableLM`` reads a 4-D mask (a node's state: itself and its parent), so the tree decoder runs on the
    `table` pair: greedy equals the target's, and 3-token sampled continuations (512 sequences, N = 1000,
    ALPHA = 1e-3, seed 0) follow its exact law."""
    from tests.support.tree_pairs import ZOO, pair

    target, draft = pair(ZOO)
    decoder = TreeDecoder(target, draft, branching=(3, 2, 1))
    for prompt in ([1, 2], [3], [5, 6, 7]):
        ids = torch.tensor([prompt])
        assert decoder.generate(ids, max_new_tokens=20).tokens == AutoregressiveDecoder(target).generate(
            ids, max_new_tokens=20).tokens
    result = stats.decoder_distribution_test(decoder, target, torch.tensor([[1, 2]]), SamplingConfig(temperature=1.0),
                                             n=1000, seed=0, length=3)
    assert not result.rejects(ALPHA), result.describe()
