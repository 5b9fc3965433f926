"""Side-by-side decoder benchmark: the baseline, the reference decoder at each gamma and at auto
gamma, and Hugging Face assisted generation at its defaults and at fixed gammas, on one pair.

Usage (from the repository root; run it alone on a quiet machine)::

    flock /tmp/specdec-timing.lock python -m benchmarks.bench_decoders --pair calibrated-110m \\
        --prompts 4 --max-new-tokens 128 --repeats 3 --out results/bench-calibrated-110m

writes ``<out>.md`` (the table) and ``<out>.json`` (every figure and raw sample). All decoders run
greedy on the same prompts, interleaved: each repeat runs every decoder on every prompt in turn,
after warm-up, in an order that rotates from prompt to prompt, so drift of the machine hits them
alike and no decoder always runs first. Figures:

- tok/s: per repeat, tokens over wall time summed over the prompts; the median over repeats.
- speedup: per repeat, tok/s over the baseline's in the same repeat; the median over repeats.
- predicted: the FIELD-NOTES model from the decoder's own alpha (A / (A + R)) and the draft cost
  c and verify costs v(k) measured by ``reference_impl.autogamma.measure_costs``; for steps of
  varying gamma, expected tokens over expected cost summed over the steps. efficiency: measured
  over predicted.
- TTFT: median of per-run ratios to the baseline on the same prompt and repeat.
- overhead: wall time outside the two models' forward passes (timed by forward hooks) over the
  wall time, the median over runs; also per target pass.
- identical: every run's tokens equal the baseline's on the same prompt.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reference_impl.autogamma import CostModel, measure_costs

TARGETS = {
    "efficiency": 0.90,  # measured speedup / predicted, at auto gamma
    "vs_hf_best": 1.10,  # reference (auto) tok/s over HF assisted at its best fixed gamma
    "vs_hf_default": 1.50,  # reference (auto) tok/s over HF assisted with its defaults
    "ttft_ratio": 1.05,  # reference TTFT over the baseline's (at most)
    "overhead": 0.10,  # decoder time outside forward passes over wall time (at most)
    "auto_vs_best": 0.95,  # auto gamma tok/s over the best fixed gamma's (at least)
}


@dataclass(frozen=True)
class BenchConfig:
    pair: str = "calibrated-110m"
    prompts: int = 4
    max_new_tokens: int = 128
    repeats: int = 3
    warmup: int = 1
    gammas: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    hf_gammas: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    hf_default: bool = True
    cost_repeats: int = 7
    threads: int | None = None  # torch intra-op threads for the run (None: leave torch's setting)


@dataclass(frozen=True)
class Entry:
    """One decoder in the comparison."""

    name: str
    kind: str  # baseline | reference | hf
    gamma: int | str | None  # fixed gamma, "auto", or None (the baseline, HF defaults)
    decoder: Any


class ForwardClock:
    """Seconds spent inside the models' forward passes, summed by forward hooks."""

    def __init__(self, models: list[Any], clock: Callable[[], float] = time.perf_counter) -> None:
        self.seconds = 0.0
        self.clock = clock
        self._started = 0.0
        self._handles = []
        for model in {id(m): m for m in models}.values():
            self._handles.append(model.register_forward_pre_hook(self._pre))
            self._handles.append(model.register_forward_hook(self._post))

    def _pre(self, module: Any, args: Any) -> None:
        self._started = self.clock()

    def _post(self, module: Any, args: Any, output: Any) -> None:
        self.seconds += self.clock() - self._started

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


class ClockedDecoder:
    """Wraps a decoder; keeps the forward-pass seconds of each ``generate`` call."""

    def __init__(self, decoder: Any, clock: ForwardClock) -> None:
        self.inner = decoder
        self.clock = clock
        self.forward_s: list[float] = []

    def generate(self, input_ids: Any, **kwargs: Any) -> Any:
        before = self.clock.seconds
        result = self.inner.generate(input_ids, **kwargs)
        self.forward_s.append(self.clock.seconds - before)
        return result


def load_pair(name: str) -> tuple[Any, Any, Any]:
    """(target, draft, tokenizer or None) in float32 on the CPU, for a pair of the zoo."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reference_impl.models import named_pairs

    pairs = named_pairs()
    if name not in pairs:
        raise SystemExit(f"unknown pair {name!r}; named pairs: {', '.join(sorted(pairs))}")
    entry = pairs[name]
    if entry.build is not None:
        return (*entry.build(torch.float32), None)
    target = AutoModelForCausalLM.from_pretrained(entry.target_path, dtype=torch.float32).eval()
    draft = AutoModelForCausalLM.from_pretrained(entry.draft_path, dtype=torch.float32).eval()
    return target, draft, AutoTokenizer.from_pretrained(entry.target_path)


def hf_assisted(target: Any, draft: Any, gamma: int | None) -> Any:
    from pytest_specdec.adapters.hf_assisted import HFAssistedDecoder

    return HFAssistedDecoder(target, draft, num_assistant_tokens=gamma, per_call_gamma=False)


def make_entries(config: BenchConfig, target: Any, draft: Any, costs: CostModel) -> list[Entry]:
    from reference_impl import AutoregressiveDecoder, SpeculativeDecoder

    entries = [Entry("baseline", "baseline", None, AutoregressiveDecoder(target))]
    entries += [Entry(f"reference g={g}", "reference", g, SpeculativeDecoder(target, draft, gamma=g))
                for g in config.gammas]
    auto = SpeculativeDecoder(target, draft, gamma="auto", costs=costs)  # the costs the predictions use
    entries.append(Entry("reference auto", "reference", "auto", auto))
    if config.hf_default:
        entries.append(Entry("hf default", "hf", None, hf_assisted(target, draft, None)))
    entries += [Entry(f"hf g={g}", "hf", g, hf_assisted(target, draft, g)) for g in config.hf_gammas]
    return entries


def _median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def per_repeat_tps(runs: list[Any], repeats: int) -> list[float]:
    per = len(runs) // repeats
    chunks = [runs[r * per : (r + 1) * per] for r in range(repeats)]
    return [sum(run.n_tokens for run in c) / sum(run.latency for run in c) for c in chunks]


def summarise(entry: Entry, runs: list[Any], forward_s: list[float], base_runs: list[Any],
              config: BenchConfig, costs: CostModel) -> dict[str, Any]:
    """One row of the table from an entry's timed runs and the baseline's runs of the same run."""
    stats = [run.result.stats for run in runs]
    accepted, rejections, steps = (sum(getattr(s, n) for s in stats) for n in ("accepted", "rejections", "steps"))
    gammas = [g for s in stats for g in s.gammas]
    alpha = accepted / (accepted + rejections) if accepted + rejections else math.nan
    tps = per_repeat_tps(runs, config.repeats)
    base_tps = per_repeat_tps(base_runs, config.repeats)
    speedup = _median([a / b for a, b in zip(tps, base_tps, strict=True)])
    predicted = 1.0 if entry.kind == "baseline" else costs.predicted_speedup_of_steps(alpha, gammas)
    target_passes = sum(s.target_forwards for s in stats)
    outside = [run.latency - f for run, f in zip(runs, forward_s, strict=True)]
    return {
        "name": entry.name,
        "kind": entry.kind,
        "gamma": entry.gamma,
        "tokens_per_s": _median(tps),
        "ttft_s": _median([run.ttft for run in runs]),
        "ttft_ratio": _median([run.ttft / base.ttft for run, base in zip(runs, base_runs, strict=True)]),
        "speedup": speedup,
        "predicted": predicted,
        "efficiency": speedup / predicted if predicted else math.nan,
        "alpha": alpha,
        "tau": 1 + accepted / steps if steps else math.nan,
        "gamma_counts": {str(g): gammas.count(g) for g in sorted(set(gammas))},
        "target_forwards_per_token": target_passes / sum(run.n_tokens for run in runs),
        "overhead_fraction": _median([o / run.latency for o, run in zip(outside, runs, strict=True)]),
        "overhead_per_pass_s": sum(outside) / target_passes if target_passes else math.nan,
        "identical": all(run.result.tokens == base.result.tokens for run, base in zip(runs, base_runs, strict=True)),
        "tokens_per_s_by_repeat": tps,
        "speedup_by_repeat": [a / b for a, b in zip(tps, base_tps, strict=True)],
    }


def timed_runs(entries: list[Entry], prompts: list[Any], config: BenchConfig,
               clock: ForwardClock) -> tuple[dict[str, list[Any]], dict[str, list[float]]]:
    """Warm every decoder up, then time each on each prompt, interleaved, ``repeats`` times.

    Runs are stored per decoder in (repeat, prompt) order, whatever order they ran in.
    """
    from pytest_specdec.perf.timing import Timer
    from reference_impl.sampling import GREEDY

    timer = Timer("cpu")
    kwargs = {"max_new_tokens": config.max_new_tokens, "sampling": GREEDY}
    clocked = {e.name: ClockedDecoder(e.decoder, clock) for e in entries}
    for decoder in clocked.values():
        timer.warm_up(decoder, prompts[0], repeats=config.warmup, **kwargs)
        decoder.forward_s.clear()
    runs: dict[str, list[Any]] = {e.name: [] for e in entries}
    names = list(clocked)
    for repeat in range(config.repeats):
        for index, prompt in enumerate(prompts):
            shift = (repeat * len(prompts) + index) % len(names)  # rotate the order: no decoder always goes first
            for name in names[shift:] + names[:shift]:
                runs[name].append(timer.time(clocked[name], prompt, **kwargs))
    return runs, {name: d.forward_s for name, d in clocked.items()}


def _ratio(rows: dict[str, dict[str, Any]], name: str, other: str | None) -> float:
    """Median over repeats of the per-repeat tok/s ratio of two rows (same run)."""
    if other is None:
        return math.nan
    pairs = zip(rows[name]["tokens_per_s_by_repeat"], rows[other]["tokens_per_s_by_repeat"], strict=True)
    return _median([a / b for a, b in pairs])


def verdicts(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, each as {value, target, met}."""
    fixed = [r for r in rows.values() if r["kind"] == "reference" and r["gamma"] != "auto"]
    hf_fixed = [r for r in rows.values() if r["kind"] == "hf" and r["gamma"] is not None]
    best = max(fixed, key=lambda r: r["tokens_per_s"])["name"] if fixed else None
    hf_best = max(hf_fixed, key=lambda r: r["tokens_per_s"])["name"] if hf_fixed else None
    auto = rows.get("reference auto")
    references = [r for r in rows.values() if r["kind"] == "reference"]
    values = {
        "efficiency": auto["efficiency"] if auto else math.nan,
        "vs_hf_best": _ratio(rows, "reference auto", hf_best),
        "vs_hf_default": _ratio(rows, "reference auto", "hf default" if "hf default" in rows else None),
        "ttft_ratio": auto["ttft_ratio"] if auto else math.nan,
        "overhead": max((r["overhead_fraction"] for r in references), default=math.nan),
        "auto_vs_best": _ratio(rows, "reference auto", best),
    }
    out: dict[str, Any] = {"best_fixed": best, "hf_best_fixed": hf_best,
                           "identical": all(r["identical"] for r in rows.values())}
    for name, value in values.items():
        at_most = name in ("ttft_ratio", "overhead")
        met = None if math.isnan(value) else (value <= TARGETS[name] if at_most else value >= TARGETS[name])
        out[name] = {"value": value, "target": TARGETS[name], "at_most": at_most, "met": met}
    return out


def run_benchmark(config: BenchConfig, models: tuple[Any, Any, Any] | None = None) -> dict[str, Any]:
    """Build or take the pair, measure its costs, time every decoder; every figure as a dict."""
    from pytest_specdec.perf.environment import describe_environment
    from pytest_specdec.perf.timing import torch_threads
    from pytest_specdec.prompts import prompt_ids

    target, draft, tokenizer = models or load_pair(config.pair)
    vocab = target.get_output_embeddings().weight.shape[0]
    prompts = prompt_ids(tokenizer, vocab, "cpu", config.prompts)
    clock = ForwardClock([target, draft])
    try:
        with torch_threads(config.threads):
            environment = describe_environment("cpu")
            costs = measure_costs(target, draft, repeats=config.cost_repeats)
            entries = make_entries(config, target, draft, costs)
            runs, forward_s = timed_runs(entries, prompts, config, clock)
    finally:
        clock.close()
    base = runs["baseline"]
    rows = {e.name: summarise(e, runs[e.name], forward_s[e.name], base, config, costs) for e in entries}
    return {
        "config": asdict(config),
        "environment": environment,
        "costs": costs.as_dict(),
        "rows": list(rows.values()),
        "verdicts": verdicts(rows),
        "hf_adapter": "pytest_specdec.adapters.hf_assisted.HFAssistedDecoder",
    }


def _fmt(value: Any, digits: int = 2, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * scale:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    """The side-by-side table, the cost model and the targets, as markdown."""
    config, costs, env = result["config"], result["costs"], result["environment"]
    lines = [
        f"### {config['pair']}: {config['prompts']} prompts x {config['max_new_tokens']} new tokens, greedy, "
        f"{config['repeats']} interleaved repeats",
        "",
        f"{env['device']}, torch {env['torch']} ({env['torch_threads']} threads), transformers {env['transformers']}. "
        f"c = {costs['c']:.3f}; v(k) for k = 1..{len(costs['verify_s'])}: "
        + ", ".join(f"{v:.2f}" for v in costs["v"].values()),
        "",
        "| decoder | tok/s | TTFT ms | TTFT ratio | speedup | predicted | efficiency | alpha | tau "
        "| target passes/token | overhead | identical |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        used = ", ".join(f"{g}:{n}" for g, n in row["gamma_counts"].items())
        name = row["name"] + (f" (steps by gamma {used})" if row["gamma"] == "auto" else "")
        lines.append(
            f"| {name} | {_fmt(row['tokens_per_s'], 1)} | {_fmt(row['ttft_s'], 1, 1e3)} "
            f"| {_fmt(row['ttft_ratio'])} | {_fmt(row['speedup'])} | {_fmt(row['predicted'])} "
            f"| {_fmt(row['efficiency'])} | {_fmt(row['alpha'], 3)} "
            f"| {_fmt(row['tau'])} | {_fmt(row['target_forwards_per_token'], 3)} "
            f"| {_fmt(row['overhead_fraction'], 1, 100)}% | {'yes' if row['identical'] else 'NO'} |"
        )
    verdict = result["verdicts"]
    lines += ["", f"Best fixed gamma: {verdict['best_fixed']}; HF best fixed: {verdict['hf_best_fixed']}; "
              f"outputs identical: {'yes' if verdict['identical'] else 'NO'}.", "",
              "| target | value | required | met |", "|---|---|---|---|"]
    for name in TARGETS:
        v = verdict[name]
        met = "-" if v["met"] is None else ("yes" if v["met"] else "NO")
        lines.append(f"| {name} | {_fmt(v['value'], 3)} | {'<=' if v['at_most'] else '>='} {v['target']} | {met} |")
    return "\n".join(lines) + "\n"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = BenchConfig()
    parser.add_argument("--pair", default=defaults.pair)
    parser.add_argument("--prompts", type=int, default=defaults.prompts)
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument("--gammas", type=_ints, default=defaults.gammas, help="comma list, e.g. 1,2,3,4")
    parser.add_argument("--hf-gammas", type=_ints, default=defaults.hf_gammas, help="comma list; empty: none")
    parser.add_argument("--no-hf-default", action="store_true", help="skip HF assisted with its defaults")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--out", type=Path, default=None, help="write <out>.md and <out>.json")
    args = parser.parse_args(argv)
    config = BenchConfig(pair=args.pair, prompts=args.prompts, max_new_tokens=args.max_new_tokens,
                         repeats=args.repeats, warmup=args.warmup, gammas=args.gammas, hf_gammas=args.hf_gammas,
                         hf_default=not args.no_hf_default, threads=args.threads)
    result = run_benchmark(config)
    publish(markdown(result), result, args.out)


def publish(text: str, data: Any, out: Path | None) -> None:
    """Print the markdown; with ``out``, also write ``<out>.md`` and ``<out>.json``, each atomically."""
    print(text)
    if out is not None:
        from pytest_specdec.report.summary import atomic_write_text

        atomic_write_text(out.with_suffix(".md"), text)
        atomic_write_text(out.with_suffix(".json"), json.dumps(data, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()

