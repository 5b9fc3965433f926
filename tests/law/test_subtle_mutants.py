"""The subtle mutants are decoders with one bug each: faithful with the bug off, different with it on,
honest about their counts (so only a distribution test can catch them). Their detection by the
distribution tests is tested with those tests."""

from __future__ import annotations

import pytest
import torch

from pytest_specdec.protocol.decoder import CheckedDecoder
from reference_impl.models.table import table_pair
from reference_impl.sampling import SamplingConfig, probs_from_logits, residual_probs
from reference_impl.speculative import SpeculativeDecoder
from tests.support import subtle_mutants
from tests.support.subtle_mutants import SUBTLE_MUTANTS, inverse_cdf, neutral, warp_logits, warp_top_p_first

SEED = 11
PROMPT = torch.tensor([[3, 1]])
SETTINGS = {
    "T=1": SamplingConfig(temperature=1.0),
    "T=0.6": SamplingConfig(temperature=0.6),
    "top_k=3": SamplingConfig(temperature=1.0, top_k=3),
    "top_p=0.8": SamplingConfig(temperature=1.0, top_p=0.8),
    "top_k=5,top_p=0.8": SamplingConfig(temperature=1.0, top_k=5, top_p=0.8),
}
BITES = {  # mutant -> a setting (and seed) where its 30 tokens differ from the reference's
    "shared_noise": ("T=1", SEED),
    "shared_uniform": ("T=1", SEED),
    "uniform_bf16": ("T=1", SEED),
    "accept_scaled": ("top_k=3", SEED),  # a 1-in-12 event over 30 tokens: the seeds 0..11 differ only at 11
    "accept_shifted": ("T=0.6", 1),
    "warper_order": ("top_k=5,top_p=0.8", SEED),
    "top_p_boundary": ("top_p=0.8", SEED),
    "draft_sampled_unwarped": ("T=0.6", SEED),
}
PINNED = {  # mutant -> (pinned uniform, target probs of the draft token, draft probs of it): only a pinned
    # uniform reaches these bugs in a short run (they need u in a 2**-9 or 2**-53 sliver)
    "accept_bf16": (1 - 2**-10, 0.5, 0.25),  # ratio 1; u rounds to 1.0 in bf16, so 1.0 < 1.0 rejects
    "uniform_inclusive": (0.0, 0.0, 0.25),  # a token the target never emits, accepted as 0 <= 0
}
assert {*BITES, *PINNED} == set(SUBTLE_MUTANTS)
SAME_TOKENS_AS_REFERENCE = sorted(set(SUBTLE_MUTANTS) - {"shared_uniform"})  # its neutral form samples by inverse CDF


@pytest.fixture(scope="module")
def pair():
    return table_pair(
        [2.0, 1.5, 1.0, 0.6, 0.3, 0.0, -0.5, -1.0],
        [3.0, 2.0, 1.2, 0.5, 0.0, -0.5, -1.0, -2.0],
        [2, 0, 1, 3, 4, 5, 6, 7],
    )


def decode(decoder, setting, tokens=30, gamma=3, seed=SEED):
    generator = torch.Generator().manual_seed(seed)
    return decoder.generate(
        PROMPT, max_new_tokens=tokens, sampling=SETTINGS[setting], gamma=gamma, generator=generator
    ).tokens


@pytest.mark.parametrize("name", SAME_TOKENS_AS_REFERENCE)
def test_bug_switched_off_is_the_reference_token_for_token(name, pair):
    setting = BITES.get(name, ("top_k=5,top_p=0.8",))[0]
    assert decode(neutral(name)(*pair), setting) == decode(SpeculativeDecoder(*pair), setting)


def test_inverse_cdf_draws_each_token_on_its_interval_and_skips_empty_ones():
    probs = torch.tensor([0.25, 0.0, 0.5, 0.25], dtype=torch.float64)
    drawn = [
        int(inverse_cdf(probs, torch.tensor(u, dtype=torch.float64))) for u in (0.0, 0.2499, 0.25, 0.7499, 0.75, 0.9999)
    ]
    assert drawn == [0, 0, 2, 2, 3, 3]


@pytest.mark.parametrize("name", sorted(BITES))
def test_bug_changes_the_output_and_the_counts_stay_honest(name, pair):
    """Through the protocol check (counts against tokens and model passes): the counters pass, the tokens differ."""
    setting, seed = BITES[name]
    checked = CheckedDecoder(SUBTLE_MUTANTS[name](*pair), name, *pair)
    assert len(decode(checked, setting, gamma=1)) == 30
    mutated = decode(checked, setting, gamma=3, seed=seed)
    assert mutated != decode(SpeculativeDecoder(*pair), setting, gamma=3, seed=seed), (
        f"{name} decodes like the reference"
    )


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_uniform_reaches_the_bug(name, pair, monkeypatch):
    uniform, target_at, draft_at = PINNED[name]
    monkeypatch.setattr(
        subtle_mutants, "draw_uniforms", lambda gamma, dtype, generator: torch.full((gamma,), uniform, dtype=dtype)
    )
    target = torch.tensor([[target_at, 1 - target_at], [0.5, 0.5]], dtype=torch.float64)
    draft = torch.tensor([[draft_at, 1 - draft_at]], dtype=torch.float64)
    accepted = []
    for cls in (neutral(name), SUBTLE_MUTANTS[name]):
        n_accepted, _ = cls(*pair).verify(target, draft, torch.tensor([0]), torch.Generator().manual_seed(SEED))
        accepted.append(int(n_accepted))
    assert accepted[0] != accepted[1], (
        f"{name}: the pinned uniform {uniform} is decided the same way with and without the bug"
    )


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_mutants_keep_honest_counts(name, pair):
    checked = CheckedDecoder(SUBTLE_MUTANTS[name](*pair), name, *pair)
    assert len(decode(checked, "top_k=3", gamma=2)) == 30


def test_nucleus_before_renormalisation_is_top_p_first():
    """The two framings of warper_order's bug keep the same tokens."""
    logits = torch.randn(64, 12, generator=torch.Generator().manual_seed(SEED), dtype=torch.float64)
    sampling = SamplingConfig(temperature=0.8, top_k=5, top_p=0.7)
    full = probs_from_logits(logits, SamplingConfig(temperature=0.8))
    top_k = warp_logits(logits, SamplingConfig(temperature=0.8, top_k=5)).isfinite()
    sorted_probs, order = (full * top_k).sort(dim=-1, descending=True)
    keep_sorted = (sorted_probs.cumsum(-1) - sorted_probs < sampling.top_p) & (sorted_probs > 0)
    keep = keep_sorted.scatter(-1, order, keep_sorted)
    assert torch.equal(warp_top_p_first(logits, sampling).isfinite(), keep)
    assert not torch.equal(keep, warp_logits(logits, sampling).isfinite())  # and they differ from the reference


def test_shared_noise_is_a_bias_not_a_relabelling():
    """The residual law with shared noise, by a quick Monte Carlo, is not the residual (else the mutant is harmless)."""
    from tests.support.subtle_mutant_tv import shared_noise_law, tv

    p = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    q = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    shared, fresh = shared_noise_law(p, q, 2**18)
    assert tv(fresh, p) < 0.004 < 0.01 < tv(shared, p)
    assert residual_probs(p, q).sum() == 1
