"""``@pytest.mark.specdec_finding``, through pytester: strict on the version a finding was found in, reported
(still present / fixed) and never failed on any other.

Another version is simulated the honest way: the marker names the installed transformers but a
release it is not (``4.0.0``), exactly what a fresh clone sees the day transformers publishes a new
release. The installed version itself stands for the version a finding was found in.
"""

from __future__ import annotations

import json

import pytest
import torch  # noqa: F401  (imported before any in-process run snapshots sys.modules: torch must not load twice)
import transformers

from pytest_specdec import findings
from pytest_specdec.perf import environment  # noqa: F401  (the same: --specdec-json imports it)

INSTALLED = transformers.__version__
OTHER = "4.0.0"  # a transformers release the installed one is not

FILE = """
import pytest

finding = pytest.mark.specdec_finding("transformers", "{version}", reason="the draft runs first")


@finding
def test_still_there():
    assert 5 == 1, "first token after 5 passes"


@finding
def test_gone_upstream():
    assert 1 == 1


@finding
def test_crashes_for_another_reason():
    raise TypeError("the adapter no longer fits the API")


def test_a_control():
    assert True
"""


def run(pytester: pytest.Pytester, version: str, *args: str) -> tuple[pytest.RunResult, list[dict]]:
    pytester.makepyfile(FILE.format(version=version))
    out = pytester.path / "results.json"
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA", f"--specdec-json={out}", *args)
    return result, json.loads(out.read_text())["findings"]


def statuses(entries: list[dict]) -> dict[str, str]:
    return {entry["nodeid"].split("::")[-1]: entry["status"] for entry in entries}


def test_on_another_version_a_finding_is_reported_and_never_fails_the_run(pytester):
    result, entries = run(pytester, OTHER, "-k", "not crashes")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, xfailed=1, xpassed=1)
    result.stdout.fnmatch_lines([
        f"specdec: finding of transformers {OTHER} on {INSTALLED}: still present: *::test_still_there",
        f"specdec: finding of transformers {OTHER} on {INSTALLED}: fixed: *::test_gone_upstream",
        "specdec: 2 finding(s) ran on another version than they were found in and were reported, not failed;*",
    ])
    assert statuses(entries) == {"test_still_there": "still present", "test_gone_upstream": "fixed"}
    assert all(e["found_in"] == OTHER and e["installed"] == INSTALLED and not e["pinned"] for e in entries)
    assert entries[0]["reason"] == "the draft runs first"


def test_on_the_version_it_was_found_in_a_finding_is_a_strict_expected_failure(pytester):
    """A fix on the pinned version fails the run, so it is noticed; the finding still present is an xfail."""
    result, entries = run(pytester, INSTALLED, "-k", "not crashes")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, xfailed=1, failed=1)
    result.stdout.fnmatch_lines(["*XPASS(strict)* transformers*the draft runs first*"])
    result.stdout.no_fnmatch_line("specdec: finding of*")  # the pinned version's outcomes need no extra line
    assert statuses(entries) == {"test_still_there": "still present", "test_gone_upstream": "fixed"}
    assert all(e["pinned"] for e in entries)


@pytest.mark.parametrize("version", [INSTALLED, OTHER], ids=["pinned", "other"])
def test_only_an_assertion_counts_as_the_finding(pytester, version):
    """A test that crashes no longer measures its finding: it fails on every version."""
    result, entries = run(pytester, version, "-k", "crashes")
    result.assert_outcomes(failed=1)
    assert statuses(entries) == {"test_crashes_for_another_reason": "error"}


def test_the_pin_matches_a_local_version_label():
    """``2.13.0`` found in, ``2.13.0+cpu`` installed: the same release."""
    finding = findings.Finding("t", "torch", "2.13.0", "2.13.0+cpu", "")
    assert finding.pinned
    assert not findings.Finding("t", "torch", "2.13.0", "2.13.1", "").pinned


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('"no-such-distribution-here", "1.0"', "*names 'no-such-distribution-here', which is not installed*"),
        ('"transformers"', "*specdec_finding takes a package name and a version*"),
        ('"transformers", "latest"', "*version 'latest' is not a version number*"),
    ],
    ids=["not-installed", "no-version", "not-a-version"],
)
def test_a_wrong_marker_is_a_usage_error(pytester, marker, message):
    pytester.makepyfile(f"import pytest\n\n@pytest.mark.specdec_finding({marker})\ndef test_x():\n    assert 0\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_findings_are_reported_under_xdist(pytester):
    """The marker's facts ride in the test report to the controller, which writes the summary and the JSON."""
    pytest.importorskip("xdist")
    result, entries = run(pytester, OTHER, "-k", "not crashes", "-n", "2")
    assert result.ret == pytest.ExitCode.OK
    assert statuses(entries) == {"test_still_there": "still present", "test_gone_upstream": "fixed"}
    result.stdout.fnmatch_lines(["specdec: finding of transformers*still present*"])
