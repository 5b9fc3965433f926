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
those are small methods a subclass overrides: ``payload``, ``event_tokens``, ``is_final`` and
``final_stats``. ``llama_cpp`` is llama.cpp's native endpoint; ``openai`` is ``/v1/completions``
for any engine, with an ``EngineProfile`` per engine. Only the URL the caller gives is contacted.

**Faults.** A request that breaks raises a named error carrying the engine, the request (prompt
length, budget, seed, sampling) and the last lines of the server's log (when the suite started
the server): ``EngineDiedError`` (connection refused or cut), ``EngineHangError`` (no byte for
``stall_timeout`` seconds), ``EngineStreamError`` (a malformed event, or a stream that ends
without its final event). ``on_fault`` is called first, so the server's owner can replace it.
"""

from __future__ import annotations

import http.client
import json
import math
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from reference_impl.errors import UnsupportedFeatureError
from reference_impl.sampling import SamplingConfig
from reference_impl.stats import DecodeResult, DecodeStats, TokenLogprob

from ..protocol.capabilities import CLASSIC
from .server import log_tail

SEED_RANGE = 2**31 - 1
STALL_TIMEOUT = 60.0  # seconds without a byte from a streaming server before it counts as hung
MISSING_LOGPROB = TokenLogprob(logprob=math.nan)  # the engine returned no log-probability for this token


class EngineRequestError(RuntimeError):
    """The engine refused or broke a request (HTTP status, malformed stream, unsupported option)."""


class EngineDiedError(EngineRequestError):
    """The connection was refused or cut: the server process is gone or crashed mid-request."""


class EngineHangError(EngineRequestError):
    """The server stopped sending for longer than the stall timeout."""


class EngineStreamError(EngineRequestError):
    """The stream broke its format: an event that is not JSON, or an end without the final event."""


class EngineHTTPDecoder:
    """Base adapter for a streaming completions endpoint."""

    name = "engine-http"
    endpoint = "/v1/completions"
    capabilities = CLASSIC

    def __init__(self, url: str, *, gamma: int | None = None, timeout: float = 300.0, model: str | None = None,
                 stall_timeout: float = STALL_TIMEOUT, log_path: Path | None = None,
                 on_fault: Callable[[EngineRequestError], None] | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise EngineRequestError(f"engine URL must be http://host:port, got {url!r}")
        self.url = url.rstrip("/")
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.gamma = gamma  # the server's draft length (fixed at server start), None without a draft
        self.timeout = timeout
        self.stall_timeout = stall_timeout
        self.model = model
        self.log_path = log_path
        self.on_fault = on_fault

    # --- what a subclass overrides -------------------------------------------------------------

    def payload(self, prompt: list[int], max_new_tokens: int, sampling: SamplingConfig, seed: int,
                logprobs: int | None = None) -> dict[str, Any]:
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

    def event_logprobs(self, event: dict[str, Any], top: int) -> list[TokenLogprob]:
        """The log-probability records of one event's tokens (when the request asked for them)."""
        return []

    def is_final(self, event: dict[str, Any]) -> bool:
        """Is this the stream's last event (the one that says why generation stopped)?"""
        return True

    def final_stats(self, events: list[dict[str, Any]], tokens: list[int]) -> DecodeStats:
        return DecodeStats(new_tokens=len(tokens))

    def stopped_on_own_eos(self, events: list[dict[str, Any]]) -> bool:
        """Did the engine end the stream on its end-of-generation token (not on the length limit)?"""
        return False

    # --- the engine's cumulative counters (``profile``: where they are on its /metrics page) ---------

    profile: Any = None  # profiles.EngineProfile
    count_steps = False
    _counters: dict[str, float] | None = None

    def start_request(self) -> None:
        """Called once per ``generate``, after the request is checked and before anything is sent."""
        if self.count_steps:  # other decoders on the same server may have moved the counters since the last call
            self._counters = self.counters()

    def counters(self) -> dict[str, float]:
        """The server's cumulative speculative counters, from ``/metrics``."""
        return self.profile.counters(self.get_text("/metrics"))

    def counters_moved(self) -> dict[str, float]:
        """How far the counters moved since the last read (``start_request`` or the previous part)."""
        now = self.counters()
        before = self._counters or {}
        self._counters = now
        return {key: now[key] - before.get(key, 0.0) for key in now}

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
        logprobs: int | None = None,
    ) -> DecodeResult:
        asked = set(sampling.features) | ({"logprobs"} if logprobs is not None else set())
        missing = sorted(asked - set(self.capabilities))
        if missing:
            raise UnsupportedFeatureError(
                f"{self.name} (through this adapter) does not carry {', '.join(missing)}: the engine has no such "
                f"field, or the adapter does not map it; it carries {sorted(set(self.capabilities) - CLASSIC)}"
            )
        if gamma is not None and self.gamma is not None and gamma != self.gamma:
            raise EngineRequestError(
                f"{self.name}: the server drafts {self.gamma} tokens per step (fixed when it starts); gamma={gamma} "
                "needs a server started with that draft length"
            )
        self.start_request()
        prompt = [int(t) for t in input_ids[0].tolist()]
        tokens: list[int] = []
        records: list[TokenLogprob] = []
        stats: list[DecodeStats] = []
        # The engine stops on its own end-of-generation token; when the caller asked for none the
        # protocol continues past it, so the rest is requested as a continuation of prompt + tokens.
        while len(tokens) < max_new_tokens:
            events, got, got_logprobs = self._stream(prompt + tokens, max_new_tokens - len(tokens), sampling,
                                                     generator, eos_token_id, on_token, logprobs)
            tokens += got
            records += got_logprobs
            stats.append(self.final_stats(events, got))
            if not got or (eos_token_id is not None and got[-1] == eos_token_id):
                break
            if not self.stopped_on_own_eos(events):
                break
        return DecodeResult(tokens=tokens, stats=_sum_stats(stats), logprobs=records if logprobs is not None else None)

    def _stream(self, prompt, budget, sampling, generator, eos_token_id, on_token, logprobs):
        body = self.payload(prompt, budget, sampling, draw_seed(generator), logprobs)
        events: list[dict[str, Any]] = []
        got: list[int] = []
        records: list[TokenLogprob] = []
        for event in self._events(body):
            events.append(event)
            new = self.event_tokens(event)
            new_records = self.event_logprobs(event, logprobs) if logprobs is not None else []
            for i, token in enumerate(new):
                if len(got) >= budget or (eos_token_id is not None and got and got[-1] == eos_token_id):
                    continue  # past the caller's limit or EOS: read the stream to its end, emit nothing
                got.append(token)
                if logprobs is not None:  # a token the engine sent no record for keeps its place, as NaN
                    records.append(new_records[i] if i < len(new_records) else MISSING_LOGPROB)
                if on_token is not None:
                    on_token(token)
        if not any(self.is_final(event) for event in events):
            if not self._alive():
                raise self._fault(EngineDiedError, f"the server went away mid-stream, after {len(got)} token(s)", body)
            raise self._fault(EngineStreamError, f"the stream ended after {len(got)} token(s) without its final "
                              "event (truncated)", body)
        return events, got, records

    def _alive(self) -> bool:
        """Does the server still answer? (Tells a crash from a truncated stream; an exit takes a moment.)"""
        time.sleep(0.2)
        connection = http.client.HTTPConnection(self.host, self.port, timeout=2)
        try:
            connection.request("GET", "/health")
            return connection.getresponse().status < 500
        except (ConnectionError, http.client.HTTPException, OSError):
            return False
        finally:
            connection.close()

    def _events(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST ``body`` and yield the JSON of each server-sent ``data:`` line (faults raised by name)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=min(self.timeout, self.stall_timeout))
        try:
            try:
                connection.request("POST", self.endpoint, body=json.dumps(body),
                                   headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
                response = connection.getresponse()
            except TimeoutError:
                raise self._fault(EngineHangError, f"no response within {self.stall_timeout:g} s", body) from None
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                raise self._fault(EngineDiedError, f"connection failed ({type(exc).__name__}: {exc})", body) from None
            if response.status != 200:
                raise EngineRequestError(
                    f"{self.name}: POST {self.url}{self.endpoint} answered {response.status}: "
                    f"{response.read(2000).decode(errors='replace')}"
                )
            yield from self._read_events(response, body)
        finally:
            connection.close()

    def _read_events(self, response: http.client.HTTPResponse, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        while True:
            try:
                line = response.readline()
            except TimeoutError:
                raise self._fault(EngineHangError, f"the stream stalled: no byte for {self.stall_timeout:g} s",
                                  body) from None
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                raise self._fault(EngineDiedError, f"the stream was cut ({type(exc).__name__}: {exc})", body) from None
            if not line:
                return
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                return
            try:
                event = json.loads(data)
            except json.JSONDecodeError:
                raise self._fault(EngineStreamError, f"malformed event {data[:200]!r}", body) from None
            if not isinstance(event, dict):
                raise self._fault(EngineStreamError, f"an event that is not a JSON object: {data[:200]!r}", body)
            if "error" in event:
                raise self._fault(EngineRequestError, f"the server reported an error mid-stream: {event['error']}",
                                  body)
            yield event

    def _fault(self, kind: type[EngineRequestError], what: str, body: dict[str, Any]) -> EngineRequestError:
        prompt = body.get("prompt", [])
        budget = body.get("max_tokens", body.get("n_predict"))
        asked = {k: body[k] for k in ("temperature", "top_k", "top_p") if k in body}
        log = log_tail(self.log_path) if self.log_path else "    (no log: a server the suite did not start)"
        request = (f"POST {self.endpoint}, prompt of {len(prompt)} tokens (starts {prompt[:8]}), {budget} new tokens, "
                   f"seed {body.get('seed')}, {asked}") if body else "a GET (see above), no completion in flight"
        error = kind(f"{self.name} at {self.url}: {what}.\n  request: {request}\n"
                     f"  server log ({self.log_path}), last lines:\n{log}")
        if self.on_fault is not None:
            self.on_fault(error)
        return error

    def get_text(self, path: str) -> str:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=min(self.timeout, self.stall_timeout))
        try:
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                text = response.read().decode(errors="replace")
            except TimeoutError:
                raise self._fault(EngineHangError, f"GET {path}: no answer within {self.stall_timeout:g} s",
                                  {}) from None
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                raise self._fault(EngineDiedError, f"GET {path}: connection failed ({exc})", {}) from None
            if response.status != 200:
                raise EngineRequestError(f"{self.name}: GET {self.url}{path} answered {response.status}: {text[:500]}")
            return text
        finally:
            connection.close()


def logprob_records(entries: list[dict[str, Any]], top: int | None) -> list[TokenLogprob]:
    """llama.cpp's probability entries (``completion_probabilities`` or ``logprobs.content``) -> records."""
    records = []
    for entry in entries:
        alternatives = tuple((int(c["id"]), float(c["logprob"])) for c in entry.get("top_logprobs", ()))
        records.append(TokenLogprob(logprob=float(entry["logprob"]), top=alternatives[: top or 0]))
    return records


def counted_stats(name: str, delta: dict[str, float], *, gamma: int | None, tokens: int, drafted: int,
                  accepted: int, extra: dict[str, float]) -> DecodeStats:
    """One request's ``DecodeStats`` from the difference of the server's counters around it.

    ``delta``: steps and ``accepted_at_<i>`` (``EngineProfile.counters``). Rejections are steps minus
    steps that accepted the last draft position: exact while every step drafts ``gamma`` tokens.
    Per-position counts that disagree with the request's own accepted count mean another client
    moved the counters: an error, never a silently wrong figure.
    """
    steps = int(delta.get("steps", 0))
    per_position = tuple(int(delta.get(f"accepted_at_{i}", 0)) for i in range(gamma or 0))
    if per_position and sum(per_position) != accepted:
        raise EngineRequestError(
            f"{name}: /metrics moved by {sum(per_position)} accepted tokens but the response says "
            f"{accepted}: another client is using this server; give the suite a server of its own"
        )
    full_steps = per_position[-1] if per_position else 0
    extra = {**extra, **{f"accepted_at_{i}": float(count) for i, count in enumerate(per_position)}}
    return DecodeStats(new_tokens=tokens, steps=steps, drafted=drafted, accepted=accepted,
                       rejections=max(steps - full_steps, 0) if drafted else 0, extra=extra)


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
