"""The batched entry point as the plugin reports it, through pytester: a decoder without
``generate_batch`` has its batched tests skipped with a reason naming it, and the summary says
whether the entry point was present and how many batched tests ran or were skipped."""

from __future__ import annotations

import pytest

DECODERS = '''
class Single:
    def generate(self, input_ids, *, max_new_tokens, **kwargs):
        raise AssertionError("not called")

class Batched(Single):
    def generate_batch(self, prompts, *, max_new_tokens, **kwargs):
        raise AssertionError("not called")

def single(target, draft, **options):
    return Single()

def batched(target, draft, **options):
    return Batched()
'''

TESTS = '''
import pytest

@pytest.mark.specdec_batched
def test_uses_the_batched_entry_point(specdec_batched_factory):
    specdec_batched_factory(None, None)

@pytest.mark.specdec_batched
@pytest.mark.parametrize("i", range(2))
def test_also_batched(specdec_batched_factory, i):
    specdec_batched_factory(None, None)

def test_not_batched():
    pass
'''


@pytest.fixture
def project(pytester):
    pytester.makepyfile(fake_decoders=DECODERS, test_batched_use=TESTS)
    pytester.syspathinsert()
    return pytester


def test_absent_entry_point_skips_and_says_so(project):
    result = project.runpytest("--specdec-impl", "fake_decoders:single", "-rs")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines([
        "specdec: batched entry point (fake_decoders:single): absent; 0 batched test(s) ran, 3 skipped",
        "*batched entry point absent: fake_decoders:single returns Single, which has no generate_batch*",
    ])


def test_present_entry_point_runs_and_says_so(project):
    result = project.runpytest("--specdec-impl", "fake_decoders:batched")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["specdec: batched entry point (fake_decoders:batched): present; 3 batched test(s) "
                                 "ran, 0 skipped"])


def test_no_batched_tests_no_line(pytester):
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "batched entry point" not in result.stdout.str()
