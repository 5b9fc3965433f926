"""The sampled tree verifier against the exact step law, and the broken verifiers it must reject.

``verify_tree_sampled`` runs N steps on a vocab-4 table pair (a 2-1 tree: two children of the root,
one below each) after the prompt (1, 2); the emitted token tuples (accepted path, then the correction
or bonus token) are tested against ``tree_step_law`` by chi-square with pooled bins.

Error rates: one test per rule at ALPHA = 1e-3 (fixed seed, so a pass or fail is reproducible; the
false-positive rate over seeds is ALPHA per test). Reach: with N = 3000 and 15 to 62 degrees of
freedom, any step law at total variation >= REACH from the exact one is detected with power 0.9
(``stats.detectable_tv``, checked below). The mutants (tests/support/tree_mutants.py) sit at TV 0.14
to 0.39 from it; their rates over 20 seeds: docs/trees.md.
"""

from __future__ import annotations

import functools

import pytest
import torch

from pytest_specdec.law import stats
from pytest_specdec.law import tree as tree_law
from reference_impl.sampling import SamplingConfig
from reference_impl.tree import RULES, static_shape, tree_step, verify_tree_sampled
from tests.support import tree_mutants
from tests.support.tree_pairs import PROMPT, laws

pytestmark = pytest.mark.usefixtures("single_torch_thread")
ALPHA = 1e-3
N = 3000
N_MUTANT = 600  # the mutants sit at TV >= 0.14: 600 steps reject each at every seed tried (docs/trees.md)
REACH = 0.075  # TV detected with power 0.9 at N, the worst dof of the three rules
SHAPE = static_shape((2, 1))
T1 = SamplingConfig(temperature=1.0)


def fit(verify, rule: str, n: int, sampling: SamplingConfig = T1, seed: int = 0, logits: bool = False):
    """Chi-square of ``n`` sampled steps of ``verify`` against the exact law of ``rule`` under ``sampling``."""
    mode, proposal = RULES[rule]
    target_at, draft_at, _ = laws(sampling)
    law = tree_law.tree_step_law(SHAPE, PROMPT, target_at, draft_at, mode=mode, proposal=proposal)
    rows_at = laws(None)[0] if logits else target_at  # the verify half of a step gets logits
    generator = torch.Generator().manual_seed(seed)
    counts = tree_law.simulate_tree_steps(verify, SHAPE, PROMPT, rows_at, draft_at, mode=mode, n=n,
                                          generator=generator)
    return tree_law.step_fit(counts, law, f"{rule} tree step, {sampling.describe()}")


@pytest.mark.parametrize("rule", sorted(RULES))
def test_sampled_verification_follows_the_exact_step_law(rule):
    result = fit(functools.partial(verify_tree_sampled, proposal=RULES[rule][1]), rule, N)
    assert stats.detectable_tv(N, result.dof, ALPHA, 0.9) <= REACH
    assert not result.rejects(ALPHA), result.describe()


def test_the_verify_half_warps_the_target_like_the_draft():
    """At T=0.6: ``tree_step`` from raw logits follows the warped law (top-k: the exact tests)."""
    sampling = SamplingConfig(temperature=0.6)

    def verify(tree, logits, draft_probs, generator):
        return tree_step(tree, logits, draft_probs, sampling, generator, "iid")

    result = fit(verify, "iid", N, sampling, logits=True)
    assert not result.rejects(ALPHA), result.describe()


@pytest.mark.parametrize("name", sorted(tree_mutants.VERIFY_MUTANTS))
@pytest.mark.parametrize("rule", ["iid", "eagle"])
def test_each_broken_verifier_is_rejected(name, rule):
    mutant = functools.partial(tree_mutants.VERIFY_MUTANTS[name], proposal=RULES[rule][1])
    result = fit(mutant, rule, N_MUTANT)
    assert result.rejects(ALPHA), f"{name} passed:\n{result.describe()}"


def test_a_verifier_ignoring_temperature_is_rejected():
    """SGLang PR #39253's shape: the draft sampled at T=0.6, the verify warped the target at T=1."""
    sampling = SamplingConfig(temperature=0.6)

    def verify(tree, logits, draft_probs, generator):
        return tree_mutants.temperature_ignored(tree, logits, draft_probs, sampling, generator, "iid")

    result = fit(verify, "iid", N_MUTANT, sampling, logits=True)
    assert result.rejects(ALPHA), result.describe()
