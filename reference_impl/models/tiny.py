"""Tiny random model pairs for correctness tests: built from a config and a seed in milliseconds.

Four attention-only architectures (Llama, GPT-2, Qwen2, Mistral; Mistral optionally with a sliding
window shorter than the context), one hybrid (Falcon-H1: every layer runs attention and a Mamba2
state-space mixer side by side, so its cache holds a recurrent state that cannot be cropped), and
three relations between draft and target:

- ``identical``: the draft is the target (every draft token is accepted);
- ``partial``: the draft is the target's first layer (early exit) and the target's deeper layers
  are scaled down, so the two agree often but not always;
- ``unrelated``: a smaller model from another seed (almost nothing is accepted).

Initialisation draws from a forked RNG, so building a pair never touches the caller's global RNG.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator

import torch

ARCHITECTURES = ("llama", "gpt2", "qwen2", "mistral")
HYBRID_ARCHITECTURES = ("falcon_h1",)
RELATIONS = ("identical", "partial", "unrelated")

_LAYER_INDEX = re.compile(r"\.(?:layers|h)\.(\d+)\.")
_OUTPUT_PROJECTIONS = ("o_proj", "down_proj", "attn.c_proj", "mlp.c_proj", "mamba.out_proj")


def tiny_config(
    arch: str,
    *,
    vocab_size: int = 96,
    hidden: int = 32,
    layers: int = 3,
    heads: int = 4,
    max_positions: int = 256,
    init_std: float = 0.1,
    sliding_window: int | None = None,
) -> object:
    """A small config of ``arch``; ``init_std`` sets how peaked the random model's distributions are.

    ``sliding_window`` (Mistral only): each position attends to the last ``sliding_window`` positions.
    """
    from transformers import GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

    if sliding_window is not None and arch != "mistral":
        raise ValueError(f"sliding_window applies to the mistral tiny architecture, not {arch!r}")
    if arch == "falcon_h1":
        return _falcon_h1_config(vocab_size, hidden, layers, heads, max_positions, init_std)

    if arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_positions=max_positions,
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            initializer_range=init_std,
            bos_token_id=0,
            eos_token_id=1,
        )
    llama_family = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}
    if arch not in llama_family:
        known = ", ".join(ARCHITECTURES + HYBRID_ARCHITECTURES)
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {known}")
    window = {} if sliding_window is None else {"sliding_window": sliding_window}
    return llama_family[arch](**_decoder_fields(vocab_size, hidden, layers, heads, max_positions, init_std), **window)


def _decoder_fields(vocab_size: int, hidden: int, layers: int, heads: int, max_positions: int, init_std: float) -> dict:
    """The config fields the Llama family and Falcon-H1 name alike: sizes, grouped-query heads (two
    query heads per KV head), untied embeddings, BOS 0 and EOS 1."""
    return dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads // 2,
        max_position_embeddings=max_positions,
        initializer_range=init_std,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
    )


def _falcon_h1_config(
    vocab_size: int, hidden: int, layers: int, heads: int, max_positions: int, init_std: float
) -> object:
    """Falcon-H1: attention and a Mamba2 mixer (``2 * hidden`` wide, state 8, conv kernel 4) in every layer."""
    from transformers import FalconH1Config

    return FalconH1Config(
        **_decoder_fields(vocab_size, hidden, layers, heads, max_positions, init_std),
        mamba_n_heads=heads,
        mamba_d_ssm=2 * hidden,
        mamba_d_state=8,
        mamba_n_groups=1,
        mamba_d_conv=4,
        mamba_chunk_size=16,
        pad_token_id=None,
    )


def build_model(config: object, seed: int, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A randomly initialised causal LM from ``config``, deterministic in ``seed``, in eval mode."""
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.to(dtype).eval()


def num_layers(config: object) -> int:
    return getattr(config, "n_layer", None) or config.num_hidden_layers  # type: ignore[attr-defined]


def _output_projections(model: torch.nn.Module, first_layer: int) -> Iterator[torch.nn.Module]:
    for name, module in model.named_modules():
        layer = _LAYER_INDEX.search(f".{name}.")
        if layer and int(layer.group(1)) >= first_layer and name.endswith(_OUTPUT_PROJECTIONS):
            yield module


def scale_deep_layers(model: torch.nn.Module, first_layer: int, scale: float) -> torch.nn.Module:
    """Multiply the output projections of layers >= ``first_layer`` by ``scale`` (in place).

    With a small scale the deep layers barely move the residual stream, so an early-exit draft
    made of the first layers agrees with the full model at a rate set by ``scale``.
    """
    with torch.no_grad():
        for module in _output_projections(model, first_layer):
            module.weight.mul_(scale)
            if getattr(module, "bias", None) is not None:
                module.bias.mul_(scale)
    return model


def early_exit_draft(target: torch.nn.Module, layers: int) -> torch.nn.Module:
    """A draft made of the target's embeddings, first ``layers`` blocks, final norm and head."""
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(target.config)
    if hasattr(config, "n_layer"):
        config.n_layer = layers
    else:
        config.num_hidden_layers = layers
        layer_types = getattr(config, "layer_types", None)
        if layer_types and len(layer_types) != layers:  # some configs derive it from num_hidden_layers
            config.layer_types = layer_types[:layers]
    draft = AutoModelForCausalLM.from_config(config, dtype=target.dtype)
    missing, _ = draft.load_state_dict(target.state_dict(), strict=False)
    if missing:
        raise RuntimeError(f"early-exit draft is missing weights {missing[:5]}")
    return draft.to(next(target.parameters()).device).eval()


def tiny_pair(
    arch: str = "llama",
    relation: str = "partial",
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    deep_scale: float = 0.3,
    **config_overrides: int | float,
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(target, draft) of the given architecture and relation, deterministic in ``seed``."""
    if relation not in RELATIONS:
        raise ValueError(f"unknown relation {relation!r}; choose one of {', '.join(RELATIONS)}")
    target = build_model(tiny_config(arch, **config_overrides), seed, dtype)
    if relation == "identical":
        return target, target
    if relation == "partial":
        scale_deep_layers(target, first_layer=1, scale=deep_scale)
        return target, early_exit_draft(target, layers=1)
    small = {**config_overrides, "layers": 1, "hidden": 16, "heads": 2}
    return target, build_model(tiny_config(arch, **small), seed + 1_000_003, dtype)
