"""Tree against chain on one pair, greedy, in the same run: tokens per target pass and wall-clock tokens/s.

Usage (from the repository root, alone on the machine)::

    flock -x /tmp/specdec-timing.lock python -m benchmarks.tree_vs_chain --pair calibrated-40m

Each repeat runs every decoder on every prompt, the order rotating per prompt; tok/s is the median
over repeats of tokens over wall time summed over prompts, and speedup its ratio to the
autoregressive baseline's in the same repeat. Every decoder's tokens must equal the baseline's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from reference_impl import AutoregressiveDecoder, SpeculativeDecoder
from reference_impl.models import named_pairs
from reference_impl.tree_decoder import TreeDecoder


def decoders(target, draft) -> dict[str, object]:
    return {
        "autoregressive": AutoregressiveDecoder(target),
        "chain gamma 3": SpeculativeDecoder(target, draft, gamma=3),
        "chain gamma 4": SpeculativeDecoder(target, draft, gamma=4),
        "tree 2-1-1": TreeDecoder(target, draft, branching=(2, 1, 1)),
        "tree 2-2-1": TreeDecoder(target, draft, branching=(2, 2, 1)),
        "tree 3-1-1-1": TreeDecoder(target, draft, branching=(3, 1, 1, 1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pair", default="calibrated-40m")
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    target, draft = named_pairs()[args.pair].build(torch.float32)
    vocab = target.get_output_embeddings().weight.shape[0]
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randint(vocab, (1, 16), generator=generator) for _ in range(args.prompts)]
    runs = decoders(target, draft)
    names = list(runs)
    for decoder in runs.values():  # warm-up
        decoder.generate(prompts[0], max_new_tokens=8)
    rates = {name: [] for name in names}
    per_pass, same = {name: [] for name in names}, dict.fromkeys(names, True)
    for _ in range(args.repeats):
        wall, tokens = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0)
        for i, prompt in enumerate(prompts):
            for name in names[i % len(names):] + names[: i % len(names)]:
                start = time.perf_counter()
                result = runs[name].generate(prompt, max_new_tokens=args.max_new_tokens)
                wall[name] += time.perf_counter() - start
                tokens[name] += len(result.tokens)
                per_pass[name].append(len(result.tokens) / result.stats.target_forwards)
                runs[name].last_tokens = result.tokens  # type: ignore[attr-defined]
            baseline = runs["autoregressive"].last_tokens  # type: ignore[attr-defined]
            for name in names:
                same[name] &= runs[name].last_tokens == baseline  # type: ignore[attr-defined]
        for name in names:
            rates[name].append(tokens[name] / wall[name])
    base = statistics.median(rates["autoregressive"])
    print(f"{args.pair}, greedy, {args.prompts} prompts x {args.max_new_tokens} tokens, {args.repeats} repeats, "
          f"torch threads {torch.get_num_threads()}")
    print("| decoder | tokens per target pass | tok/s | speedup | identical |\n| --- | --- | --- | --- | --- |")
    for name in names:
        rate = statistics.median(rates[name])
        print(f"| {name} | {statistics.mean(per_pass[name]):.2f} | {rate:.1f} | {rate / base:.2f} | {same[name]} |")


if __name__ == "__main__":
    main()
