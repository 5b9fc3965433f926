"""Deliberately degraded decoders that the performance gate must catch (``--specdec-impl tests.support.injected:NAME``).

- ``slow_target``: the reference decoder whose target forward passes take 25% longer (a wait after
  each pass; sleeping rather than spinning, because on a shared CPU a spinning process is
  descheduled more and its forward passes slow down far more than 25%). Tokens and counts are
  unchanged: only the wall-clock figures can catch it.
- ``slow_draft``: the same for the draft's forward passes.
- ``host_work``: every speculative step followed by host work (a wait) of 25% of the step's own time:
  what slower bookkeeping around the passes (sampling, cache moves, Python) costs.

The slowdown of these three is ``SLOWDOWN`` (25%), or the ``slowdown=`` option of the factory, or
the ``SPECDEC_INJECTED_SLOWDOWN`` environment variable (a fraction: 0.1 is 10% slower), so the
gate's detection curve can be measured through ``--specdec-impl`` as well as in one process.
- ``extra_draft_prefill``: the draft's cache is dropped before every step, so the draft re-prefills
  the whole sequence each step. Tokens are unchanged (up to float rounding); the deterministic
  figures (prefills per request, draft tokens fed) catch it exactly.
- ``draft_before_first_token``: the draft prefills the prompt before the target's first token
  (vLLM PR #23041): one more forward pass before the first token, a worse TTFT.

Only the decoder under test is degraded; the baseline decoder timed alongside it shares the same
target model and stays as it was. Every line that differs from the reference is marked ``# BUG``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from reference_impl.kv import CachedLM
from reference_impl.speculative import SpeculativeDecoder

SLOWDOWN = 0.25
SPIN_S = 1e-4  # sleep, then spin the last 0.1 ms: exact, without burning a core the scheduler would hold against us


def slowdown_fraction(slowdown: float | None = None) -> float:
    """The factory's ``slowdown=``, else ``SPECDEC_INJECTED_SLOWDOWN``, else ``SLOWDOWN``."""
    if slowdown is None:
        slowdown = float(os.environ.get("SPECDEC_INJECTED_SLOWDOWN", SLOWDOWN))
    if not 0 <= slowdown <= 10:
        raise ValueError(f"an injected slowdown is a fraction between 0 and 10 (0.1: 10% slower); got {slowdown}")
    return slowdown


def wait_until(until: float) -> None:
    """Sleep, then spin the last ``SPIN_S``: an exact wait that does not hold a core the whole time."""
    if (rest := until - time.perf_counter() - SPIN_S) > 0:
        time.sleep(rest)
    while time.perf_counter() < until:
        pass


class SlowCachedLM(CachedLM):
    """A ``CachedLM`` whose every forward pass takes ``1 + slowdown`` times as long."""

    def __init__(self, model: torch.nn.Module, slowdown: float = SLOWDOWN) -> None:
        super().__init__(model)
        self.slowdown = slowdown
        self._cuda = next(model.parameters()).device.type == "cuda"

    def forward(self, tokens: torch.Tensor, keep: int = 1) -> torch.Tensor:
        start = time.perf_counter()
        logits = super().forward(tokens, keep)
        if self._cuda:
            torch.cuda.synchronize()
        wait_until(start + (1 + self.slowdown) * (time.perf_counter() - start))  # BUG: more time per pass
        return logits


class SlowTargetDecoder(SpeculativeDecoder):
    def __init__(self, target: torch.nn.Module, draft: torch.nn.Module, *, gamma: int = 4,
                 slowdown: float | None = None) -> None:
        super().__init__(target, draft, gamma=gamma)
        self._target = SlowCachedLM(target, slowdown_fraction(slowdown))  # BUG


class SlowDraftDecoder(SpeculativeDecoder):
    def __init__(self, target: torch.nn.Module, draft: torch.nn.Module, *, gamma: int = 4,
                 slowdown: float | None = None) -> None:
        super().__init__(target, draft, gamma=gamma)
        self._draft = SlowCachedLM(draft, slowdown_fraction(slowdown))  # BUG


class HostWorkDecoder(SpeculativeDecoder):
    def __init__(self, target: torch.nn.Module, draft: torch.nn.Module, *, gamma: int = 4,
                 slowdown: float | None = None) -> None:
        super().__init__(target, draft, gamma=gamma)
        self.slowdown = slowdown_fraction(slowdown)

    def step(self, seq: torch.Tensor, length: int, *args: Any) -> tuple[list[int], int]:
        start = time.perf_counter()
        out = super().step(seq, length, *args)
        wait_until(start + (1 + self.slowdown) * (time.perf_counter() - start))  # BUG: host work on every step
        return out


class ExtraDraftPrefillDecoder(SpeculativeDecoder):
    def step(self, seq: torch.Tensor, length: int, *args: Any) -> tuple[list[int], int]:
        self._draft.rollback(0)  # BUG: the draft cache is dropped, so the draft re-prefills seq[:length]
        return super().step(seq, length, *args)


class DraftBeforeFirstTokenDecoder(SpeculativeDecoder):
    def _target_step(self, seq: torch.Tensor, length: int, *args: Any) -> list[int]:
        if self._draft.length == 0 and self._target.length == 0:
            self._draft.forward(seq[:length])  # BUG: a draft prefill in front of the first token
        return super()._target_step(seq, length, *args)


def slow_target(target: Any, draft: Any, **options: Any) -> SlowTargetDecoder:
    return SlowTargetDecoder(target, draft, **options)


def slow_draft(target: Any, draft: Any, **options: Any) -> SlowDraftDecoder:
    return SlowDraftDecoder(target, draft, **options)


def host_work(target: Any, draft: Any, **options: Any) -> HostWorkDecoder:
    return HostWorkDecoder(target, draft, **options)


def extra_draft_prefill(target: Any, draft: Any, **options: Any) -> ExtraDraftPrefillDecoder:
    return ExtraDraftPrefillDecoder(target, draft, **options)


def draft_before_first_token(target: Any, draft: Any, **options: Any) -> DraftBeforeFirstTokenDecoder:
    return DraftBeforeFirstTokenDecoder(target, draft, **options)
