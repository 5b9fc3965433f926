"""Same-job A/B: the base branch's decoder imported beside the pull request's, timed interleaved, judged run by run.

- Import isolation: a base package in another folder is imported under an alias; its own absolute
  and relative imports (also inside functions) stay in the base version, and the pull request's
  package is untouched. Mutant: a loader that does not rewrite absolute imports leaks the pull
  request's code into the base decoder.
- The verdict (synthetic paired samples, fixed seed): identically distributed head and base are
  flagged in at most ``FALSE_ALARM_BUDGET`` of comparisons; a 6% slower head nearly always.
- End to end through pytester: a second checkout of the reference beside this one, a slower
  decoder under test flagged by the A/B while the stored baseline, from another device, can only
  say "deterministic only".
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import sys

import pytest

from pytest_specdec import options as opts
from pytest_specdec.perf import ab
from pytest_specdec.perf.interleaved import PerfRecord, PerfSamples, measure_interleaved
from pytest_specdec.perf.timing import TimedDecode
from pytest_specdec.protocol import base_import
from reference_impl.stats import DecodeResult, DecodeStats
from tests.support import ROOT

SEED = 20261130
FALSE_ALARM_BUDGET = 0.01

# --- importing the base version beside the head's ---------------------------------------------------------------

BASE_MODULE = '''
import mypkg_ab
import mypkg_ab.sub as sub_alias
from mypkg_ab import VERSION as AT_IMPORT
from . import sub
from .types import Config

def seen_lazily():
    from mypkg_ab import VERSION
    import mypkg_ab.sub
    return VERSION, mypkg_ab.VERSION, mypkg_ab.sub.WHERE

class Decoder:
    def __init__(self, target, draft):
        pass

    def generate(self, input_ids, *, config):
        return type(config).__module__, config.value
'''
TYPES = "from dataclasses import dataclass\n\n@dataclass(frozen=True)\nclass Config:\n    value: int = 0\n"


@pytest.fixture
def two_versions(tmp_path, monkeypatch):
    """``mypkg_ab`` in a head folder (on sys.path) and a base folder: VERSION says which one a module is."""
    for side in ("head", "base"):
        package = tmp_path / side / "mypkg_ab"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f"VERSION = {side!r}\n")
        (package / "sub.py").write_text(f"WHERE = {side!r}\n")
        (package / "types.py").write_text(TYPES)
        (package / "dec.py").write_text(BASE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "head"))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    return tmp_path / "base"


def test_the_base_package_imports_its_own_modules_everywhere(two_versions):
    import importlib

    import mypkg_ab

    spec = base_import.aliased_spec("mypkg_ab.dec:Decoder", two_versions)
    assert spec == "_specdec_base.mypkg_ab.dec:Decoder"
    base = importlib.import_module("_specdec_base.mypkg_ab.dec")
    assert base.mypkg_ab.VERSION == "base" and base.AT_IMPORT == "base"
    assert base.sub.WHERE == "base" and base.sub_alias.WHERE == "base"
    assert base.seen_lazily() == ("base", "base", "base")
    assert mypkg_ab.VERSION == "head" and importlib.import_module("mypkg_ab.sub").WHERE == "head"
    assert not list(two_versions.rglob("*.pyc")), "rewritten code must never be cached in the base checkout"


def test_mutant_without_rewriting_leaks_the_heads_code(two_versions, monkeypatch):
    import importlib

    monkeypatch.setattr(base_import._RewriteImports, "visit", lambda self, tree: tree)  # BUG: no rewriting
    base_import.install(two_versions, "mypkg_ab")
    base = importlib.import_module("_specdec_base.mypkg_ab.dec")
    assert base.seen_lazily() != ("base", "base", "base")  # what the test above would have caught


def test_arguments_of_the_heads_types_cross_to_the_bases(two_versions):
    from mypkg_ab.types import Config

    factory = base_import.load_base_factory("mypkg_ab.dec:Decoder", two_versions)
    decoder = factory(None, None)
    assert decoder.generate("ids", config=Config(7)) == ("_specdec_base.mypkg_ab.types", 7)
    assert dataclasses.is_dataclass(Config(7))


@pytest.mark.parametrize(("impl", "path", "message"), [
    (None, ".", f"{opts.BASE_PATH} needs {opts.BASE_IMPL} too"),
    ("mypkg_nowhere.dec:Decoder", ".", "no package 'mypkg_nowhere' there*git worktree add*--target*"),
    ("reference_impl.speculative:SpeculativeDecoder", "no-such-folder", "*is not a folder*git worktree add*"),
    ("reference_impl.speculative:Nothing", None, "*has no attribute 'Nothing'"),
])
def test_bad_base_options_are_usage_errors(pytester, impl, path, message):
    pytester.makepyfile("def test_nothing():\n    pass\n")
    args = ([f"{opts.BASE_IMPL}={impl}"] if impl else []) + ([f"{opts.BASE_PATH}={path}"] if path else [])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


# --- interleaving ----------------------------------------------------------------------------------------------


class _Recorder:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def generate(self, input_ids, *, max_new_tokens, on_token=None, **kwargs):
        self.log.append(self.name)
        if on_token is not None:
            on_token(0)
        return DecodeResult([0], DecodeStats(new_tokens=1))


def test_head_and_base_swap_places_run_by_run():
    from pytest_specdec.perf.timing import Timer

    log: list[str] = []
    decoders = {name: _Recorder(name, log) for name in ("speculative", "base", "baseline")}
    measure_interleaved(Timer(), decoders, [1, 2, 3], repeats=2, warmup=0, generate_kwargs={"max_new_tokens": 1},
                        alternate=("speculative", "base"))
    runs = [log[i:i + 3] for i in range(0, len(log), 3)]
    assert runs == [["speculative", "base", "baseline"], ["base", "speculative", "baseline"]] * 3


# --- the verdict on synthetic paired samples -------------------------------------------------------------------


def _samples(name: str, rng: random.Random, prompts: list[float], slowdown: float, noise: float) -> PerfSamples:
    runs = []
    for length in prompts:
        ttft = 0.01 * length * (1 + slowdown) * rng.lognormvariate(0, noise)
        token = 0.004 * (1 + slowdown) * rng.lognormvariate(0, noise)
        times = tuple(ttft + i * token for i in range(16))
        runs.append(TimedDecode(DecodeResult([0] * 16, DecodeStats(new_tokens=16)), 0.0, times, times[-1]))
    return PerfSamples(name, tuple(runs))


def synthetic_ab(rng: random.Random, slowdown: float, noise: float = 0.03) -> PerfRecord:
    """24 runs (8 prompts of lengths that differ fourfold, 3 repeats): head, base and baseline."""
    prompts = [1 + 3 * (i % 8) / 7 for i in range(24)]
    head = _samples("speculative", rng, prompts, slowdown, noise)
    base = _samples("base", rng, prompts, 0.0, noise)
    baseline = _samples("baseline", rng, prompts, 0.8, noise)
    return PerfRecord("test_speed", "tiny", 4, "greedy", 16, head, baseline, base=base)


def test_identical_head_and_base_rarely_flagged():
    rng = random.Random(SEED)
    flagged = sum(ab.compare_ab(synthetic_ab(rng, 0.0), "base").failed for _ in range(300))
    assert flagged <= FALSE_ALARM_BUDGET * 300, f"{flagged} false alarms in 300 A/A comparisons"


def test_companion_a_6_percent_slower_head_is_flagged():
    rng = random.Random(SEED)
    flagged = sum(ab.compare_ab(synthetic_ab(rng, 0.06), "base").failed for _ in range(100))
    assert flagged >= 95, f"a 6% slowdown flagged in only {flagged} of 100 comparisons"


def test_the_verdict_names_base_speedups_and_evidence():
    verdict = ab.compare_ab(synthetic_ab(random.Random(SEED), 0.25), "main's reference")
    assert verdict.failed and {m.metric for m in verdict.regressions} == {"tokens_per_s", "ttft", "tpot"}
    text = verdict.message()
    assert "against the base decoder main's reference" in text and "Wilcoxon" in text
    assert math.isclose(verdict.base_speedup, 1.8, rel_tol=0.05)
    assert json.dumps(verdict.as_dict())  # the summary and the report list it like a stored comparison


# --- end to end: a second checkout, a foreign stored baseline ---------------------------------------------------

AB_TEST = """
import pytest

@pytest.mark.specdec_perf(prompts=4, max_new_tokens=8, repeats=3, warmup=1)
def test_speed(specdec_measure, specdec_baseline_check):
    specdec_baseline_check(specdec_measure(gamma=3))
"""


@pytest.fixture
def base_checkout(tmp_path):
    """The reference decoder as the base branch has it: a copy of this checkout's package (weights left out)."""
    folder = tmp_path / "base-checkout"
    shutil.copytree(ROOT / "reference_impl", folder / "reference_impl",
                    ignore=shutil.ignore_patterns("__pycache__", "trained"))
    return folder


@pytest.mark.specdec_perf  # a timing test: kept out of runs where xdist workers compete with the clock
def test_a_slower_decoder_fails_the_ab_where_the_stored_baseline_cannot_judge(pytester, monkeypatch, base_checkout):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("SPECDEC_INJECTED_SLOWDOWN", "4")  # target passes 5x as long: beyond any machine noise
    pytester.makepyfile(test_ab_gate=AB_TEST)
    stored = pytester.path / "stored"
    common = ["-p", "no:cacheprovider", "-p", "no:xdist", f"{opts.PAIR}=tiny-llama-partial",
              f"{opts.BASELINE_DIR}={stored}"]
    pytester.runpytest_subprocess(*common, opts.SAVE_BASELINE).assert_outcomes(passed=1)
    path = stored / "tiny-llama-partial.json"
    document = json.loads(path.read_text())
    for entry in document["entries"].values():
        entry["fingerprint"]["device"] += " (another machine)"  # recorded elsewhere, whatever machine runs this
    path.write_text(json.dumps(document))
    base = [f"{opts.BASE_IMPL}=reference_impl.speculative:SpeculativeDecoder", f"{opts.BASE_PATH}={base_checkout}"]
    out = pytester.path / "results.json"

    result = pytester.runpytest_subprocess(*common, *base, f"{opts.IMPL}=tests.support.injected:slow_target",
                                           f"{opts.JSON}={out}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*regression in test_speed* against the base decoder reference_impl.speculative:"
                                 f"SpeculativeDecoder from {base_checkout}, timed interleaved*",
                                 "*ttft: baseline median * -> now *worse*Wilcoxon*"])
    statuses = [c["status"] for c in json.loads(out.read_text())["baseline_comparisons"]]
    assert statuses == ["deterministic only", ab.STATUS]

    unchanged = pytester.runpytest_subprocess(*common, *base, f"{opts.JSON}={out}")
    unchanged.assert_outcomes(passed=1)
    comparisons = json.loads(out.read_text())["baseline_comparisons"]
    assert [c["status"] for c in comparisons] == ["deterministic only", ab.STATUS]
    assert all(m["verdict"] != "regressed" for m in comparisons[1]["timing"])


def test_ttft_is_judged_on_the_short_runs_when_there_are_some():
    rng = random.Random(SEED)
    record = synthetic_ab(rng, 0.0)
    prompts = [1 + 3 * (i % 8) / 7 for i in range(96)]
    short = {"speculative": _samples("speculative", rng, prompts, 0.10, 0.15),
             "base": _samples("base", rng, prompts, 0.0, 0.15)}
    with_short = dataclasses.replace(record, first_tokens=short)
    assert {m.metric: m.verdict for m in ab.compare_ab(with_short, "base").timing}["ttft"] == "regressed"
    assert {m.metric: m.verdict for m in ab.compare_ab(record, "base").timing}["ttft"] != "regressed"
