"""The EAGLE question (EAGLE issues #221, #93, #110): top-k tree drafting with deterministic drafts,
verified EAGLE's way (``qx = 1.0``), is lossless; verified with the draft's probabilities it is not.

On the ``table`` pair (vocab 8, state = last 2 tokens), exactly: the law of the first 4 decoded
tokens against the target's (no sampling, no false positives); by sampling: 2-token decodes against
the target's exact law, chi-square at ALPHA = 1e-3 with a fixed seed (N_CI decodes reach TV 0.072
with power 0.9; the statistical profile's N_FULL reach 0.013). Figures: docs/trees.md.
"""

from __future__ import annotations

import pytest

from pytest_specdec.law import stats
from reference_impl.tree import iid_proposal, one_hot_proposal
from tests.support.tree_eagle import SCHEMES, decode_fit, exact_tv, minimal_reproducer

pytestmark = pytest.mark.usefixtures("single_torch_thread")
ALPHA = 1e-3
N_CI, N_FULL = 3000, 100_000
STATIC, DYNAMIC = (4, 2, 1), ("dynamic", 3, 4, 10)


@pytest.mark.parametrize("tree", [STATIC, DYNAMIC], ids=["top-k 4-2-1", "EAGLE-2 dynamic"])
def test_eagle_verification_of_top_k_trees_is_exactly_lossless(tree):
    assert exact_tv(tree, one_hot_proposal) < 1e-12


def test_rejection_sampling_with_the_draft_probabilities_is_far_from_lossless():
    assert exact_tv(STATIC, iid_proposal) > 0.5  # 0.848: docs/trees.md


def test_the_minimal_reproducer():
    """Vocab 2, one child (q's top-1): the target's P(token 0) is 0.6; min(1, p/q) with q = 0.9 gives 2/3."""
    eagle, rrs = minimal_reproducer()
    assert abs(eagle - 0.6) < 1e-12 and abs(rrs - 2 / 3) < 1e-12


def test_sampled_eagle_decodes_follow_the_target():
    result = decode_fit(STATIC, one_hot_proposal, N_CI)
    assert stats.detectable_tv(N_CI, result.dof, ALPHA, 0.9) < 0.075
    assert not result.rejects(ALPHA), result.describe()


def test_the_same_test_rejects_the_draft_probability_rule():
    result = decode_fit(STATIC, iid_proposal, N_CI)
    assert result.rejects(ALPHA), result.describe()


@pytest.mark.specdec_statistical
@pytest.mark.parametrize("name", [name for name in SCHEMES if name.startswith("eagle")])
def test_eagle_at_full_reach(name):
    tree, proposal = SCHEMES[name]
    result = decode_fit(tree, proposal, N_FULL)
    assert stats.detectable_tv(N_FULL, result.dof, ALPHA, 0.9) < 0.013
    assert not result.rejects(ALPHA), result.describe()
