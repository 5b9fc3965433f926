"""Measured error rates of the sampling-law tests (tests/law/test_sampling_law.py): how often they fire on
an exact null and on the reference decoder, and how often they catch each mutant decoder.

Each mode prints one JSON line per seed (a sweep cut short still counts: ``recount``; it continues
with ``--first-seed``) and a summary (``--json`` writes it)::

    python -m tests.support.sampling_law_sweep exact --seeds 1000 [--profile-seeds 200] [--settings T1 ...]
    python -m tests.support.sampling_law_sweep decoder --seeds 200 [--impl module:factory] [--first-seed N]
    python -m tests.support.sampling_law_sweep catalogue --seeds 20 [--mutants name[:setting,...] ...] [--fraction F]
    python -m tests.support.sampling_law_sweep recount sweep.jsonl [--json summary.json]

- ``exact``: no decoder. Each call of the tests' plan gets its tokens straight from the target's
  warped rows (``exact_sample``) and the accepted / rejected counts of a reference-structured
  decoder under the null (``simulate_acceptance``), the two drawn independently, each from its
  exact law: each check's firing rate is measured exactly, and a setting's (any check) is bounded
  by their sum whatever the dependence. ~0.6 s per seed for 6 settings on one idle core.
- ``decoder``: the real decoder (default the reference) through ``sample_pool.sample_decodes``, on
  every core: ~60 s of an idle 2-core machine per seed for 6 settings.
- ``catalogue``: mutant decoders (``sampling_law_catalogue``) on the settings where their bias lives;
  ``--fraction F`` runs at F x the default calls. Power grows with the sample, so a mutant detected
  in every seed at a fraction is detected at least as reliably at the full size.

The checks, their level and the settings are the tests' own (``checks``, ``level``: ALPHA split
between a setting's checks). Counts are of p-values below that level, ALPHA, 1e-2 and 5e-2; a
setting fires when any of its checks is below the level (its stated rate: <= ALPHA = 1e-4).

Measured on the first version of the tests (commit 1b351b4: 6 settings, two checks at 5e-5 each),
2026-11-30, seeds from 7000; raw p-values and summaries in docs/measurements/sampling-law/:

=====================  ===============  =====  ==========  ===========  ===========
sweep                  setting runs     fired  smallest p  p < 0.01     p < 0.05
=====================  ===============  =====  ==========  ===========  ===========
exact, default size    6,000 (1,000 x)  0      1.1e-4      114 of 12k   628 of 12k
exact, profile (4x)    1,200 (200 x)    0      1.1e-4      22 of 2,400  114 of 2,400
=====================  ===============  =====  ==========  ===========  ===========

p-values counted over both checks (nominal: 1% and 5% of them). No p-value fell below 1e-4 in
14,400. Wall time on a shared 2-core machine under load, ``nice -n 10``: 1,863 s and 1,329 s (one
process each); idle, ~0.6 s per default-size seed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pytest_specdec.law.sample_pool import DecodeSample, chunk_seed
from reference_impl.sampling import SamplingConfig
from tests.law import test_sampling_law as law

FIRST_SEED = 7_000  # distinct from the tests' SEED (20_261_130) and SEED + 1
ALL = tuple(law.SETTINGS)


WARPED = tuple(  # every setting whose warper is not the identity
    s for s in ALL if law.SETTINGS[s].sampling != SamplingConfig(temperature=1.0)
)
# --- what tests/law/test_sampling_law.py runs per setting ------------------------------------------------


def levels() -> tuple[float, ...]:
    return (law.LEVEL, law.ALPHA, 1e-2, 5e-2)


# --- the exact null -----------------------------------------------------------------------------


def exact_sample(calls: Sequence[Any], rows: Any, generator: Any) -> list[list[int]]:
    """Every call's tokens drawn from ``rows`` ((vocab + 1) ** context, vocab): the law in each state, a
    state being the ``context`` previous tokens, newest first in base vocab + 1, ``vocab`` for "no token":
    a ``TableLM``'s table), a Markov chain started at the prompt's end. All calls advance together, one
    uniform per token turned into a token by the inverse CDF of its row (a token of probability 0 is never
    drawn)."""
    import torch

    vocab = rows.shape[1]
    context = round(math.log(rows.shape[0], vocab + 1))
    if (vocab + 1) ** context != rows.shape[0]:
        raise ValueError(f"rows must be ((vocab + 1) ** context, vocab), got {tuple(rows.shape)}")
    cdf = rows.cumsum(dim=1)
    cdf = cdf / cdf[:, -1:]  # exactly 1 at the end
    weights = (vocab + 1) ** torch.arange(context - 1, -1, -1)  # the newest token is the leading digit
    history = torch.tensor(  # (calls, context): the last tokens, newest first
        [[*call.prompt[::-1][:context], *[vocab] * max(0, context - len(call.prompt))] for call in calls]
    )
    longest = max(call.max_new_tokens for call in calls)
    uniforms = torch.rand(longest, len(calls), generator=generator, dtype=cdf.dtype)
    tokens = torch.empty(longest, len(calls), dtype=torch.long)
    for position in range(longest):
        state = (history * weights).sum(dim=1)
        tokens[position] = torch.searchsorted(cdf[state], uniforms[position].unsqueeze(1), right=True).squeeze(1)
        history = torch.cat([tokens[position].unsqueeze(1), history[:, :-1]], dim=1)
    return [row[: call.max_new_tokens] for row, call in zip(tokens.T.tolist(), calls, strict=True)]


def simulate_acceptance(budgets: Sequence[int], gamma: int, beta: float, generator: Any) -> tuple[int, int, int, int]:
    """(accepted, rejections, drafted, steps) of the reference's loop under the null, all calls at once.

    The first token of a call comes from the prefill; then while more than one token remains a step
    drafts k = min(gamma, remaining - 1), accepts each position with probability ``beta`` up to the
    first rejection and emits accepted + 1 tokens; a last single token is one plain target pass.
    """
    import torch

    remaining = torch.tensor(budgets, dtype=torch.long) - 1
    accepted = rejections = drafted = steps = 0
    positions = torch.arange(gamma)
    while bool((remaining >= 2).any()):
        k = torch.where(remaining >= 2, (remaining - 1).clamp(max=gamma), 0)
        hits = torch.rand(len(budgets), gamma, generator=generator, dtype=torch.float64) < beta
        n = (hits | (positions >= k.unsqueeze(1))).long().cumprod(dim=1).sum(dim=1).clamp(max=k)
        stepping = k > 0
        accepted += int(n.sum())
        rejections += int(((n < k) & stepping).sum())
        drafted += int(k.sum())
        steps += int(stepping.sum())
        remaining = remaining - torch.where(stepping, n + 1, 0)
    return accepted, rejections, drafted, steps


def exact_null(setting: str, calls: int, seed: int) -> DecodeSample:
    """``setting``'s plan for ``seed``, its tokens and counts drawn from their exact laws under the null."""
    import torch

    plan = law.plan(setting, calls, seed)
    # a stream of its own: the plan of one setting is drawn from the seed itself (law.plan adds the setting's
    # index, 0 for the first), and tokens drawn from the plan's stream would be correlated with its prompts
    generator = torch.Generator().manual_seed(chunk_seed(seed, 1_000_000))
    sequences = exact_sample(plan, law.exact_rows(setting), generator)
    budgets = [c.max_new_tokens for c in plan]
    counts = simulate_acceptance(budgets, law.SETTINGS[setting].gamma, law.exact_beta(setting), generator)
    accepted, rejections, drafted, steps = counts
    return DecodeSample([c.prompt for c in plan], sequences, accepted, rejections, drafted, steps)


# --- one seed -----------------------------------------------------------------------------------


def pvalues(sample: DecodeSample, setting: str) -> dict[str, float]:
    """Each check's p-value on ``sample`` (0 where it found an impossible token)."""
    results = {name: check(sample, setting) for name, check in law.CHECKS.items()}
    return {name: 0.0 if r.rejects(0.0) else r.pvalue for name, r in results.items()}


def fires(p: dict[str, float]) -> bool:
    """Does any check of the setting reject at its level, as ``test_sampling_law.detects``?"""
    return min(p.values()) < law.LEVEL


def scaled_calls(setting: str, fraction: float) -> int:
    return max(1, round(fraction * law.calls_ci(setting)))


def exact_seed(seed: int, settings: Sequence[str], fraction: float = 1.0) -> dict[str, dict[str, float]]:
    return {s: pvalues(exact_null(s, scaled_calls(s, fraction), seed), s) for s in settings}


def decoder_seed(
    impl: str, seed: int, settings: Sequence[str], fraction: float = 1.0, jobs: int | None = None
) -> dict[str, dict[str, float]]:
    """Each setting's p-values on ``impl``'s decodes of its plan for ``seed`` (on ``jobs`` worker processes)."""
    return {
        s: pvalues(law.draw(law.source(impl, s), s, calls=scaled_calls(s, fraction), seed=seed, jobs=jobs), s)
        for s in settings
    }


# --- sweeps and their counts ----------------------------------------------------------------------


def run_seeds(
    one: Callable[[int], dict[str, dict[str, float]]], seeds: Iterable[int], label: dict[str, Any], out: Any = None
) -> list[dict[str, Any]]:
    """Run ``one`` per seed; print one JSON line per seed to ``out`` (None: silent); return the lines."""
    started, lines = time.perf_counter(), []
    for seed in seeds:
        line = {**label, "seed": seed, "p": one(seed), "elapsed_s": round(time.perf_counter() - started, 1)}
        lines.append(line)
        if out is not None:
            print(json.dumps(line), file=out, flush=True)
    return lines


def count(lines: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per setting: seeds, p-values of each check below each level, and firings of the setting (any check)."""
    by_setting: dict[str, Any] = {}
    for line in lines:
        for setting, p in line["p"].items():
            entry = by_setting.setdefault(
                setting, {"seeds": 0, "fired": 0, "min_p": {}, **{t: {str(x): 0 for x in levels()} for t in p}}
            )
            entry["seeds"] += 1
            entry["fired"] += fires(p)
            for test, value in p.items():
                for x in levels():
                    entry[test][str(x)] += value < x
                entry["min_p"][test] = min(value, entry["min_p"].get(test, 1.0))
    runs = sum(e["seeds"] for e in by_setting.values())
    fired = sum(e["fired"] for e in by_setting.values())
    return {"setting_runs": runs, "fired": fired, "level": law.ALPHA, "check_level": law.LEVEL, "settings": by_setting}


def format_counts(title: str, summary: dict[str, Any]) -> str:
    tests = list(law.CHECKS)
    head = " ".join(f"{t[:4]} p<{x:.2g}".rjust(13) for t in tests for x in levels())
    lines = [title, f"  {'setting':16} {'seeds':>5} {'fired':>5} {head}"]
    for setting, e in summary["settings"].items():
        cells = " ".join(str(e[t][str(x)]).rjust(13) for t in tests for x in levels())
        lines.append(f"  {setting:16} {e['seeds']:>5} {e['fired']:>5} {cells}")
    fired = f"{summary['fired']} of {summary['setting_runs']}"
    lines.append(f"  settings fired (a check below {summary['check_level']:.3g}): {fired}")
    return "\n".join(lines)


# --- the command line -----------------------------------------------------------------------------


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("exact", "decoder", "catalogue", "recount"))
    parser.add_argument("lines", nargs="?", help="recount: a sweep's JSON lines (one cut short counts too)")
    parser.add_argument("--seeds", type=int, default=None, help="exact: 1000, decoder: 200, catalogue: 20")
    parser.add_argument("--first-seed", type=int, default=FIRST_SEED, help="continue a sweep cut short")
    parser.add_argument("--settings", nargs="+", choices=ALL, help="default: all (catalogue: CATALOGUE's)")
    parser.add_argument("--fraction", type=float, default=1.0, help="F x each setting's default calls")
    parser.add_argument("--profile-seeds", type=int, default=0, help="exact: also sweep this many at 4x the calls")
    parser.add_argument("--impl", default="reference_impl.speculative:SpeculativeDecoder", help="decoder mode")
    parser.add_argument("--mutants", nargs="+", help="catalogue: name or name:setting,setting (default: CATALOGUE)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: every usable core)")
    parser.add_argument("--json", help="also write the summary here")
    args = parser.parse_args(argv)
    if not args.fraction > 0:
        parser.error(f"--fraction must be > 0, got {args.fraction}")
    return args


def run_exact(args: argparse.Namespace, seeds: range, out: Any) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # small tensors: one thread is fastest and leaves the other cores alone
    settings, summary = args.settings or ALL, {}
    for size, count_seeds, factor in (("ci", len(seeds), 1), ("profile", args.profile_seeds, law.PROFILE_FACTOR)):
        if not count_seeds:
            continue
        fraction = factor * args.fraction
        one = lambda s, f=fraction: exact_seed(s, settings, f)  # noqa: E731
        swept = range(args.first_seed, args.first_seed + count_seeds)
        summary[size] = count(run_seeds(one, swept, {"size": size, "fraction": fraction}, out))
        print(format_counts(f"exact null, {fraction:g} x default calls, {count_seeds} seeds", summary[size]), file=out)
    return summary


def run_decoder(args: argparse.Namespace, seeds: range, out: Any) -> dict[str, Any]:
    one = lambda s: decoder_seed(args.impl, s, args.settings or ALL, args.fraction, args.jobs)  # noqa: E731
    summary = count(run_seeds(one, seeds, {"impl": args.impl, "fraction": args.fraction}, out))
    print(format_counts(f"{args.impl}, {args.fraction:g} x default calls, {len(seeds)} seeds", summary), file=out)
    return {"impl": args.impl, "ci": summary}


def run_catalogue(args: argparse.Namespace, seeds: range, out: Any) -> dict[str, Any]:
    from .sampling_law_catalogue import (
        catalogue_runs,
        catalogue_summary,
        format_catalogue,
        mutant_settings,
        resolve_mutants,
    )

    chosen = mutant_settings(args.mutants, args.settings)
    specs = resolve_mutants(list(chosen), skip_missing=not args.mutants)
    rows = catalogue_summary(catalogue_runs(specs, chosen.__getitem__, seeds, args.fraction, out, args.jobs))
    print(format_catalogue(rows), file=out)
    return {"fraction": args.fraction, "catalogue": rows}


def recount(path: str, out: Any) -> dict[str, Any]:
    """The summary of a sweep's JSON lines, from the file it printed (a sweep cut short included)."""
    from .sampling_law_catalogue import catalogue_summary, format_catalogue

    with open(path) as f:
        lines = [json.loads(line) for line in f if line.startswith("{")]
    if lines and "mutant" in lines[0]:
        rows = catalogue_summary(lines)
        print(format_catalogue(rows), file=out)
        return {"mode": "catalogue", "seeds": len({line["seed"] for line in lines}), "catalogue": rows}
    summary: dict[str, Any] = {"mode": "decoder" if lines and "impl" in lines[0] else "exact"}
    for size in dict.fromkeys(line.get("size", "ci") for line in lines):
        part = [line for line in lines if line.get("size", "ci") == size]
        summary[size] = count(part)
        summary[f"{size}_seeds"] = [part[0]["seed"], part[-1]["seed"], len(part)]  # first, last, number
        summary[f"{size}_wall_s"] = part[-1]["elapsed_s"]
        print(format_counts(f"{path}: {size}, {len(part)} seeds", summary[size]), file=out)
    return summary


def main(argv: Sequence[str] | None = None, out: Any = None) -> dict[str, Any]:
    args, out = parse(argv), out or sys.stdout
    if args.mode == "recount":
        summary = recount(args.lines, out)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(summary, f, indent=2)
        return summary
    default_seeds = {"exact": 1000, "decoder": 200, "catalogue": 20}[args.mode]
    seeds = range(args.first_seed, args.first_seed + (default_seeds if args.seeds is None else args.seeds))
    started = time.perf_counter()
    run = {"exact": run_exact, "decoder": run_decoder, "catalogue": run_catalogue}[args.mode]
    summary = {"mode": args.mode, "first_seed": args.first_seed, "seeds": len(seeds), **run(args, seeds, out)}
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    from .sampling_law_catalogue import UnknownMutantError

    try:
        main()
    except UnknownMutantError as exc:
        sys.exit(f"error: {exc}")
