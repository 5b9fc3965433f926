"""The build, stage by stage: corpus, tokenizer, training, saving, evaluation, metrics.json and README.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch

from .corpus import EOS_TOKEN, HOLDOUT_EVERY, SEQ_LEN, VOCAB_SIZE, collect_corpus, token_stream, train_tokenizer
from .evaluation import (
    decode_ms_per_token,
    eval_prompts,
    folder_sizes,
    heldout_chunks,
    load_fp32,
    path_metrics,
    print_samples,
    teacher_forced_metrics,
)
from .readme import render_readme
from .training import DRAFT_SPEC, TARGET_SPEC, TrainSpec, count_params, make_model, save_model, train

DESCRIPTION = "Build the project's trained target/draft pair from text that ships with CPython."

@contextmanager
def stage(label: str, timings: dict[str, float]) -> Iterator[None]:
    """Record the wall time of a build stage under `label` and print it."""
    start = time.time()
    yield
    timings[label] = round(time.time() - start, 1)
    print(f"== {label}: {timings[label]:.1f}s", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m reference_impl.models.build_trained", description=DESCRIPTION)
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

