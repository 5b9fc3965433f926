"""The exact law of a tree step, by enumeration: each scheme is lossless, the chain is its special case.

``pytest_specdec.law.tree`` enumerates every draft tree the draft can draw (each node's children
i.i.d., without replacement, or its top-k) and computes each sibling's acceptance and the residuals
with the reference's own pure functions, then composes steps into the law of the first 4 tokens of
a decode. Lossless means that law is the target's own: total variation 0, to float64 rounding. No
sampling, so no false positives.
"""

from __future__ import annotations

import pytest
import torch

from pytest_specdec.law import stats
from pytest_specdec.law import tree as tree_law
from reference_impl.sampling import SamplingConfig
from reference_impl.tree import RULES, iid_proposal, one_hot_proposal, static_shape
from tests.support.tree_pairs import PROMPT, dynamic_tv, laws, static_tv

pytestmark = pytest.mark.usefixtures("single_torch_thread")
ATOL = 1e-12
SETTINGS = [SamplingConfig(temperature=1.0), SamplingConfig(temperature=0.6, top_k=3)]
SHAPES = [(1,), (3,), (2, 1), (1, 1, 1), (3, 2, 1)]


@pytest.mark.parametrize("sampling", SETTINGS, ids=lambda s: s.describe())
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_scheme_is_lossless(rule, shape, sampling):
    mode, proposal = RULES[rule]
    assert static_tv(static_shape(shape), mode, proposal, sampling) < ATOL


@pytest.mark.parametrize("mode", ["iid", "without_replacement"])
def test_the_eagle_rule_is_lossless_whatever_drew_the_children(mode):
    """With q one-hot the child is accepted with probability residual(x), which leaves the target's law
    whatever law drew x (independently of the verifier's uniforms): lossless, only less often accepted."""
    assert static_tv(static_shape((2, 1)), mode, one_hot_proposal, SETTINGS[0]) < ATOL


def test_the_eagle_rule_on_dynamic_trees_is_lossless():
    """EAGLE-2: a top-k tree grown from the draft's path scores (depth 3, top-4, 6 nodes), vocab 8."""
    assert dynamic_tv(3, 4, 6, one_hot_proposal, SETTINGS[0]) < ATOL


@pytest.mark.parametrize("shape", [(1,), (2, 1), (3, 2, 1)], ids=lambda s: "-".join(map(str, s)))
def test_rejection_sampling_with_draft_probabilities_on_top_k_children_is_not(shape):
    """Companion: verifying deterministic top-k children with min(1, p/q), q the draft's probabilities
    (SpecInfer's rule, made for sampled children), biases the output; the test above would see it."""
    assert static_tv(static_shape(shape), "top_k", iid_proposal, SETTINGS[0]) > 0.05


def random_rows(rows: int, vocab: int, generator: torch.Generator) -> torch.Tensor:
    weights = torch.rand(rows, vocab, generator=generator, dtype=torch.float64) ** 3
    return weights / weights.sum(dim=-1, keepdim=True)


@pytest.mark.parametrize("gamma", [1, 2, 4])
def test_a_chain_is_the_special_case(gamma):
    """A tree of one child per depth drafted i.i.d. gives the chain's closed-form law (``stats.step_law``):
    the same token law at each position and the same accepted-length law, prefix-free rows."""
    generator = torch.Generator().manual_seed(gamma)
    target, draft = random_rows(gamma + 1, 5, generator), random_rows(gamma, 5, generator)
    prompt = (0,)

    def row(table):
        return lambda context: table[len(context) - len(prompt)]

    law = tree_law.tree_step_law(static_shape((1,) * gamma), prompt, row(target), row(draft), mode="iid",
                                 proposal=iid_proposal)
    chain = stats.step_law(target, draft)
    lengths = torch.tensor(tree_law.accepted_length_law(law, gamma), dtype=torch.float64)
    assert torch.allclose(lengths, chain.accepted_length, atol=ATOL)
    for j in range(gamma + 1):  # P(token at j = x | the step emits a token at j)
        at_j = torch.zeros(5, dtype=torch.float64)
        for tokens, p in law.items():
            if len(tokens) > j:
                at_j[tokens[j]] += p
        assert torch.allclose(at_j / at_j.sum(), chain.token_probs[j], atol=ATOL)


def test_more_siblings_accept_longer_paths():
    """The point of a tree: at the same depth, widening a level raises the expected accepted length."""
    mean = {}
    for shape in [(1, 1), (3, 1)]:
        target_at, draft_at, _ = laws(SETTINGS[0])
        law = tree_law.tree_step_law(static_shape(shape), PROMPT, target_at, draft_at, mode="without_replacement",
                                     proposal=RULES["without_replacement"][1])
        mean[shape] = sum(k * p for k, p in enumerate(tree_law.accepted_length_law(law, 2)))
    assert mean[(3, 1)] > mean[(1, 1)] + 0.1, mean
