"""What the plugin reports at the end of a session: the summary table and the JSON file.

The library never prints; tests record figures here and the plugin writes them out once. Two
rules hold for everything written: a change reads in words the right way round ("2.6% better",
never "-2.6% worse"), and paths under the repository are written relative to it, so a committed
report or measurement names no directory of the machine that ran it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..perf.baselines.store import atomic_write_text
from ..perf.interleaved import PerfRecord


@dataclass
class SessionResults:
    """Everything measured in one session, per model pair."""

    load_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    perf: list[PerfRecord] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)  # pytest_specdec.findings: one entry per test
    verdicts: dict[str, Any] = field(default_factory=dict)  # pytest_specdec.scorecard: one verdict per kind
    root: Path = field(default_factory=Path.cwd)  # paths under it are written relative to it (the rootdir)

    def as_dict(self, environment: dict[str, Any]) -> dict[str, Any]:
        from ..perf.acceptance import distribution

        return relative_to(self.root, {
            "environment": environment,
            "load_seconds": self.load_seconds,
            "perf": [{**record.as_dict(), "per_request_acceptance": distribution(record)} for record in self.perf],
            "baseline_comparisons": self.comparisons,
            "notes": self.notes,
            "findings": self.findings,
            "verdicts": self.verdicts,
        })


def relative_to(root: Path, value: Any) -> Any:
    """``value`` with every path under ``root``, in any string at any depth, written relative to it."""
    prefix = str(Path(root).resolve()).rstrip("/") + "/"
    if isinstance(value, str):
        return value.replace(prefix, "")
    if isinstance(value, os.PathLike):
        return relative_to(root, os.fspath(value))
    if isinstance(value, dict):
        return {k: relative_to(root, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [relative_to(root, v) for v in value]
    return value


def describe_change(worse_by: float | None, digits: int = 1) -> str:
    """A relative change in words, the right way round: 0.026 -> "2.6% worse", -0.026 -> "2.6% better"."""
    if worse_by is None or (isinstance(worse_by, float) and not math.isfinite(worse_by)):
        return "-"
    size = f"{abs(worse_by) * 100:.{digits}f}"
    if float(size) == 0:
        return "no change"
    return f"{size}% {'worse' if worse_by > 0 else 'better'}"


def _fmt(value: float, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value * scale:.{digits}f}"


def summary_lines(results: SessionResults) -> list[str]:
    """The table printed at the end of the session (one row per decoder per measurement)."""
    lines: list[str] = []
    for pair, seconds in results.load_seconds.items():
        loads = ", ".join(f"{name} {value:.2f} s" for name, value in seconds.items())
        lines.append(f"pair {pair}: load {loads}")
    lines += [f"note: {note}" for note in results.notes]
    if not results.perf:
        return lines
    header = (
        f"{'measurement':<28} {'decoder':<14} {'TTFT ms':>8} {'TPOT ms':>8} {'tok/s':>7} {'speedup':>7} "
        f"{'alpha':>6} {'tau':>5} {'tgt fwd/tok':>11}"
    )
    lines += [header, "-" * len(header)]
    for record in results.perf:
        base = (record.base,) if record.base is not None else ()  # same-job A/B: the base decoder
        for samples in (record.speculative, *base, record.baseline):
            speedup = samples.tokens_per_s / record.baseline.tokens_per_s
            lines.append(
                f"{record.name[:28]:<28} {samples.decoder[:14]:<14} {_fmt(samples.median('ttft'), 1e3):>8} "
                f"{_fmt(samples.median('tpot'), 1e3):>8} {_fmt(samples.tokens_per_s):>7} {_fmt(speedup, 1, 2):>7} "
                f"{_fmt(samples.alpha_estimate, 1, 3):>6} {_fmt(samples.mean_accepted_length, 1, 2):>5} "
                f"{_fmt(samples.per_token('target_forwards'), 1, 3):>11}"
            )
    lines.append(
        "TTFT/TPOT: medians; tok/s: all tokens / all wall time; speedup: tok/s over the baseline's, same run; "
        "alpha = A/(A+R); tau = 1 + A/steps (includes the bonus or correction token)"
    )
    return lines + per_request_lines(results) + comparison_lines(results)


def per_request_lines(results: SessionResults) -> list[str]:
    """One line per measurement: the spread of each request's own alpha, which the pooled alpha hides."""
    from ..perf.acceptance import distribution

    lines = []
    for record in results.perf:
        d = distribution(record)
        if d["worst"] is None:
            continue
        q, worst = d["alpha"], d["worst"]
        prompt = f", prompt {worst['prompt']}" if worst["prompt"] is not None else ""
        lines.append(f"alpha per request {record.name}: min {q['min']:.3f}, quartiles {q['q1']:.3f} / "
                     f"{q['median']:.3f} / {q['q3']:.3f}, max {q['max']:.3f} over {d['requests']} requests "
                     f"(pooled {d['pooled_alpha']:.3f}); worst: request {worst['request']}{prompt}")
    return lines


def comparison_lines(results: SessionResults) -> list[str]:
    """One line per baseline comparison: its status and each timing verdict with its change."""
    lines = []
    for c in results.comparisons:
        verdicts = ", ".join(
            f"{m['metric']} {m['verdict']}" + (f" ({describe_change(m['worse_by'], 0)})" if m["worse_by"] is not None
                                               else "")
            for m in c["timing"]
        )
        moved = [f["figure"] for f in c["deterministic"] if not f["ok"]]
        figures = f"deterministic: {', '.join(moved)} moved" if moved else f"{len(c['deterministic'])} deterministic ok"
        status = "REGRESSION" if c["failed"] else c["status"]
        lines.append(f"baseline {c['measurement']}: {status}" + (f"; {verdicts}" if verdicts else "")
                     + (f"; {figures}" if c["deterministic"] else ""))
    return lines


def write_json(path: Path, results: SessionResults, environment: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(results.as_dict(environment), indent=2, default=str) + "\n")
