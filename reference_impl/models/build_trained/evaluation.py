"""Evaluation of the saved pair, loaded with ``from_pretrained`` and cast to float32.

Held-out loss and teacher-forced agreement, greedy alpha along the target's greedy path (by
replaying speculative steps over per-position matches), sampled acceptance, loops, decode cost
and samples: everything ``metrics.json`` holds besides the build facts.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .corpus import SEQ_LEN


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
