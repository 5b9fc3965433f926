"""Tree shapes, drafting and greedy verification: deterministic, so every assertion is exact."""

from __future__ import annotations

import itertools

import pytest
import torch

from reference_impl.sampling import SamplingConfig
from reference_impl.tree import (
    InvalidTreeError,
    Tree,
    depths,
    draft_tree,
    grow_topk_tree,
    static_shape,
    tree_step,
    verify_tree_greedy,
)
from tests.support.tree_pairs import ZOO, laws

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_a_static_shape_has_the_branching_per_depth():
    parents = static_shape((4, 2, 2, 1))
    assert len(parents) == 1 + 4 + 8 + 16 + 16
    level = depths(parents)
    kids = [sum(p == node for p in parents) for node in range(len(parents))]
    assert {d: {kids[i] for i in range(len(parents)) if level[i] == d} for d in range(5)} == {
        0: {4}, 1: {2}, 2: {2}, 3: {1}, 4: {0}}
    assert static_shape((1, 1, 1)) == (-1, 0, 1, 2)  # a chain


@pytest.mark.parametrize(("parents", "message"), [((0, 0), "node 0 is the root"), ((-1, 1), "earlier node"),
                                                  ((-1, 0, 3, 1), "earlier node")])
def test_a_malformed_tree_is_refused_with_the_fix(parents, message):
    with pytest.raises(InvalidTreeError, match=message):
        Tree(parents, (0,) * len(parents))


def test_a_tree_needs_one_token_per_node():
    with pytest.raises(InvalidTreeError, match="one token per node"):
        Tree((-1, 0), (3,))


@pytest.mark.parametrize("mode", ["iid", "without_replacement", "top_k"])
def test_drafting_fills_children_by_mode(mode):
    draft_at = laws(SamplingConfig(temperature=1.0))[1]
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        tree, draft_probs = draft_tree(static_shape((3, 2)), 2, lambda path: draft_at((1, *path)), mode, generator)
        for node in range(len(tree.parents)):
            kids = [tree.tokens[c] for c in tree.children(node)]
            if not kids:
                assert draft_probs[node].sum() == 0  # leaves are never drafted from
                continue
            assert torch.equal(draft_probs[node], draft_at((1, *tree.path(node))))
            if mode != "iid":
                assert len(set(kids)) == len(kids)
            if mode == "top_k":
                assert kids == torch.topk(draft_probs[node], len(kids)).indices.tolist()


def test_a_dynamic_tree_keeps_the_best_scored_nodes():
    """EAGLE-2: every kept node's path score beats every dropped candidate's; ancestors come first."""
    _, draft_at, _ = laws(SamplingConfig(temperature=1.0), ZOO)
    tree, _ = grow_topk_tree(3, lambda path: draft_at((0, *path)), depth=3, top_k=3, total=8)
    assert len(tree.parents) == 9 and all(p < i for i, p in enumerate(tree.parents) if i)

    def score(path):
        return float(torch.tensor([draft_at((0, *path[:i]))[path[i]] for i in range(1, len(path))]).prod())

    kept = [score(path) for path in tree.paths()[1:]]
    first = [score((3, t)) for t in range(8) if (3, t) not in set(tree.paths())]
    assert min(kept) >= max(first)  # no dropped first-level candidate scores above a kept node


def greedy_continuation(target_at, context, n):
    out = []
    for _ in range(n):
        out.append(int(target_at((*context, *out)).argmax()))
    return out


@pytest.mark.parametrize("context", list(itertools.product(range(4), repeat=2)))
def test_greedy_verification_keeps_the_target_argmax_path(context):
    """Every emitted token is the target's argmax after the tokens before it; the accepted path is the longest."""
    target_at = laws(None)[0]  # raw logits: greedy needs no warping
    probs_at = laws(SamplingConfig(temperature=1.0))[1]
    generator = torch.Generator().manual_seed(sum(context))
    for mode in ("iid", "top_k"):
        tree, draft_probs = draft_tree(static_shape((3, 2, 1)), context[-1],
                                       lambda path: probs_at((*context[:-1], *path)), mode, generator)
        logits = torch.stack([target_at((*context[:-1], *path)) for path in tree.paths()])
        path, token = tree_step(tree, logits, draft_probs, SamplingConfig(), None)
        emitted = [tree.tokens[i] for i in path] + [token]
        assert emitted == greedy_continuation(target_at, context, len(emitted))
        longest = max(len(p) - 1 for p in tree.paths()
                      if list(p[1:]) == greedy_continuation(target_at, context, len(p) - 1))
        assert len(path) == longest


def test_greedy_verification_stops_at_a_leaf_with_the_bonus():
    logits = torch.tensor([[0.0, 5.0], [5.0, 0.0], [0.0, 5.0]], dtype=torch.float64)
    assert verify_tree_greedy(Tree((-1, 0, 1), (0, 1, 0)), logits) == ([1, 2], 1)
    assert verify_tree_greedy(Tree((-1, 0, 0), (0, 0, 1)), logits) == ([2], 1)  # the second sibling matches


def test_greedy_verification_follows_the_longer_of_two_equal_siblings():
    """Children drafted with replacement can repeat a token; the deeper match wins, wherever it sits."""
    logits = torch.tensor([[0.0, 5.0], [5.0, 0.0], [5.0, 0.0], [0.0, 5.0]], dtype=torch.float64)
    assert verify_tree_greedy(Tree((-1, 0, 0, 2), (0, 1, 1, 0)), logits) == ([2, 3], 1)
