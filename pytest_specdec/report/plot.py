"""The report's figure: latency against output length, acceptance by draft position, and acceptance per request.

The latency curve comes from the timed runs themselves: every token's timestamp is kept, so the
time until the k-th token was visible is measured for every k up to ``max_new_tokens`` without
extra runs. The measured break-even length is the shortest output from which the speculative
decoder's median curve stays at or below the baseline's. The third panel is the histogram of each
request's own alpha, with the pooled alpha marked: a pooled figure hides bad requests, a histogram
does not.

``curve`` and ``break_even_length`` are pure; ``draw`` imports matplotlib lazily (the optional
``report`` extra) and returns a reason instead of a path when it is not installed.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

MISSING_MATPLOTLIB = "matplotlib is not installed, so no plot was drawn (pip install 'pytest-specdec[report]')"


def curve(samples: Any) -> list[float]:
    """Median seconds from the call until the k-th token was visible, k = 1..n (runs with at least k tokens)."""
    offsets = [[t - run.start for t in run.token_times] for run in samples.runs]
    longest = max((len(o) for o in offsets), default=0)
    return [statistics.median(o[k] for o in offsets if len(o) > k) for k in range(longest)]


def break_even_length(speculative: list[float], baseline: list[float]) -> int | None:
    """Smallest output length L with the speculative curve <= the baseline's for every length >= L; None if never."""
    n = min(len(speculative), len(baseline))
    found = None
    for k in range(n - 1, -1, -1):
        if speculative[k] > baseline[k]:
            break
        found = k + 1
    return found


def _latency_axes(ax: Any, records: list[Any]) -> None:
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
    for i, record in enumerate(records):
        color = colors[i % len(colors)]
        spec, base = curve(record.speculative), curve(record.baseline)
        lengths = range(1, len(spec) + 1)
        label = f"{record.name}"
        ax.plot(lengths, [s * 1e3 for s in spec], color=color, label=f"{label}: speculative")
        ax.plot(range(1, len(base) + 1), [b * 1e3 for b in base], color=color, linestyle="--",
                label=f"{label}: baseline")
        even = break_even_length(spec, base)
        if even is not None:
            ax.axvline(even, color=color, linestyle=":", linewidth=1)
            ax.annotate(f"break-even {even}", (even, spec[even - 1] * 1e3), color=color, fontsize=7,
                        xytext=(4, -12), textcoords="offset points")
    ax.set_xlabel("output length (tokens)")
    ax.set_ylabel("median time until that token (ms)")
    ax.set_title("Latency against output length")
    ax.legend(fontsize=6)


def _acceptance_axes(ax: Any, records: list[Any]) -> None:
    shown = [r for r in records if r.speculative.acceptance_by_position]
    width = 0.8 / max(len(shown), 1)
    for i, record in enumerate(shown):
        rates = [0.0 if math.isnan(a) else a for a in record.speculative.acceptance_by_position]
        positions = [p + 1 + (i - (len(shown) - 1) / 2) * width for p in range(len(rates))]
        ax.bar(positions, rates, width=width, label=record.name)
    ax.set_xticks(range(1, max((len(r.speculative.acceptance_by_position) for r in shown), default=1) + 1))
    ax.set_xlabel("draft position")
    ax.set_ylabel("accepted / drafted at that position")
    ax.set_ylim(0, 1)
    ax.set_title("Acceptance by draft position")
    if shown:
        ax.legend(fontsize=6)


def _per_request_axes(ax: Any, records: list[Any]) -> None:
    from ..perf.acceptance import BINS, distribution

    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
    edges = [i / BINS for i in range(BINS + 1)]
    for i, record in enumerate(records):
        d, color = distribution(record), colors[i % len(colors)]
        if not d["alpha_per_request"]:
            continue
        ax.stairs(d["alpha_histogram"], edges, color=color, linewidth=1.5,
                  label=f"{record.name} (min {d['alpha']['min']:.2f}, median {d['alpha']['median']:.2f})")
        ax.axvline(d["pooled_alpha"], color=color, linestyle=":", linewidth=1)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0, 1)
    ax.set_xlabel("the request's own alpha A/(A+R) (dotted: pooled over all requests)")
    ax.set_ylabel("requests")
    ax.set_title("Acceptance per request")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)


def draw(path: Path, records: list[Any]) -> Path | str:
    """Write the PNG to ``path``; returns the path, or the reason no plot was drawn."""
    if not records:
        return "no performance measurement ran, so there is nothing to plot"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return MISSING_MATPLOTLIB
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(17, 4.5))
    try:
        _latency_axes(left, records)
        _acceptance_axes(middle, records)
        _per_request_axes(right, records)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
