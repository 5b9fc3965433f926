"""Check 2: the rejection step, by sampling.

The reference's ``verify_sampled`` itself (unbatched, vectorised with ``torch.vmap``) runs
``N_CI`` independent steps per scenario, gamma = 4, vocab 8, target and draft differing by
position. Tested, per scenario, with Pearson chi-square (tail pooled, expected counts >= 5):

- positions 0..gamma: the token emitted at j by the steps that reached j, against target_j
  ("none emitted" is an impossible cell, so a dropped bonus token rejects outright);
- tokens emitted per step, against 1 + the truncated geometric accepted-length law.

Error rates: gamma + 2 = 6 tests per scenario, each at ``ALPHA / 6`` (Bonferroni), so a
scenario's false-positive rate is <= ALPHA = 1e-4 and the module's (4 scenarios) <= 4e-4.
Power >= 0.99 (noncentral chi-square bound, ``stats.detectable_tv``) at N_CI = 200,000 steps
against any deviation of total variation >= ``DETECTABLE_TV_CI[scenario][j]`` in position j's
token law (position 0 sees all N steps, later positions only those that reach them), and in
the length law; the ``specdec_statistical`` variant (N_LONG = 2,000,000) detects about a
third of those distances. ``test_stated_power_holds`` recomputes these figures.
"""

from __future__ import annotations

import pytest
import torch

from pytest_specdec.law import stats
from reference_impl.sampling import verify_sampled

ALPHA = 1e-4  # family-wise, per scenario
N_CI = 200_000
N_LONG = 2_000_000
SEED = 20240607
GAMMA, VOCAB = 4, 8

# Smallest TV detected with power >= 0.99 at N_CI, per position 0..gamma, then the length law.
INF = float("inf")  # a single possible bin: any deviation lands on an impossible cell and rejects outright
DETECTABLE_TV_CI = {
    "differ_by_position": (0.009, 0.011, 0.013, 0.017, 0.020, 0.009),
    "sparse": (0.009, 0.015, 0.021, 0.023, 0.025, 0.009),
    "identical": (0.009, 0.009, 0.009, 0.009, 0.009, INF),
    "disjoint": (0.008, INF, INF, INF, INF, INF),
}


def scenario(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(target (gamma + 1, vocab), draft (gamma, vocab)), fixed by the name."""
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    target = (1.5 * torch.randn(GAMMA + 1, VOCAB, generator=g, dtype=torch.float64)).softmax(dim=-1)
    draft = (1.5 * torch.randn(GAMMA, VOCAB, generator=g, dtype=torch.float64)).softmax(dim=-1)
    draft = 0.5 * draft + 0.5 * target[:GAMMA]  # overlapping, so later positions are reached
    if name == "sparse":  # zeros in either distribution, in different places
        target = target * (torch.rand(GAMMA + 1, VOCAB, generator=g) > 0.35)
        draft = draft * (torch.rand(GAMMA, VOCAB, generator=g) > 0.35)
        target[:, 0] += 0.05  # keep every row non-empty
        draft[:, 1] += 0.05
    elif name == "identical":
        draft = target[:GAMMA].clone()
    elif name == "disjoint":
        target[:, VOCAB // 2 :] = 0
        draft[:, : VOCAB // 2] = 0
    elif name != "differ_by_position":
        raise ValueError(name)
    return target / target.sum(-1, keepdim=True), draft / draft.sum(-1, keepdim=True)


SCENARIOS = tuple(DETECTABLE_TV_CI)


def run_check(verify, target, draft, *, n, seed, proposal_probs=None) -> list[stats.GofResult]:
    """``n`` steps of ``verify`` -> the gamma + 2 test results (positions, then tokens per step)."""
    generator = torch.Generator().manual_seed(seed)
    n_accepted, tokens = stats.simulate_steps(verify, target, draft, n, generator, proposal_probs=proposal_probs)
    return stats.rejection_step_tests(target, n_accepted, tokens, stats.step_law(target, draft))


def failures(results: list[stats.GofResult], alpha: float = ALPHA) -> list[stats.GofResult]:
    """The results that reject at the Bonferroni-corrected level."""
    return [r for r in results if r.rejects(alpha / len(results))]


def assert_passes(results: list[stats.GofResult]) -> None:
    failed = failures(results)
    assert not failed, "\n\n".join(r.describe() for r in failed)


@pytest.mark.parametrize("name", SCENARIOS)
def test_rejection_step_follows_the_target(name):
    """N_CI steps; family-wise false-positive rate <= 1e-4; detects the TVs in DETECTABLE_TV_CI."""
    target, draft = scenario(name)
    assert_passes(run_check(verify_sampled, target, draft, n=N_CI, seed=SEED))


@pytest.mark.specdec_statistical
@pytest.mark.parametrize("name", SCENARIOS)
def test_rejection_step_follows_the_target_long(name):
    """N_LONG steps; family-wise false-positive rate <= 1e-4; detects TVs of 0.32 x DETECTABLE_TV_CI."""
    target, draft = scenario(name)
    assert_passes(run_check(verify_sampled, target, draft, n=N_LONG, seed=SEED + 1))


def planned_detectable_tv(name: str, n: int) -> tuple[float, ...]:
    """Per position, then the length law: the TV detected with power 0.99 at the Bonferroni level."""
    target, draft = scenario(name)
    law = stats.step_law(target, draft)
    reach = torch.cat([torch.ones(1, dtype=torch.float64), law.betas.cumprod(0)])
    level = ALPHA / (GAMMA + 2)
    out = []
    for j in range(GAMMA + 1):
        n_j = int(n * reach[j])
        out.append(stats.detectable_tv(n_j, stats.planned_dof(target[j].tolist(), n_j), level))
    out.append(stats.detectable_tv(n, stats.planned_dof(law.accepted_length.tolist(), n), level))
    return tuple(out)


@pytest.mark.parametrize("name", SCENARIOS)
def test_stated_power_holds(name):
    """The docstring's detectable distances are what the power computation gives (rounded up)."""
    planned = planned_detectable_tv(name, N_CI)
    for stated, actual in zip(DETECTABLE_TV_CI[name], planned, strict=True):
        assert actual <= stated + 1e-4, f"{name}: planned {planned}, stated {DETECTABLE_TV_CI[name]}"


def test_pooled_bins_all_expect_at_least_five():
    probs = [0.5, 0.3, 0.1, 0.05, 0.03, 0.015, 0.005, 0.0]
    result = stats.goodness_of_fit([50, 30, 10, 5, 3, 2, 0, 0], probs)
    assert min(result.expected) >= stats.MIN_EXPECTED
    assert result.labels[-1].startswith("other") and result.dof == len(result.expected) - 1
    assert stats.goodness_of_fit([50, 30, 10, 5, 3, 1, 0, 1], probs).pvalue == 0  # a draw of probability 0


def test_power_claim_holds_by_simulation():
    """At the stated detectable TV, the chi-square test rejects a near-worst-case alternative in >= 98% of
    2000 replicates (power 0.99 within Monte Carlo error), and the null at level 0.05 in about 5%."""
    import numpy as np

    target = scenario("differ_by_position")[0][0].numpy()
    n, level = N_CI, ALPHA / (GAMMA + 2)
    tv = stats.detectable_tv(n, stats.planned_dof(target.tolist(), n), level)
    # Worst case of the bound: the shift proportional to the target, + on half the mass and - on the other.
    order = np.argsort(target)
    upper = np.cumsum(target[order]) <= 0.5
    mass_up = target[order][upper].sum()
    shift = np.zeros_like(target)
    shift[order[upper]] = tv * target[order][upper] / mass_up
    shift[order[~upper]] = -tv * target[order][~upper] / (1 - mass_up)
    rng = np.random.default_rng(SEED)

    def rejection_rate(law, alpha):
        draws = rng.multinomial(n, law, size=2000)
        return np.mean([stats.goodness_of_fit(row.tolist(), target.tolist()).rejects(alpha) for row in draws])

    assert rejection_rate(target + shift, level) >= 0.98
    assert 0.03 <= rejection_rate(target, 0.05) <= 0.07
