"""Greedy equivalence far out: long prompts, long generations, long drafts, a sliding window, the position limit.

The property test (tests/greedy/test_greedy_equivalence.py) stays under ~75 positions. Real caches break
further out: once they pass a block or bucket boundary, once more than 4 draft tokens are
verified (SGLang PR #33872), once the context is longer than a sliding window, near the model's
position limit. Each case below runs the decoder under test (``specdec_factory``) on a tiny
float64 pair whose position limit allows it and compares its greedy output with the target's
own, token for token. Prompts are filled in one prefill, so reaching position 2,064 costs one
long pass plus a few dozen short ones; long generations are kept to a few cases.

``DEFAULT_CASES`` run in every ``pytest``: contexts up to 2,064 positions, generations up to 324
tokens, gamma up to 16, a window of 64 under a 400-position context, a run that ends exactly at a
1,024-position limit. ``LONG_CASES`` and the property test (marker ``specdec_long``, ``tox -e
long``) reach the 4,096-position limit, generations of 2,000 tokens, and gamma up to 16 at random
lengths (up to 100 new tokens after prompts of any length the limit allows).
``test_mutant_is_caught`` shows that each long-range bug in tests/support/state_mutants.py fails a
default case while passing a short run like the property test's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_impl import AutoregressiveDecoder, SamplingConfig, SpeculativeDecoder
from reference_impl.models.tiny import tiny_pair
from tests.support import state_mutants

pytestmark = pytest.mark.usefixtures("single_torch_thread")

VOCAB = 96
MAX_POSITIONS = 4096
WINDOW = 64
GPT2_LIMIT = 1024
PAIRS = {
    "llama-partial": dict(arch="llama", relation="partial", max_positions=MAX_POSITIONS),
    "llama-identical": dict(arch="llama", relation="identical", max_positions=MAX_POSITIONS),
    "qwen2-partial": dict(arch="qwen2", relation="partial", max_positions=MAX_POSITIONS),
    "mistral-window": dict(arch="mistral", relation="partial", max_positions=MAX_POSITIONS, sliding_window=WINDOW),
    "gpt2-limit": dict(arch="gpt2", relation="partial", max_positions=GPT2_LIMIT),
}


@dataclass(frozen=True)
class Case:
    pair: str
    prompt_len: int
    new_tokens: int
    gamma: int

    @property
    def id(self) -> str:
        return f"{self.pair}-{self.prompt_len}+{self.new_tokens}-g{self.gamma}"


DEFAULT_CASES = (
    Case("llama-partial", 8, 300, 3),  # rollbacks at every position to 308, across 16-blocks and 256
    Case("llama-identical", 700, 324, 16),  # 17-token verifies, all accepted, up to position 1,024
    Case("qwen2-partial", 250, 24, 5),  # each crosses a power of two, gamma > 4
    Case("qwen2-partial", 505, 24, 8),
    Case("qwen2-partial", 1018, 24, 12),
    Case("qwen2-partial", 2040, 24, 16),
    Case("mistral-window", 200, 200, 6),  # a 64-position window under a 400-position context
    Case("gpt2-limit", 990, 34, 16),  # ends exactly at the 1,024-position limit: gamma must shrink
)
LONG_CASES = (
    Case("llama-partial", 8, 2000, 4),
    Case("llama-identical", 4, MAX_POSITIONS - 4, 16),
    Case("qwen2-partial", 4000, 96, 16),
    Case("mistral-window", 1000, 1000, 8),
    Case("gpt2-limit", 1, GPT2_LIMIT - 1, 7),
)
SHORT_CASE = Case("mistral-window", 10, 48, 4)  # the property test's scale: inside the window, gamma 4


@functools.cache
def long_pair(name: str):
    return tiny_pair(seed=0, dtype=torch.float64, **PAIRS[name])


def case_prompt(case: Case) -> torch.Tensor:
    generator = torch.Generator().manual_seed(case.prompt_len)
    return torch.randint(0, VOCAB, (1, case.prompt_len), generator=generator)


@functools.cache
def expected_tokens(case: Case) -> tuple[int, ...]:
    """The target's own greedy continuation (the autoregressive baseline)."""
    target, _ = long_pair(case.pair)
    return tuple(AutoregressiveDecoder(target).generate(case_prompt(case), max_new_tokens=case.new_tokens).tokens)


def greedy_mismatch(factory, case: Case) -> str | None:
    """None if the decoder's greedy output equals the target's, else where and how it differs."""
    target, draft = long_pair(case.pair)
    expected = list(expected_tokens(case))
    try:
        got = factory(target, draft).generate(
            case_prompt(case), max_new_tokens=case.new_tokens, sampling=SamplingConfig(), gamma=case.gamma
        )
    except Exception as exc:  # a decoder that crashes far out fails too; say where
        return f"{case.id}: generate() raised {type(exc).__name__}: {exc}"
    if got.tokens == expected:
        return None
    index = next((i for i, (a, b) in enumerate(zip(got.tokens, expected, strict=False)) if a != b), None)
    where = f"token {index} (position {case.prompt_len + index})" if index is not None else "the length"
    return f"{case.id}: {len(got.tokens)} tokens, expected {len(expected)}; first divergence at {where}"


@pytest.mark.parametrize("case", DEFAULT_CASES, ids=lambda c: c.id)
def test_long_greedy_equals_target_greedy(specdec_factory, case):
    mismatch = greedy_mismatch(specdec_factory, case)
    assert mismatch is None, mismatch


@pytest.mark.specdec_long
@pytest.mark.parametrize("case", LONG_CASES, ids=lambda c: c.id)
def test_longest_greedy_equals_target_greedy(specdec_factory, case):
    mismatch = greedy_mismatch(specdec_factory, case)
    assert mismatch is None, mismatch


@st.composite
def long_cases(draw):
    pair = draw(st.sampled_from(sorted(PAIRS)))
    limit = GPT2_LIMIT if pair == "gpt2-limit" else MAX_POSITIONS
    prompt_len = draw(st.integers(1, limit - 1))
    new_tokens = draw(st.integers(0, min(100, limit - prompt_len)))
    return Case(pair, prompt_len, new_tokens, draw(st.integers(1, 16)))


@pytest.mark.specdec_long
@settings(max_examples=25)
@given(case=long_cases())
def test_greedy_equivalence_at_random_long_lengths(specdec_factory, case):
    mismatch = greedy_mismatch(specdec_factory, case)
    assert mismatch is None, mismatch


@pytest.mark.parametrize("case", [DEFAULT_CASES[6], DEFAULT_CASES[7]], ids=lambda c: c.id)
def test_baseline_equals_one_uncached_pass(case):
    """The ground truth itself: the cached baseline's tokens are the argmax of one pass over the whole sequence."""
    target, _ = long_pair(case.pair)
    sequence = torch.cat([case_prompt(case)[0], torch.tensor(expected_tokens(case))])
    with torch.inference_mode():
        logits = target(input_ids=sequence[:-1].view(1, -1)).logits[0, case.prompt_len - 1 :]
    assert logits.argmax(dim=-1).tolist() == list(expected_tokens(case))


def test_the_limit_is_reached_not_passed():
    """A request one position past the limit is refused before any model runs; one at the limit runs."""
    from reference_impl.errors import ContextLengthError

    target, draft = long_pair("gpt2-limit")
    decoder = SpeculativeDecoder(target, draft, gamma=16)
    with pytest.raises(ContextLengthError, match="exceeds the model's 1024 positions"):
        decoder.generate(torch.zeros(1, GPT2_LIMIT - 3, dtype=torch.long), max_new_tokens=4)
    assert len(decoder.generate(torch.zeros(1, GPT2_LIMIT - 3, dtype=torch.long), max_new_tokens=3).tokens) == 3


# --- the default cases catch long-range bugs the short property test cannot see --------------------

MUTANTS = {  # mutant -> (the default case that catches it, a short case it passes)
    "block_boundary": (state_mutants.BlockBoundaryDecoder, DEFAULT_CASES[2], SHORT_CASE),
    "long_verify": (state_mutants.LongVerifyDecoder, DEFAULT_CASES[1], SHORT_CASE),
    "window_ignored": (state_mutants.WindowIgnoredDecoder, DEFAULT_CASES[6], SHORT_CASE),
    "unclamped_gamma": (state_mutants.UnclampedGammaDecoder, DEFAULT_CASES[7], SHORT_CASE),
}


@pytest.mark.parametrize("name", MUTANTS)
def test_mutant_is_caught(name):
    mutant, catching_case, short_case = MUTANTS[name]
    assert greedy_mismatch(mutant, short_case) is None, f"{name} is not a long-range bug"
    assert greedy_mismatch(mutant, catching_case) is not None, f"{name} passed {catching_case.id}"
