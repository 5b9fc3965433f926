"""Which recurrent or hybrid architectures the installed transformers runs on CPU, in float64, exactly.

For each candidate, a tiny random model (2 layers, hidden 32, vocabulary 96) is built from its
config, cast to float64 and fed 100 tokens two ways: one pass without a cache, and a prefill of 20
followed by passes of 1, 5, 1, 3, 9, 1, 1, 4, 7 and 9 tokens through ``DynamicCache(config=...)``
(the pattern of a speculative decoder: one-token drafts, multi-token verifies). It records whether
that runs, the largest logit difference between the two, and the cache's layer types.

    python -m benchmarks.hybrid_candidates --out docs/measurements/hybrid-candidates.json
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch

VOCAB = 96
CHUNKS = (20, 1, 5, 1, 3, 9, 1, 1, 4, 7, 9)
MAMBA2 = dict(mamba_expand=2, mamba_d_state=8, mamba_n_groups=1, mamba_d_conv=4, mamba_chunk_size=16)
DENSE = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=False)


def candidates() -> dict:
    import transformers as tf

    return {
        "mamba2": lambda: tf.Mamba2Config(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_heads=4,
                                          head_dim=16, expand=2, state_size=8, n_groups=1, conv_kernel=4,
                                          chunk_size=16, tie_word_embeddings=False),
        "bamba": lambda: tf.BambaConfig(**DENSE, attn_layer_indices=[1], mamba_n_heads=4, mamba_d_head=16,
                                        **MAMBA2),
        "falcon_h1": lambda: tf.FalconH1Config(**DENSE, mamba_n_heads=4, mamba_d_ssm=64, **MAMBA2),
        "jamba": lambda: tf.JambaConfig(**DENSE, attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2,
                                        expert_layer_offset=1, num_experts=2, mamba_d_state=8, mamba_d_conv=4,
                                        mamba_expand=2, mamba_dt_rank=4, use_mamba_kernels=False),
        "zamba2": lambda: tf.Zamba2Config(**{**DENSE, "num_key_value_heads": 4}, mamba_d_state=8, mamba_headdim=16,
                                          n_mamba_heads=4, mamba_expand=2, mamba_d_conv=4, chunk_size=16,
                                          layers_block_type=["mamba", "hybrid"], hybrid_layer_ids=[1],
                                          attention_head_dim=8),
        "qwen3_next": lambda: tf.Qwen3NextConfig(**DENSE, moe_intermediate_size=32,
                                                 shared_expert_intermediate_size=32, num_experts=2,
                                                 num_experts_per_tok=1, head_dim=8, linear_num_key_heads=2,
                                                 linear_num_value_heads=4, linear_key_head_dim=8,
                                                 linear_value_head_dim=8, linear_conv_kernel_dim=4,
                                                 layer_types=["linear_attention", "full_attention"]),
        "lfm2": lambda: tf.Lfm2Config(**DENSE, conv_L_cache=3, layer_types=["conv", "full_attention"]),
        "granitemoehybrid": lambda: tf.GraniteMoeHybridConfig(**DENSE, shared_intermediate_size=64,
                                                              num_local_experts=2, num_experts_per_tok=1,
                                                              layer_types=["mamba", "attention"], mamba_n_heads=4,
                                                              mamba_d_head=16, **MAMBA2),
    }


def probe(make_config, experts: str | None) -> dict:
    from transformers import AutoModelForCausalLM, DynamicCache

    config = make_config()
    extra = {} if experts is None else {"experts_implementation": experts}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, **extra).double().eval()
    tokens = torch.randint(0, VOCAB, (sum(CHUNKS),), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        full = model(input_ids=tokens.view(1, -1)).logits[0]
        cache, pieces, start = DynamicCache(config=model.config), [], 0
        for k in CHUNKS:
            out = model(input_ids=tokens[start : start + k].view(1, -1), cache=cache, use_cache=True, logits_to_keep=k)
            pieces.append(out.logits[0])
            start += k
    return {
        "runs": True,
        "max_logit_difference": float((torch.cat(pieces) - full).abs().max()),
        "cache_layers": sorted({type(layer).__name__ for layer in cache.layers}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.set_num_threads(1)
    results = {}
    for name, make in candidates().items():
        for experts in (None, "eager"):
            try:
                results[name if experts is None else f"{name} (experts eager)"] = probe(make, experts)
                break
            except Exception as exc:  # record why a candidate cannot run, then try eager experts
                results[name] = {"runs": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
