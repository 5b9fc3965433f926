"""Automatic gamma: the cost model, the gamma choice, the cost measurement and the decoder's auto mode.

Everything here is deterministic: costs are given, or measured with a fake clock that advances
by a fixed table of seconds per forward pass, so no test depends on the machine's speed.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from reference_impl import AutoregressiveDecoder, InvalidGammaError, SamplingConfig, SpeculativeDecoder
from reference_impl.autogamma import AlphaTracker, CostModel, choose_gamma, measure_costs
from reference_impl.stats import predicted_speedup
from tests.support.pairs import cached_pair

PROMPT = torch.tensor([[3, 17, 42, 8, 5]])


def flat_costs(c: float = 0.1, v: float = 1.0, max_tokens: int = 9, **overrides: float) -> CostModel:
    """Target decode 1 s, draft c s, verify v s for every k except ``overrides`` ({'k9': 3.0} etc.)."""
    verify = [1.0] + [overrides.get(f"k{k}", v) for k in range(2, max_tokens + 1)]
    return CostModel(target_decode_s=1.0, draft_decode_s=c, verify_s=tuple(verify))


def test_cost_model_is_the_field_notes_formula():
    costs = CostModel(target_decode_s=0.05, draft_decode_s=0.006, verify_s=(0.05, 0.07, 0.09, 0.06, 0.062))
    assert costs.c == pytest.approx(0.12)
    assert costs.v(3) == pytest.approx(0.06 / 0.05)  # gamma 3 verifies 4 tokens
    assert costs.max_gamma == 4
    for gamma in range(1, 5):
        expected = predicted_speedup(0.8, gamma, c=0.12, v=costs.v(gamma))
        assert costs.predicted_speedup(0.8, gamma) == pytest.approx(expected)


def test_predicted_speedup_of_steps_pools_tokens_and_costs():
    costs = flat_costs(c=0.1, v=1.2)
    assert costs.predicted_speedup_of_steps(0.8, [4, 4, 4]) == pytest.approx(costs.predicted_speedup(0.8, 4))
    # gamma 2: 1 + 0.8 + 0.64 = 2.44 tokens for 1.4; gamma 6: (1 - 0.8^7) / 0.2 = 3.951424 for 1.8
    assert costs.predicted_speedup_of_steps(0.8, [2, 6]) == pytest.approx((2.44 + 3.951424) / (1.4 + 1.8))
    assert math.isnan(costs.predicted_speedup_of_steps(0.8, []))
    assert math.isnan(costs.predicted_speedup_of_steps(0.8, [4, 20]))  # verify width not measured
    assert math.isnan(costs.predicted_speedup_of_steps(math.nan, [4]))


@pytest.mark.parametrize(
    ("alpha", "costs", "expected"),
    [
        # predicted speedups 1.73, 2.26, 2.64, 2.93, 3.12, 3.26, 3.35, 3.40: the largest gamma wins
        (0.9, flat_costs(), 8),
        # verifying 9 tokens costs 3 passes: gamma 8 drops to 1.61, gamma 7 (3.35) wins
        (0.9, flat_costs(k9=3.0), 7),
        # 1.36, 1.46, 1.44, ...: gamma 2
        (0.5, flat_costs(), 2),
        # verifying 3 tokens is slow (gamma 2 at 1.75 / 1.7 = 1.03), 4 tokens cheap: gamma 3 (1.44)
        (0.5, flat_costs(k3=1.5), 3),
        # nothing is accepted: the cheapest step, gamma 1
        (0.0, flat_costs(), 1),
        # everything is accepted and drafting is free: all the verify width there is
        (1.0, flat_costs(c=0.0, max_tokens=6), 5),
    ],
)
def test_choose_gamma_picks_the_best_predicted_speedup(alpha, costs, expected):
    assert choose_gamma(alpha, costs) == expected
    best = max(costs.predicted_speedup(alpha, g) for g in range(1, costs.max_gamma + 1))
    assert costs.predicted_speedup(alpha, expected) == pytest.approx(best)


def test_choose_gamma_respects_the_limit_and_clamps_alpha():
    assert choose_gamma(0.9, flat_costs(), max_gamma=3) == 3
    assert choose_gamma(1.7, flat_costs()) == choose_gamma(1.0, flat_costs())
    assert choose_gamma(-0.2, flat_costs()) == 1


class FakeClock:
    """A clock that only moves when a model runs: each pass advances it by a table's seconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def charging(clock: FakeClock, model: torch.nn.Module, seconds_for_k, slow_calls: dict[int, float] | None = None):
    """Each forward of ``model`` over k tokens advances ``clock`` by seconds_for_k(k) (x factor on listed calls)."""
    calls = {"n": 0}
    slow_calls = slow_calls or {}

    def hook(module, args, kwargs):
        calls["n"] += 1
        k = kwargs["input_ids"].shape[-1]
        clock.now += seconds_for_k(k) * slow_calls.get(calls["n"], 1.0)

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def target_seconds(k: int) -> float:
    return {1: 0.050, 2: 0.080, 3: 0.090, 4: 0.060, 5: 0.062}.get(k, 0.05 + 0.01 * k)


def test_measure_costs_recovers_the_pass_costs_exactly():
    target, draft = cached_pair("llama", "partial")
    clock = FakeClock()
    with charging(clock, target, target_seconds), charging(clock, draft, lambda k: 0.004 * k):
        costs = measure_costs(target, draft, max_tokens=6, context=8, repeats=3, clock=clock)
    assert costs.verify_s == pytest.approx(tuple(target_seconds(k) for k in range(1, 7)))
    assert costs.target_decode_s == pytest.approx(0.05)
    assert costs.c == pytest.approx(0.004 / 0.05)
    assert costs.v(3) == pytest.approx(0.060 / 0.050)  # 4 tokens: cheaper than 2 or 3 here


def test_measure_costs_takes_medians_so_one_slow_round_does_not_count():
    """Round 2 of 3 (calls 1 prefill + 6 warm-up + 6 round one + 4th of round two) runs 20x slow."""
    target, draft = cached_pair("llama", "partial")
    clock = FakeClock()
    with charging(clock, target, target_seconds, slow_calls={1 + 6 + 6 + 4: 20.0}), charging(
        clock, draft, lambda k: 0.004
    ):
        costs = measure_costs(target, draft, max_tokens=6, context=8, repeats=3, clock=clock)
    assert costs.verify_s[3] == pytest.approx(target_seconds(4))


def test_alpha_tracker_starts_at_its_prior_and_follows_the_counts():
    tracker = AlphaTracker(prior_alpha=0.6, prior_weight=4)
    assert tracker.alpha == pytest.approx(0.6)
    tracker.update(accepted=8, rejected=False)  # (2.4 + 8) / (2.4 + 8 + 1.6)
    assert tracker.alpha == pytest.approx(10.4 / 12)
    tracker.update(accepted=0, rejected=True)
    assert tracker.alpha == pytest.approx(10.4 / 13)


def test_auto_gamma_follows_the_costs_and_stays_lossless():
    """Costs under which gamma 3 is best at every alpha: every step drafts 3 (fewer only near the end)."""
    target, draft = cached_pair("llama", "partial")
    costs = flat_costs(c=0.05, v=4.0, k4=1.0)  # verifying 4 tokens costs 1, any other width 4
    decoder = SpeculativeDecoder(target, draft, gamma="auto", costs=costs)
    result = decoder.generate(PROMPT, max_new_tokens=40)
    assert result.tokens == AutoregressiveDecoder(target).generate(PROMPT, max_new_tokens=40).tokens
    assert set(result.stats.gammas[:-2]) == {3}
    assert decoder.costs is costs


@pytest.mark.parametrize(("relation", "expected"), [("identical", 8), ("unrelated", 1)])
def test_auto_gamma_adapts_to_the_measured_alpha(relation, expected):
    """An identical draft drives alpha to 1 (largest gamma); an unrelated one to 0 (gamma 1)."""
    target, draft = cached_pair("llama", relation)
    decoder = SpeculativeDecoder(target, draft, gamma="auto", costs=flat_costs(c=0.1))
    for _ in range(3):
        stats = decoder.generate(PROMPT, max_new_tokens=60).stats
    assert stats.gammas[0] == expected
    assert decoder.alpha.alpha == pytest.approx(float(relation == "identical"), abs=0.2)


def test_auto_gamma_measures_costs_only_after_the_first_token():
    target, draft = cached_pair("llama", "partial")
    decoder = SpeculativeDecoder(target, draft, gamma="auto")
    costs_at_first_token = []
    decoder.generate(PROMPT, max_new_tokens=8, on_token=lambda t: costs_at_first_token.append(decoder.costs))
    assert costs_at_first_token[0] is None
    assert isinstance(decoder.costs, CostModel)
    assert decoder.costs.max_gamma == 8


def test_gamma_none_is_the_decoders_choice_and_auto_is_accepted_per_call():
    target, draft = cached_pair("llama", "partial")
    decoder = SpeculativeDecoder(target, draft, gamma=2, costs=flat_costs())
    assert set(decoder.generate(PROMPT, max_new_tokens=12).stats.gammas) <= {1, 2}
    decoder.alpha.update(accepted=1000, rejected=False)
    assert decoder.generate(PROMPT, max_new_tokens=30, gamma="auto").stats.gammas[0] == 8


@pytest.mark.parametrize("gamma", ["AUTO", "fast", ""])
def test_other_strings_are_bad_gammas(gamma):
    target, draft = cached_pair("llama", "partial")
    with pytest.raises(InvalidGammaError, match="gamma must be an integer >= 1"):
        SpeculativeDecoder(target, draft, gamma=gamma)


def test_auto_gamma_counts_its_cost_probe_passes():
    """The first auto-gamma call measures the costs on the models: those passes are part of the call, so its
    stats report them and the counters check (every result through the protocol) agrees with the models."""
    from pytest_specdec.protocol.decoder import make_decoder

    target, draft = cached_pair("llama", "partial")
    decoder = make_decoder(lambda t, d: SpeculativeDecoder(t, d, gamma="auto"), "auto", target, draft)
    prompt = torch.tensor([[3, 17, 42, 8, 5]])
    first = decoder.generate(prompt, max_new_tokens=12, sampling=SamplingConfig()).stats
    second = decoder.generate(prompt, max_new_tokens=12, sampling=SamplingConfig()).stats
    assert first.target_prefills == 2 and second.target_prefills == 1  # the probe prefills its own context once
    assert first.target_forwards > second.target_forwards
    assert first.forwards_before_first_token == second.forwards_before_first_token == 1
