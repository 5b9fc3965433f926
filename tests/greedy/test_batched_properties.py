"""Batch invariance of the decoder under test's batched entry point (``generate_batch``).

Through ``specdec_batched_factory`` (``--specdec-impl``; by default the batched reference), on
tiny float64 pairs of four architectures and three draft relations, hypothesis draws (a share
of the profile's budget, ``batched_checks.examples``) batches of 1-9 rows in any order, with
prompts of 1-24 tokens, per-row max_new_tokens 0-40 and EOS, and gamma 1-6:

- each row's greedy output equals the target's own greedy output for its prompt, whatever the
  batch size, the other rows, their order and lengths, and when they finish (EOS, max_new_tokens);
- each row gives the same tokens and the same accepting stats (steps, drafted, accepted,
  rejections, gammas) in any batch as alone, greedy and sampled (each row with its own seeded
  generator, so a sampled row's tokens must not depend on the batch either);
- each row's reported passes and tokens fed are its own: a row that finished stops costing.

A 16-row batch with prompts of 1-40 tokens is checked once; in float32 a divergence is judged
by the near-tie rule (``pytest_specdec.law.numerics``). The mutants these checks must catch are in
tests/greedy/test_batched_mutants.py.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pytest_specdec.law.numerics import judge_greedy
from reference_impl import AutoregressiveDecoder
from reference_impl.models.tiny import ARCHITECTURES
from tests.support.batched_checks import (
    SAMPLED,
    WORK_FIELDS,
    Batch,
    alone_mismatches,
    batches,
    describe_events,
    examples,
    greedy_mismatches,
)
from tests.support.pairs import cached_pair

pytestmark = [pytest.mark.specdec_batched, pytest.mark.usefixtures("single_torch_thread")]


@examples(10, 12)  # dev 12, ci 20, thorough 200
@given(batch=batches(), data=st.data())
def test_each_row_equals_target_greedy(specdec_batched_factory, batch, data):
    describe_events(batch)
    order = data.draw(st.permutations(list(batch.rows())))
    bad = greedy_mismatches(specdec_batched_factory(*batch.pair), batch, order)
    assert not bad, f"{batch.describe()}, order {order}:\n" + "\n".join(bad)


@examples(16, 8)  # dev 8, ci 12, thorough 125
@given(batch=batches(max_rows=6, max_new=24), data=st.data())
def test_each_row_is_the_same_alone_greedy(specdec_batched_factory, batch, data):
    order = data.draw(st.permutations(list(batch.rows())))
    bad = alone_mismatches(specdec_batched_factory(*batch.pair), batch, order)
    assert not bad, f"{batch.describe()}, order {order}:\n" + "\n".join(bad)


@examples(16, 8)  # dev 8, ci 12, thorough 125
@given(batch=batches(max_rows=6, max_new=24), data=st.data())
def test_each_row_is_the_same_alone_sampled(specdec_batched_factory, batch, data):
    """Seed invariance: row i's generator, seeded alike, gives the same tokens alone and in any batch."""
    decoder = specdec_batched_factory(*batch.pair)
    if getattr(decoder, "per_row_generators", True) is False:
        pytest.skip(f"{decoder.label} declares per_row_generators = False: its sampled rows share randomness")
    order = data.draw(st.permutations(list(batch.rows())))
    bad = alone_mismatches(decoder, batch, order, SAMPLED)
    assert not bad, f"{batch.describe()}, {SAMPLED.describe()}, order {order}:\n" + "\n".join(bad)


# Rows that finish at very different times: at once (0 tokens), after the prefill's token, early by
# max_new_tokens, and late; prompts of 1 to 21 tokens.
STAGGERED = Batch("llama", "partial", ((5,), (7, 3, 9), tuple(range(2, 23)), (1, 2, 3, 4, 5, 6), (40, 41, 42)),
                  max_new_tokens=(0, 1, 5, 36, 20), eos=(None, None, None, None, None), gamma=4, seeds=(1, 2, 3, 4, 5))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_each_row_does_its_own_work(specdec_batched_factory, arch):
    """A row's passes and tokens fed are the same in the batch as alone: finished rows stop costing."""
    batch = Batch(arch, *[getattr(STAGGERED, f) for f in ("relation", "prompts", "max_new_tokens", "eos", "gamma")])
    bad = alone_mismatches(specdec_batched_factory(*batch.pair), batch, [4, 3, 2, 1, 0], fields=WORK_FIELDS)
    assert not bad, f"{batch.describe()}:\n" + "\n".join(bad)


def test_sixteen_rows(specdec_batched_factory):
    prompts = tuple(tuple((7 * i + j) % 96 for j in range(1 + (i * 13) % 40)) for i in range(16))
    batch = Batch("gpt2", "partial", prompts, tuple(8 + (5 * i) % 33 for i in range(16)), (None,) * 16, gamma=5)
    bad = greedy_mismatches(specdec_batched_factory(*batch.pair), batch)
    assert not bad, f"{batch.describe()}:\n" + "\n".join(bad)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_float32_rows_diverge_only_at_near_ties(specdec_batched_factory, arch):
    target, draft = cached_pair(arch, "partial", dtype=torch.float32)
    prompts = [torch.tensor([[(3 * i + j) % 96 for j in range(1 + 5 * i)]]) for i in range(6)]
    results = specdec_batched_factory(target, draft).generate_batch(prompts, max_new_tokens=32, gamma=4)
    for prompt, result in zip(prompts, results, strict=True):
        expected = AutoregressiveDecoder(target).generate(prompt, max_new_tokens=32).tokens
        verdict = judge_greedy(target, prompt, result.tokens, expected)
        assert verdict.ok, f"{arch}, prompt length {prompt.shape[1]}: {verdict.describe()}"
