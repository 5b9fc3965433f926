"""The report: latency curves and break-even length, the markdown text, the plot, the benchmark JSON."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_specdec import options as opts
from pytest_specdec.perf import acceptance
from pytest_specdec.perf import baselines as bl
from pytest_specdec.report import markdown as markdown_report
from pytest_specdec.report import plot
from pytest_specdec.report import summary as report
from pytest_specdec.report.benchmark_json import benchmark_document, write_benchmark_json
from pytest_specdec.report.summary import SessionResults, summary_lines
from reference_impl.stats import predicted_speedup
from tests.perf.test_baselines import ENV, MEASUREMENT, PAIR, synthetic_record
from tests.support import ROOT


def session(slowdown: float = 0.0, compare: bool = True) -> SessionResults:
    results = SessionResults(load_seconds={"tiny": {"target": 0.5, "draft": 0.1}})
    record = synthetic_record(1, slowdown=slowdown)
    results.perf.append(record)
    if compare:
        old = synthetic_record(2)
        stored = [bl.StoredBaseline(Path("baselines/tiny.json"), "k1", bl.fingerprint(ENV, PAIR, MEASUREMENT),
                                    bl.timing_samples(old), bl.deterministic_figures(old), "2025-01-01")]
        comparison = bl.compare(stored, bl.fingerprint(ENV, PAIR, MEASUREMENT), bl.timing_samples(record),
                                bl.deterministic_figures(record), exact_numerics=True)
        results.comparisons.append(comparison.as_dict())
    return results


def test_break_even_length():
    assert plot.break_even_length([1, 2, 2.5, 3, 3.5], [1, 1.5, 2.5, 3.5, 4.5]) == 3
    assert plot.break_even_length([1, 1, 3, 3], [1, 2, 2, 4]) == 4  # it must stay below to the end
    assert plot.break_even_length([2, 3], [1, 2]) is None
    assert plot.break_even_length([], []) is None


def test_curve_is_the_median_time_to_each_token():
    record = synthetic_record(1)
    spec, base = plot.curve(record.speculative), plot.curve(record.baseline)
    assert len(spec) == len(base) == 16
    assert spec == sorted(spec) and base == sorted(base)
    assert spec[0] == pytest.approx(record.speculative.median("ttft"))
    assert plot.break_even_length(spec, base) is not None  # bursts of 3 at 1.5x per-token cost win early


def test_report_tells_wall_clock_truth():
    results = session()
    text = markdown_report.render(results, ENV, decoder="ref:Decoder", plot=Path("out/specdec.png"))
    record = results.perf[0]
    alpha = record.speculative.alpha_estimate
    assert f"{predicted_speedup(alpha, 4, 0.2, 1.2):.2f}x" in text
    assert f"**{record.speedup:.2f}x**" in text
    assert "a count, not a speed" in text and "break-even length" in text
    assert "![latency against output length, acceptance by position and per request](specdec.png)" in text
    assert "### `test_speed[gamma4]`: compared" in text and "Deterministic figures: 12 of 12 match." in text
    assert "| speedup |" in text


def test_report_shows_a_regression_and_its_evidence():
    text = markdown_report.render(session(slowdown=0.3), ENV, decoder="ref:Decoder", plot="no matplotlib")
    assert "### `test_speed[gamma4]`: REGRESSION" in text
    assert "**regressed**" in text and "_No plot: no matplotlib._" in text
    lines = summary_lines(session(slowdown=0.3))
    assert any(re.match(r"baseline test_speed\[gamma4\]: REGRESSION; speedup regressed \(\d+% worse\)", line)
               for line in lines), lines


def test_plot_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = plot.draw(tmp_path / "specdec.png", session(compare=False).perf)
    assert path == tmp_path / "specdec.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_matplotlib_is_said_in_the_report_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    written = markdown_report.write_report(tmp_path, session(), ENV, decoder="ref:Decoder")
    assert written["plot"] == plot.MISSING_MATPLOTLIB
    assert "matplotlib is not installed" in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "specdec.png").exists()


def test_benchmark_json_has_pytest_benchmarks_layout():
    document = benchmark_document(session(), ENV)
    assert set(document) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    names = [b["name"] for b in document["benchmarks"]]
    assert names == [f"test_speed[gamma4][{role}-{q}]" for role in ("speculative", "baseline")
                     for q in ("latency", "ttft")]
    latency = document["benchmarks"][0]
    assert latency["stats"]["rounds"] == 24 and len(latency["stats"]["data"]) == 24
    assert latency["stats"]["ops"] == pytest.approx(24 / sum(latency["stats"]["data"]))
    info = latency["extra_info"]
    assert info["speedup"] > 1 and info["prefills_per_request"] == 2 and info["baseline_status"] == "compared"
    json.dumps(document, allow_nan=False)  # strict JSON: dashboards choke on NaN


def test_pytest_benchmark_compare_reads_the_file(tmp_path):
    path = write_benchmark_json(tmp_path / "benchmark.json", session(), ENV)
    cli = Path(sys.executable).with_name("pytest-benchmark")
    done = subprocess.run([str(cli), "compare", str(path), "--columns=min,median,mean,rounds"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "test_speed[gamma4][speculative-latency]" in done.stdout
    assert "Failed to load" not in done.stdout + done.stderr


def test_report_dir_from_the_command_line(pytester, monkeypatch):
    root = str(ROOT)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.specdec_perf(prompts=2, max_new_tokens=6, repeats=2, warmup=1)
        def test_speed(specdec_measure):
            specdec_measure(gamma=2)
        """
    )
    out = pytester.path / "report"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"{opts.PAIR}=tiny-llama-partial",
                                           f"{opts.REPORT_DIR}={out}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"specdec: report written to {out / 'report.md'}"])
    assert {p.name for p in out.iterdir()} >= {"report.md", "benchmark.json", "results.json"}
    text = (out / "report.md").read_text()
    assert "# Speculative decoding: wall-clock report" in text and "test_speed" in text
    results = json.loads((out / "results.json").read_text())
    costs = results["perf"][0]["forward_costs"]
    assert costs["gamma"] == 2 and costs["c"] > 0 and costs["v"] > 0 and not math.isnan(costs["c"])


# --- a change in words, paths relative to the repository, acceptance per request -------------------------


def test_a_change_reads_the_right_way_round():
    assert report.describe_change(0.026) == "2.6% worse"
    assert report.describe_change(-0.026) == "2.6% better"
    assert report.describe_change(-0.0001) == "no change" and report.describe_change(None) == "-"
    assert report.describe_change(-0.26, 0) == "26% better"


def test_a_faster_run_reads_better_in_the_report_and_the_summary():
    """The new run is faster than the stored one: every negative change must read 'better', never '-x% worse'."""
    results = session(slowdown=-0.2)
    text = markdown_report.render(results, ENV, decoder="ref:Decoder", plot="none")
    lines = "\n".join(summary_lines(results))
    for written in (text, lines):
        assert not re.search(r"-\d+(\.\d+)?% worse", written), written
        assert re.search(r"\d+(\.\d+)?% better", written)
    better = [m for m in results.comparisons[0]["timing"] if m["worse_by"] < 0]
    assert better, "the faster run must improve at least one metric"
    assert f"| {report.describe_change(better[0]['worse_by'])} |" in text


def test_paths_under_the_repository_are_written_relative_to_it(tmp_path):
    """Baseline path and notes name tmp_path (the rootdir); nothing written names it."""
    results = session()
    results.root = tmp_path
    results.comparisons[0]["baseline"]["path"] = str(tmp_path / "baselines" / "tiny.json")
    results.notes.append(f"baseline for test_speed saved to {tmp_path / 'baselines' / 'tiny.json'} (entry k1)")
    written = [markdown_report.render(results, ENV, decoder="ref:Decoder", plot=tmp_path / "r" / "specdec.png"),
               json.dumps(results.as_dict(ENV)), json.dumps(benchmark_document(results, ENV))]
    for text in written:
        assert str(tmp_path) not in text
    assert "`baselines/tiny.json` entry `k1`" in written[0] and "saved to baselines/tiny.json (entry k1)" in written[1]
    results.root = tmp_path / "elsewhere"  # the mutant: a root the paths are not under leaves them absolute
    assert str(tmp_path) in markdown_report.render(results, ENV, decoder="ref:Decoder", plot="none")


def with_bad_prompt(record, prompt: int, prompts: int = 8):
    """``record`` with every request of ``prompt`` rejected at each step (alpha 0), the others untouched."""
    runs = list(record.speculative.runs)
    for i in range(prompt, len(runs), prompts):
        stats = runs[i].result.stats
        bad = dataclasses.replace(stats, accepted=0, rejections=stats.steps)
        runs[i] = dataclasses.replace(runs[i], result=dataclasses.replace(runs[i].result, stats=bad))
    spec = dataclasses.replace(record.speculative, runs=tuple(runs))
    return dataclasses.replace(record, speculative=spec)


def test_acceptance_per_request_shows_the_requests_the_pooled_alpha_hides():
    record = with_bad_prompt(synthetic_record(1), prompt=5)
    d = acceptance.distribution(record)
    assert d["requests"] == 24 and d["without_drafts"] == 0
    assert d["pooled_alpha"] > 0.6, "the pooled figure looks healthy"
    assert d["alpha"]["min"] == 0.0 and d["alpha"]["max"] == pytest.approx(2 / 3)
    assert d["worst"] == {"request": 5, "prompt": 5, "alpha": 0.0, "accepted": 0, "rejections": 5}
    assert d["alpha_histogram"][0] == 3 and d["alpha_histogram"][6] == 21
    healthy = acceptance.distribution(synthetic_record(1))  # the control: every request alike, nothing hidden
    assert healthy["alpha"]["min"] == healthy["alpha"]["max"] and healthy["alpha_histogram"][0] == 0

    results = SessionResults(perf=[record])
    text = markdown_report.render(results, ENV, decoder="ref:Decoder", plot="none")
    assert "Acceptance per request" in text
    assert f"| test_speed[gamma4] | 24 | {d['pooled_alpha']:.3f} | 0.000 | " in text
    assert "request 5 (prompt 5): 0 accepted, 5 rejections" in text
    assert "| test_speed[gamma4] | 3 | 0 | 0 | 0 | 0 | 0 | 21 | 0 | 0 | 0 |" in text
    assert any(line.startswith("alpha per request test_speed[gamma4]: min 0.000,") and "prompt 5" in line
               for line in summary_lines(results))
    assert results.as_dict(ENV)["perf"][0]["per_request_acceptance"]["worst"]["prompt"] == 5
    info = benchmark_document(results, ENV)["benchmarks"][0]["extra_info"]
    assert info["per_request_alpha"]["min"] == 0.0 and info["per_request_alpha"]["histogram"][0] == 3


def test_quartiles_and_histogram_edges():
    assert acceptance.quartiles([0.0, 0.25, 0.5, 0.75, 1.0]) == {"min": 0.0, "q1": 0.25, "median": 0.5, "q3": 0.75,
                                                                 "max": 1.0}
    assert acceptance.quartiles([0.4])["q1"] == 0.4 and math.isnan(acceptance.quartiles([])["median"])
    assert acceptance.histogram([0.0, 0.1, 0.95, 1.0]) == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]


def test_a_decoder_without_drafts_has_no_per_request_alpha(tmp_path):
    """The autoregressive baseline as the decoder under test: no alpha, no crash, strict JSON, a plot."""
    record = synthetic_record(1)
    record = dataclasses.replace(record, speculative=record.baseline)
    d = acceptance.distribution(record)
    assert d["without_drafts"] == 24 and d["worst"] is None
    results = SessionResults(perf=[record])
    assert "(+24 without drafts)" in markdown_report.render(results, ENV, decoder="ref:Decoder", plot="none")
    json.dumps(benchmark_document(results, ENV), allow_nan=False)
    if importlib.util.find_spec("matplotlib"):
        assert plot.draw(tmp_path / "specdec.png", results.perf) == tmp_path / "specdec.png"
