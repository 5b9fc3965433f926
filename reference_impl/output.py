"""Where emitted tokens go: the result list, the caller's callback, and the stop conditions."""

from __future__ import annotations

from collections.abc import Callable


class TokenSink:
    """Emits tokens in order, calling ``on_token`` for each; stops at EOS (kept) or ``max_new_tokens``."""

    def __init__(
        self,
        max_new_tokens: int,
        eos_token_id: int | None = None,
        on_token: Callable[[int], None] | None = None,
    ) -> None:
        self.tokens: list[int] = []
        self.max_new_tokens = max_new_tokens
        self.eos_token_id = eos_token_id
        self.on_token = on_token
        self.finished = max_new_tokens == 0

    @property
    def remaining(self) -> int:
        return self.max_new_tokens - len(self.tokens)

    def emit(self, tokens: list[int]) -> int:
        """Emit ``tokens`` until a stop condition; returns how many were emitted."""
        emitted = 0
        for token in tokens:
            if self.finished:
                break
            self.tokens.append(token)
            emitted += 1
            if self.on_token is not None:
                self.on_token(token)
            self.finished = token == self.eos_token_id or self.remaining == 0
        return emitted
