"""A stand-in for ``llama-server`` that breaks on purpose: the engine fault tests' server, never collected.

Run as the engine binary (``install(folder)`` writes an executable wrapper): it takes
llama-server's command line, logs like a server to stdout, answers ``/health``, ``/metrics``,
llama.cpp's native ``/completion`` and ``/v1/completions`` with a fixed token stream, and breaks
each completion request the way its plan says. The plan is a file (``$SPECDEC_FAKE_ENGINE_PLAN``):
one line per server start, consumed in order, a comma list of one behaviour per request:

- ``ok``: the whole stream, final event included;
- ``die``: two tokens, then the process exits (status 3);
- ``hang``: two tokens, then silence (the socket stays open);
- ``malformed``: two tokens, then an event that is not JSON;
- ``truncated``: two tokens, then the connection closes with the server still alive.

Requests past the end of a line's list are ``ok``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

PLAN_ENV = "SPECDEC_FAKE_ENGINE_PLAN"
TOKENS = [11, 12, 13, 14, 15, 16, 17, 18]
FAULTS = ("ok", "die", "hang", "malformed", "truncated")


def install(folder: Path, plan: list[str]) -> tuple[Path, dict[str, str]]:
    """An executable ``llama-server`` in ``folder`` running this module, and the environment naming its plan."""
    folder.mkdir(parents=True, exist_ok=True)
    binary = folder / "llama-server"
    binary.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} \"$@\"\n")
    binary.chmod(0o755)
    plan_file = folder / "plan.txt"
    plan_file.write_text("".join(line + "\n" for line in plan))
    return binary, {PLAN_ENV: str(plan_file)}


def next_plan() -> list[str]:
    path = Path(os.environ[PLAN_ENV])
    lines = path.read_text().splitlines()
    path.write_text("".join(line + "\n" for line in lines[1:]))
    return lines[0].split(",") if lines else []


class FakeEngine(BaseHTTPRequestHandler):
    plan: ClassVar[list[str]] = []
    served: ClassVar[int] = 0

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"srv  log_server_r: {fmt % args}", flush=True)

    def do_GET(self) -> None:
        body = b'{"status": "ok"}' if self.path == "/health" else b"llamacpp:spec_decode_num_drafts_total 0\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        fault = cls.plan[cls.served] if cls.served < len(cls.plan) else "ok"
        cls.served += 1
        print(f"slot launch_slot_: request {cls.served}, {len(request['prompt'])} prompt tokens, behaviour {fault}",
              flush=True)
        openai = self.path == "/v1/completions"
        budget = request.get("max_tokens", request.get("n_predict", len(TOKENS)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i, token in enumerate(TOKENS[:budget]):
            if i == 2 and fault != "ok":
                self.break_stream(fault)
                return
            self.event(chunk(token, openai))
        self.event(final(openai))
        if openai:
            self.wfile.write(b"data: [DONE]\n\n")

    def event(self, payload: dict) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()

    def break_stream(self, fault: str) -> None:
        if fault == "die":
            print("fatal: GGML_ASSERT failed in the fake engine", flush=True)
            os._exit(3)
        if fault == "hang":
            time.sleep(3600)
        if fault == "malformed":
            self.wfile.write(b'data: {"tokens": [1\n\n')
            self.wfile.flush()


def chunk(token: int, openai: bool) -> dict:
    if openai:
        return {"choices": [{"text": "x", "index": 0, "finish_reason": None}], "__verbose": {"tokens": [token]}}
    return {"tokens": [token], "stop": False}


def final(openai: bool) -> dict:
    timings = {"draft_n": 0, "draft_n_accepted": 0}
    if openai:
        return {"choices": [{"text": "", "index": 0, "finish_reason": "length"}], "timings": timings}
    return {"tokens": [], "stop": True, "stop_type": "limit", "timings": timings}


def main(argv: list[str]) -> None:
    port = int(argv[argv.index("--port") + 1])
    FakeEngine.plan = next_plan()
    for fault in FakeEngine.plan:
        if fault not in FAULTS:
            raise SystemExit(f"unknown behaviour {fault!r}; known: {FAULTS}")
    print(f"main: fake engine pid {os.getpid()} on port {port}, plan {FakeEngine.plan}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), FakeEngine).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
