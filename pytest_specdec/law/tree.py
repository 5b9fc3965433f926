"""Exact laws of a tree step, by enumeration: what a lossless tree verifier must emit.

A context is the tuple of every token so far (prompt and path); ``target_at(context)`` and
``draft_at(context)`` give the (vocab,) float64 laws after it (``table_laws`` builds them from a
``TableLM``). ``key(context)`` names the model state it depends on (the last ``context`` tokens of a
table model), so laws are computed once per state.

- ``tree_step_law``: the probability of every token tuple one step emits (the accepted path's tokens,
  then the correction or bonus token), enumerating the draft's draws of every node's children and
  computing each sibling's acceptance and the residuals from the reference's own pure functions
  (``reference_impl.tree``); ``accepted_length_law`` reads the path length's law off it.
- ``decoded_law``: the law of the first ``n`` tokens of a decode made of such steps, against
  ``sequence_law``, the target's own law of ``n`` tokens. Lossless means total variation 0.

torch is imported where it is used.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from reference_impl.sampling import SamplingConfig

Context = tuple[int, ...]
Law = dict[tuple[int, ...], float]
LawAt = Callable[[Context], "torch.Tensor"]


def table_laws(model: Any, sampling: SamplingConfig | None) -> tuple[LawAt, Callable[[Context], Context]]:
    """A ``TableLM`` -> (context -> its warped next-token law (vocab,) float64, context -> its state key).

    ``sampling=None``: the raw logits instead of the law.
    """
    from reference_impl.sampling import probs_from_logits

    vocab, width = model.config.vocab_size, model.config.context
    rows = model.table.detach().double()
    rows = rows if sampling is None else probs_from_logits(rows, sampling)

    def key(context: Context) -> Context:
        return tuple(context[-width:])

    def law_at(context: Context) -> torch.Tensor:
        state = 0
        for back in range(1, width + 1):
            state = state * (vocab + 1) + (context[-back] if back <= len(context) else vocab)
        return rows[state]

    return law_at, key


def children_draws(draft: torch.Tensor, k: int, mode: str) -> list[tuple[tuple[int, ...], float]]:
    """Every ordered k-tuple of children the draft can draw, with its probability (as ``tree.draw_children``)."""
    import torch

    probs = draft.tolist()
    support = [t for t, p in enumerate(probs) if p > 0]
    if mode == "top_k":
        return [(tuple(torch.topk(draft, k).indices.tolist()), 1.0)]
    if mode == "iid":
        return [(tokens, math.prod(probs[t] for t in tokens)) for tokens in itertools.product(support, repeat=k)]
    if mode == "without_replacement":
        out = []
        for tokens in itertools.permutations(support, min(k, len(support))):
            weight, left = 1.0, 1.0
            for t in tokens:
                weight *= probs[t] / left
                left -= probs[t]
            out.append((tokens, weight))
        return out
    raise ValueError(f"mode must be 'iid', 'without_replacement' or 'top_k', got {mode!r}")


def sibling_outcomes(
    target: torch.Tensor, draft: torch.Tensor, tokens: Sequence[int], proposal: Callable[..., torch.Tensor]
) -> tuple[list[float], float, torch.Tensor]:
    """Siblings ``tokens`` tried in order -> (P(child i accepted), P(all rejected), the residual drawn from then)."""
    from reference_impl.sampling import residual_probs
    from reference_impl.tree import sibling_accept

    residual, reach, accepted, tried = target, 1.0, [], []
    for token in tokens:
        q = proposal(draft, tried, token)
        accept = float(sibling_accept(residual, q, token))
        accepted.append(reach * accept)
        reach *= 1 - accept
        residual = residual_probs(residual, q)
        tried.append(token)
    return accepted, reach, residual


def tree_step_law(
    parents: Sequence[int],
    context: Context,
    target_at: LawAt,
    draft_at: LawAt,
    *,
    mode: str,
    proposal: Callable[..., torch.Tensor],
    tokens: Sequence[int] | None = None,
) -> Law:
    """The law of the tokens one tree step emits after ``context`` (whose last token is the root).

    ``mode``: how each node's children are drafted (``iid``, ``without_replacement``, ``top_k``); with
    ``tokens`` (a fixed tree's, e.g. ``grow_topk_tree``'s) the children are those tokens instead.
    """
    import torch

    kids = defaultdict(list)
    for node, parent in enumerate(parents):
        if parent >= 0:
            kids[parent].append(node)

    def node_law(node: int, here: Context) -> Law:
        target = target_at(here)
        if not kids[node]:  # a leaf: the bonus token
            return {(y,): p for y, p in enumerate(target.tolist()) if p > 0}
        draft = draft_at(here)
        draws = children_draws(draft, len(kids[node]), mode) if tokens is None else [
            (tuple(tokens[c] for c in kids[node]), 1.0)]
        through = torch.zeros(len(kids[node]), target.shape[-1], dtype=torch.float64)  # P(accept child i with token t)
        rejected = torch.zeros_like(target, dtype=torch.float64)
        for drawn, weight in draws:
            accepted, reach, residual = sibling_outcomes(target, draft, drawn, proposal)
            for i, token in enumerate(drawn):
                through[i, token] += weight * accepted[i]
            rejected += weight * reach * residual.double()
        out: Law = defaultdict(float)
        for i, child in enumerate(kids[node]):
            for token in through[i].nonzero().flatten().tolist():
                for rest, p in node_law(child, (*here, token)).items():
                    out[(token, *rest)] += float(through[i, token]) * p
        for y, p in enumerate(rejected.tolist()):
            if p > 0:
                out[(y,)] += p
        return dict(out)

    return node_law(0, tuple(context))


def accepted_length_law(law: Law, max_depth: int) -> list[float]:
    """P(k draft tokens accepted), k = 0..max_depth: a step emitting m tokens accepted m - 1."""
    out = [0.0] * (max_depth + 1)
    for tokens, p in law.items():
        out[len(tokens) - 1] += p
    return out


def decoded_law(
    step_law_at: Callable[[Context], Law], prompt: Context, n: int, key: Callable[[Context], Context]
) -> Law:
    """The law of the first ``n`` tokens of a decode whose every step emits per ``step_law_at(context)``."""
    step_law_at = functools.cache(step_law_at)  # called with state keys only
    memo: dict[tuple[Context, int], Law] = {}

    def rest(context: Context, left: int) -> Law:
        if left == 0:
            return {(): 1.0}
        slot = (key(context), left)
        if slot not in memo:
            out: Law = defaultdict(float)
            for tokens, p in step_law_at(key(context)).items():
                if len(tokens) >= left:
                    out[tokens[:left]] += p
                else:
                    for more, q in rest((*context, *tokens), left - len(tokens)).items():
                        out[(*tokens, *more)] += p * q
            memo[slot] = dict(out)
        return memo[slot]

    return rest(tuple(prompt), n)


def sequence_law(target_at: LawAt, prompt: Context, n: int, key: Callable[[Context], Context]) -> Law:
    """The target's own law of its next ``n`` tokens (one token per step)."""
    def one_token(context: Context) -> Law:
        return {(y,): p for y, p in enumerate(target_at(context).tolist()) if p > 0}

    return decoded_law(one_token, prompt, n, key)


def total_variation(a: Law, b: Law) -> float:
    return 0.5 * sum(abs(a.get(s, 0.0) - b.get(s, 0.0)) for s in a.keys() | b.keys())


def simulate_tree_steps(
    verify: Callable[..., tuple[list[int], int]],
    parents: Sequence[int],
    context: Context,
    target_at: LawAt,
    draft_at: LawAt,
    *,
    mode: str,
    n: int,
    generator: torch.Generator,
) -> dict[tuple[int, ...], int]:
    """``n`` independent tree steps after ``context``: draft (``reference_impl.tree.draft_tree``), then
    ``verify(tree, target_probs, draft_probs, generator)`` -> counts of the emitted token tuples."""
    import torch

    from reference_impl.tree import draft_tree

    def draft_path(path: Context) -> torch.Tensor:
        return draft_at((*context[:-1], *path))

    counts: dict[tuple[int, ...], int] = defaultdict(int)
    for _ in range(n):
        tree, draft_probs = draft_tree(parents, context[-1], draft_path, mode, generator)
        target_probs = torch.stack([target_at((*context[:-1], *path)) for path in tree.paths()])
        path, token = verify(tree, target_probs, draft_probs, generator)
        counts[(*(tree.tokens[i] for i in path), token)] += 1
    return dict(counts)


def step_fit(counts: dict[tuple[int, ...], int], law: Law, name: str) -> Any:
    """Chi-square of sampled step outcomes against the exact step law (``stats.goodness_of_fit``)."""
    from .stats import goodness_of_fit

    cells = sorted(law.keys() | counts.keys())
    return goodness_of_fit([counts.get(c, 0) for c in cells], [law.get(c, 0.0) for c in cells],
                           labels=[",".join(map(str, c)) for c in cells], name=name)


def sample_decodes(
    step: Callable[[Context, torch.Generator], Sequence[int]], prompt: Context, length: int, n: int,
    generator: torch.Generator,
) -> dict[tuple[int, ...], int]:
    """``n`` decodes of ``length`` tokens after ``prompt``, each a run of ``step(context, generator)`` calls
    (one step's emitted tokens each) -> counts of the first ``length`` tokens."""
    counts: dict[tuple[int, ...], int] = defaultdict(int)
    for _ in range(n):
        out: list[int] = []
        while len(out) < length:
            out += step((*prompt, *out), generator)
        counts[tuple(out[:length])] += 1
    return dict(counts)
