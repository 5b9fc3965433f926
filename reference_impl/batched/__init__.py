"""Batched reference decoders: several prompts of different lengths per pass, each row exact on its own.

``BatchedSpeculativeDecoder`` and ``BatchedAutoregressiveDecoder`` implement the protocol's
optional batched entry point ``generate_batch`` (and ``generate`` as a batch of one); the
shared-cache bookkeeping (padding, masks, positions, per-row rollback) lives in ``cache``.
"""

from .autoregressive import BatchedAutoregressiveDecoder
from .cache import BatchedLM
from .speculative import BatchedSpeculativeDecoder

__all__ = ["BatchedAutoregressiveDecoder", "BatchedLM", "BatchedSpeculativeDecoder"]
