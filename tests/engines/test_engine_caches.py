"""Warm prompt caches with a draft: outputs unchanged, reuse kept (vLLM #43559 / PR #39690, SGLang #32459).

The engine tests elsewhere send ``cache_prompt: false``; deployed servers keep caches warm. Here
the same greedy requests go to a server with prompt caching on (``cache_prompt: true`` and a
``--cache-ram`` prompt cache beside the slot's own KV cache), with and without the draft, in an
order that exercises every reuse: a request, the same request again, a request sharing a long
prefix with it, another request in between, the first again. Each output must equal the cold
run's (caching off), divergences judged by the near-tie rule (a cached prefix is computed in a
different batch shape than a cold one). And the reuse itself must not depend on the draft: the
prompt tokens taken from the cache, request by request, are the same with the draft as without
(SGLang #32459: EAGLE cut the prefix reuse from 97% to 40-53%). The TTFT figures of cold and warm
requests, draft and no draft, are printed (``-s``) from the same run.
"""

from __future__ import annotations

import statistics

import pytest
import torch

from pytest_specdec.law.numerics import judge_greedy
from pytest_specdec.perf.timing import Timer
from reference_impl import SamplingConfig
from tests.engines.test_engine import ENGINE_LOGIT_NOISE

pytestmark = [pytest.mark.specdec_engine, pytest.mark.usefixtures("single_torch_thread")]

NEW = 32
CACHE_RAM_MIB = 64
LONG = 360  # tokens of the long prompt: prefill dominates TTFT; + NEW stays inside the 512-token context


@pytest.fixture(scope="module")
def requests(specdec_prompts) -> list[torch.Tensor]:
    """The request order: A, A again, A's first 300 tokens + a new tail, another prompt, A again."""
    pool = torch.cat([p[0] for p in specdec_prompts])
    long = torch.cat([pool] * (LONG // pool.numel() + 1))[:LONG]
    shared = torch.cat([long[:300], pool.flip(0)[:40]])
    other = specdec_prompts[1][0]
    return [r.unsqueeze(0) for r in (long, long, shared, other, long)]


def one(decoder, prompt) -> tuple[list[int], int, float]:
    """(tokens, prompt tokens taken from the cache, TTFT seconds) of one greedy request."""
    timed = Timer().time(decoder, prompt, max_new_tokens=NEW, sampling=SamplingConfig())
    return timed.result.tokens, int(timed.result.stats.extra.get("engine_cached_tokens", 0)), timed.ttft


def run(decoder, requests) -> list[tuple[list[int], int, float]]:
    return [one(decoder, prompt) for prompt in requests]


@pytest.mark.parametrize("draft", [False, True], ids=["no_draft", "draft"])
def test_warm_cache_outputs_equal_the_cold_run(specdec_engine, specdec_pair, requests, draft):
    cold = run(specdec_engine.decoder(draft=draft, count_steps=False), requests)
    warm = run(specdec_engine.decoder(draft=draft, count_steps=False, cache_prompt=True, cache_ram=CACHE_RAM_MIB),
               requests)
    assert all(cached == 0 for _, cached, _ in cold), "caching off must reuse nothing"
    assert warm[1][1] >= LONG - 1 and warm[2][1] >= 290, f"the warm server reused too little: {warm}"
    bugs = []
    for index, (prompt, (expected, _, _), (got, cached, _)) in enumerate(zip(requests, cold, warm, strict=True)):
        verdict = judge_greedy(specdec_pair.target, prompt, got, expected)
        if not verdict.ok and verdict.gap > 2 * ENGINE_LOGIT_NOISE:
            bugs.append(f"request {index} ({cached} prompt tokens from the cache): {verdict.describe()}")
    assert not bugs, "\n".join(bugs)


def test_the_draft_does_not_cut_prefix_reuse(specdec_engine, requests):
    """Same requests, same order, two fresh warm servers: cached prompt tokens per request equal with and without
    the draft. A figure of the engine's own (deterministic), not a timing."""
    plain = run(specdec_engine.decoder(draft=False, count_steps=False, cache_prompt=True, cache_ram=CACHE_RAM_MIB + 1),
                requests)
    spec = run(specdec_engine.decoder(count_steps=False, cache_prompt=True, cache_ram=CACHE_RAM_MIB + 1), requests)
    reuse_plain, reuse_spec = [c for _, c, _ in plain], [c for _, c, _ in spec]
    ttft = {name: [round(t * 1e3, 2) for _, _, t in runs] for name, runs in (("no_draft", plain), ("draft", spec))}
    print(f"cached prompt tokens per request: no draft {reuse_plain}, draft {reuse_spec}; TTFT ms {ttft}")
    assert sum(reuse_plain) > 0, "no reuse at all: the check would be empty"
    assert reuse_spec == reuse_plain


@pytest.mark.specdec_perf(prompts=1, max_new_tokens=NEW, repeats=5, warmup=1)
def test_ttft_cold_vs_warm_with_and_without_the_draft(specdec_engine, requests):
    """TTFT of the long prompt cold (caching off) and warm (the same prompt again, cached), with and without the
    draft, interleaved, medians of 5. A warm request skips the prefill, so it must be faster than a cold one for
    both servers, by a same-run ratio (no absolute time); the figures are printed."""
    long = requests[0]
    servers = {
        (draft, warm): specdec_engine.decoder(draft=draft, count_steps=False, cache_prompt=warm,
                                              cache_ram=CACHE_RAM_MIB + 2 if warm else 0)
        for draft in (False, True) for warm in (False, True)
    }
    times: dict[tuple[bool, bool], list[float]] = {key: [] for key in servers}
    for decoder in servers.values():
        run(decoder, [long])  # warm-up; fills the warm servers' caches
    for _ in range(5):
        for key, decoder in servers.items():
            times[key].append(run(decoder, [long])[0][2])
    median = {key: statistics.median(values) for key, values in times.items()}
    print("TTFT ms (median of 5), long prompt of", LONG, "tokens:",
          {f"{'draft' if d else 'no draft'}, {'warm' if w else 'cold'}": round(v * 1e3, 2)
           for (d, w), v in median.items()})
    for draft in (False, True):
        assert median[(draft, True)] < 0.8 * median[(draft, False)], f"draft={draft}: warm TTFT not below cold"
