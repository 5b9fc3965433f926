"""Every bad input fails with a named error that says what is wrong and how to fix it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from reference_impl import (
    AutoregressiveDecoder,
    ContextLengthError,
    DeviceMismatchError,
    EmptyPromptError,
    InvalidGammaError,
    InvalidLengthError,
    InvalidSamplingError,
    NonFiniteLogitsError,
    SamplingConfig,
    SpeculativeDecoder,
    VocabularyMismatchError,
)
from reference_impl.models.tiny import tiny_pair
from tests.support.pairs import cached_pair

PROMPT = torch.tensor([[1, 2, 3]])


def decoders():
    target, draft = cached_pair("llama", "partial")
    return [SpeculativeDecoder(target, draft), AutoregressiveDecoder(target)]


def test_vocabulary_mismatch():
    target, _ = cached_pair("llama", "partial")
    _, other = tiny_pair("llama", "unrelated", vocab_size=50)
    with pytest.raises(VocabularyMismatchError, match=r"50 entries .* 96.*tokenizer"):
        SpeculativeDecoder(target, other)


@pytest.mark.parametrize("gamma", [0, -1, 2.5, "4", True])
def test_bad_gamma(gamma):
    target, draft = cached_pair("llama", "partial")
    with pytest.raises(InvalidGammaError, match="gamma must be an integer >= 1"):
        SpeculativeDecoder(target, draft, gamma=gamma)
    with pytest.raises(InvalidGammaError):
        SpeculativeDecoder(target, draft).generate(PROMPT, max_new_tokens=4, gamma=gamma)


@pytest.mark.parametrize("decoder", decoders(), ids=lambda d: d.name)
def test_empty_prompt(decoder):
    with pytest.raises(EmptyPromptError, match="at least one token"):
        decoder.generate(torch.zeros((1, 0), dtype=torch.long), max_new_tokens=4)


@pytest.mark.parametrize("decoder", decoders(), ids=lambda d: d.name)
@pytest.mark.parametrize("max_new_tokens", [-1, 2.0])
def test_bad_max_new_tokens(decoder, max_new_tokens):
    with pytest.raises(InvalidLengthError, match="max_new_tokens must be an integer >= 0"):
        decoder.generate(PROMPT, max_new_tokens=max_new_tokens)


@pytest.mark.parametrize("decoder", decoders(), ids=lambda d: d.name)
def test_prompt_of_wrong_shape(decoder):
    with pytest.raises(InvalidLengthError, match=r"\(1, prompt_len\)"):
        decoder.generate(torch.tensor([1, 2, 3]), max_new_tokens=4)


@pytest.mark.parametrize("decoder", decoders(), ids=lambda d: d.name)
def test_context_overflow(decoder):
    with pytest.raises(ContextLengthError, match="exceeds the model's 256 positions"):
        decoder.generate(PROMPT, max_new_tokens=254)
    decoder.generate(PROMPT, max_new_tokens=3)  # at the limit is fine


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -0.5}, "temperature must be a finite number >= 0"),
        ({"temperature": float("nan")}, "temperature must be a finite number >= 0"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ({"top_k": -1}, "top_k must be an integer >= 0"),
        ({"top_k": 2.5}, "top_k must be an integer >= 0"),
    ],
)
def test_bad_sampling_parameters(kwargs, message):
    with pytest.raises(InvalidSamplingError, match=message):
        SamplingConfig(**kwargs)


def test_sampling_must_be_a_config():
    decoder = decoders()[0]
    with pytest.raises(InvalidSamplingError, match="SamplingConfig"):
        decoder.generate(PROMPT, max_new_tokens=2, sampling={"temperature": 1.0})


def test_generator_on_another_device_type():
    decoder = decoders()[0]
    cuda_generator = SimpleNamespace(device=torch.device("cuda", 0))  # stands in for a CUDA generator
    with pytest.raises(DeviceMismatchError, match=r"torch.Generator\(device='cpu'\)"):
        decoder.generate(PROMPT, max_new_tokens=2, sampling=SamplingConfig(temperature=1.0), generator=cuda_generator)


@pytest.mark.parametrize("broken", ["target", "draft"])
def test_non_finite_logits(broken):
    target, draft = tiny_pair("llama", "partial", seed=3)
    with torch.no_grad():
        model = target if broken == "target" else draft
        model.get_output_embeddings().weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLogitsError, match="NaN or infinite logits"):
        SpeculativeDecoder(target, draft).generate(PROMPT, max_new_tokens=8)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("stop", [[[5]], []], r"stop \(one list of stop sequences per row\) has 2 entries for 3 prompts"),
    ("min_new_tokens", [1, 2], "min_new_tokens has 2 entries for 3 prompts"),
    ("logprobs", [1], "logprobs has 1 entries for 3 prompts"),
    ("sampling", [SamplingConfig()], "sampling has 1 entries for 3 prompts"),
])
def test_a_per_row_field_of_the_wrong_length_is_named(field, value, message):
    """The batched entry point's request fields are shared or per row; a list of the wrong length names its field."""
    from reference_impl.batched import BatchedSpeculativeDecoder
    from reference_impl.errors import InvalidLengthError

    target, draft = cached_pair("llama", "partial")
    with pytest.raises(InvalidLengthError, match=message):
        BatchedSpeculativeDecoder(target, draft).generate_batch([torch.tensor([[5]])] * 3, max_new_tokens=4,
                                                                **{field: value})
