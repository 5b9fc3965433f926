"""The EAGLE question: is top-k tree drafting with deterministic drafts, verified EAGLE's way, lossless?

EAGLE's ``evaluate_posterior`` (SafeAILab/EAGLE, eagle/model/utils.py) tries the top-k children of an
accepted node with ``qx = 1.0``: child x is accepted with probability residual(x), and a rejection sets
residual(x) = 0 and renormalizes. Disputed in EAGLE issues #221, #93, #110. This module measures it on
the ``table`` pair (vocab 8, state = last 2 tokens) against the alternative many re-implementations
use, recursive rejection sampling with the draft's probabilities (min(1, p/q), residual
norm(max(0, p - q))) on the same deterministic children:

- exactly: the total variation between the law of the first 4 decoded tokens and the target's own;
- by sampling: a chi-square of 2-token decodes against the target's law (``decode_fit``).

``python -m tests.support.tree_eagle [n]`` prints both (n sampled decodes per scheme, default 100000).
"""

from __future__ import annotations

import sys

import torch

from pytest_specdec.law import stats
from pytest_specdec.law import tree as tree_law
from reference_impl.sampling import SamplingConfig
from reference_impl.tree import (
    draft_tree,
    grow_topk_tree,
    iid_proposal,
    one_hot_proposal,
    static_shape,
    verify_tree_sampled,
)
from tests.support.tree_pairs import PROMPT, ZOO, dynamic_tv, laws, static_tv

T1 = SamplingConfig(temperature=1.0)
SCHEMES = {  # name -> (tree: a static shape or ("dynamic", depth, top_k, total), proposal)
    "eagle, top-k 4-2-1": ((4, 2, 1), one_hot_proposal),
    "eagle, EAGLE-2 dynamic (depth 3, top-4, 10 nodes)": (("dynamic", 3, 4, 10), one_hot_proposal),
    "rrs with draft q, top-k 4-2-1": ((4, 2, 1), iid_proposal),
    "rrs with draft q, top-k 1 (chain)": ((1,), iid_proposal),
}


def exact_tv(tree, proposal, sampling: SamplingConfig = T1) -> float:
    if tree[0] == "dynamic":
        return dynamic_tv(*tree[1:], proposal, sampling)
    return static_tv(static_shape(tree), "top_k", proposal, sampling, spec=ZOO)


def tree_step_fn(tree, proposal, sampling: SamplingConfig = T1):
    """context, generator -> the tokens one sampled step emits (top-k children, verified with ``proposal``)."""
    target_at, draft_at, _ = laws(sampling, ZOO)

    def step(context, generator):
        def draft_path(path):
            return draft_at((*context[:-1], *path))

        if tree[0] == "dynamic":
            drafted, draft_probs = grow_topk_tree(context[-1], draft_path, *tree[1:])
        else:
            drafted, draft_probs = draft_tree(static_shape(tree), context[-1], draft_path, "top_k")
        target_probs = torch.stack([target_at((*context[:-1], *path)) for path in drafted.paths()])
        path, token = verify_tree_sampled(drafted, target_probs, draft_probs, generator, proposal)
        return [*(drafted.tokens[i] for i in path), token]

    return step


def decode_fit(tree, proposal, n: int, seed: int = 0, length: int = 2, sampling: SamplingConfig = T1):
    """Chi-square of ``n`` sampled decodes of ``length`` tokens against the target's exact law."""
    target_at, _, key = laws(sampling, ZOO)
    exact = tree_law.sequence_law(target_at, PROMPT, length, key)
    counts = tree_law.sample_decodes(tree_step_fn(tree, proposal, sampling), PROMPT, length, n,
                                     torch.Generator().manual_seed(seed))
    return tree_law.step_fit(counts, exact, f"{length}-token decodes")


def minimal_reproducer() -> tuple[float, float]:
    """Vocab 2, one child: p = (0.6, 0.4), q = (0.9, 0.1), the child is q's top-1 token 0.
    -> (P(token 0) under EAGLE's rule, under min(1, p/q)); the target's is 0.6."""
    from reference_impl.tree import Tree

    p = torch.tensor([[0.6, 0.4], [0.5, 0.5]], dtype=torch.float64)
    q = torch.tensor([[0.9, 0.1], [0.0, 0.0]], dtype=torch.float64)
    target_at, draft_at = (lambda c: p[len(c) - 1]), (lambda c: q[len(c) - 1])
    out = []
    for proposal in (one_hot_proposal, iid_proposal):
        law = tree_law.tree_step_law(Tree((-1, 0), (0, 0)).parents, (0,), target_at, draft_at, mode="top_k",
                                     proposal=proposal)
        out.append(sum(prob for tokens, prob in law.items() if tokens[0] == 0))
    return out[0], out[1]


def main(n: int = 100_000) -> None:
    alpha = 1e-3
    for name, (tree, proposal) in SCHEMES.items():
        result = decode_fit(tree, proposal, n)
        reach = stats.detectable_tv(n, result.dof, alpha, 0.9)
        print(f"{name}: exact TV (4 tokens) = {exact_tv(tree, proposal):.3g}; sampled n = {n}: "
              f"p = {result.pvalue:.3g}, observed TV = {result.tv:.4f}, dof = {result.dof}, reach(0.9) = {reach:.4f}")
    eagle, rrs = minimal_reproducer()
    print(f"minimal reproducer (vocab 2, one child): P(token 0) = {eagle:.4f} (EAGLE rule), {rrs:.4f} (min(1, p/q)); "
          "target 0.6")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
