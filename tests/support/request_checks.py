"""Checks of request features, as functions of a decoder and a request, shared by the greedy tests and the mutant
tests: the decoder against the autoregressive reference with the same request, and the logprobs against the
target's exact processed law, teacher-forced.

A request is a dict of ``generate`` keywords (``sampling``, ``min_new_tokens``, ``stop``, ``logprobs``,
``eos_token_id``, ``max_new_tokens``, ``gamma``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from reference_impl import AutoregressiveDecoder, SamplingConfig
from reference_impl.processing import History, law_logprobs, process_logits

LOGPROB_TOLERANCE = 1e-9  # float64 pairs: a teacher-forced pass and a verify pass agree far below this


def reference_tokens(target: Any, prompt: torch.Tensor, request: dict[str, Any]) -> list[int]:
    """The autoregressive reference's tokens for ``request`` (the law every decoder must reproduce)."""
    asked = {k: v for k, v in request.items() if k not in ("gamma", "logprobs")}
    key = (id(target), tuple(prompt[0].tolist()), repr(sorted(asked.items())))
    if key not in _REFERENCE:
        _REFERENCE[key] = AutoregressiveDecoder(target).generate(prompt, **asked).tokens
    return list(_REFERENCE[key])


_REFERENCE: dict[tuple, list[int]] = {}  # greedy reference outputs of this process (the models are cached too)


def exact_logprobs(target: Any, prompt: torch.Tensor, tokens: list[int], request: dict[str, Any]) -> list[float]:
    """The target's processed log-probability of each emitted token, from one teacher-forced pass."""
    sampling: SamplingConfig = request.get("sampling", SamplingConfig())
    ids = torch.cat([prompt[0], torch.tensor(tokens, dtype=torch.long)])
    with torch.no_grad():
        logits = target(input_ids=ids.unsqueeze(0)).logits[0, prompt.shape[1] - 1 : -1]  # (n, vocab)
    history = History.of_prompt(prompt, logits.shape[-1])
    seen, counts, generated = history.rows(torch.tensor(tokens[:-1], dtype=torch.long))
    processed = process_logits(logits, sampling, seen, counts, generated,
                               min_new_tokens=request.get("min_new_tokens", 0),
                               eos_token_id=request.get("eos_token_id"))
    law = law_logprobs(processed, sampling)
    return law[torch.arange(len(tokens)), torch.tensor(tokens)].tolist()


def token_mismatch(got: list[int], expected: list[int]) -> str | None:
    """Where ``got`` first differs from ``expected`` (None: equal)."""
    if got == expected:
        return None
    first = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                 min(len(got), len(expected)))
    return (f"tokens differ from index {first}: got {got[first:first + 6]} (of {len(got)}), the reference "
            f"{expected[first:first + 6]} (of {len(expected)})")


def logprob_mismatch(got: Any, target: Any, prompt: torch.Tensor, request: dict[str, Any],
                     tolerance: float = LOGPROB_TOLERANCE) -> str | None:
    """The first logprob of a result that is off the target's exact processed law at its prefix (None: all within)."""
    if not got.tokens:
        return None
    exact = exact_logprobs(target, prompt, got.tokens, request)
    for i, (record, value) in enumerate(zip(got.logprobs, exact, strict=True)):
        if abs(record.logprob - value) > tolerance:
            return (f"logprob of token {i} ({got.tokens[i]}) is {record.logprob:.9g}, the target's processed law "
                    f"says {value:.9g}")
    return None


def request_mismatches(decoder: Any, target: Any, prompt: torch.Tensor, request: dict[str, Any],
                       tolerance: float = LOGPROB_TOLERANCE) -> list[str]:
    """What ``decoder`` gets wrong on a greedy ``request``: tokens against the reference, logprobs against the law
    (``tolerance``: a decoder that computes the law in float32 from float64 logits is within about 1e-7)."""
    got = decoder.generate(prompt, **request)
    problem = token_mismatch(got.tokens, reference_tokens(target, prompt, request))
    if problem is None and request.get("logprobs") is not None:
        problem = logprob_mismatch(got, target, prompt, request, tolerance)
    return [problem] if problem else []


def logprob_mismatches(decoder: Any, target: Any, prompt: torch.Tensor, request: dict[str, Any],
                       generator: torch.Generator | None = None, tolerance: float = LOGPROB_TOLERANCE) -> list[str]:
    """The decoder's logprobs of its own (possibly sampled) tokens against the target's exact processed law."""
    problem = logprob_mismatch(decoder.generate(prompt, generator=generator, **request), target, prompt, request,
                               tolerance)
    return [problem] if problem else []


ROW_FIELDS = ("max_new_tokens", "sampling", "eos_token_id", "min_new_tokens", "stop", "logprobs")
ROW_DEFAULTS = {"sampling": SamplingConfig(), "eos_token_id": None, "min_new_tokens": 0, "stop": [], "logprobs": None}


def batched_request_mismatches(decoder: Any, target: Any, prompts: list[torch.Tensor], requests: list[dict[str, Any]],
                               gamma: int = 4) -> list[str]:
    """What ``decoder.generate_batch`` gets wrong on greedy rows, each with its own request (every field passed per
    row): row i's tokens against the autoregressive reference with request i, its logprobs against the law."""
    asked = {field: [{**ROW_DEFAULTS, **r}[field] for r in requests] for field in ROW_FIELDS}
    results = decoder.generate_batch(prompts, gamma=gamma, **asked)
    problems = []
    for i, (prompt, request, got) in enumerate(zip(prompts, requests, results, strict=True)):
        problem = token_mismatch(got.tokens, reference_tokens(target, prompt, request))
        if problem is None and request.get("logprobs") is not None:
            problem = logprob_mismatch(got, target, prompt, request)
        if problem:
            problems.append(f"row {i}: {problem}")
    return problems


PENALTY_VALUES = {"repetition_penalty": [1.0, 0.8, 1.3, 2.0], "presence_penalty": [0.0, 0.6, -0.4, 1.5],
                  "frequency_penalty": [0.0, 0.3, 1.0]}


def sampling_features(vocab: int, penalties: tuple[str, ...] = tuple(PENALTY_VALUES)) -> Any:
    """Hypothesis strategy: greedy ``SamplingConfig`` with biases and bans and the ``penalties`` named (each may be
    off, below 1 or negative)."""
    from hypothesis import strategies as st

    bias = st.dictionaries(st.integers(0, vocab - 1), st.sampled_from([-math.inf, -3.0, 2.0, 8.0]), max_size=3)
    return st.builds(SamplingConfig, logit_bias=bias,
                     **{name: st.sampled_from(PENALTY_VALUES[name]) for name in penalties})


def draw_request(data: Any, vocab: int, penalties: tuple[str, ...] = tuple(PENALTY_VALUES)) -> tuple[Any, dict]:
    """Hypothesis: the pieces shared by the feature property tests: a tiny pair of any architecture, identical or
    partial; a prompt; ``sampling_features``; gamma 1-7, EOS, ``min_new_tokens`` 0-24, logprobs off, 0 or 3.
    -> ((target, draft, prompt), request) without stops."""
    from hypothesis import strategies as st

    from reference_impl.models.tiny import ARCHITECTURES
    from tests.support.pairs import cached_pair

    target, draft = cached_pair(data.draw(st.sampled_from(ARCHITECTURES), "arch"),
                                data.draw(st.sampled_from(["partial", "identical"]), "relation"))
    prompt = torch.tensor([data.draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=10), "prompt")])
    request = {
        "max_new_tokens": data.draw(st.integers(1, 40), "max_new_tokens"),
        "sampling": data.draw(sampling_features(vocab, penalties), "sampling"),
        "gamma": data.draw(st.integers(1, 7), "gamma"),
        "eos_token_id": data.draw(st.one_of(st.none(), st.integers(0, vocab - 1)), "eos"),
        "min_new_tokens": data.draw(st.integers(0, 24), "min_new_tokens"),
        "logprobs": data.draw(st.sampled_from([None, 0, 3]), "logprobs"),
    }
    return (target, draft, prompt), request
