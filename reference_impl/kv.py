"""A causal LM with its cache: feed tokens, count passes, roll back exactly (``rollback.py`` says how)."""

from __future__ import annotations

import inspect

import torch

from .errors import NonFiniteLogitsError
from .rollback import CacheRollback


def max_positions(config: object) -> int | None:
    """The longest sequence a model's config admits, or None where it states no limit."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's input embeddings (where input ids must live)."""
    return model.get_input_embeddings().weight.device


class CachedLM:
    """One model plus a ``DynamicCache`` that always holds exactly ``length`` positions.

    ``forward`` appends tokens to the cache; ``rollback`` takes it back to a shorter prefix, which
    is how rejected draft tokens leave both caches. Attention caches are cropped to exactly the
    prefix; caches with recurrent layers go back to the newest saved state at or before it, and
    ``length`` says how many positions they hold, so callers feed ``seq[length:]`` next.
    ``rollback=False``: a cache only ever appended to (the autoregressive baseline's), which saves
    nothing and lets sliding windows drop old positions at once.
    """

    def __init__(self, model: torch.nn.Module, *, rollback: bool = True) -> None:
        self.model = model
        self.can_roll_back = rollback
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self.reset()

    def reset(self) -> None:
        from transformers import DynamicCache

        self.cache = DynamicCache(config=self.model.config)
        self._rollback = CacheRollback(self.cache, enabled=self.can_roll_back)
        self.length = 0
        self.forwards = 0
        self.prefills = 0
        self.tokens_fed = 0

    def forward(self, tokens: torch.Tensor, keep: int = 1) -> torch.Tensor:
        """(k,) new tokens -> (keep, vocab) logits of the last ``keep`` positions."""
        k = tokens.shape[-1]
        self._rollback.before_forward(self.length)
        out = self.model(
            input_ids=tokens.view(1, k),
            use_cache=True,
            logits_to_keep=keep,
            **{self._cache_arg: self.cache},
        )
        self.prefills += int(self.length == 0)
        self.forwards += 1
        self.tokens_fed += k
        self.length += k
        return out.logits[0, -keep:]

    def add_counts(self, other: CachedLM) -> None:
        """Count ``other``'s passes as this one's (passes a decoder ran on the same model outside this cache)."""
        self.forwards += other.forwards
        self.prefills += other.prefills
        self.tokens_fed += other.tokens_fed

    def rollback(self, length: int) -> None:
        """Drop cached positions beyond ``length`` (no-op when the cache is not longer)."""
        self.length = self._rollback.rollback(self.length, length)


def check_finite(finite: bool, where: str) -> None:
    if not finite:
        raise NonFiniteLogitsError(
            f"the {where} produced NaN or infinite logits; in float16/bfloat16 this is usually an "
            "overflow: load the model in float32 (--specdec-dtype float32) or check its weights"
        )
