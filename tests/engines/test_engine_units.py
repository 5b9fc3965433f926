"""The engine machinery without an engine: these run in the default suite, in seconds.

The HTTP adapter against a scripted server-sent-events server on 127.0.0.1 (request fields, token
streaming, the engine's counters, continuing past the engine's own EOS), the server fixture's
start-up error, the GGUF export read back, the sequential PIT test on a Markov target (a sampler of
the wrong law is rejected), the engine baseline gate, and the one-line skip of engine tests in a
run that has no engine.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch

from pytest_specdec.engines import perf as engine_perf
from pytest_specdec.engines.http import EngineRequestError
from pytest_specdec.engines.llama_cpp import LlamaCppDecoder
from pytest_specdec.engines.server import EngineServer, EngineStartError
from pytest_specdec.law.pit import pit_test
from reference_impl import SamplingConfig
from reference_impl.sampling import probs_from_logits
from tests.support import ROOT

TRAINED = ROOT / "reference_impl" / "models" / "trained"


class ScriptedEngine(BaseHTTPRequestHandler):
    """Answers /completion with the next scripted stream and /metrics with running counters."""

    script: ClassVar[list[dict]] = []
    requests: ClassVar[list[dict]] = []
    metrics: ClassVar[dict] = {"drafts": 0, "pos": [0, 0]}

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        m = self.metrics
        body = (f"llamacpp:spec_decode_num_drafts_total {m['drafts']}\n"
                + "".join(f'llamacpp:spec_decode_num_accepted_tokens_per_pos_total{{position="{i}"}} {v}\n'
                          for i, v in enumerate(m["pos"])))
        self._send(200, body.encode(), "text/plain")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        step = type(self).script.pop(0)
        if "status" in step:
            self._send(step["status"], b'{"error": "bad request"}', "application/json")
            return
        m = self.metrics
        m["drafts"] += step["steps"]
        m["pos"] = [a + b for a, b in zip(m["pos"], step["pos"], strict=True)]
        events = [{"tokens": [t], "stop": False} for t in step["tokens"]]
        events.append({"tokens": [], "stop": True, "stop_type": step["stop_type"],
                       "timings": {"draft_n": step["drafted"], "draft_n_accepted": sum(step["pos"])}})
        self._send(200, b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events), "text/event-stream")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def engine():
    ScriptedEngine.script, ScriptedEngine.requests = [], []
    ScriptedEngine.metrics = {"drafts": 0, "pos": [0, 0]}
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def step(tokens, *, steps=0, pos=(0, 0), drafted=0, stop_type="limit"):
    return {"tokens": tokens, "steps": steps, "pos": list(pos), "drafted": drafted, "stop_type": stop_type}


def test_adapter_streams_token_ids_and_reads_the_engines_counters(engine):
    ScriptedEngine.script = [step([5, 6, 7, 8, 9], steps=2, pos=(2, 1), drafted=4)]
    decoder = LlamaCppDecoder(engine, gamma=2)
    seen: list[int] = []
    sampling = SamplingConfig(temperature=0.7, top_k=5, top_p=0.9)
    result = decoder.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=5, sampling=sampling,
                              generator=torch.Generator().manual_seed(0), on_token=seen.append)
    assert result.tokens == seen == [5, 6, 7, 8, 9]
    s = result.stats
    assert (s.new_tokens, s.steps, s.drafted, s.accepted, s.rejections) == (5, 2, 4, 3, 1)
    assert s.extra["accepted_at_0"] == 2 and s.extra["accepted_at_1"] == 1
    sent = ScriptedEngine.requests[0]
    assert sent["prompt"] == [1, 2, 3] and sent["n_predict"] == 5 and sent["stream"] is True
    assert (sent["temperature"], sent["top_k"], sent["top_p"]) == (0.7, 5, 0.9)
    assert sent["samplers"] == ["penalties", "temperature", "top_k", "top_p", "min_p"]
    assert sent["min_p"] == 0 and sent["repeat_penalty"] == 1 and sent["cache_prompt"] is False


def test_same_generator_state_same_seed(engine):
    ScriptedEngine.script = [step([1]), step([1]), step([1])]
    decoder = LlamaCppDecoder(engine, count_steps=False)
    for seed in (3, 3, 4):
        decoder.generate(torch.tensor([[1]]), max_new_tokens=1, sampling=SamplingConfig(temperature=1.0),
                         generator=torch.Generator().manual_seed(seed))
    seeds = [r["seed"] for r in ScriptedEngine.requests]
    assert seeds[0] == seeds[1] != seeds[2]


def test_engine_eos_is_continued_when_the_caller_set_none(engine):
    ScriptedEngine.script = [step([4, 0], stop_type="eos"), step([7, 8])]
    decoder = LlamaCppDecoder(engine, count_steps=False)
    result = decoder.generate(torch.tensor([[1, 2]]), max_new_tokens=4, sampling=SamplingConfig())
    assert result.tokens == [4, 0, 7, 8]
    assert ScriptedEngine.requests[1]["prompt"] == [1, 2, 4, 0] and ScriptedEngine.requests[1]["n_predict"] == 2
    ScriptedEngine.script = [step([4, 0], stop_type="eos")]
    stopped = decoder.generate(torch.tensor([[1, 2]]), max_new_tokens=4, sampling=SamplingConfig(), eos_token_id=0)
    assert stopped.tokens == [4, 0]


def test_adapter_errors_name_the_problem(engine):
    ScriptedEngine.script = [{"status": 400}]
    decoder = LlamaCppDecoder(engine, gamma=4, count_steps=False)
    with pytest.raises(EngineRequestError, match="answered 400"):
        decoder.generate(torch.tensor([[1]]), max_new_tokens=2, sampling=SamplingConfig())
    with pytest.raises(EngineRequestError, match="gamma=2 needs a server"):
        decoder.generate(torch.tensor([[1]]), max_new_tokens=2, sampling=SamplingConfig(), gamma=2)
    with pytest.raises(EngineRequestError, match="http://host:port"):
        LlamaCppDecoder("localhost:8080")


def test_a_server_that_will_not_start_names_binary_model_and_log(tmp_path):
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\necho 'error: failed to load model' >&2\nexit 3\n")
    binary.chmod(0o755)
    server = EngineServer(binary=binary, model=tmp_path / "target.gguf", log_path=tmp_path / "server.log")
    with pytest.raises(EngineStartError) as info:
        server.start(timeout=10)
    message = str(info.value)
    assert "exited with status 3" in message and str(binary) in message and "target.gguf" in message
    assert "failed to load model" in message


def test_gguf_export_reads_back(tmp_path):
    gguf = pytest.importorskip("gguf")
    from safetensors.torch import load_file

    from reference_impl.models.gguf_export import export_gguf, permute_qk

    path = export_gguf(TRAINED / "draft", tmp_path / "draft.gguf")
    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 2 + 9  # embeddings, final norm, nine per layer (tied output)
    state = load_file(str(TRAINED / "draft" / "model.safetensors"))
    q = state["model.layers.0.self_attn.q_proj.weight"].float()
    assert torch.equal(torch.from_numpy(tensors["blk.0.attn_q.weight"].data.copy()), permute_qk(q, 2))
    assert not torch.equal(permute_qk(q, 2), q)
    pre = reader.fields["tokenizer.ggml.pre"]
    assert bytes(pre.parts[pre.data[0]]).decode() == "gpt-2"
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == 4096


class MarkovLM:
    """A target whose next-token logits depend on the last token only: exact laws without a network."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.table = logits

    def __call__(self, input_ids, use_cache=False):
        return SimpleNamespace(logits=self.table[input_ids])


def markov_sequences(table: torch.Tensor, prompt, sampling, n: int, seed: int) -> list[list[int]]:
    generator, out = torch.Generator().manual_seed(seed), []
    probs = probs_from_logits(table, sampling)
    for _ in range(n):
        last, tokens = int(prompt[0, -1]), []
        for _ in range(4):
            last = int(torch.multinomial(probs[last], 1, generator=generator))
            tokens.append(last)
        out.append(tokens)
    return out


@pytest.mark.usefixtures("single_torch_thread")
@pytest.mark.parametrize("sampling", [SamplingConfig(temperature=1.0), SamplingConfig(temperature=0.8, top_k=20),
                                      SamplingConfig(temperature=1.0, top_p=0.9)], ids=["T1", "top_k", "top_p"])
def test_sequential_pit_accepts_the_law_and_rejects_another(sampling):
    table = torch.randn(64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    target, prompt = MarkovLM(table), torch.tensor([[3, 9]])
    exact = markov_sequences(table, prompt, sampling, 600, seed=1)
    assert not pit_test(target, prompt, exact, sampling, seed=2).rejects(1e-4)
    hotter = SamplingConfig(temperature=sampling.temperature * 1.25, top_k=sampling.top_k, top_p=sampling.top_p)
    wrong = markov_sequences(table, prompt, hotter, 600, seed=1)
    assert pit_test(target, prompt, wrong, sampling, seed=2).rejects(1e-4)


def test_engine_baseline_gate():
    row = engine_perf.EngineRow(gamma=4, ttft_draft=0.01, ttft_plain=0.01, tpot_draft=0.002, tpot_plain=0.003,
                                tps_draft=400, tps_plain=300, drafted=100, accepted=60, steps=30, rejections=20,
                                tokens=120)
    stored = {"machine": "m", **row.as_dict()}
    assert engine_perf.gate(row, stored, "m") == [] and engine_perf.gate(row, None, "m") == []
    lost_acceptance = {**stored, "alpha": row.alpha + 0.1}
    assert any("alpha" in p for p in engine_perf.gate(row, lost_acceptance, "elsewhere"))
    faster_before = {**stored, "speedup": row.speedup * 1.5}
    assert any("speedup" in p for p in engine_perf.gate(row, faster_before, "m"))
    assert engine_perf.gate(row, faster_before, "another machine") == []  # timings only on their machine


def test_engine_baseline_lives_beside_the_decoder_baselines_without_breaking_them(tmp_path):
    """The committed baselines folder loads as the decoder baselines' store, and the engine's own file as its
    entries; a damaged engine file is a clear error, never read as empty (and so never overwritten)."""
    from pytest_specdec.perf.baselines.store import BaselineError, load_baselines

    committed = ROOT / "baselines"
    assert load_baselines(committed)  # no file of another format at the top of the folder
    assert engine_perf.load(committed)
    damaged = tmp_path / engine_perf.BASELINE_FILE
    damaged.parent.mkdir(parents=True)
    damaged.write_text("{not json")
    with pytest.raises(BaselineError, match="not a readable engine baseline"):
        engine_perf.load(tmp_path)
    row = engine_perf.EngineRow(gamma=4, ttft_draft=0.01, ttft_plain=0.01, tpot_draft=0.002, tpot_plain=0.003,
                                tps_draft=400, tps_plain=300, drafted=100, accepted=60, steps=30, rejections=20,
                                tokens=120)
    with pytest.raises(BaselineError):
        engine_perf.save(tmp_path, "key", row, "m")
    assert damaged.read_text() == "{not json"


def test_default_run_skips_engine_tests_with_one_line(pytester, tmp_path, monkeypatch):
    monkeypatch.delenv("SPECDEC_ENGINE_BIN", raising=False)
    monkeypatch.setenv("SPECDEC_ENGINE_CACHE", str(tmp_path / "empty-cache"))
    pytester.makepyfile("""
        import pytest

        @pytest.mark.specdec_engine
        def test_a(specdec_engine):
            pass

        @pytest.mark.specdec_engine
        def test_b():
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(skipped=3)  # test_a once per adapter (native, openai)
    lines = [line for line in result.outlines if "engine test(s) skipped" in line]
    assert len(lines) == 1 and lines[0].startswith("specdec: 3 engine test(s) skipped")
    assert not (tmp_path / "empty-cache").exists()  # nothing was built


def test_engine_bin_that_does_not_exist_is_a_usage_error(pytester, tmp_path):
    pytester.makepyfile("import pytest\n\n@pytest.mark.specdec_engine\ndef test_a():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--specdec-engine-bin={tmp_path / 'nope'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--specdec-engine-bin*does not exist or is not executable*"])


def test_top_p_slack_forgives_only_the_edge():
    table = torch.randn(64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    target, prompt, law = MarkovLM(table), torch.tensor([[3, 9]]), SamplingConfig(temperature=1.0, top_p=0.9)
    least_likely = int(table[9].argmin())  # far outside the top-p set
    result = pit_test(target, prompt, [[least_likely]], law, top_p_slack=1e-3)
    assert result.impossible == 1 and result.boundary == 0 and result.rejects(1e-4)


def test_a_pit_test_with_no_token_to_test_rejects():
    """An empty test (every token left out) is no evidence of the law: it must not pass."""
    from pytest_specdec.law.pit import PitResult

    assert PitResult(n=0, ks=float("nan"), p_value=float("nan"), impossible=0).rejects(1e-4)
    assert not PitResult(n=10, ks=0.1, p_value=0.5, impossible=0).rejects(1e-4)


def test_a_token_the_engine_sent_no_logprob_for_keeps_its_place_as_missing(engine):
    """llama-server sends no probabilities for the tokens of a speculative step: each such token gets a NaN
    record in its place, so records stay aligned with tokens and the logprob checks see the gap."""
    ScriptedEngine.script = [step([5, 6, 7])]
    result = LlamaCppDecoder(engine, count_steps=False).generate(torch.tensor([[1]]), max_new_tokens=3,
                                                                 sampling=SamplingConfig(), logprobs=1)
    assert len(result.logprobs) == 3 and all(record.logprob != record.logprob for record in result.logprobs)
    assert ScriptedEngine.requests[0]["n_probs"] == 1
