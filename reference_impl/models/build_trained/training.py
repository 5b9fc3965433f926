"""The trained pair's models and their training: Llama shapes, the optimiser, the loop, bfloat16 saving.

The target trains on next-token cross-entropy; the draft distils the target (forward KL mixed
with a little cross-entropy). Budgets are step counts with fixed seeds, so the same software
gives the same weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .corpus import SEQ_LEN, VOCAB_SIZE, save_tokenizer


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
