"""Calibrated pairs: registered by name, of the documented size, deterministic, and agreeing at the
documented rate because of how they are built (early-exit draft, scaled deep layers)."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from pytest_specdec.perf.timing import torch_threads
from reference_impl.models import named_pairs
from reference_impl.models.calibrated import (
    CALIBRATED_PAIRS,
    SPECS,
    build_calibrated,
    calibration_prompts,
    measure_alpha,
    spec_named,
)
from reference_impl.models.tiny import build_model

SIZES = {"calibrated-40m": 40e6, "calibrated-110m": 110e6}
ALPHA_TOLERANCE = 0.1  # the check below uses 4 of the 8 calibration prompts and 48 of the 128 tokens


@functools.cache
def built(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    return CALIBRATED_PAIRS[name].build(torch.float32)


def non_embedding(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "lm_head" not in n)


def test_pairs_are_selectable_by_name():
    pairs = named_pairs()
    assert set(SIZES) <= set(pairs)
    for name in SIZES:
        assert pairs[name].build is not None
        assert f"{spec_named(name).deep_scale:g}" in pairs[name].description
    with pytest.raises(ValueError, match="unknown calibrated pair"):
        spec_named("calibrated-7b")


@pytest.mark.parametrize("name", sorted(SIZES))
def test_targets_have_the_documented_size(name):
    target, draft = built(name)
    spec = spec_named(name)
    assert non_embedding(target) == spec.non_embedding_params
    assert abs(spec.non_embedding_params - SIZES[name]) < 0.1 * SIZES[name]
    assert target.config.num_hidden_layers == spec.layers
    assert draft.config.num_hidden_layers == spec.draft_layers


def test_build_is_deterministic_and_leaves_the_global_rng_alone():
    spec = spec_named("calibrated-40m")
    rng_before = torch.random.get_rng_state()
    first, _ = build_calibrated(spec)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    second, _ = build_calibrated(spec)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    other, _ = build_calibrated(dataclasses.replace(spec, seed=spec.seed + 1))
    assert not torch.equal(other.lm_head.weight, first.lm_head.weight)


def test_draft_is_the_targets_early_exit_and_deep_layers_are_scaled():
    spec = spec_named("calibrated-40m")
    target, draft = built(spec.name)
    target_weights = target.state_dict()
    for name, weight in draft.state_dict().items():
        assert torch.equal(weight, target_weights[name]), name
    unscaled = build_model(spec.config(), spec.seed)
    for layer in range(spec.layers):
        scale = spec.deep_scale if layer >= spec.draft_layers else 1.0
        for proj in ("self_attn.o_proj", "mlp.down_proj"):
            got = target.get_submodule(f"model.layers.{layer}.{proj}").weight
            want = unscaled.get_submodule(f"model.layers.{layer}.{proj}").weight * scale
            torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    torch.testing.assert_close(target.lm_head.weight, unscaled.lm_head.weight * spec.head_scale, rtol=1e-6, atol=0)


def test_distributions_are_peaked_like_a_trained_models():
    """A random head gives top-1 probabilities ~0.001; the scaled head ~0.45 (0.2 .. 0.8 here)."""
    spec = spec_named("calibrated-40m")
    target, _ = built(spec.name)
    prompt = calibration_prompts(spec.vocab_size, 1)[0]
    with torch.inference_mode():
        top1 = target(input_ids=prompt).logits[0].softmax(-1).max(-1).values
    assert 0.2 < top1.mean().item() < 0.8, top1


def quick_alpha(target: torch.nn.Module, draft: torch.nn.Module, vocab_size: int, prompts: int = 4) -> float:
    """Alpha on the first calibration prompts, one torch thread (a busy machine slows it evenly)."""
    with torch_threads(1):
        return measure_alpha(target, draft, calibration_prompts(vocab_size, prompts), max_new_tokens=48)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_alpha_is_the_documented_calibration(name):
    """Greedy and float32, so deterministic on one machine; the tolerance covers the shorter sample."""
    spec = spec_named(name)
    alpha = quick_alpha(*built(name), spec.vocab_size)
    message = f"{name}: alpha {alpha:.3f}, documented {spec.measured_alpha}"
    assert abs(alpha - spec.measured_alpha) < ALPHA_TOLERANCE, message


def test_the_deep_scale_sets_alpha():
    """The same check rejects a pair built with another scale: 5x the deep-layer scale, far lower alpha."""
    spec = spec_named("calibrated-40m")
    louder = dataclasses.replace(spec, deep_scale=5 * spec.deep_scale)
    alpha = quick_alpha(*build_calibrated(louder), spec.vocab_size, prompts=2)
    assert alpha < spec.measured_alpha - 2 * ALPHA_TOLERANCE


def test_every_spec_is_registered():
    assert [spec.name for spec in SPECS] == list(CALIBRATED_PAIRS)


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("restored on errors too")
    assert torch.get_num_threads() == before
