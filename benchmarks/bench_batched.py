"""Throughput with batch size: the batched reference speculative decoder against the batched baseline.

Usage (from the repository root; alone on a quiet machine, one torch thread)::

    flock -x /tmp/specdec-timing.lock python -m benchmarks.bench_batched --pair calibrated-40m --gamma 3 \\
        --threads 1 --out docs/measurements/batched-calibrated-40m
    flock -x /tmp/specdec-timing.lock python -m benchmarks.bench_batched --samples --threads 1 \\
        --out docs/measurements/batched-samples

writes ``<out>.md`` and ``<out>.json``. For each batch size B, B prompts of different lengths
(seeded random ids, lengths 3-24) are decoded greedily to ``--max-new-tokens`` each, by both
batched decoders (``reference_impl.batched``), interleaved: each repeat runs both at every batch
size, the order alternating, after one warm-up decode of each. Figures:

- tok/s: new tokens of all rows over the wall time of the ``generate_batch`` call; median over repeats.
- speedup: per repeat, speculative tok/s over the baseline's at the same B; median over repeats.
- alpha: A / (A + R) pooled over the rows; target passes/token: batch-wide target passes over all
  rows' new tokens; identical: rows whose tokens equal the baseline's.
- crossover: the smallest measured B at which the speedup falls below 1 (none: speculation still pays at 16).

``--samples`` instead measures batched sampling as a source of samples for the distribution
tests: samples/s of ``generate`` one call per sample against ``generate_batch`` at several batch
sizes, on the end-to-end distribution test's tiny pair and prompt (tests/law/test_distribution_e2e.py).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.bench_decoders import load_pair, publish

PROMPT_LENGTHS = (5, 9, 12, 17, 7, 23, 3, 14, 11, 20, 6, 15, 24, 8, 19, 4)


@dataclass(frozen=True)
class BatchedBenchConfig:
    pair: str = "calibrated-40m"
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16)
    gamma: int = 3
    max_new_tokens: int = 64
    repeats: int = 3
    threads: int | None = 1


def batch_prompts(vocab: int, batch: int) -> list[Any]:
    """``batch`` (1, L) prompts of seeded random ids, lengths from PROMPT_LENGTHS."""
    import torch

    generator = torch.Generator().manual_seed(4321)
    return [torch.randint(2, vocab, (1, PROMPT_LENGTHS[i % len(PROMPT_LENGTHS)]), generator=generator)
            for i in range(batch)]


def timed_batch(decoder: Any, prompts: list[Any], max_new_tokens: int, gamma: int) -> dict[str, Any]:
    start = time.perf_counter()
    results = decoder.generate_batch(prompts, max_new_tokens=max_new_tokens, gamma=gamma)
    wall = time.perf_counter() - start
    tokens = sum(len(r.tokens) for r in results)
    return {"wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall, "target_passes": decoder._target.passes,
            "draft_passes": getattr(getattr(decoder, "_draft", None), "passes", 0),
            "accepted": sum(r.stats.accepted for r in results), "rejections": sum(r.stats.rejections for r in results),
            "rows": [r.tokens for r in results]}


def summarise(batch: int, spec: list[dict[str, Any]], base: list[dict[str, Any]]) -> dict[str, Any]:
    first, ref = spec[0], base[0]
    accepted, rejections = first["accepted"], first["rejections"]
    return {
        "batch": batch,
        "baseline_tokens_per_s": statistics.median(r["tokens_per_s"] for r in base),
        "speculative_tokens_per_s": statistics.median(r["tokens_per_s"] for r in spec),
        "speedup": statistics.median(s["tokens_per_s"] / b["tokens_per_s"] for s, b in zip(spec, base, strict=True)),
        "alpha": accepted / (accepted + rejections) if accepted + rejections else None,
        "target_passes_per_token": first["target_passes"] / first["tokens"],
        "baseline_target_passes_per_token": ref["target_passes"] / ref["tokens"],
        "identical_rows": sum(a == b for a, b in zip(first["rows"], ref["rows"], strict=True)),
        "samples": {"speculative_tokens_per_s": [r["tokens_per_s"] for r in spec],
                    "baseline_tokens_per_s": [r["tokens_per_s"] for r in base]},
    }


def run_throughput(config: BatchedBenchConfig) -> dict[str, Any]:
    from pytest_specdec.perf.environment import describe_environment
    from pytest_specdec.perf.timing import torch_threads
    from reference_impl.batched import BatchedAutoregressiveDecoder, BatchedSpeculativeDecoder

    target, draft, _ = load_pair(config.pair)
    vocab = target.get_output_embeddings().weight.shape[0]
    decoders = {"speculative": BatchedSpeculativeDecoder(target, draft, gamma=config.gamma),
                "baseline": BatchedAutoregressiveDecoder(target)}
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {b: {"speculative": [], "baseline": []}
                                                         for b in config.batch_sizes}
    with torch_threads(config.threads):
        environment = describe_environment("cpu")
        for decoder in decoders.values():  # warm-up
            timed_batch(decoder, batch_prompts(vocab, 2), 8, config.gamma)
        for repeat in range(config.repeats):
            for index, batch in enumerate(config.batch_sizes):
                prompts = batch_prompts(vocab, batch)
                order = list(decoders) if (repeat + index) % 2 == 0 else list(decoders)[::-1]
                for name in order:
                    runs[batch][name].append(timed_batch(decoders[name], prompts, config.max_new_tokens, config.gamma))
    rows = [summarise(b, runs[b]["speculative"], runs[b]["baseline"]) for b in config.batch_sizes]
    crossover = next((row["batch"] for row in rows if row["speedup"] < 1.0), None)
    return {"config": asdict(config), "environment": environment, "rows": rows, "crossover_batch": crossover}


def throughput_markdown(result: dict[str, Any]) -> str:
    config, env = result["config"], result["environment"]
    lines = [
        f"#### {config['pair']}, gamma {config['gamma']}: B prompts of 3-24 tokens x {config['max_new_tokens']} "
        f"new tokens each, greedy, {config['repeats']} interleaved repeats",
        "",
        f"{env['device']}, torch {env['torch']} ({env['torch_threads']} threads), transformers {env['transformers']}.",
        "",
        "| batch | baseline tok/s | speculative tok/s | speedup | alpha | target passes/token (spec / base) "
        "| identical rows |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        alpha = "-" if row["alpha"] is None else f"{row['alpha']:.3f}"
        lines.append(f"| {row['batch']} | {row['baseline_tokens_per_s']:.1f} | {row['speculative_tokens_per_s']:.1f} "
                     f"| {row['speedup']:.2f} | {alpha} | {row['target_passes_per_token']:.3f} / "
                     f"{row['baseline_target_passes_per_token']:.3f} | {row['identical_rows']}/{row['batch']} |")
    crossover = result["crossover_batch"]
    lines += ["", f"Crossover: {'speculation still pays at every measured batch size' if crossover is None else ''}"
              f"{'' if crossover is None else f'speedup below 1 from batch size {crossover}'}."]
    return "\n".join(lines) + "\n"


# --- samples per second for the distribution tests ------------------------------------------------


def run_samples(batch_sizes: tuple[int, ...], n: int, threads: int | None) -> dict[str, Any]:
    import torch

    from pytest_specdec.perf.environment import describe_environment
    from pytest_specdec.perf.timing import torch_threads
    from reference_impl import SpeculativeDecoder
    from reference_impl.batched import BatchedSpeculativeDecoder
    from reference_impl.models.tiny import tiny_pair
    from tests.law.test_distribution_e2e import CONFIGS, GAMMA, LENGTH, PAIR, PROMPT

    target, draft = tiny_pair(**PAIR)
    sampling = CONFIGS["T1"]
    single, batched = SpeculativeDecoder(target, draft), BatchedSpeculativeDecoder(target, draft)
    rows = []
    with torch_threads(threads):
        environment = describe_environment("cpu")
        generator = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        for _ in range(n):
            single.generate(PROMPT, max_new_tokens=LENGTH, sampling=sampling, gamma=GAMMA, generator=generator)
        rows.append({"batch": "single generate", "samples_per_s": n / (time.perf_counter() - start)})
        for batch in batch_sizes:
            calls = max(1, n // batch)
            start = time.perf_counter()
            for call in range(calls):
                generators = [torch.Generator().manual_seed(call * batch + i) for i in range(batch)]
                batched.generate_batch([PROMPT] * batch, max_new_tokens=LENGTH, sampling=sampling, gamma=GAMMA,
                                       generators=generators)
            rows.append({"batch": batch, "samples_per_s": calls * batch / (time.perf_counter() - start)})
    for row in rows:
        row["gain"] = row["samples_per_s"] / rows[0]["samples_per_s"]
    return {"n": n, "pair": PAIR, "sampling": sampling.describe(), "length": LENGTH, "gamma": GAMMA,
            "environment": environment, "rows": rows}


def samples_markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [f"#### Samples/s for the end-to-end distribution test ({result['length']}-token continuations, "
             f"{result['sampling']}, gamma {result['gamma']}, about {result['n']} samples per source)", "",
             f"{env['device']}, torch {env['torch']} ({env['torch_threads']} threads).", "",
             "| source | samples/s | gain |", "|---|---|---|"]
    for row in result["rows"]:
        source = row["batch"] if isinstance(row["batch"], str) else f"generate_batch, {row['batch']} rows"
        lines.append(f"| {source} | {row['samples_per_s']:.0f} | {row['gain']:.1f}x |")
    return "\n".join(lines) + "\n"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = BatchedBenchConfig()
    parser.add_argument("--pair", default=defaults.pair)
    parser.add_argument("--batch-sizes", type=_ints, default=None, help="comma list (default 1,2,4,8,16; "
                        "with --samples 8,16,32,64)")
    parser.add_argument("--gamma", type=int, default=defaults.gamma)
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch threads (0: torch's own)")
    parser.add_argument("--samples", action="store_true", help="measure samples/s for the distribution tests")
    parser.add_argument("--n", type=int, default=400, help="with --samples: samples per source")
    parser.add_argument("--out", type=Path, default=None, help="write <out>.md and <out>.json")
    args = parser.parse_args(argv)
    if args.samples:
        result = run_samples(args.batch_sizes or (8, 16, 32, 64), args.n, args.threads)
        publish(samples_markdown(result), result, args.out)
        return
    config = BatchedBenchConfig(pair=args.pair, batch_sizes=args.batch_sizes or defaults.batch_sizes,
                                gamma=args.gamma, max_new_tokens=args.max_new_tokens, repeats=args.repeats,
                                threads=args.threads)
    result = run_throughput(config)
    for row in result["rows"]:
        row.pop("rows", None)
    publish(throughput_markdown(result), result, args.out)


if __name__ == "__main__":
    main()
