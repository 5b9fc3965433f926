"""benchmarks.pair_table: the per-pair figures are the pair's, and the table shows them (deterministic fields only)."""

from __future__ import annotations

import pytest

from benchmarks import pair_table


@pytest.fixture
def small_protocol(monkeypatch):
    monkeypatch.setitem(pair_table.PROTOCOLS, "tiny", (1, 6, 1))


def test_identical_tiny_pair_row(small_protocol):
    row = pair_table.measure_pair("tiny-llama-identical", threads=1)
    assert row["target_params"] == row["draft_params"] > row["target_non_embedding_params"] > 0
    assert row["file_bytes"] == 0 and row["source"] == "built from a seed"
    assert row["alpha_gamma4"] == 1.0 and row["identical"]
    assert 1 <= row["best_gamma"] <= 8 and row["c"] > 0 and row["v5"] > 0
    line = pair_table.markdown([row]).splitlines()[-1]
    assert line.startswith("| tiny-llama-identical | 34,016 (27,872) | 34,016 | none (seeded build) |")


def test_trained_pair_counts_its_files(small_protocol, monkeypatch):
    monkeypatch.setitem(pair_table.PROTOCOLS, "trained", (1, 6, 1))
    row = pair_table.measure_pair("trained", threads=1)
    assert row["source"] == "folders" and 5 * 2**20 < row["file_bytes"] < 15 * 2**20
    assert row["target_params"] == 4_458_752 and row["draft_params"] == 737_664
