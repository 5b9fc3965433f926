"""The performance tests a user runs: the decoder under test against the autoregressive baseline,
timed interleaved on the session's pair at each ``--specdec-gamma``, then judged against the stored
baseline for the run's fingerprint (see pytest_specdec/perf/baselines/__init__.py).

A test fails itself on a regression: any deterministic figure that moved (forward passes per
token, prefills per request, passes before the first token, acceptance) or a timing metric worse
by more than its threshold with Mann-Whitney U p < 0.01 on the raw samples. Noisy timings are
reported as inconclusive in the summary and the report, not failed; a run with no comparable
baseline is skipped with the fields that differ. ``--specdec-save-baseline`` records instead.

With ``--specdec-base-impl`` (the base branch's decoder, from ``--specdec-base-path``) it is timed
in the same loop, swapping places with the decoder under test run by run, and the same-job A/B
verdict (pytest_specdec/perf/ab.py) fails a test whose decoder is slower than the base's, on any
machine; the stored baseline then still judges the deterministic figures (and timings on a
matching device).

Run them alone (``pytest -m specdec_perf -p no:xdist``): nothing else should compete with the clock.

On CPU they run with ``SPECDEC_PERF_THREADS`` torch threads (default 1; 0 keeps torch's own
choice). On a shared CPU, intra-op parallelism turns every other process's time slice into a stall
at the next OpenMP barrier. Measured on this project's 2-core machines with other jobs running (load
3.4): the trained target decoded at 42 ms per token with 2 threads and 3.5 ms with 1, and with 2
threads the same-run speedup of unchanged code swung by a factor of 4 between sessions; with 1
thread it stayed within about 5%.
The thread count is part of the baseline fingerprint.
"""

from __future__ import annotations

import os

import pytest

from reference_impl.sampling import SamplingConfig

# 8 prompts x 3 repeats = 24 paired samples per metric; 48 tokens draw the latency curve of the report.
PROTOCOL = {"prompts": 8, "max_new_tokens": 48, "repeats": 3, "warmup": 2}
THREADS = int(os.environ.get("SPECDEC_PERF_THREADS", "1"))


@pytest.fixture(autouse=True, scope="module")
def perf_threads(specdec_options):
    """Time CPU decodes with ``THREADS`` intra-op threads; restore the session's setting afterwards."""
    from pytest_specdec.perf.timing import torch_threads

    with torch_threads(THREADS if specdec_options.resolved_device().startswith("cpu") else None):
        yield


@pytest.mark.specdec_perf(**PROTOCOL)
def test_greedy_speed(specdec_measure, specdec_baseline_check, specdec_gamma):
    specdec_baseline_check(specdec_measure(gamma=specdec_gamma))


@pytest.mark.specdec_perf(**PROTOCOL)
def test_sampled_speed(specdec_measure, specdec_baseline_check, specdec_gamma):
    specdec_baseline_check(specdec_measure(gamma=specdec_gamma, sampling=SamplingConfig(temperature=1.0)))
