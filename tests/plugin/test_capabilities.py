"""Capabilities, through pytester and on hand-made results: a test of a capability the decoder under test does not
declare is skipped with one summary line per capability; an unknown name is an error, never a silent skip; a
result that breaks a requested feature (tokens after a stop or an early EOS, missing or impossible logprobs) fails
the protocol's check.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from pytest_specdec.protocol.capabilities import CLASSIC, KNOWN, CapabilityError, declared, feature_violations
from reference_impl import AutoregressiveDecoder, SpeculativeDecoder
from reference_impl.stats import TokenLogprob

DECODERS = '''
class Plain:
    def generate(self, input_ids, *, max_new_tokens, **kwargs):
        raise AssertionError("not called")

class WithLogprobs(Plain):
    capabilities = {"greedy", "temperature", "top_k", "top_p", "streaming", "gamma", "eos", "logprobs"}

class Typo(Plain):
    capabilities = {"greedy", "logprob"}
'''

TESTS = '''
import pytest

@pytest.mark.specdec_requires("logprobs")
def test_logprobs():
    pass

@pytest.mark.specdec_requires("stop", "logprobs")
@pytest.mark.parametrize("i", range(2))
def test_stop_and_logprobs(i):
    pass

@pytest.mark.specdec_requires("greedy")
def test_classic():
    pass
'''


@pytest.fixture
def project(pytester):
    pytester.makepyfile(fake_decoders=DECODERS, test_needs=TESTS)
    pytester.syspathinsert()
    return pytester


def test_undeclared_capabilities_skip_with_one_line_each(project):
    result = project.runpytest("--specdec-impl", "fake_decoders:Plain", "-rs")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines([
        "specdec: 3 test(s) skipped: fake_decoders:Plain does not declare 'logprobs' (*",
        "specdec: 2 test(s) skipped: fake_decoders:Plain does not declare 'stop' (*",
    ])


def test_declared_capabilities_run(project):
    result = project.runpytest("--specdec-impl", "fake_decoders:WithLogprobs")
    result.assert_outcomes(passed=2, skipped=2)
    assert "does not declare 'logprobs'" not in result.stdout.str()


def test_the_reference_declares_every_feature(project):
    project.runpytest().assert_outcomes(passed=4)


def test_unknown_names_are_errors_not_skips(project):
    result = project.runpytest("--specdec-impl", "fake_decoders:Typo")
    assert result.ret != 0 and "unknown capabilities ['logprob']" in result.stdout.str() + result.stderr.str()
    project.makepyfile(test_typo='import pytest\n\n@pytest.mark.specdec_requires("stops")\ndef test_x():\n    pass\n')
    result = project.runpytest("test_typo.py")
    assert result.ret != 0 and "unknown capabilities ['stops']" in result.stdout.str() + result.stderr.str()


def test_declarations_are_read_from_the_factory_or_the_decoder():
    assert declared(SpeculativeDecoder) == declared(AutoregressiveDecoder) == KNOWN  # the reference implements all
    assert declared(lambda target, draft: None) == CLASSIC
    with pytest.raises(CapabilityError, match="top-p"):
        declared(SimpleNamespace(capabilities={"top-p"}))


def record(value: float, top: int = 1) -> TokenLogprob:
    return TokenLogprob(value, tuple((i, value) for i in range(top)))


@pytest.mark.parametrize(
    ("tokens", "logprobs", "asked", "problem"),
    [
        ([4, 9, 4, 9, 1], None, {"stop": [[4, 9]]}, "completed at index 1 but 3 more"),
        ([4, 9, 4, 9, 1], None, {"stop": [[4, 9]], "min_new_tokens": 3}, "completed at index 3 but 1 more"),
        ([7, 2, 5], None, {"eos_token_id": 2, "min_new_tokens": 3}, "EOS 2 emitted at index 1"),
        ([7, 5], None, {"logprobs": 0}, "one record per token"),
        ([7, 5], [record(-0.1), record(0.5)], {"logprobs": 0}, "logprobs[1].logprob must be a float <= 0"),
        ([7, 5], [record(-0.1), record(math.nan)], {"logprobs": 0}, "must be a float <= 0"),
        ([7, 5], [record(-0.1, 2), record(-1.0, 0)], {"logprobs": 2}, "logprobs[1].top is empty"),
    ],
    ids=["after-a-stop", "after-a-stop-past-the-floor", "eos-before-the-floor", "no-logprobs", "positive",
         "nan", "no-alternatives"],
)
def test_results_that_break_the_request_are_reported(tokens, logprobs, asked, problem):
    problems = feature_violations(tokens, SimpleNamespace(logprobs=logprobs), asked)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    ("tokens", "asked"),
    [([4, 9], {"stop": [[4, 9]]}), ([4, 9, 4, 9], {"stop": [[4, 9]], "min_new_tokens": 4}),
     ([7, 5, 2], {"eos_token_id": 2, "min_new_tokens": 2}), ([1, 2, 3], {})],
)
def test_results_that_honour_the_request_pass(tokens, asked):
    assert feature_violations(tokens, SimpleNamespace(logprobs=None), asked) == []
