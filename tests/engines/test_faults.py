"""A serving engine that breaks mid-run: a named error, a fresh server for the next test, no baseline stored.

In the default run, without a real engine: ``tests/support/fake_engine.py`` stands in for
``llama-server`` (started by the same ``EngineServer``/``EngineSession`` code the engine tests use)
and breaks the third token of a request on purpose: the process exits, the socket stalls, an event
is not JSON, or the stream ends early with the server alive. Each fault must raise its own error
class naming the engine, the request and the tail of the server's log, through both adapters; the
session must replace the broken server; and a timing run a fault broke must store nothing.
"""

from __future__ import annotations

import json

import pytest
import torch

from pytest_specdec.engines import perf as engine_perf
from pytest_specdec.engines.http import EngineDiedError, EngineHangError, EngineStreamError
from pytest_specdec.engines.plugin import ADAPTERS, EngineSession
from reference_impl import SamplingConfig
from tests.support import fake_engine

FAULTS = {"die": EngineDiedError, "hang": EngineHangError, "malformed": EngineStreamError,
          "truncated": EngineStreamError}
WHAT = {"die": "went away mid-stream", "hang": "stalled", "malformed": "malformed event",
        "truncated": "without its final event"}
PROMPT = torch.tensor([[5, 6, 7]])


def session_of(tmp_path, monkeypatch, plan: list[str], adapter: str) -> EngineSession:
    binary, env = fake_engine.install(tmp_path / "bin", plan)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    session = EngineSession(binary=binary, url=None, workdir=tmp_path, folders=(tmp_path, tmp_path), adapter=adapter)
    session.models.update(target=tmp_path / "target.gguf", draft=tmp_path / "draft.gguf")  # never exported
    return session


def generate(decoder, n: int = 6):
    return decoder.generate(PROMPT, max_new_tokens=n, sampling=SamplingConfig())


@pytest.fixture(params=ADAPTERS)
def adapter(request):
    return request.param


@pytest.mark.parametrize("fault", FAULTS)
def test_a_broken_request_is_a_named_error_and_the_next_test_gets_a_fresh_server(tmp_path, monkeypatch, adapter,
                                                                                  fault):
    session = session_of(tmp_path, monkeypatch, [f"ok,{fault}", "ok"], adapter)
    try:
        decoder = session.decoder(draft=False, count_steps=False)
        decoder.stall_timeout = 1.0
        assert generate(decoder).tokens == fake_engine.TOKENS[:6]  # the first request is whole
        first = session.servers[("target", False)].process
        with pytest.raises(FAULTS[fault]) as info:
            generate(decoder)
        message = str(info.value)
        assert WHAT[fault] in message, message
        assert "llama.cpp" in message and "prompt of 3 tokens" in message and "6 new tokens" in message
        assert f"behaviour {fault}" in message, "the tail of the server's log must be in the error"
        if fault == "die":
            assert "GGML_ASSERT failed in the fake engine" in message
        fresh = session.decoder(draft=False, count_steps=False)
        assert session.servers[("target", False)].process is not first, "the broken server was kept"
        assert generate(fresh).tokens == fake_engine.TOKENS[:6]
    finally:
        session.close()


def test_a_healthy_server_is_kept_between_tests(tmp_path, monkeypatch):
    """Companion: the replacement above is the fault's doing, not a restart on every use."""
    session = session_of(tmp_path, monkeypatch, ["ok", "ok"], "native")
    try:
        generate(session.decoder(draft=False, count_steps=False))
        first = session.servers[("target", False)].process
        generate(session.decoder(draft=False, count_steps=False))
        assert session.servers[("target", False)].process is first
    finally:
        session.close()


def timing_run(session: EngineSession, directory, save: bool):
    decoders = (session.decoder(gamma=2, count_steps=False), session.decoder(draft=False, count_steps=False),
                session.decoder(gamma=2, count_steps=False))
    return engine_perf.measure_gate_save(decoders, [PROMPT, PROMPT], gamma=2, max_new_tokens=6, repeats=2,
                                         adapter=session.adapter, directory=directory, key="fake | pair | gamma=2",
                                         machine="m", save_baseline=save)


def test_a_timing_run_a_fault_broke_stores_no_baseline(tmp_path, monkeypatch):
    # the draft server truncates its fifth request: inside the timed repeats, after the warm-up
    session = session_of(tmp_path, monkeypatch, ["ok,ok,ok,ok,truncated", "ok"], "openai")
    baselines = tmp_path / "baselines"
    try:
        with pytest.raises(EngineStreamError):
            timing_run(session, baselines, save=True)
        assert not (baselines / engine_perf.BASELINE_FILE).exists()
    finally:
        session.close()


def test_a_whole_timing_run_stores_its_baseline(tmp_path, monkeypatch):
    """Companion: the same run without the fault does store its entry, so the test above can fail."""
    session = session_of(tmp_path, monkeypatch, ["ok", "ok"], "openai")
    baselines = tmp_path / "baselines"
    try:
        row, problems = timing_run(session, baselines, save=True)
        stored = json.loads((baselines / engine_perf.BASELINE_FILE).read_text())
        assert problems == [] and stored["fake | pair | gamma=2"]["tokens"] == row.tokens == 12
    finally:
        session.close()
