"""Counters that cannot lie: a decoder's reported counts checked against its tokens, each other and its models.

``CheckedDecoder`` (decoder.py) runs two checks on every ``generate`` result:

- ``count_violations(stats, tokens, gamma)``: the ``DecodeStats`` counts must be mutually consistent
  with the tokens returned and the gamma asked for. The rules follow from the algorithm: every
  emitted token is an accepted draft token, the correction or bonus token of a step, or a token of
  a plain target pass; every step but the last emits its correction or bonus token (only the last
  can be cut short by EOS or ``max_new_tokens``, and counts cover emitted tokens only); an
  accepted draft token at position i means the step accepted every position before it.
- ``PassObserver``: a counting wrapper around the ``forward`` of the target and the draft the
  suite handed to the factory (what a forward pre-hook sees, at the cost of a function call)
  counts the passes, prefills (passes that start from no cache or an empty one) and tokens each
  model ran during the call, and the passes run before the first ``on_token`` call;
  ``PassObserver.violations`` compares them with the reported counts.

A count of 0 means "the decoder cannot know" (README, "The decoder protocol") and fails nothing,
unless the decoder's own finer counts show it knew (per-position counts or per-step gammas fix
``drafted``, ``accepted`` and, up to the last step, ``rejections``). Passes the wrapper cannot see
(a decoder that runs a copy of a model, its submodules or a captured graph) are not compared.
A decoder that does not honour a per-call gamma says so with ``stats.extra["gamma_ignored"] = 1``.
A tree decoder reports each step's depth as its gamma (so the chain's rules read it as a chain of
that depth) and, in ``tree_sizes`` and ``path_lengths``, its nodes and accepted path per step.
"""

from __future__ import annotations

import functools
import itertools
import numbers
from collections.abc import Callable, Sequence
from typing import Any

GAMMA_IGNORED = "gamma_ignored"
_ABSENT = object()
COUNT_FIELDS = ("new_tokens", "steps", "drafted", "accepted", "rejections", "target_forwards", "draft_forwards",
                "target_prefills", "draft_prefills", "target_tokens_fed", "draft_tokens_fed",
                "forwards_before_first_token")
SEQUENCE_FIELDS = ("drafted_by_position", "accepted_by_position", "gammas")
PASS_FIELDS = ("forwards", "prefills", "tokens_fed")


def _is_count(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def _type_violations(stats: Any) -> list[str]:
    problems = [f"{name} = {getattr(stats, name, None)!r} is not a count (an int >= 0)"
                for name in COUNT_FIELDS if not _is_count(getattr(stats, name, None))]
    for name in SEQUENCE_FIELDS:
        value = getattr(stats, name, None)
        if not isinstance(value, Sequence) or not all(_is_count(v) for v in value):
            problems.append(f"{name} = {value!r} is not a sequence of counts (ints >= 0)")
    return problems


def _non_increasing(values: Sequence[int]) -> bool:
    return all(a >= b for a, b in itertools.pairwise(values))


def _position_violations(s: Any) -> list[str]:
    """Per-position counts: their sums, their order, accepted within drafted."""
    dp, ap, out = tuple(s.drafted_by_position), tuple(s.accepted_by_position), []
    if (dp or ap) and len(dp) != len(ap):
        out.append(f"drafted_by_position {dp} and accepted_by_position {ap} differ in length "
                   "[rule: one entry per draft position in both, or neither reported]")
    if dp and sum(dp) != s.drafted:
        out.append(f"drafted = {s.drafted} but drafted_by_position {dp} sums to {sum(dp)} "
                   "[rule: sum(drafted_by_position) == drafted]")
    if ap and sum(ap) != s.accepted:
        out.append(f"accepted = {s.accepted} but accepted_by_position {ap} sums to {sum(ap)} "
                   "[rule: sum(accepted_by_position) == accepted]")
    if not _non_increasing(dp):
        out.append(f"drafted_by_position {dp} increases [rule: a step that drafts position i drafts every "
                   "position before it]")
    if not _non_increasing(ap):
        out.append(f"accepted_by_position {ap} increases [rule: a draft token is accepted only if every one "
                   "before it in the step was: nothing is accepted past the first rejection]")
    if any(a > d for a, d in zip(ap, dp, strict=False)):
        out.append(f"accepted_by_position {ap} exceeds drafted_by_position {dp} "
                   "[rule: accepted_by_position[i] <= drafted_by_position[i]]")
    if dp and s.steps and dp[0] > s.steps:
        out.append(f"drafted_by_position[0] = {dp[0]} > steps = {s.steps} [rule: one draft token per position "
                   "per step]")
    if s.drafted and s.accepted > s.drafted:
        out.append(f"accepted = {s.accepted} > drafted = {s.drafted} [rule: accepted <= drafted]")
    return out


def _gamma_violations(s: Any, gamma: object) -> list[str]:
    """Per-step gammas: one per step, summing to drafted, matching the per-position counts, within the asked gamma."""
    gammas, dp, out = tuple(s.gammas), tuple(s.drafted_by_position), []
    if not gammas:
        return out
    if s.steps and len(gammas) != s.steps:
        out.append(f"{len(gammas)} gammas {gammas} for steps = {s.steps} [rule: one gamma per step]")
    if sum(gammas) != s.drafted:
        out.append(f"drafted = {s.drafted} but gammas {gammas} sum to {sum(gammas)} [rule: sum(gammas) == drafted]")
    expected = tuple(sum(g > i for g in gammas) for i in range(max(len(dp), max(gammas))))
    if dp and dp + (0,) * (len(expected) - len(dp)) != expected:
        out.append(f"drafted_by_position {dp} does not match gammas {gammas} (expected {expected}) "
                   "[rule: drafted_by_position[i] == number of steps with gamma > i]")
    ignored = bool(s.extra.get(GAMMA_IGNORED)) if isinstance(s.extra, dict) else False
    if _is_count(gamma) and not ignored and max(gammas) > gamma:
        out.append(f"gammas {gammas} exceed the gamma asked for, {gamma} [rule: each step drafts at most gamma "
                   f"tokens; a decoder that ignores the per-call gamma sets extra[{GAMMA_IGNORED!r}] = 1]")
    return out


def _rejection_bounds(s: Any) -> tuple[int, int] | None:
    """(lowest, highest) rejections the per-step gammas and per-position accepts allow, or None when unknown.

    A step is full when it accepted all its gamma; only a step that is not full can end in a rejection,
    and every step that is not full does, except the last one when EOS or max_new_tokens cut it short.
    """
    gammas, ap = tuple(s.gammas), tuple(s.accepted_by_position)
    if not gammas or not ap or min(gammas) < 1 or len(ap) < max(gammas):
        return None
    most_full = ap[min(gammas) - 1]  # a full step accepted at least min(gammas) tokens
    least_full = ap[max(gammas) - 1]  # a step that accepted max(gammas) tokens is full
    return max(0, len(gammas) - most_full - 1), len(gammas) - least_full


def _emission_violations(s: Any, n_tokens: int) -> list[str]:
    """Tokens against steps, accepts, rejections and target passes."""
    out, emitted_by_target = [], n_tokens - s.accepted
    if s.steps and s.rejections > s.steps:
        out.append(f"rejections = {s.rejections} > steps = {s.steps} [rule: at most one rejection per step]")
    if s.steps > n_tokens:
        out.append(f"steps = {s.steps} for {n_tokens} tokens [rule: every step emits at least one token]")
    floor = max(s.rejections, s.steps - 1)
    if emitted_by_target < floor:
        out.append(f"{n_tokens} tokens with accepted = {s.accepted}, steps = {s.steps}, rejections = {s.rejections}: "
                   f"{emitted_by_target} tokens not accepted from the draft, fewer than {floor} "
                   "[rule: every step but the last emits one correction or bonus token besides its accepted "
                   "draft tokens, so new_tokens - accepted >= max(rejections, steps - 1)]")
    if s.target_forwards and emitted_by_target > s.target_forwards:
        out.append(f"{n_tokens} tokens with accepted = {s.accepted} but target_forwards = {s.target_forwards} "
                   "[rule: every token that is not an accepted draft token comes from its own target pass (the "
                   "prefill's token, a step's correction or bonus, a plain pass): new_tokens - accepted <= "
                   "target_forwards]")
    if s.target_forwards and s.steps > s.target_forwards:
        out.append(f"steps = {s.steps} > target_forwards = {s.target_forwards} [rule: each step verifies in a target "
                   "pass]")
    bounds = _rejection_bounds(s)
    if bounds and s.steps and not bounds[0] <= s.rejections <= bounds[1]:
        out.append(f"rejections = {s.rejections}, but gammas {tuple(s.gammas)} and accepted_by_position "
                   f"{tuple(s.accepted_by_position)} allow {bounds[0]}..{bounds[1]} [rule: a step that accepted fewer "
                   "than its gamma ends in a rejection, except a last step cut short by EOS or max_new_tokens]")
    return out


def _pass_count_violations(s: Any) -> list[str]:
    out = []
    for role in ("target", "draft"):
        forwards, prefills, fed = (getattr(s, f"{role}_{name}") for name in PASS_FIELDS)
        if forwards and prefills > forwards:
            out.append(f"{role}_prefills = {prefills} > {role}_forwards = {forwards} [rule: a prefill is a pass]")
        if forwards and fed and fed < forwards:
            out.append(f"{role}_tokens_fed = {fed} < {role}_forwards = {forwards} [rule: every pass feeds a token]")
    total = s.target_forwards + s.draft_forwards
    if s.target_forwards and s.draft_forwards and s.forwards_before_first_token > total:
        out.append(f"forwards_before_first_token = {s.forwards_before_first_token} > target_forwards + "
                   f"draft_forwards = {total} [rule: passes before the first token are passes]")
    return out


def _tree_violations(s: Any) -> list[str]:
    """Tree decoders (``tree_sizes`` set): one tree and one path per step; path <= depth (the step's gamma) <= nodes."""
    sizes, paths = tuple(getattr(s, "tree_sizes", ())), tuple(getattr(s, "path_lengths", ()))
    if not sizes and not paths:
        return []
    out = []
    if not all(_is_count(v) for v in (*sizes, *paths)):
        return [f"tree_sizes {sizes} or path_lengths {paths} are not counts (ints >= 0)"]
    if len(sizes) != s.steps or len(paths) != s.steps:
        out.append(f"{len(sizes)} tree sizes and {len(paths)} path lengths for steps = {s.steps} "
                   "[rule: one tree and one accepted path per step]")
    if sum(paths) != s.accepted:
        out.append(f"path_lengths {paths} sum to {sum(paths)}, accepted = {s.accepted} [rule: sum(path_lengths) == "
                   "accepted: the accepted draft tokens are the accepted paths' nodes]")
    depths = tuple(s.gammas) or (max(sizes, default=0),) * len(sizes)
    steps = zip(sizes, paths, depths, strict=False)
    bad = [i for i, (size, path, depth) in enumerate(steps) if not path <= depth <= size]
    if bad:
        out.append(f"steps {bad}: path_lengths {paths}, depths (gammas) {tuple(s.gammas)}, tree_sizes {sizes} "
                   "[rule: a path is at most the tree's depth, and the depth at most its nodes]")
    return out


def count_violations(stats: Any, tokens: Sequence[int], gamma: object = None) -> list[str]:
    """Each way ``stats`` disagrees with itself, the ``tokens`` returned and the ``gamma`` asked for (empty: none)."""
    problems = _type_violations(stats)
    if problems:
        return problems
    if stats.new_tokens != len(tokens):
        problems.append(f"new_tokens = {stats.new_tokens} but {len(tokens)} tokens were returned "
                        "[rule: new_tokens == len(tokens)]")
    return [*problems, *_position_violations(stats), *_gamma_violations(stats, gamma),
            *_emission_violations(stats, len(tokens)), *_pass_count_violations(stats), *_tree_violations(stats)]


class PassObserver:
    """Counts the forward passes each model runs inside ``with observer:``.

    ``models`` maps a role ("target", "draft") to the module the suite handed over (None: absent).
    A module that plays both roles (an identical pair) is observed once, for both. Each module's
    ``forward`` is wrapped for the duration (an instance attribute, restored on exit): it sees what a
    forward pre-hook sees, also calls of ``model.forward`` itself, and costs a plain function call
    where a registered hook sends every call of the module down ``torch.nn.Module``'s slow path.
    """

    def __init__(self, models: dict[str, Any]) -> None:
        self.groups: dict[int, list[str]] = {}
        self.modules: dict[int, Any] = {}
        for role, model in models.items():
            if model is not None and callable(getattr(model, "forward", None)):
                self.groups.setdefault(id(model), []).append(role)
                self.modules[id(model)] = model
        self.seen = {key: {"forwards": 0, "prefills": 0, "tokens_fed": 0} for key in self.groups}
        self.tokens_measurable = True
        self.before_first_token: int | None = None
        self._saved: dict[int, Any] = {}

    def count(self, key: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Note one pass of module ``key`` called with ``args`` and ``kwargs``."""
        seen = self.seen[key]
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None and kwargs.get("inputs_embeds") is not None:
            ids = kwargs["inputs_embeds"][..., 0]
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        seen["forwards"] += 1
        if cache is None or (hasattr(cache, "get_seq_length") and cache.get_seq_length() == 0):
            seen["prefills"] += 1
        if ids is None or not hasattr(ids, "shape"):
            self.tokens_measurable = False
        else:
            seen["tokens_fed"] += int(ids.shape[-1])

    def _counting(self, key: int, forward: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(forward)
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count(key, args, kwargs)
            return forward(*args, **kwargs)

        return counted

    def __enter__(self) -> PassObserver:
        for key, module in self.modules.items():
            self._saved[key] = module.__dict__.get("forward", _ABSENT)
            module.forward = self._counting(key, module.forward)
        return self

    def __exit__(self, *exc: object) -> None:
        for key, saved in self._saved.items():
            module = self.modules[key]
            if saved is _ABSENT:
                del module.forward
            else:
                module.forward = saved
        self._saved = {}

    def watch(self, on_token: Callable[[int], None] | None) -> Callable[[int], None]:
        """An ``on_token`` that notes the passes run before the first token, then calls the caller's."""

        def watched(token: int) -> None:
            if self.before_first_token is None:
                self.before_first_token = sum(seen["forwards"] for seen in self.seen.values())
            if on_token is not None:
                on_token(token)

        return watched

    def violations(self, stats: Any) -> list[str]:
        """Each reported pass count that disagrees with the passes the models ran (empty: none)."""
        out, unseen_passes = [], False
        for key, roles in self.groups.items():
            seen = self.seen[key]
            if not seen["forwards"]:
                unseen_passes |= any(getattr(stats, f"{role}_forwards", 0) for role in roles)
                continue  # the decoder does not run this module's forward: nothing to compare
            for name in PASS_FIELDS:
                if name == "tokens_fed" and not self.tokens_measurable:
                    continue
                reported = [getattr(stats, f"{role}_{name}", 0) for role in roles]
                out += _compare_pass(roles, name, reported, seen[name])
        first, seen_first = stats.forwards_before_first_token, self.before_first_token
        if first and seen_first is not None and (first < seen_first or (first != seen_first and not unseen_passes)):
            out.append(f"forwards_before_first_token = {first} but the models ran {seen_first} passes before the "
                       "first on_token call [rule: every pass of either model before the first token is visible "
                       "counts; on_token is called as each token becomes visible]")
        return out


def _compare_pass(roles: list[str], name: str, reported: list[int], seen: int) -> list[str]:
    fields = " + ".join(f"{role}_{name}" for role in roles)
    values = " + ".join(map(str, reported))
    if len(roles) == 1 or all(reported):
        if any(reported) and sum(reported) != seen:
            return [f"{fields} = {values} but the models ran {seen} during the call "
                    f"[rule: reported {name} == {name} the models ran]"]
    elif sum(reported) > seen:  # one model plays both roles and one role's count is 0 (unknown, or none ran)
        return [f"{fields} = {values} but the model ({' and '.join(roles)}) ran {seen} during the call "
                f"[rule: reported {name} <= {name} the model ran]"]
    return []
