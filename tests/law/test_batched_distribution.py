"""Sampled rows of a batched decode follow the target's law, end to end.

The end-to-end check of tests/law/test_distribution_e2e.py (same tiny pair, prompt, gamma, four
sampling configurations, N_CI = 1000 four-token continuations, Pearson chi-square with the tail
pooled, ALPHA = 1e-4 per configuration, so <= 4e-4 family-wise; power >= 0.99 at the TVs stated
there), with the samples drawn through ``generate_batch``: each call decodes ``ROWS`` = 16 rows of the
tested prompt, each with its own generator, plus two rows of other prompts of other lengths that
finish at other times and are thrown away. A row that leaks into another, or a row whose
randomness depends on the batch, changes the counted rows' law.
``test_batched_check_rejects_...`` shows the check fails on a broken batched sampler (the
draft's distribution left unwarped on one side, drawn through the batched decoder).
"""

from __future__ import annotations

import pytest
import torch

from pytest_specdec.law.batched import batched_distribution_test
from reference_impl.batched import BatchedSpeculativeDecoder
from reference_impl.batched import speculative as batched_speculative

from .test_distribution_e2e import ALPHA, CONFIGS, GAMMA, LENGTH, N_CI, PROMPT, SEED, pair

pytestmark = [pytest.mark.specdec_batched, pytest.mark.usefixtures("single_torch_thread")]

ROWS = 16
DISTRACTORS = ((torch.tensor([[1, 2, 3, 4, 5, 6, 7]]), 2), (torch.tensor([[6]]), 7))


def batched_check(decoder, config: str):
    target, _ = pair()
    return batched_distribution_test(decoder, target, PROMPT, CONFIGS[config], n=N_CI, seed=SEED, batch=ROWS,
                                     length=LENGTH, gamma=GAMMA, distractors=DISTRACTORS)


# The default run's batched distribution check is tests/law/test_sampling_law_batched.py (every setting, TV 0.02);
# this cross-check on the transformer pair runs with -m specdec_statistical.
@pytest.mark.specdec_statistical
@pytest.mark.parametrize("config", CONFIGS)
def test_batched_rows_sample_the_target_distribution(specdec_batched_factory, config):
    """N_CI = 1000 sequences, 16 per call; false-positive rate <= 1e-4; detects TV >= DETECTABLE_TV_CI[config]."""
    result = batched_check(specdec_batched_factory(*pair()), config)
    assert not result.rejects(ALPHA), result.describe()


def test_batched_check_rejects_a_draft_drawn_from_raw_logits(monkeypatch):
    """The draft token drawn from the warped distribution but the ratio given the unwarped one (no top-p)."""
    from reference_impl.sampling import SamplingConfig, probs_from_logits, sample

    def draw_unwarped(logits, sampling, generator):
        warped = probs_from_logits(logits, sampling)
        unwarped = probs_from_logits(logits, SamplingConfig(temperature=sampling.temperature))  # BUG: no top-p
        return sample(warped.unsqueeze(0), generator), unwarped

    monkeypatch.setattr(batched_speculative, "draw", draw_unwarped)
    result = batched_check(BatchedSpeculativeDecoder(*pair()), "top_p")
    assert result.rejects(ALPHA), result.describe()
