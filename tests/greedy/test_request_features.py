"""Greedy exactness under every request feature: the decoder under test against the autoregressive reference with
the same request, in float64, strictly; and its logprobs against the target's exact processed law.

Penalties, logit bias and ``min_new_tokens`` make each position's law depend on every token before it, so a
speculative decoder must process each verify row with the draft tokens before it; a stop sequence must end the
output at the token that completes it, inside an accepted block too. The property test draws features,
prompts, gammas, EOS tokens and stop sequences cut from the reference's own output (so they do complete); the
boundary test puts a stop or a ``min_new_tokens`` boundary at every position of a step (first, middle, last
draft position, bonus) with a draft that accepts everything, so the position in the step is known.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_impl import SamplingConfig
from tests.support.pairs import cached_pair
from tests.support.request_checks import draw_request, logprob_mismatches, reference_tokens, request_mismatches

VOCAB = 96
PENALTIES = ("repetition_penalty", "presence_penalty", "frequency_penalty")


@pytest.mark.specdec_requires(*PENALTIES, "logit_bias", "min_new_tokens", "stop", "logprobs")
@settings(max_examples=max(10, settings().max_examples // 4))  # each example decodes twice: a quarter of the profile
@given(data=st.data())
def test_speculative_output_equals_the_reference_under_every_feature(specdec_factory, data):
    (target, draft, prompt), request = draw_request(data, VOCAB, PENALTIES)
    plain = reference_tokens(target, prompt, request)
    cuts = st.tuples(st.integers(0, max(len(plain) - 1, 0)), st.integers(1, 3))
    stops = [plain[i:i + n] for i, n in data.draw(st.lists(cuts, max_size=2), "stop cuts") if plain[i:i + n]]
    request["stop"] = stops + data.draw(st.lists(st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=2),
                                                 max_size=1), "random stops")
    assert request_mismatches(specdec_factory(target, draft), target, prompt, request) == []


def step_position(index: int, gamma: int) -> str:
    """Where token ``index`` falls when every draft token is accepted: the prefill's token, then steps of gamma + 1."""
    if index == 0:
        return "first token"
    position = (index - 1) % (gamma + 1)
    return "bonus" if position == gamma else f"draft position {position}"


@pytest.mark.specdec_requires("repetition_penalty", "min_new_tokens", "stop", "logprobs")
@pytest.mark.parametrize("gamma", [1, 3, 5])
def test_a_stop_or_min_tokens_boundary_at_every_position_of_a_step(specdec_factory, gamma):
    target, draft = cached_pair("llama", "identical")
    prompt = torch.tensor([[5, 41, 7, 19]])
    sampling = SamplingConfig(repetition_penalty=1.2)
    plain = reference_tokens(target, prompt, {"max_new_tokens": gamma + 4, "sampling": sampling})  # two steps
    decoder = specdec_factory(target, draft)
    seen = set()
    for index in range(len(plain)):
        seen.add(step_position(index, gamma))
        for request in (
            {"stop": [plain[max(index - 1, 0):index + 1]]},  # completes at index (or earlier, if seen before)
            {"eos_token_id": plain[index], "min_new_tokens": index},  # EOS first allowed exactly at index
            {"eos_token_id": plain[index], "min_new_tokens": index + 1},
            {"stop": [plain[index:index + 1]], "min_new_tokens": index, "logprobs": 1},
        ):
            request.update(max_new_tokens=min(index + 3, len(plain)), sampling=sampling, gamma=gamma)
            problems = request_mismatches(decoder, target, prompt, request)
            assert problems == [], f"boundary at index {index} ({step_position(index, gamma)}), {request}: {problems}"
    assert {"first token", "bonus", "draft position 0", f"draft position {gamma - 1}"} <= seen


def first_end(tokens: list[int], stop: list[int]) -> int:
    """The length of ``tokens`` cut right after the first completion of ``stop`` (len(tokens) + 1 if none)."""
    return next((end for end in range(len(stop), len(tokens) + 1) if tokens[end - len(stop):end] == stop),
                len(tokens) + 1)


@pytest.mark.specdec_requires("stop")
def test_the_stop_that_completes_first_wins_whatever_its_place_in_the_list(specdec_factory):
    """Two stops that both complete inside one accepted block (gamma 8, a draft that agrees): the earlier ends it."""
    target, draft = cached_pair("qwen2", "identical")
    prompt = torch.tensor([[5, 41, 7, 19]])
    plain = reference_tokens(target, prompt, {"max_new_tokens": 24})
    pairs = [(plain[i:i + 2], plain[j:j + 3]) for i in range(1, 8) for j in range(i + 1, 9)]
    early, late = next((a, b) for a, b in pairs if first_end(plain, a) < first_end(plain, b) <= 9)
    end = first_end(plain, early)
    for stop in ([late, early], [early, late]):
        got = specdec_factory(target, draft).generate(prompt, max_new_tokens=24, gamma=8, stop=stop)
        assert got.tokens == plain[:end], f"stop={stop}: got {got.tokens}, expected the end at index {end - 1}"


@pytest.mark.specdec_requires("logprobs", "min_new_tokens")
@pytest.mark.parametrize(
    "sampling",
    [pytest.param(SamplingConfig(temperature=1.0), id="T1"),
     pytest.param(SamplingConfig(temperature=0.7, top_k=8, top_p=0.9), id="T0.7-topk-topp"),
     pytest.param(SamplingConfig(temperature=1.2, min_p=0.05, repetition_penalty=1.3, frequency_penalty=0.5,
                                 logit_bias={3: 2.0, 9: -math.inf}), id="minp-penalties-bias",
                  marks=pytest.mark.specdec_requires("min_p", "repetition_penalty", "frequency_penalty",
                                                     "logit_bias"))],
)
def test_sampled_logprobs_are_the_targets_processed_law(specdec_factory, sampling):
    """Every emitted position (first token, accepted draft, correction, bonus) on the partial pair, several seeds."""
    target, draft = cached_pair("llama", "partial")
    prompt = torch.tensor([[5, 41, 7, 19]])
    for seed in range(4):
        generator = torch.Generator().manual_seed(seed)
        request = {"max_new_tokens": 30, "sampling": sampling, "gamma": 4, "logprobs": 2, "min_new_tokens": 5,
                   "eos_token_id": 0}
        assert logprob_mismatches(specdec_factory(target, draft), target, prompt, request, generator) == []
