"""The batch-invariance checks, as functions of a batched decoder and a batch, shared by the
property tests (tests/greedy/test_batched_properties.py) and the mutation tests (tests/greedy/test_batched_mutants.py).

Each check returns a list of mismatches (empty when the decoder passes), one line per bad row.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from hypothesis import event, settings
from hypothesis import strategies as st

from reference_impl import GREEDY, AutoregressiveDecoder, SamplingConfig
from reference_impl.models.tiny import ARCHITECTURES

from .pairs import cached_pair

VOCAB = 96
SAMPLED = SamplingConfig(temperature=1.0, top_k=20)
# What a row's accepting behaviour must not take from its neighbours, and the work it does itself.
ALGORITHM_FIELDS = ("new_tokens", "steps", "drafted", "accepted", "rejections", "gammas")
WORK_FIELDS = ("target_forwards", "draft_forwards", "target_tokens_fed", "draft_tokens_fed")


def examples(divisor: int, floor: int) -> settings:
    """A share of the hypothesis profile's example budget (dev 30, ci 200, thorough 2000), at least ``floor``:
    a batched example decodes up to nine rows, and the default run must stay fast."""
    return settings(max_examples=max(floor, settings.default.max_examples // divisor))


@dataclass(frozen=True)
class Batch:
    """Rows of different prompts, lengths, stop conditions and seeds on one tiny pair."""

    arch: str
    relation: str
    prompts: tuple[tuple[int, ...], ...]
    max_new_tokens: tuple[int, ...]
    eos: tuple[int | None, ...]
    gamma: int
    seeds: tuple[int, ...] = ()

    @property
    def pair(self):
        return cached_pair(self.arch, self.relation)

    def prompt_tensors(self) -> list[torch.Tensor]:
        return [torch.tensor([p]) for p in self.prompts]

    def rows(self) -> range:
        return range(len(self.prompts))

    def describe(self) -> str:
        lengths = [len(p) for p in self.prompts]
        return (f"{self.arch}/{self.relation} gamma={self.gamma}, {len(lengths)} rows, prompt lengths {lengths}, "
                f"max_new_tokens {list(self.max_new_tokens)}, eos {list(self.eos)}")


@st.composite
def batches(draw, max_rows: int = 9, max_prompt: int = 24, max_new: int = 40) -> Batch:
    n = draw(st.integers(1, max_rows))
    per_row = functools.partial(st.lists, min_size=n, max_size=n)
    return Batch(
        arch=draw(st.sampled_from(ARCHITECTURES)),
        relation=draw(st.sampled_from(("partial", "partial", "unrelated", "identical"))),
        prompts=tuple(tuple(draw(st.lists(st.integers(0, VOCAB - 1), min_size=length, max_size=length)))
                      for length in draw(per_row(st.integers(1, max_prompt)))),  # lengths spread over 1..max_prompt
        max_new_tokens=tuple(draw(per_row(st.integers(0, max_new)))),
        eos=tuple(draw(per_row(st.one_of(st.none(), st.integers(0, VOCAB - 1))))),
        gamma=draw(st.integers(1, 6)),
        seeds=tuple(draw(per_row(st.integers(0, 2**31 - 1)))),
    )


def describe_events(batch: Batch) -> None:
    """What hypothesis drew, for --hypothesis-show-statistics: rows, architecture, prompt-length spread."""
    lengths = [len(p) for p in batch.prompts]
    event(f"{len(lengths)} rows")
    event(batch.arch)
    event(f"prompt-length spread (max - min) {5 * ((max(lengths) - min(lengths)) // 5)}+")
    event("a row finishes before the others" if len({*batch.max_new_tokens}) > 1 or any(batch.eos) else "rows alike")


def decode(decoder, batch: Batch, order: list[int], sampling: SamplingConfig = GREEDY) -> dict[int, object]:
    """The rows ``order`` of ``batch`` decoded as one batch, in that order -> {row: DecodeResult}."""
    generators = [torch.Generator().manual_seed(batch.seeds[i]) for i in order] if batch.seeds else None
    results = decoder.generate_batch(
        [batch.prompt_tensors()[i] for i in order],
        max_new_tokens=[batch.max_new_tokens[i] for i in order],
        sampling=sampling,
        gamma=batch.gamma,
        eos_token_id=[batch.eos[i] for i in order],
        generators=generators,
    )
    return dict(zip(order, results, strict=True))


@functools.cache
def target_greedy(arch: str, relation: str, prompt: tuple[int, ...], max_new_tokens: int, eos: int | None):
    target, _ = cached_pair(arch, relation)
    return AutoregressiveDecoder(target).generate(torch.tensor([prompt]), max_new_tokens=max_new_tokens,
                                                  eos_token_id=eos).tokens


def first_divergence(got: list[int], expected: list[int]) -> int | str:
    return next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), "length")


def greedy_mismatches(decoder, batch: Batch, order: list[int] | None = None) -> list[str]:
    """Each row's greedy tokens must equal the target's own greedy continuation of its prompt."""
    results = decode(decoder, batch, list(batch.rows()) if order is None else order)
    bad = []
    for i, result in results.items():
        expected = target_greedy(batch.arch, batch.relation, batch.prompts[i], batch.max_new_tokens[i], batch.eos[i])
        if result.tokens != expected:
            bad.append(f"row {i} (prompt length {len(batch.prompts[i])}): first divergence from the target's greedy "
                       f"output at {first_divergence(result.tokens, expected)}")
    return bad


def alone_mismatches(decoder, batch: Batch, order: list[int], sampling: SamplingConfig = GREEDY,
                     fields: tuple[str, ...] = ALGORITHM_FIELDS) -> list[str]:
    """Each row, decoded in the batch in ``order``, must give the tokens and ``fields`` of its stats that it
    gives alone (a batch of one, its own generator seeded alike)."""
    together = decode(decoder, batch, order, sampling)
    bad = []
    for i in batch.rows():
        alone = decode(decoder, batch, [i], sampling)[i]
        if together[i].tokens != alone.tokens:
            bad.append(f"row {i}: tokens differ from the row alone, first at "
                       f"{first_divergence(together[i].tokens, alone.tokens)}")
        stats = {f: (getattr(together[i].stats, f), getattr(alone.stats, f)) for f in fields}
        differing = {f: f"{a} in the batch, {b} alone" for f, (a, b) in stats.items() if a != b}
        if differing:
            bad.append(f"row {i}: stats differ from the row alone: {differing}")
    return bad
