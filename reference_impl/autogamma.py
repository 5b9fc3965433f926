"""Automatic gamma: what drafting and verifying cost on this device, and the gamma that pays best.

The speedup model (FIELD-NOTES, "Metrics, defined once") needs three measured quantities:

- alpha, the acceptance estimate A / (A + R) (from the decoder's own counts);
- c, the cost of one draft decode pass over one target decode pass;
- v(k), the cost of one target pass over k tokens over one target decode pass. On CPUs v is not
  monotone in k (matrix products with some row counts are slow), so it is measured for every k
  rather than modelled.

``measure_costs`` times those passes on the models as they are (device, dtype, threads), and
``choose_gamma`` picks the gamma that maximises expected tokens per second,
(1 - alpha^(gamma+1)) / (1 - alpha) / (gamma * c + v(gamma + 1)). The benchmark reports the
same ``CostModel``, so the predicted speedup it prints and the gamma the decoder picks come
from one measurement.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .kv import CachedLM, model_device
from .stats import expected_tokens_per_step

MAX_GAMMA = 8


@dataclass(frozen=True)
class CostModel:
    """Median wall-clock seconds of the passes a speculative step is made of."""

    target_decode_s: float  # one target pass over 1 token, 1 logit row kept
    draft_decode_s: float  # one draft pass over 1 token, 1 logit row kept
    verify_s: tuple[float, ...]  # verify_s[k - 1]: one target pass over k tokens, k logit rows kept

    @property
    def c(self) -> float:
        """Draft decode cost over target decode cost."""
        return self.draft_decode_s / self.target_decode_s

    @property
    def max_gamma(self) -> int:
        return len(self.verify_s) - 1

    def v(self, gamma: int) -> float:
        """Cost of verifying gamma + 1 tokens in one target pass over one target decode pass."""
        return self.verify_s[gamma] / self.target_decode_s

    def predicted_speedup(self, alpha: float, gamma: int) -> float:
        """Expected tokens per step / (gamma * c + v(gamma + 1)): the FIELD-NOTES speedup model."""
        return expected_tokens_per_step(alpha, gamma) / (gamma * self.c + self.v(gamma))

    def predicted_speedup_of_steps(self, alpha: float, gammas: list[int]) -> float:
        """For steps of differing gamma: expected tokens over expected cost, both summed over the steps.

        nan when there are no steps, alpha is nan or a gamma is beyond the measured verify widths.
        """
        if not gammas or math.isnan(alpha) or max(gammas) > self.max_gamma:
            return math.nan
        tokens = sum(expected_tokens_per_step(alpha, g) for g in gammas)
        return tokens / sum(g * self.c + self.v(g) for g in gammas)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target_decode_s": self.target_decode_s,
            "draft_decode_s": self.draft_decode_s,
            "verify_s": list(self.verify_s),
            "c": self.c,
            "v": {str(k): self.verify_s[k - 1] / self.target_decode_s for k in range(1, len(self.verify_s) + 1)},
        }


def choose_gamma(alpha: float, costs: CostModel, max_gamma: int | None = None) -> int:
    """The gamma in 1..max_gamma with the highest predicted speedup (the smaller one on a tie)."""
    limit = min(costs.max_gamma, max_gamma or costs.max_gamma)
    alpha = min(max(alpha, 0.0), 1.0)
    return max(range(1, limit + 1), key=lambda g: (costs.predicted_speedup(alpha, g), -g))


def _timed_pass(lm: CachedLM, tokens: torch.Tensor, keep: int, clock: Callable[[], float]) -> float:
    """Seconds of one pass over ``tokens`` on top of the cached context; the cache is rolled back after."""
    length = lm.length
    start = clock()
    lm.forward(tokens, keep=keep).sum().item()  # .item() waits for the device
    elapsed = clock() - start
    lm.rollback(length)
    return elapsed


def measure_costs(
    target: torch.nn.Module,
    draft: torch.nn.Module,
    *,
    max_tokens: int = MAX_GAMMA + 1,
    context: int = 32,
    repeats: int = 5,
    clock: Callable[[], float] = time.perf_counter,
    count_into: tuple[CachedLM, CachedLM] | None = None,
) -> CostModel:
    """Time draft and target decode passes and target passes over 1..max_tokens tokens.

    Both models first prefill ``context`` tokens; each timed pass is then rolled back, so every
    pass sees the same context. Rounds interleave all pass kinds (so drift hits them alike), one
    untimed round warms up, and each figure is the median over ``repeats`` rounds.
    ``count_into``: a decoder's own (target, draft) ``CachedLM``s, whose pass counters then include
    these probe passes, so the stats of the call that measured the costs report every pass it ran.
    """
    device = model_device(target)
    vocab = target.get_output_embeddings().weight.shape[0]
    ids = torch.arange(2, 2 + context + max_tokens, device=device) % vocab
    target_lm, draft_lm = CachedLM(target), CachedLM(draft)
    samples: dict[str, list[float]] = {"draft": [], **{f"verify{k}": [] for k in range(1, max_tokens + 1)}}
    with torch.inference_mode():
        target_lm.forward(ids[:context])
        draft_lm.forward(ids[:context])
        for round_index in range(repeats + 1):
            timed = {"draft": _timed_pass(draft_lm, ids[context : context + 1], 1, clock)}
            for k in range(1, max_tokens + 1):
                timed[f"verify{k}"] = _timed_pass(target_lm, ids[context : context + k], k, clock)
            if round_index:  # round 0 is the warm-up
                for name, seconds in timed.items():
                    samples[name].append(seconds)
    if count_into is not None:
        for mine, probe in zip(count_into, (target_lm, draft_lm), strict=True):
            mine.add_counts(probe)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    verify = tuple(medians[f"verify{k}"] for k in range(1, max_tokens + 1))
    return CostModel(target_decode_s=verify[0], draft_decode_s=medians["draft"], verify_s=verify)


class AlphaTracker:
    """Running A / (A + R) over a decoder's lifetime, starting from a prior worth a few steps."""

    def __init__(self, prior_alpha: float = 0.6, prior_weight: float = 4.0) -> None:
        self.accepted = prior_alpha * prior_weight
        self.rejections = (1 - prior_alpha) * prior_weight

    def update(self, accepted: int, rejected: bool) -> None:
        self.accepted += accepted
        self.rejections += int(rejected)

    @property
    def alpha(self) -> float:
        return self.accepted / (self.accepted + self.rejections)
