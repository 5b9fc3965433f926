"""The batched cache (``reference_impl.batched.BatchedLM``) is exact, and batched input is checked.

Padded, masked, explicitly positioned batched passes give each row the logits of an unpadded
single-row pass over the same tokens (float64, to 1e-12; positions matter for GPT-2's absolute
embeddings and for RoPE once rows are padded differently from pass to pass), through ragged
chunks, per-row rollbacks with compaction, and rows leaving the batch, on all four tiny
architectures. ``test_cache_check_rejects_...`` shows the comparison fails on a cache whose
positions ignore padding. Bad batched requests fail with named errors before any model runs, and
``CheckedBatchedDecoder`` turns a broken batched result into a ``ContractError``.
"""

from __future__ import annotations

import pytest
import torch

from pytest_specdec.protocol.decoder import CheckedBatchedDecoder, ContractError
from reference_impl import DecodeResult, DecodeStats, SamplingConfig
from reference_impl.batched import BatchedLM, BatchedSpeculativeDecoder
from reference_impl.errors import InvalidLengthError
from reference_impl.models.tiny import ARCHITECTURES
from tests.support.batched_mutants import _SlotPositionsLM
from tests.support.pairs import cached_pair

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TOLERANCE = 1e-12
ROWS = [[5, 6, 7], [9], list(range(10, 22)), [3, 1, 4, 1, 5]]


def unbatched(model, tokens: list[int]) -> torch.Tensor:
    """(vocab,) logits of the last of ``tokens``, one row, no padding, no cache."""
    with torch.inference_mode():
        return model(input_ids=torch.tensor([tokens])).logits[0, -1]


def cache_errors(lm_class, arch: str) -> list[str]:
    """Drive a batched cache through prefill, ragged chunks, rollbacks and row removal; compare every row's
    last logits with an unbatched pass over the row's tokens so far."""
    target, _ = cached_pair(arch, "partial")
    lm, rows, errors = lm_class(target), [list(r) for r in ROWS], []
    lm.reset(len(rows))

    def feed(chunks: list[list[int]], what: str) -> None:
        with torch.inference_mode():
            logits = lm.forward([torch.tensor(c, dtype=torch.long) for c in chunks])[:, -1]
        for b, (row, chunk) in enumerate(zip(rows, chunks, strict=True)):
            row += chunk if what != "prefill" else []
            if chunk:
                error = (logits[b] - unbatched(target, row)).abs().max().item()
                if not error <= TOLERANCE:
                    errors.append(f"{arch}, {what}, row {b} ({len(row)} tokens): max logit error {error:.3g}")

    feed([list(r) for r in rows], "prefill")
    feed([[1], [2, 3], [], [4, 5, 6]], "ragged chunk")
    feed([[7, 8, 9, 10], [11], [12, 13], [14]], "ragged chunk")
    kept = [len(rows[0]) - 3, len(rows[1]), len(rows[2]) - 1, len(rows[3]) - 4]
    lm.rollback(kept)
    rows = [row[:k] for row, k in zip(rows, kept, strict=True)]
    feed([[20], [21, 22], [23], [24]], "after rollback")
    lm.select([3, 0, 2])
    rows = [rows[3], rows[0], rows[2]]
    feed([[30, 31], [32], [33, 34, 35]], "after select")
    return errors


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_batched_cache_matches_unbatched_passes(arch):
    errors = cache_errors(BatchedLM, arch)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_cache_check_rejects_positions_that_ignore_padding(arch):
    assert cache_errors(_SlotPositionsLM, arch), "a cache whose positions count padding passed the exactness check"


# --- bad batched input ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decoder():
    return BatchedSpeculativeDecoder(*cached_pair("llama", "partial"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(prompts=[]), "non-empty list"),
        (dict(prompts=torch.tensor([[1, 2]])), "non-empty list"),
        (dict(max_new_tokens=[4]), "max_new_tokens has 1 entries for 2 prompts"),
        (dict(eos_token_id=[1, 2, 3]), "eos_token_id has 3 entries for 2 prompts"),
        (dict(generators=[torch.Generator()]), "generators has 1 entries"),
        (dict(generators=torch.Generator()), "not one shared generator"),
        (dict(prompts=[torch.tensor([[1]]), torch.tensor([1, 2])]), r"\(1, prompt_len\)"),
        (dict(max_new_tokens=[4, -1]), "max_new_tokens must be an integer >= 0"),
    ],
)
def test_bad_batched_request_is_named(decoder, kwargs, match):
    request = {"prompts": [torch.tensor([[1, 2]]), torch.tensor([[3]])], "max_new_tokens": 4, **kwargs}
    with pytest.raises(InvalidLengthError, match=match):
        decoder.generate_batch(request.pop("prompts"), sampling=SamplingConfig(), **request)


# --- the checked wrapper -------------------------------------------------------------------------


class Returns:
    """A fake batched decoder returning ``results`` whatever it is asked."""

    def __init__(self, results):
        self.results = results

    def generate_batch(self, prompts, **kwargs):
        return self.results


ROW = DecodeResult(tokens=[1, 2], stats=DecodeStats(new_tokens=2))


@pytest.mark.parametrize(
    ("results", "match"),
    [
        ([ROW], "one DecodeResult per prompt \\(2\\), got 1 results"),
        ((ROW, ROW), "got tuple"),
        ([ROW, DecodeResult(tokens=[1, 2, 3, 4], stats=DecodeStats())], "row 1 returned 4 tokens for max_new_tokens=3"),
        ([ROW, DecodeResult(tokens=[torch.tensor(1)], stats=DecodeStats())], "row 1: tokens must be a list of Python"),
        ([DecodeResult(tokens=[7, 2], stats=DecodeStats()), ROW], "row 0 continued past its EOS token 7"),
        ([ROW, DecodeResult(tokens=[1], stats=None)], "row 1: the DecodeResult has no stats"),
    ],
)
def test_checked_wrapper_names_a_broken_batched_result(results, match):
    checked = CheckedBatchedDecoder(Returns(results), "fake:factory")
    with pytest.raises(ContractError, match=match):
        checked.generate_batch([torch.tensor([[1]])] * 2, max_new_tokens=[3, 3], eos_token_id=[7, None])


def test_checked_wrapper_checks_each_rows_counts():
    """A row whose counts disagree with its tokens fails with the counters rule (pytest_specdec/protocol/counters.py).
    """
    overcounted = DecodeResult(tokens=[1, 2], stats=DecodeStats(new_tokens=2, steps=1, drafted=2, accepted=3))
    checked = CheckedBatchedDecoder(Returns([ROW, overcounted]), "fake:factory")
    with pytest.raises(ContractError, match="row 1: the row's counts disagree"):
        checked.generate_batch([torch.tensor([[1]])] * 2, max_new_tokens=[3, 3])


def test_checked_wrapper_refuses_a_decoder_without_the_entry_point():
    with pytest.raises(ContractError, match="has no generate_batch"):
        CheckedBatchedDecoder(object(), "fake:factory")


def test_auto_gamma_is_refused_with_a_reason(decoder):
    from reference_impl.errors import InvalidGammaError

    with pytest.raises(InvalidGammaError, match="fixed gamma"):
        decoder.generate_batch([torch.tensor([[1, 2]])], max_new_tokens=3, gamma="auto")
