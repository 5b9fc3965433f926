"""Check 4: the generator is the decoder's only randomness.

Same seed, same tokens (on the same decoder called again, and on a fresh decoder); different
seeds, different tokens; the global RNG untouched; the generator actually drawn from. The
decoder comes from ``specdec_factory``.

The seeds are fixed, so every test here is deterministic. "Different seeds differ" asks only
that 8 seeds do not all give the same 24 tokens, which a correct decoder does with probability
below 4e-5 on this pair at temperature 1 (sum over 4-token continuations of P(s)^8, exact, an
upper bound since only the first 4 of the 24 tokens are counted): enough to catch a decoder
that replaces the caller's seed with a constant one.
"""

from __future__ import annotations

import pytest
import torch

from reference_impl.sampling import SamplingConfig

from .test_distribution_e2e import (
    CONFIGS,
    PROMPT,
    pair,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")

LENGTH = 24
GAMMA = 3
SEEDS = tuple(range(100, 108))


def decode(decoder, sampling, seed, length=LENGTH):
    generator = torch.Generator().manual_seed(seed)
    return decoder.generate(PROMPT, max_new_tokens=length, sampling=sampling, gamma=GAMMA, generator=generator).tokens


def same_seed_same_output(make_decoder, sampling, seed=SEEDS[0]) -> tuple[bool, str]:
    """Decode twice with one decoder and once with a fresh one, all with ``seed``."""
    decoder = make_decoder()
    first, again = decode(decoder, sampling, seed), decode(decoder, sampling, seed)
    fresh = decode(make_decoder(), sampling, seed)
    return first == again == fresh, f"seed {seed}: {first} / again {again} / fresh decoder {fresh}"


def different_seeds_differ(make_decoder, sampling) -> tuple[bool, str]:
    decoder = make_decoder()
    outputs = {seed: tuple(decode(decoder, sampling, seed)) for seed in SEEDS}
    distinct = len(set(outputs.values()))
    return distinct > 1, f"{distinct} distinct outputs from {len(SEEDS)} seeds: {outputs}"


@pytest.fixture(scope="module")
def make_decoder(specdec_factory):
    target, draft = pair()
    return lambda: specdec_factory(target, draft)


@pytest.mark.parametrize("config", CONFIGS)
def test_same_seed_gives_the_same_tokens(make_decoder, config):
    ok, detail = same_seed_same_output(make_decoder, CONFIGS[config])
    assert ok, detail


def test_different_seeds_give_different_tokens(make_decoder):
    ok, detail = different_seeds_differ(make_decoder, CONFIGS["T1"])
    assert ok, detail


def test_the_global_rng_is_untouched(make_decoder):
    """A decoder that draws from, or reseeds, torch's global RNG changes its state."""
    before = torch.random.get_rng_state()
    decode(make_decoder(), SamplingConfig(temperature=1.0), SEEDS[0])
    assert torch.equal(before, torch.random.get_rng_state()), "generate() used or reseeded the global RNG"


def test_the_generator_is_consumed(make_decoder):
    """A decoder that ignores the generator leaves its state where it was."""
    generator = torch.Generator().manual_seed(SEEDS[0])
    before = generator.get_state()
    make_decoder().generate(
        PROMPT, max_new_tokens=LENGTH, sampling=SamplingConfig(1.0), gamma=GAMMA, generator=generator
    )
    assert not torch.equal(before, generator.get_state()), "the generator passed to generate() was never drawn from"
