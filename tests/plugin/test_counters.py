"""Counters that cannot lie: every decoder's counts against its tokens, each other, its models' passes and an oracle.

``CheckedDecoder`` checks every result that passes through the protocol (pytest_specdec/protocol/counters.py).
Here: the rules one by one on hand-made records; decoders whose counts lie (tests/support/miscounting.py,
each the reference with one counting bug) fail with a message naming the rule; decoders
that leave unknowable counts at 0, or run models where the suite cannot see them, pass; and, for greedy
decoding, the accepted counts of the decoder under test (``specdec_factory``) equal the ones
recomputed from the target's greedy path and the draft's own greedy proposals.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pytest_specdec.protocol.counters import GAMMA_IGNORED, PassObserver, count_violations
from pytest_specdec.protocol.decoder import ContractError, make_decoder
from reference_impl import AutoregressiveDecoder, SamplingConfig, SpeculativeDecoder
from reference_impl.stats import DecodeResult, DecodeStats
from tests.support.miscounting import (
    BonusAccepted,
    BonusDrafted,
    CountingMutant,
    CountsEveryMatch,
    CountsWhatTheStepProduced,
    DraftPrefillUncounted,
    HiddenDraftPassFirst,
    TargetPrefillUncounted,
    TokensFedPerPass,
)
from tests.support.pairs import cached_pair
from tests.support.scripted import ScriptedDraft

PROMPT = torch.tensor([[3, 17, 42, 8, 5]])
GREEDY = SamplingConfig()

pytestmark = pytest.mark.usefixtures("single_torch_thread")

# 1 prefill token, then steps of gamma 4 accepting 4 (bonus), 1, 0 and 2 (cut short by EOS after its 2 accepts).
GOOD = DecodeStats(new_tokens=1 + 5 + 2 + 1 + 2, steps=4, drafted=16, accepted=7, rejections=2,
                   drafted_by_position=(4, 4, 4, 4), accepted_by_position=(3, 2, 1, 1), target_forwards=5,
                   draft_forwards=16, target_prefills=1, draft_prefills=1, target_tokens_fed=5 + 5 + 5 + 5 + 5,
                   draft_tokens_fed=6 + 3 + 1 + 1 + 3 * 4, forwards_before_first_token=1, gammas=(4, 4, 4, 4))


def violations(gamma=4, tokens=GOOD.new_tokens, **changes):
    return count_violations(dataclasses.replace(GOOD, **changes), [0] * tokens, gamma)


def test_a_consistent_record_passes():
    assert violations() == []


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"new_tokens": 12}, "new_tokens == len(tokens)"),
        ({"accepted": 8}, "sum(accepted_by_position) == accepted"),  # the bonus counted as accepted (vLLM #2658)
        ({"drafted": 15}, "sum(drafted_by_position) == drafted"),
        ({"accepted_by_position": (3, 1, 2, 1)}, "nothing is accepted past the first rejection"),
        ({"drafted_by_position": (4, 4, 5, 3)}, "drafts every position before it"),
        ({"accepted_by_position": (3, 2, 1, 1, 0)}, "differ in length"),
        ({"gammas": (4, 4, 4)}, "one gamma per step"),
        ({"gammas": (4, 4, 4, 3)}, "sum(gammas) == drafted"),
        ({"gammas": (5, 4, 4, 3)}, "drafted_by_position[i] == number of steps with gamma > i"),
        ({"rejections": 5}, "at most one rejection per step"),
        ({"rejections": 0}, "ends in a rejection, except a last step"),
        ({"steps": 12, "gammas": (), "drafted_by_position": (), "accepted_by_position": ()},
         "every step emits at least one token"),
        ({"target_forwards": 3}, "new_tokens - accepted <= target_forwards"),
        ({"target_prefills": 6}, "a prefill is a pass"),
        ({"draft_tokens_fed": 3}, "every pass feeds a token"),
        ({"forwards_before_first_token": 22}, "passes before the first token are passes"),
        ({"steps": -1}, "is not a count"),
        ({"gammas": (4, 4, 4, 4.0)}, "not a sequence of counts"),
    ],
)
def test_each_rule_names_itself(changes, rule):
    found = violations(**changes)
    assert any(rule in problem for problem in found), found


def test_emission_floor_and_the_asked_gamma():
    """Accepts that leave too few correction or bonus tokens; steps longer than the gamma asked for."""
    found = violations(accepted=9, accepted_by_position=(4, 2, 2, 1))
    assert any("new_tokens - accepted >= max(rejections, steps - 1)" in p for p in found), found
    assert any("exceed the gamma asked for, 3" in p for p in violations(gamma=3))
    assert violations(gamma=3, extra={GAMMA_IGNORED: 1.0}) == []
    assert violations(gamma=None) == []


def test_counts_a_decoder_cannot_know_stay_zero():
    """0 means unknown; only the decoder's own finer counts (per position, per step) make a 0 wrong."""
    assert count_violations(DecodeStats(new_tokens=7), [1] * 7, 4) == []
    assert count_violations(DecodeStats(new_tokens=7, accepted=5, steps=2), [1] * 7, 4) == []
    assert count_violations(DecodeStats(new_tokens=7, target_forwards=7), [1] * 7, None) == []
    partial = dataclasses.replace(GOOD, draft_forwards=0, draft_prefills=0, draft_tokens_fed=0, rejections=2,
                                  forwards_before_first_token=0, target_tokens_fed=0)
    assert count_violations(partial, [0] * GOOD.new_tokens, 4) == []
    assert count_violations(dataclasses.replace(GOOD, drafted=0), [0] * 11, 4) != []  # its positions sum to 16


# --- decoders whose counts lie ------------------------------------------------------------------------------


def scripted_pair(reject_every: int | None):
    """A target that predicts by position alone (its greedy path is fixed) and a draft wrong every few positions
    (None: never wrong)."""
    target, _ = cached_pair("llama", "partial")
    path = AutoregressiveDecoder(target).generate(PROMPT, max_new_tokens=40).tokens
    sequence = PROMPT[0].tolist() + path
    return (ScriptedDraft(target, sequence, lambda p: True),
            ScriptedDraft(target, sequence, lambda p: reject_every is None or p % reject_every != 0), path)


def checked(cls, target, draft, gamma=4):
    return make_decoder(lambda t, d, **o: cls(t, d, gamma=gamma), cls.__name__, target, draft)


MUTANTS = {
    "bonus counted as accepted": (BonusAccepted, "sum(accepted_by_position) == accepted"),
    "bonus counted as drafted and accepted": (BonusDrafted, "exceed the gamma asked for"),
    "accepted counted past the first rejection": (CountsEveryMatch, "ends in a rejection, except a last step"),
    "tokens past EOS counted": (CountsWhatTheStepProduced, "new_tokens - accepted >= max"),
    "target prefill not counted": (TargetPrefillUncounted, "new_tokens - accepted <= target_forwards"),
    "draft prefill not counted": (DraftPrefillUncounted, "draft_forwards = 15 but the models ran 16"),
    "hidden draft pass before the first token": (HiddenDraftPassFirst, "forwards_before_first_token = 1 but the "
                                                 "models ran 2 passes before the first on_token call"),
    "tokens fed counted per pass": (TokensFedPerPass, "target_tokens_fed = 6 but the models ran 26"),
}


@pytest.mark.parametrize("name", MUTANTS)
def test_a_decoder_whose_counts_lie_fails_naming_the_rule(name):
    cls, message = MUTANTS[name]
    eos = None
    target, draft, path = scripted_pair(reject_every=7)
    if cls is CountsWhatTheStepProduced:  # every draft token agrees; EOS the 1st or 2nd token of a step's 4 accepts
        target, draft, path = scripted_pair(reject_every=None)
        eos = path[next(i for i in range(5, 16) if path[i] not in path[:i] and i % 5 in (1, 2))]
    with pytest.raises(ContractError, match="counts disagree") as failure:
        checked(cls, target, draft).generate(PROMPT, max_new_tokens=16, sampling=GREEDY, gamma=4, eos_token_id=eos)
    assert message in str(failure.value), str(failure.value)


def test_the_unmutated_decoders_pass_on_the_same_requests():
    for reject_every in (7, None):
        target, draft, path = scripted_pair(reject_every)
        for cls in (SpeculativeDecoder, CountingMutant):
            for eos in (None, *path[5:16]):
                decoder = checked(cls, target, draft)
                decoder.generate(PROMPT, max_new_tokens=16, sampling=GREEDY, gamma=4, eos_token_id=eos)


def test_one_model_as_target_and_draft_is_counted_once_for_both():
    target, draft = cached_pair("llama", "identical")
    assert target is draft
    stats = checked(SpeculativeDecoder, target, draft).generate(PROMPT, max_new_tokens=16).stats
    assert (stats.target_forwards, stats.draft_forwards) == (4, 12)
    with pytest.raises(ContractError, match=r"target_forwards \+ draft_forwards = 4 \+ 11 but the models ran 16"):
        checked(DraftPrefillUncounted, target, draft).generate(PROMPT, max_new_tokens=16)


# --- what the suite cannot see, and what a decoder cannot know ------------------------------------------------


class UnknownCounts:
    """Reports only its tokens; runs the target through its inner modules, where the suite does not look."""

    def __init__(self, target, draft=None, **options):
        self.target = target

    def generate(self, input_ids, *, max_new_tokens, on_token=None, **_):
        tokens = []
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                hidden = self.target.model(input_ids=torch.cat([input_ids[0], torch.tensor(tokens, dtype=torch.long)])
                                           .view(1, -1)).last_hidden_state
                tokens.append(int(self.target.lm_head(hidden[0, -1]).argmax()))
                if on_token is not None:
                    on_token(tokens[-1])
        return DecodeResult(tokens, DecodeStats(new_tokens=len(tokens), target_forwards=len(tokens)))


def test_passes_the_suite_cannot_see_and_counts_left_at_zero_fail_nothing():
    target, draft = cached_pair("llama", "partial")
    decoder = make_decoder(UnknownCounts, "unknown", target, draft)
    assert decoder.generate(PROMPT, max_new_tokens=5, gamma=4).tokens == AutoregressiveDecoder(target).generate(
        PROMPT, max_new_tokens=5).tokens


def test_the_models_are_restored_after_every_call():
    target, draft, _ = scripted_pair(reject_every=3)
    real, _ = cached_pair("llama", "partial")
    for cls in (SpeculativeDecoder, TargetPrefillUncounted):
        with pytest.raises(ContractError) if cls is TargetPrefillUncounted else _nothing():
            checked(cls, target, draft).generate(PROMPT, max_new_tokens=16)
        assert "forward" not in vars(target) and "forward" not in vars(draft)
    make_decoder(UnknownCounts, "unknown", real, None).generate(PROMPT, max_new_tokens=2)
    assert "forward" not in vars(real)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_observer_counts_passes_prefills_and_tokens():
    target, draft = cached_pair("llama", "partial")
    observer = PassObserver({"target": target, "draft": draft})
    with observer:
        SpeculativeDecoder(target, draft, gamma=3).generate(PROMPT, max_new_tokens=9, on_token=observer.watch(None))
    stats = SpeculativeDecoder(target, draft, gamma=3).generate(PROMPT, max_new_tokens=9).stats
    assert observer.seen[id(target)] == {"forwards": stats.target_forwards, "prefills": 1,
                                         "tokens_fed": stats.target_tokens_fed}
    assert observer.seen[id(draft)]["forwards"] == stats.draft_forwards
    assert observer.before_first_token == 1
    assert observer.violations(stats) == []


# --- the oracle: greedy accepted counts recomputed from the two models -----------------------------------------


def oracle_steps(draft, path, prompt_len, gammas, lead):
    """(gamma, accepted, rejected) of each step, given the step gammas, the target's greedy ``path`` (prompt
    included) and ``lead`` tokens before the first step; accepted counts only emitted tokens."""
    steps, position, end = [], prompt_len + lead, len(path)
    for gamma in gammas:
        proposal = AutoregressiveDecoder(draft).generate(torch.tensor([path[:position]]), max_new_tokens=gamma).tokens
        accepted = 0
        while accepted < gamma and position + accepted < end and proposal[accepted] == path[position + accepted]:
            accepted += 1
        emitted = min(accepted + 1, end - position)
        steps.append((gamma, min(accepted, emitted), accepted < gamma and emitted > accepted))
        position += emitted
    return steps


def oracle_mismatch(draft, prompt, result):
    """None when the reported acceptance matches the oracle for the first token from the target's prefill (lead 1)
    or from the first step (lead 0); otherwise what differs."""
    stats, path = result.stats, prompt[0].tolist() + result.tokens
    found = {}
    for lead in (1, 0):
        steps = oracle_steps(draft, path, prompt.shape[1], stats.gammas, lead)
        expected = {"accepted": sum(a for _, a, _ in steps), "rejections": sum(r for *_, r in steps),
                    "accepted_by_position": tuple(sum(a > i for _, a, _ in steps)
                                                  for i in range(len(stats.accepted_by_position)))}
        reported = {name: getattr(stats, name) for name in expected}
        if reported == expected:
            return None
        found[lead] = (reported, expected)
    return f"reported {found[1][0]}; the oracle: {found[1][1]} (first token from the prefill) or {found[0][1]}"


@pytest.mark.parametrize("relation", ["partial", "unrelated", "identical"])
@pytest.mark.parametrize(("gamma", "max_new_tokens"), [(1, 9), (3, 24), (4, 17), (7, 30)])
@pytest.mark.specdec_verdict("counters")
def test_greedy_acceptance_matches_the_oracle(specdec_factory, relation, gamma, max_new_tokens):
    """The decoder under test's accepted counts equal the ones its draft's greedy proposals must give."""
    target, draft = cached_pair("llama", relation)
    path = AutoregressiveDecoder(target).generate(PROMPT, max_new_tokens=max_new_tokens).tokens
    for eos in (None, path[max_new_tokens // 2]):
        result = specdec_factory(target, draft).generate(PROMPT, max_new_tokens=max_new_tokens, sampling=GREEDY,
                                                        gamma=gamma, eos_token_id=eos)
        assert result.stats.steps or result.stats.accepted == 0
        assert oracle_mismatch(draft, PROMPT, result) is None, f"eos {eos}: {oracle_mismatch(draft, PROMPT, result)}"


@pytest.mark.parametrize("cls", [BonusAccepted, CountsEveryMatch, CountsWhatTheStepProduced])
def test_the_oracle_rejects_miscounted_acceptance(cls):
    target, draft = cached_pair("llama", "partial")
    path = AutoregressiveDecoder(target).generate(PROMPT, max_new_tokens=30).tokens
    eos = path[20] if cls is CountsWhatTheStepProduced else None
    result = cls(target, draft, gamma=4).generate(PROMPT, max_new_tokens=30, eos_token_id=eos)
    assert result.tokens == path[: len(result.tokens)]
    assert oracle_mismatch(draft, PROMPT, result) is not None


@pytest.mark.parametrize("spec", ["examples.minimal_decoder:factory", "pytest_specdec.adapters.hf_assisted:factory",
                                  "pytest_specdec.adapters.hf_assisted:default_factory",
                                  "pytest_specdec.adapters.prompt_lookup:factory"])
@pytest.mark.parametrize("relation", ["partial", "identical"])
def test_the_example_and_the_transformers_adapters_count_honestly(spec, relation):
    """In every run, whatever --specdec-impl says: lengths, gammas, EOS and sampling through the check."""
    from pytest_specdec.protocol.decoder import load_factory

    target, draft = cached_pair("llama", relation)
    decoder = make_decoder(load_factory(spec), spec, target, draft)
    path = AutoregressiveDecoder(target).generate(PROMPT, max_new_tokens=14).tokens
    for sampling in (GREEDY, SamplingConfig(temperature=0.8, top_k=8)):
        for gamma, max_new_tokens, eos in ((1, 1, None), (4, 2, None), (3, 14, None), (4, 14, path[9])):
            decoder.generate(PROMPT, max_new_tokens=max_new_tokens, sampling=sampling, gamma=gamma, eos_token_id=eos,
                             generator=torch.Generator().manual_seed(gamma))


# --- through the plugin, as a user's run would go -------------------------------------------------------------

USER_DECODER = """
import dataclasses

from reference_impl import SpeculativeDecoder
from reference_impl.stats import DecodeResult


class Overcounting(SpeculativeDecoder):
    def generate(self, *args, **kwargs):
        result = super().generate(*args, **kwargs)
        stats = dataclasses.replace(result.stats, target_forwards=result.stats.target_forwards + 3)  # BUG
        return DecodeResult(result.tokens, stats)


def make(target, draft, **options):
    return Overcounting(target, draft, **options)
"""

USES_DECODER = """
import torch

def test_decoder(specdec_decoder):
    specdec_decoder.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=12, gamma=4)
"""


def test_a_users_decoder_that_overcounts_fails_through_the_plugin(pytester):
    pytester.makepyfile(user_decoding=USER_DECODER, test_user=USES_DECODER)
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess("--specdec-impl=user_decoding:make", "--specdec-pair=tiny-llama-partial")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*CountError: user_decoding:make: the decoder's counts disagree with what it did*",
                                 "*target_forwards = * but the models ran * during the call*",
                                 "specdec verdicts on user_decoding:make:",
                                 "  counters (*): FAIL (1 failed)", "    failed or error: test_user.py::test_decoder"])
