"""Checks of request features, as functions of a decoder and a request, shared by the greedy tests and the mutant
tests: the decoder against the autoregressive reference with the same request, and the logprobs against the
target's exact processed law, teacher-forced.

A request is a dict of ``generate`` keywords (``sampling``, ``min_new_tokens``, ``stop``, ``logprobs``,
``eos_token_id``, ``max_new_tokens``, ``gamma``).
"""

from __future__ import annotations

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


def request_mismatches(decoder: Any, target: Any, prompt: torch.Tensor, request: dict[str, Any],
                       tolerance: float = LOGPROB_TOLERANCE) -> list[str]:
    """What ``decoder`` gets wrong on a greedy ``request``: tokens against the reference, logprobs against the law
    (``tolerance``: a decoder that computes the law in float32 from float64 logits is within about 1e-7)."""
    got = decoder.generate(prompt, **request)
    expected = reference_tokens(target, prompt, request)
    problems = []
    if got.tokens != expected:
        first = next((i for i, (a, b) in enumerate(zip(got.tokens, expected, strict=False)) if a != b),
                     min(len(got.tokens), len(expected)))
        problems.append(f"tokens differ from index {first}: got {got.tokens[first:first + 6]} (of {len(got.tokens)}),"
                        f" the reference {expected[first:first + 6]} (of {len(expected)})")
    elif request.get("logprobs") is not None and got.tokens:
        exact = exact_logprobs(target, prompt, got.tokens, request)
        for i, (record, value) in enumerate(zip(got.logprobs, exact, strict=True)):
            if abs(record.logprob - value) > tolerance:
                problems.append(f"logprob of token {i} is {record.logprob:.9g}, the target's processed law says "
                                f"{value:.9g}")
                break
    return problems


def logprob_mismatches(decoder: Any, target: Any, prompt: torch.Tensor, request: dict[str, Any],
                       generator: torch.Generator | None = None, tolerance: float = LOGPROB_TOLERANCE) -> list[str]:
    """The decoder's logprobs of its own (possibly sampled) tokens against the target's exact processed law."""
    got = decoder.generate(prompt, generator=generator, **request)
    if not got.tokens:
        return []
    exact = exact_logprobs(target, prompt, got.tokens, request)
    for i, (record, value) in enumerate(zip(got.logprobs, exact, strict=True)):
        if abs(record.logprob - value) > tolerance:
            return [f"logprob of token {i} ({got.tokens[i]}) is {record.logprob:.9g}, the target's processed law "
                    f"says {value:.9g}"]
    return []


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
        expected = reference_tokens(target, prompt, request)
        if got.tokens != expected:
            first = next((j for j, (a, b) in enumerate(zip(got.tokens, expected, strict=False)) if a != b),
                         min(len(got.tokens), len(expected)))
            problems.append(f"row {i}: tokens differ from index {first}: got {got.tokens[first:first + 6]} "
                            f"(of {len(got.tokens)}), the reference {expected[first:first + 6]} (of {len(expected)})")
        elif request.get("logprobs") is not None and got.tokens:
            exact = exact_logprobs(target, prompt, got.tokens, request)
            bad = [j for j, (r, v) in enumerate(zip(got.logprobs, exact, strict=True))
                   if abs(r.logprob - v) > LOGPROB_TOLERANCE]
            if bad:
                problems.append(f"row {i}: logprob of token {bad[0]} is {got.logprobs[bad[0]].logprob:.9g}, the "
                                f"target's processed law says {exact[bad[0]]:.9g}")
    return problems
