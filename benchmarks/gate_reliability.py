"""How reliable is the performance gate? Rerun it against the stored baseline and count verdicts.

Three experiments, interleaved run by run so drift of the machine hits them alike:

- ``unchanged``: the reference decoder. Any failure is a false alarm (goal: 0 of 10).
- ``slow_target``: ``tests.support.injected:slow_target``, target forward passes 25% slower. It must be
  flagged by the timing metrics (goal: at least 9 of 10).
- ``extra_draft_prefill``: ``tests.support.injected:extra_draft_prefill``, the draft re-prefilled every
  step. It must fail through the deterministic figures (goal: 10 of 10).

Each run is a fresh ``pytest tests/perf/test_perf.py`` process comparing against ``--baseline-dir``
(default: the committed ``baselines/``; ``--record`` first records a fresh baseline into a
temporary folder instead). With ``--base-impl`` (and ``--base-path``) each run also times that
base decoder interleaved, the same-job A/B (pytest_specdec/perf/ab.py); ``--slowdown`` sets the
injected slowdown (``SPECDEC_INJECTED_SLOWDOWN``) and ``--experiments`` picks a subset. Usage, from
the repository root, alone on the machine::

    flock -x /tmp/specdec-timing.lock python -m benchmarks.gate_reliability --pair trained --runs 10
    flock -x /tmp/specdec-timing.lock python -m benchmarks.gate_reliability --runs 2 --slowdown 0.1 \
        --base-impl reference_impl.speculative:SpeculativeDecoder --experiments unchanged,slow_target

The detection curve of the A/B gate is measured more cheaply in one process: benchmarks/gate_curve.py.

prints one line per run and the counts, writes every verdict to ``--out`` (JSON), and exits 0 when
all three goals are met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = {
    "unchanged": None,
    "slow_target": "tests.support.injected:slow_target",
    "extra_draft_prefill": "tests.support.injected:extra_draft_prefill",
}


def run_gate(args: argparse.Namespace, impl: str | None, baseline_dir: Path, *extra: str) -> dict:
    """One pytest run of the perf tests; returns its exit code and every baseline comparison it made."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        command = [sys.executable, "-m", "pytest", "tests/perf/test_perf.py", "-p", "no:cacheprovider",
                   "-p", "no:xdist", "-q", f"--specdec-pair={args.pair}", f"--specdec-gamma={args.gamma}",
                   f"--specdec-baseline-dir={baseline_dir}", f"--specdec-json={out}", *extra]
        if impl:
            command.append(f"--specdec-impl={impl}")
        if args.base_impl:
            command.append(f"--specdec-base-impl={args.base_impl}")
        if args.base_path:
            command.append(f"--specdec-base-path={args.base_path}")
        if args.k:
            command += ["-k", args.k]
        start = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(ROOT),  # tests.support.injected must import in the subprocess
               "SPECDEC_INJECTED_SLOWDOWN": str(args.slowdown)}
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
        results = json.loads(out.read_text()) if out.exists() else {}
    return {"exit_code": done.returncode, "seconds": seconds, "comparisons": results.get("baseline_comparisons", []),
            "tail": done.stdout[-3000:] + done.stderr[-2000:]}


def classify(run: dict) -> dict:
    """What caught it: timing metrics that regressed, deterministic figures that moved, inconclusive metrics."""
    timing, figures, inconclusive, statuses = set(), set(), set(), set()
    for comparison in run["comparisons"]:
        statuses.add(comparison["status"])
        timing |= {m["metric"] for m in comparison["timing"] if m["verdict"] == "regressed"}
        inconclusive |= {m["metric"] for m in comparison["timing"] if m["verdict"] == "inconclusive"}
        figures |= {f["figure"] for f in comparison["deterministic"] if not f["ok"]}
    return {"failed": run["exit_code"] == 1, "timing": sorted(timing), "deterministic": sorted(figures),
            "inconclusive": sorted(inconclusive), "statuses": sorted(statuses)}


def summarise(verdicts: dict[str, list[dict]]) -> dict[str, dict]:
    runs = {name: len(verdicts.get(name, [])) for name in EXPERIMENTS}
    unchanged, slow, prefill = (verdicts.get(name, []) for name in EXPERIMENTS)
    counts = {
        "unchanged": {"runs": runs["unchanged"], "false_alarms": sum(v["failed"] for v in unchanged),
                      "runs_with_inconclusive": sum(bool(v["inconclusive"]) for v in unchanged)},
        "slow_target": {"runs": runs["slow_target"], "flagged": sum(v["failed"] and bool(v["timing"]) for v in slow),
                        "runs_with_inconclusive": sum(bool(v["inconclusive"]) for v in slow)},
        "extra_draft_prefill": {"runs": runs["extra_draft_prefill"],
                                "failed_on_deterministic": sum(v["failed"] and bool(v["deterministic"])
                                                               for v in prefill)},
    }
    counts["goals_met"] = {
        "no false alarm": counts["unchanged"]["false_alarms"] == 0,
        "slowdown flagged in >= 90%": counts["slow_target"]["flagged"] >= 0.9 * runs["slow_target"],
        "extra prefill always fails deterministically":
            counts["extra_draft_prefill"]["failed_on_deterministic"] == runs["extra_draft_prefill"],
    }
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", default="trained")
    parser.add_argument("--gamma", default="4")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--baseline-dir", type=Path, default=ROOT / "baselines")
    parser.add_argument("--record", action="store_true", help="record a fresh baseline in a temporary folder first")
    parser.add_argument("-k", help="select perf tests by pytest -k expression "
                                   "(default: all of tests/perf/test_perf.py)")
    parser.add_argument("--out", type=Path, default=Path("gate-reliability.json"))
    parser.add_argument("--base-impl", help="also time this base decoder interleaved (same-job A/B)")
    parser.add_argument("--base-path", help="import --base-impl's package from this checkout")
    parser.add_argument("--slowdown", type=float, default=0.25, help="injected slowdown of slow_target (fraction)")
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS), help="comma list of experiments to run")
    args = parser.parse_args(argv)
    chosen = {name: EXPERIMENTS[name] for name in args.experiments.split(",")}

    with tempfile.TemporaryDirectory() as tmp:
        baseline_dir = args.baseline_dir
        if args.record:
            baseline_dir = Path(tmp) / "baselines"
            recorded = run_gate(args, None, baseline_dir, "--specdec-save-baseline")
            print(f"recorded a fresh baseline in {baseline_dir} (exit {recorded['exit_code']})", flush=True)
        verdicts: dict[str, list[dict]] = {name: [] for name in chosen}
        for index in range(args.runs):
            for name, impl in chosen.items():
                run = run_gate(args, impl, baseline_dir)
                verdict = {**classify(run), "exit_code": run["exit_code"], "seconds": round(run["seconds"], 1)}
                verdicts[name].append(verdict)
                print(f"run {index + 1:2d} {name:<20} exit {run['exit_code']} in {run['seconds']:5.1f} s; "
                      f"timing regressed: {', '.join(verdict['timing']) or '-'}; deterministic moved: "
                      f"{', '.join(verdict['deterministic']) or '-'}; inconclusive: "
                      f"{', '.join(verdict['inconclusive']) or '-'}; {'/'.join(verdict['statuses'])}", flush=True)
                if run["exit_code"] not in (0, 1):
                    print(run["tail"], flush=True)
    counts = summarise(verdicts)
    baseline_dir = os.path.relpath(args.baseline_dir, ROOT) if args.baseline_dir.is_absolute() else args.baseline_dir
    args.out.write_text(json.dumps({"pair": args.pair, "gamma": args.gamma, "baseline_dir": str(baseline_dir),
                                    "base_impl": args.base_impl, "slowdown": args.slowdown,
                                    "counts": counts, "runs": verdicts}, indent=2) + "\n")
    print(json.dumps(counts, indent=2))
    return 0 if all(counts["goals_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
