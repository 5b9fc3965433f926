"""The report: latency curves and break-even length, the markdown text, the plot, the benchmark JSON."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_specdec import baselines as bl
from pytest_specdec import markdown_report, plot
from pytest_specdec import options as opts
from pytest_specdec.benchmark_json import benchmark_document, write_benchmark_json
from pytest_specdec.report import SessionResults, summary_lines
from reference_impl.stats import predicted_speedup

from .test_baselines import ENV, MEASUREMENT, PAIR, synthetic_record


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
    assert "![latency against output length, acceptance by position](specdec.png)" in text
    assert "### `test_speed[gamma4]`: compared" in text and "Deterministic figures: 12 of 12 match." in text
    assert "| speedup |" in text


def test_report_shows_a_regression_and_its_evidence():
    text = markdown_report.render(session(slowdown=0.3), ENV, decoder="ref:Decoder", plot="no matplotlib")
    assert "### `test_speed[gamma4]`: REGRESSION" in text
    assert "**regressed**" in text and "_No plot: no matplotlib._" in text
    lines = summary_lines(session(slowdown=0.3))
    assert any(line.startswith("baseline test_speed[gamma4]: REGRESSION; speedup regressed +") for line in lines)


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
    root = str(Path(__file__).parents[1])
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
