"""llama.cpp's ``llama-server`` behind the decoder protocol (native ``/completion`` endpoint).

The request asks for the pure target law the suite's ``SamplingConfig`` defines and nothing
else: llama.cpp's default sampler chain also runs penalties, DRY, typical-p, min-p (0.05 by
default) and XTC, so every one of those is switched off and the chain is named explicitly as
penalties, temperature, top-k, top-p, min-p, the order ``reference_impl.processing`` and
``reference_impl.sampling.warp_logits`` apply (llama.cpp's own default puts temperature last,
which changes the top-p set); the request features the suite asks for are switched back on by
name (``profiles.feature_fields``). ``temperature`` 0 is greedy. The prompt cache is off unless
``cache_prompt`` is set, so every request is computed from scratch.

Counters: the final event's ``timings`` carry ``draft_n`` (drafted) and ``draft_n_accepted`` (A)
for the request. With ``count_steps`` (the default) the adapter also reads the server's
Prometheus counters (``/metrics``, server started with ``--metrics``) after each request; with
one slot (``-np 1``) and one client their difference is this request's verification steps and
accepted tokens per draft position. llama.cpp does not report drafted tokens per position or
rejections; the adapter derives rejections as steps minus steps that accepted the last draft
position, which is exact when every step drafts ``gamma`` tokens (``--spec-draft-p-min 0``, not
near the end of the budget) and leaves ``drafted_by_position`` empty. Timing runs pass
``count_steps=False`` so no extra request sits inside the timed call.
"""

from __future__ import annotations

from typing import Any

from reference_impl.sampling import SamplingConfig
from reference_impl.stats import DecodeStats, TokenLogprob

from ..protocol.capabilities import CLASSIC
from .http import EngineHTTPDecoder, counted_stats, logprob_records
from .profiles import LLAMA_CPP, LLAMA_CPP_NEUTRAL, feature_fields

NEUTRAL_SAMPLING = LLAMA_CPP_NEUTRAL  # everything llama.cpp would otherwise apply on top of the target's law, off


class LlamaCppDecoder(EngineHTTPDecoder):
    name = "llama.cpp"
    endpoint = "/completion"
    capabilities = CLASSIC | LLAMA_CPP.capabilities

    def __init__(self, url: str, *, gamma: int | None = None, count_steps: bool = True, cache_prompt: bool = False,
                 context: int = 512, **kwargs: Any) -> None:
        super().__init__(url, gamma=gamma, **kwargs)
        self.count_steps = count_steps
        self.profile = LLAMA_CPP
        self.cache_prompt = cache_prompt
        self.context = context  # the server's context: how far back the penalties look

    def payload(self, prompt: list[int], max_new_tokens: int, sampling: SamplingConfig, seed: int,
                logprobs: int | None = None) -> dict[str, Any]:
        body = {
            "prompt": prompt, "n_predict": max_new_tokens, "stream": True, "return_tokens": True,
            "cache_prompt": self.cache_prompt, "seed": seed, "temperature": sampling.temperature,
            "top_k": sampling.top_k, "top_p": sampling.top_p, **NEUTRAL_SAMPLING,
            **feature_fields(sampling, LLAMA_CPP, context=self.context),
        }
        if logprobs is not None:
            body["n_probs"] = max(logprobs, 1)  # 0 would return no probabilities at all
        return body

    def event_tokens(self, event: dict[str, Any]) -> list[int]:
        return [int(t) for t in event.get("tokens", [])]

    def event_logprobs(self, event: dict[str, Any], top: int) -> list[TokenLogprob]:
        return logprob_records(event.get("completion_probabilities", []), top)

    def is_final(self, event: dict[str, Any]) -> bool:
        return bool(event.get("stop"))

    def stopped_on_own_eos(self, events: list[dict[str, Any]]) -> bool:
        return bool(events) and events[-1].get("stop_type") == "eos"

    def top_logprobs(self, prompt: list[int], max_new_tokens: int, k: int = 5) -> list[dict[int, float]]:
        """Greedy continuation with the engine's top-``k`` log-probabilities (raw softmax) at each new token."""
        body = self.payload(prompt, max_new_tokens, SamplingConfig(), 0, logprobs=k)
        positions: list[dict[int, float]] = []
        for event in self._events(body):
            for entry in event.get("completion_probabilities", []):
                positions.append({int(c["id"]): float(c["logprob"]) for c in entry["top_logprobs"]})
        return positions

    def final_stats(self, events: list[dict[str, Any]], tokens: list[int]) -> DecodeStats:
        timings = events[-1].get("timings", {}) if events else {}
        drafted, accepted = int(timings.get("draft_n", 0)), int(timings.get("draft_n_accepted", 0))
        extra = {"engine_prompt_ms": float(timings.get("prompt_ms", 0.0)),
                 "engine_predicted_ms": float(timings.get("predicted_ms", 0.0)),
                 "engine_cached_tokens": float(timings.get("cache_n", 0))}  # prompt tokens taken from the cache
        if not self.count_steps:
            return DecodeStats(new_tokens=len(tokens), drafted=drafted, accepted=accepted, extra=extra)
        delta = self.counters_moved()
        return counted_stats(self.name, delta, gamma=self.gamma, tokens=len(tokens), drafted=drafted,
                             accepted=accepted, extra=extra)

def factory(url: str, *, gamma: int | None = None, **options: Any) -> LlamaCppDecoder:
    """``LlamaCppDecoder`` for a server at ``url`` (the engine tests build theirs from fixtures)."""
    return LlamaCppDecoder(url, gamma=gamma, **options)
