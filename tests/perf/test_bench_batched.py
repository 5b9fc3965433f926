"""The batched benchmark's code, run small on a tiny pair: every row identical to the baseline's, the table
and the crossover line rendered, samples/s rows for each source. No figure is asserted (wall clock)."""

from __future__ import annotations

import pytest

from benchmarks.bench_batched import (
    BatchedBenchConfig,
    run_samples,
    run_throughput,
    samples_markdown,
    throughput_markdown,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_throughput_table_small():
    result = run_throughput(BatchedBenchConfig(pair="tiny-llama-partial", batch_sizes=(1, 3), gamma=2,
                                               max_new_tokens=6, repeats=1, threads=1))
    assert [row["batch"] for row in result["rows"]] == [1, 3]
    assert all(row["identical_rows"] == row["batch"] for row in result["rows"])
    text = throughput_markdown(result)
    assert "| 3 |" in text and "Crossover:" in text


def test_samples_table_small():
    result = run_samples((2, 4), n=8, threads=1)
    assert [row["batch"] for row in result["rows"]] == ["single generate", 2, 4]
    assert "generate_batch, 4 rows" in samples_markdown(result)
