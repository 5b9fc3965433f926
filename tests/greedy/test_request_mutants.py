"""The request-feature checks reject every shipped bug class (tests/support/request_mutants.py), through the protocol.

Each mutant is built by its ``module:factory`` spec and wrapped in ``CheckedDecoder`` exactly as a decoder under
test is, then run on one fixed battery of greedy requests on float64 tiny pairs: penalties, bias, ``min_new_tokens``
boundaries, stops early in a block and two stops in one block, logprobs. A mutant is caught when some request
gives tokens or logprobs other than the reference's, or breaks the protocol's feature checks (``ContractError``).
Deterministic: no seed, no error rate.
"""

from __future__ import annotations

import math

import pytest
import torch

from pytest_specdec.protocol.decoder import ContractError, load_factory, make_decoder
from reference_impl import SamplingConfig
from tests.support.pairs import cached_pair
from tests.support.request_checks import logprob_mismatches, reference_tokens, request_mismatches
from tests.support.request_mutants import REQUEST_MUTANTS

PROMPT = torch.tensor([[5, 41, 7, 19]])
REFERENCE = "reference_impl.speculative:SpeculativeDecoder"


def battery(relation: str) -> list[dict]:
    """Requests whose stops and EOS tokens are cut from the pair's own greedy output, so each of them acts."""
    target, _ = cached_pair("llama", relation)
    plain = reference_tokens(target, PROMPT, {"max_new_tokens": 24})
    mild = SamplingConfig(repetition_penalty=1.5)  # the tiny pairs loop without a penalty: stops would act at once
    penalised = reference_tokens(target, PROMPT, {"max_new_tokens": 24, "sampling": mild})
    base = {"max_new_tokens": 24, "gamma": 4}
    cases = [
        {**base, "sampling": SamplingConfig(repetition_penalty=2.0)},
        {**base, "sampling": SamplingConfig(frequency_penalty=1.5, presence_penalty=0.5)},
        {**base, "sampling": SamplingConfig(logit_bias={plain[3]: 6.0, plain[1]: -math.inf})},
        {**base, "gamma": 6, "stop": [penalised[2:3]], "sampling": mild},  # early in the first block
        {**base, "gamma": 6, "stop": [penalised[5:7], penalised[2:4]], "sampling": mild},  # two in one block
        {**base, "logprobs": 2, "sampling": mild},
        {**base, "logprobs": 0},
    ]
    for index in (2, 5, 9):
        for floor in (index, index + 1):
            cases.append({**base, "eos_token_id": penalised[index], "min_new_tokens": floor,
                          "sampling": mild})
    return cases


def failures(spec: str, first: bool = False) -> list[tuple[str, int, str]]:
    """(pair relation, request index, problem) of the battery's findings against the decoder ``spec`` names, on the
    identical and the partial pair (``first``: stop at the first)."""
    found = []
    for relation in ("identical", "partial"):
        target, draft = cached_pair("llama", relation)
        decoder = make_decoder(load_factory(spec), spec, target, draft)
        for index, request in enumerate(BATTERY[relation]):
            try:
                problems = request_mismatches(decoder, target, PROMPT, request)
            except ContractError as exc:
                problems = [str(exc).splitlines()[-1].strip(" -")]
            found += [(relation, index, problem) for problem in problems]
            if found and first:
                return found
    return found


BATTERY = {relation: battery(relation) for relation in ("identical", "partial")}


def test_the_battery_passes_the_reference():
    assert failures(REFERENCE) == []


@pytest.mark.parametrize("name", sorted(REQUEST_MUTANTS))
def test_each_request_feature_bug_is_caught(name):
    assert failures(f"tests.support.request_mutants:{name}", first=True), f"{name} passed the whole battery"


SAMPLED = {"max_new_tokens": 20, "gamma": 4, "logprobs": 1,
           "sampling": SamplingConfig(temperature=0.7, repetition_penalty=1.3)}


def sampled_logprob_failures(spec: str) -> list[str]:
    """A sampled request's logprobs against the target's exact processed law, on the partial pair, seeds 0-3."""
    target, draft = cached_pair("llama", "partial")
    decoder = make_decoder(load_factory(spec), spec, target, draft)
    return [problem for seed in range(4) for problem in
            logprob_mismatches(decoder, target, PROMPT, SAMPLED, torch.Generator().manual_seed(seed))]


@pytest.mark.parametrize("spec", [REFERENCE, "tests.support.sampled_request_mutants:InPlaceLogprobsDecoder",
                                  "tests.support.request_mutants:DraftLawLogprobsDecoder"],
                         ids=["reference", "InPlaceLogprobsDecoder", "DraftLawLogprobsDecoder"])
def test_sampled_logprob_bugs_are_caught(spec):
    """Logprob bugs that only sampling shows (the temperature counted twice by an in-place scaling) are caught."""
    found = sampled_logprob_failures(spec)
    assert (found == []) == (spec == REFERENCE), found or f"{spec} passed"


if __name__ == "__main__":  # python -m tests.greedy.test_request_mutants: which battery requests catch each mutant
    total = sum(len(cases) for cases in BATTERY.values())
    for name in [*sorted(REQUEST_MUTANTS), None]:
        found = failures(REFERENCE if name is None else f"tests.support.request_mutants:{name}")
        caught = sorted({(relation, index) for relation, index, _ in found})
        print(f"{name or 'reference'}: caught by {len(caught)} of {total} requests {caught}")
        if found:
            relation, index, problem = found[0]
            print(f"    first: {relation} #{index} {BATTERY[relation][index]}: {problem}")
