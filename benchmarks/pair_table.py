"""The model zoo's table: for every named pair, its size, load time, alpha, costs and best speedup.

Usage (from the repository root; run it alone on a quiet machine)::

    flock /tmp/specdec-timing.lock python -m benchmarks.pair_table --threads 1 --out results/pairs

For each pair (``--pairs`` selects, comma-separated; default: every named pair):

- params: all parameters of target and draft, and the target's without its input embeddings and
  output head (non-embedding).
- files: bytes on disk of a pair loaded from folders; pairs built from a seed have none.
- load: wall seconds of ``from_pretrained`` for both models (folders), or of building the pair:
  the first time in the process (which imports the architecture's modules) and again.
- alpha = A / (A + R), c, v(5) and the best fixed gamma's speedup come from one run of
  ``benchmarks.bench_decoders`` on the pair (greedy, baseline and the reference decoder at gamma
  1..8 and auto, interleaved; no Hugging Face decoders). alpha is the gamma-4 row's.

writes ``<out>.md`` and ``<out>.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_decoders import BenchConfig, load_pair, publish, run_benchmark

# (prompts, max_new_tokens, repeats) by kind of pair: tiny pairs are milliseconds per decode.
PROTOCOLS = {"tiny": (4, 32, 5), "trained": (4, 64, 5), "calibrated": (2, 64, 3), "table": (4, 32, 5)}


def kind(name: str) -> str:
    return name.split("-", 1)[0]


def count_params(model: Any) -> tuple[int, int]:
    """(all parameters, parameters outside the input embeddings and the output head)."""
    total = sum(p.numel() for p in model.parameters())
    embedding = {id(p) for m in (model.get_input_embeddings(), model.get_output_embeddings()) for p in m.parameters()}
    return total, sum(p.numel() for p in model.parameters() if id(p) not in embedding)


def folder_bytes(*folders: Path | None) -> int:
    return sum(f.stat().st_size for folder in folders if folder for f in folder.rglob("*") if f.is_file())


def measure_pair(name: str, threads: int | None) -> dict[str, Any]:
    from reference_impl.models import named_pairs

    entry = named_pairs()[name]
    start = time.perf_counter()
    models = load_pair(name)
    first_load_s = time.perf_counter() - start  # includes importing the architecture's modules, once per process
    start = time.perf_counter()
    models = load_pair(name)
    load_s = time.perf_counter() - start
    prompts, tokens, repeats = PROTOCOLS[kind(name)]
    config = BenchConfig(pair=name, prompts=prompts, max_new_tokens=tokens, repeats=repeats, warmup=1,
                         hf_gammas=(), hf_default=False, threads=threads)
    result = run_benchmark(config, models)
    rows = {row["name"]: row for row in result["rows"]}
    best = rows[result["verdicts"]["best_fixed"]]
    target_params, target_non_embedding = count_params(models[0])
    draft_params, _ = count_params(models[1])
    return {
        "pair": name,
        "source": "folders" if entry.build is None else "built from a seed",
        "target_params": target_params,
        "target_non_embedding_params": target_non_embedding,
        "draft_params": draft_params,
        "file_bytes": folder_bytes(entry.target_path, entry.draft_path),
        "first_load_s": first_load_s,
        "load_s": load_s,
        "alpha_gamma4": rows["reference g=4"]["alpha"],
        "c": result["costs"]["c"],
        "v5": result["costs"]["v"]["5"],
        "best_gamma": best["gamma"],
        "best_speedup": best["speedup"],
        "speedup_by_repeat": best["speedup_by_repeat"],
        "auto_speedup": rows["reference auto"]["speedup"],
        "gamma4_speedup": rows["reference g=4"]["speedup"],
        "identical": result["verdicts"]["identical"],
        "protocol": {"prompts": prompts, "max_new_tokens": tokens, "repeats": repeats},
        "environment": result["environment"],
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    env = rows[0]["environment"] if rows else {}
    lines = [
        f"{env.get('device')}, torch {env.get('torch')} ({env.get('torch_threads')} threads), "
        f"transformers {env.get('transformers')}; greedy; speedups are medians over interleaved repeats.",
        "",
        "| pair | target params (non-embedding) | draft params | files | load s (first / again) "
        "| alpha (gamma 4) | c | v(5) | best gamma | speedup at best gamma | speedup at gamma 4 | speedup auto "
        "| protocol |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        files = f"{r['file_bytes'] / 2**20:.1f} MiB" if r["file_bytes"] else "none (seeded build)"
        p = r["protocol"]
        lines.append(
            f"| {r['pair']} | {r['target_params']:,} ({r['target_non_embedding_params']:,}) | {r['draft_params']:,} "
            f"| {files} | {r['first_load_s']:.2f} / {r['load_s']:.2f} | {r['alpha_gamma4']:.3f} | {r['c']:.3f} "
            f"| {r['v5']:.2f} "
            f"| {r['best_gamma']} | {r['best_speedup']:.2f}x | {r['gamma4_speedup']:.2f}x | {r['auto_speedup']:.2f}x "
            f"| {p['prompts']} x {p['max_new_tokens']} tok, {p['repeats']} rep |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from reference_impl.models import named_pairs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default=None, help="comma list of pair names (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--out", type=Path, default=None, help="write <out>.md and <out>.json")
    args = parser.parse_args(argv)
    names = args.pairs.split(",") if args.pairs else list(named_pairs())
    unknown = sorted(set(names) - set(named_pairs()))
    if unknown:
        raise SystemExit(f"unknown pair(s) {', '.join(unknown)}; named pairs: {', '.join(sorted(named_pairs()))}")
    rows = []
    for name in names:
        rows.append(measure_pair(name, args.threads))
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    publish(markdown(rows), rows, args.out)


if __name__ == "__main__":
    main()
