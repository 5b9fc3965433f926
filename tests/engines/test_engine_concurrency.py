"""Many requests in flight with a draft: each greedy output equals the same request alone (llama.cpp #23335).

A server with several slots (``-np``) batches the requests in flight: prompts of different lengths,
different budgets, greedy and sampled requests together. A batch-width-dependent kernel may change
a logit by rounding (the near-tie rule forgives that, judged on the HF target), never more; a
request leaking into another (vLLM PR #14645) or a draft verified against another row's state
(TensorRT-LLM PR #3456) changes tokens far from a tie. Each greedy request in flight is compared
with the same request sent alone to the same server. Throughput and latency at 1-8 in flight:
``python -m benchmarks.engine_concurrency`` (docs/engines.md).
"""

from __future__ import annotations

import pytest

from pytest_specdec.engines.concurrency import Request, in_flight
from pytest_specdec.law.numerics import judge_greedy
from reference_impl import SamplingConfig
from tests.engines.test_engine import ENGINE_LOGIT_NOISE

pytestmark = [pytest.mark.specdec_engine, pytest.mark.usefixtures("single_torch_thread")]

SLOTS = 8
SAMPLED = (SamplingConfig(temperature=1.0), SamplingConfig(temperature=0.7, top_k=20),
           SamplingConfig(temperature=1.0, top_p=0.9))


def mixed_load(prompts) -> list[Request]:
    """16 requests: every standard prompt twice, budgets 16-64, every other request sampled."""
    out = []
    for i in range(16):
        sampling = SamplingConfig() if i % 2 == 0 else SAMPLED[(i // 2) % len(SAMPLED)]
        out.append(Request(prompts[i % len(prompts)], 16 + 16 * (i % 4), sampling, seed=100 + i))
    return out


def batched_bugs(decoder, target, requests, width: int) -> tuple[list[str], int]:
    """Greedy requests whose tokens in flight differ from alone beyond a near-tie; and how many were compared."""
    together, _ = in_flight(decoder, requests, width)
    bugs, compared = [], 0
    for index, (request, timed) in enumerate(zip(requests, together, strict=True)):
        if not request.sampling.greedy:
            assert len(timed.result.tokens) == request.max_new_tokens, f"request {index} came back short"
            continue
        alone, _ = in_flight(decoder, [request], 1)
        verdict = judge_greedy(target, request.prompt, timed.result.tokens, alone[0].result.tokens)
        compared += 1
        if not verdict.ok and verdict.gap > 2 * ENGINE_LOGIT_NOISE:
            bugs.append(f"request {index} ({request.prompt.shape[1]} prompt tokens, {request.max_new_tokens} new), "
                        f"{width} in flight: {verdict.describe()}")
    return bugs, compared


@pytest.mark.parametrize("width", (4, 8))
@pytest.mark.parametrize("draft", [False, True], ids=["no_draft", "draft"])
def test_each_request_in_flight_equals_it_alone(specdec_engine, specdec_pair, specdec_prompts, draft, width):
    decoder = specdec_engine.decoder(draft=draft, count_steps=False, slots=SLOTS)
    bugs, compared = batched_bugs(decoder, specdec_pair.target, mixed_load(specdec_prompts), width)
    assert compared == 8 and not bugs, "\n".join(bugs)


class Leaky:
    """Mutant: in flight, a greedy request's output takes another request's token at new position 3."""

    def __init__(self, inner) -> None:
        import threading

        self.inner, self.last, self.lock = inner, {}, threading.Lock()

    def generate(self, input_ids, **kwargs):
        import dataclasses

        result = self.inner.generate(input_ids, **kwargs)
        with self.lock:
            other = self.last.get("tokens")
            self.last["tokens"] = result.tokens
        if other is not None and len(other) > 3 and len(result.tokens) > 3 and other[3] != result.tokens[3]:
            return dataclasses.replace(result, tokens=[*result.tokens[:3], other[3], *result.tokens[4:]])
        return result


def test_a_leak_between_requests_is_caught(specdec_engine, specdec_pair, specdec_prompts):
    decoder = Leaky(specdec_engine.decoder(count_steps=False, slots=SLOTS))
    bugs, _ = batched_bugs(decoder, specdec_pair.target, mixed_load(specdec_prompts), 4)
    assert bugs, "a token from another request went unnoticed"
