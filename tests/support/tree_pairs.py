"""Table pairs and laws for the tree tests: small enough to enumerate every draft tree exactly."""

from __future__ import annotations

import functools

from pytest_specdec.law import tree as tree_law
from reference_impl.models import TABLE_DRAFT, TABLE_REARRANGEMENT, TABLE_TARGET
from reference_impl.models.table import table_pair
from reference_impl.sampling import SamplingConfig

SMALL = ((1.5, 1.0, 0.3, -0.5), (2.0, 0.8, 0.0, -0.3), (1, 0, 2, 3))  # vocab 4: target, draft logits, rearrangement
ZOO = (TABLE_TARGET, TABLE_DRAFT, TABLE_REARRANGEMENT)  # the `table` pair: vocab 8, acceptance 0.556 at T=1
PROMPT = (1, 2)


@functools.cache
def pair(spec: tuple = SMALL):
    return table_pair(*spec, context=2)


@functools.cache
def laws(sampling: SamplingConfig | None, spec: tuple = SMALL):
    """(target_at, draft_at, key) of a table pair under ``sampling`` (None: raw logits)."""
    target, draft = pair(spec)
    target_at, key = tree_law.table_laws(target, sampling)
    draft_at, _ = tree_law.table_laws(draft, sampling)
    return target_at, draft_at, key


def static_tv(parents, mode: str, proposal, sampling: SamplingConfig, *, length: int = 4, spec: tuple = SMALL) -> float:
    """Exact TV between the first ``length`` tokens of a decode by static-tree steps and the target's own law."""
    target_at, draft_at, key = laws(sampling, spec)

    def step(context):
        return tree_law.tree_step_law(parents, context, target_at, draft_at, mode=mode, proposal=proposal)

    decoded = tree_law.decoded_law(step, PROMPT, length, key)
    return tree_law.total_variation(decoded, tree_law.sequence_law(target_at, PROMPT, length, key))


def dynamic_tv(depth: int, top_k: int, total: int, proposal, sampling: SamplingConfig, *, length: int = 4,
               spec: tuple = ZOO) -> float:
    """The same for EAGLE-2 dynamic trees (``grow_topk_tree``), grown afresh from the draft at every step."""
    from reference_impl.tree import grow_topk_tree

    target_at, draft_at, key = laws(sampling, spec)

    def step(context):
        tree, _ = grow_topk_tree(context[-1], lambda path: draft_at((*context[:-1], *path)), depth, top_k, total)
        return tree_law.tree_step_law(tree.parents, context, target_at, draft_at, mode="top_k", proposal=proposal,
                                      tokens=tree.tokens)

    decoded = tree_law.decoded_law(step, PROMPT, length, key)
    return tree_law.total_variation(decoded, tree_law.sequence_law(target_at, PROMPT, length, key))
