"""The run's timings in pytest-benchmark's JSON layout, for its tools and for CI dashboards.

One benchmark per measurement, decoder and timed quantity: ``<measurement>[speculative-latency]``,
``[speculative-ttft]``, ``[baseline-latency]``, ``[baseline-ttft]``. Each ``stats`` block is what
pytest-benchmark computes from the raw samples (seconds per decode, one decode per round), the
samples themselves under ``data``; the speculative figures (speedup, alpha, forward passes per
token, prefills, c and v, the baseline verdicts) ride in ``extra_info``. ``pytest-benchmark
compare``, github-action-benchmark's ``pytest`` tool and similar dashboards read it as is.
"""

from __future__ import annotations

import json
import math
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .summary import SessionResults, atomic_write_text, relative_to

QUANTITIES = (("latency", "end-to-end latency of one decode"), ("ttft", "time to first token"))


def stats_block(samples: list[float]) -> dict[str, Any]:
    """pytest-benchmark's statistics of one benchmark (its own ``Stats`` class), raw samples in ``data``."""
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for value in samples:
        stats.update(value)
    block = stats.as_dict() if samples else {field: 0 for field in Stats.fields}
    return {**block, "iterations": 1, "data": list(samples)}


def machine_info(environment: dict[str, Any]) -> dict[str, Any]:
    return {
        "node": platform.node(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "python_compiler": platform.python_compiler(),
        "python_implementation": platform.python_implementation(),
        "python_implementation_version": platform.python_version(),
        "python_version": platform.python_version(),
        "python_build": list(platform.python_build()),
        "release": platform.release(),
        "system": platform.system(),
        "cpu": {"brand_raw": environment.get("cpu", ""), "count": environment.get("cpu_count")},
        "specdec": environment,
    }


def commit_info() -> dict[str, Any]:
    try:
        from pytest_benchmark.utils import get_commit_info

        return get_commit_info()
    except Exception as exc:  # not a git checkout, git missing: the layout still wants the key
        return {"id": "unversioned", "dirty": False, "error": str(exc)}


def _finite(value: Any) -> Any:
    """NaN and infinities become null at any depth: dashboards read strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _extra_info(record: Any, role: str, comparison: dict[str, Any] | None) -> dict[str, Any]:
    samples = record.speculative if role == "speculative" else record.baseline
    info: dict[str, Any] = {
        "decoder": samples.decoder,
        "pair": record.pair,
        "gamma": record.gamma,
        "sampling": record.sampling,
        "max_new_tokens": record.max_new_tokens,
        "tokens_per_s": samples.tokens_per_s,
        "ttft_s_median": samples.median("ttft"),
        "tpot_s_median": samples.median("tpot"),
        **samples.deterministic(),
        "acceptance_by_position": list(samples.acceptance_by_position),
    }
    if role == "speculative":
        from ..perf.acceptance import distribution

        per_request = {k: v for k, v in distribution(record).items() if k != "alpha_per_request"}
        info.update(speedup=record.speedup, ttft_ratio=record.ttft_ratio,
                    forward_costs=record.extra.get("forward_costs"),
                    per_request_alpha={**per_request["alpha"], "histogram": per_request["alpha_histogram"],
                                       "worst": per_request["worst"]})
        if comparison is not None:
            info["baseline_status"] = comparison.get("status")
            info["baseline_verdicts"] = {m["metric"]: m["verdict"] for m in comparison.get("timing", [])}
            info["baseline_failed"] = comparison.get("failed")
    return _finite(info)


def benchmark_document(results: SessionResults, environment: dict[str, Any]) -> dict[str, Any]:
    """The whole file: machine_info, commit_info, benchmarks, datetime, version."""
    from pytest_benchmark import __version__

    comparisons = {c["measurement"]: c for c in results.comparisons}
    benchmarks = []
    for record in results.perf:
        for role in ("speculative", "baseline"):
            samples = record.speculative if role == "speculative" else record.baseline
            for quantity, meaning in QUANTITIES:
                name = f"{record.name}[{role}-{quantity}]"
                benchmarks.append({
                    "group": record.name,
                    "name": name,
                    "fullname": f"specdec::{name}",
                    "params": {"decoder": role, "quantity": quantity, "gamma": record.gamma},
                    "param": f"{role}-{quantity}",
                    "extra_info": {"quantity": meaning, **_extra_info(record, role, comparisons.get(record.name))},
                    "options": {"timer": "time.perf_counter", "disable_gc": False, "warmup": True,
                                "min_rounds": len(samples.runs), "max_time": 0, "min_time": 0},
                    "stats": stats_block(samples.samples(quantity)),
                })
    return relative_to(results.root, {
        "machine_info": machine_info(environment),
        "commit_info": commit_info(),
        "benchmarks": benchmarks,
        "datetime": datetime.now(timezone.utc).isoformat(),
        "version": __version__,
    })


def write_benchmark_json(path: Path, results: SessionResults, environment: dict[str, Any]) -> Path:
    atomic_write_text(path, json.dumps(benchmark_document(results, environment), indent=2, default=str) + "\n")
    return path
