"""The mutant catalogue of the sampling-law tests: which mutant decoders they catch, in which settings,
how often (``python -m tests.support.sampling_law_sweep catalogue``; this module holds its parts).

Mutants come from ``tests.support.mutants.DECODER_MUTANTS`` and, where that module exists,
``tests.support.subtle_mutants.SUBTLE_MUTANTS``; each is rebuilt in the worker processes from its
``module:Class`` spec, the path a user's decoder takes (``--specdec-impl``).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from tests.law import test_sampling_law as law

from .sampling_law_sweep import ALL, WARPED, decoder_seed, fires

# a cache that keeps a rejected token, or crops one too many, changes the law only where logits read
# more than the token fed (a context-2 pair, where the tests have one)
CACHE = tuple(s for s in ALL if law.context(s) > 1)
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


def registries() -> tuple[dict[str, Any], list[str]]:
    """{name: decoder class} over every importable registry, and notes on registries that are not."""
    from . import mutants

    found, notes = dict(mutants.DECODER_MUTANTS), []
    try:
        from . import subtle_mutants  # type: ignore[attr-defined]
    except ImportError as exc:
        notes.append(f"tests.support.subtle_mutants is not importable ({exc})")
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
            f"unknown mutant {name!r}: not in tests.support.mutants.DECODER_MUTANTS"
            + (" or tests.support.subtle_mutants.SUBTLE_MUTANTS" if not notes else f" ({'; '.join(notes)})")
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
    """One line per (mutant, setting, seed): every check's p-value and whether ``detects`` would fire; a
    decoder the protocol check rejects first (``ContractError``, an AssertionError) is detected with no p."""
    started, lines = time.perf_counter(), []
    for name, spec in specs.items():
        for setting in settings_of(name):
            for seed in seeds:
                line = {"mutant": name, "setting": setting, "fraction": fraction, "seed": seed}
                try:
                    p = decoder_seed(spec, seed, [setting], fraction, jobs)[setting]
                except AssertionError as exc:  # the suite's contract check failed the decoder before the law
                    line.update(p=None, detected=True, contract=str(exc).splitlines()[0])
                else:
                    line.update(p=p, detected=fires(p))
                line["elapsed_s"] = round(time.perf_counter() - started, 1)
                lines.append(line)
                if out is not None:
                    print(json.dumps(line), file=out, flush=True)
    return lines


def catalogue_summary(lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (mutant, setting, fraction): detected / seeds, how many by the contract check, and the median
    p-value of each check (None where every seed failed the contract)."""
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for line in lines:
        groups.setdefault((line["mutant"], line["setting"], line["fraction"]), []).append(line)
    rows = []
    for (mutant, setting, fraction), group in groups.items():
        tested = [g["p"] for g in group if g["p"] is not None]
        names = list(tested[0]) if tested else list(law.CHECKS)
        medians = {f"median_p_{t}": statistics.median(p[t] for p in tested) if tested else None for t in names}
        rows.append({"mutant": mutant, "setting": setting, "fraction": fraction, "seeds": len(group),
                     "detected": sum(g["detected"] for g in group), "by_contract": len(group) - len(tested), **medians})
    return rows


def format_catalogue(rows: Sequence[dict[str, Any]]) -> str:
    tests = [key.removeprefix("median_p_") for key in rows[0] if key.startswith("median_p_")] if rows else []
    head = f"{'fraction':>8} {'detected':>9} {'contract':>8} " + " ".join(f"{'median p ' + t[:4]:>14}" for t in tests)
    lines = [f"  {'mutant':24} {'setting':16} {head}"]
    for r in rows:
        detected = f"{r['detected']}/{r['seeds']}"
        medians = " ".join(format(r[f"median_p_{t}"], ">14.3g") if r[f"median_p_{t}"] is not None else f"{'-':>14}"
                           for t in tests)
        lines.append(
            f"  {r['mutant']:24} {r['setting']:16} {r['fraction']:>8g} {detected:>9} {r['by_contract']:>8} {medians}"
        )
    return "\n".join(lines)
