"""Greedy exactness of every batched row under every request feature, each row with its own request.

Through ``specdec_batched_factory`` (``--specdec-impl``; by default the batched reference), in float64, strictly:
row i of a ``generate_batch`` call must give the tokens the single-sequence autoregressive reference gives for
row i's prompt and request alone (its own penalties, bias, EOS, ``min_new_tokens``, stops), and its logprobs must be
the target's processed law at each of its prefixes. Each row's history is its own prompt and its own tokens: a
history shared by the batch, counted per batch step, or not frozen when a row leaves the batch changes some row's
tokens (the mutants, tests/greedy/test_batched_request_mutants.py).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference_impl import SamplingConfig
from reference_impl.models.tiny import ARCHITECTURES
from tests.greedy.test_request_features import PENALTIES, VOCAB, step_position
from tests.support.batched_checks import examples
from tests.support.pairs import cached_pair
from tests.support.request_checks import batched_request_mismatches, reference_tokens, sampling_features

pytestmark = [pytest.mark.specdec_batched, pytest.mark.usefixtures("single_torch_thread")]
FEATURES = (*PENALTIES, "logit_bias", "min_new_tokens", "stop", "logprobs")


@st.composite
def row_request(draw, target, prompt: torch.Tensor, shared: SamplingConfig | None) -> dict:
    request = {
        "max_new_tokens": draw(st.integers(0, 30), "max_new_tokens"),
        "sampling": shared or draw(sampling_features(VOCAB), "row sampling"),
        "eos_token_id": draw(st.one_of(st.none(), st.integers(0, VOCAB - 1)), "eos"),
        "min_new_tokens": draw(st.integers(0, 16), "min_new_tokens"),
        "logprobs": draw(st.sampled_from([None, 0, 2]), "logprobs"),
    }
    plain = reference_tokens(target, prompt, request)
    cuts = draw(st.lists(st.tuples(st.integers(0, max(len(plain) - 1, 0)), st.integers(1, 3)), max_size=2), "cuts")
    request["stop"] = [plain[i:i + n] for i, n in cuts if plain[i:i + n]]
    return request


@pytest.mark.specdec_requires(*FEATURES)
@examples(divisor=4, floor=8)
@given(data=st.data())
def test_each_batched_row_equals_the_reference_with_its_own_request(specdec_batched_factory, data):
    """1-6 rows of prompts of 1-16 tokens, gamma 1-6, one sampling config for the batch or one per row; per row
    max_new_tokens 0-30, EOS, min_new_tokens 0-16, logprobs, stops cut from the row's own reference output."""
    arch = data.draw(st.sampled_from(ARCHITECTURES), "arch")
    target, draft = cached_pair(arch, data.draw(st.sampled_from(["partial", "identical", "unrelated"]), "relation"))
    rows = data.draw(st.integers(1, 6), "rows")
    prompts = [torch.tensor([data.draw(st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=16), "prompt")])
               for _ in range(rows)]
    shared = data.draw(st.one_of(st.none(), sampling_features(VOCAB)), "shared sampling")
    requests = [data.draw(row_request(target, prompt, shared)) for prompt in prompts]
    gamma = data.draw(st.integers(1, 6), "gamma")
    assert batched_request_mismatches(specdec_batched_factory(target, draft), target, prompts, requests, gamma) == []


@pytest.mark.specdec_requires("repetition_penalty", "logit_bias", "min_new_tokens", "stop", "logprobs")
@pytest.mark.parametrize("gamma", [1, 3, 5])
def test_a_stop_or_min_tokens_boundary_at_every_position_of_a_step_row_by_row(specdec_batched_factory, gamma):
    """A draft that accepts everything (the identical pair), so token i's place in its step is known: row i of one
    batch stops at index i (first token, each draft position, the bonus), rows finish at different steps beside
    rows that go on; a second batch puts each row's EOS at its ``min_new_tokens`` boundary or just before it."""
    target, draft = cached_pair("llama", "identical")
    prompts = [torch.tensor([[5, 41, 7, 19]]), torch.tensor([[3, 3, 60]])]
    sampling = [SamplingConfig(repetition_penalty=1.2), SamplingConfig(repetition_penalty=1.3, logit_bias={7: 1.5})]
    plains = [reference_tokens(target, p, {"max_new_tokens": 2 * gamma + 4, "sampling": s})
              for p, s in zip(prompts, sampling, strict=True)]
    decoder = specdec_batched_factory(target, draft)
    batch_prompts, stops, floors = [], [], []
    for which, plain in enumerate(plains):
        for index in range(len(plain)):
            base = {"max_new_tokens": len(plain), "sampling": sampling[which], "logprobs": index % 2}
            batch_prompts += [prompts[which]] * 3
            stops += [{**base, "stop": [plain[max(index - 1, 0):index + 1]]}]
            floors += [{**base, "eos_token_id": plain[index], "min_new_tokens": floor} for floor in (index, index + 1)]
    requests = [r for triple in zip(stops, floors[::2], floors[1::2], strict=True) for r in triple]
    problems = batched_request_mismatches(decoder, target, batch_prompts, requests, gamma)
    assert problems == [], f"rows 3i, 3i+1, 3i+2 put their boundary at token i % {len(plains[0])}: {problems}"
    assert {step_position(i, gamma) for i in range(len(plains[0]))} >= {
        "first token", "bonus", "draft position 0", f"draft position {gamma - 1}"}


@pytest.mark.specdec_requires("logit_bias", "min_new_tokens", "stop")
def test_shared_features_mean_the_same_for_every_row(specdec_batched_factory):
    """A shared stop list, min_new_tokens and logprobs (one value for all rows) equal passing them per row."""
    target, draft = cached_pair("gpt2", "partial")
    prompts = [torch.tensor([[5, 41, 7, 19]]), torch.tensor([[9]]), torch.tensor([list(range(30, 44))])]
    sampling = SamplingConfig(logit_bias={4: -math.inf, 11: 3.0}, repetition_penalty=1.4)
    stop = [reference_tokens(target, prompts[1], {"max_new_tokens": 9, "sampling": sampling})[5:7], [11, 11]]
    decoder = specdec_batched_factory(target, draft)
    shared = decoder.generate_batch(prompts, max_new_tokens=20, sampling=sampling, eos_token_id=3, min_new_tokens=4,
                                    stop=stop, logprobs=1, gamma=3)
    per_row = decoder.generate_batch(prompts, max_new_tokens=[20] * 3, sampling=[sampling] * 3, eos_token_id=[3] * 3,
                                     min_new_tokens=[4] * 3, stop=[stop] * 3, logprobs=[1] * 3, gamma=3)
    assert [r.tokens for r in shared] == [r.tokens for r in per_row]
    assert [r.logprobs for r in shared] == [r.logprobs for r in per_row]
    assert len(shared[1].tokens) < 20, "the stop cut from row 1's own output must end it"

