"""What a decoder can be asked: capability names, a decoder's declaration, and the checks a result must pass.

A decoder declares what it implements as ``capabilities``, a set of the names below, on the object
its factory returns or on the factory itself (a class attribute does both). A decoder that declares
nothing is taken to implement the classic request (``CLASSIC``), which every decoder the suite tested
before request features existed was asked. A test that needs a capability carries
``@pytest.mark.specdec_requires(name, ...)``; on a decoder that does not declare it the test is
skipped, and the run ends with one summary line per missing capability, never silently.

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
