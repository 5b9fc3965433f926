"""Every path through a speculative step, exercised deterministically with a scripted draft.

The draft agrees with the target's greedy path except at chosen positions, so each step rejects
at a known draft position (0 .. gamma-1) or accepts all gamma and adds the bonus token; the stats
must say exactly which path ran, and the output must still be the target's greedy output.
"""

from __future__ import annotations

import pytest
import torch

from reference_impl import AutoregressiveDecoder, SamplingConfig, SpeculativeDecoder
from tests.support.pairs import cached_pair
from tests.support.scripted import ScriptedDraft

PROMPT = torch.tensor([[3, 17, 42, 8, 5]])
GAMMA = 4
STEPS = 6


def greedy_reference(target, n_tokens):
    result = AutoregressiveDecoder(target).generate(PROMPT, max_new_tokens=n_tokens)
    return PROMPT[0].tolist() + result.tokens, result.tokens


def simulate(agree, first_position, gamma, max_new_tokens):
    """The (gamma, accepted) of each step the algorithm must take, given which positions the draft gets right.

    An independent statement of the control flow: after the prefill's token, each step drafts
    min(gamma, remaining - 1) tokens, keeps the agreeing prefix and adds one token.
    """
    steps, position, remaining = [], first_position, max_new_tokens - 1
    while remaining > 0:
        step_gamma = min(gamma, remaining - 1)
        if step_gamma == 0:
            break
        accepted = 0
        while accepted < step_gamma and agree(position + accepted):
            accepted += 1
        steps.append((step_gamma, accepted))
        position += accepted + 1
        remaining -= accepted + 1
    return steps


@pytest.mark.parametrize("max_new_tokens", [1 + STEPS * (GAMMA + 1), 23, 40])
@pytest.mark.parametrize("reject_at", [*range(GAMMA), None], ids=[*(f"reject{j}" for j in range(GAMMA)), "all"])
def test_each_rejection_position_and_the_bonus_path(reject_at, max_new_tokens):
    """Each step rejects draft position ``reject_at`` (None: accepts all gamma, then the bonus token)."""
    target, _ = cached_pair("llama", "partial")
    per_step = GAMMA + 1 if reject_at is None else reject_at + 1
    sequence, expected = greedy_reference(target, max_new_tokens)
    first_position = PROMPT.shape[1] + 1  # sequence position of the first drafted token

    def agree(position: int) -> bool:
        return reject_at is None or (position - first_position) % per_step != reject_at

    draft = ScriptedDraft(target, sequence, agree)
    result = SpeculativeDecoder(target, draft, gamma=GAMMA).generate(PROMPT, max_new_tokens=max_new_tokens)
    steps = simulate(agree, first_position, GAMMA, max_new_tokens)
    stats = result.stats
    assert result.tokens == expected
    assert stats.gammas == tuple(g for g, _ in steps)
    assert stats.accepted == sum(a for _, a in steps)
    assert stats.rejections == sum(a < g for g, a in steps)
    assert list(stats.accepted_by_position) == [sum(a > i for _, a in steps) for i in range(GAMMA)]
    assert list(stats.drafted_by_position) == [sum(g > i for g, _ in steps) for i in range(GAMMA)]
    assert stats.target_forwards == 1 + len(steps) + (len(expected) - 1 - sum(a + 1 for _, a in steps))
    assert stats.draft_forwards == sum(g for g, _ in steps)
    assert stats.forwards_before_first_token == 1
    if max_new_tokens == 1 + STEPS * (GAMMA + 1) and reject_at is None:
        assert stats.mean_accepted_length == GAMMA + 1
    if reject_at is not None:
        assert all(a == min(g, reject_at) for g, a in steps)


def test_rollback_feeds_the_draft_each_token_once():
    """The draft is fed each token once: prompt + first token, then only what it has not seen."""
    target, _ = cached_pair("llama", "partial")
    max_new_tokens = 1 + STEPS * 3
    sequence, expected = greedy_reference(target, max_new_tokens)
    start = PROMPT.shape[1] + 1
    draft = ScriptedDraft(target, sequence, lambda p: (p - start) % 3 != 2)  # every step rejects position 2
    result = SpeculativeDecoder(target, draft, gamma=GAMMA).generate(PROMPT, max_new_tokens=max_new_tokens)
    assert result.tokens == expected
    # Step 1 feeds the prompt and first token; every later step feeds only the token(s) the draft has not
    # seen (the correction, or the last draft and the bonus after a full accept); each feeds gamma - 1 drafts.
    steps = simulate(lambda p: (p - start) % 3 != 2, start, GAMMA, max_new_tokens)
    unseen = [2 if a == g else 1 for g, a in steps[:-1]]
    assert result.stats.draft_tokens_fed == PROMPT.shape[1] + 1 + sum(unseen) + sum(g - 1 for g, _ in steps)
    assert result.stats.draft_prefills == 1


def test_scripted_paths_through_the_decoder_under_test(specdec_factory):
    """Any decoder: output equals the target's greedy output whatever the draft gets right."""
    target, _ = cached_pair("llama", "partial")
    sequence, expected = greedy_reference(target, 30)
    for period in (1, 2, 3, 5, 7):
        draft = ScriptedDraft(target, sequence, lambda p, period=period: p % period != 0)
        result = specdec_factory(target, draft).generate(PROMPT, max_new_tokens=30, sampling=SamplingConfig(), gamma=4)
        assert result.tokens == expected, f"draft wrong every {period} positions"


@pytest.mark.specdec_verdict("performance")  # acceptance: a lossless decoder can waste drafts
@pytest.mark.parametrize("gamma", [1, 3, 4, 7])
def test_identical_draft_accepts_everything(specdec_factory, gamma):
    """Draft == target: alpha estimate 1, mean accepted length gamma + 1, one target pass per gamma + 1 tokens."""
    target, draft = cached_pair("llama", "identical")
    steps = 5
    result = specdec_factory(target, draft).generate(PROMPT, max_new_tokens=1 + steps * (gamma + 1), gamma=gamma)
    stats = result.stats
    assert stats.alpha_estimate == 1.0
    assert stats.mean_accepted_length == gamma + 1
    assert stats.rejections == 0
    assert stats.steps == steps
    assert stats.target_forwards == 1 + steps


@pytest.mark.specdec_verdict("performance")  # acceptance: a lossless decoder can waste drafts
@pytest.mark.parametrize("sampling", [SamplingConfig(temperature=1.0), SamplingConfig(temperature=0.7, top_k=8)])
def test_identical_draft_accepts_everything_when_sampling(specdec_factory, sampling):
    target, draft = cached_pair("llama", "identical")
    generator = torch.Generator().manual_seed(0)
    result = specdec_factory(target, draft).generate(
        PROMPT, max_new_tokens=21, gamma=4, sampling=sampling, generator=generator
    )
    assert result.stats.alpha_estimate == 1.0
    assert result.stats.mean_accepted_length == 5


def test_eos_inside_accepted_prefix_ends_generation(specdec_factory):
    """EOS accepted mid-step ends generation; nothing after it is emitted or counted."""
    target, _ = cached_pair("llama", "partial")
    sequence, full = greedy_reference(target, 30)
    # First token at index >= 5 not seen before and not a step's bonus (indices 5, 10, ... at gamma 4).
    eos_index = next(i for i in range(5, 30) if full[i] not in full[:i] and i % 5)
    eos = full[eos_index]
    draft = ScriptedDraft(target, sequence, lambda p: True)
    result = specdec_factory(target, draft).generate(PROMPT, max_new_tokens=30, gamma=4, eos_token_id=eos)
    assert result.tokens == full[: eos_index + 1]
    assert result.stats.new_tokens == eos_index + 1
    assert result.stats.accepted == eos_index - eos_index // 5  # all but the prefill's and bonus tokens
    assert result.stats.rejections == 0


@pytest.mark.specdec_verdict("protocol")  # the length rule and its counts, not the output's law
@pytest.mark.parametrize("max_new_tokens", range(0, 12))
def test_max_new_tokens_is_never_overshot(specdec_factory, max_new_tokens):
    target, draft = cached_pair("llama", "identical")
    result = specdec_factory(target, draft).generate(PROMPT, max_new_tokens=max_new_tokens, gamma=4)
    assert len(result.tokens) == max_new_tokens
    assert result.stats.new_tokens == max_new_tokens
    assert result.stats.accepted <= max(0, max_new_tokens - 1)


@pytest.mark.specdec_requires("streaming", "gamma")
@pytest.mark.specdec_verdict("performance")  # a TTFT property: the output can be lossless either way
def test_first_token_comes_from_the_target_prefill_alone(specdec_factory):
    """No draft work before the first visible token: TTFT equals the baseline's."""
    target, draft = cached_pair("llama", "partial")
    seen: list[tuple[int, int]] = []
    decoder = specdec_factory(target, draft)
    inner = getattr(decoder, "inner", decoder)
    calls = {"draft": 0}
    original = draft.forward

    def counting_forward(*args, **kwargs):
        calls["draft"] += 1
        return original(*args, **kwargs)

    draft.forward = counting_forward
    try:
        inner.generate(PROMPT, max_new_tokens=6, gamma=4, on_token=lambda t: seen.append((t, calls["draft"])))
    finally:
        del draft.forward
    assert seen[0][1] == 0, "the draft ran before the first token was visible"
