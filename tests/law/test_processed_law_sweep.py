"""The processed-law sweep harness (tests/support/processed_law_sweep.py): its exact null passes the tests' own check,
and the same check rejects draws from a law that leaves the penalties out, so a sweep can fire."""

from __future__ import annotations

import dataclasses

from tests.law import test_processed_law as law
from tests.support import processed_law_sweep as sweep


def test_the_exact_null_passes_the_check():
    for setting in law.SETTINGS:
        prompts, sequences = sweep.exact_null(setting, 400, seed=1)
        assert [len(s) for s in sequences] == [call.max_new_tokens for call in law.plan(setting, 400, 1)]
        result = law.processed_pit_test(law.pair("main")[0], prompts, sequences, law.SETTINGS[setting][0], seed=1)
        assert not result.rejects(law.ALPHA), f"{setting}: {result.describe()}"


def test_the_check_rejects_a_null_drawn_without_the_penalties(monkeypatch):
    """Companion: draws from the unpenalised law, judged against the penalised one."""
    sampling, gamma, needs = law.SETTINGS["presence_frequency"]
    unpenalised = dataclasses.replace(sampling, presence_penalty=0.0, frequency_penalty=0.0)
    monkeypatch.setitem(law.SETTINGS, "presence_frequency", (unpenalised, gamma, needs))
    prompts, sequences = sweep.exact_null("presence_frequency", 400, seed=1)
    result = law.processed_pit_test(law.pair("main")[0], prompts, sequences, sampling, seed=1)
    assert result.rejects(law.ALPHA), result.describe()
