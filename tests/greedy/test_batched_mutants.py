"""The batch-invariance checks reject every batched bug class (tests/support/batched_mutants.py).

Each mutant runs through the same check functions the property tests use
(tests/support/batched_checks.py) on fixed batches of rows of different prompt lengths that finish at
different times, on a rotary (llama) and an absolute-position (gpt2) architecture, each batch on
its own; the test
passes only if the check reports at least one bad row. The reference passing the same checks
is tested in tests/greedy/test_batched_properties.py.

| bug class                                              | caught by                               |
|--------------------------------------------------------|-----------------------------------------|
| a row reads another row's cache                        | greedy rows == target greedy            |
| a row reads another row's tokens (draft only)          | row's accepting stats == the row alone  |
| positions from the cache slot (padding shifts them)    | greedy rows == target greedy            |
| off-by-one in a padded row's positions                 | greedy rows == target greedy            |
| rollback to the batch's max accepted length            | greedy rows == target greedy            |
| a finished row keeps drafting                          | row's stats and work == the row alone   |
"""

from __future__ import annotations

import pytest

from tests.support import batched_mutants as m
from tests.support.batched_checks import WORK_FIELDS, Batch, alone_mismatches, greedy_mismatches

pytestmark = pytest.mark.usefixtures("single_torch_thread")

PROMPTS = ((5,), (7, 3, 9), tuple(range(2, 23)), (1, 2, 3, 4, 5, 6), (40, 41, 42, 43, 44, 45, 46, 47, 48))
BATCHES = [  # rows that accept different numbers of draft tokens per step (gpt2's early-exit draft accepts ~all)
    Batch(arch, relation, PROMPTS, max_new_tokens=(0, 1, 6, 30, 24), eos=(None,) * 5, gamma=4, seeds=(1, 2, 3, 4, 5))
    for arch, relation in (("llama", "partial"), ("gpt2", "unrelated"))
]


def greedy_check(decoder_class, batch):
    return greedy_mismatches(decoder_class(*batch.pair), batch, order=[4, 2, 0, 3, 1])


def alone_check(decoder_class, batch):
    decoder = decoder_class(*batch.pair)
    return alone_mismatches(decoder, batch, [4, 2, 0, 3, 1]) + alone_mismatches(
        decoder, batch, [4, 2, 0, 3, 1], fields=WORK_FIELDS)


CAUGHT_BY = {
    m.NeighbourCache: greedy_check,
    m.NeighbourTokensInDraft: alone_check,
    m.SlotPositions: greedy_check,
    m.PaddedOffByOne: greedy_check,
    m.RollbackToBatchMax: greedy_check,
    m.FinishedRowsKeepDrafting: alone_check,
}


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: b.arch)
@pytest.mark.parametrize("mutant", m.MUTANTS, ids=lambda c: c.__name__)
def test_batch_checks_reject_mutant(mutant, batch):
    try:
        bad = CAUGHT_BY[mutant](mutant, batch)
    except Exception as exc:  # a crash is also a detection, but say which
        pytest.fail(f"{mutant.__name__} crashed instead of producing tokens ({type(exc).__name__}: {exc}); "
                    "the check should see a wrong result, not an exception")
    assert bad, f"{mutant.__name__} passed the check on {batch.describe()}"


def test_mutant_table_is_complete():
    assert set(CAUGHT_BY) == set(m.MUTANTS)


@pytest.mark.specdec_batched
@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: b.arch)
def test_decoder_under_test_passes_the_mutants_batches(specdec_batched_factory, batch):
    """The same batches and checks that catch the mutants pass on the decoder under test."""
    decoder = specdec_batched_factory(*batch.pair)
    bad = greedy_mismatches(decoder, batch, order=[4, 2, 0, 3, 1])
    bad += alone_mismatches(decoder, batch, [4, 2, 0, 3, 1], fields=("new_tokens", "steps", "drafted", "accepted",
                                                                     "rejections", "gammas", *WORK_FIELDS))
    assert not bad, f"{batch.describe()}:\n" + "\n".join(bad)
