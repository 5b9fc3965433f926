"""Named exceptions for bad input: each message says what is wrong and how to fix it."""

from __future__ import annotations


class SpecDecError(ValueError):
    """Base class of every input error the reference decoders raise."""


class VocabularyMismatchError(SpecDecError):
    """Draft and target do not share a vocabulary, so draft tokens mean nothing to the target."""


class EmptyPromptError(SpecDecError):
    """The prompt has no tokens: there is nothing to condition on."""


class InvalidGammaError(SpecDecError):
    """gamma (draft tokens per step) is not an integer >= 1."""


class InvalidSamplingError(SpecDecError):
    """temperature, top_k or top_p is outside its valid range."""


class InvalidRequestError(SpecDecError):
    """min_new_tokens, stop sequences or the number of logprobs asked for is malformed."""


class UnsupportedFeatureError(SpecDecError):
    """The request asks for a feature this decoder does not implement (it never silently ignores one)."""


class InvalidLengthError(SpecDecError):
    """max_new_tokens is negative, or the prompt's shape is not (1, prompt_len)."""


class ContextLengthError(SpecDecError):
    """prompt_len + max_new_tokens exceeds the positions a model supports."""


class DeviceMismatchError(SpecDecError):
    """Models, prompt and generator are not on the same device."""


class NonFiniteLogitsError(RuntimeError):
    """A model produced NaN or infinite logits (overflow in low precision, or broken weights)."""
