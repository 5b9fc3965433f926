"""Request features through Hugging Face assisted generation (``pytest_specdec.adapters.hf_features``).

transformers offers repetition_penalty, sequence_bias (logit bias on single tokens, ``-inf`` bans), min_p,
min_new_tokens, token-id stops through a ``StoppingCriteria``, and scores and logits for logprobs; presence and
frequency penalties do not exist there (not declared, refused by name). Each is held to the single-sequence
autoregressive reference with the same request, in float64 (tiny pairs): tokens strictly, logprobs within
``FLOAT32_LAW``, because transformers computes the scores in float32 whatever the model's dtype
(``_assisted_decoding``: ``new_logits = outputs.logits[...].to(dtype=torch.float32)``; measured differences
3e-8 to 8e-8 from the float64 law).

The finding: a stop sequence that completes inside an accepted block does not end the output there. transformers'
assisted loop evaluates its stopping criteria once per iteration, on the sequence with the whole accepted block
appended, and trims the block only at EOS and the length limit (its own comment: "we should technically crop
based on other stopping criteria as well in all generality, not only EOS and Length"). A criterion that judges
the end of the sequence, as transformers' own do, never sees a stop that completes mid-block, so generation goes
on past it (SGLang PR #23802's class); one that searched the whole block would stop at the block's end and still
return the tokens after the stop (vLLM PR #47616's class).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_specdec.adapters import hf_assisted
from pytest_specdec.adapters.hf_assisted import GenerateTrace
from pytest_specdec.protocol.capabilities import declared
from pytest_specdec.protocol.decoder import CheckedDecoder, ContractError
from reference_impl import SamplingConfig
from reference_impl.errors import InvalidSamplingError, UnsupportedFeatureError
from tests.adapters.test_adapters import found_in_transformers
from tests.support.pairs import cached_pair
from tests.support.request_checks import draw_request, logprob_mismatches, reference_tokens, request_mismatches

pytestmark = pytest.mark.usefixtures("single_torch_thread")
FLOAT32_LAW = 1e-6  # transformers' scores are float32: 1e-7 relative, on log-probabilities of a few units
VOCAB = 96
PROMPT = torch.tensor([[5, 41, 7, 19]])


def checked(target, draft):
    return CheckedDecoder(hf_assisted.factory(target, draft), "hf_assisted:factory", target, draft)


@settings(max_examples=max(8, settings().max_examples // 4))
@given(data=st.data())
def test_greedy_output_equals_the_reference_under_transformers_features(data):
    """Four architectures, identical and partial drafts, gamma 1-7, repetition penalty (also below 1), biases and
    bans, EOS, min_new_tokens 0-24, logprobs 0 or 3; tokens strictly, logprobs within FLOAT32_LAW."""
    (target, draft, prompt), request = draw_request(data, VOCAB, ("repetition_penalty",))  # no presence/frequency
    assert request_mismatches(checked(target, draft), target, prompt, request, tolerance=FLOAT32_LAW) == []


@pytest.mark.parametrize("gamma", [1, 3, 5])
def test_an_eos_at_the_min_new_tokens_boundary_at_every_position_of_a_step(gamma):
    """The identical pair accepts every draft, so token i's place in its step is known; EOS first allowed exactly
    at index i, or one token later."""
    target, draft = cached_pair("llama", "identical")
    sampling = SamplingConfig(repetition_penalty=1.2)
    plain = reference_tokens(target, PROMPT, {"max_new_tokens": gamma + 4, "sampling": sampling})
    for index in range(len(plain)):
        for floor in (index, index + 1):
            request = {"eos_token_id": plain[index], "min_new_tokens": floor, "max_new_tokens": len(plain),
                       "sampling": sampling, "gamma": gamma, "logprobs": 1}
            problems = request_mismatches(checked(target, draft), target, PROMPT, request, tolerance=FLOAT32_LAW)
            assert problems == [], f"EOS at index {index}, min_new_tokens {floor}: {problems}"


@pytest.mark.parametrize(
    "sampling",
    [pytest.param(SamplingConfig(temperature=1.0), id="T1"),
     pytest.param(SamplingConfig(temperature=0.7, top_k=8, top_p=0.9), id="T0.7-topk-topp"),
     pytest.param(SamplingConfig(temperature=1.2, min_p=0.05, repetition_penalty=1.3,
                                 logit_bias={3: 2.0, 9: -math.inf}), id="minp-repetition-bias")],
)
def test_sampled_logprobs_are_the_targets_processed_law(sampling):
    """Every emitted position on the partial pair, 4 seeds: transformers' scores give the target's processed law."""
    target, draft = cached_pair("llama", "partial")
    for seed in range(4):
        request = {"max_new_tokens": 30, "sampling": sampling, "gamma": 4, "logprobs": 2, "min_new_tokens": 5,
                   "eos_token_id": 0}
        assert logprob_mismatches(checked(target, draft), target, PROMPT, request, torch.Generator().manual_seed(seed),
                                  tolerance=FLOAT32_LAW) == []


def test_presence_and_frequency_penalties_are_not_declared_and_refused_by_name():
    target, draft = cached_pair("llama", "partial")
    assert {"presence_penalty", "frequency_penalty"}.isdisjoint(declared(hf_assisted.factory))
    assert {"repetition_penalty", "logit_bias", "min_p", "min_new_tokens", "stop", "logprobs"} <= declared(
        hf_assisted.factory) == declared(hf_assisted.default_factory)
    for sampling in (SamplingConfig(presence_penalty=0.5), SamplingConfig(frequency_penalty=0.5)):
        with pytest.raises(UnsupportedFeatureError, match="no presence or frequency penalty"):
            hf_assisted.factory(target, draft).generate(PROMPT, max_new_tokens=4, sampling=sampling)
    with pytest.raises(InvalidSamplingError, match=r"token\(s\) \[500\], but the vocabulary has 96"):
        hf_assisted.factory(target, draft).generate(PROMPT, max_new_tokens=4,
                                                    sampling=SamplingConfig(logit_bias={500: 1}))


# --- stops: the finding and its control --------------------------------------------------------------

def stop_inside_a_block(relation: str) -> tuple[list[int], list[int], list[list[int]]]:
    """Greedy, gamma 4, stop = the reference's token at index 2 (one token long, so it completes exactly there).

    Returns (the adapter's tokens, the reference's tokens cut at the stop, the chunks transformers emitted)."""
    target, draft = cached_pair("llama", relation)
    sampling = SamplingConfig(repetition_penalty=1.5)
    plain = reference_tokens(target, PROMPT, {"max_new_tokens": 16, "sampling": sampling})
    stop = [[plain[2]]]
    expected = reference_tokens(target, PROMPT, {"max_new_tokens": 16, "sampling": sampling, "stop": stop})
    trace = GenerateTrace()
    got = hf_assisted.factory(target, draft).generate(PROMPT, max_new_tokens=16, sampling=sampling, gamma=4,
                                                      stop=stop, trace=trace)
    return got.tokens, expected, trace.chunks


@found_in_transformers(
    "a stop sequence (StoppingCriteria) completing inside an accepted block of assisted generation does not end the "
    "output there: _assisted_decoding evaluates stopping criteria once per iteration on the whole accepted block and "
    "trims the block at EOS and the length limit only (its comment: 'we should technically crop based on other "
    "stopping criteria as well'). Measured (tiny Llama, identical draft, gamma 4, repetition penalty 1.5, stop = "
    "the reference's token 14 at index 2): transformers emits the blocks [16, 77, 14, 29, 27], [44, 86, 53, 26, 35], "
    "[49, 79, 11, 95, 32], [89]; the stop ends no block, so the criterion never holds and all 16 tokens are returned "
    "where the reference stops after 3 ('stop sequence [14] completed at index 2 but 13 more token(s) were "
    "emitted after it')"
)
def test_a_stop_inside_an_accepted_block_ends_the_output_there():
    tokens, expected, chunks = stop_inside_a_block("identical")
    assert tokens == expected, f"got {tokens}, the reference stops at {expected} (transformers' chunks {chunks})"


def test_a_stop_at_the_end_of_a_block_ends_the_output():
    """The control: with a draft that is always rejected (unrelated) every block is one token, so every stop ends a
    block, and the criterion the adapter passes acts exactly."""
    tokens, expected, chunks = stop_inside_a_block("unrelated")
    assert all(len(chunk) == 1 for chunk in chunks), f"the control needs one-token blocks, got {chunks}"
    assert tokens == expected


def test_the_protocol_names_the_stop_bug():
    """Through the suite's wrapper the same request fails with the protocol's stop check, naming the index."""
    target, draft = cached_pair("llama", "identical")
    sampling = SamplingConfig(repetition_penalty=1.5)
    plain = reference_tokens(target, PROMPT, {"max_new_tokens": 16, "sampling": sampling})
    with pytest.raises(ContractError, match=r"stop sequence \[\d+\] completed at index 2 but \d+ more token"):
        checked(target, draft).generate(PROMPT, max_new_tokens=16, sampling=sampling, gamma=4, stop=[[plain[2]]])
