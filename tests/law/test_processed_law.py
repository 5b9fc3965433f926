"""Check 2 under history-dependent request features: the decoder under test samples from the target's processed law.

Penalties and logit bias make each token's law depend on its whole prefix, so the table pairs' per-state law
(tests/law/test_sampling_law.py) no longer holds; instead every emitted token is tested against the target's exact
processed law at its prefix by the randomized PIT (``pytest_specdec.law.pit.processed_pit_test``: one
teacher-forced pass per call, the processing of ``reference_impl.processing``, the warpers with min-p). If every
token is drawn from that law the pooled U values are i.i.d. uniform, so a Kolmogorov-Smirnov test is exact at any
sample size.

Per setting the plan is the sampling-law tests' (1,300 calls, prompts of 1-12 tokens, 8-40 new tokens, ~31,000
tokens) on the "main" table pair, drawn on every core. The default run tests ``DEFAULT_RUN`` (presence and frequency
penalties; and every feature at once); ``-m specdec_statistical`` adds each of the others alone. Error rate:
``ALPHA`` = 1e-4 per setting (5 settings: 5e-4 for the module). Reach (``pit.detectable_ks``, DKW): power >= 0.99
against a pooled U law at KS distance >= ``STATED_KS`` from uniform; a decoder sampling laws q_t instead of p_t
moves the U law by at most the mean TV of (p_t, q_t), so this is also a floor on the per-token TV it can see
(``test_stated_reach_holds`` recomputes it).
The companions show the same check rejecting request-feature mutants at the full size or a quarter of it;
``python -m tests.support.processed_law_sweep`` measures the false-positive rate on the exact null and each
mutant's detection rate over 20 seeds (docs/request-features.md).
"""

from __future__ import annotations

import functools
import math

import pytest

from pytest_specdec.law.pit import detectable_ks, processed_pit_test
from pytest_specdec.law.sample_pool import DecoderSource, DecodeSample, decode_plan, sample_decodes
from pytest_specdec.protocol.decoder import DEFAULT_IMPL
from reference_impl.sampling import SamplingConfig
from tests.law.test_sampling_law import NEW_TOKENS, build_pair, pair

ALPHA = 1e-4
SEED = 20_261_207
CALLS = 1_300
STATED_KS = 0.025
SETTINGS = {  # name: (sampling, gamma, the capabilities it needs)
    "repetition": (SamplingConfig(temperature=1.0, repetition_penalty=1.6), 2, ("repetition_penalty",)),
    "presence_frequency": (SamplingConfig(temperature=1.0, presence_penalty=0.3, frequency_penalty=0.8), 4,
                           ("presence_penalty", "frequency_penalty")),
    "logit_bias": (SamplingConfig(temperature=0.8, logit_bias={0: 1.0, 5: -math.inf}), 2, ("logit_bias",)),
    "min_p": (SamplingConfig(temperature=1.0, min_p=0.15), 2, ("min_p",)),
    "all": (SamplingConfig(temperature=0.9, top_k=6, top_p=0.95, min_p=0.05, repetition_penalty=1.3,
                           frequency_penalty=0.1, logit_bias={2: 0.5}), 4,
            ("min_p", "repetition_penalty", "frequency_penalty", "logit_bias")),
}
# shipped bugs, each on the setting its feature acts in, with the fraction of the calls it is run at
MUTANTS, SAMPLED_MUTANTS = "tests.support.request_mutants", "tests.support.sampled_request_mutants"
COMPANIONS = {
    f"{MUTANTS}:DraftTokensUnseenDecoder": ("presence_frequency", 1.0),
    f"{MUTANTS}:PenaltyStateFromLastTokenDecoder": ("presence_frequency", 1 / 4),
    f"{MUTANTS}:BiasOnBonusOnlyDecoder": ("logit_bias", 1 / 4),
    f"{MUTANTS}:PenaltiesIgnoredInVerifyDecoder": ("all", 1 / 4),
    f"{SAMPLED_MUTANTS}:MinPSkippedInVerifyDecoder": ("min_p", 1 / 4),
}


def plan(setting: str, calls: int, seed: int):
    return decode_plan(seed + sorted(SETTINGS).index(setting), calls, 8, NEW_TOKENS)


def draw(impl: str, setting: str, *, calls: int = CALLS, seed: int = SEED, jobs: int | None = None) -> DecodeSample:
    sampling, gamma, _ = SETTINGS[setting]
    source = DecoderSource(impl, functools.partial(build_pair, "main"))
    return sample_decodes(source, plan(setting, calls, seed), sampling, seed=seed, gamma=gamma, jobs=jobs)


def check(sample: DecodeSample, setting: str, seed: int = SEED):
    return processed_pit_test(pair("main")[0], sample.prompts, sample.sequences, SETTINGS[setting][0], seed=seed)


DEFAULT_RUN = ("presence_frequency", "all")  # every feature; each alone in the statistical profile


def needs(setting: str):
    marks = [pytest.mark.specdec_requires(*SETTINGS[setting][2])]
    if setting not in DEFAULT_RUN:
        marks.append(pytest.mark.specdec_statistical)
    return pytest.param(setting, marks=marks, id=setting)


@pytest.mark.parametrize("setting", [needs(name) for name in SETTINGS])
def test_processed_law(specdec_options, setting):
    """Rate <= ALPHA; power >= 0.99 against a pooled PIT law at KS >= STATED_KS from uniform."""
    sample = draw(specdec_options.impl or DEFAULT_IMPL, setting, jobs=specdec_options.sample_jobs)
    result = check(sample, setting)
    assert not result.rejects(ALPHA), result.describe()


@pytest.mark.parametrize("mutant", COMPANIONS, ids=lambda spec: spec.rpartition(":")[2])
def test_the_processed_law_rejects_request_feature_bugs(specdec_options, mutant):
    setting, fraction = COMPANIONS[mutant]
    sample = draw(mutant, setting, calls=round(CALLS * fraction), jobs=specdec_options.sample_jobs)
    result = check(sample, setting)
    assert result.rejects(ALPHA), f"{mutant} passed: {result.describe()}"


@pytest.mark.parametrize("setting", SETTINGS)
def test_stated_reach_holds(setting):
    tokens = sum(call.max_new_tokens for call in plan(setting, CALLS, SEED))
    assert detectable_ks(tokens, ALPHA) <= STATED_KS, f"{tokens} tokens reach only {detectable_ks(tokens, ALPHA):.4f}"
