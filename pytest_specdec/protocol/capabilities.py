"""What a decoder can be asked: capability names, a decoder's declaration, and the checks a result must pass.

A decoder declares what it implements as ``capabilities``, a set of the names below, on the object
its factory returns or on the factory itself (a class attribute does both). A decoder that declares
nothing is taken to implement the classic request (``CLASSIC``), which every decoder the suite tested
before request features existed was asked. A test that needs a capability carries
``@pytest.mark.specdec_requires(name, ...)``; on a decoder that does not declare it the test is
skipped, and the run ends with one summary line per missing capability, never silently. A call
through the protocol that asks for something the decoder does not declare (``asked``: top-k on a
decoder without ``top_k``, a per-call gamma on one without ``gamma``) skips its test the same way, so
a setting a decoder does not offer is never reported as a failure of the decoder.

A result of a request that used a feature is checked against it as every result is checked against
the protocol (``decoder.CheckedDecoder``): nothing emitted after a completed stop sequence or EOS, no
EOS before ``min_new_tokens``, one logprob record per token with a log-probability <= 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

CLASSIC = frozenset({"greedy", "temperature", "top_k", "top_p", "streaming", "gamma", "eos"})  # reference_impl's too
FEATURES = {
    "min_p": "SamplingConfig.min_p: tokens below min_p times the top probability removed (after top-p)",
    "repetition_penalty": "SamplingConfig.repetition_penalty over prompt and generated tokens (HF semantics)",
    "presence_penalty": "SamplingConfig.presence_penalty over generated tokens (OpenAI semantics)",
    "frequency_penalty": "SamplingConfig.frequency_penalty over generated tokens (OpenAI semantics)",
    "logit_bias": "SamplingConfig.logit_bias: additive, -inf bans a token",
    "min_new_tokens": "generate(min_new_tokens=n): EOS banned before n tokens",
    "stop": "generate(stop=[[ids], ...]): output ends after the stop sequence that completes first",
    "logprobs": "generate(logprobs=n): DecodeResult.logprobs, one TokenLogprob per token with n alternatives",
}
KNOWN = CLASSIC | frozenset(FEATURES)
MARKER = "specdec_requires"
LOGPROB_SLACK = 1e-6  # a log-probability may exceed 0 by rounding, never by more


SKIP_WORDS = "does not declare:"  # in every capability skip's reason, followed by the names; see skip_reason


class CapabilityError(ValueError):
    """A declaration names a capability the suite does not know (a typo would skip tests silently)."""


def declared(obj: Any) -> frozenset[str]:
    """The capabilities ``obj`` (a decoder, or a factory) declares; ``CLASSIC`` when it declares none."""
    names = getattr(getattr(obj, "inner", obj), "capabilities", None)
    if names is None:
        return CLASSIC
    names = frozenset(names)
    unknown = sorted(names - KNOWN)
    if unknown:
        raise CapabilityError(
            f"{getattr(obj, '__name__', type(obj).__name__)} declares unknown capabilities {unknown}; "
            f"the known ones are {sorted(KNOWN)}"
        )
    return names


def asked(request: dict[str, Any]) -> frozenset[str]:
    """The capabilities a ``generate`` call asks for (``request``: its keyword arguments)."""
    sampling = request.get("sampling")
    names = {"greedy"} if sampling is None or getattr(sampling, "temperature", 0) == 0 else {"temperature"}
    if sampling is not None and "temperature" in names:
        names |= {name for name, on in (("top_k", getattr(sampling, "top_k", 0)),
                                         ("top_p", getattr(sampling, "top_p", 1.0) < 1)) if on}
    names |= set(getattr(sampling, "features", ()))
    for name, key in (("gamma", "gamma"), ("eos", "eos_token_id"), ("streaming", "on_token"), ("logprobs", "logprobs")):
        if request.get(key) is not None:
            names.add(name)
    names |= {name for name in ("min_new_tokens", "stop") if request.get(name)}
    return frozenset(names)


def skip_reason(who: str, missing: Sequence[str]) -> str:
    """The reason a test is skipped for capabilities ``who`` lacks; ``missing_from_reason`` reads it back."""
    return f"{who} {SKIP_WORDS} {', '.join(sorted(missing))}"


def missing_from_reason(reason: str) -> tuple[str, list[str]]:
    """Who lacks what, from a skip reason written by ``skip_reason`` (``("", [])`` for any other skip)."""
    who, found, names = reason.rpartition(f" {SKIP_WORDS} ")
    if not found:
        return "", []
    return who.removeprefix("Skipped: "), [name.strip() for name in names.split(",") if name.strip() in KNOWN]


def feature_violations(tokens: Sequence[int], result: Any, request: dict[str, Any]) -> list[str]:
    """What a result breaks of the request features it was asked for (``request``: the generate kwargs)."""
    problems = []
    eos, floor = request.get("eos_token_id"), request.get("min_new_tokens") or 0
    if eos is not None and eos in tokens[:floor]:
        problems.append(f"EOS {eos} emitted at index {list(tokens).index(eos)}, before min_new_tokens={floor}")
    stops = [tuple(s) for s in request.get("stop") or ()]
    # a stop that completes before the last token must have ended the output there
    for end in range(max(floor, 1), len(tokens) if stops else 0):
        done = [s for s in stops if end >= len(s) and tuple(tokens[end - len(s):end]) == s]
        if done:
            problems.append(f"stop sequence {list(done[0])} completed at index {end - 1} but "
                            f"{len(tokens) - end} more token(s) were emitted after it")
            break
    if request.get("logprobs") is not None:
        problems += _logprob_violations(tokens, getattr(result, "logprobs", None), request["logprobs"])
    return problems


def _logprob_violations(tokens: Sequence[int], records: Any, top: int) -> list[str]:
    if not isinstance(records, list) or len(records) != len(tokens):
        got = f"{len(records)} records" if isinstance(records, list) else type(records).__name__
        return [f"logprobs={top} asked: DecodeResult.logprobs must hold one record per token ({len(tokens)}), "
                f"got {got}"]
    for i, record in enumerate(records):
        value = getattr(record, "logprob", None)
        if not isinstance(value, float) or math.isnan(value) or value > LOGPROB_SLACK:
            return [f"logprobs[{i}].logprob must be a float <= 0, got {value!r}"]
        if top and not getattr(record, "top", ()):
            return [f"logprobs[{i}].top is empty, {top} alternatives asked"]
    return []
