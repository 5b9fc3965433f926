"""Detection rates of the tree verifier mutants, and the reference's false rejections, over 20 seeds.

``python -m tests.support.tree_mutant_rates`` runs ``tests/tree/test_sampled_verify.py``'s ``fit`` (a 2-1
tree on the vocab-4 table pair, chi-square at ALPHA = 1e-3) with seeds 0..19: each mutant at the
default run's N_MUTANT steps, the reference at N, per rule. Figures: docs/trees.md.
"""

from __future__ import annotations

import functools

import torch

from reference_impl.sampling import SamplingConfig
from reference_impl.tree import RULES, verify_tree_sampled
from tests.support import tree_mutants
from tests.tree.test_sampled_verify import ALPHA, N_MUTANT, N, fit

SEEDS = range(20)


def rate(results) -> str:
    median_tv = sorted(r.tv for r in results)[len(results) // 2]
    return (f"{sum(r.rejects(ALPHA) for r in results)}/{len(results)} rejected, median observed TV {median_tv:.3f}, "
            f"min p {min(r.pvalue for r in results):.3g}")


def main() -> None:
    torch.set_num_threads(1)
    for rule in ("iid", "eagle"):
        for name, mutant in sorted(tree_mutants.VERIFY_MUTANTS.items()):
            verify = functools.partial(mutant, proposal=RULES[rule][1])
            print(f"{rule:>20} {name:<22} {rate([fit(verify, rule, N_MUTANT, seed=s) for s in SEEDS])}")
    sampling = SamplingConfig(temperature=0.6)

    def cold(tree, logits, draft_probs, generator):
        return tree_mutants.temperature_ignored(tree, logits, draft_probs, sampling, generator, "iid")

    results = [fit(cold, "iid", N_MUTANT, sampling, seed=s, logits=True) for s in SEEDS]
    print(f"{'iid':>20} {'temperature_ignored':<22} {rate(results)}")
    for rule in sorted(RULES):
        verify = functools.partial(verify_tree_sampled, proposal=RULES[rule][1])
        print(f"{rule:>20} {'reference':<22} {rate([fit(verify, rule, N, seed=s) for s in SEEDS])}")


if __name__ == "__main__":
    main()
