"""The decoder under test on the session's pair (the trained pair by default, or --specdec-target/-draft).

Greedy output must equal the target's own greedy output; in float32 or lower a divergence passes
only where the target's logits show a near-tie there, and the session report says which it was.
"""

from __future__ import annotations

import pytest
import torch

from pytest_specdec.law.numerics import judge_greedy
from reference_impl import SamplingConfig

MAX_NEW_TOKENS = 48


def test_greedy_equals_target_greedy_on_the_standard_prompts(
    specdec_decoder, specdec_baseline_decoder, specdec_prompts, specdec_pair, specdec_results
):
    verdicts = []
    for prompt in specdec_prompts:
        expected = specdec_baseline_decoder.generate(prompt, max_new_tokens=MAX_NEW_TOKENS).tokens
        got = specdec_decoder.generate(prompt, max_new_tokens=MAX_NEW_TOKENS, sampling=SamplingConfig()).tokens
        verdicts.append(judge_greedy(specdec_pair.target, prompt, got, expected))
    summary = ", ".join(sorted({v.kind for v in verdicts}))
    specdec_results.notes.append(f"greedy on {specdec_pair.label} ({specdec_pair.dtype}): {summary}")
    bugs = [f"prompt {i}: {v.describe()}" for i, v in enumerate(verdicts) if not v.ok]
    assert not bugs, "\n".join(bugs)


@pytest.mark.specdec_verdict("performance")  # a TTFT property: the output can be lossless either way
def test_no_draft_work_before_the_first_token(specdec_decoder, specdec_pair, specdec_prompts):
    """TTFT equals the baseline's only if the draft does not run before the first visible token."""
    draft_calls = []
    first_token_at = []
    handle = specdec_pair.draft.register_forward_hook(lambda *args: draft_calls.append(1))
    try:
        specdec_decoder.generate(
            specdec_prompts[0],
            max_new_tokens=8,
            sampling=SamplingConfig(),
            on_token=lambda token: first_token_at.append(len(draft_calls)) if not first_token_at else None,
        )
    finally:
        handle.remove()
    assert first_token_at, "on_token was never called"
    assert first_token_at[0] == 0, f"the draft ran {first_token_at[0]} forward pass(es) before the first token"


@pytest.mark.parametrize(
    "sampling",
    [
        SamplingConfig(temperature=1.0),
        SamplingConfig(temperature=0.7, top_k=20),
        SamplingConfig(temperature=1.0, top_p=0.9),
    ],
    ids=lambda s: s.describe(),
)
def test_sampling_is_reproducible_from_the_generator(specdec_decoder, specdec_prompts, specdec_generator, sampling):
    prompt = specdec_prompts[1]
    runs = [
        specdec_decoder.generate(prompt, max_new_tokens=24, sampling=sampling, generator=specdec_generator(seed)).tokens
        for seed in (7, 7, 8)
    ]
    assert runs[0] == runs[1], "the same seed gave different tokens"
    assert runs[0] != runs[2], "different seeds gave identical tokens: is the generator ignored?"
    assert len(runs[0]) == 24


def test_sampling_leaves_the_global_rng_alone(specdec_decoder, specdec_prompts, specdec_generator):
    state = torch.random.get_rng_state()
    specdec_decoder.generate(
        specdec_prompts[0], max_new_tokens=8, sampling=SamplingConfig(temperature=1.0), generator=specdec_generator(1)
    )
    assert torch.equal(state, torch.random.get_rng_state()), "the decoder drew from or reseeded the global RNG"


def test_eos_stops_generation(specdec_decoder, specdec_baseline_decoder, specdec_prompts):
    prompt = specdec_prompts[2]
    full = specdec_baseline_decoder.generate(prompt, max_new_tokens=24).tokens
    eos = full[5]
    cut = full.index(eos) + 1
    got = specdec_decoder.generate(prompt, max_new_tokens=24, sampling=SamplingConfig(), eos_token_id=eos).tokens
    assert got == full[:cut]
