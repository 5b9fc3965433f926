"""Check 3: the decoder under test samples from the target's law, token by token, to a total variation of 0.02.

The decoder named by ``--specdec-impl`` (default: the reference) decodes on a ``TableLM`` pair
(``reference_impl.models.table``): real transformers models, loaded and run like any other, whose
next-token logits depend only on the previous token, so the target's exact law of every emitted
token is a row of its table and every token is an observation. Per sampling setting the plan
(``pytest_specdec.sample_pool.decode_plan``) is 1,900-2,700 calls with prompts of 1-12 tokens and
8-40 new tokens each (~24 on average, so decodes end at every position of a step), one gamma per
setting (1 to 4), sampled on every core from seeds derived from ``SEED``. Two tests share the sample:

- ``test_next_token_law``: the (previous token, token) counts against the target's warped rows
  (``sampling_law.conditional_test``). Law compared: the decoder's next-token law given the
  previous token, pooled over all emitted tokens. Power >= 0.99 against a mean TV >=
  ``STATED_TV_CI`` = 0.02 (``specdec_statistical`` profile, 4x the calls: 0.01).
- ``test_acceptance_law``: the decoder's reported accepted count against Binomial(trials, beta),
  beta = sum min(target, draft), the same in every state of this pair by construction
  (``sampling_law.acceptance_test``). Detects a shift of the per-position acceptance probability
  of ``STATED_BETA_SHIFT_CI``. It assumes token-level rejection sampling; a decoder with another
  lossless verification scheme (tree, multi-draft) deselects it (``-k "not acceptance_law"``).

Error rates: each test runs at ``ALPHA`` / 2 = 5e-5, so each setting's false-positive rate is
<= 1e-4 (Bonferroni) and the module's (6 settings) <= 6e-4. ``test_stated_reach_holds`` recomputes
the stated figures; ``tests/sampling_law_sweep.py`` measures the false-positive rate and the bug
catalogue's detection rates (docs/sampling-law.md).
"""

from __future__ import annotations

import functools

import pytest

from pytest_specdec import sampling_law
from pytest_specdec.protocol import DEFAULT_IMPL
from pytest_specdec.sample_pool import DecoderSource, DecodeSample, decode_plan, sample_decodes
from reference_impl.sampling import SamplingConfig

ALPHA = 1e-4  # per sampling setting, split evenly between its two tests
SEED = 20_261_130
VOCAB = 8
# Target and draft rows are permutations of these logits; the draft is sharper and puts its top token
# on the target's third (``rearrangement``), so a step rejects often and the residual carries real mass.
PAIR = dict(
    target_logits=(2.0, 1.5, 1.0, 0.6, 0.3, 0.0, -0.5, -1.0),
    draft_logits=(3.0, 2.0, 1.2, 0.5, 0.0, -0.5, -1.0, -2.0),
    rearrangement=(2, 0, 1, 3, 4, 5, 6, 7),
    seed=0,
)
SETTINGS = {  # name: (sampling, gamma, calls in the default run: each setting's tokens reach a mean TV of 0.02)
    "T1": (SamplingConfig(temperature=1.0), 2, 2_700),
    "low_T": (SamplingConfig(temperature=0.6), 1, 2_700),
    "top_k": (SamplingConfig(temperature=1.0, top_k=3), 3, 1_900),
    "top_p": (SamplingConfig(temperature=1.0, top_p=0.8), 2, 2_100),
    "T0.7_top_p0.9": (SamplingConfig(temperature=0.7, top_p=0.9), 1, 2_100),
    "top_k5_top_p0.8": (SamplingConfig(temperature=1.0, top_k=5, top_p=0.8), 4, 1_900),
}
NEW_TOKENS = (8, 40)  # fewest and most new tokens per call
PROFILE_FACTOR = 4  # the profile draws 4x the calls: half the detectable TV
STATED_TV_CI = 0.02
STATED_TV_PROFILE = 0.01
STATED_BETA_SHIFT_CI = 0.02
MIN_TRIALS_CI = 30_000  # the acceptance test's stated reach assumes at least this many draft positions reached


def build_pair():
    """(target, draft) TableLMs; module-level so worker processes can rebuild it."""
    from reference_impl.models.table import table_pair

    return table_pair(PAIR["target_logits"], PAIR["draft_logits"], PAIR["rearrangement"], seed=PAIR["seed"])


@functools.cache
def pair():
    return build_pair()


def exact_rows(setting: str):
    """(vocab + 1, vocab): the target's warped next-token law after each previous token."""
    from reference_impl.sampling import probs_from_logits

    return probs_from_logits(pair()[0].table.detach().double(), SETTINGS[setting][0])


def calls_ci(setting: str) -> int:
    return SETTINGS[setting][2]


def exact_beta(setting: str) -> float:
    from reference_impl.models.table import constant_beta

    return constant_beta(*pair(), SETTINGS[setting][0])


def plan(setting: str, calls: int, seed: int):
    return decode_plan(seed + sorted(SETTINGS).index(setting), calls, VOCAB, NEW_TOKENS)


def draw(decoder, setting: str, *, calls: int | None = None, seed: int = SEED, jobs: int | None = None) -> DecodeSample:
    """The decodes of ``setting``'s plan by ``decoder`` (a decoder object or a ``DecoderSource``)."""
    sampling, gamma, _ = SETTINGS[setting]
    calls = calls_ci(setting) if calls is None else calls
    return sample_decodes(decoder, plan(setting, calls, seed), sampling, seed=seed, gamma=gamma, jobs=jobs)


def law_check(sample: DecodeSample, setting: str) -> sampling_law.ConditionalResult:
    counts = sampling_law.transition_counts(sample.prompts, sample.sequences, VOCAB)
    return sampling_law.conditional_test(counts, exact_rows(setting), name=f"next-token law, {setting}")


def acceptance_check(sample: DecodeSample, setting: str) -> sampling_law.AcceptanceResult:
    return sampling_law.acceptance_test(sample.accepted, sample.rejections, exact_beta(setting))


def detects(sample: DecodeSample, setting: str) -> tuple[bool, str]:
    """Does either test of ``setting`` reject at its level? -> (rejected, both descriptions)."""
    law, acceptance = law_check(sample, setting), acceptance_check(sample, setting)
    rejected = law.rejects(ALPHA / 2) or acceptance.rejects(ALPHA / 2)
    return rejected, law.describe() + "\n" + acceptance.describe()


@pytest.fixture(scope="module")
def decoder_source(specdec_options):
    return DecoderSource(specdec_options.impl or DEFAULT_IMPL, build_pair)


@pytest.fixture(scope="module")
def samples():
    return {}


def sample_for(samples, decoder_source, setting: str, calls: int, seed: int) -> DecodeSample:
    key = (setting, calls, seed)
    if key not in samples:
        samples[key] = draw(decoder_source, setting, calls=calls, seed=seed)
    return samples[key]


@pytest.mark.parametrize("setting", SETTINGS)
def test_next_token_law(samples, decoder_source, setting):
    """Rate <= 5e-5; power >= 0.99 against a mean TV >= 0.02 of the next-token law from the target's."""
    result = law_check(sample_for(samples, decoder_source, setting, calls_ci(setting), SEED), setting)
    assert not result.rejects(ALPHA / 2), result.describe()


@pytest.mark.parametrize("setting", SETTINGS)
def test_acceptance_law(samples, decoder_source, setting):
    """Rate <= 5e-5; power >= 0.99 against an acceptance probability off by >= 0.02."""
    result = acceptance_check(sample_for(samples, decoder_source, setting, calls_ci(setting), SEED), setting)
    assert result.trials >= MIN_TRIALS_CI, (
        f"{result.describe()}: fewer than {MIN_TRIALS_CI} draft positions reached, below the stated reach; "
        "does the decoder draft the gamma it is asked for?"
    )
    assert not result.rejects(ALPHA / 2), result.describe()


@pytest.mark.specdec_statistical
@pytest.mark.parametrize("setting", SETTINGS)
def test_sampling_law_profile(decoder_source, setting):
    """4x the calls: both tests, rate <= 1e-4 together; power >= 0.99 against a mean TV >= 0.01."""
    calls = PROFILE_FACTOR * calls_ci(setting)
    rejected, detail = detects(draw(decoder_source, setting, calls=calls, seed=SEED + 1), setting)
    assert not rejected, detail


def planned_tokens(setting: str, calls: int) -> int:
    return sum(call.max_new_tokens for call in plan(setting, calls, SEED))


@pytest.mark.parametrize("setting", SETTINGS)
def test_stated_reach_holds(setting):
    """The stated TV and acceptance shift hold for the planned number of tokens (the plan is fixed by the seed)."""
    rows = exact_rows(setting)[:VOCAB]  # after any of the vocab's tokens (prompts are never empty)
    for calls, stated in ((calls_ci(setting), STATED_TV_CI), (PROFILE_FACTOR * calls_ci(setting), STATED_TV_PROFILE)):
        reach = sampling_law.conditional_reach(rows, planned_tokens(setting, calls), ALPHA / 2)
        assert reach <= stated, f"{setting}, {calls} calls: detects a mean TV of {reach:.4f}, stated {stated}"
    shift = sampling_law.acceptance_reach(MIN_TRIALS_CI, exact_beta(setting), ALPHA / 2)
    assert shift <= STATED_BETA_SHIFT_CI, f"{setting}: detects an acceptance shift of {shift:.4f}"
