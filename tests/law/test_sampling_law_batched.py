"""The sampling-law checks on the batched entry point: rows of ``generate_batch`` follow the target's law.

The plan, settings, checks and levels of ``tests/law/test_sampling_law.py`` (power >= 0.99 against a
TV of 0.02 of the rank law per setting, false-positive rate <= 1e-4 per setting), with the calls
run ``ROWS`` = 50 at a time through the decoder under test's ``generate_batch``: every row has its
own prompt (1-12 tokens), budget (8-40 tokens) and generator, so rows finish at different times
and the batch shrinks as they do. A row that reads another row's cache or keeps a rejected slot
reads another state of the context-2 pair and changes its law
(``test_batched_sampling_law_rejects``). The batched reference draws these samples about 4-6x
faster per token than one call at a time.
"""

from __future__ import annotations

import functools

import pytest

from pytest_specdec.law.sample_pool import DecoderSource
from pytest_specdec.protocol.decoder import DEFAULT_BATCHED_IMPL

from .test_sampling_law import SETTINGS, build_pair, calls_ci, detects, draw, pair

pytestmark = pytest.mark.specdec_batched

ROWS = 50


def batched_source(impl: str, setting: str, device: str = "cpu") -> DecoderSource:
    return DecoderSource(impl, functools.partial(build_pair, SETTINGS[setting].pair), device=device, batch=ROWS)


@pytest.fixture(scope="module")
def batched_impl(specdec_options, specdec_batched_factory) -> str:
    specdec_batched_factory(*pair())  # skips (counted in the summary) when the decoder has no generate_batch
    return specdec_options.impl or DEFAULT_BATCHED_IMPL


@pytest.mark.parametrize("setting", SETTINGS)
def test_batched_sampling_law(batched_impl, specdec_options, setting):
    """The three checks at 1e-4 / 3 each: rate <= 1e-4 per setting; the reach stated per setting."""
    source = batched_source(batched_impl, setting, specdec_options.resolved_device())
    rejected, detail = detects(draw(source, setting, jobs=specdec_options.sample_jobs), setting)
    assert not rejected, detail


@pytest.mark.parametrize("name", ["NeighbourCache", "RollbackToBatchMax"])
def test_batched_sampling_law_rejects(name):
    """A quarter of the context-2 setting's sample detects a row reading its neighbour's cache, or rolled back to
    the batch's longest row."""
    sample = draw(batched_source(f"tests.support.batched_mutants:{name}", "T1_context2"), "T1_context2",
                  calls=calls_ci("T1_context2") // 4)
    rejected, detail = detects(sample, "T1_context2")
    assert rejected, f"{name} not detected:\n{detail}"
