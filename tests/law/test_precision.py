"""The draft token is drawn from exactly the distribution that enters the acceptance ratio.

A bias of the size of a rounding error (a draft sampled in one precision and verified in another)
is invisible to any sampling test at affordable sample sizes, so this is a deterministic check: it
records every distribution a draft token is drawn from and every draft distribution verified, and
demands they match bit for bit, dtype included.
"""

from __future__ import annotations

import pytest
import torch

import reference_impl.speculative as speculative
from reference_impl import SamplingConfig, SpeculativeDecoder
from tests.support import mutants
from tests.support.pairs import cached_pair

PROMPT = torch.tensor([[3, 17, 42, 8, 5]])
SAMPLINGS = [SamplingConfig(temperature=1.0), SamplingConfig(temperature=0.8, top_k=10, top_p=0.9)]


def provenance(monkeypatch, decoder, sampling):
    """(distributions draft tokens were drawn from, draft distributions verified), in order."""
    drawn, verified = [], []
    for module in (speculative, mutants):
        original_sample, original_verify = module.sample, module.verify_sampled

        def recording_sample(probs, generator, original=original_sample):
            drawn.extend(row.clone() for row in probs)
            return original(probs, generator)

        def recording_verify(target_probs, draft_probs, draft_tokens, generator, original=original_verify):
            verified.extend(row.clone() for row in draft_probs)
            return original(target_probs, draft_probs, draft_tokens, generator)

        monkeypatch.setattr(module, "sample", recording_sample)
        monkeypatch.setattr(module, "verify_sampled", recording_verify)
    decoder.generate(PROMPT, max_new_tokens=20, sampling=sampling, gamma=4, generator=torch.Generator().manual_seed(0))
    return drawn, verified


def mismatches(drawn, verified):
    if len(drawn) != len(verified):
        return [f"{len(drawn)} draft draws but {len(verified)} verified draft distributions"]
    return [
        f"draft token {i}: drawn from {a.dtype}, verified with {b.dtype}, max difference {(a - b).abs().max():.3g}"
        for i, (a, b) in enumerate(zip(drawn, verified, strict=True))
        if a.dtype != b.dtype or not torch.equal(a, b)
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sampling", SAMPLINGS, ids=lambda s: s.describe())
def test_reference_verifies_the_distribution_it_drew_from(monkeypatch, sampling, dtype):
    target, draft = cached_pair("llama", "partial", dtype=dtype)
    drawn, verified = provenance(monkeypatch, SpeculativeDecoder(target, draft), sampling)
    assert drawn, "no draft token was drawn"
    assert not mismatches(drawn, verified)


@pytest.mark.parametrize("sampling", SAMPLINGS, ids=lambda s: s.describe())
def test_precision_mismatch_is_caught(monkeypatch, sampling):
    target, draft = cached_pair("llama", "partial", dtype=torch.float32)
    drawn, verified = provenance(monkeypatch, mutants.PrecisionMismatchDecoder(target, draft), sampling)
    assert mismatches(drawn, verified), "a draft drawn from bf16-rounded probabilities went unnoticed"
