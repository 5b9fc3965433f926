"""The batched performance test: the decoder under test's ``generate_batch`` against the batched
autoregressive baseline, the session's 8 standard prompts (lengths differ) decoded as one batch,
timed interleaved at each ``--specdec-gamma``, then judged against the stored baseline for the
run's fingerprint with the rules of tests/perf/test_perf.py (deterministic counts exactly, timings by
effect and significance; no comparable baseline: skipped, naming the fields that differ). The
figures go to the session summary as a note. Skipped when the decoder has no batched entry point.

Run it alone (``pytest -m specdec_perf -p no:xdist``), with ``SPECDEC_PERF_THREADS`` torch
threads on CPU (default 1), as the other timing tests.
"""

from __future__ import annotations

import os

import pytest

PROTOCOL = {"prompts": 8, "max_new_tokens": 32, "repeats": 5, "warmup": 1}
THREADS = int(os.environ.get("SPECDEC_PERF_THREADS", "1"))

pytestmark = pytest.mark.specdec_batched


@pytest.fixture(autouse=True, scope="module")
def perf_threads(specdec_options):
    from pytest_specdec.perf.timing import torch_threads

    with torch_threads(THREADS if specdec_options.resolved_device().startswith("cpu") else None):
        yield


@pytest.mark.specdec_perf(**PROTOCOL)
def test_batched_speed(specdec_measure_batched, specdec_gamma):
    record = specdec_measure_batched(gamma=specdec_gamma)
    per_row = record.deterministic()
    assert per_row["tokens_per_request"] <= PROTOCOL["max_new_tokens"]


def test_batched_record_sees_wasted_work():
    """Not timed: the deterministic figures a batched baseline entry stores move when rows do extra work
    (finished rows that keep drafting), so the comparison fails on them."""
    import torch

    from pytest_specdec.perf.baselines import compare_deterministic
    from pytest_specdec.perf.batched import BatchedPerfRecord, measure_batched
    from reference_impl.batched import BatchedAutoregressiveDecoder, BatchedSpeculativeDecoder
    from tests.support.batched_mutants import FinishedRowsKeepDrafting
    from tests.support.pairs import cached_pair

    target, draft = cached_pair("llama", "partial")
    prompts = [torch.tensor([[1, 2, 3]]), torch.tensor([[4] * 9]), torch.tensor([[5, 6]])]

    def figures(decoder_class):
        runs = measure_batched({"speculative": decoder_class(target, draft),
                                "baseline": BatchedAutoregressiveDecoder(target)}, prompts, repeats=1, warmup=0,
                               max_new_tokens=[2, 24, 9], gamma=4)
        return BatchedPerfRecord("r", "tiny", 3, 4, "greedy", 24, runs["speculative"], runs["baseline"]).deterministic()

    reference = figures(BatchedSpeculativeDecoder)
    assert all(v.ok for v in compare_deterministic(reference, figures(BatchedSpeculativeDecoder), exact=True))
    assert not all(v.ok for v in compare_deterministic(reference, figures(FinishedRowsKeepDrafting), exact=True))
