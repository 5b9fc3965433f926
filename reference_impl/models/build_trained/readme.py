"""The README.md of the trained/ folder, rendered from metrics.json (pure string work)."""

from __future__ import annotations

from .corpus import SEQ_LEN, VOCAB_SIZE


def metrics_table(m: dict) -> str:
    """Markdown table of the headline metrics."""
    tf, paths, cost = m["teacher_forced"], m["paths"], m["decode_cost"]
    rows = [
        ("Parameters (target / draft)", f"{m['params']['target']:,} / {m['params']['draft']:,}"),
        ("Held-out loss, nats/token (target / draft)", f"{tf['target_loss']:.3f} / {tf['draft_loss']:.3f}"),
        ("Greedy alpha A/(A+R), gamma=4, along the target's greedy path", f"{paths['greedy_alpha']:.3f}"),
        ("  accepted / drafted on that path", f"{paths['greedy_accepted_per_drafted']:.3f}"),
        ("  mean accepted length tau (incl. bonus/correction token)", f"{paths['greedy_tau']:.2f}"),
        ("Greedy agreement, teacher-forced on held-out text (honest figure)", f"{tf['greedy_agreement']:.3f}"),
        ("Sampled acceptance T=1, teacher-forced on held-out text", f"{tf['sampled_acceptance']:.3f}"),
        ("Sampled acceptance T=1, along target-sampled paths", f"{paths['sampled_path_acceptance']:.3f}"),
        ("Greedy continuations ending in a loop", f"{paths['greedy_loop_fraction']:.2f}"),
        (
            "Decode ms/token, batch 1, fp32 (target / draft)",
            f"{cost['target_ms_per_token']:.2f} / {cost['draft_ms_per_token']:.2f}",
        ),
        ("Cost ratio c = draft / target", f"{cost['c']:.3f}"),
        ("Model and tokenizer files under trained/ (bytes)", f"{m['total_bytes']:,}"),
    ]
    lines = ["| Metric | Value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def model_row(m: dict, name: str) -> str:
    """One row of the README's model table."""
    arch, train = m["architecture"][name], m["training"][name]
    objective = "cross-entropy"
    if train["distill_weight"] > 0:
        objective = (
            f"{train['distill_weight']} x KL(target ‖ draft) + {1 - train['distill_weight']:.1f} x cross-entropy"
        )
    return (
        f"| {name} | {arch['num_layers']} x {arch['hidden_size']} | {arch['num_heads']} | "
        f"{arch['intermediate_size']} | {m['params'][name]:,} | {train['steps']} steps x "
        f"{train['batch_size']} x {SEQ_LEN} tokens, {objective}, lr {train['lr']} |"
    )


def load_note(env: dict) -> str:
    """Sentence on CPU load during the build, when it was recorded."""
    if "load_average_1m_at_end" not in env:
        return ""
    return (
        f" The 1-minute load average at the end of the build was "
        f"{env['load_average_1m_at_end']} on {env['cpu_count']} cores; wall-clock figures"
        " (build time, decode ms/token, c) grow when other jobs share the CPU."
    )


def render_readme(m: dict) -> str:
    """README.md for the trained/ folder, generated from metrics.json."""
    corpus, env, paths = m["corpus"], m["environment"], m["paths"]
    files = "\n".join(f"| `{name}` | {size:,} |" for name, size in m["file_bytes"].items())
    samples = "\n\n".join(f"```text\n{s['prompt']}\u2502{s['continuation']}\n```" for s in m["samples"])
    return f"""# Trained target/draft pair

A small Llama-architecture **target** model, a smaller Llama **draft** model and
a byte-level BPE tokenizer (vocab {VOCAB_SIZE}, `<|endoftext|>` as BOS/EOS/PAD),
trained on text that ships with CPython: the reference documentation in
`pydoc_data.topics` and the standard library's `.py` sources (tests, third-party
packages and codec tables left out). Every 20th document in sorted order is
held out for evaluation. Each folder loads standalone, offline, like any Llama pair:

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
target = AutoModelForCausalLM.from_pretrained("reference_impl/models/trained/target")
draft = AutoModelForCausalLM.from_pretrained("reference_impl/models/trained/draft")
tokenizer = AutoTokenizer.from_pretrained("reference_impl/models/trained/target")
```

Weights are stored in bfloat16 and `from_pretrained` restores that dtype: call
`.to(torch.float32)` for float32 work. The tokenizer adds no BOS automatically.
The draft's `generation_config.json` sets a constant 4-token assistant schedule.

| Model | Layers x hidden | Heads | MLP | Params | Training |
|---|---|---|---|---|---|
{model_row(m, "target")}
{model_row(m, "draft")}

Both use tied embeddings, a {SEQ_LEN}-token context and bf16 autocast during training.

## How it was built

```sh
{m["build_command"].strip()}
```

Build time: {m["build_seconds"]:.0f} s ({m["build_seconds"] / 60:.1f} min) on a 2-core CPU
({env["threads"]} threads, Python {env["python"]}, torch {env["torch"]}); stages in seconds:
{", ".join(f"{k} {v}" for k, v in m["stage_seconds"].items())}.{load_note(env)} The budget is a step
count, not wall-clock time, so the build is reproducible on the same software; the
corpus comes from the running Python's stdlib, so another Python version gives a
different corpus. Corpus: {corpus["train_docs"]} training documents
({corpus["train_tokens"]:,} tokens, {corpus["train_bytes_per_token"]:.2f} bytes/token),
{corpus["heldout_docs"]} held-out documents ({corpus["heldout_tokens"]:,} tokens).

## Metrics

Measured by the build script on the saved files, loaded with `from_pretrained` and
cast to float32 (full numbers in `metrics.json`).

{metrics_table(m)}

- *Greedy alpha*: {paths["prompts"]} held-out prompts of {paths["prompt_tokens"]} tokens; the
  target generates {paths["new_tokens"]} tokens greedily; along that path, speculative steps
  of gamma={paths["gamma"]} are replayed (accept the longest prefix where the draft's argmax
  equals the target's, then one target token). A = accepted draft tokens, R = steps that
  ended in a rejection.
- Tiny targets loop under greedy decoding and loops are easy for the draft to predict,
  which inflates the greedy-path figure. The teacher-forced agreement on real held-out
  text is the honest per-position figure (under an i.i.d. model it estimates the same alpha).
- *Sampled acceptance*: mean over positions of sum_x min(p_target(x), p_draft(x)) at
  temperature 1, the expected acceptance rate of speculative sampling.
- *Loop*: the last 32 tokens of a 64-token greedy continuation repeat with a period of
  at most 16 tokens.

## Files

| File | Bytes |
|---|---|
{files}

## Samples from the target (temperature 1, held-out prompts; `\u2502` marks the prompt end)

{samples}
"""
