"""Acceptance under penalties and bias: the decoder's reported accepted count against the exact beta of each state
it visited (``pytest_specdec.law.processed_acceptance``).

Penalties and bias break the table pairs' constant acceptance probability; each call here asks for three tokens at
gamma 1, so it reaches one draft position after its prompt and first token, and the pair's exact processed laws
there give that call's beta. ``CALLS`` calls per setting on the "main" table pair, drawn on every core.

Error rate: ``ALPHA`` = 1e-4 per setting (two-sided, normal approximation to a sum of ``CALLS`` independent
Bernoullis with betas in (0.3, 0.9)). Reach (``per_state_reach``): power >= 0.99 against every state's acceptance
probability shifted by >= ``STATED_SHIFT`` (``test_stated_reach_holds`` recomputes it). The default run tests every
feature at once ("all"); ``-m specdec_statistical`` adds each feature alone. The companion is a lossless decoder
whose draft ignores the penalties: no output-law test can see it, this one rejects it at a quarter of the calls.
``python -m tests.support.processed_law_sweep --acceptance`` measures the false-positive rate on the exact null.
"""

from __future__ import annotations

import functools

import pytest

from pytest_specdec.law.processed_acceptance import (
    GAMMA,
    NEW_TOKENS,
    per_state_acceptance_test,
    per_state_reach,
    state_betas,
)
from pytest_specdec.law.sample_pool import DecoderSource, DecodeSample, decode_plan, sample_decodes
from pytest_specdec.protocol.decoder import DEFAULT_IMPL
from tests.law.test_processed_law import SETTINGS
from tests.law.test_sampling_law import build_pair, pair

ALPHA = 1e-4
SEED = 20_261_208
CALLS = 8_000
STATED_SHIFT = 0.036
DEFAULT_RUN = ("all",)
COMPANION = ("tests.support.sampled_request_mutants:DraftPenaltiesDroppedDecoder", "all", 1 / 4)


def draw(impl: str, setting: str, *, calls: int = CALLS, seed: int = SEED, jobs: int | None = None) -> DecodeSample:
    plan = decode_plan(seed + sorted(SETTINGS).index(setting), calls, 8, (NEW_TOKENS, NEW_TOKENS))
    source = DecoderSource(impl, functools.partial(build_pair, "main"))
    return sample_decodes(source, plan, SETTINGS[setting][0], seed=seed, gamma=GAMMA, jobs=jobs)


def check(sample: DecodeSample, setting: str):
    betas = state_betas(*pair("main"), sample.prompts, sample.sequences, SETTINGS[setting][0])
    return per_state_acceptance_test(sample.accepted, sample.rejections, betas)


def needs(setting: str):
    marks = [pytest.mark.specdec_requires("gamma", *SETTINGS[setting][2])]
    if setting not in DEFAULT_RUN:
        marks.append(pytest.mark.specdec_statistical)
    return pytest.param(setting, marks=marks, id=setting)


@pytest.mark.specdec_verdict("performance")  # acceptance: a lossless decoder can waste drafts
@pytest.mark.parametrize("setting", [needs(name) for name in SETTINGS])
def test_acceptance_matches_the_states_visited(specdec_options, setting):
    """Rate <= ALPHA; power >= 0.99 against every state's acceptance probability off by >= STATED_SHIFT."""
    sample = draw(specdec_options.impl or DEFAULT_IMPL, setting, jobs=specdec_options.sample_jobs)
    if sample.accepted + sample.rejections != len(sample.sequences):  # the counts themselves are checked per call
        pytest.skip(f"the decoder reached {sample.accepted + sample.rejections} draft positions in "
                    f"{len(sample.sequences)} calls of {NEW_TOKENS} tokens at gamma {GAMMA}: this test needs one "
                    "per call (the first token from the target's prefill, then one step), so it cannot place them")
    result = check(sample, setting)
    assert not result.rejects(ALPHA), result.describe()


def test_a_draft_that_ignores_the_penalties_is_caught(specdec_options):
    impl, setting, fraction = COMPANION
    result = check(draw(impl, setting, calls=round(CALLS * fraction), jobs=specdec_options.sample_jobs), setting)
    assert result.rejects(ALPHA), f"the draft without penalties passed: {result.describe()}"


def test_the_exact_betas_are_the_decoders_own_processing():
    """The vectorised betas equal sum_x min(p, q) of the reference's own processed laws (CallState) at each state."""
    import torch

    from reference_impl.processing import CallState
    from reference_impl.sampling import probs_from_logits

    target, draft = pair("main")
    sampling = SETTINGS["all"][0]
    prompts, firsts = [(3, 1, 4), (1,), (5, 5, 2, 6, 5)], [4, 7, 5]
    got = state_betas(target, draft, prompts, [[t, 0, 0] for t in firsts], sampling)
    for prompt, first, beta in zip(prompts, firsts, got, strict=True):
        laws = []
        for model in (target, draft):
            ids = torch.tensor([[*prompt, first]])
            call = CallState.of(ids[:, :-1], 8, sampling, 0, None, None)
            logits = model(input_ids=ids, use_cache=False).logits[0, -1:].double()
            laws.append(probs_from_logits(call.processed(logits, [torch.tensor(first)]), sampling)[0])
        assert beta == pytest.approx(float(torch.minimum(*laws).sum()), abs=1e-12)


@pytest.mark.parametrize("setting", SETTINGS)
def test_stated_reach_holds(setting):
    """The stated shift holds for the states the exact null visits (betas of a reference draw at the stated size)."""
    sample = draw(DEFAULT_IMPL, setting, calls=CALLS // 10, jobs=1)
    betas = state_betas(*pair("main"), sample.prompts, sample.sequences, SETTINGS[setting][0])
    reach = per_state_reach(betas * 10, ALPHA)  # the betas of a tenth of the calls stand for the whole plan
    assert reach <= STATED_SHIFT, f"{setting}: detects a shift of {reach:.4f} with {CALLS} calls"
