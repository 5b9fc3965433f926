"""Pure tensor functions of speculative sampling.

Warpers (temperature, top-k, top-p), logits to probabilities, sampling with an explicit
generator, the accept test and the residual distribution. No module state: the tests call
these directly, and both decoders use them, so the draft and the target see the same warping.

Names follow the algorithm, not a paper's letters: ``target_probs`` and ``draft_probs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import InvalidSamplingError


@dataclass(frozen=True)
class SamplingConfig:
    """How tokens are chosen. ``temperature == 0`` is greedy; ``top_k == 0`` and ``top_p == 1`` are off."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)) or self.temperature < 0:
            raise InvalidSamplingError(
                f"temperature must be a finite number >= 0, got {self.temperature!r}; use 0 for greedy decoding"
            )
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise InvalidSamplingError(f"top_k must be an integer >= 0, got {self.top_k!r}; use 0 to turn top-k off")
        if not isinstance(self.top_p, (int, float)) or not (0.0 < self.top_p <= 1.0):
            raise InvalidSamplingError(f"top_p must be in (0, 1], got {self.top_p!r}; use 1.0 to turn top-p off")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def describe(self) -> str:
        if self.greedy:
            return "greedy"
        parts = [f"T={self.temperature:g}"]
        if self.top_k:
            parts.append(f"top_k={self.top_k}")
        if self.top_p < 1:
            parts.append(f"top_p={self.top_p:g}")
        return ",".join(parts)


GREEDY = SamplingConfig()


def probs_dtype(logits: torch.Tensor) -> torch.dtype:
    """float64 logits stay float64; everything else is computed in float32."""
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def warp_logits(logits: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """(..., vocab) -> (..., vocab): temperature, then top-k, then top-p; removed tokens get -inf."""
    logits = logits.to(probs_dtype(logits)) / sampling.temperature
    vocab = logits.shape[-1]
    if 0 < sampling.top_k < vocab:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if sampling.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(dim=-1)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        remove_sorted = mass_before >= sampling.top_p  # never removes the most likely token
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, -math.inf)
    return logits


def probs_from_logits(logits: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """(..., vocab) logits -> (..., vocab) probabilities after warping (sampling mode only)."""
    return warp_logits(logits, sampling).softmax(dim=-1)


def sample(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(n, vocab) -> (n,): one token per row, drawn with ``generator``."""
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def residual_probs(target_probs: torch.Tensor, draft_probs: torch.Tensor) -> torch.Tensor:
    """(..., vocab) x2 -> (..., vocab): norm(max(0, target_probs - draft_probs)).

    Where the residual has no mass (the two distributions are equal, so a rejection cannot
    happen there) the target's own distribution is returned, keeping every row a distribution.
    """
    residual = (target_probs - draft_probs).clamp_min(0)
    mass = residual.sum(dim=-1, keepdim=True)
    return torch.where(mass > 0, residual / mass.clamp_min(torch.finfo(mass.dtype).tiny), target_probs)


def accept_probs(target_probs: torch.Tensor, draft_probs: torch.Tensor, draft_tokens: torch.Tensor) -> torch.Tensor:
    """(gamma, vocab) x2, (gamma,) -> (gamma,): min(1, target_probs(x) / draft_probs(x)) per drafted x."""
    rows = torch.arange(draft_tokens.shape[0], device=draft_tokens.device)
    target_at = target_probs[rows, draft_tokens]
    draft_at = draft_probs[rows, draft_tokens]
    return (target_at / draft_at).clamp(max=1.0)


def accepted_prefix_length(accept: torch.Tensor) -> torch.Tensor:
    """(gamma,) bool -> 0-d long: how many leading positions were accepted (stops at the first rejection)."""
    return accept.long().cumprod(dim=0).sum()


def verify_sampled(
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor,
    draft_tokens: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rejection step. (gamma+1, vocab), (gamma, vocab), (gamma,) -> (n_accepted, next_token), 0-d each.

    Draft token i is accepted with probability min(1, target/draft); at the first rejection the
    next token comes from the residual at that position, and if all gamma are accepted it is a
    bonus token from the target's distribution after the last draft token. Stays on device.
    """
    gamma = draft_tokens.shape[0]
    uniforms = torch.rand(gamma, generator=generator, device=draft_tokens.device, dtype=target_probs.dtype)
    n_accepted = accepted_prefix_length(uniforms < accept_probs(target_probs[:gamma], draft_probs, draft_tokens))
    next_dists = torch.cat([residual_probs(target_probs[:gamma], draft_probs), target_probs[gamma:]])
    next_token = sample(next_dists[n_accepted].unsqueeze(0), generator)[0]
    return n_accepted, next_token


def verify_greedy(target_logits: torch.Tensor, draft_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(gamma+1, vocab), (gamma,) -> (n_accepted, next_token).

    Greedy acceptance: the longest draft prefix equal to the target's argmax, then the target's argmax.
    """
    target_tokens = target_logits.argmax(dim=-1)
    n_accepted = accepted_prefix_length(draft_tokens == target_tokens[:-1])
    return n_accepted, target_tokens[n_accepted]


def choose_token(logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """(vocab,) -> 0-d: argmax when greedy, else a draw from the warped distribution."""
    if sampling.greedy:
        return logits.argmax(dim=-1)
    return sample(probs_from_logits(logits, sampling).unsqueeze(0), generator)[0]
