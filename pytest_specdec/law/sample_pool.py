"""Many sampled decodes, fast and reproducible: the sample source of the sampling-law tests.

A plan (``decode_plan``) fixes every call before anything runs: its prompt (1-12 tokens) and its
number of new tokens (drawn from a range, so decodes end at every position of a step), all from
the test's seed. The calls are cut into chunks of ``CHUNK`` calls; chunk i draws with a generator
seeded from (seed, i), so the tokens are the same on one process or several.

Where the decoder can be rebuilt in another process (a ``DecoderSource``: the ``module:factory``
spec and a picklable pair builder), the chunks run on a pool of spawned worker processes, one per
usable core (one under pytest-xdist, whose workers already fill the cores); every result there
goes through ``CheckedDecoder`` as in-process. Otherwise (a decoder object) they run in-process.
"""

from __future__ import annotations

import atexit
import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

CHUNK = 50  # calls per chunk: the unit of work and of seeding


@dataclass(frozen=True)
class DecoderSource:
    """How a worker process rebuilds the decoder under test: ``factory(*build_pair())``, checked."""

    impl: str  # module:factory
    build_pair: Callable[[], tuple[Any, Any]]  # picklable (a module-level function or a functools.partial of one)
    options: tuple[tuple[str, Any], ...] = ()
    device: str = "cpu"  # where the pair is moved, and prompts and generators live
    batch: int = 0  # > 0: the calls run ``batch`` rows at a time through ``generate_batch``, one generator per row


@dataclass(frozen=True)
class Call:
    prompt: tuple[int, ...]
    max_new_tokens: int


@dataclass
class DecodeSample:
    """The decodes of a plan, in order, and the counts they reported."""

    prompts: list[tuple[int, ...]] = field(default_factory=list)
    sequences: list[list[int]] = field(default_factory=list)
    accepted: int = 0
    rejections: int = 0
    drafted: int = 0
    steps: int = 0

    def extend(self, other: DecodeSample) -> None:
        self.prompts += other.prompts
        self.sequences += other.sequences
        self.accepted += other.accepted
        self.rejections += other.rejections
        self.drafted += other.drafted
        self.steps += other.steps

    @property
    def n_tokens(self) -> int:
        return sum(map(len, self.sequences))


def decode_plan(seed: int, calls: int, vocab: int, new_tokens: tuple[int, int]) -> list[Call]:
    """``calls`` calls: prompts of 1-12 tokens, ``new_tokens`` = (fewest, most) new tokens per call."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 13, (calls,), generator=generator).tolist()
    budgets = torch.randint(new_tokens[0], new_tokens[1] + 1, (calls,), generator=generator).tolist()
    return [
        Call(tuple(torch.randint(0, vocab, (length,), generator=generator).tolist()), budget)
        for length, budget in zip(lengths, budgets, strict=True)
    ]


def chunk_seed(seed: int, chunk: int) -> int:
    return (seed * 1_000_003 + chunk * 7_919 + 17) % (2**63)


def run_calls(
    decoder: Any, calls: Sequence[Call], sampling: Any, gamma: int | None, seed: int, device: str = "cpu"
) -> DecodeSample:
    """Run ``calls`` on ``decoder`` with one generator seeded with ``seed``; every result must have its full length."""
    import torch

    generator = torch.Generator(device=device).manual_seed(seed)
    sample = DecodeSample()
    for call in calls:
        prompt = torch.tensor([call.prompt], dtype=torch.long, device=device)
        result = decoder.generate(
            prompt, max_new_tokens=call.max_new_tokens, sampling=sampling, gamma=gamma, generator=generator
        )
        _add(sample, call, result)
    return sample


def run_calls_batched(
    decoder: Any, calls: Sequence[Call], sampling: Any, gamma: int | None, seed: int, device: str, batch: int
) -> DecodeSample:
    """``calls`` through ``generate_batch``, ``batch`` rows at a time (prompts and budgets differ, so rows finish at
    different times); row i of the chunk draws from its own generator seeded from (``seed``, i)."""
    import torch

    sample = DecodeSample()
    for start in range(0, len(calls), batch):
        rows = calls[start : start + batch]
        generators = [torch.Generator(device=device).manual_seed(chunk_seed(seed, start + i)) for i in range(len(rows))]
        prompts = [torch.tensor([call.prompt], dtype=torch.long, device=device) for call in rows]
        budgets = [call.max_new_tokens for call in rows]
        results = decoder.generate_batch(
            prompts, max_new_tokens=budgets, sampling=sampling, gamma=gamma, generators=generators
        )
        for call, result in zip(rows, results, strict=True):
            _add(sample, call, result)
    return sample


def _add(sample: DecodeSample, call: Call, result: Any) -> None:
    if len(result.tokens) != call.max_new_tokens:
        raise AssertionError(f"asked for {call.max_new_tokens} new tokens with no EOS, got {len(result.tokens)}")
    sample.prompts.append(call.prompt)
    sample.sequences.append(list(result.tokens))
    s = result.stats
    sample.accepted += s.accepted
    sample.rejections += s.rejections
    sample.drafted += s.drafted
    sample.steps += s.steps


@functools.cache
def _worker_decoder(source: DecoderSource) -> Any:
    from ..protocol.decoder import CheckedBatchedDecoder, load_factory, make_decoder

    target, draft = (model.to(source.device) for model in source.build_pair())
    factory = load_factory(source.impl)
    if source.batch:
        return CheckedBatchedDecoder(factory(target, draft, **dict(source.options)), source.impl)
    return make_decoder(factory, source.impl, target, draft, **dict(source.options))


def run_source(source: DecoderSource, calls: Sequence[Call], sampling: Any, gamma: int | None, seed: int) -> Any:
    """``calls`` on the source's decoder (built once per process), batched or one call at a time."""
    decoder = _worker_decoder(source)
    if source.batch:
        return run_calls_batched(decoder, calls, sampling, gamma, seed, source.device, source.batch)
    return run_calls(decoder, calls, sampling, gamma, seed, source.device)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_jobs() -> int:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return 1
    return max(1, min(usable_cores(), 8))


_POOLS: dict[int, ProcessPoolExecutor] = {}


def _pool(jobs: int) -> ProcessPoolExecutor:
    if jobs not in _POOLS:
        import multiprocessing

        _POOLS[jobs] = ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
        )
        atexit.register(_POOLS[jobs].shutdown, cancel_futures=True)
    return _POOLS[jobs]


def sample_decodes(
    decoder: Any,
    plan: Sequence[Call],
    sampling: Any,
    *,
    seed: int,
    gamma: int | None = None,
    jobs: int | None = None,
    device: str = "cpu",
) -> DecodeSample:
    """Run ``plan`` on ``decoder`` (a decoder object, run here on ``device``, or a ``DecoderSource``, run on ``jobs``
    processes on the source's device)."""
    if isinstance(decoder, DecoderSource):  # skip here, as CheckedDecoder would, not in a worker
        from ..protocol.capabilities import declared
        from ..protocol.decoder import load_factory, skip_unless_declared

        skip_unless_declared(decoder.impl, declared(load_factory(decoder.impl)), {"sampling": sampling, "gamma": gamma})
    chunks = [plan[i : i + CHUNK] for i in range(0, len(plan), CHUNK)]
    seeds = [chunk_seed(seed, i) for i in range(len(chunks))]
    jobs = default_jobs() if jobs is None else jobs
    if isinstance(decoder, DecoderSource) and jobs > 1 and len(chunks) > 1:
        from concurrent.futures.process import BrokenProcessPool

        pool = _pool(jobs)
        try:
            parts = list(pool.map(run_source, [decoder] * len(chunks), chunks, [sampling] * len(chunks),
                                  [gamma] * len(chunks), seeds))
        except BrokenProcessPool as exc:
            _POOLS.pop(jobs, None)  # the next test starts a fresh pool
            raise RuntimeError(
                f"a worker process drawing decodes of {decoder.impl} died ({exc}); rerun with "
                "--specdec-sample-jobs 1 to run the decoder in the test process and see its error"
            ) from exc
    else:
        from ..perf.timing import torch_threads

        pairs = zip(chunks, seeds, strict=True)
        with torch_threads(1):  # as in the workers: on 8-token rows, thread wake-ups cost ~10x the arithmetic
            if isinstance(decoder, DecoderSource):
                parts = [run_source(decoder, chunk, sampling, gamma, s) for chunk, s in pairs]
            else:
                parts = [run_calls(decoder, chunk, sampling, gamma, s, device) for chunk, s in pairs]
    sample = DecodeSample()
    for part in parts:
        sample.extend(part)
    return sample
