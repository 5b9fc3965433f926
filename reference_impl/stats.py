"""What a decode returns: its tokens and a frozen record of deterministic counts.

Every metric is defined here once (FIELD-NOTES, "Metrics, defined once"):

- ``alpha_estimate`` = A / (A + R): A accepted draft tokens, R steps that ended in a rejection.
- ``acceptance_rate`` = A / drafted: a different, lower number.
- ``mean_accepted_length`` (tau) = 1 + A / steps: tokens per speculative step, counting the
  bonus or correction token each step emits.
- expected tokens per target pass and the wall-clock speedup model, from alpha, gamma, c and v.

Counts cover emitted tokens only: tokens after an EOS, or beyond ``max_new_tokens``, are
neither emitted nor counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DecodeStats:
    """Deterministic counts of one ``generate`` call."""

    new_tokens: int = 0
    steps: int = 0  # speculative steps: a draft phase plus one target verify pass
    drafted: int = 0  # draft tokens proposed over all steps
    accepted: int = 0  # draft tokens accepted and emitted (A)
    rejections: int = 0  # steps whose emitted tokens end with a correction from the residual (R)
    drafted_by_position: tuple[int, ...] = ()  # steps that drafted a token at position i
    accepted_by_position: tuple[int, ...] = ()  # steps whose draft token at position i was accepted
    target_forwards: int = 0
    draft_forwards: int = 0
    target_prefills: int = 0
    draft_prefills: int = 0
    target_tokens_fed: int = 0  # tokens run through the target, prefill included
    draft_tokens_fed: int = 0
    forwards_before_first_token: int = 0  # forward passes (either model) before the first token was visible
    gammas: tuple[int, ...] = ()  # gamma used at each step, in order (a tree decoder's: the tree's depth)
    tree_sizes: tuple[int, ...] = ()  # tree decoders: draft nodes at each step (empty for a chain)
    path_lengths: tuple[int, ...] = ()  # tree decoders: accepted path length at each step, <= its depth
    extra: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def alpha_estimate(self) -> float:
        """A / (A + R); nan when no step drafted anything."""
        denominator = self.accepted + self.rejections
        return self.accepted / denominator if denominator else math.nan

    @property
    def acceptance_rate(self) -> float:
        """A / drafted: accepted over proposed draft tokens."""
        return self.accepted / self.drafted if self.drafted else math.nan

    @property
    def mean_accepted_length(self) -> float:
        """tau = 1 + A / steps, including the bonus or correction token of each step."""
        return 1 + self.accepted / self.steps if self.steps else math.nan

    @property
    def acceptance_by_position(self) -> tuple[float, ...]:
        """Per draft position i: accepted / drafted there (nan where nothing was drafted)."""
        pairs = zip(self.accepted_by_position, self.drafted_by_position, strict=True)
        return tuple(a / d if d else math.nan for a, d in pairs)

    @property
    def target_forwards_per_token(self) -> float:
        return self.target_forwards / self.new_tokens if self.new_tokens else math.nan

    @property
    def draft_forwards_per_token(self) -> float:
        return self.draft_forwards / self.new_tokens if self.new_tokens else math.nan

    def as_dict(self) -> dict[str, object]:
        """Counts and derived metrics, JSON-ready (nan becomes None)."""
        out: dict[str, object] = {
            name: getattr(self, name) for name in self.__dataclass_fields__ if name not in ("extra",)
        }
        for name in (
            "alpha_estimate",
            "acceptance_rate",
            "mean_accepted_length",
            "target_forwards_per_token",
            "draft_forwards_per_token",
        ):
            value = getattr(self, name)
            out[name] = None if math.isnan(value) else value
        out["drafted_by_position"] = list(self.drafted_by_position)
        out["accepted_by_position"] = list(self.accepted_by_position)
        out["gammas"] = list(self.gammas)
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class TokenLogprob:
    """The target's processed law at one emitted token (``processing``, then the warpers).

    ``logprob``: the emitted token's log-probability under the law it was drawn from (sampled) or,
    greedy, under the processed logits at temperature 1 without truncation; ``top``: the n most
    likely (token, logprob) pairs of that law, most likely first; ``raw``: the token's
    log-probability under the target's unprocessed logits.
    """

    logprob: float
    top: tuple[tuple[int, float], ...] = ()
    raw: float | None = None


@dataclass(frozen=True)
class DecodeResult:
    """The new tokens only (prompt excluded) and the stats of the call; ``logprobs`` when asked, one per token."""

    tokens: list[int]
    stats: DecodeStats
    logprobs: list[TokenLogprob] | None = None


def expected_tokens_per_step(alpha: float, gamma: int) -> float:
    """(1 - alpha^(gamma+1)) / (1 - alpha): expected tokens per target pass (gamma + 1 at alpha = 1)."""
    if alpha >= 1.0:
        return float(gamma + 1)
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


def predicted_speedup(alpha: float, gamma: int, c: float, v: float = 1.0) -> float:
    """Wall-clock speedup model: expected tokens per step / (gamma * c + v).

    c: cost of one draft decode pass over one target decode pass; v: cost of verifying
    gamma + 1 tokens in one target pass over one target decode pass.
    """
    return expected_tokens_per_step(alpha, gamma) / (gamma * c + v)


class StatsCounter:
    """Mutable tally a decoder fills during ``generate``; ``freeze`` turns it into ``DecodeStats``."""

    def __init__(self) -> None:
        self.new_tokens = 0
        self.steps = 0
        self.drafted = 0
        self.accepted = 0
        self.rejections = 0
        self.drafted_by_position: list[int] = []
        self.accepted_by_position: list[int] = []
        self.forwards_before_first_token = 0
        self.gammas: list[int] = []

    def record_step(self, gamma: int, n_accepted: int, rejected: bool) -> None:
        """One speculative step: gamma drafted, the first n_accepted emitted as accepted."""
        if len(self.drafted_by_position) < gamma:
            grow = gamma - len(self.drafted_by_position)
            self.drafted_by_position += [0] * grow
            self.accepted_by_position += [0] * grow
        for i in range(gamma):
            self.drafted_by_position[i] += 1
        for i in range(n_accepted):
            self.accepted_by_position[i] += 1
        self.steps += 1
        self.drafted += gamma
        self.accepted += n_accepted
        self.rejections += int(rejected)
        self.gammas.append(gamma)

    def freeze(self, target: object, draft: object | None = None, **extra: float) -> DecodeStats:
        """Combine this tally with the models' pass counters (see ``kv.CachedLM``)."""
        return DecodeStats(
            new_tokens=self.new_tokens,
            steps=self.steps,
            drafted=self.drafted,
            accepted=self.accepted,
            rejections=self.rejections,
            drafted_by_position=tuple(self.drafted_by_position),
            accepted_by_position=tuple(self.accepted_by_position),
            target_forwards=target.forwards,  # type: ignore[attr-defined]
            draft_forwards=draft.forwards if draft is not None else 0,  # type: ignore[attr-defined]
            target_prefills=target.prefills,  # type: ignore[attr-defined]
            draft_prefills=draft.prefills if draft is not None else 0,  # type: ignore[attr-defined]
            target_tokens_fed=target.tokens_fed,  # type: ignore[attr-defined]
            draft_tokens_fed=draft.tokens_fed if draft is not None else 0,  # type: ignore[attr-defined]
            forwards_before_first_token=self.forwards_before_first_token,
            gammas=tuple(self.gammas),
            extra=dict(extra),
        )
