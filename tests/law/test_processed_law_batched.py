"""The processed-law check (tests/law/test_processed_law.py) on the batched entry point: rows of ``generate_batch``
under penalties, bias and min-p follow the target's processed law at each of their own prefixes.

The plan, settings, check and levels of ``test_processed_law.py`` (randomized PIT pooled over ~31,000 tokens,
Kolmogorov-Smirnov at ``ALPHA`` = 1e-4 per setting; power >= 0.99 against a pooled U law at KS >= 0.025 from
uniform), with the calls run ``ROWS`` = 50 at a time through the decoder under test's ``generate_batch``: each row
its own prompt (1-12 tokens), budget (8-40 tokens), generator and history, so rows finish at different steps. Both
settings (every feature at once, ``all``; presence and frequency penalties) run under ``-m specdec_statistical``
(about 25 s each on one core); the default run keeps the companion: a batch whose rows share one penalty state
(``SharedHistory``) is rejected at a sixteenth of the calls (KS 0.29 over 2,030 tokens, p = 1e-147).
"""

from __future__ import annotations

import functools

import pytest

from pytest_specdec.law.sample_pool import DecoderSource, sample_decodes
from pytest_specdec.protocol.decoder import DEFAULT_BATCHED_IMPL
from tests.law.test_processed_law import ALPHA, CALLS, SEED, SETTINGS, check, plan
from tests.law.test_sampling_law import build_pair, pair

pytestmark = pytest.mark.specdec_batched
ROWS = 50


def draw(impl: str, setting: str, *, calls: int = CALLS, jobs: int | None = None):
    sampling, gamma, _ = SETTINGS[setting]
    source = DecoderSource(impl, functools.partial(build_pair, "main"), batch=ROWS)
    return sample_decodes(source, plan(setting, calls, SEED), sampling, seed=SEED, gamma=gamma, jobs=jobs)


@pytest.fixture(scope="module")
def batched_impl(specdec_options, specdec_batched_factory) -> str:
    specdec_batched_factory(*pair("main"))  # skips (counted in the summary) when the decoder has no generate_batch
    return specdec_options.impl or DEFAULT_BATCHED_IMPL


@pytest.mark.specdec_statistical
@pytest.mark.parametrize("setting", [pytest.param(name, marks=pytest.mark.specdec_requires(*SETTINGS[name][2]))
                                     for name in ("all", "presence_frequency")])
def test_batched_processed_law(batched_impl, specdec_options, setting):
    """Rate <= ALPHA; power >= 0.99 against a pooled PIT law at KS >= 0.025 from uniform."""
    result = check(draw(batched_impl, setting, jobs=specdec_options.sample_jobs), setting)
    assert not result.rejects(ALPHA), result.describe()


def test_batched_processed_law_rejects_a_shared_penalty_state():
    """In the test process (jobs=1): at this size starting worker processes would cost more than the draws."""
    sample = draw("tests.support.batched_request_mutants:SharedHistory", "presence_frequency", calls=CALLS // 16,
                  jobs=1)
    result = check(sample, "presence_frequency")
    assert result.rejects(ALPHA), f"SharedHistory passed: {result.describe()}"
