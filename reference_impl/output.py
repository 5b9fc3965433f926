"""Where emitted tokens go: the result list, the caller's callback, and the stop conditions.

Tokens are emitted one at a time, in order, so every stop condition acts at the exact token
where it first holds, inside a block of accepted draft tokens too: EOS (kept), a stop sequence
(kept; the one that completes first in the generated tokens wins, whatever its place in the
list; only where at least ``min_new_tokens`` tokens were generated), or ``max_new_tokens``.
Nothing after the stop is emitted, so tokens, stats and logprobs are trimmed alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class TokenSink:
    """Emits tokens in order, calling ``on_token`` for each; stops at EOS, a stop sequence or ``max_new_tokens``."""

    def __init__(
        self,
        max_new_tokens: int,
        eos_token_id: int | None = None,
        on_token: Callable[[int], None] | None = None,
        *,
        stop: tuple[tuple[int, ...], ...] = (),
        min_new_tokens: int = 0,
        logprobs: bool = False,
    ) -> None:
        self.tokens: list[int] = []
        self.logprobs: list[Any] | None = [] if logprobs else None
        self.stop = stop
        self.min_new_tokens = min_new_tokens
        self.max_new_tokens = max_new_tokens
        self.eos_token_id = eos_token_id
        self.on_token = on_token
        self.finished = max_new_tokens == 0

    @property
    def remaining(self) -> int:
        return self.max_new_tokens - len(self.tokens)

    def emit(self, tokens: list[int], logprobs: list[Any] | None = None) -> int:
        """Emit ``tokens`` (with their ``logprobs`` when kept) until a stop condition; returns how many."""
        emitted = 0
        for i, token in enumerate(tokens):
            if self.finished:
                break
            self.tokens.append(token)
            if self.logprobs is not None:
                self.logprobs.append(logprobs[i] if logprobs is not None else None)
            emitted += 1
            if self.on_token is not None:
                self.on_token(token)
            self.finished = token == self.eos_token_id or self.remaining == 0 or self._stop_completed()
        return emitted

    def _stop_completed(self) -> bool:
        n = len(self.tokens)
        if not self.stop or n < self.min_new_tokens:
            return False
        return any(n >= len(s) and tuple(self.tokens[n - len(s):]) == s for s in self.stop)
