"""Judging a greedy divergence in low precision: a near-tie of the target's own logits, or a bug.

A one-token decode and a k-token verify of the same prefix add in a different order, so their
logits differ slightly (about 1e-6 in float32 on CPU, more in bf16 on GPU). Where the target's
top-2 gap at a position is below what that noise can flip, two correct greedy decoders may pick
different tokens. In float64 the suite demands strict equality; in lower precision a divergence is
a bug unless the target's logits there show such a near-tie, and the verdict says which it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Relative error budget per dtype: a multiple of machine epsilon, scaled by the logits' magnitude.
TIE_EPS_MULTIPLE = 16


def tie_tolerance(dtype: Any, logit_scale: float) -> float:
    """The largest top-2 gap that accumulation-order noise can plausibly flip for this dtype."""
    import torch

    return TIE_EPS_MULTIPLE * torch.finfo(dtype).eps * max(1.0, logit_scale)


@dataclass(frozen=True)
class GreedyVerdict:
    """``identical``, ``near_tie`` (a legitimate divergence) or ``bug``, with the evidence."""

    kind: str
    position: int | None = None  # index into the new tokens of the first divergence
    gap: float | None = None  # target's top-1 minus top-2 logit there
    tolerance: float | None = None

    @property
    def ok(self) -> bool:
        return self.kind != "bug"

    def describe(self) -> str:
        if self.kind == "identical":
            return "identical to the target's greedy output"
        what = "near-tie (legitimate)" if self.kind == "near_tie" else "BUG"
        return (
            f"{what}: first divergence at new token {self.position}, target top-2 logit gap {self.gap:.3g} "
            f"vs tolerance {self.tolerance:.3g}"
        )


def judge_greedy(target: Any, input_ids: Any, got: list[int], expected: list[int]) -> GreedyVerdict:
    """Compare a decoder's greedy tokens with the target's own; explain the first divergence."""
    import torch

    position = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), None)
    if position is None:
        if len(got) == len(expected):
            return GreedyVerdict("identical")
        position = min(len(got), len(expected))  # one stopped early (EOS); judge the next position
    prefix = torch.cat([input_ids[0], torch.tensor(expected[:position], device=input_ids.device, dtype=torch.long)])
    with torch.inference_mode():
        logits = target(input_ids=prefix.unsqueeze(0), use_cache=False).logits[0, -1].float()
    top2 = torch.topk(logits, 2).values
    gap = float(top2[0] - top2[1])
    tolerance = tie_tolerance(target.dtype, float(logits.abs().max()))
    if target.dtype == torch.float64 or gap > tolerance:
        return GreedyVerdict("bug", position, gap, tolerance)
    return GreedyVerdict("near_tie", position, gap, tolerance)
