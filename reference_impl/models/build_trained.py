"""Build the project's trained target/draft pair from text that ships with CPython.

The pair is a small Llama-architecture *target* model, a smaller Llama *draft*
model and a byte-level BPE tokenizer. It is trained on ``pydoc_data.topics``
(the text of Python's reference documentation) and on the standard library's
own ``.py`` sources, so building it needs no network and no model hub.

Steps (all deterministic: fixed seeds, sorted file list, step-count budgets):

1. Collect the corpus; every 20th document (sorted order) is held out.
2. Train a byte-level BPE tokenizer (vocab 4096) on the training documents.
3. Train the target with next-token cross-entropy (bf16 autocast on CPU).
4. Train the draft by distilling the target's next-token distributions
   (forward KL, mixed with a little cross-entropy on the data).
5. Save each model in bfloat16 with its tokenizer, so that each folder loads
   standalone with ``AutoModelForCausalLM`` / ``AutoTokenizer``.
6. Evaluate the saved pair (float32) on held-out text and write
   ``metrics.json``: held-out loss, greedy alpha at gamma=4 along the target's
   greedy path, teacher-forced greedy agreement, sampled acceptance
   (sum_x min(p_target, p_draft)), greedy loop fraction, sizes and timings.

Usage (from the repository root)::

    python -m reference_impl.models.build_trained --out reference_impl/models/trained
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

EOS_TOKEN = "<|endoftext|>"
VOCAB_SIZE = 4096
HOLDOUT_EVERY = 20
SEQ_LEN = 512
# Stdlib folders left out of the corpus: tests, third-party packages, generated
# codec tables, the docs module itself (used as plain text instead), build files.
EXCLUDED_PARTS = {"test", "tests", "idle_test", "site-packages", "encodings", "pydoc_data", "__phello__", "__pycache__"}


# --------------------------------------------------------------------------- #
# Configuration
# --------------------------------------------------------------------------- #


@dataclass
class ModelSpec:
    """Shape of one Llama model (tied input/output embeddings)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int


@dataclass
class TrainSpec:
    """Optimisation budget and hyper-parameters for one model."""

    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    seed: int
    distill_weight: float = 0.0  # weight of KL(target || draft); 0 = plain CE


TARGET_SPEC = ModelSpec(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=768)
DRAFT_SPEC = ModelSpec(hidden_size=128, num_layers=1, num_heads=2, intermediate_size=384)


# --------------------------------------------------------------------------- #
# Corpus and tokenizer
# --------------------------------------------------------------------------- #


@dataclass
class Corpus:
    """Training and held-out documents, each a list of (name, text)."""

    train: list[tuple[str, str]]
    heldout: list[tuple[str, str]]


def stdlib_sources() -> list[tuple[str, str]]:
    """Return (relative path, text) for the stdlib .py files, sorted by path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if EXCLUDED_PARTS.intersection(rel.parts) or rel.parts[0].startswith("config-"):
            continue
        try:
            files.append((rel.as_posix(), path.read_text(encoding="utf-8")))
        except UnicodeDecodeError:
            continue
    return files


def pydoc_topics() -> list[tuple[str, str]]:
    """Return (topic name, text) for pydoc_data.topics, sorted by name."""
    from pydoc_data.topics import topics

    return [(f"pydoc:{name}", topics[name]) for name in sorted(topics)]


def split_holdout(docs: list[tuple[str, str]]) -> tuple[list, list]:
    """Hold out every HOLDOUT_EVERY-th document (index % 20 == 19)."""
    train = [d for i, d in enumerate(docs) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
    held = [d for i, d in enumerate(docs) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    return train, held


def collect_corpus() -> Corpus:
    """Collect docs and sources; split each list deterministically."""
    doc_train, doc_held = split_holdout(pydoc_topics())
    src_train, src_held = split_holdout(stdlib_sources())
    return Corpus(train=doc_train + src_train, heldout=doc_held + src_held)


def train_tokenizer(texts: list[str]):
    """Train a byte-level BPE tokenizer and wrap it as a HF fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        unk_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=SEQ_LEN,
    )


def save_tokenizer(tokenizer, folder: Path) -> None:
    """Save the tokenizer and mark it as PreTrainedTokenizerFast."""
    tokenizer.save_pretrained(folder)
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["clean_up_tokenization_spaces"] = False
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def token_stream(tokenizer, docs: list[tuple[str, str]]) -> torch.Tensor:
    """Encode documents into one stream, each document preceded by EOS."""
    eos = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    # The backend encodes whole documents without the model_max_length warning.
    encoded = tokenizer.backend_tokenizer.encode_batch([text for _, text in docs], add_special_tokens=False)
    ids: list[int] = []
    for doc in encoded:
        ids.append(eos)
        ids.extend(doc.ids)
    return torch.tensor(ids, dtype=torch.long)


# --------------------------------------------------------------------------- #
# Models and training
# --------------------------------------------------------------------------- #


def make_model(spec: ModelSpec, eos_id: int, seed: int):
    """Create a freshly initialised Llama model with the given shape."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=SEQ_LEN,
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    return LlamaForCausalLM(config)


def count_params(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())


def batches(stream: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Yield [batch, SEQ_LEN + 1] windows: non-overlapping chunks, reshuffled each epoch."""
    n_chunks = (len(stream) - 1) // SEQ_LEN
    chunks = stream[: n_chunks * SEQ_LEN + 1]
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n_chunks, generator=gen)
        for i in range(0, n_chunks - batch_size + 1, batch_size):
            starts = order[i : i + batch_size] * SEQ_LEN
            yield torch.stack([chunks[s : s + SEQ_LEN + 1] for s in starts.tolist()])


def lr_at(step: int, spec: TrainSpec) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return spec.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def train(
    model: torch.nn.Module,
    stream: torch.Tensor,
    spec: TrainSpec,
    name: str,
    teacher: torch.nn.Module | None = None,
) -> dict:
    """Train `model` for spec.steps steps; distil from `teacher` if given."""
    torch.manual_seed(spec.seed)
    model.train()
    optimizer = make_optimizer(model, spec.lr)
    data = batches(stream, spec.batch_size, spec.seed)
    start = time.time()
    log_every = max(1, spec.steps // 10)
    running = 0.0
    for step in range(spec.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, spec)
        batch = next(data)
        inputs, labels = batch[:, :-1], batch[:, 1:]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=inputs).logits.float()
            teacher_logits = None
            if teacher is not None and spec.distill_weight > 0:
                with torch.no_grad():
                    teacher_logits = teacher(input_ids=inputs).logits.float()
        loss = F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), labels.reshape(-1))
        if teacher_logits is not None:
            kl = F.kl_div(
                F.log_softmax(logits, -1).reshape(-1, VOCAB_SIZE),
                F.log_softmax(teacher_logits, -1).reshape(-1, VOCAB_SIZE),
                log_target=True,
                reduction="batchmean",
            )
            loss = (1 - spec.distill_weight) * loss + spec.distill_weight * kl
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        running += loss.item()
        if (step + 1) % log_every == 0 or step + 1 == spec.steps:
            n = (step % log_every) + 1
            print(
                f"  [{name}] step {step + 1}/{spec.steps} loss {running / n:.3f} ({time.time() - start:.0f}s)",
                flush=True,
            )
            running = 0.0
    model.eval()
    return {
        "steps": spec.steps,
        "seconds": round(time.time() - start, 1),
        "tokens": spec.steps * spec.batch_size * SEQ_LEN,
        **asdict(spec),
    }


def save_model(model, tokenizer, folder: Path, draft: bool) -> None:
    """Save weights in bfloat16 with config, generation config and tokenizer."""
    from transformers import GenerationConfig

    folder.mkdir(parents=True, exist_ok=True)
    eos_id = model.config.eos_token_id
    model.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
    model.to(torch.float32)
    gen = GenerationConfig(bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id)
    if draft:
        # A fixed gamma of 4 when used as a transformers assistant model.
        gen.num_assistant_tokens = 4
        gen.num_assistant_tokens_schedule = "constant"
        gen.assistant_confidence_threshold = 0.0
    gen.save_pretrained(folder)
    save_tokenizer(tokenizer, folder)


# --------------------------------------------------------------------------- #
# Evaluation
# --------------------------------------------------------------------------- #


def load_fp32(folder: Path):
    """Load a saved model the way a user would, then cast to float32."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).to(torch.float32).eval()


@torch.no_grad()
def logits_of(model, ids: torch.Tensor) -> torch.Tensor:
    """Full-sequence logits in float32."""
    return model(input_ids=ids).logits.float()


def heldout_chunks(stream: torch.Tensor, max_chunks: int) -> torch.Tensor:
    """Evenly spaced, non-overlapping held-out windows of SEQ_LEN + 1 tokens."""
    n = (len(stream) - 1) // SEQ_LEN
    picks = torch.linspace(0, n - 1, steps=min(n, max_chunks)).round().long().tolist()
    return torch.stack([stream[i * SEQ_LEN : i * SEQ_LEN + SEQ_LEN + 1] for i in picks])


def overlap(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Per-position acceptance beta = sum_x min(p(x), q(x)) at temperature 1."""
    return torch.minimum(p_logits.softmax(-1), q_logits.softmax(-1)).sum(-1)


@torch.no_grad()
def teacher_forced_metrics(target, draft, chunks: torch.Tensor, batch_size: int = 8) -> dict:
    """Held-out loss of both models, greedy agreement and mean overlap."""
    sums = {"target_nll": 0.0, "draft_nll": 0.0, "agree": 0.0, "beta": 0.0}
    count = 0
    for i in range(0, len(chunks), batch_size):
        batch = chunks[i : i + batch_size]
        inputs, labels = batch[:, :-1], batch[:, 1:]
        t_logits, d_logits = logits_of(target, inputs), logits_of(draft, inputs)
        sums["target_nll"] += F.cross_entropy(t_logits.transpose(1, 2), labels, reduction="sum").item()
        sums["draft_nll"] += F.cross_entropy(d_logits.transpose(1, 2), labels, reduction="sum").item()
        sums["agree"] += (t_logits.argmax(-1) == d_logits.argmax(-1)).sum().item()
        sums["beta"] += overlap(t_logits, d_logits).sum().item()
        count += labels.numel()
    return {
        "tokens": count,
        "target_loss": sums["target_nll"] / count,
        "draft_loss": sums["draft_nll"] / count,
        "greedy_agreement": sums["agree"] / count,
        "sampled_acceptance": sums["beta"] / count,
    }


def eval_prompts(stream: torch.Tensor, eos_id: int, n: int, length: int) -> torch.Tensor:
    """n prompts of `length` tokens, evenly spaced in the held-out stream, free of EOS."""
    offsets = torch.linspace(0, len(stream) - 4 * length, steps=n).long().tolist()
    prompts = []
    for start in offsets:
        while (stream[start : start + length] == eos_id).any():
            start += 1
        prompts.append(stream[start : start + length])
    return torch.stack(prompts)


@torch.no_grad()
def generate(model, prompts: torch.Tensor, new_tokens: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Greedy (generator=None) or temperature-1 sampling, no KV cache, no early stop."""
    ids = prompts
    for _ in range(new_tokens):
        last = logits_of(model, ids)[:, -1]
        if generator is None:
            nxt = last.argmax(-1, keepdim=True)
        else:
            nxt = torch.multinomial(last.softmax(-1), 1, generator=generator)
        ids = torch.cat([ids, nxt], dim=1)
    return ids


def simulate_greedy_speculation(matches: list[bool], gamma: int) -> dict:
    """Replay greedy speculative steps over per-position draft==target matches.

    Each step drafts up to gamma tokens, accepts the longest matching prefix and
    then appends one target token (the correction, or the bonus after a full
    accept). A counts accepted draft tokens, R the steps that ended in a rejection.
    """
    pos, accepted, rejected, steps, drafted = 0, 0, 0, 0, 0
    while pos < len(matches):
        window = matches[pos : pos + gamma]
        k = next((i for i, ok in enumerate(window) if not ok), len(window))
        accepted += k
        drafted += len(window)
        rejected += int(k < len(window))
        steps += 1
        pos += k + 1
    return {"accepted": accepted, "rejected": rejected, "steps": steps, "drafted": drafted}


def ends_in_loop(tokens: list[int], window: int = 32, max_period: int = 16) -> bool:
    """True if the last `window` tokens repeat with some period <= max_period."""
    n = len(tokens)
    return any(all(tokens[i] == tokens[i - p] for i in range(n - window, n)) for p in range(1, max_period + 1))


@torch.no_grad()
def path_metrics(target, draft, prompts: torch.Tensor, new_tokens: int, gamma: int, seed: int) -> dict:
    """Greedy alpha along the target's greedy path, overlap along sampled paths, loops."""
    prompt_len = prompts.shape[1]
    greedy = generate(target, prompts, new_tokens)
    t_arg = logits_of(target, greedy[:, :-1])[:, prompt_len - 1 :].argmax(-1)
    d_arg = logits_of(draft, greedy[:, :-1])[:, prompt_len - 1 :].argmax(-1)
    totals = {"accepted": 0, "rejected": 0, "steps": 0, "drafted": 0}
    for row in (t_arg == d_arg).tolist():
        for key, value in simulate_greedy_speculation(row, gamma).items():
            totals[key] += value
    a, r = totals["accepted"], totals["rejected"]
    continuations = greedy[:, prompt_len:].tolist()

    gen = torch.Generator().manual_seed(seed)
    sampled = generate(target, prompts, new_tokens, generator=gen)
    t_logits = logits_of(target, sampled[:, :-1])[:, prompt_len - 1 :]
    d_logits = logits_of(draft, sampled[:, :-1])[:, prompt_len - 1 :]
    return {
        "prompts": len(prompts),
        "prompt_tokens": prompt_len,
        "new_tokens": new_tokens,
        "gamma": gamma,
        "greedy_alpha": a / (a + r) if a + r else 1.0,
        "greedy_accepted_per_drafted": a / totals["drafted"],
        "greedy_tau": 1 + a / totals["steps"],
        "greedy_position_agreement": (t_arg == d_arg).float().mean().item(),
        "greedy_consistency": (t_arg == greedy[:, prompt_len:]).float().mean().item(),
        "greedy_loop_fraction": sum(ends_in_loop(c) for c in continuations) / len(continuations),
        "sampled_path_acceptance": overlap(t_logits, d_logits).mean().item(),
        "sampled_path_target_nll": F.cross_entropy(t_logits.transpose(1, 2), sampled[:, prompt_len:]).item(),
        **{f"greedy_{k}": v for k, v in totals.items()},
    }


@torch.no_grad()
def decode_ms_per_token(model, prompt: torch.Tensor, new_tokens: int = 64, repeats: int = 3) -> float:
    """Median wall-clock ms per token of cached greedy decoding, batch 1, float32."""
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    model.generate(prompt, **kwargs)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.generate(prompt, **kwargs)
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2] / new_tokens


@torch.no_grad()
def print_samples(target, tokenizer, prompts: torch.Tensor, new_tokens: int, seed: int) -> list[dict]:
    """Sample at temperature 1 from the target and print prompt + continuation."""
    gen = torch.Generator().manual_seed(seed)
    out = generate(target, prompts, new_tokens, generator=gen)
    samples = []
    for row, prompt in zip(out, prompts, strict=True):
        p_text = tokenizer.decode(prompt)
        c_text = tokenizer.decode(row[len(prompt) :])
        samples.append({"prompt": p_text, "continuation": c_text})
        print("-" * 72 + f"\n{p_text}\u2502{c_text}", flush=True)
    print("-" * 72)
    return samples


def folder_sizes(out: Path) -> dict[str, int]:
    """Byte size of every model/tokenizer file under `out` (not the reports)."""
    return {
        p.relative_to(out).as_posix(): p.stat().st_size
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in ("metrics.json", "README.md")
    }


# --------------------------------------------------------------------------- #
# README
# --------------------------------------------------------------------------- #


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


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #


@contextmanager
def stage(label: str, timings: dict[str, float]) -> Iterator[None]:
    """Record the wall time of a build stage under `label` and print it."""
    start = time.time()
    yield
    timings[label] = round(time.time() - start, 1)
    print(f"== {label}: {timings[label]:.1f}s", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reference_impl/models/trained"))
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--target-steps", type=int, default=700)
    parser.add_argument("--draft-steps", type=int, default=360)
    parser.add_argument("--batch-size", type=int, default=8, help="sequences of 512 tokens")
    parser.add_argument("--target-lr", type=float, default=3e-3)
    parser.add_argument("--draft-lr", type=float, default=4e-3)
    parser.add_argument(
        "--distill-weight", type=float, default=0.9, help="weight of KL(target||draft) in the draft loss (0 = plain CE)"
    )
    parser.add_argument("--eval-prompts", type=int, default=30)
    parser.add_argument("--eval-chunks", type=int, default=64, help="held-out windows for loss")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def train_pair(
    args: argparse.Namespace, stream: torch.Tensor, eos_id: int, timings: dict[str, float]
) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    """Train the target on the data, then the draft distilled from the target."""
    target_spec = TrainSpec(
        steps=args.target_steps,
        batch_size=args.batch_size,
        lr=args.target_lr,
        warmup_steps=max(1, args.target_steps // 20),
        seed=args.seed + 1,
    )
    draft_spec = TrainSpec(
        steps=args.draft_steps,
        batch_size=args.batch_size,
        lr=args.draft_lr,
        warmup_steps=max(1, args.draft_steps // 20),
        seed=args.seed + 2,
        distill_weight=args.distill_weight,
    )
    target = make_model(TARGET_SPEC, eos_id, target_spec.seed)
    draft = make_model(DRAFT_SPEC, eos_id, draft_spec.seed)
    with stage("train_target", timings):
        target_log = train(target, stream, target_spec, "target")
    with stage("train_draft", timings):
        draft_log = train(draft, stream, draft_spec, "draft", teacher=target)
    return target, draft, {"target": target_log, "draft": draft_log}


def evaluate(args: argparse.Namespace, out: Path, tokenizer, held_stream: torch.Tensor, eos_id: int) -> dict:
    """All metrics of the saved pair, loaded from `out` and cast to float32."""
    target, draft = load_fp32(out / "target"), load_fp32(out / "draft")
    prompts = eval_prompts(held_stream, eos_id, args.eval_prompts, 32)
    tf = teacher_forced_metrics(target, draft, heldout_chunks(held_stream, args.eval_chunks))
    paths = path_metrics(target, draft, prompts, new_tokens=64, gamma=4, seed=args.seed + 3)
    t_ms = decode_ms_per_token(target, prompts[:1])
    d_ms = decode_ms_per_token(draft, prompts[:1])
    cost = {"target_ms_per_token": t_ms, "draft_ms_per_token": d_ms, "c": d_ms / t_ms}
    samples = print_samples(target, tokenizer, prompts[::10], 64, seed=args.seed + 4)
    return {"teacher_forced": tf, "paths": paths, "decode_cost": cost, "samples": samples}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    build_start = time.time()
    timings: dict[str, float] = {}
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    with stage("corpus", timings):
        corpus = collect_corpus()
    with stage("tokenizer", timings):
        tokenizer = train_tokenizer([text for _, text in corpus.train])
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    with stage("encode", timings):
        train_stream = token_stream(tokenizer, corpus.train)
        held_stream = token_stream(tokenizer, corpus.heldout)
    train_bytes = sum(len(t.encode()) for _, t in corpus.train)
    print(
        f"corpus: {len(corpus.train)} train / {len(corpus.heldout)} held-out docs, "
        f"{len(train_stream):,} train tokens ({train_bytes / len(train_stream):.2f} bytes/token), "
        f"{len(held_stream):,} held-out tokens",
        flush=True,
    )

    target, draft, training = train_pair(args, train_stream, eos_id, timings)
    params = {"target": count_params(target), "draft": count_params(draft)}
    save_model(target, tokenizer, out / "target", draft=False)
    save_model(draft, tokenizer, out / "draft", draft=True)
    del target, draft

    with stage("evaluate", timings):
        evaluation = evaluate(args, out, tokenizer, held_stream, eos_id)
    build_seconds = round(time.time() - build_start, 1)
    metrics = {
        "build_command": "python -m reference_impl.models.build_trained "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "build_seconds": build_seconds,
        "stage_seconds": timings,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": args.threads,
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "corpus": {
            "train_docs": len(corpus.train),
            "heldout_docs": len(corpus.heldout),
            "train_tokens": len(train_stream),
            "heldout_tokens": len(held_stream),
            "train_bytes_per_token": train_bytes / len(train_stream),
            "heldout_every": HOLDOUT_EVERY,
        },
        "params": params,
        "architecture": {
            "target": asdict(TARGET_SPEC),
            "draft": asdict(DRAFT_SPEC),
            "vocab_size": VOCAB_SIZE,
            "context": SEQ_LEN,
        },
        "training": training,
        **{k: v for k, v in evaluation.items() if k != "samples"},
        "file_bytes": folder_sizes(out),
        "samples": evaluation["samples"],
    }
    metrics["total_bytes"] = sum(metrics["file_bytes"].values())
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "README.md").write_text(render_readme(metrics))
    print(json.dumps({k: metrics[k] for k in ("params", "teacher_forced", "paths", "decode_cost")}, indent=2))
    print(f"total build time: {build_seconds:.0f}s ({build_seconds / 60:.1f} min)")


if __name__ == "__main__":
    main()
