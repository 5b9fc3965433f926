"""Lossless on a hybrid model whose cache holds recurrent state that cannot be cropped.

Falcon-H1 runs attention and a Mamba2 state-space mixer side by side in every layer; its cache
keeps, per layer, the keys and values of every position plus a conv state and an SSM state that
summarise all positions seen. ``DynamicCache.crop`` refuses to crop those, and cropping only the
attention part leaves the state of the last drafted token in place (vLLM #39273: greedy output
drifts or loops). Tiny Falcon-H1 pairs (``identical``, ``partial``, ``unrelated``, built from a
config and a seed) are written with ``save_pretrained`` and loaded with ``from_pretrained`` as a
user's pair is, in float64, and the decoder under test (``specdec_factory``) must:

- match the target's greedy output token for token (fixed cases up to a 300-token prompt and
  gamma 16, and a hypothesis property over prompts, gammas, lengths and EOS tokens);
- sample the target's law end to end (``N_CI`` = 200 four-token continuations on a vocabulary-8
  pair at T = 1, Pearson chi-square at ``ALPHA`` = 1e-4; power >= 0.99 against total variation
  >= ``DETECTABLE_TV_CI`` = 0.26, and ``N_LONG`` = 3,000 under ``specdec_statistical`` with four
  sampling configurations, ``DETECTABLE_TV_LONG`` = 0.091; ``test_stated_power_holds`` recomputes them).

The two state mutants of tests/support/state_mutants.py (state kept from after the last drafted token;
state restored one position late) fail both checks (observed total variation from the target's
law about 0.5).
"""

from __future__ import annotations

import functools
import itertools
import warnings
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_specdec.law import stats
from pytest_specdec.law.numerics import GreedyVerdict, tie_tolerance
from pytest_specdec.loading import load_model
from reference_impl import AutoregressiveDecoder, SamplingConfig
from reference_impl.kv import CachedLM
from reference_impl.models.tiny import RELATIONS, tiny_pair
from tests.law import test_distribution_e2e as e2e
from tests.support import state_mutants

pytestmark = pytest.mark.usefixtures("single_torch_thread")

VOCAB = 96
ARCH = "falcon_h1"
MAX_POSITIONS = 4096


@pytest.fixture(scope="module")
def hybrid_pairs(tmp_path_factory):
    """relation -> (target, draft), each saved with save_pretrained and loaded back with from_pretrained."""
    pairs = {}
    for relation in RELATIONS:
        folder = tmp_path_factory.mktemp(f"{ARCH}-{relation}")
        built = tiny_pair(ARCH, relation, seed=0, dtype=torch.float64, max_positions=MAX_POSITIONS)
        loaded = []
        for role, model in zip(("target", "draft"), built, strict=True):
            model.save_pretrained(folder / role)
            loaded.append(load_model(folder / role, dtype="float64", device="cpu"))
        pairs[relation] = (loaded[0], loaded[0] if relation == "identical" else loaded[1])
    return pairs


@dataclass(frozen=True)
class Case:
    relation: str
    prompt_len: int
    new_tokens: int
    gamma: int
    eos: int | None = None

    @property
    def id(self) -> str:
        return f"{self.relation}-{self.prompt_len}+{self.new_tokens}-g{self.gamma}"


CASES = (
    Case("partial", 12, 60, 4),  # rejections at every draft position, then continuing from restored state
    Case("partial", 300, 60, 8),  # a prompt of 19 scan chunks filled in one prefill
    Case("unrelated", 7, 30, 6),  # nearly every step rejects the first draft token
    Case("identical", 20, 60, 16),  # 17-token verifies, all accepted: nothing to restore
)
LONG_CASES = (
    Case("partial", 8, 1000, 4),
    Case("partial", 3000, 200, 16),
    Case("unrelated", 4, 300, 3),
)


def greedy_mismatch(factory, pair, prompt: list[int], new_tokens: int, gamma: int, eos: int | None) -> str | None:
    target, draft = pair
    input_ids = torch.tensor([prompt])
    expected = AutoregressiveDecoder(target).generate(input_ids, max_new_tokens=new_tokens, eos_token_id=eos).tokens
    got = factory(target, draft).generate(
        input_ids, max_new_tokens=new_tokens, sampling=SamplingConfig(), gamma=gamma, eos_token_id=eos
    ).tokens
    if got == expected:
        return None
    verdict = judge_hybrid(target, input_ids, got, expected)
    if verdict.ok:
        warnings.warn(f"hybrid pair, prompt of {len(prompt)}, gamma {gamma}: {verdict.describe()}", stacklevel=2)
        return None
    return f"prompt of {len(prompt)}, gamma {gamma}: {len(got)} tokens, expected {len(expected)}; {verdict.describe()}"


def judge_hybrid(target, input_ids, got: list[int], expected: list[int]) -> GreedyVerdict:
    """Falcon-H1's Mamba2 mixer computes in float32 whatever the model's dtype, so a one-token decode and a
    k-token verify agree to ~1e-7, not to float64 rounding: a divergence where the target's top-2 gap is
    within float32 noise is a near-tie, anything else a bug."""
    index = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), None)
    index = min(len(got), len(expected)) if index is None else index
    prefix = torch.cat([input_ids[0], torch.tensor(expected[:index], dtype=torch.long)])
    with torch.inference_mode():
        logits = target(input_ids=prefix.unsqueeze(0)).logits[0, -1]
    top2 = torch.topk(logits, 2).values
    gap, tolerance = float(top2[0] - top2[1]), tie_tolerance(torch.float32, float(logits.abs().max()))
    return GreedyVerdict("near_tie" if gap <= tolerance else "bug", index, gap, tolerance)


def case_mismatch(factory, pairs, case: Case) -> str | None:
    prompt = torch.randint(0, VOCAB, (case.prompt_len,), generator=torch.Generator().manual_seed(case.prompt_len))
    return greedy_mismatch(factory, pairs[case.relation], prompt.tolist(), case.new_tokens, case.gamma, case.eos)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hybrid_greedy_equals_target_greedy(specdec_factory, hybrid_pairs, case):
    mismatch = case_mismatch(specdec_factory, hybrid_pairs, case)
    assert mismatch is None, f"{case.id}: {mismatch}"


@pytest.mark.specdec_long
@pytest.mark.parametrize("case", LONG_CASES, ids=lambda c: c.id)
def test_hybrid_greedy_equals_target_greedy_long(specdec_factory, hybrid_pairs, case):
    mismatch = case_mismatch(specdec_factory, hybrid_pairs, case)
    assert mismatch is None, f"{case.id}: {mismatch}"


@st.composite
def requests(draw):
    relation = draw(st.sampled_from(RELATIONS))
    prompt = draw(st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=40))
    gamma = draw(st.integers(1, 16))
    max_new_tokens = draw(st.integers(0, 40))
    eos = draw(st.one_of(st.none(), st.integers(0, VOCAB - 1)))
    return relation, prompt, gamma, max_new_tokens, eos


@settings(max_examples=10)
@given(request_args=requests())
def test_hybrid_greedy_property(specdec_factory, hybrid_pairs, request_args):
    relation, prompt, gamma, max_new_tokens, eos = request_args
    mismatch = greedy_mismatch(specdec_factory, hybrid_pairs[relation], prompt, max_new_tokens, gamma, eos)
    assert mismatch is None, f"{relation}: {mismatch}"


@pytest.mark.specdec_long
@settings(max_examples=150)
@given(request_args=requests())
def test_hybrid_greedy_property_thorough(specdec_factory, hybrid_pairs, request_args):
    relation, prompt, gamma, max_new_tokens, eos = request_args
    mismatch = greedy_mismatch(specdec_factory, hybrid_pairs[relation], prompt, max_new_tokens, gamma, eos)
    assert mismatch is None, f"{relation}: {mismatch}"


# --- the reference's rollback, directly ------------------------------------------------------------


def test_crop_cannot_roll_back_the_state(hybrid_pairs):
    """Why the reference saves states: transformers refuses to crop a recurrent layer."""
    from transformers import DynamicCache

    target, _ = hybrid_pairs["partial"]
    cache = DynamicCache(config=target.config)
    with torch.inference_mode():
        target(input_ids=torch.arange(10).view(1, -1), cache=cache, use_cache=True)
    with pytest.raises(RuntimeError, match="does not track past states"):
        cache.crop(-3)


@pytest.mark.parametrize("fed", [[5, 1, 1, 1], [5, 6], [5, 1, 4]], ids=["one-by-one", "one-pass", "mixed"])
def test_rollback_restores_the_state_exactly(hybrid_pairs, fed):
    """Fed in passes of ``fed`` tokens then rolled back to any shorter prefix, the cache holds exactly the
    state of one that never saw the removed tokens: the next logits are equal bit for bit."""
    target, _ = hybrid_pairs["partial"]
    tokens = torch.randint(0, VOCAB, (sum(fed) + 1,), generator=torch.Generator().manual_seed(sum(fed)))
    bounds = [sum(fed[:i]) for i in range(len(fed) + 1)]  # where each pass starts and ends
    with torch.inference_mode():
        for keep in range(fed[0], sum(fed) + 1):
            rolled, fresh = CachedLM(target), CachedLM(target)
            for start, end in itertools.pairwise(bounds):
                rolled.forward(tokens[start:end])
            rolled.rollback(keep)
            held = rolled.length
            assert held <= keep and held in bounds
            for start, end in itertools.pairwise([b for b in bounds if b <= held]):
                fresh.forward(tokens[start:end])  # the same passes, without the removed tokens
            got = rolled.forward(tokens[held : keep + 1])[-1]
            expected = fresh.forward(tokens[held : keep + 1])[-1]
            assert torch.equal(got, expected), f"rolled back to {keep} (held {held}); fed {fed}"


# --- mutants ---------------------------------------------------------------------------------------

STATE_MUTANTS = {
    "state_not_restored": state_mutants.StateNotRestoredDecoder,
    "state_one_late": state_mutants.StateOneLateDecoder,
}


@pytest.mark.parametrize("name", STATE_MUTANTS)
def test_greedy_check_catches_state_mutant(hybrid_pairs, name):
    mismatch = case_mismatch(STATE_MUTANTS[name], hybrid_pairs, CASES[0])
    assert mismatch is not None, f"{name} passed {CASES[0].id}"


# --- distribution, end to end ----------------------------------------------------------------------

ALPHA = 1e-4
N_CI = 200
N_LONG = 3000
SEED = 4242
LENGTH = 4
GAMMA = 2
DIST_PAIR = dict(
    arch=ARCH, relation="partial", seed=0, vocab_size=8, hidden=16, layers=2, heads=2, init_std=1.0, deep_scale=1.0
)
PROMPT = e2e.PROMPT
CONFIGS = e2e.CONFIGS  # the end-to-end test's sampling settings, on the hybrid pair
DETECTABLE_TV_CI = 0.26  # T1 at N_CI
DETECTABLE_TV_LONG = 0.091  # every config at N_LONG


@functools.cache
def dist_pair():
    return tiny_pair(**DIST_PAIR)


def distribution_check(factory, config: str, n: int, seed: int = SEED) -> stats.GofResult:
    target, draft = dist_pair()
    return stats.decoder_distribution_test(
        factory(target, draft), target, PROMPT, CONFIGS[config], n=n, seed=seed, length=LENGTH, gamma=GAMMA
    )


def test_hybrid_samples_the_target_distribution(specdec_factory):
    """N_CI = 200 at T = 1; false-positive rate <= 1e-4; detects TV >= 0.26."""
    result = distribution_check(specdec_factory, "T1", N_CI)
    assert not result.rejects(ALPHA), result.describe()


@pytest.mark.specdec_statistical
@pytest.mark.parametrize("config", CONFIGS)
def test_hybrid_samples_the_target_distribution_long(specdec_factory, config):
    """N_LONG = 3,000 per config; false-positive rate <= 1e-4 each; detects TV >= 0.091."""
    result = distribution_check(specdec_factory, config, N_LONG, seed=SEED + 1)
    assert not result.rejects(ALPHA), result.describe()


@pytest.mark.parametrize("name", STATE_MUTANTS)
def test_distribution_check_catches_state_mutant(name):
    result = distribution_check(STATE_MUTANTS[name], "T1", N_CI)
    assert result.rejects(ALPHA), f"{name} passed: {result.describe()}"


def test_stated_power_holds():
    target, _ = dist_pair()
    for configs, n, stated in ((["T1"], N_CI, DETECTABLE_TV_CI), (list(CONFIGS), N_LONG, DETECTABLE_TV_LONG)):
        for config in configs:
            exact = stats.sequence_probs(target, PROMPT, CONFIGS[config], LENGTH)
            planned = stats.detectable_tv(n, stats.planned_dof(exact.tolist(), n), ALPHA)
            assert planned <= stated, f"{config}, n = {n}: planned {planned:.4f}, stated {stated}"

