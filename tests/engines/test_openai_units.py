"""The ``/v1/completions`` adapter and the engine profiles without an engine: request fields, token ids, counters.

Pure checks of what the adapter sends and how it reads a chunk and a ``/metrics`` page, for each
profile; the same adapter against a real llama-server is every test of ``test_engine.py`` (the
``openai`` parameter of the ``specdec_engine`` fixture).
"""

from __future__ import annotations

import pytest
import torch

from pytest_specdec.engines.llama_cpp import LlamaCppDecoder
from pytest_specdec.engines.openai import OpenAICompletionsDecoder
from pytest_specdec.engines.profiles import LLAMA_CPP, SGLANG, VLLM, feature_fields
from reference_impl import SamplingConfig
from reference_impl.errors import UnsupportedFeatureError

URL = "http://127.0.0.1:9"  # never contacted by these tests
FEATURES = SamplingConfig(temperature=0.8, top_k=0, min_p=0.05, repetition_penalty=1.3, presence_penalty=0.2,
                          frequency_penalty=0.1, logit_bias={7: 1.5, 9: float("-inf")})

VLLM_METRICS = """# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.
vllm:spec_decode_num_drafts_total{engine="0",model_name="m"} 10.0
vllm:spec_decode_num_drafts_total{engine="1",model_name="m"} 2.0
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="m"} 40.0
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="m"} 25.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="0"} 9.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="1"} 7.0
vllm:num_requests_running{engine="0",model_name="m"} 0.0
"""
LLAMA_METRICS = """llamacpp:spec_decode_num_drafts_total 4
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="0"} 3
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="1"} 1
llamacpp:prompt_tokens_total 99
"""


def test_the_request_carries_the_law_and_switches_every_other_sampler_off():
    body = OpenAICompletionsDecoder(URL).payload([1, 2, 3], 16, SamplingConfig(temperature=0.7, top_k=5, top_p=0.9), 42)
    assert (body["prompt"], body["max_tokens"], body["stream"], body["seed"]) == ([1, 2, 3], 16, True, 42)
    assert (body["temperature"], body["top_k"], body["top_p"]) == (0.7, 5, 0.9)
    assert body["min_p"] == 0 and body["repeat_penalty"] == 1 and body["dry_multiplier"] == 0
    assert body["samplers"] == ["penalties", "temperature", "top_k", "top_p", "min_p"]
    assert body["verbose"] is True and body["return_tokens"] is True and body["cache_prompt"] is False
    vllm = OpenAICompletionsDecoder(URL, profile=VLLM).payload([1], 4, SamplingConfig(temperature=1.0), 1)
    assert vllm["top_k"] == -1 and vllm["return_token_ids"] is True and "cache_prompt" not in vllm


def test_request_features_in_each_engines_names():
    llama = feature_fields(FEATURES, LLAMA_CPP, context=512)
    assert llama == {"min_p": 0.05, "repeat_penalty": 1.3, "presence_penalty": 0.2, "frequency_penalty": 0.1,
                     "repeat_last_n": 512, "logit_bias": {"7": 1.5, "9": False}}
    vllm = feature_fields(FEATURES, VLLM, context=512)
    assert vllm["repetition_penalty"] == 1.3 and vllm["logit_bias"]["9"] == -100 and "repeat_last_n" not in vllm
    assert feature_fields(SamplingConfig(temperature=1.0), LLAMA_CPP, context=512) == {}
    # the features win over the neutral defaults in the body (later keys), through both adapters
    for decoder in (OpenAICompletionsDecoder(URL), LlamaCppDecoder(URL)):
        body = decoder.payload([1], 4, FEATURES, 1, logprobs=3)
        assert body["repeat_penalty"] == 1.3 and body["min_p"] == 0.05 and body["logit_bias"]["9"] is False
        assert body.get("logprobs", body.get("n_probs")) == 3


def test_a_feature_the_engine_does_not_carry_is_refused_by_name():
    with pytest.raises(UnsupportedFeatureError, match="logprobs"):
        OpenAICompletionsDecoder(URL, profile=VLLM).generate(torch.tensor([[1]]), max_new_tokens=2,
                                                              sampling=SamplingConfig(), logprobs=2)


def test_token_ids_logprobs_and_the_end_of_a_chunk():
    decoder = OpenAICompletionsDecoder(URL)
    chunk = {"choices": [{"text": "ab", "finish_reason": None, "logprobs": {"content": [
        {"id": 17, "logprob": -0.5, "top_logprobs": [{"id": 17, "logprob": -0.5}, {"id": 3, "logprob": -1.2}]}]}}],
        "__verbose": {"tokens": [17]}}
    assert decoder.event_tokens(chunk) == [17] and not decoder.is_final(chunk)
    [record] = decoder.event_logprobs(chunk, 1)
    assert record.logprob == -0.5 and record.top == ((17, -0.5),)
    final = {"choices": [{"text": "", "finish_reason": "stop"}]}
    assert decoder.is_final(final) and decoder.stopped_on_own_eos([chunk, final]) and decoder.event_tokens(final) == []
    vllm = OpenAICompletionsDecoder(URL, profile=VLLM)
    assert vllm.event_tokens({"choices": [{"text": "x", "token_ids": [4, 5]}]}) == [4, 5]
    assert vllm.event_tokens({"choices": [], "usage": {}}) == []


def test_counters_from_each_engines_metrics_page():
    assert VLLM.counters(VLLM_METRICS) == {"steps": 12.0, "drafted": 40.0, "accepted": 25.0, "accepted_at_0": 9.0,
                                           "accepted_at_1": 7.0}
    assert LLAMA_CPP.counters(LLAMA_METRICS) == {"steps": 4.0, "accepted_at_0": 3.0, "accepted_at_1": 1.0}
    assert SGLANG.counters(VLLM_METRICS + "sglang:spec_accept_length 2.5\n") == {}  # gauges: no per-request counts
    assert not OpenAICompletionsDecoder(URL, profile=SGLANG).count_steps
