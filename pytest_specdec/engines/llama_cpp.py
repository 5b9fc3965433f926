"""llama.cpp's ``llama-server`` behind the decoder protocol (native ``/completion`` endpoint).

The request asks for the pure target law the suite's ``SamplingConfig`` defines and nothing
else: llama.cpp's default sampler chain also runs penalties, DRY, typical-p, min-p (0.05 by
default) and XTC, so every one of those is switched off and the chain is named explicitly as
temperature, then top-k, then top-p, the order ``reference_impl.sampling.warp_logits`` applies
(llama.cpp's own default puts temperature last, which changes the top-p set). ``temperature`` 0
is greedy. The prompt cache is off so every request is computed from scratch.

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

import re
from typing import Any

from reference_impl.sampling import SamplingConfig
from reference_impl.stats import DecodeStats

from .http import EngineHTTPDecoder, EngineRequestError

# Everything llama.cpp would otherwise apply on top of the target's law, off.
NEUTRAL_SAMPLING = {
    "min_p": 0.0, "typical_p": 1.0, "top_n_sigma": -1.0, "xtc_probability": 0.0, "dynatemp_range": 0.0,
    "repeat_penalty": 1.0, "repeat_last_n": 0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
    "dry_multiplier": 0.0, "mirostat": 0, "min_keep": 0, "n_probs": 0,
}
SAMPLER_ORDER = ["temperature", "top_k", "top_p"]
_METRIC = re.compile(r'^llamacpp:(\w+)(?:\{position="(\d+)"\})?\s+(\S+)$')


class LlamaCppDecoder(EngineHTTPDecoder):
    name = "llama.cpp"
    endpoint = "/completion"

    def __init__(self, url: str, *, gamma: int | None = None, count_steps: bool = True, **kwargs: Any) -> None:
        super().__init__(url, gamma=gamma, **kwargs)
        self.count_steps = count_steps
        self._counters: dict[str, float] = {}

    def payload(self, prompt: list[int], max_new_tokens: int, sampling: SamplingConfig, seed: int) -> dict[str, Any]:
        return {
            "prompt": prompt, "n_predict": max_new_tokens, "stream": True, "return_tokens": True,
            "cache_prompt": False, "seed": seed, "temperature": sampling.temperature, "top_k": sampling.top_k,
            "top_p": sampling.top_p, "samplers": SAMPLER_ORDER, **NEUTRAL_SAMPLING,
        }

    def event_tokens(self, event: dict[str, Any]) -> list[int]:
        if "error" in event:
            raise EngineRequestError(f"{self.name}: the server reported an error mid-stream: {event['error']}")
        return [int(t) for t in event.get("tokens", [])]

    def stopped_on_own_eos(self, events: list[dict[str, Any]]) -> bool:
        return bool(events) and events[-1].get("stop_type") == "eos"

    def top_logprobs(self, prompt: list[int], max_new_tokens: int, k: int = 5) -> list[dict[int, float]]:
        """Greedy continuation with the engine's top-``k`` log-probabilities (raw softmax) at each new token."""
        body = {**self.payload(prompt, max_new_tokens, SamplingConfig(), 0), "n_probs": k}
        positions: list[dict[int, float]] = []
        for event in self._events(body):
            for entry in event.get("completion_probabilities", []):
                positions.append({int(c["id"]): float(c["logprob"]) for c in entry["top_logprobs"]})
        return positions

    def generate(self, input_ids: Any, **kwargs: Any) -> Any:
        if self.count_steps:  # other decoders on the same server may have moved the counters since the last call
            self._counters = self.counters()
        return super().generate(input_ids, **kwargs)

    def counters(self) -> dict[str, float]:
        """The server's cumulative speculative counters, from ``/metrics`` (``--metrics``)."""
        values: dict[str, float] = {}
        for line in self.get_text("/metrics").splitlines():
            match = _METRIC.match(line.strip())
            if match and match.group(1).startswith("spec_decode"):
                key = match.group(1) + (f"[{match.group(2)}]" if match.group(2) else "")
                values[key] = float(match.group(3))
        return values

    def final_stats(self, events: list[dict[str, Any]], tokens: list[int]) -> DecodeStats:
        timings = events[-1].get("timings", {}) if events else {}
        drafted, accepted = int(timings.get("draft_n", 0)), int(timings.get("draft_n_accepted", 0))
        extra = {"engine_prompt_ms": float(timings.get("prompt_ms", 0.0)),
                 "engine_predicted_ms": float(timings.get("predicted_ms", 0.0))}
        if not self.count_steps:
            return DecodeStats(new_tokens=len(tokens), drafted=drafted, accepted=accepted, extra=extra)
        now = self.counters()
        delta = {key: now[key] - self._counters.get(key, 0.0) for key in now}
        self._counters = now
        steps = int(delta.get("spec_decode_num_drafts_total", 0))
        width = self.gamma or 0
        per_position = tuple(int(delta.get(f"spec_decode_num_accepted_tokens_per_pos_total[{i}]", 0))
                             for i in range(width))
        if per_position and sum(per_position) != accepted:
            raise EngineRequestError(
                f"{self.name}: /metrics moved by {sum(per_position)} accepted tokens but the response says "
                f"{accepted}: another client is using this server; give the suite a server of its own"
            )
        full_steps = per_position[-1] if per_position else 0
        for i, count in enumerate(per_position):
            extra[f"accepted_at_{i}"] = float(count)
        return DecodeStats(
            new_tokens=len(tokens), steps=steps, drafted=drafted, accepted=accepted,
            rejections=max(steps - full_steps, 0) if drafted else 0, extra=extra,
        )


def factory(url: str, *, gamma: int | None = None, **options: Any) -> LlamaCppDecoder:
    """``LlamaCppDecoder`` for a server at ``url`` (the engine tests build theirs from fixtures)."""
    return LlamaCppDecoder(url, gamma=gamma, **options)
