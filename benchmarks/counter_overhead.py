"""What the counters check (pytest_specdec/protocol/counters.py) costs a timed decode.

``CheckedDecoder`` checks every result, inside the region ``Timer.time`` measures: a counting
wrapper around both models' ``forward`` for the call, one wrapped ``on_token``, and the rules
after the call returns. This
times the same decoder with and without the wrapper, interleaved (each repeat runs both on every
prompt, alternating which goes first), on the perf tests' protocol, and times the parts alone:

- ``rules_us``: ``count_violations`` plus ``PassObserver.violations`` on one result;
- ``observer_us_per_call``: ``PassObserver`` entered and left, its ``on_token`` wrapper called
  once per token and its forward wrapper once per pass, on a real decode's counts.

Usage, from the repository root, alone on the machine (about a minute on the trained pair)::

    flock -x /tmp/specdec-timing.lock python -m benchmarks.counter_overhead \\
        --out docs/measurements/counter-overhead.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any


def time_parts(checked: Any, prompt: Any, max_new_tokens: int, rounds: int = 200) -> dict[str, float]:
    """Microseconds of the rules on one result, and of the observer's bookkeeping for one call's passes."""
    from pytest_specdec.protocol.counters import PassObserver, count_violations

    observer = PassObserver(checked.counted_models)
    with observer:
        result = checked.inner.generate(prompt, max_new_tokens=max_new_tokens, on_token=observer.watch(None), gamma=4)
    start = time.perf_counter()
    for _ in range(rounds):
        count_violations(result.stats, result.tokens, 4)
        observer.violations(result.stats)
    rules = (time.perf_counter() - start) / rounds
    passes = result.stats.target_forwards + result.stats.draft_forwards
    start = time.perf_counter()
    for _ in range(rounds):
        calls = PassObserver(checked.counted_models)
        with calls:
            key = next(iter(calls.groups))
            counted = calls._counting(key, lambda *args, **kwargs: None)  # the wrapper around a model's forward
            watched = calls.watch(None)
            for _ in range(passes):
                counted(input_ids=prompt)
            for token in result.tokens:
                watched(token)
    bookkeeping = (time.perf_counter() - start) / rounds
    return {"rules_us": rules * 1e6, "observer_us_per_call": bookkeeping * 1e6, "passes_per_call": passes,
            "tokens_per_call": len(result.tokens)}


def interleaved(checked: Any, prompts: list[Any], max_new_tokens: int, repeats: int) -> dict[str, Any]:
    from pytest_specdec.perf.timing import Timer

    timer = Timer("cpu")
    runs: dict[str, list[Any]] = {"checked": [], "bare": []}
    for decoder in (checked, checked.inner):
        timer.warm_up(decoder, prompts[0], repeats=2, max_new_tokens=max_new_tokens, gamma=4)
    for repeat in range(repeats):
        for index, prompt in enumerate(prompts):
            order = [("checked", checked), ("bare", checked.inner)]
            for name, decoder in order if (repeat + index) % 2 == 0 else order[::-1]:
                runs[name].append(timer.time(decoder, prompt, max_new_tokens=max_new_tokens, gamma=4))
    latency = {name: [run.latency for run in r] for name, r in runs.items()}
    ttft = {name: [run.ttft for run in r] for name, r in runs.items()}
    pairs = list(zip(latency["checked"], latency["bare"], strict=True))
    return {
        "median_latency_s": {name: statistics.median(v) for name, v in latency.items()},
        "median_ttft_s": {name: statistics.median(v) for name, v in ttft.items()},
        "median_latency_ratio": statistics.median(c / b for c, b in pairs),
        "median_latency_difference_us": statistics.median((c - b) * 1e6 for c, b in pairs),
        "samples": {"latency_s": latency, "ttft_s": ttft},
    }


def main(argv: list[str] | None = None) -> int:
    import torch

    from pytest_specdec.loading import load_pair
    from pytest_specdec.options import SpecDecOptions
    from pytest_specdec.perf.timing import torch_threads
    from pytest_specdec.prompts import prompt_ids
    from pytest_specdec.protocol.decoder import DEFAULT_IMPL, load_factory, make_decoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default="trained")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with torch_threads(1):
        pair = load_pair(SpecDecOptions(pair=args.pair))
        vocab = pair.target.get_output_embeddings().weight.shape[0]
        prompts = prompt_ids(pair.tokenizer, vocab, pair.device)[: args.prompts]
        checked = make_decoder(load_factory(DEFAULT_IMPL), DEFAULT_IMPL, pair.target, pair.draft)
        with torch.inference_mode():
            parts = time_parts(checked, prompts[0], args.max_new_tokens)
        timing = interleaved(checked, prompts, args.max_new_tokens, args.repeats)
    out = {"pair": args.pair, "decoder": DEFAULT_IMPL, "gamma": 4, "prompts": args.prompts,
           "max_new_tokens": args.max_new_tokens, "repeats": args.repeats, "torch_threads": 1, **parts, **timing}
    print(json.dumps({k: v for k, v in out.items() if k != "samples"}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
