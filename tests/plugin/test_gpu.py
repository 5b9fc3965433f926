"""Checks that only mean something on CUDA: run with `pytest --specdec-gpu`."""

from __future__ import annotations

import pytest
import torch

from reference_impl import SamplingConfig

pytestmark = pytest.mark.specdec_gpu


def test_pair_is_on_the_gpu_in_the_requested_dtype(specdec_pair, specdec_options):
    assert str(specdec_pair.device).startswith("cuda")
    assert next(specdec_pair.target.parameters()).is_cuda
    assert str(specdec_pair.target.dtype) == f"torch.{specdec_options.resolved_dtype()}"


def test_sampling_with_a_cuda_generator(specdec_decoder, specdec_prompts, specdec_generator):
    generator = specdec_generator(3)
    assert generator.device.type == "cuda"
    result = specdec_decoder.generate(
        specdec_prompts[0], max_new_tokens=16, sampling=SamplingConfig(temperature=1.0), generator=generator
    )
    assert len(result.tokens) == 16


def test_timing_is_synchronised(specdec_timer, specdec_decoder, specdec_prompts):
    timed = specdec_timer.time(specdec_decoder, specdec_prompts[0], max_new_tokens=16, sampling=SamplingConfig())
    assert 0 < timed.ttft <= timed.latency
    assert timed.n_tokens == 16
    torch.cuda.synchronize()
