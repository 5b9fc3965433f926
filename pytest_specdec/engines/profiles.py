"""What differs between serving engines behind the same OpenAI-compatible ``/v1/completions`` API.

An ``EngineProfile`` is data, one per engine: the extra request fields that switch the engine's own
samplers off (so the law is the one the suite's ``SamplingConfig`` names and nothing else), the
fields that make the stream carry token ids and where they sit in an event, the names of the
request features' fields, and the Prometheus names of its speculative-decoding counters. The
adapter (``openai.OpenAICompletionsDecoder``) is the same for every engine.

Where the names come from:

- **llama.cpp** (``llama-server``, tested here): request fields from ``tools/server/server-schema.cpp``
  (the ``/v1/completions`` body goes through the same parser as ``/completion``); token ids in
  ``__verbose.tokens`` of each chunk with ``verbose`` and ``return_tokens``
  (``tools/server/server-task.cpp``, ``to_json_oaicompat``); counters ``llamacpp:spec_decode_*``
  (``server-task.cpp``, the ``/metrics`` handler; server started with ``--metrics``).
- **vLLM** (not run here: no such engine on a CPU machine): ``return_token_ids`` puts
  ``choices[0].token_ids`` in each chunk; counters ``vllm:spec_decode_num_drafts``,
  ``..._num_draft_tokens``, ``..._num_accepted_tokens`` and ``..._num_accepted_tokens_per_pos``
  (``vllm/v1/spec_decode/metrics.py``, ``SpecDecodingProm``; prometheus_client adds ``_total``).
  vLLM's default chain has no extra samplers beyond those it is sent; ``top_k`` -1 is off.
- **SGLang** (not run here): ``return_token_ids`` puts ``choices[0].token_ids`` in each chunk
  (``python/sglang/srt/entrypoints/openai/protocol.py``); its Prometheus names are gauges,
  ``sglang:spec_accept_length`` and ``sglang:spec_accept_rate`` (``python/sglang/srt/metrics/collector.py``),
  averages over recent steps, not per-request counters, so per-request steps and per-position
  counts stay 0 (unknown).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)")
_POSITION = re.compile(r'position="(\d+)"')


@dataclass(frozen=True)
class EngineProfile:
    """One engine's dialect of ``/v1/completions`` and of its ``/metrics``."""

    name: str
    neutral: Mapping[str, Any] = field(default_factory=dict)  # the engine's own extra samplers, off
    token_fields: Mapping[str, Any] = field(default_factory=dict)  # makes each chunk carry its token ids
    token_path: tuple[str, ...] = ("choices", 0, "token_ids")  # where a chunk carries them
    top_k_off: int = -1
    repetition_field: str = "repetition_penalty"
    ban: Any = -100  # the logit bias that bans a token (OpenAI's floor; llama.cpp takes false)
    # Prometheus counters (names without the _total suffix prometheus_client adds); "" = not reported
    steps_metric: str = ""
    drafted_metric: str = ""
    accepted_metric: str = ""
    per_position_metric: str = ""
    capabilities: frozenset[str] = frozenset()  # request features this profile carries (beyond the classic)

    def tokens_of(self, event: dict[str, Any]) -> list[int]:
        node: Any = event
        for key in self.token_path:
            if isinstance(key, int):
                node = node[key] if isinstance(node, list) and len(node) > key else None
            else:
                node = node.get(key) if isinstance(node, dict) else None
            if node is None:
                return []
        return [int(t) for t in node]

    def counters(self, text: str) -> dict[str, float]:
        """Cumulative speculative counters from a ``/metrics`` page: steps, drafted, accepted, accepted_at_<i>.

        Samples of one name are summed over their labels (engines, models, ranks) except ``position``.
        """
        names = {self.steps_metric: "steps", self.drafted_metric: "drafted", self.accepted_metric: "accepted"}
        values: dict[str, float] = {}
        for line in text.splitlines():
            match = _SAMPLE.match(line.strip())
            if not match:
                continue
            name, labels, value = match.group(1).removesuffix("_total"), match.group(2) or "", match.group(3)
            if name in names and name:
                key = names[name]
            elif self.per_position_metric and name == self.per_position_metric:
                position = _POSITION.search(labels)
                if not position:
                    continue
                key = f"accepted_at_{position.group(1)}"
            else:
                continue
            values[key] = values.get(key, 0.0) + float(value)
        return values


# Everything llama.cpp's default chain would apply on top of the target's law, off (docs/engines.md).
LLAMA_CPP_NEUTRAL = {
    "min_p": 0.0, "typical_p": 1.0, "top_n_sigma": -1.0, "xtc_probability": 0.0, "dynatemp_range": 0.0,
    "repeat_penalty": 1.0, "repeat_last_n": 0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
    "dry_multiplier": 0.0, "mirostat": 0, "min_keep": 0,
    # the order reference_impl.sampling.warp_logits applies (llama.cpp's default puts temperature last);
    # penalties first, as the suite's processing does (llama.cpp's logit bias always comes before the list)
    "samplers": ["penalties", "temperature", "top_k", "top_p", "min_p"],
}
LLAMA_CPP_FEATURES = frozenset({"min_p", "repetition_penalty", "presence_penalty", "frequency_penalty",
                                "logit_bias", "logprobs"})
LLAMA_CPP_PREFIX = "llamacpp:spec_decode_"

LLAMA_CPP = EngineProfile(
    name="llama.cpp", neutral=LLAMA_CPP_NEUTRAL, token_fields={"verbose": True, "return_tokens": True},
    token_path=("__verbose", "tokens"), top_k_off=0, repetition_field="repeat_penalty", ban=False,
    steps_metric=LLAMA_CPP_PREFIX + "num_drafts", drafted_metric=LLAMA_CPP_PREFIX + "num_draft_tokens",
    accepted_metric=LLAMA_CPP_PREFIX + "num_accepted_tokens",
    per_position_metric=LLAMA_CPP_PREFIX + "num_accepted_tokens_per_pos", capabilities=LLAMA_CPP_FEATURES,
)
VLLM = EngineProfile(
    name="vLLM", neutral={"min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0},
    token_fields={"return_token_ids": True}, steps_metric="vllm:spec_decode_num_drafts",
    drafted_metric="vllm:spec_decode_num_draft_tokens", accepted_metric="vllm:spec_decode_num_accepted_tokens",
    per_position_metric="vllm:spec_decode_num_accepted_tokens_per_pos", capabilities=LLAMA_CPP_FEATURES - {"logprobs"},
)
SGLANG = EngineProfile(
    name="SGLang", neutral={"min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0},
    token_fields={"return_token_ids": True}, capabilities=LLAMA_CPP_FEATURES - {"logprobs"},
)
PROFILES = {"llama.cpp": LLAMA_CPP, "vllm": VLLM, "sglang": SGLANG}


def feature_fields(sampling: Any, profile: EngineProfile, *, context: int) -> dict[str, Any]:
    """The request fields of ``sampling``'s features, in ``profile``'s names (only those the request turns on).

    ``context``: how many tokens the repetition penalty looks back (llama.cpp's ``repeat_last_n``;
    the suite's penalty covers the prompt and every generated token).
    """
    fields: dict[str, Any] = {}
    if sampling.min_p:
        fields["min_p"] = sampling.min_p
    if sampling.repetition_penalty != 1.0:
        fields[profile.repetition_field] = sampling.repetition_penalty
    if sampling.presence_penalty:
        fields["presence_penalty"] = sampling.presence_penalty
    if sampling.frequency_penalty:
        fields["frequency_penalty"] = sampling.frequency_penalty
    if (sampling.repetition_penalty != 1.0 or sampling.presence_penalty or sampling.frequency_penalty) \
            and "repeat_last_n" in profile.neutral:
        fields["repeat_last_n"] = context
    if sampling.logit_bias:  # OpenAI's form: token id (as a string) -> bias
        fields["logit_bias"] = {str(token): (bias if bias != float("-inf") else profile.ban)
                                for token, bias in sampling.logit_bias}
    return fields
