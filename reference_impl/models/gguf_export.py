"""Write a Hugging Face Llama checkpoint as a GGUF file that llama.cpp loads, with the ``gguf`` package.

Serving engines such as llama.cpp read GGUF, not safetensors. This module converts the same
folders the suite already loads (``reference_impl/models/trained/{target,draft}``) so an engine
runs exactly the weights the in-process tests run, and nothing is downloaded:

    python -m reference_impl.models.gguf_export reference_impl/models/trained/target target.gguf

Why not llama.cpp's ``convert_hf_to_gguf.py``: it identifies the BPE pre-tokenizer by hashing
the tokenizer's output and stops with "BPE pre-tokenizer was not recognized" for the trained
tokenizer, whose hash is in no list. Here the pre-tokenizer is named explicitly: the trained
tokenizer is byte-level BPE with GPT-2's split regex, which llama.cpp calls ``gpt-2``. The suite
sends token ids, never text, so the tokenizer only has to be valid, not exercised.

Weights are written in float32 (the stored bfloat16 values widen exactly), so the engine and the
float32 in-process target compute with the same numbers and differ only in kernel arithmetic.
The query and key projections are permuted from Hugging Face's rotate-half layout to the
interleaved pairs llama.cpp's RoPE expects, as llama.cpp's own converter does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

GPT2_PRE_TOKENIZER = "gpt-2"
SUPPORTED_MODEL_TYPES = ("llama",)


class GgufExportError(ValueError):
    """The checkpoint cannot be written as GGUF by this module (say why and what to do)."""


def permute_qk(weight: Any, n_head: int) -> Any:
    """Rotate-half rows (HF) -> interleaved rows (GGML) for a (n_head * head_dim, hidden) projection."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _read_config(folder: Path) -> dict[str, Any]:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise GgufExportError(f"{folder}: no config.json; pass a Hugging Face model folder")
    config = json.loads(config_path.read_text())
    if config.get("model_type") not in SUPPORTED_MODEL_TYPES:
        raise GgufExportError(
            f"{folder}: model_type {config.get('model_type')!r} is not supported here (only {SUPPORTED_MODEL_TYPES}); "
            "use llama.cpp's convert_hf_to_gguf.py for other architectures"
        )
    if config.get("rope_scaling") or config.get("rope_parameters", {}).get("rope_type", "default") != "default":
        raise GgufExportError(f"{folder}: RoPE scaling is not supported by this exporter")
    return config


def _tokenizer_tables(folder: Path) -> tuple[list[str], list[int], list[str]]:
    """(tokens in id order, token types, merges) of a byte-level BPE tokenizer.json."""
    import gguf

    tokenizer_path = folder / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise GgufExportError(f"{folder}: no tokenizer.json; llama.cpp needs a vocabulary in the GGUF file")
    data = json.loads(tokenizer_path.read_text())
    model = data["model"]
    if model.get("type") != "BPE" or (data.get("pre_tokenizer") or {}).get("type") != "ByteLevel":
        raise GgufExportError(f"{tokenizer_path}: only byte-level BPE tokenizers are supported")
    vocab: dict[str, int] = model["vocab"]
    for added in data.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise GgufExportError(f"{tokenizer_path}: token ids are not 0..{len(vocab) - 1} without gaps")
    tokens = [""] * len(vocab)
    for text, index in vocab.items():
        tokens[index] = text
    special = {added["id"] for added in data.get("added_tokens", []) if added.get("special")}
    types = [int(gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL) for i in range(len(tokens))]
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    return tokens, types, merges


def _tensors(folder: Path, config: dict[str, Any]) -> dict[str, Any]:
    """GGUF tensor name -> float32 numpy array."""
    import torch
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise GgufExportError(f"{folder}: no *.safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    n_head, n_kv = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    out = {"token_embd.weight": state["model.embed_tokens.weight"], "output_norm.weight": state["model.norm.weight"]}
    if "lm_head.weight" in state and not config.get("tie_word_embeddings", False):
        out["output.weight"] = state["lm_head.weight"]
    names = {
        "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
    }
    for layer in range(config["num_hidden_layers"]):
        for hf, gg in names.items():
            weight = state[f"model.layers.{layer}.{hf}.weight"]
            if gg == "attn_q":
                weight = permute_qk(weight, n_head)
            elif gg == "attn_k":
                weight = permute_qk(weight, n_kv)
            out[f"blk.{layer}.{gg}.weight"] = weight
    return {name: tensor.to(torch.float32).contiguous().numpy() for name, tensor in out.items()}


def export_gguf(folder: str | Path, out: str | Path, *, name: str | None = None) -> Path:
    """Write the Llama checkpoint in ``folder`` (config, safetensors, tokenizer.json) to ``out``."""
    import gguf

    folder, out = Path(folder), Path(out)
    config = _read_config(folder)
    tokens, types, merges = _tokenizer_tables(folder)
    if len(tokens) != config["vocab_size"]:
        raise GgufExportError(
            f"{folder}: tokenizer has {len(tokens)} tokens, config.vocab_size is {config['vocab_size']}"
        )
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), "llama")
    writer.add_name(name or folder.name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config.get("num_key_value_heads", config["num_attention_heads"]))
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(config.get("rope_parameters", {}).get("rope_theta", config.get("rope_theta", 1e4))))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(GPT2_PRE_TOKENIZER)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    if config.get("pad_token_id") is not None:
        writer.add_pad_token_id(config["pad_token_id"])
    writer.add_add_bos_token(False)
    for tensor_name, array in _tensors(folder, config).items():
        writer.add_tensor(tensor_name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="Hugging Face Llama model folder")
    parser.add_argument("out", help="GGUF file to write")
    args = parser.parse_args(argv)
    print(export_gguf(args.model, args.out))


if __name__ == "__main__":
    main()
