"""The processed law, defined once (``reference_impl.processing``, ``sampling.warp_logits``), against transformers.

The autoregressive reference with repetition penalty, logit bias (transformers' ``sequence_bias`` of one-token
sequences) and ``min_new_tokens`` equals ``model.generate`` with the same processors, token for token in float64;
min-p equals transformers' ``MinPLogitsWarper``; presence and frequency penalties (which transformers lacks) follow
their OpenAI formula. History rows equal the history extended token by token. Bad feature parameters are named
errors, and decoders that lack a feature refuse it instead of ignoring it.
"""

from __future__ import annotations

import math

import pytest
import torch

from reference_impl import AutoregressiveDecoder, SamplingConfig, SpeculativeDecoder
from reference_impl.errors import InvalidRequestError, InvalidSamplingError, UnsupportedFeatureError
from reference_impl.processing import History, process_logits
from reference_impl.sampling import warp_logits
from tests.support.pairs import cached_pair

PROMPT = torch.tensor([[5, 41, 7, 19, 5]])


@pytest.mark.parametrize(
    ("features", "hf"),
    [
        ({"repetition_penalty": 1.8}, {"repetition_penalty": 1.8}),
        ({"repetition_penalty": 0.6}, {"repetition_penalty": 0.6}),
        ({"logit_bias": {11: 4.0, 30: -2.5}}, {"sequence_bias": {(11,): 4.0, (30,): -2.5}}),
        ({"logit_bias": {11: 4.0}, "repetition_penalty": 1.4},
         {"sequence_bias": {(11,): 4.0}, "repetition_penalty": 1.4}),
    ],
    ids=["penalty", "penalty-below-1", "bias", "bias-then-penalty"],
)
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_the_reference_equals_transformers_generate(arch, features, hf):
    target, _ = cached_pair(arch, "partial")
    ours = AutoregressiveDecoder(target).generate(PROMPT, max_new_tokens=30, sampling=SamplingConfig(**features))
    theirs = target.generate(PROMPT, max_new_tokens=30, do_sample=False, pad_token_id=0, eos_token_id=None, **hf)
    assert ours.tokens == theirs[0, PROMPT.shape[1]:].tolist()


@pytest.mark.parametrize("floor", [3, 12])
def test_min_new_tokens_equals_transformers(floor):
    target, _ = cached_pair("llama", "partial")
    eos = AutoregressiveDecoder(target).generate(PROMPT, max_new_tokens=20).tokens[1]  # emitted early without a floor
    ours = AutoregressiveDecoder(target).generate(PROMPT, max_new_tokens=20, eos_token_id=eos, min_new_tokens=floor)
    theirs = target.generate(PROMPT, max_new_tokens=20, do_sample=False, eos_token_id=eos, pad_token_id=eos,
                             min_new_tokens=floor)[0, PROMPT.shape[1]:].tolist()
    assert ours.tokens == theirs[: len(ours.tokens)] and eos not in ours.tokens[:floor]
    assert ours.tokens[-1] == eos and len(ours.tokens) > floor - 1


def test_min_p_equals_transformers_warper():
    from transformers.generation.logits_process import MinPLogitsWarper

    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    for min_p in (0.01, 0.1, 0.5):
        ours = warp_logits(logits, SamplingConfig(temperature=1.0, min_p=min_p))
        theirs = MinPLogitsWarper(min_p)(None, logits.clone())
        assert torch.equal(torch.isinf(ours), torch.isinf(theirs))


def test_presence_and_frequency_penalties_follow_their_formula():
    logits = torch.zeros(1, 8, dtype=torch.float64)
    history = History.of_prompt(torch.tensor([[1, 2]]), 8)
    history.extend(torch.tensor([3, 3, 4]))
    seen, counts, generated = history.rows(torch.empty(0, dtype=torch.long))
    out = process_logits(logits, SamplingConfig(presence_penalty=0.5, frequency_penalty=0.25), seen, counts, generated)
    assert out[0].tolist() == [0, 0, 0, -(0.5 + 2 * 0.25), -(0.5 + 0.25), 0, 0, 0]  # prompt tokens not counted


def test_history_rows_equal_the_history_extended_token_by_token():
    drafted = torch.tensor([4, 4, 7, 1])
    history = History.of_prompt(torch.tensor([[2, 9]]), 12)
    history.extend(torch.tensor([3]))
    seen, counts, generated = history.rows(drafted)
    for i in range(len(drafted) + 1):
        step = History.of_prompt(torch.tensor([[2, 9]]), 12)
        step.extend(torch.tensor([3, *drafted[:i].tolist()]))
        assert torch.equal(seen[i], step.seen) and torch.equal(counts[i], step.counts)
        assert generated[i] == step.generated


def test_min_new_tokens_bans_eos_only_where_too_few_were_generated():
    logits = torch.zeros(3, 5, dtype=torch.float64)
    seen, counts = torch.zeros(3, 5, dtype=torch.bool), torch.zeros(3, 5)
    out = process_logits(logits, SamplingConfig(), seen, counts, torch.tensor([1, 2, 3]), min_new_tokens=3,
                         eos_token_id=4)
    assert out[:, 4].tolist() == [-math.inf, -math.inf, 0.0] and torch.all(out[:, :4] == 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_p": 1.5}, "min_p must be in"),
        ({"repetition_penalty": 0.0}, "repetition_penalty must be"),
        ({"presence_penalty": math.nan}, "presence_penalty must be"),
        ({"frequency_penalty": "1"}, "frequency_penalty must be"),
        ({"logit_bias": {3: math.inf}}, "logit_bias"),
        ({"logit_bias": {-1: 1.0}}, "token ids >= 0"),
        ({"logit_bias": [1, 2]}, "logit_bias must be a dict"),
    ],
)
def test_bad_feature_parameters_are_named(kwargs, message):
    with pytest.raises(InvalidSamplingError, match=message):
        SamplingConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"min_new_tokens": -1}, "min_new_tokens"), ({"stop": [[]]}, "non-empty"), ({"stop": [[1, -2]]}, "token-id"),
     ({"stop": 5}, "stop must be"), ({"logprobs": -1}, "logprobs"), ({"logprobs": True}, "logprobs")],
)
def test_bad_request_features_are_named(kwargs, message):
    target, draft = cached_pair("llama", "partial")
    for decoder in (SpeculativeDecoder(target, draft), AutoregressiveDecoder(target)):
        with pytest.raises(InvalidRequestError, match=message):
            decoder.generate(PROMPT, max_new_tokens=4, **kwargs)


def test_a_bias_outside_the_vocabulary_is_named():
    target, draft = cached_pair("llama", "partial")
    for decoder in (SpeculativeDecoder(target, draft), AutoregressiveDecoder(target)):
        with pytest.raises(InvalidSamplingError, match=r"token\(s\) \[500\], but the vocabulary has 96"):
            decoder.generate(PROMPT, max_new_tokens=4, sampling=SamplingConfig(logit_bias={500: 1.0}))


def test_a_decoder_without_a_feature_refuses_it_by_name():
    target, draft = cached_pair("llama", "partial")
    from pytest_specdec.adapters.hf_assisted import HFAssistedDecoder

    with pytest.raises(UnsupportedFeatureError, match="presence_penalty"):  # transformers has none
        HFAssistedDecoder(target, draft).generate(PROMPT, max_new_tokens=4, sampling=SamplingConfig(presence_penalty=1))
    from pytest_specdec.adapters.prompt_lookup import HFPromptLookupDecoder

    with pytest.raises(UnsupportedFeatureError, match="logit_bias"):  # the classic request only
        HFPromptLookupDecoder(target).generate(PROMPT, max_new_tokens=4, sampling=SamplingConfig(logit_bias={1: 1}))
