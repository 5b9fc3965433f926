"""Batched sampling as a source of samples for the end-to-end distribution test.

A batched decoder with one generator per row gives ``batch`` independent draws per call: row i
of call c is seeded with ``seed * 1_000_003 + c * batch + i``, so the draws are independent of
each other and of the batch they were drawn in (the per-row generator contract). Rows of other
prompts can ride along in every batch (``distractors``): they are decoded and thrown away, so
a row that leaks into another shows up as a wrong law of the counted rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .stats import GofResult, goodness_of_fit, sequence_index, sequence_probs


def sample_sequences_batched(
    decoder: Any,
    prompt: Any,
    sampling: Any,
    *,
    n: int,
    length: int,
    seed: int,
    batch: int,
    gamma: int | None = None,
    distractors: Sequence[tuple[Any, int]] = (),
) -> Any:
    """``n`` continuations of ``length`` tokens of ``prompt`` from ``generate_batch`` calls of ``batch`` rows of
    ``prompt`` plus the ``(prompt, max_new_tokens)`` distractor rows -> (n, length) tokens."""
    import torch

    if batch < 1:
        raise ValueError(f"batch must be >= 1 rows of the tested prompt, got {batch}")
    rows: list[list[int]] = []
    call = 0
    while len(rows) < n:
        prompts = [prompt] * batch + [p for p, _ in distractors]
        lengths = [length] * batch + [m for _, m in distractors]
        generators = [torch.Generator(device=prompt.device).manual_seed(seed * 1_000_003 + call * len(prompts) + i)
                      for i in range(len(prompts))]
        results = decoder.generate_batch(prompts, max_new_tokens=lengths, sampling=sampling, gamma=gamma,
                                         generators=generators)
        for result in results[:batch]:
            if len(result.tokens) != length:
                raise AssertionError(f"asked for {length} new tokens without EOS, got {len(result.tokens)}")
            rows.append(result.tokens)
        call += 1
    return torch.tensor(rows[:n], dtype=torch.long)


def batched_distribution_test(
    decoder: Any,
    target: Any,
    prompt: Any,
    sampling: Any,
    *,
    n: int,
    seed: int,
    batch: int,
    length: int = 4,
    gamma: int | None = None,
    distractors: Sequence[tuple[Any, int]] = (),
) -> GofResult:
    """``stats.decoder_distribution_test`` with the samples drawn ``batch`` rows at a time."""
    import torch

    exact = sequence_probs(target, prompt, sampling, length)
    vocab = target.get_output_embeddings().weight.shape[0]
    sequences = sample_sequences_batched(decoder, prompt, sampling, n=n, length=length, seed=seed, batch=batch,
                                         gamma=gamma, distractors=distractors)
    counts = torch.bincount(sequence_index(sequences, vocab), minlength=vocab**length).tolist()
    every_sequence = torch.cartesian_prod(*[torch.arange(vocab)] * length).view(-1, length)
    labels = [",".join(map(str, row)) for row in every_sequence.tolist()]
    return goodness_of_fit(counts, exact.tolist(), labels=labels,
                           name=f"{length}-token sequences, {sampling.describe()}, {batch} rows per batch")
