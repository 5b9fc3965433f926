"""Pure tensor functions of speculative sampling.

Warpers (temperature, top-k, top-p, min-p), logits to probabilities, sampling with an explicit
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
    """How tokens are chosen. ``temperature == 0`` is greedy; ``top_k == 0``, ``top_p == 1`` and ``min_p == 0`` are off.

    The penalties and ``logit_bias`` change the law with the history (``processing``); 1.0, 0.0 and
    no bias are off. ``logit_bias`` maps token ids to additive biases (``-inf`` bans a token); a dict
    is accepted and kept as a sorted tuple of pairs, so configs stay hashable.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)) or self.temperature < 0:
            raise InvalidSamplingError(
                f"temperature must be a finite number >= 0, got {self.temperature!r}; use 0 for greedy decoding"
            )
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise InvalidSamplingError(f"top_k must be an integer >= 0, got {self.top_k!r}; use 0 to turn top-k off")
        if not isinstance(self.top_p, (int, float)) or not (0.0 < self.top_p <= 1.0):
            raise InvalidSamplingError(f"top_p must be in (0, 1], got {self.top_p!r}; use 1.0 to turn top-p off")
        if not isinstance(self.min_p, (int, float)) or not (0.0 <= self.min_p <= 1.0):
            raise InvalidSamplingError(f"min_p must be in [0, 1], got {self.min_p!r}; use 0 to turn min-p off")
        penalty = self.repetition_penalty
        if not (isinstance(penalty, (int, float)) and math.isfinite(penalty)) or penalty <= 0:
            raise InvalidSamplingError(
                f"repetition_penalty must be a finite number > 0, got {penalty!r}; use 1.0 to turn it off"
            )
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise InvalidSamplingError(f"{name} must be a finite number, got {value!r}; use 0 to turn it off")
        object.__setattr__(self, "logit_bias", _check_bias(self.logit_bias))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def features(self) -> tuple[str, ...]:
        """The request features beyond temperature, top-k and top-p that this config turns on."""
        on = {"min_p": self.min_p > 0, "repetition_penalty": self.repetition_penalty != 1.0,
              "presence_penalty": self.presence_penalty != 0, "frequency_penalty": self.frequency_penalty != 0,
              "logit_bias": bool(self.logit_bias)}
        return tuple(name for name, used in on.items() if used)

    def describe(self) -> str:
        parts = ["greedy"] if self.greedy else [f"T={self.temperature:g}"]
        if self.top_k and not self.greedy:
            parts.append(f"top_k={self.top_k}")
        if self.top_p < 1 and not self.greedy:
            parts.append(f"top_p={self.top_p:g}")
        if self.min_p and not self.greedy:
            parts.append(f"min_p={self.min_p:g}")
        for name in ("repetition_penalty", "presence_penalty", "frequency_penalty"):
            if name in self.features:
                parts.append(f"{name}={getattr(self, name):g}")
        if self.logit_bias:
            parts.append("logit_bias={" + ",".join(f"{t}:{b:g}" for t, b in self.logit_bias) + "}")
        return ",".join(parts)


def _check_bias(bias: object) -> tuple[tuple[int, float], ...]:
    """A dict or pairs of (token id, bias) -> sorted pairs; -inf bans a token, +inf and nan are errors."""
    pairs = bias.items() if isinstance(bias, dict) else bias
    try:
        out = {}
        for token, value in pairs:  # type: ignore[union-attr]
            if isinstance(token, bool) or not isinstance(token, int) or token < 0:
                raise InvalidSamplingError(f"logit_bias keys must be token ids >= 0, got {token!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value == math.inf:
                raise InvalidSamplingError(
                    f"logit_bias[{token}] must be a finite number or -inf (a ban), got {value!r}"
                )
            out[token] = float(value)
    except TypeError:
        raise InvalidSamplingError(
            f"logit_bias must be a dict of token id -> bias, got {type(bias).__name__}"
        ) from None
    return tuple(sorted(out.items()))


GREEDY = SamplingConfig()


def probs_dtype(logits: torch.Tensor) -> torch.dtype:
    """float64 logits stay float64; everything else is computed in float32."""
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def warp_logits(logits: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """(..., vocab) -> (..., vocab): temperature, then top-k, top-p, min-p; removed tokens get -inf."""
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
    if sampling.min_p > 0.0:
        probs = logits.softmax(dim=-1)
        threshold = sampling.min_p * probs.amax(dim=-1, keepdim=True)
        logits = logits.masked_fill(probs < threshold, -math.inf)  # never removes the most likely token
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
