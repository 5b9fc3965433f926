"""The detection curve of the same-job A/B timing gate, measured in one process.

One *run* here is what one ``pytest tests/perf/test_perf.py --specdec-base-impl ...`` process does on
the timing side: for the greedy and the sampled test, the decoder under test ("head") and the base
decoder (the reference) timed interleaved on the test's protocol (``tests.perf.test_perf.PROTOCOL``: 8
prompts x 3 repeats, 48 new tokens, 2 warm-up decodes each; the two swap places on every other
run), with the perf tests' torch thread count, then ``pytest_specdec.perf.ab.compare_ab``. The run is
flagged when either test's verdict fails. Left out, to make a run cheaper: loading the pair per
run, and the autoregressive baseline the test also times in the same loop (the A/B verdict uses
only head and base, which stay adjacent in time either way; ``--with-baseline`` keeps it).
``benchmarks.gate_reliability --base`` checks the same gate through real pytest runs.

Conditions: ``unchanged`` (the reference as head: any flag is a false alarm) and
``KIND:FRACTION`` with KIND one of ``slow_target``, ``slow_draft`` (forward passes of that model
take 1 + FRACTION times as long) and ``host_work`` (every speculative step followed by a wait of
FRACTION of its own time), from ``tests/support/injected.py``. Within a round every condition runs once,
in an order rotated from round to round, so drift of the machine hits all conditions alike.

    flock -x /tmp/specdec-timing.lock python -m benchmarks.gate_curve run --minutes 8 \\
        --conditions unchanged,slow_target:0.1 --out docs/measurements/gate-curve/chunk-1.jsonl
    python -m benchmarks.gate_curve table docs/measurements/gate-curve/*.jsonl

``run`` appends one JSON line per test per run (the raw paired samples of every gated metric, so
verdicts can be recomputed under another rule) and stops after ``--minutes``; ``table`` recomputes
every verdict with the gate's rule (or ``--threshold``/``--alpha``) and prints the curve.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from pytest_specdec.perf import ab
from pytest_specdec.perf.baselines.verdicts import Metric, compare_samples

KINDS = ("slow_target", "slow_draft", "host_work")
TESTS = ("greedy", "sampled")


def parse_condition(text: str) -> tuple[str, float]:
    if text == "unchanged":
        return text, 0.0
    kind, _, fraction = text.partition(":")
    if kind not in KINDS or not fraction:
        raise SystemExit(f"a condition is 'unchanged' or KIND:FRACTION with KIND in {', '.join(KINDS)}; got {text!r}")
    return kind, float(fraction)


def load(pair_name: str) -> tuple[Any, list[Any]]:
    from pytest_specdec.loading import load_pair
    from pytest_specdec.options import SpecDecOptions
    from pytest_specdec.prompts import prompt_ids

    pair = load_pair(SpecDecOptions(pair=pair_name))
    vocab = pair.target.get_output_embeddings().weight.shape[0]
    return pair, prompt_ids(pair.tokenizer, vocab, pair.device)


def one_test(pair: Any, prompts: list[Any], kind: str, fraction: float, sampled: bool, gamma: int,
             with_baseline: bool, first_tokens: bool = True) -> dict:
    """Time head, base and baseline on one test's protocol; the A/B verdict and the raw paired samples."""
    import torch

    from pytest_specdec.perf.interleaved import PerfRecord, measure_interleaved
    from pytest_specdec.perf.timing import Timer
    from pytest_specdec.protocol.decoder import make_decoder
    from reference_impl.autoregressive import AutoregressiveDecoder
    from reference_impl.sampling import GREEDY, SamplingConfig
    from reference_impl.speculative import SpeculativeDecoder
    from tests.perf.test_perf import PROTOCOL
    from tests.support import injected

    if kind == "unchanged":
        head = make_decoder(SpeculativeDecoder, "head", pair.target, pair.draft, gamma=gamma)
    else:
        head = make_decoder(getattr(injected, kind), "head", pair.target, pair.draft, gamma=gamma, slowdown=fraction)
    base = make_decoder(SpeculativeDecoder, "base", pair.target, pair.draft, gamma=gamma)
    baseline = make_decoder(AutoregressiveDecoder, "baseline", pair.target, None)
    sampling = SamplingConfig(temperature=1.0) if sampled else GREEDY
    decoders = {"speculative": head, "base": base, **({"baseline": baseline} if with_baseline else {})}
    timer, prompts = Timer(pair.device), prompts[: PROTOCOL["prompts"]]
    kwargs = {"sampling": sampling, "gamma": gamma, "make_generator": lambda seed: torch.Generator().manual_seed(seed)}
    samples = measure_interleaved(
        timer, decoders, prompts, repeats=PROTOCOL["repeats"], warmup=PROTOCOL["warmup"],
        generate_kwargs={**kwargs, "max_new_tokens": PROTOCOL["max_new_tokens"]}, alternate=("speculative", "base"))
    first = ab.measure_first_tokens(timer, head, base, prompts, kwargs) if first_tokens else {}
    record = PerfRecord("curve", pair.label, gamma, sampling.describe(), PROTOCOL["max_new_tokens"],
                        samples["speculative"], samples.get("baseline", samples["base"]), base=samples["base"],
                        first_tokens=first)
    verdict = ab.compare_ab(record, "reference")
    raw = {m.name: ab.paired_samples(*ab.sides(record, m.name), m.name) for m in ab.AB_METRICS}
    return {"failed": verdict.failed, "verdicts": {m.metric: m.verdict for m in verdict.timing},
            "ratios": {m.name: round(ab.median_ratio(record, m.name), 5) for m in ab.AB_METRICS},
            "speedup": round(verdict.speedup, 4), "base_speedup": round(verdict.base_speedup, 4),
            "raw": {name: {"base": [round(v, 7) for v in b], "head": [round(v, 7) for v in h]}
                    for name, (b, h) in raw.items()}}


def run(args: argparse.Namespace) -> int:
    from pytest_specdec.perf.timing import torch_threads
    from tests.perf.test_perf import THREADS

    conditions = [parse_condition(c) for c in args.conditions.split(",")]
    pair, prompts = load(args.pair)
    deadline = time.monotonic() + 60 * args.minutes
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with torch_threads(THREADS), args.out.open("a", encoding="utf-8") as out:
        for round_index in range(args.rounds):
            shift = round_index % len(conditions)
            order = list(enumerate(conditions))
            for slot, (kind, fraction) in order[shift:] + order[:shift]:
                if time.monotonic() > deadline:
                    break
                load_avg = os.getloadavg()[0]
                running = Path("/proc/loadavg").read_text().split()[3] if Path("/proc/loadavg").exists() else "?"
                for test in TESTS:
                    start = time.perf_counter()
                    result = one_test(pair, prompts, kind, fraction, test == "sampled", args.gamma,
                                      args.with_baseline, not args.no_first_tokens)
                    line = {"chunk": args.out.stem, "first_tokens": not args.no_first_tokens, "round": round_index,
                            "slot": slot, "condition": kind,
                            "fraction": fraction, "test": test, "load": round(load_avg, 2), "running": running,
                            "seconds": round(time.perf_counter() - start, 1),
                            **result}
                    out.write(json.dumps(line) + "\n")
                    out.flush()
                    print(f"round {round_index} {kind}:{fraction:g} {test:<7} load {load_avg:.2f} ({running}) "
                          f"{'FLAGGED' if result['failed'] else 'ok     '} ratios {result['ratios']} "
                          f"in {line['seconds']} s", flush=True)
    return 0


def verdict(line: dict, threshold: float, alpha: float) -> bool:
    """Recompute one test's A/B verdict from its raw paired samples under (threshold, alpha)."""
    metrics = [Metric(m.name, m.lower_is_better, threshold) for m in ab.AB_METRICS]
    return any(compare_samples(m, line["raw"][m.name]["base"], line["raw"][m.name]["head"], paired=True,
                               alpha=alpha).verdict == "regressed" for m in metrics)


def curve(lines: list[dict], threshold: float, alpha: float) -> dict[tuple[bool, str, float], dict]:
    """Per gate variant (TTFT on short runs or not) and condition: runs (the greedy and the sampled test of one
    round), runs flagged, and the median ratios."""
    runs: dict[tuple[bool, str, float, str, int, int], list[dict]] = {}
    for line in lines:
        key = (line.get("first_tokens", False), line["condition"], line["fraction"], line["chunk"], line["round"],
               line["slot"])
        runs.setdefault(key, []).append(line)
    table: dict[tuple[bool, str, float], dict] = {}
    for (first, kind, fraction, *_), tests in sorted(runs.items()):
        if len(tests) != len(TESTS):
            continue  # a run cut short
        row = table.setdefault((first, kind, fraction), {"runs": 0, "flagged": 0, "tokens_per_s": [], "ttft": []})
        row["runs"] += 1
        row["flagged"] += any(verdict(t, threshold, alpha) for t in tests)
        for t in tests:
            row["tokens_per_s"].append(t["ratios"]["tokens_per_s"])
            row["ttft"].append(t["ratios"]["ttft"])
    return table


def table(args: argparse.Namespace) -> int:
    import statistics

    lines = [json.loads(text) for path in args.files for text in path.read_text().splitlines() if text.strip()]
    print(f"rule: median run-by-run ratio worse than {args.threshold:.1%} and one-sided Wilcoxon p < {args.alpha} "
          f"on any of {', '.join(m.name for m in ab.AB_METRICS)}, in the greedy or the sampled test")
    print("| TTFT judged on | condition | slowdown | runs | flagged | median tok/s ratio | median TTFT ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (first, kind, fraction), row in curve(lines, args.threshold, args.alpha).items():
        runs = f"{ab.FIRST_TOKEN_REPEATS * 8} short runs" if first else "the 24 main runs"
        print(f"| {runs} | {kind} | {fraction:.0%} | {row['runs']} | **{row['flagged']}** | "
              f"{statistics.median(row['tokens_per_s']):.3f} | {statistics.median(row['ttft']):.3f} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="measure: append raw verdicts to --out")
    run_parser.add_argument("--pair", default="trained")
    run_parser.add_argument("--gamma", type=int, default=4)
    run_parser.add_argument("--conditions", required=True, help="comma list: unchanged, KIND:FRACTION")
    run_parser.add_argument("--rounds", type=int, default=1000)
    run_parser.add_argument("--minutes", type=float, default=8.0, help="start no round after this many minutes")
    run_parser.add_argument("--out", type=Path, required=True)
    run_parser.add_argument("--with-baseline", action="store_true", help="time the autoregressive baseline too")
    run_parser.add_argument("--no-first-tokens", action="store_true",
                            help="judge TTFT on the main runs, without the short runs (the gate before ab.py had them)")
    table_parser = commands.add_parser("table", help="the curve from raw verdict files")
    table_parser.add_argument("files", type=Path, nargs="+")
    table_parser.add_argument("--threshold", type=float, default=ab.THRESHOLD)
    table_parser.add_argument("--alpha", type=float, default=ab.ALPHA)
    args = parser.parse_args(argv)
    return run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    sys.exit(main())
