"""Greedy speculative output equals the target's own greedy output, token for token, in float64.

Runs against the decoder under test (``--specdec-impl``), on tiny pairs of four architectures
and three draft relations, over generated prompts, gammas, lengths and EOS tokens.
"""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from reference_impl import AutoregressiveDecoder, SamplingConfig
from reference_impl.models.tiny import ARCHITECTURES, RELATIONS
from tests.support.pairs import cached_pair

VOCAB = 96


@st.composite
def requests(draw):
    arch = draw(st.sampled_from(ARCHITECTURES))
    relation = draw(st.sampled_from(RELATIONS))
    prompt = draw(st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=12))
    gamma = draw(st.integers(1, 8))
    max_new_tokens = draw(st.integers(0, 48))
    eos = draw(st.one_of(st.none(), st.integers(0, VOCAB - 1)))
    return arch, relation, prompt, gamma, max_new_tokens, eos


@given(request_args=requests())
def test_speculative_greedy_equals_target_greedy(specdec_factory, request_args):
    arch, relation, prompt, gamma, max_new_tokens, eos = request_args
    target, draft = cached_pair(arch, relation)
    input_ids = torch.tensor([prompt])
    expected = AutoregressiveDecoder(target).generate(input_ids, max_new_tokens=max_new_tokens, eos_token_id=eos)
    got = specdec_factory(target, draft).generate(
        input_ids, max_new_tokens=max_new_tokens, sampling=SamplingConfig(), gamma=gamma, eos_token_id=eos
    )
    assert got.tokens == expected.tokens, (
        f"{arch}/{relation} gamma={gamma}: first divergence at index "
        f"{next((i for i, (a, b) in enumerate(zip(got.tokens, expected.tokens, strict=False)) if a != b), 'length')}"
    )

