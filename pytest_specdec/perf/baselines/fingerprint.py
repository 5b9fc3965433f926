"""Baseline fingerprints: what a performance measurement is, and what makes two of them comparable.

- ``timing_samples`` / ``deterministic_figures``: what a ``PerfRecord`` contributes to a baseline,
  raw per-run timing samples (ratios paired run by run) and figures that do not depend on machine
  speed.
- ``fingerprint``: the fields that decide comparability (the decoder's name, device, library
  versions, model pair and weights, dtype, gamma, sampling, prompts, protocol). The
  ``TIMING_ONLY_FIELDS`` decide only whether *timings* compare; deterministic figures (forward
  passes, acceptance) compare whenever the software, models and protocol match.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from typing import Any

TIMING_ONLY_FIELDS = ("device", "torch_threads", "cuda")


def timing_samples(record: Any) -> dict[str, list[float]]:
    """Raw per-run samples of every timing metric, ratios paired run by run (same prompt, adjacent in time)."""
    spec, base = record.speculative.runs, record.baseline.runs

    def clean(values: Iterator[float]) -> list[float]:
        return [v for v in values if not math.isnan(v) and not math.isinf(v)]

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else math.nan

    return {
        "speedup": clean(ratio(s.tokens_per_s, b.tokens_per_s) for s, b in zip(spec, base, strict=True)),
        "ttft_ratio": clean(ratio(s.ttft, b.ttft) for s, b in zip(spec, base, strict=True)),
        "tpot_ratio": clean(ratio(s.tpot, b.tpot) for s, b in zip(spec, base, strict=True)),
        "ttft_s": clean(s.ttft for s in spec),
        "tpot_s": clean(s.tpot for s in spec),
        "tokens_per_s": clean(s.tokens_per_s for s in spec),
        "baseline_ttft_s": clean(b.ttft for b in base),
        "baseline_tpot_s": clean(b.tpot for b in base),
        "baseline_tokens_per_s": clean(b.tokens_per_s for b in base),
        "baseline_latency_s": clean(b.latency for b in base),
    }


def deterministic_figures(record: Any) -> dict[str, Any]:
    """Figures that do not depend on machine speed, per request or per token (independent of the repeat count)."""
    spec, base = record.speculative, record.baseline
    requests = max(len(spec.runs), 1)
    figures: dict[str, Any] = {
        "tokens_per_request": spec.total_tokens / requests,
        "alpha_estimate": spec.alpha_estimate,
        "mean_accepted_length": spec.mean_accepted_length,
        "target_forwards_per_token": spec.per_token("target_forwards"),
        "draft_forwards_per_token": spec.per_token("draft_forwards"),
        "target_tokens_fed_per_token": spec.per_token("target_tokens_fed"),
        "draft_tokens_fed_per_token": spec.per_token("draft_tokens_fed"),
        "prefills_per_request": (spec.count("target_prefills") + spec.count("draft_prefills")) / requests,
        "forwards_before_first_token": spec.count("forwards_before_first_token") / requests,
        "acceptance_by_position": list(spec.acceptance_by_position),
        "baseline.target_forwards_per_token": base.per_token("target_forwards"),
        "baseline.forwards_before_first_token": base.count("forwards_before_first_token") / max(len(base.runs), 1),
    }
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in figures.items()}


# --- fingerprint ----------------------------------------------------------------------------------


def model_digest(model: Any) -> str:
    """A short digest of a model's config (paths left out) and a strided sample of every parameter."""
    import torch

    digest = hashlib.sha256(type(model).__name__.encode())
    config = getattr(model, "config", None)
    if config is not None:
        skip = ("transformers_version", "dtype", "torch_dtype")
        settings = {k: v for k, v in config.to_dict().items() if not k.startswith("_") and k not in skip}
        digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, param in model.named_parameters():
            digest.update(f"{name}{tuple(param.shape)}".encode())
            if param.device.type != "meta":
                flat = param.detach().reshape(-1)
                sample = flat[:: max(1, flat.numel() // 256)][:256].to("cpu", torch.float64)
                digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def prompt_digest(prompts: list[Any]) -> str:
    """'8 prompts, sha 1a2b...': what prompts were measured, without storing them."""
    ids = [prompt.reshape(-1).tolist() for prompt in prompts]
    return f"{len(ids)} prompts, sha {hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:12]}"


def fingerprint(environment: dict[str, Any], pair: dict[str, Any], measurement: dict[str, Any]) -> dict[str, Any]:
    """The fields that decide what is comparable (all JSON scalars). ``pair``: ids, revision, digests, dtype."""
    gamma = measurement.get("gamma")
    return {
        "measurement": measurement["name"],
        "decoder": measurement["decoder"],
        "device": environment["device"],
        "torch_threads": environment.get("torch_threads"),
        "cuda": environment.get("cuda"),
        "torch": environment["torch"],
        "transformers": environment["transformers"],
        "target": pair["target"],
        "draft": pair["draft"],
        "revision": pair.get("revision"),
        "target_digest": pair["target_digest"],
        "draft_digest": pair["draft_digest"],
        "dtype": pair["dtype"],
        "gamma": "decoder default" if gamma is None else gamma,
        "sampling": measurement["sampling"],
        "prompts": measurement["prompts"],
        "max_new_tokens": measurement["max_new_tokens"],
        "repeats": measurement["repeats"],
    }


def fingerprint_key(fp: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]


def differing_fields(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (stored.get(k), new.get(k)) for k in sorted(set(stored) | set(new)) if stored.get(k) != new.get(k)}
