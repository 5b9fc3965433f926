"""Baselines: the fingerprint, the atomic store, the comparison's verdicts and the gate end to end.

The statistical checks of the gate run on synthetic samples with a fixed seed: on identically
distributed timings the gate flags at most ``FALSE_ALARM_BUDGET`` of the comparisons (the
Mann-Whitney level is ``baselines.ALPHA`` = 1% per metric, and the effect threshold cuts it
further), and the companion check shows the same gate flags a 25% slowdown nearly every time.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import pytest
import torch

from pytest_specdec import options as opts
from pytest_specdec.perf import baselines as bl
from pytest_specdec.perf.interleaved import PerfRecord, PerfSamples
from pytest_specdec.perf.timing import TimedDecode
from reference_impl.speculative import SpeculativeDecoder
from reference_impl.stats import DecodeResult, DecodeStats
from tests.support import ROOT, injected
from tests.support.pairs import cached_pair

SEED = 20240611
FALSE_ALARM_BUDGET = 0.01
ENV = {"device": "Test CPU x2", "torch_threads": 2, "cuda": None, "torch": "2.x", "transformers": "5.x"}
PAIR = {"target": "t", "draft": "d", "revision": None, "target_digest": "aa", "draft_digest": "bb", "dtype": "float32"}
MEASUREMENT = {"name": "test_speed[gamma4]", "decoder": "speculative", "gamma": 4, "sampling": "greedy",
               "prompts": "2 prompts, sha 0", "max_new_tokens": 8, "repeats": 3}


# --- synthetic measurements ---------------------------------------------------------------------------


def synthetic_samples(decoder: str, rng: random.Random, *, runs: int, tokens: int, token_s: float, burst: int,
                      prefill_s: float, prefills: int = 1, noise: float = 0.05) -> PerfSamples:
    """Runs whose tokens arrive in bursts of ``burst`` every ``token_s * burst`` seconds (lognormal noise)."""
    out = []
    for _ in range(runs):
        t = prefill_s * rng.lognormvariate(0, noise)
        times = [t]
        while len(times) < tokens:
            t += token_s * burst * rng.lognormvariate(0, noise)
            times += [t] * min(burst, tokens - len(times))
        steps = (tokens - 1) // burst if burst > 1 else 0
        stats = DecodeStats(new_tokens=tokens, steps=steps, drafted=4 * steps, accepted=(burst - 1) * steps,
                            rejections=steps, drafted_by_position=(steps,) * 4 if burst > 1 else (),
                            accepted_by_position=(steps,) * (burst - 1) + (0,) * (5 - burst) if burst > 1 else (),
                            target_forwards=1 + steps if burst > 1 else tokens, draft_forwards=4 * steps,
                            target_prefills=1, draft_prefills=(prefills - 1) if burst > 1 else 0,
                            forwards_before_first_token=1)
        out.append(TimedDecode(DecodeResult([0] * tokens, stats), 0.0, tuple(times), t + 1e-4))
    return PerfSamples(decoder, tuple(out))


def synthetic_record(seed: int = 0, *, slowdown: float = 0.0, prefills: int = 2, runs: int = 24) -> PerfRecord:
    rng = random.Random(seed)
    spec = synthetic_samples("speculative", rng, runs=runs, tokens=16, token_s=0.004 * (1 + slowdown), burst=3,
                             prefill_s=0.01 * (1 + slowdown), prefills=prefills)
    base = synthetic_samples("autoregressive", rng, runs=runs, tokens=16, token_s=0.008, burst=1, prefill_s=0.01)
    protocol = {"prompts": "8 prompts, sha 0", "max_new_tokens": 16, "repeats": 3, "warmup": 1}
    costs = {"c": 0.2, "v": 1.2, "gamma": 4, "target_pass_s": 0.008, "draft_pass_s": 0.0016, "verify_pass_s": 0.0096}
    return PerfRecord("test_speed[gamma4]", "tiny", 4, "greedy", 16, spec, base,
                      extra={"protocol": protocol, "forward_costs": costs})


def judge(old: PerfRecord, new: PerfRecord, **fp_changes) -> bl.Comparison:
    stored = [bl.StoredBaseline(Path("b.json"), "k", bl.fingerprint(ENV, PAIR, MEASUREMENT), bl.timing_samples(old),
                                bl.deterministic_figures(old))]
    fp = {**bl.fingerprint(ENV, PAIR, MEASUREMENT), **fp_changes}
    return bl.compare(stored, fp, bl.timing_samples(new), bl.deterministic_figures(new), exact_numerics=True)


# --- fingerprint ----------------------------------------------------------------------------------------


def test_fingerprint_key_changes_with_every_field():
    fp = bl.fingerprint(ENV, PAIR, MEASUREMENT)
    assert fp["gamma"] == 4 and fp["device"] == "Test CPU x2" and fp["dtype"] == "float32"
    keys = {bl.fingerprint_key({**fp, field: "changed"}) for field in fp}
    assert len(keys) == len(fp) and bl.fingerprint_key(fp) not in keys
    assert bl.fingerprint(ENV, PAIR, {**MEASUREMENT, "gamma": None})["gamma"] == "decoder default"


def test_model_digest_sees_weights_not_paths():
    target, _ = cached_pair("llama", "partial")
    before = bl.model_digest(target)
    target.config._name_or_path = "/somewhere/else"
    assert bl.model_digest(target) == before
    with torch.no_grad():
        weight = target.get_output_embeddings().weight
        weight[0, 0] += 1.0
        try:
            assert bl.model_digest(target) != before
        finally:
            weight[0, 0] -= 1.0


# --- store ------------------------------------------------------------------------------------------------


def save(path: Path, record: PerfRecord, **measurement) -> str:
    fp = bl.fingerprint(ENV, PAIR, {**MEASUREMENT, **measurement})
    return bl.save_baseline(path, fp, bl.timing_samples(record), bl.deterministic_figures(record), decoder="ref")


def test_save_keeps_other_entries_and_round_trips(tmp_path):
    path = bl.baseline_file(tmp_path, "org/target <- org/draft")
    assert path.name == "org-target-org-draft.json"
    first = save(path, synthetic_record(1), gamma=4)
    second = save(path, synthetic_record(2), gamma=2)
    again = save(path, synthetic_record(3), gamma=4)
    assert first == again and first != second
    stored = {s.key: s for s in bl.load_baselines(tmp_path)}
    assert set(stored) == {first, second}
    assert stored[first].timing["speedup"] == pytest.approx(bl.timing_samples(synthetic_record(3))["speedup"])
    assert stored[second].fingerprint["gamma"] == 2
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "pair.json"
    save(path, synthetic_record(1))
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save(path, synthetic_record(2), gamma=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "pair.json"]


@pytest.mark.parametrize(("content", "message"), [
    ('{"format": "pytest-specdec-baselines", "version": 1, "entr', r"corrupt: not valid JSON.*git checkout"),
    ('{"machine_info": {}, "benchmarks": []}', r"not a pytest-specdec baseline file.*--specdec-baseline-dir"),
    ('{"format": "pytest-specdec-baselines", "version": 99, "entries": {}}', r"version 99.*upgrade"),
    ('{"format": "pytest-specdec-baselines", "version": 1, "entries": {"k": {}}}', r"corrupt: an entry lacks"),
])
def test_bad_files_are_clear_errors_and_never_overwritten(tmp_path, content, message):
    path = tmp_path / "pair.json"
    path.write_text(content)
    with pytest.raises(bl.BaselineError, match=message) as error:
        bl.load_baselines(tmp_path)
    assert str(path) in str(error.value)
    with pytest.raises(bl.BaselineError, match=message):
        save(path, synthetic_record(1))
    assert path.read_text() == content


# --- comparison -------------------------------------------------------------------------------------------


def test_same_distribution_passes_and_matching_figures_agree():
    comparison = judge(synthetic_record(1), synthetic_record(2))
    assert comparison.status == "compared" and not comparison.failed
    assert {m.verdict for m in comparison.timing} <= {"ok", "inconclusive"}
    assert all(f.ok for f in comparison.deterministic)


def test_slowdown_is_a_regression_with_the_evidence():
    comparison = judge(synthetic_record(1), synthetic_record(2, slowdown=0.25))
    regressed = {m.metric for m in comparison.regressions}
    assert {"speedup", "ttft_ratio", "tpot_ratio", "tpot_s"} <= regressed
    message = comparison.message()
    assert "speedup: baseline median" in message and "-> now" in message and "Wilcoxon signed-rank" in message
    assert "bootstrap interval" in message and "b.json entry k" in message and "--specdec-save-baseline" in message


def test_directions_an_improvement_is_not_a_regression():
    comparison = judge(synthetic_record(1, slowdown=0.25), synthetic_record(2))
    verdicts = {m.metric: m.verdict for m in comparison.timing}
    assert verdicts["speedup"] == verdicts["ttft_ratio"] == verdicts["tokens_per_s"] == "improved"
    assert not comparison.failed


def test_noise_is_inconclusive_not_failed():
    metric = bl.TIMING_METRICS[0]
    rng = random.Random(SEED)
    old = [rng.lognormvariate(0, 0.6) for _ in range(4)]
    new = [0.8 * rng.lognormvariate(0, 0.6) for _ in range(4)]
    verdict = bl.compare_samples(metric, old, new)
    assert verdict.verdict == "inconclusive", verdict.evidence()


def test_a_slower_machine_is_inconclusive_where_the_control_slowed_too():
    old = synthetic_record(1)
    rng = random.Random(2)
    slow = {"runs": 24, "tokens": 16, "prefill_s": 0.013}
    new = PerfRecord(old.name, old.pair, 4, "greedy", 16,
                     synthetic_samples("speculative", rng, token_s=0.0052, burst=3, prefills=2, **slow),
                     synthetic_samples("autoregressive", rng, token_s=0.0104, burst=1, **slow), extra=old.extra)
    verdicts = {m.metric: m for m in judge(old, new).timing}
    assert verdicts["tpot_s"].verdict == "inconclusive" and "the machine is slower" in verdicts["tpot_s"].note
    assert verdicts["speedup"].verdict in ("ok", "inconclusive")


def test_ratios_under_very_different_conditions_are_inconclusive():
    old = synthetic_record(1)
    rng = random.Random(2)
    new = PerfRecord(old.name, old.pair, 4, "greedy", 16,  # machine 40% slower, and the decoder 15% worse on top
                     synthetic_samples("speculative", rng, runs=24, tokens=16, token_s=0.004 * 1.4 * 1.15, burst=3,
                                       prefill_s=0.014, prefills=2),
                     synthetic_samples("autoregressive", rng, runs=24, tokens=16, token_s=0.008 * 1.4, burst=1,
                                       prefill_s=0.014), extra=old.extra)
    speedup = next(m for m in judge(old, new).timing if m.metric == "speedup")
    assert speedup.worse_by > speedup.threshold
    assert speedup.verdict == "inconclusive" and "conditions differ too much" in speedup.note


def test_deterministic_figures_compare_exactly():
    comparison = judge(synthetic_record(1), synthetic_record(1, prefills=3))
    assert comparison.failed
    moved = {f.figure for f in comparison.regressions if isinstance(f, bl.FigureVerdict)}
    assert moved == {"prefills_per_request"}
    assert "prefills_per_request: baseline 2.0 -> now 3.0 (must match exactly" in comparison.message()


def test_another_device_compares_deterministic_figures_only():
    comparison = judge(synthetic_record(1), synthetic_record(2, slowdown=0.5), device="Other CPU x64")
    assert comparison.status == "deterministic only" and not comparison.timing and not comparison.failed
    assert comparison.differing == {"device": ("Test CPU x2", "Other CPU x64")}
    assert judge(synthetic_record(1), synthetic_record(1, prefills=3), device="Other CPU x64").failed


def test_no_comparable_baseline_names_the_differing_fields():
    comparison = judge(synthetic_record(1), synthetic_record(1, prefills=3), gamma=2, dtype="bfloat16")
    assert comparison.status == "no comparable baseline" and not comparison.failed
    assert comparison.differing == {"gamma": (4, 2), "dtype": ("float32", "bfloat16")}
    assert "gamma: stored 4, now 2" in comparison.differences()
    other_decoder = judge(synthetic_record(1), synthetic_record(1, prefills=3), decoder="hf-assisted")
    assert other_decoder.status == "no comparable baseline" and not other_decoder.failed
    empty = bl.compare([], bl.fingerprint(ENV, PAIR, MEASUREMENT), {}, {}, exact_numerics=True)
    assert empty.status == "no comparable baseline" and empty.differences() == "the baseline folder is empty"


def gate_flags(rng: random.Random, slowdown: float, n: int = 24, noise: float = 0.1) -> bool:
    metric = bl.TIMING_METRICS[0]  # speedup: higher is better
    old = [1.5 * rng.lognormvariate(0, noise) for _ in range(n)]
    new = [1.5 / (1 + slowdown) * rng.lognormvariate(0, noise) for _ in range(n)]
    return bl.compare_samples(metric, old, new).verdict == "regressed"


def prompt_factors(rng: random.Random, n: int, prompts: int = 8) -> list[float]:
    """Per-run factors of a protocol whose prompts differ a lot (0.5x to 2x), in (repeat, prompt) order."""
    factors = [math.exp(rng.uniform(math.log(0.5), math.log(2))) for _ in range(prompts)]
    return [factors[i % prompts] for i in range(n)]


def paired_gate_flags(rng: random.Random, slowdown: float, *, paired: bool, n: int = 24,
                      noise: float = 0.05) -> bool:
    metric = bl.TIMING_METRICS[0]  # speedup: higher is better
    factors = prompt_factors(rng, n)
    old = [1.5 * f * rng.lognormvariate(0, noise) for f in factors]
    new = [1.5 / (1 + slowdown) * f * rng.lognormvariate(0, noise) for f in factors]
    return bl.compare_samples(metric, old, new, paired=paired).verdict == "regressed"


def test_paired_false_alarm_rate_with_heterogeneous_prompts():
    rng = random.Random(SEED)
    alarms = sum(paired_gate_flags(rng, 0.0, paired=True) for _ in range(300))
    assert alarms <= FALSE_ALARM_BUDGET * 300, f"{alarms} false alarms in 300 paired same-distribution comparisons"


def test_companion_pairing_by_prompt_catches_what_pooling_misses():
    """A 15% slowdown under prompts that differ 4x: pooled samples cannot see it, prompt-by-prompt ratios can."""
    rng = random.Random(SEED)
    paired = sum(paired_gate_flags(rng, 0.15, paired=True) for _ in range(100))
    pooled = sum(paired_gate_flags(rng, 0.15, paired=False) for _ in range(100))
    assert paired >= 95, f"paired: a 15% slowdown flagged in only {paired} of 100 comparisons"
    assert pooled <= 50, f"pooled flagged {pooled} of 100: the scenario no longer shows what pairing adds"


def test_false_alarm_rate_on_identical_distributions():
    rng = random.Random(SEED)
    alarms = sum(gate_flags(rng, 0.0) for _ in range(300))
    assert alarms <= FALSE_ALARM_BUDGET * 300, f"{alarms} false alarms in 300 same-distribution comparisons"


def test_companion_a_25_percent_slowdown_is_flagged():
    rng = random.Random(SEED)
    flagged = sum(gate_flags(rng, 0.25) for _ in range(300))
    assert flagged >= 0.95 * 300, f"a 25% slowdown flagged in only {flagged} of 300 comparisons"


# --- the gate end to end, through pytester ------------------------------------------------------------------

GATE_TEST = """
import pytest

@pytest.mark.specdec_perf(prompts=2, max_new_tokens=8, repeats=3, warmup=1)
def test_speed(specdec_measure, specdec_baseline_check):
    specdec_baseline_check(specdec_measure(gamma=3))
"""
# Timings are not what these runs check (the machine is shared): compare deterministic figures only.
NO_TIMING = "import pytest_specdec.perf.baselines.verdicts as v\nv.TIMING_METRICS = ()\n"


@pytest.fixture
def gate(pytester, monkeypatch):
    root = str(ROOT)  # so --specdec-impl tests.support.injected:... imports in the subprocess
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    pytester.makepyfile(test_gate=GATE_TEST)
    pytester.makeconftest(NO_TIMING)
    folder = pytester.path / "stored"

    def run(*args: str):
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", f"{opts.PAIR}=tiny-llama-partial",
                                             f"{opts.BASELINE_DIR}={folder}", *args)

    return run, folder


@pytest.mark.parametrize(("factory", "figure"), [
    (injected.extra_draft_prefill, "prefills_per_request"),
    (injected.draft_before_first_token, "forwards_before_first_token"),
])
def test_injected_algorithmic_regressions_move_deterministic_figures(factory, figure):
    target, draft = cached_pair("llama", "partial")
    prompt = torch.tensor([[5, 6, 7, 8]])
    reference = SpeculativeDecoder(target, draft, gamma=3).generate(prompt, max_new_tokens=12).stats
    broken = factory(target, draft, gamma=3).generate(prompt, max_new_tokens=12).stats
    figures = {
        "prefills_per_request": lambda s: s.target_prefills + s.draft_prefills,
        "forwards_before_first_token": lambda s: s.forwards_before_first_token,
    }
    assert figures[figure](broken) > figures[figure](reference)


def test_gate_records_then_compares_then_fails_an_injected_regression(gate):
    run, folder = gate
    result = run()
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no comparable baseline for test_speed*the baseline folder is empty*"
                                 "--specdec-save-baseline*"])
    run(opts.SAVE_BASELINE).assert_outcomes(passed=1)
    document = json.loads((folder / "tiny-llama-partial.json").read_text())
    assert len(document["entries"]) == 1
    run().assert_outcomes(passed=1)
    result = run(f"{opts.IMPL}=tests.support.injected:extra_draft_prefill")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*specdec performance regression in test_speed*",
                                 "*draft_tokens_fed_per_token: baseline*",
                                 "*prefills_per_request: baseline 2.0 -> now *(must match exactly*",
                                 "baseline: *tiny-llama-partial.json entry *"])
    result.stdout.no_fnmatch_line("*Traceback*")


def test_gate_reports_a_foreign_file_clearly(gate):
    run, folder = gate
    folder.mkdir()
    (folder / "0001_run.json").write_text('{"machine_info": {}, "benchmarks": []}')
    result = run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*0001_run.json is not a pytest-specdec baseline file*--specdec-baseline-dir*"])


def test_cpu_device_names_the_vector_isa():
    """Two CPUs that report the same family name but dispatch to different kernels must not share timings
    or exact numerics."""
    import torch

    from pytest_specdec.perf.environment import describe_environment

    env = describe_environment("cpu")
    assert env["device"].endswith(f"x{env['cpu_count']} ({torch.backends.cpu.get_cpu_capability()})")
