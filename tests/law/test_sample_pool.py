"""The sampling-law tests' sample source: the same tokens on one process or several, and every result checked."""

from __future__ import annotations

import functools

import pytest

from pytest_specdec.law.sample_pool import CHUNK, DecoderSource, decode_plan, sample_decodes
from pytest_specdec.protocol.decoder import ContractError
from reference_impl.sampling import SamplingConfig

from .test_sampling_law import build_pair

T1 = SamplingConfig(temperature=1.0)
SOURCE = DecoderSource("reference_impl.speculative:SpeculativeDecoder", functools.partial(build_pair, "main"))


def test_plan_is_fixed_by_its_seed_and_varies_prompts_and_lengths():
    plan = decode_plan(7, 400, vocab=8, new_tokens=(8, 40))
    assert plan == decode_plan(7, 400, vocab=8, new_tokens=(8, 40))
    assert plan != decode_plan(8, 400, vocab=8, new_tokens=(8, 40))
    assert {len(c.prompt) for c in plan} == set(range(1, 13))
    assert min(c.max_new_tokens for c in plan) == 8 and max(c.max_new_tokens for c in plan) == 40


def test_same_tokens_in_process_and_on_workers():
    plan = decode_plan(3, 2 * CHUNK + 5, vocab=8, new_tokens=(4, 12))
    here = sample_decodes(SOURCE, plan, T1, seed=11, gamma=2, jobs=1)
    workers = sample_decodes(SOURCE, plan, T1, seed=11, gamma=2, jobs=2)
    assert here.sequences == workers.sequences
    assert (here.accepted, here.rejections, here.steps) == (workers.accepted, workers.rejections, workers.steps)
    assert here.n_tokens == sum(c.max_new_tokens for c in plan)
    other_seed = sample_decodes(SOURCE, plan, T1, seed=12, gamma=2, jobs=1)
    assert other_seed.sequences != here.sequences


class ShortDecoder:
    """Stops one token early: a sample of the wrong length must not be tested as if it were whole."""

    def __init__(self, target, draft):
        from reference_impl import SpeculativeDecoder

        self.inner = SpeculativeDecoder(target, draft)

    def generate(self, input_ids, *, max_new_tokens, **kwargs):
        return self.inner.generate(input_ids, max_new_tokens=max_new_tokens - 1, **kwargs)


def test_a_short_result_fails_loudly():
    source = DecoderSource("tests.law.test_sample_pool:ShortDecoder", functools.partial(build_pair, "main"))
    with pytest.raises((AssertionError, ContractError), match="new tokens"):
        sample_decodes(source, decode_plan(1, 3, vocab=8, new_tokens=(5, 6)), T1, seed=0, gamma=2, jobs=1)


class DyingDecoder(ShortDecoder):
    """Kills its own process: what a segfaulting extension does to a worker."""

    def generate(self, input_ids, **kwargs):
        import os

        os._exit(3)


def test_a_dead_worker_names_the_decoder_and_the_fallback():
    source = DecoderSource("tests.law.test_sample_pool:DyingDecoder", functools.partial(build_pair, "main"))
    plan = decode_plan(1, 2 * CHUNK, vocab=8, new_tokens=(5, 6))
    with pytest.raises(RuntimeError, match=r"tests\.law\.test_sample_pool:DyingDecoder died.*--specdec-sample-jobs 1"):
        sample_decodes(source, plan, T1, seed=0, gamma=2, jobs=2)
    # the pool was replaced: the next sample runs
    assert sample_decodes(SOURCE, plan, T1, seed=0, gamma=2, jobs=2).n_tokens == sum(c.max_new_tokens for c in plan)
