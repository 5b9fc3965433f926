"""How a ``DynamicCache`` goes back to a shorter prefix, whatever its layers hold.

- Attention layers keep one key and value per position: rolling back crops them.
- Sliding-window attention layers keep only the last ``window - 1`` positions; once the context is
  longer than the window a crop would have to bring back positions already dropped, so they are
  told to keep their past until each crop (transformers' ``activate_past_recording``).
- Recurrent layers (state-space and linear-attention mixers: Mamba2 in Falcon-H1, Bamba, Jamba,
  Gated DeltaNet in Qwen3-Next, ...) keep one state that summarises every position seen; it
  cannot be cropped (``DynamicCache.crop`` refuses). Before every forward pass their states are
  saved, keyed by the number of positions the cache holds; rolling back restores the newest
  saved state at or before the requested length and crops the attention layers to the same
  length. The cache may then hold fewer positions than requested: the caller feeds the missing
  tokens again with its next pass (it always feeds ``seq[cache length:]``).

A draft that proposes one token per pass is saved at every position, so it goes back exactly to
the accepted prefix. A target that verifies gamma + 1 tokens in one pass is saved only before
that pass: after a rejection it goes back to where the pass started and its next pass re-feeds
the accepted tokens (extra tokens fed, counted in ``tokens_fed``; no extra passes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LayerStates = tuple[dict[int, Any], dict[int, Any], dict[int, bool]]  # conv, recurrent, has_previous_state


def _linear_layer_class() -> type:
    from transformers.cache_utils import LinearAttentionCacheLayerMixin

    return LinearAttentionCacheLayerMixin


def is_recurrent(layer: object) -> bool:
    """Whether a cache layer holds recurrent (conv or state-space) states that cannot be cropped."""
    return isinstance(layer, _linear_layer_class())


def kv_crop(layer: object) -> Callable[[object, int], None] | None:
    """The ``crop`` of a layer's attention part (for hybrid layers, the KV class it mixes in); None if it has none."""
    from transformers.cache_utils import CacheLayerMixin

    linear = _linear_layer_class()
    for cls in type(layer).__mro__:
        if issubclass(cls, CacheLayerMixin) and not issubclass(cls, linear) and "crop" in vars(cls):
            return vars(cls)["crop"]
    return None


def _clone(states: dict[int, Any]) -> dict[int, Any]:
    return {i: None if s is None else s.clone() for i, s in states.items()}


class CacheRollback:
    """Rolls one ``DynamicCache`` back: crops attention, restores saved recurrent states.

    ``enabled=False`` (a cache that is only ever appended to, as the autoregressive baseline's):
    nothing is saved and sliding windows keep only their window, as transformers builds them.
    """

    def __init__(self, cache: Any, *, enabled: bool = True) -> None:
        self.cache = cache
        self.enabled = enabled
        self.recurrent = [i for i, layer in enumerate(cache.layers) if is_recurrent(layer)] if enabled else []
        self.windows = [layer for layer in cache.layers if getattr(layer, "is_sliding", False)] if enabled else []
        self._saved: dict[int, dict[int, LayerStates]] = {}  # cache length -> layer index -> states
        for layer in self.windows:
            if is_recurrent(layer):
                raise NotImplementedError(
                    f"{type(layer).__name__}: a layer with both a recurrent state and a sliding window "
                    "cannot be rolled back by the reference decoder"
                )
            layer.activate_past_recording()

    def before_forward(self, length: int) -> None:
        """Save the recurrent states of a cache holding ``length`` positions (nothing to save before the prefill)."""
        if self.recurrent and length > 0:
            self._saved[length] = {i: self.save_layer(i) for i in self.recurrent}

    def rollback(self, current: int, length: int) -> int:
        """Go back from ``current`` positions to at most ``length``; returns the positions the cache now holds.

        Everything up to the returned length is committed: sliding windows drop what they kept for
        a rollback and are back to their window.
        """
        if current <= length:
            self._saved.clear()  # all before ``current``: committed, never rolled back again
            self._trim_windows()
            return current
        if not self.enabled:
            raise RuntimeError("this cache was built without rollback (CachedLM(model, rollback=False))")
        if not self.recurrent:
            self.cache.crop(length - current)
            self._trim_windows()
            return length
        held = max((saved for saved in self._saved if saved <= length), default=None)
        if held is None:
            raise RuntimeError(f"no saved recurrent state at or before position {length} (cache holds {current})")
        for i, states in self._saved[held].items():
            self.restore_layer(i, states)
        self.crop_attention(current - held)
        self._saved.clear()  # before ``held``: committed; after it: the rejected tokens' states
        return held

    def save_layer(self, index: int) -> LayerStates:
        layer = self.cache.layers[index]
        return _clone(layer.conv_states), _clone(layer.recurrent_states), dict(layer.has_previous_state)

    def restore_layer(self, index: int, states: LayerStates) -> None:
        layer = self.cache.layers[index]
        for current, saved in zip((layer.conv_states, layer.recurrent_states), states[:2], strict=True):
            for i, state in saved.items():
                if state is not None:
                    current[i].copy_(state)
        layer.has_previous_state.update(states[2])

    def _trim_windows(self) -> None:
        for layer in self.windows:
            if layer.get_seq_length() >= layer.sliding_window:
                layer.crop(0)  # keeps the last window - 1 positions

    def crop_attention(self, tokens_to_remove: int) -> None:
        """Remove the last ``tokens_to_remove`` positions from every attention layer (hybrid layers included)."""
        if tokens_to_remove <= 0:
            return
        for layer in self.cache.layers:
            crop = kv_crop(layer)
            if crop is not None:
                crop(layer, -tokens_to_remove)

