"""Calibrated pairs: random targets of realistic CPU cost whose acceptance is set by construction.

Each target is a randomly initialised Llama (vocabulary 8192). The output projections of every
layer past the first ``draft_layers`` are scaled by ``deep_scale``, so the deep layers barely move
the residual stream, and the draft is the target's own first ``draft_layers`` layers with its
final norm and head (an early exit). The head is scaled so the logits spread like a trained
model's (``head_scale``), which changes no argmax. How often the two agree is then set by ``deep_scale``: the
smaller it is, the closer the target's argmax stays to the draft's.

The scales were calibrated once, offline, by sweeping ``deep_scale`` and measuring the greedy
alpha estimate A / (A + R) of the reference decoder (gamma 4) on the eight seeded random prompts
of ``reference_impl.prompts`` with 128 new tokens each::

    python -m reference_impl.models.calibrated --sweep calibrated-110m 0.005,0.01,0.02

``measured_alpha`` records what that measurement gave for the chosen scale; building a pair
does no measuring and takes seconds. The costs (draft cost c, verify cost v) depend on the
machine and are measured by ``reference_impl.autogamma.measure_costs``; docs/performance.md
lists them for this project's CPUs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from . import NamedPair
from .tiny import build_model, early_exit_draft, scale_deep_layers

CALIBRATION_TOKENS = 128
CALIBRATION_GAMMA = 4


@dataclass(frozen=True)
class CalibratedSpec:
    """The shape of one calibrated pair, its deep-layer scale and the alpha measured for it."""

    name: str
    hidden: int
    layers: int
    heads: int
    intermediate: int
    draft_layers: int
    deep_scale: float
    measured_alpha: float  # greedy A / (A + R), gamma 4, on the calibration prompts (module docstring)
    vocab_size: int = 8192
    seed: int = 0
    init_std: float = 0.02
    logit_std: float = 5.0  # spread of the head's logits: top-1 probability ~0.45 on average, like a trained LM

    def config(self) -> Any:
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden,
            intermediate_size=self.intermediate,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.heads,
            max_position_embeddings=2048,
            initializer_range=self.init_std,
            tie_word_embeddings=False,
            bos_token_id=0,
            eos_token_id=1,
        )

    @property
    def head_scale(self) -> float:
        """Factor on the output head taking the logits' spread from init_std * sqrt(hidden) to ``logit_std``.

        A random head over unit-RMS hidden states gives nearly uniform distributions (top-1
        probability ~0.001); scaling it changes no argmax, so greedy outputs and alpha stay put,
        while sampled decoding and confidence-based drafting see peaked distributions.
        """
        return self.logit_std / (self.init_std * self.hidden**0.5)

    @property
    def non_embedding_params(self) -> int:
        """Parameters outside the embeddings and the output head (attention, MLP, norms)."""
        per_layer = 4 * self.hidden * self.hidden + 3 * self.hidden * self.intermediate + 2 * self.hidden
        return self.layers * per_layer + self.hidden

    def describe(self) -> str:
        return (
            f"random Llama {self.layers}x{self.hidden} target ({self.non_embedding_params / 1e6:.0f}M non-embedding "
            f"params, vocab {self.vocab_size}), layers >= {self.draft_layers} scaled by {self.deep_scale:g}; draft: "
            f"its first {self.draft_layers} layer(s); greedy alpha ~{self.measured_alpha:.2f} (seed {self.seed})"
        )


SPECS = (
    CalibratedSpec(
        name="calibrated-40m",
        hidden=640,
        layers=8,
        heads=10,
        intermediate=1792,
        draft_layers=1,
        deep_scale=0.02,
        measured_alpha=0.818,
    ),
    CalibratedSpec(
        name="calibrated-110m",
        hidden=768,
        layers=12,
        heads=12,
        intermediate=3072,
        draft_layers=1,
        deep_scale=0.01,
        measured_alpha=0.900,
    ),
)


def build_calibrated(spec: CalibratedSpec, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """(target, draft) for ``spec``, deterministic in its seed; the draft is the target's early exit."""
    target = build_model(spec.config(), spec.seed, dtype)
    scale_deep_layers(target, first_layer=spec.draft_layers, scale=spec.deep_scale)
    with torch.no_grad():
        target.get_output_embeddings().weight.mul_(spec.head_scale)
    with torch.random.fork_rng(devices=[]):  # the draft's throwaway initialisation draws from the global RNG
        draft = early_exit_draft(target, layers=spec.draft_layers)
    return target, draft


CALIBRATED_PAIRS: dict[str, NamedPair] = {
    spec.name: NamedPair(name=spec.name, description=spec.describe(), build=partial(build_calibrated, spec))
    for spec in SPECS
}


def calibration_prompts(vocab_size: int, count: int = 8) -> list[torch.Tensor]:
    """The seeded random prompts the alpha in ``MEASURED_ALPHA`` was measured on."""
    from ..prompts import prompt_ids

    return prompt_ids(None, vocab_size, "cpu", count)


def measure_alpha(
    target: Any,
    draft: Any,
    prompts: list[torch.Tensor],
    max_new_tokens: int = CALIBRATION_TOKENS,
    gamma: int = CALIBRATION_GAMMA,
) -> float:
    """Pooled greedy A / (A + R) of the reference decoder over ``prompts``."""
    from reference_impl.speculative import SpeculativeDecoder

    decoder = SpeculativeDecoder(target, draft, gamma=gamma)
    accepted = rejections = 0
    for prompt in prompts:
        stats = decoder.generate(prompt, max_new_tokens=max_new_tokens).stats
        accepted, rejections = accepted + stats.accepted, rejections + stats.rejections
    return accepted / (accepted + rejections) if accepted + rejections else float("nan")


def spec_named(name: str) -> CalibratedSpec:
    by_name = {spec.name: spec for spec in SPECS}
    if name not in by_name:
        raise ValueError(f"unknown calibrated pair {name!r}; choose one of {', '.join(by_name)}")
    return by_name[name]


def sweep(name: str, scales: list[float], prompts: int = 8, max_new_tokens: int = CALIBRATION_TOKENS) -> None:
    """Print the measured alpha of pair ``name`` at each deep-layer scale (the offline calibration)."""
    import dataclasses

    spec = spec_named(name)
    for scale in scales:
        target, draft = build_calibrated(dataclasses.replace(spec, deep_scale=scale))
        alpha = measure_alpha(target, draft, calibration_prompts(spec.vocab_size, prompts), max_new_tokens)
        print(f"{name} deep_scale={scale:g} alpha={alpha:.3f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", nargs=2, metavar=("PAIR", "SCALES"), required=True,
                        help="pair name and comma-separated deep-layer scales to measure")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=CALIBRATION_TOKENS)
    args = parser.parse_args(argv)
    name, scales = args.sweep
    sweep(name, [float(s) for s in scales.split(",")], args.prompts, args.max_new_tokens)


if __name__ == "__main__":
    main()
