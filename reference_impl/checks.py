"""Input checks shared by the decoders: every bad input fails before any model runs."""

from __future__ import annotations

import torch

from .errors import (
    ContextLengthError,
    DeviceMismatchError,
    EmptyPromptError,
    InvalidGammaError,
    InvalidLengthError,
    InvalidRequestError,
    InvalidSamplingError,
    UnsupportedFeatureError,
    VocabularyMismatchError,
)
from .kv import max_positions, model_device
from .sampling import SamplingConfig


def check_gamma(gamma: object) -> int:
    if isinstance(gamma, bool) or not isinstance(gamma, int) or gamma < 1:
        raise InvalidGammaError(
            f"gamma must be an integer >= 1 (draft tokens per step), got {gamma!r}; typical values are 2 to 8"
        )
    return gamma


def check_pair(target: torch.nn.Module, draft: torch.nn.Module) -> None:
    """Draft and target must index the same vocabulary and live on the same device."""
    target_vocab = target.get_output_embeddings().weight.shape[0]
    draft_vocab = draft.get_output_embeddings().weight.shape[0]
    if target_vocab != draft_vocab:
        raise VocabularyMismatchError(
            f"draft vocabulary has {draft_vocab} entries but the target's has {target_vocab}: speculative "
            "decoding needs a draft that uses the target's tokenizer; pick a draft from the target's model family"
        )
    if model_device(target) != model_device(draft):
        raise DeviceMismatchError(
            f"target is on {model_device(target)} but draft is on {model_device(draft)}; move both to one device"
        )


def check_request(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    sampling: SamplingConfig,
    generator: torch.Generator | None,
) -> None:
    """Shape, length, device and sampling checks for one ``generate`` call."""
    if not isinstance(sampling, SamplingConfig):
        raise InvalidSamplingError(
            f"sampling must be a SamplingConfig, got {type(sampling).__name__}; "
            "build one with SamplingConfig(temperature=..., top_k=..., top_p=...)"
        )
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[0] != 1:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise InvalidLengthError(f"input_ids must be a (1, prompt_len) LongTensor, got {shape}; batch size is 1")
    if input_ids.shape[1] == 0:
        raise EmptyPromptError(
            "the prompt is empty: pass at least one token (for example the tokenizer's BOS token)"
        )
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise InvalidLengthError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    limit = max_positions(model.config)
    if limit is not None and input_ids.shape[1] + max_new_tokens > limit:
        raise ContextLengthError(
            f"prompt of {input_ids.shape[1]} tokens plus max_new_tokens={max_new_tokens} exceeds the model's "
            f"{limit} positions; shorten the prompt or lower max_new_tokens"
        )
    device = model_device(model)
    if input_ids.device != device:
        raise DeviceMismatchError(f"input_ids are on {input_ids.device} but the model is on {device}; move them")
    if generator is not None and torch.device(generator.device).type != device.type:
        raise DeviceMismatchError(
            f"the generator is on {generator.device} but the models are on {device}; "
            f"create it with torch.Generator(device={str(device)!r}).manual_seed(seed)"
        )


def check_features(
    min_new_tokens: object, stop: object, logprobs: object
) -> tuple[int, tuple[tuple[int, ...], ...], int | None]:
    """The request features of ``generate`` beyond sampling, checked: -> (min_new_tokens, stop, logprobs).

    ``stop``: token-id sequences, each ending generation right after it (included) where it first
    completes in the generated tokens; ``logprobs``: None (off) or n >= 0 top alternatives per token.
    """
    if isinstance(min_new_tokens, bool) or not isinstance(min_new_tokens, int) or min_new_tokens < 0:
        raise InvalidRequestError(f"min_new_tokens must be an integer >= 0, got {min_new_tokens!r}; 0 turns it off")
    try:
        sequences = tuple(tuple(sequence) for sequence in (stop or ()))  # type: ignore[union-attr]
    except TypeError:
        sequences = None
    if sequences is None or any(
        not s or any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in s) for s in sequences
    ):
        raise InvalidRequestError(
            f"stop must be a list of non-empty token-id sequences, got {stop!r}; e.g. stop=[[13, 13], [2]]"
        )
    if logprobs is not None and (isinstance(logprobs, bool) or not isinstance(logprobs, int) or logprobs < 0):
        raise InvalidRequestError(
            f"logprobs must be None (off) or an integer >= 0 (top alternatives per token), got {logprobs!r}"
        )
    return min_new_tokens, sequences, logprobs


def check_supported(who: str, sampling: SamplingConfig, supported: frozenset[str]) -> None:
    """Raise ``UnsupportedFeatureError`` naming each feature ``sampling`` turns on that ``who`` lacks."""
    missing = sorted(set(sampling.features) - supported)
    if missing:
        raise UnsupportedFeatureError(
            f"{who} does not implement {', '.join(missing)}; use the single-sequence reference decoders "
            "(reference_impl.SpeculativeDecoder, AutoregressiveDecoder), which implement every request feature"
        )


def default_generator(device: torch.device) -> torch.Generator:
    """A freshly, randomly seeded generator: used only when the caller passes none."""
    generator = torch.Generator(device=device)
    generator.seed()
    return generator
