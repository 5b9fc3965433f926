"""Broken tree verifiers, one shipped bug shape each (marked ``# BUG``), with ``verify_tree_sampled``'s signature.

Each takes (tree, target_probs, draft_probs, generator, proposal) and returns (accepted nodes, next token),
so the same sampling tests run them and the reference. ``TEMPERATURE_IGNORED`` is a whole verify half
(``tree_step``'s signature): the bug lives where logits become probabilities.
"""

from __future__ import annotations

import torch

from reference_impl.sampling import SamplingConfig, probs_from_logits, residual_probs, sample
from reference_impl.tree import RULES, Tree, iid_proposal, sibling_accept, verify_tree_greedy
from reference_impl.tree_decoder import TreeDecoder, keep_path, tree_mask


def _walk(tree, target_probs, draft_probs, generator, proposal, *, row, bonus_row, tries=1, update=True):
    """The reference walk with its bug points as arguments: which target row verifies a node's children
    (``row``), which row the bonus comes from at a leaf (``bonus_row``), uniforms per sibling, residual update."""
    node, path = 0, []
    while True:
        residual, tried = target_probs[row(tree, node)], []
        children = tree.children(node)
        for child in children:
            token = tree.tokens[child]
            q = proposal(draft_probs[node], tried, token)
            accept = sibling_accept(residual, q, token)
            if any(torch.rand((), generator=generator, dtype=residual.dtype) < accept for _ in range(tries)):
                node = child
                path.append(child)
                break
            if update:
                residual = residual_probs(residual, q)
            tried.append(token)
        else:
            if not children:
                residual = target_probs[bonus_row(tree, node)]
            elif not update:
                residual = residual_probs(residual, q)
            return path, int(sample(residual.unsqueeze(0), generator)[0])


def _own(tree: Tree, node: int) -> int:
    return node


def _parent(tree: Tree, node: int) -> int:
    return max(tree.parents[node], 0)


def parent_distribution(tree, target_probs, draft_probs, generator, proposal=iid_proposal):
    """TensorRT-LLM PR #15098's shape: a node's children verified against its parent's logits slice."""
    return _walk(tree, target_probs, draft_probs, generator, proposal, row=_parent, bonus_row=_own)  # BUG


def residual_not_updated(tree, target_probs, draft_probs, generator, proposal=iid_proposal):
    """Every sibling tested against the target itself; only the final draw uses one residual."""
    return _walk(tree, target_probs, draft_probs, generator, proposal, row=_own, bonus_row=_own, update=False)  # BUG


def sibling_tried_twice(tree, target_probs, draft_probs, generator, proposal=iid_proposal):
    """A rejected sibling gets a second uniform before the residual moves on."""
    return _walk(tree, target_probs, draft_probs, generator, proposal, row=_own, bonus_row=_own, tries=2)  # BUG


def bonus_from_parent(tree, target_probs, draft_probs, generator, proposal=iid_proposal):
    """At an accepted leaf, the bonus token drawn from the leaf's parent's distribution."""
    return _walk(tree, target_probs, draft_probs, generator, proposal, row=_own, bonus_row=_parent)  # BUG


def temperature_ignored(tree, target_logits, draft_probs, sampling: SamplingConfig, generator, rule="iid"):
    """SGLang PR #39253's shape: the verify warps the target at temperature 1 while the draft sampled at T."""
    if sampling.greedy:
        return verify_tree_greedy(tree, target_logits)
    plain = SamplingConfig(temperature=1.0, top_k=sampling.top_k, top_p=sampling.top_p)  # BUG
    return _walk(tree, probs_from_logits(target_logits, plain), draft_probs, generator, RULES[rule][1],
                 row=_own, bonus_row=_own)


VERIFY_MUTANTS = {
    "parent_distribution": parent_distribution,
    "residual_not_updated": residual_not_updated,
    "sibling_tried_twice": sibling_tried_twice,
    "bonus_from_parent": bonus_from_parent,
}


# --- the tree decoder's cache and attention (reference_impl.tree_decoder), one bug each ------------------


def flattened_mask(committed: int, fed: int, parents: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """SGLang PR #39287's shape: nodes masked by flattened index (causal over the nodes), so siblings see each other."""
    chain = tuple(range(-1, len(parents) - 1))  # BUG: node i's "ancestors" are every earlier node
    return tree_mask(committed, fed, chain, dtype)


def flattened_positions(committed: int, parents: tuple[int, ...]) -> list[int]:
    """Node positions by flattened index instead of depth."""
    return [committed - 1 + i for i in range(1, len(parents))]  # BUG


def keep_first_nodes(lm, committed: int, path: list[int]) -> None:
    """Compaction that keeps the first len(path) nodes fed (a rejected branch) instead of the accepted path."""
    keep_path(lm, committed, list(range(1, len(path) + 1)))  # BUG


class FlattenedMask(TreeDecoder):
    mask_fn = staticmethod(flattened_mask)


class FlattenedPositions(TreeDecoder):
    positions_fn = staticmethod(flattened_positions)


class KeepsRejectedBranch(TreeDecoder):
    compact = staticmethod(keep_first_nodes)


DECODER_MUTANTS = {"flattened_mask": FlattenedMask, "flattened_positions": FlattenedPositions,
                   "keeps_rejected_branch": KeepsRejectedBranch}
