"""The run's markdown report, its plot, and the benchmark JSON, written to ``--specdec-report-dir``.

Wall-clock truth first: TTFT, TPOT, tokens per second and the measured speedup of the decoder
under test over the autoregressive baseline in the same run, the measured break-even output
length, and the speedup the FIELD-NOTES model predicts from the measured alpha, c and v beside the
measured one. Tokens per target pass is shown as what it is, a count. Then the deterministic
figures, acceptance by draft position, acceptance per request (each request's own alpha: the
pooled figure hides bad requests) and the verdicts against the stored baseline.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .summary import SessionResults, describe_change, relative_to, write_json

REPORT_NAME, PLOT_NAME, BENCHMARK_NAME, RESULTS_NAME = "report.md", "specdec.png", "benchmark.json", "results.json"


def _num(value: Any, digits: int = 2, scale: float = 1.0, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value * scale:.{digits}f}{suffix}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *["| " + " | ".join(row) + " |" for row in rows]]


def predicted(record: Any) -> float:
    """The FIELD-NOTES speedup model from the measured alpha (A/(A+R)), gamma, c and v."""
    from reference_impl.stats import predicted_speedup

    costs = record.extra.get("forward_costs") or {}
    alpha = record.speculative.alpha_estimate
    if not costs or math.isnan(alpha):
        return math.nan
    return predicted_speedup(alpha, int(costs["gamma"]), costs["c"], costs["v"])


def _headline(results: SessionResults) -> list[str]:
    from .plot import break_even_length, curve

    rows = []
    for r in results.perf:
        spec, base = r.speculative, r.baseline
        even = break_even_length(curve(spec), curve(base))
        rows.append([r.name, str(r.gamma or "auto"), r.sampling, f"**{_num(r.speedup)}x**", f"{_num(predicted(r))}x",
                     f"{_num(spec.median('ttft'), 1, 1e3)} / {_num(base.median('ttft'), 1, 1e3)}",
                     f"{_num(spec.median('tpot'), 2, 1e3)} / {_num(base.median('tpot'), 2, 1e3)}",
                     f"{_num(spec.tokens_per_s, 1)} / {_num(base.tokens_per_s, 1)}",
                     f"{_num(spec.median('latency'), 0, 1e3)} / {_num(base.median('latency'), 0, 1e3)}",
                     f"{even} tokens" if even else f"none up to {r.max_new_tokens}"])
    lines = _table(["measurement", "gamma", "sampling", "speedup, measured", "speedup, predicted",
                    "TTFT ms (spec / base)", "TPOT ms (spec / base)", "tokens/s (spec / base)",
                    "latency ms (spec / base)", "break-even length"], rows)
    for r in results.perf:
        per_pass = 1 / r.speculative.per_token("target_forwards") if r.speculative.per_token("target_forwards") else 0
        lines.append(f"\n- `{r.name}`: {_num(per_pass)} tokens per target pass - a count, not a speed; the "
                     f"wall-clock speedup is {_num(r.speedup)}x and TTFT is {_num(r.ttft_ratio)}x the baseline's.")
    return lines


def _where_time_goes(results: SessionResults) -> list[str]:
    rows = []
    for r in results.perf:
        d, costs = r.speculative.deterministic(), r.extra.get("forward_costs") or {}
        rows.append([r.name, _num(d["alpha_estimate"], 3), _num(d["mean_accepted_length"]),
                     _num(d["target_forwards_per_token"], 3), _num(d["draft_forwards_per_token"], 3),
                     _num(d["prefills_per_request"]), _num(d["forwards_before_first_token"]),
                     _num(costs.get("c"), 3), _num(costs.get("v"), 2), _num(costs.get("target_pass_s"), 2, 1e3),
                     f"{len(r.speculative.runs)} + {len(r.baseline.runs)}"])
    acceptance = [[r.name, *(_num(a) for a in r.speculative.acceptance_by_position)] for r in results.perf]
    width = max((len(row) for row in acceptance), default=1)
    return [*_table(["measurement", "alpha A/(A+R)", "tau", "target fwd/token", "draft fwd/token", "prefills/request",
                     "forwards before 1st token", "c", "v", "target pass ms", "runs (spec + base)"], rows),
            "", "Acceptance by draft position (accepted / drafted at that position):", "",
            *_table(["measurement", *(f"pos {i}" for i in range(1, width))],
                    [row + ["-"] * (width - len(row)) for row in acceptance]),
            "", *_per_request(results)]


def _per_request(results: SessionResults) -> list[str]:
    """Each request's own alpha: its spread, a histogram and the worst request, beside the pooled figure."""
    from ..perf.acceptance import BINS, distribution

    spread, counts = [], []
    for r in results.perf:
        d = distribution(r)
        q, a, worst = d["alpha"], d["acceptance_rate"], d["worst"]
        where = "-" if worst is None else (f"request {worst['request']}"
                                           + (f" (prompt {worst['prompt']})" if worst["prompt"] is not None else "")
                                           + f": {worst['accepted']} accepted, {worst['rejections']} rejections")
        spread.append([r.name, f"{d['requests'] - d['without_drafts']}" + (f" (+{d['without_drafts']} without "
                       "drafts)" if d["without_drafts"] else ""), _num(d["pooled_alpha"], 3),
                       *(_num(q[k], 3) for k in ("min", "q1", "median", "q3", "max")),
                       f"{_num(a['min'], 3)} / {_num(a['median'], 3)}", where])
        counts.append([r.name, *(str(c) for c in d["alpha_histogram"])])
    edges = [f"{i / BINS:.1f}-{(i + 1) / BINS:.1f}" for i in range(BINS)]
    return ["Acceptance per request (each timed decode's own alpha A/(A+R); the pooled alpha sums counts over "
            "all requests and hides the bad ones):", "",
            *_table(["measurement", "requests", "pooled alpha", "min", "q1", "median", "q3", "max",
                     "acceptance rate min / median", "worst request"], spread),
            "", "Requests by their own alpha (histogram):", "",
            *_table(["measurement", *edges], counts)]


def _comparisons(results: SessionResults) -> list[str]:
    if not results.comparisons:
        return ["No performance test compared against a stored baseline in this run."]
    lines: list[str] = []
    for c in results.comparisons:
        stored = c.get("baseline") or {}
        lines += ["", f"### `{c['measurement']}`: {'REGRESSION' if c['failed'] else c['status']}", ""]
        if not stored:
            lines.append("The baseline folder holds no baseline yet; record one with --specdec-save-baseline.")
        elif c["status"] == "no comparable baseline" or c["differing"]:
            diffs = "; ".join(f"{k}: stored {v[0]!r}, now {v[1]!r}" for k, v in c["differing"].items())
            lines.append(f"Closest stored entry: `{stored['path']}` entry `{stored['key']}`; differs in: {diffs}.")
        else:
            lines.append(f"Baseline: `{stored.get('path')}` entry `{stored.get('key')}`, saved {stored.get('saved')}.")
        if c["timing"]:
            rows = [[m["metric"], _num(m["baseline"], 4), _num(m["new"], 4), describe_change(m["worse_by"]),
                     _num(m["threshold"], 0, 100, "%"), _num(m["pvalue"], 3),
                     f"[{_num(m['interval'][0], 3)}, {_num(m['interval'][1], 3)}]",
                     f"**{m['verdict']}**" + (f" ({m['note']})" if m["note"] else "")] for m in c["timing"]]
            lines += ["", *_table(["metric", "baseline median", "now", "change", "threshold", "p (worse)",
                                   "95% interval, now/baseline", "verdict"], rows)]
        mismatched = [f for f in c["deterministic"] if not f["ok"]]
        if c["deterministic"]:
            lines.append("")
            lines.append(f"Deterministic figures: {len(c['deterministic']) - len(mismatched)} of "
                         f"{len(c['deterministic'])} match." if not mismatched else "Deterministic figures that moved:")
            lines += [f"- `{f['figure']}`: baseline {f['baseline']} -> now {f['new']}" for f in mismatched]
    return lines


def render(results: SessionResults, environment: dict[str, Any], *, decoder: str, plot: Path | str) -> str:
    """The markdown text of the report; ``plot`` is the PNG's path or the reason it is missing."""
    loads = "; ".join(f"{pair}: " + ", ".join(f"{k} {v:.2f} s" for k, v in s.items())
                      for pair, s in results.load_seconds.items())
    threads = sorted({str(r.extra.get("torch_threads", "?")) for r in results.perf}) or ["-"]
    figure = f"![latency against output length, acceptance by position and per request]({Path(plot).name})" \
        if isinstance(plot, Path) else f"_No plot: {plot}._"
    lines = [
        "# Speculative decoding: wall-clock report", "",
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} by pytest-specdec. "
        f"Decoder under test: `{decoder}`; baseline: the autoregressive reference decoder on the same target, "
        "timed interleaved with it (same prompts, same run, after warm-up).", "",
        f"Device: {environment.get('device')}; torch {environment.get('torch')}, transformers "
        f"{environment.get('transformers')}, CUDA {environment.get('cuda') or '-'}, "
        f"{', '.join(threads)} torch thread(s) while timing. Model load: {loads or '-'}.", "",
        "## Wall clock", "", *_headline(results), "", figure, "",
        "## Where the time goes (deterministic figures)", "", *_where_time_goes(results), "",
        "Predicted speedup: (1 - alpha^(gamma+1)) / ((1 - alpha) (gamma c + v)), with c = draft pass / target pass "
        "and v = target pass over gamma+1 tokens / over 1 token, both measured on this machine.", "",
        "## Against the stored baseline", *_comparisons(results), "",
        "## Definitions", "",
        "- TTFT: from the call to the first token visible to the caller, every prefill before it included.",
        "- TPOT: (t_last - t_first) / (n - 1). Tokens/s: all generated tokens over all wall time.",
        "- Speedup: tokens/s of the decoder under test over the baseline's, same run. TTFT, TPOT and latency are "
        "medians over runs.",
        "- alpha = A / (A + R) (A accepted draft tokens, R steps ended by a rejection); tau = 1 + A / steps, "
        "including the bonus or correction token.",
        "- Break-even length: the shortest output from which the speculative median latency curve stays at or below "
        "the baseline's (time until the k-th token, from the same runs).",
        "- A timing regression needs an effect beyond the metric's threshold and a one-sided p < 0.01 (Wilcoxon "
        "signed-rank on the run-by-run ratios, each prompt against itself in the baseline); "
        "when the bootstrap interval straddles the threshold the verdict is inconclusive.",
    ]
    if results.notes:
        lines += ["", "## Notes", "", *[f"- {note}" for note in results.notes]]
    return relative_to(results.root, "\n".join(lines) + "\n")


def write_report(directory: Path, results: SessionResults, environment: dict[str, Any], *,
                 decoder: str) -> dict[str, Path | str]:
    """report.md, specdec.png, benchmark.json and results.json in ``directory``; returns what was written."""
    from .benchmark_json import write_benchmark_json
    from .plot import draw
    from .summary import atomic_write_text

    directory.mkdir(parents=True, exist_ok=True)
    plot = draw(directory / PLOT_NAME, results.perf)
    report = directory / REPORT_NAME
    atomic_write_text(report, render(results, environment, decoder=decoder, plot=plot))
    write_json(directory / RESULTS_NAME, results, environment)
    return {"report": report, "plot": plot, "benchmark": write_benchmark_json(directory / BENCHMARK_NAME, results,
                                                                              environment),
            "results": directory / RESULTS_NAME}
