"""The batched request-feature checks reject each batch bug class (tests/support/batched_request_mutants.py),
through the protocol: each mutant built by its ``module:factory`` spec and wrapped in ``CheckedBatchedDecoder``
exactly as a batched decoder under test is, on a fixed battery of greedy batches (float64 tiny Llama, an early-exit
and an identical draft): rows with different prompts, penalties and lengths that finish at different steps, and
rows whose EOS sits at their ``min_new_tokens`` boundary. Caught: some row's tokens or logprobs differ from the
single-sequence reference with that row's request, or a row breaks the protocol's feature checks.
Deterministic: no seed, no error rate.

| mutant | shipped as |
| --- | --- |
| `SharedHistory`: one penalty state for the batch, a row's history leaks into the others | vLLM PR #14645's class |
| `MinTokensPerBatchStep`: `min_new_tokens` counted in batch steps | SGLang PR #33643 |
| `FinishedRowHistoryNotFrozen`: per-slot states not compacted when a row leaves | vLLM PR #41758's shape |
"""

from __future__ import annotations

import pytest
import torch

from pytest_specdec.protocol.decoder import CheckedBatchedDecoder, ContractError, load_factory
from reference_impl import SamplingConfig
from tests.support.batched_request_mutants import BATCHED_REQUEST_MUTANTS
from tests.support.pairs import cached_pair
from tests.support.request_checks import batched_request_mismatches, reference_tokens

pytestmark = pytest.mark.usefixtures("single_torch_thread")
REFERENCE = "reference_impl.batched:BatchedSpeculativeDecoder"
PROMPTS = [torch.tensor([p]) for p in ((5, 41, 7, 19), (9,), (3, 3, 60, 2, 71, 8), tuple(range(30, 44)))]
PENALISED = SamplingConfig(repetition_penalty=1.5, frequency_penalty=0.6)


def battery(relation: str) -> list[list[dict]]:
    """Batches of per-row requests whose EOS tokens are cut from each row's own output, so each of them acts."""
    target, _ = cached_pair("llama", relation)
    plains = [reference_tokens(target, p, {"max_new_tokens": 24, "sampling": PENALISED}) for p in PROMPTS]
    lengths = [3, 24, 9, 24]  # rows leave the batch at different steps
    finishing = [{"max_new_tokens": n, "sampling": PENALISED, "logprobs": 1} for n in lengths]
    mixed = [{"max_new_tokens": n, "sampling": s} for n, s in zip(lengths, (
        SamplingConfig(repetition_penalty=2.0), SamplingConfig(presence_penalty=1.0), PENALISED,
        SamplingConfig(frequency_penalty=1.5, logit_bias={plains[3][2]: 4.0})), strict=True)]
    floors = [{"max_new_tokens": 24, "sampling": PENALISED, "eos_token_id": plain[i], "min_new_tokens": i + extra}
              for plain, i, extra in zip(plains, (5, 9, 2, 13), (0, 1, 1, 0), strict=True)]
    return [finishing, mixed, floors]


BATTERY = {relation: battery(relation) for relation in ("partial", "identical")}


def failures(spec: str) -> list[str]:
    found = []
    for relation, batches in BATTERY.items():
        target, draft = cached_pair("llama", relation)
        decoder = CheckedBatchedDecoder(load_factory(spec)(target, draft), spec)
        for index, requests in enumerate(batches):
            try:
                problems = batched_request_mismatches(decoder, target, PROMPTS, requests, gamma=4)
            except ContractError as exc:
                problems = [str(exc).splitlines()[-1].strip(" -")]
            found += [f"{relation} batch {index}: {problem}" for problem in problems]
    return found


def test_the_battery_passes_the_reference():
    assert failures(REFERENCE) == []


@pytest.mark.parametrize("name", sorted(BATCHED_REQUEST_MUTANTS))
def test_each_batched_request_bug_is_caught(name):
    assert failures(f"tests.support.batched_request_mutants:{name}"), f"{name} passed the whole battery"


if __name__ == "__main__":  # python -m tests.greedy.test_batched_request_mutants: what catches each mutant
    for name in [None, *sorted(BATCHED_REQUEST_MUTANTS)]:
        found = failures(REFERENCE if name is None else f"tests.support.batched_request_mutants:{name}")
        batches = sorted({f.split(":")[0] for f in found})
        print(f"{name or 'reference'}: {len(found)} bad rows in {len(batches)} of 6 batches {batches}")
        if found:
            print(f"    first: {found[0]}")
