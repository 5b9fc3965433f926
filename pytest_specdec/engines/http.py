"""A serving engine behind the decoder protocol, over HTTP: token ids in, streamed token ids out.

``EngineHTTPDecoder`` turns one ``generate`` call into one streamed completion request:

- the prompt is sent as token ids, never text, so no tokenizer sits between the suite and the
  engine's output;
- the response is streamed (server-sent events) and ``on_token`` fires as each token arrives, so
  TTFT and TPOT are what a client of the server sees, network stack and scheduler included;
- the seed comes from the suite's ``generator``, so the same generator state asks for the same
  sample and different states for independent ones;
- the engine's own counters (drafted, accepted) fill ``DecodeStats``; counts an engine does not
  report stay 0 (forward and prefill counts: an HTTP client cannot see them).

Engines differ in the endpoint, the request fields and where token ids appear in the stream, so
those are three small methods a subclass overrides: ``payload``, ``event_tokens`` and
``final_stats``. ``pytest_specdec.engines.llama_cpp`` is the llama.cpp subclass; docs/engines.md
says what a vLLM or SGLang subclass needs. Only the URL the caller gives is contacted.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from reference_impl.checks import check_supported
from reference_impl.sampling import SamplingConfig
from reference_impl.stats import DecodeResult, DecodeStats

from ..protocol.capabilities import CLASSIC

SEED_RANGE = 2**31 - 1


class EngineRequestError(RuntimeError):
    """The engine refused or broke a request (HTTP status, malformed stream, unsupported option)."""


class EngineHTTPDecoder:
    """Base adapter for an OpenAI-style streaming completions endpoint."""

    name = "engine-http"
    endpoint = "/v1/completions"

    def __init__(self, url: str, *, gamma: int | None = None, timeout: float = 300.0, model: str | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise EngineRequestError(f"engine URL must be http://host:port, got {url!r}")
        self.url = url.rstrip("/")
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.gamma = gamma  # the server's draft length (fixed at server start), None without a draft
        self.timeout = timeout
        self.model = model

    # --- what a subclass overrides -------------------------------------------------------------

    def payload(self, prompt: list[int], max_new_tokens: int, sampling: SamplingConfig, seed: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": prompt, "max_tokens": max_new_tokens, "stream": True, "seed": seed,
            "temperature": sampling.temperature, "top_p": sampling.top_p,
        }
        if self.model:
            body["model"] = self.model
        return body

    def event_tokens(self, event: dict[str, Any]) -> list[int]:
        """Token ids carried by one streamed event."""
        raise NotImplementedError(f"{type(self).__name__} must say where its stream carries token ids")

    def final_stats(self, events: list[dict[str, Any]], tokens: list[int]) -> DecodeStats:
        return DecodeStats(new_tokens=len(tokens))

    def stopped_on_own_eos(self, events: list[dict[str, Any]]) -> bool:
        """Did the engine end the stream on its end-of-generation token (not on the length limit)?"""
        return False

    # --- the protocol ----------------------------------------------------------------------------

    def generate(
        self,
        input_ids: Any,
        *,
        max_new_tokens: int,
        sampling: SamplingConfig,
        gamma: int | None = None,
        eos_token_id: int | None = None,
        generator: Any = None,
        on_token: Callable[[int], None] | None = None,
    ) -> DecodeResult:
        check_supported(f"{self.name} (through this adapter)", sampling, CLASSIC)
        if gamma is not None and self.gamma is not None and gamma != self.gamma:
            raise EngineRequestError(
                f"{self.name}: the server drafts {self.gamma} tokens per step (fixed when it starts); gamma={gamma} "
                "needs a server started with that draft length"
            )
        prompt = [int(t) for t in input_ids[0].tolist()]
        tokens: list[int] = []
        stats: list[DecodeStats] = []
        # The engine stops on its own end-of-generation token; when the caller asked for none the
        # protocol continues past it, so the rest is requested as a continuation of prompt + tokens.
        while len(tokens) < max_new_tokens:
            events, got = self._stream(prompt + tokens, max_new_tokens - len(tokens), sampling, generator,
                                       eos_token_id, on_token)
            tokens += got
            stats.append(self.final_stats(events, got))
            if not got or (eos_token_id is not None and got[-1] == eos_token_id):
                break
            if not self.stopped_on_own_eos(events):
                break
        return DecodeResult(tokens=tokens, stats=_sum_stats(stats))

    def _stream(self, prompt, budget, sampling, generator, eos_token_id, on_token) -> tuple[list[dict], list[int]]:
        seed = draw_seed(generator)
        events: list[dict[str, Any]] = []
        got: list[int] = []
        for event in self._events(self.payload(prompt, budget, sampling, seed)):
            events.append(event)
            for token in self.event_tokens(event):
                if len(got) >= budget or (eos_token_id is not None and got and got[-1] == eos_token_id):
                    continue  # past the caller's limit or EOS: read the stream to its end, emit nothing
                got.append(token)
                if on_token is not None:
                    on_token(token)
        return events, got

    def _events(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST ``body`` and yield the JSON of each server-sent ``data:`` line."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request("POST", self.endpoint, body=json.dumps(body),
                               headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
            response = connection.getresponse()
            if response.status != 200:
                raise EngineRequestError(
                    f"{self.name}: POST {self.url}{self.endpoint} answered {response.status}: "
                    f"{response.read(2000).decode(errors='replace')}"
                )
            while True:
                line = response.readline()
                if not line:
                    return
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                try:
                    yield json.loads(data)
                except json.JSONDecodeError as exc:
                    raise EngineRequestError(f"{self.name}: malformed event {data[:200]!r}") from exc
        finally:
            connection.close()

    def get_text(self, path: str) -> str:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
            if response.status != 200:
                raise EngineRequestError(f"{self.name}: GET {self.url}{path} answered {response.status}: {text[:500]}")
            return text
        finally:
            connection.close()


def draw_seed(generator: Any) -> int:
    """A request seed drawn from the suite's generator (or torch's default one)."""
    import torch

    return int(torch.randint(0, SEED_RANGE, (1,), generator=generator).item())


def _sum_stats(parts: list[DecodeStats]) -> DecodeStats:
    if len(parts) == 1:
        return parts[0]
    width = max((len(p.accepted_by_position) for p in parts), default=0)

    def by_position(name: str) -> tuple[int, ...]:
        rows = [getattr(p, name) + (0,) * (width - len(getattr(p, name))) for p in parts]
        return tuple(sum(col) for col in zip(*rows, strict=True)) if rows and width else ()

    extra: dict[str, float] = {}
    for part in parts:
        for key, value in part.extra.items():
            extra[key] = extra.get(key, 0.0) + value
    return DecodeStats(
        new_tokens=sum(p.new_tokens for p in parts), steps=sum(p.steps for p in parts),
        drafted=sum(p.drafted for p in parts), accepted=sum(p.accepted for p in parts),
        rejections=sum(p.rejections for p in parts), drafted_by_position=by_position("drafted_by_position"),
        accepted_by_position=by_position("accepted_by_position"), extra=extra,
    )
