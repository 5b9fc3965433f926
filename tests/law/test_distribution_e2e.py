"""Check 3 on a real transformer pair: the whole decoder's joint sequence law, end to end (statistical profile).

The default run's distribution check is ``tests/law/test_sampling_law.py`` (a table model pair, every
token an observation, TV 0.02); this module is its cross-check on attention models, where the
sampled path's cache rollback runs through real KV caches. It runs with ``-m specdec_statistical``;
``test_identical_pair_accepts_everything`` (exact, no statistics) runs by default.

The decoder under test (from ``specdec_factory``) generates ``N_CI`` continuations of
``LENGTH`` = 4 tokens with gamma = 2 on a tiny pair with an 8-token vocabulary, one generator
seeded with ``SEED``. Their joint law is tested against the target's exact probability of each
of the 8^4 continuations (``stats.sequence_probs``: batched target passes, the reference's
warpers) with Pearson chi-square, the tail pooled so every bin expects >= 5 and continuations
of probability 0 (outside top-k / top-p) impossible. Four steps' worth of tokens cover the
prefill token, a step that rejects and a next step that must continue from the rolled-back
caches, and a step that accepts both draft tokens and adds the bonus token, so the test sees
bugs outside the rejection step: wrong draft probabilities, cache rollback, the bonus token,
warpers applied to one side only.

Error rates: each configuration's test runs at ``ALPHA`` = 1e-4, so the module's family-wise
false-positive rate is <= 4e-4. Power >= 0.99 against any law at total variation >=
``DETECTABLE_TV_CI[config]`` (0.11-0.14) from the target's law on the test's bins
(``stats.detectable_tv``); the ``specdec_statistical`` variant (N_LONG = 10,000 draws, more bins)
detects ``DETECTABLE_TV_LONG[config]`` (0.035-0.052).
``test_stated_power_holds`` recomputes the figures.

A lossless decoder can still be wrong about acceptance (a one-hot draft distribution, a dropped
bonus token): with the draft equal to the target every draft token must be accepted and every
step must emit gamma + 1 tokens, checked exactly by ``test_identical_pair_accepts_everything``.
"""

from __future__ import annotations

import functools

import pytest
import torch

from pytest_specdec.law import stats
from reference_impl.models.tiny import tiny_pair
from reference_impl.sampling import SamplingConfig

ALPHA = 1e-4  # per configuration
N_CI = 1000
N_LONG = 10_000
SEED = 4242
LENGTH = 4
GAMMA = 2
PAIR = dict(
    arch="gpt2", relation="partial", seed=0, vocab_size=8, hidden=16, layers=2, heads=2, init_std=1.0, deep_scale=1.0
)
PROMPT = torch.tensor([[0, 5, 2]])
CONFIGS = {
    "T1": SamplingConfig(temperature=1.0),
    "low_T": SamplingConfig(temperature=0.6),
    "top_k": SamplingConfig(temperature=1.0, top_k=3),
    "top_p": SamplingConfig(temperature=1.0, top_p=0.8),
}
# Smallest TV from the target's sequence law detected with power >= 0.99 at N_CI, per config.
DETECTABLE_TV_CI = {"T1": 0.14, "low_T": 0.12, "top_k": 0.13, "top_p": 0.11}
DETECTABLE_TV_LONG = {"T1": 0.052, "low_T": 0.043, "top_k": 0.048, "top_p": 0.035}


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@functools.cache
def pair():
    """(target, draft), built once per process; the models are never modified."""
    return tiny_pair(**PAIR)


def distribution_check(decoder, target, config: str, *, n: int = N_CI, seed: int = SEED) -> stats.GofResult:
    """The e2e test of ``decoder`` under ``CONFIGS[config]``: ``n`` continuations against the exact law."""
    return stats.decoder_distribution_test(
        decoder, target, PROMPT, CONFIGS[config], n=n, seed=seed, length=LENGTH, gamma=GAMMA
    )


def acceptance_check(decoder, config: str) -> tuple[bool, str]:
    """With draft == target: every draft token accepted, gamma + 1 tokens per step (but the last)."""
    generator = torch.Generator().manual_seed(SEED)
    new_tokens = 1 + 6 * (GAMMA + 1)  # the prefill's token, then six full steps
    result = decoder.generate(
        PROMPT, max_new_tokens=new_tokens, sampling=CONFIGS[config], gamma=GAMMA, generator=generator
    )
    s = result.stats
    ok = s.accepted == s.drafted and s.rejections == 0 and s.steps == 6 and len(result.tokens) == new_tokens
    return (
        ok,
        f"draft == target under {config}: {s.drafted} drafted, {s.accepted} accepted, {s.rejections} "
        f"rejections, {s.steps} steps for {len(result.tokens)} tokens (expected 6 steps of {GAMMA + 1})",
    )


@pytest.fixture(scope="module")
def decoder_under_test(specdec_factory):
    target, draft = pair()
    return target, specdec_factory(target, draft)


@pytest.mark.specdec_statistical
@pytest.mark.parametrize("config", CONFIGS)
def test_decoder_samples_the_target_distribution(decoder_under_test, config):
    """N_CI = 1000 sequences; false-positive rate <= 1e-4; detects TV >= DETECTABLE_TV_CI[config]."""
    result = distribution_check(decoder_under_test[1], decoder_under_test[0], config)
    assert not result.rejects(ALPHA), result.describe()


@pytest.mark.specdec_statistical
@pytest.mark.parametrize("config", CONFIGS)
def test_decoder_samples_the_target_distribution_long(decoder_under_test, config):
    """N_LONG = 10,000 sequences; false-positive rate <= 1e-4; detects TV >= DETECTABLE_TV_LONG[config]."""
    result = distribution_check(decoder_under_test[1], decoder_under_test[0], config, n=N_LONG, seed=SEED + 1)
    assert not result.rejects(ALPHA), result.describe()


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.specdec_verdict("performance")  # acceptance: a lossless decoder can waste drafts
def test_identical_pair_accepts_everything(specdec_factory, config):
    """Exact (no statistics): at beta = 1 the accepted-length law is a point mass at gamma."""
    target, _ = pair()
    ok, detail = acceptance_check(specdec_factory(target, target), config)
    assert ok, detail


def planned_detectable_tv(config: str, n: int) -> float:
    target, _ = pair()
    exact = stats.sequence_probs(target, PROMPT, CONFIGS[config], LENGTH)
    return stats.detectable_tv(n, stats.planned_dof(exact.tolist(), n), ALPHA)


@pytest.mark.parametrize("config", CONFIGS)
def test_stated_power_holds(config):
    for n, stated in ((N_CI, DETECTABLE_TV_CI[config]), (N_LONG, DETECTABLE_TV_LONG[config])):
        planned = planned_detectable_tv(config, n)
        assert planned <= stated, f"{config}, n = {n}: planned {planned:.4f}, stated {stated}"
