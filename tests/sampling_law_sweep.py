"""Measured error rates of the sampling-law tests (tests/test_sampling_law.py): how often they fire on
an exact null and on the reference decoder, and how often they catch each mutant decoder.

Three modes, each printing one JSON line per seed (so a sweep cut short can still be counted and
continued with ``--first-seed``) and a summary (``--json`` writes it)::

    python -m tests.sampling_law_sweep exact --seeds 1000 [--profile-seeds 200] [--settings T1 ...]
    python -m tests.sampling_law_sweep decoder --seeds 200 [--impl module:factory] [--first-seed N]
    python -m tests.sampling_law_sweep catalogue --seeds 20 [--mutants name ...] [--fraction 0.125]

- ``exact``: no decoder. Each call of the test's plan gets its tokens straight from the target's
  warped rows (``exact_sample``) and the accepted / rejected counts of a reference-structured
  decoder under the null (``simulate_acceptance``). The two halves are drawn independently, each
  with its exact null law, so each test's firing rate is measured exactly; the joint rate of a
  setting is bounded by their sum (Bonferroni) whatever the dependence. ~0.1 s per seed per setting.
- ``decoder``: the real decoder (default the reference) through ``sample_pool.sample_decodes``, on
  every core: ~60 s of 2-core time per seed for the 6 settings.
- ``catalogue``: mutant decoders (``tests.mutants.DECODER_MUTANTS``, and
  ``tests.subtle_mutants.SUBTLE_MUTANTS`` where that module exists) on the settings where their bias
  lives (``CATALOGUE``); ``--fraction F`` runs at F x the default calls. Power grows with the sample,
  so a mutant detected in every seed at a fraction is detected at least as reliably at full size.

Counts are of p-values below 5e-5 (each test's level, ``ALPHA / 2``), 1e-4, 1e-2 and 5e-2; a
setting fires when either of its tests is below 5e-5 (its stated rate: <= 1e-4).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pytest_specdec.sample_pool import DecoderSource, DecodeSample

from . import test_sampling_law as law

FIRST_SEED = 7_000  # distinct from the tests' SEED (20_261_130) and SEED + 1
ALL = tuple(law.SETTINGS)


def sampling(setting: str) -> Any:
    spec = law.SETTINGS[setting]
    return spec.sampling if hasattr(spec, "sampling") else spec[0]


WARPED = tuple(  # every setting whose warper is not the identity
    s for s in ALL if (sampling(s).temperature, sampling(s).top_k, sampling(s).top_p) != (1.0, 0, 1.0)
)
# a cache that keeps a rejected token, or crops one too many, changes the law only where logits read
# more than the token fed (a context-2 pair, where the tests have one)
CACHE = tuple(s for s in ALL if getattr(law, "context", lambda _: 1)(s) > 1) or ALL
CATALOGUE = {  # mutant -> the settings where its bias exists
    "greedy_draft": ALL,
    "raw_logit_draft_probs": WARPED,  # raw and warped draft probabilities agree under T1
    "uniform_zero": ALL,
    "residual_from_target": ALL,
    "residual_unnormalised": ALL,
    "bonus_from_draft": ALL,
    "target_unwarped": WARPED,  # warped and unwarped target agree under T1
    "no_rollback": CACHE,
    "rollback_off_by_one": CACHE,
    "reseeded_per_draw": ALL,
    "draft_one_hot": ALL,  # lossless, wrong about acceptance: the acceptance law's to catch
    "bonus_dropped": ALL,  # lossless, wrong about acceptance
}


class UnknownMutantError(LookupError):
    """A mutant name found in no mutant registry."""


# --- what tests/test_sampling_law.py runs per setting ------------------------------------------------


def checks() -> dict[str, Callable[[DecodeSample, str], Any]]:
    """The setting's checks by name, as the tests run them (each result has ``pvalue`` and ``rejects``)."""
    return getattr(law, "CHECKS", None) or {"law": law.law_check, "acceptance": law.acceptance_check}


def level() -> float:
    """Each check's level: ALPHA split evenly between a setting's checks."""
    return getattr(law, "LEVEL", law.ALPHA / len(checks()))


def levels() -> tuple[float, ...]:
    return (level(), law.ALPHA, 1e-2, 5e-2)


def gamma(setting: str) -> int:
    spec = law.SETTINGS[setting]
    return spec.gamma if hasattr(spec, "gamma") else spec[1]


def source(impl: str, setting: str) -> DecoderSource:
    """``impl`` (module:factory) on ``setting``'s pair, rebuildable in a worker process."""
    return law.source(impl, setting) if hasattr(law, "source") else DecoderSource(impl, law.build_pair)


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
    generator = torch.Generator().manual_seed(seed)
    sequences = exact_sample(plan, law.exact_rows(setting), generator)
    budgets = [c.max_new_tokens for c in plan]
    counts = simulate_acceptance(budgets, gamma(setting), law.exact_beta(setting), generator)
    accepted, rejections, drafted, steps = counts
    return DecodeSample([c.prompt for c in plan], sequences, accepted, rejections, drafted, steps)


# --- one seed -----------------------------------------------------------------------------------


def pvalues(sample: DecodeSample, setting: str) -> dict[str, float]:
    """Each check's p-value on ``sample`` (0 where it found an impossible token)."""
    results = {name: check(sample, setting) for name, check in checks().items()}
    return {name: 0.0 if r.rejects(0.0) else r.pvalue for name, r in results.items()}


def fires(p: dict[str, float]) -> bool:
    """Does any check of the setting reject at its level, as ``test_sampling_law.detects``?"""
    return min(p.values()) < level()


def scaled_calls(setting: str, fraction: float) -> int:
    return max(1, round(fraction * law.calls_ci(setting)))


def exact_seed(seed: int, settings: Sequence[str], fraction: float = 1.0) -> dict[str, dict[str, float]]:
    return {s: pvalues(exact_null(s, scaled_calls(s, fraction), seed), s) for s in settings}


def decoder_seed(
    impl: str, seed: int, settings: Sequence[str], fraction: float = 1.0, jobs: int | None = None
) -> dict[str, dict[str, float]]:
    """Each setting's p-values on ``impl``'s decodes of its plan for ``seed`` (on ``jobs`` worker processes)."""
    return {
        s: pvalues(law.draw(source(impl, s), s, calls=scaled_calls(s, fraction), seed=seed, jobs=jobs), s)
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
                setting, {"seeds": 0, "fired": 0, **{t: {str(x): 0 for x in levels()} for t in p}}
            )
            entry["seeds"] += 1
            entry["fired"] += fires(p)
            for test, value in p.items():
                for x in levels():
                    entry[test][str(x)] += value < x
    runs = sum(e["seeds"] for e in by_setting.values())
    fired = sum(e["fired"] for e in by_setting.values())
    return {"setting_runs": runs, "fired": fired, "level": law.ALPHA, "check_level": level(), "settings": by_setting}


def format_counts(title: str, summary: dict[str, Any]) -> str:
    tests = list(checks())
    head = " ".join(f"{t[:4]} p<{x:.2g}".rjust(13) for t in tests for x in levels())
    lines = [title, f"  {'setting':16} {'seeds':>5} {'fired':>5} {head}"]
    for setting, e in summary["settings"].items():
        cells = " ".join(str(e[t][str(x)]).rjust(13) for t in tests for x in levels())
        lines.append(f"  {setting:16} {e['seeds']:>5} {e['fired']:>5} {cells}")
    fired = f"{summary['fired']} of {summary['setting_runs']}"
    lines.append(f"  settings fired (a check below {summary['check_level']:.3g}): {fired}")
    return "\n".join(lines)


# --- the mutant catalogue -------------------------------------------------------------------------


def registries() -> tuple[dict[str, Any], list[str]]:
    """{name: decoder class} over every importable registry, and notes on registries that are not."""
    from . import mutants

    found, notes = dict(mutants.DECODER_MUTANTS), []
    try:
        from . import subtle_mutants  # type: ignore[attr-defined]
    except ImportError as exc:
        notes.append(f"tests.subtle_mutants is not importable ({exc})")
    else:
        found.update(getattr(subtle_mutants, "SUBTLE_MUTANTS", {}))
    return found, notes


def resolve_mutants(names: Sequence[str], *, skip_missing: bool = False, log: Any = None) -> dict[str, str]:
    """names -> {name: "module:Class"}, the spec a worker process rebuilds the mutant from.

    An unknown name raises ``UnknownMutantError`` (``skip_missing``: skipped with a message instead).
    """
    found, notes = registries()
    specs = {}
    for name in names:
        if name in found:
            cls = found[name]
            specs[name] = f"{cls.__module__}:{cls.__qualname__}"
            continue
        message = (
            f"unknown mutant {name!r}: not in tests.mutants.DECODER_MUTANTS"
            + (" or tests.subtle_mutants.SUBTLE_MUTANTS" if not notes else f" ({'; '.join(notes)})")
            + f"; known: {', '.join(sorted(found))}"
        )
        if not skip_missing:
            raise UnknownMutantError(message)
        print(f"skipping {message}", file=log or sys.stderr)
    return specs


def mutant_settings(names: Sequence[str] | None, settings: Sequence[str] | None) -> dict[str, tuple[str, ...]]:
    """``--mutants`` entries ``name`` or ``name:setting,setting`` -> {name: settings}; a bare name gets
    ``settings`` if given, else its ``CATALOGUE`` entry (every setting for a name not in it)."""
    chosen = {}
    for entry in names or list(CATALOGUE):
        name, _, listed = entry.partition(":")
        picked = tuple(listed.split(",")) if listed else tuple(settings or CATALOGUE.get(name, ALL))
        unknown = sorted(set(picked) - set(ALL))
        if unknown:
            raise UnknownMutantError(f"--mutants {entry}: unknown setting(s) {unknown}; settings: {', '.join(ALL)}")
        chosen[name] = picked
    return chosen


def catalogue_runs(
    specs: dict[str, str], settings_of: Callable[[str], Sequence[str]], seeds: Sequence[int], fraction: float,
    out: Any = None, jobs: int | None = None,
) -> list[dict[str, Any]]:
    """One line per (mutant, setting, seed): both p-values and whether ``detects`` would fire."""
    started, lines = time.perf_counter(), []
    for name, spec in specs.items():
        for setting in settings_of(name):
            for seed in seeds:
                p = decoder_seed(spec, seed, [setting], fraction, jobs)[setting]
                line = {"mutant": name, "setting": setting, "fraction": fraction, "seed": seed, "p": p,
                        "detected": fires(p), "elapsed_s": round(time.perf_counter() - started, 1)}
                lines.append(line)
                if out is not None:
                    print(json.dumps(line), file=out, flush=True)
    return lines


def catalogue_summary(lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (mutant, setting, fraction): detected / seeds and the median p-value of each test."""
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for line in lines:
        groups.setdefault((line["mutant"], line["setting"], line["fraction"]), []).append(line)
    return [
        {"mutant": m, "setting": s, "fraction": f, "seeds": len(group), "detected": sum(g["detected"] for g in group),
         **{f"median_p_{t}": statistics.median(g["p"][t] for g in group) for t in group[0]["p"]}}
        for (m, s, f), group in groups.items()
    ]


def format_catalogue(rows: Sequence[dict[str, Any]]) -> str:
    tests = list(checks())
    head = f"{'fraction':>8} {'detected':>9} " + " ".join(f"{'median p ' + t[:4]:>14}" for t in tests)
    lines = [f"  {'mutant':24} {'setting':16} {head}"]
    for r in rows:
        detected = f"{r['detected']}/{r['seeds']}"
        medians = " ".join(f"{r[f'median_p_{t}']:>14.3g}" for t in tests)
        lines.append(f"  {r['mutant']:24} {r['setting']:16} {r['fraction']:>8g} {detected:>9} {medians}")
    return "\n".join(lines)


# --- the command line -----------------------------------------------------------------------------


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("exact", "decoder", "catalogue"))
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
    chosen = mutant_settings(args.mutants, args.settings)
    specs = resolve_mutants(list(chosen), skip_missing=not args.mutants)
    rows = catalogue_summary(catalogue_runs(specs, chosen.__getitem__, seeds, args.fraction, out, args.jobs))
    print(format_catalogue(rows), file=out)
    return {"fraction": args.fraction, "catalogue": rows}


def main(argv: Sequence[str] | None = None, out: Any = None) -> dict[str, Any]:
    args, out = parse(argv), out or sys.stdout
    default_seeds = {"exact": 1000, "decoder": 200, "catalogue": 20}[args.mode]
    seeds = range(args.first_seed, args.first_seed + (args.seeds or default_seeds))
    started = time.perf_counter()
    run = {"exact": run_exact, "decoder": run_decoder, "catalogue": run_catalogue}[args.mode]
    summary = {"mode": args.mode, "first_seed": args.first_seed, "seeds": len(seeds), **run(args, seeds, out)}
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    try:
        main()
    except UnknownMutantError as exc:
        sys.exit(f"error: {exc}")
