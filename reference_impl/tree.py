"""Tree and multi-draft verification: the step EAGLE, Medusa, MTP with top-k branching and SpecInfer verify.

A draft tree hangs below the last committed token (node 0, the root). Every node holds one token and
its parent's index; node i's children are the candidates for the token after the path root..i. The
target scores every node in one pass, so ``target_probs[i]`` is its law after the path to node i, and
``draft_probs[i]`` the draft's law there, from which node i's children were drawn.

Verification walks down from the root. At a node it tries the children in order (recursive rejection
sampling, SpecInfer: Miao et al. 2024; SpecTr: Sun et al. 2023): child x is accepted with probability
min(1, residual(x) / proposal(x)); on a rejection the residual becomes norm(max(0, residual - proposal))
and the next sibling is tried. An accepted child becomes the node; when every child is rejected a
token is drawn from the residual; at a leaf the bonus token is drawn from the target at the leaf.

The proposal is the law the child was actually drawn from, given the siblings tried before it:

- ``iid``: children drawn independently (with replacement) from the draft: the proposal is the draft.
- ``without_replacement``: children drawn one after another without replacement (Gumbel-top-k):
  the proposal is the draft with the tokens already tried set to 0, renormalized (Jeon et al. 2024,
  "Recursive Speculative Decoding"). Conditioned on the rejections before it, the child is a draw
  from exactly that law, so each sibling's test is an exact rejection step against the residual.
- ``eagle``: children are the draft's top-k (deterministic): the proposal is one-hot, so the child is
  accepted with probability residual(x) and a rejection sets residual(x) to 0 and renormalizes. This is
  EAGLE's ``evaluate_posterior`` (SafeAILab/EAGLE, eagle/model/utils.py: ``qx = 1.0``, ``gtp[xi] = 0``).

Greedy verification keeps the longest path whose every token is the target's argmax at its parent.
Pure functions on probability tensors and a ``torch.Generator``; the trees are plain tuples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .errors import SpecDecError
from .sampling import SamplingConfig, probs_from_logits, residual_probs, sample

DraftLaw = Callable[[tuple[int, ...]], torch.Tensor]  # path of tokens from the root -> (vocab,) draft probs
Proposal = Callable[[torch.Tensor, Sequence[int], int], torch.Tensor]


class InvalidTreeError(SpecDecError):
    """A tree's parents do not describe a tree rooted at node 0 with every parent before its child."""


@dataclass(frozen=True)
class Tree:
    """A draft tree: ``parents[0] == -1`` (the root, the last committed token), ``parents[i] < i`` otherwise."""

    parents: tuple[int, ...]
    tokens: tuple[int, ...]

    def __post_init__(self) -> None:
        check_parents(self.parents)
        if len(self.tokens) != len(self.parents):
            raise InvalidTreeError(
                f"{len(self.parents)} parents but {len(self.tokens)} tokens: give one token per node"
            )

    def children(self, node: int) -> list[int]:
        return [i for i, parent in enumerate(self.parents) if parent == node]

    def paths(self) -> list[tuple[int, ...]]:
        """Every node's path (``path``), parents first."""
        out: list[tuple[int, ...]] = []
        for node, parent in enumerate(self.parents):
            out.append((*out[parent], self.tokens[node]) if node else (self.tokens[0],))
        return out

    def path(self, node: int) -> tuple[int, ...]:
        """The tokens from the root to ``node``, both included."""
        out = []
        while node >= 0:
            out.append(self.tokens[node])
            node = self.parents[node]
        return tuple(reversed(out))


def check_parents(parents: Sequence[int]) -> None:
    if not parents or parents[0] != -1 or any(not 0 <= p < i for i, p in enumerate(parents) if i):
        raise InvalidTreeError(
            f"parents {tuple(parents)} is not a tree: node 0 is the root (parent -1) and every other node's parent "
            "is an earlier node (breadth-first order gives that)"
        )


def depths(parents: Sequence[int]) -> list[int]:
    """Each node's depth (the root's is 0)."""
    out = [0] * len(parents)
    for i in range(1, len(parents)):
        out[i] = out[parents[i]] + 1
    return out


def static_shape(branching: Sequence[int]) -> tuple[int, ...]:
    """(4, 2, 2, 1) -> parents of the tree where every node at depth d has ``branching[d]`` children, breadth first."""
    if not branching or any(b < 1 for b in branching):
        raise InvalidTreeError(
            f"branching must be >= 1 children per depth, got {tuple(branching)}; a chain is (1,) * gamma"
        )
    parents, frontier = [-1], [0]
    for width in branching:
        next_frontier = []
        for node in frontier:
            for _ in range(width):
                parents.append(node)
                next_frontier.append(len(parents) - 1)
        frontier = next_frontier
    return tuple(parents)


# --- drafting -----------------------------------------------------------------------------------


def draw_children(draft: torch.Tensor, k: int, mode: str, generator: torch.Generator | None) -> list[int]:
    """(vocab,) -> k tokens: ``iid`` (with replacement), ``without_replacement`` or ``top_k`` (deterministic)."""
    if mode == "top_k":
        return torch.topk(draft, k).indices.tolist()
    if mode == "iid":
        return torch.multinomial(draft, k, replacement=True, generator=generator).tolist()
    if mode == "without_replacement":
        return torch.multinomial(draft, k, replacement=False, generator=generator).tolist()
    raise ValueError(f"mode must be 'iid', 'without_replacement' or 'top_k', got {mode!r}")


def draft_tree(
    parents: Sequence[int], root_token: int, draft_at: DraftLaw, mode: str, generator: torch.Generator | None = None
) -> tuple[Tree, torch.Tensor]:
    """Fill a tree shape with draft tokens, parents first -> (tree, draft_probs (nodes, vocab); leaves' rows 0)."""
    check_parents(parents)
    tokens = [root_token] + [-1] * (len(parents) - 1)
    paths: list[tuple[int, ...]] = [(root_token,)] * len(parents)
    rows: list[torch.Tensor | None] = [None] * len(parents)
    for node in range(len(parents)):
        if node:
            paths[node] = (*paths[parents[node]], tokens[node])
        kids = [i for i, p in enumerate(parents) if p == node]
        if not kids:
            continue
        rows[node] = draft_at(paths[node])
        for kid, token in zip(kids, draw_children(rows[node], len(kids), mode, generator), strict=True):
            tokens[kid] = token
    zero = torch.zeros_like(next(r for r in rows if r is not None))
    return Tree(tuple(parents), tuple(tokens)), torch.stack([zero if r is None else r for r in rows])


def grow_topk_tree(
    root_token: int, draft_at: DraftLaw, depth: int, top_k: int, total: int
) -> tuple[Tree, torch.Tensor]:
    """EAGLE-2's dynamic tree: expand the ``top_k`` best frontier nodes by their top-k children for ``depth``
    levels (score = product of draft probabilities along the path), then keep the ``total`` best nodes.

    Deterministic: the tree depends on the draft's probabilities only. -> (tree, draft_probs (nodes, vocab)).
    """
    nodes = [(-1, root_token, 1.0)]  # (parent, token, score)
    frontier = [0]
    probs: dict[int, torch.Tensor] = {}
    for _ in range(depth):
        grown = []
        for node in frontier:
            probs[node] = draft_at(_path(nodes, node))
            top = torch.topk(probs[node], top_k)
            for token, p in zip(top.indices.tolist(), top.values.tolist(), strict=True):
                nodes.append((node, token, nodes[node][2] * p))
                grown.append(len(nodes) - 1)
        frontier = sorted(grown, key=lambda i: -nodes[i][2])[:top_k]
    keep = sorted(sorted(range(1, len(nodes)), key=lambda i: (-nodes[i][2], i))[:total])
    kept = {0, *keep}
    for i in keep:  # a kept node's ancestors are kept (ties in score could drop one)
        while nodes[i][0] >= 0:
            i = nodes[i][0]
            kept.add(i)
    order = sorted(kept)
    index = {old: new for new, old in enumerate(order)}
    parents = tuple(-1 if nodes[i][0] < 0 else index[nodes[i][0]] for i in order)
    tokens = tuple(nodes[i][1] for i in order)
    vocab = probs[0].shape[-1]
    rows = [probs.get(i, torch.zeros(vocab, dtype=probs[0].dtype)) for i in order]
    tree = Tree(parents, tokens)
    has_kids = {p for p in parents if p >= 0}
    rows = [r if i in has_kids else torch.zeros_like(r) for i, r in enumerate(rows)]
    return tree, torch.stack(rows)


def _path(nodes: list[tuple[int, int, float]], node: int) -> tuple[int, ...]:
    out = []
    while node >= 0:
        out.append(nodes[node][1])
        node = nodes[node][0]
    return tuple(reversed(out))


# --- proposals: the law each sibling was drawn from, given the siblings tried before it --------------


def iid_proposal(draft: torch.Tensor, tried: Sequence[int], token: int) -> torch.Tensor:
    return draft


def without_replacement_proposal(draft: torch.Tensor, tried: Sequence[int], token: int) -> torch.Tensor:
    left = draft.clone()
    left[list(tried)] = 0
    return left / left.sum()


def one_hot_proposal(draft: torch.Tensor, tried: Sequence[int], token: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(token), draft.shape[-1]).to(draft.dtype)


RULES: dict[str, tuple[str, Proposal]] = {  # rule -> (how the children are drafted, their proposal)
    "iid": ("iid", iid_proposal),
    "without_replacement": ("without_replacement", without_replacement_proposal),
    "eagle": ("top_k", one_hot_proposal),
}


def sibling_accept(residual: torch.Tensor, proposal: torch.Tensor, token: int) -> torch.Tensor:
    """0-d: min(1, residual(x) / proposal(x)) for the sibling x tried next."""
    return (residual[token] / proposal[token]).clamp(max=1.0)


# --- verification -------------------------------------------------------------------------------


def verify_tree_sampled(
    tree: Tree, target_probs: torch.Tensor, draft_probs: torch.Tensor, generator: torch.Generator,
    proposal: Proposal = iid_proposal,
) -> tuple[list[int], int]:
    """(nodes, vocab) x2 -> (accepted nodes below the root, next token): recursive rejection sampling down the tree."""
    node, path = 0, []
    while True:
        residual, tried = target_probs[node], []
        for child in tree.children(node):  # 1. try the siblings in order, the residual updated after each rejection
            token = tree.tokens[child]
            q = proposal(draft_probs[node], tried, token)
            if torch.rand((), generator=generator, dtype=residual.dtype) < sibling_accept(residual, q, token):
                node = child
                path.append(child)
                break
            residual = residual_probs(residual, q)
            tried.append(token)
        else:  # 2. every child rejected: a token from the residual (at a leaf: the bonus token from the target)
            return path, int(sample(residual.unsqueeze(0), generator)[0])


def verify_tree_greedy(tree: Tree, target_logits: torch.Tensor) -> tuple[list[int], int]:
    """(nodes, vocab) -> (accepted nodes, next token): the longest path of target argmaxes, then the argmax after it.

    Siblings may repeat a token (children drafted with replacement): every matching one is followed.
    """
    best = target_logits.argmax(dim=-1).tolist()

    def longest(node: int) -> list[int]:
        matches = [[child, *longest(child)] for child in tree.children(node) if tree.tokens[child] == best[node]]
        return max(matches, key=len, default=[])

    path = longest(0)
    return path, best[path[-1] if path else 0]


def tree_step(
    tree: Tree, target_logits: torch.Tensor, draft_probs: torch.Tensor, sampling: SamplingConfig,
    generator: torch.Generator | None, rule: str = "iid",
) -> tuple[list[int], int]:
    """The verify half of a tree step: the target's logits at every node, warped like the draft's, then verified."""
    if sampling.greedy:
        return verify_tree_greedy(tree, target_logits)
    target_probs = probs_from_logits(target_logits, sampling)  # the same warping as the draft's
    return verify_tree_sampled(tree, target_probs, draft_probs, generator, RULES[rule][1])
