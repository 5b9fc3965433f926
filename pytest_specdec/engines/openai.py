"""Any engine's OpenAI-compatible ``/v1/completions`` behind the decoder protocol.

How people deploy vLLM, SGLang, TGI, TensorRT-LLM or llama.cpp: one API, many engines. The
request is the same everywhere (``prompt`` as token ids, ``max_tokens``, ``stream``, ``seed``,
``temperature``, ``top_k``, ``top_p``, and the request features the profile carries: ``min_p``,
the penalties, ``logit_bias``, ``logprobs``); what differs is data in an ``EngineProfile``
(``profiles``): the fields that switch the engine's own extra samplers off, how a chunk carries
its token ids, and the Prometheus names of its speculative counters.

Counters: with ``count_steps`` the adapter reads ``/metrics`` before and after each request; the
differences are the request's steps, drafted and accepted tokens and accepted tokens per draft
position, as long as nobody else uses the server (checked: per-position counts must sum to the
accepted count). A profile without counters (SGLang's are gauges) leaves them 0, unknown.
llama.cpp also puts its per-request ``timings`` (``draft_n``, ``draft_n_accepted``) in the final
chunk; they are used when present.
"""

from __future__ import annotations

from typing import Any

from reference_impl.sampling import SamplingConfig
from reference_impl.stats import DecodeStats, TokenLogprob

from ..protocol.capabilities import CLASSIC
from .http import EngineHTTPDecoder, counted_stats, logprob_records
from .profiles import LLAMA_CPP, EngineProfile, feature_fields


class OpenAICompletionsDecoder(EngineHTTPDecoder):
    endpoint = "/v1/completions"

    def __init__(self, url: str, *, profile: EngineProfile = LLAMA_CPP, gamma: int | None = None,
                 count_steps: bool = True, cache_prompt: bool = False, context: int = 512, **kwargs: Any) -> None:
        super().__init__(url, gamma=gamma, **kwargs)
        self.profile = profile
        self.name = f"{profile.name} /v1/completions"
        self.capabilities = CLASSIC | profile.capabilities
        self.count_steps = count_steps and bool(profile.steps_metric)
        self.cache_prompt = cache_prompt
        self.context = context

    def payload(self, prompt: list[int], max_new_tokens: int, sampling: SamplingConfig, seed: int,
                logprobs: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": prompt, "max_tokens": max_new_tokens, "stream": True, "seed": seed,
            "temperature": sampling.temperature, "top_k": sampling.top_k or self.profile.top_k_off,
            "top_p": sampling.top_p, **self.profile.neutral, **self.profile.token_fields,
            **feature_fields(sampling, self.profile, context=self.context),
        }
        body["stream_options"] = {"include_usage": True}  # the cached prompt tokens, in OpenAI's usage record
        if self.profile is LLAMA_CPP:  # a warm prompt cache is llama.cpp's default; the suite asks for it by name
            body["cache_prompt"] = self.cache_prompt
        if logprobs is not None:
            body["logprobs"] = max(logprobs, 1)  # the token's own log-probability comes with at least one alternative
        if self.model:
            body["model"] = self.model
        return body

    def event_tokens(self, event: dict[str, Any]) -> list[int]:
        return self.profile.tokens_of(event)

    def event_logprobs(self, event: dict[str, Any], top: int) -> list[TokenLogprob]:
        logprobs = _choice(event).get("logprobs")
        return logprob_records(logprobs.get("content", []), top) if isinstance(logprobs, dict) else []

    def is_final(self, event: dict[str, Any]) -> bool:
        return _choice(event).get("finish_reason") is not None

    def stopped_on_own_eos(self, events: list[dict[str, Any]]) -> bool:
        return any(_choice(event).get("finish_reason") == "stop" for event in events)  # no stop strings are sent

    def final_stats(self, events: list[dict[str, Any]], tokens: list[int]) -> DecodeStats:
        timings = next((e["timings"] for e in reversed(events) if isinstance(e.get("timings"), dict)), {})
        drafted, accepted = int(timings.get("draft_n", 0)), int(timings.get("draft_n_accepted", 0))
        extra = {"engine_cached_tokens": float(_cached_tokens(events))}
        if not self.count_steps:
            return DecodeStats(new_tokens=len(tokens), drafted=drafted, accepted=accepted, extra=extra)
        delta = self.counters_moved()
        if not timings:
            drafted, accepted = int(delta.get("drafted", 0)), int(delta.get("accepted", 0))
        return counted_stats(self.name, delta, gamma=self.gamma, tokens=len(tokens), drafted=drafted,
                             accepted=accepted, extra=extra)

    def top_logprobs(self, prompt: list[int], max_new_tokens: int, k: int = 5) -> list[dict[int, float]]:
        """Greedy continuation with the engine's top-``k`` log-probabilities at each new token."""
        body = self.payload(prompt, max_new_tokens, SamplingConfig(), 0, logprobs=k)
        positions: list[dict[int, float]] = []
        for event in self._events(body):
            positions += [dict(record.top) for record in self.event_logprobs(event, k)]
        return positions


def _cached_tokens(events: list[dict[str, Any]]) -> int:
    """Prompt tokens the engine took from its cache: OpenAI's ``usage`` field, or llama.cpp's ``timings``."""
    for event in reversed(events):
        details = (event.get("usage") or {}).get("prompt_tokens_details") or {}
        if "cached_tokens" in details:
            return int(details["cached_tokens"])
        if "cache_n" in (event.get("timings") or {}):
            return int(event["timings"]["cache_n"])
    return 0


def _choice(event: dict[str, Any]) -> dict[str, Any]:
    choices = event.get("choices")
    return choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}


def factory(url: str, *, engine: str = "llama.cpp", gamma: int | None = None,
            **options: Any) -> OpenAICompletionsDecoder:
    """``OpenAICompletionsDecoder`` for the server at ``url``; ``engine`` names its profile (``profiles.PROFILES``)."""
    from .profiles import PROFILES

    return OpenAICompletionsDecoder(url, profile=PROFILES[engine], gamma=gamma, **options)
