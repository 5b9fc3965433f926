"""Reference speculative decoder and autoregressive baseline, behind one decoder protocol."""

from .autoregressive import AutoregressiveDecoder
from .errors import (
    ContextLengthError,
    DeviceMismatchError,
    EmptyPromptError,
    InvalidGammaError,
    InvalidLengthError,
    InvalidSamplingError,
    NonFiniteLogitsError,
    SpecDecError,
    VocabularyMismatchError,
)
from .sampling import GREEDY, SamplingConfig
from .speculative import SpeculativeDecoder
from .stats import DecodeResult, DecodeStats

__all__ = [
    "GREEDY",
    "AutoregressiveDecoder",
    "ContextLengthError",
    "DecodeResult",
    "DecodeStats",
    "DeviceMismatchError",
    "EmptyPromptError",
    "InvalidGammaError",
    "InvalidLengthError",
    "InvalidSamplingError",
    "NonFiniteLogitsError",
    "SamplingConfig",
    "SpecDecError",
    "SpeculativeDecoder",
    "VocabularyMismatchError",
]
