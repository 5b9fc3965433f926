"""Pair loading: devices per xdist worker, vocabulary checks, named pairs, offline errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from pytest_specdec.loading import (
    ModelLoadError,
    check_model_available,
    check_same_vocabulary,
    load_pair,
    worker_device,
)
from pytest_specdec.options import SpecDecOptions
from reference_impl import VocabularyMismatchError


@pytest.mark.parametrize(
    ("worker", "count", "expected"), [("gw0", 4, "cuda:0"), ("gw5", 4, "cuda:1"), ("gw1", 1, "cuda")]
)
def test_each_xdist_worker_takes_its_own_gpu(monkeypatch, worker, count, expected):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    assert worker_device("cuda") == expected


def test_no_worker_or_explicit_device_is_left_alone(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert worker_device("cuda") == "cuda"
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert worker_device("cpu") == "cpu"
    assert worker_device("cuda:1") == "cuda:1"


def tokenizer(vocab):
    return SimpleNamespace(get_vocab=lambda: dict(vocab))


def test_tokenizers_must_share_a_vocabulary():
    check_same_vocabulary(tokenizer({"a": 0, "b": 1}), tokenizer({"a": 0, "b": 1}), "t", "d")
    with pytest.raises(VocabularyMismatchError, match="tokenizers of target t and draft d differ"):
        check_same_vocabulary(tokenizer({"a": 0, "b": 1}), tokenizer({"a": 1, "b": 0}), "t", "d")


def test_hub_id_missing_from_the_cache_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"never downloads: fetch it first \(huggingface-cli download"):
        check_model_available("nobody/not-a-model")


def test_named_tiny_pair_builds_with_its_load_time():
    pair = load_pair(SpecDecOptions(pair="tiny-gpt2-identical"))
    assert pair.target is pair.draft
    assert pair.load_seconds["pair"] >= 0
    assert pair.dtype == "float32" and pair.target.dtype == torch.float32


def test_unknown_pair_lists_the_names():
    with pytest.raises(ModelLoadError, match=r"unknown pair 'nope'; named pairs: .*tiny-llama-partial"):
        load_pair(SpecDecOptions(pair="nope"))
