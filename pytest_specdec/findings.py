"""Findings in a dependency, pinned to the version they were found in: ``@pytest.mark.specdec_finding``.

A test that documents a discrepancy in someone else's code (transformers' assisted generation
running the draft before the first token, say) asserts what a correct implementation must do, so
it fails while the discrepancy lasts. Marked

    @pytest.mark.specdec_finding("transformers", "5.24.0", reason="what was found, with the evidence")

it is a strict expected failure on the version it was found in: a fix there fails the run, so
somebody looks. On any other installed version it runs and *reports*: "still present" when its
assertion fails, "fixed" when it passes, one line per finding in the terminal summary and a
``findings`` entry in ``--specdec-json``, and the run does not fail. A new release of the
dependency then never turns an unrelated pull request red, and nobody misses what it changed.
Only an ``AssertionError`` counts as the finding: any other exception fails the test on every
version, because then the test no longer measures what it says.

Version matching is PEP 440 ``==`` (``2.13.0`` matches an installed ``2.13.0+cpu``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pytest

MARKER = (
    "specdec_finding(package, found_in, reason=''): a finding in a dependency; a strict expected failure on the "
    "version it was found in, reported as still present or fixed on any other version"
)
PROPERTY = "specdec_finding"
STILL_PRESENT, FIXED, ERROR, NOT_RUN = "still present", "fixed", "error", "not run"


@dataclass(frozen=True)
class Finding:
    """One marked test on the installed version of the package it documents."""

    nodeid: str
    package: str
    found_in: str
    installed: str
    reason: str

    @property
    def pinned(self) -> bool:
        """Whether the installed version is the one the finding was found in."""
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version

        return Version(self.installed) in SpecifierSet(f"=={self.found_in}")


def installed_version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def finding_of(item: pytest.Item, mark: pytest.Mark) -> Finding:
    """The marker's arguments, checked; a usage error naming the test and the fix when they are wrong."""
    args, reason = list(mark.args), mark.kwargs.get("reason", "")
    usage = '@pytest.mark.specdec_finding("package", "version it was found in", reason="...")'
    if len(args) != 2 or not all(isinstance(a, str) and a for a in args) or set(mark.kwargs) - {"reason"}:
        raise pytest.UsageError(f"{item.nodeid}: specdec_finding takes a package name and a version, as {usage}; "
                                f"got args {mark.args!r}, kwargs {mark.kwargs!r}")
    package, found_in = args
    installed = installed_version(package)
    if installed is None:
        raise pytest.UsageError(f"{item.nodeid}: specdec_finding names {package!r}, which is not installed: install "
                                "it, or name the distribution the finding is about (its name on the package index)")
    from packaging.version import InvalidVersion, Version

    try:
        Version(found_in)
    except InvalidVersion:
        raise pytest.UsageError(f"{item.nodeid}: specdec_finding version {found_in!r} is not a version number; "
                                f"write the release it was found in, as {usage}") from None
    return Finding(item.nodeid, package, found_in, installed, reason)


def mark_items(items: list[pytest.Item]) -> None:
    """Turn each ``specdec_finding`` into the right expected failure for the installed version."""
    for item in items:
        mark = item.get_closest_marker("specdec_finding")
        if mark is None:
            continue
        finding = finding_of(item, mark)
        if finding.pinned:
            reason = f"{finding.package} {finding.found_in}: {finding.reason}"
        else:
            reason = (f"a finding of {finding.package} {finding.found_in}, checked on {finding.installed}: reported, "
                      f"never failed: {finding.reason}")
        item.add_marker(pytest.mark.xfail(strict=finding.pinned, raises=AssertionError, reason=reason))
        item.user_properties.append((PROPERTY, asdict(finding)))


def status_of(report: pytest.TestReport) -> str | None:
    """What ``report`` says of its finding; None for a phase that says nothing."""
    if report.when == "call":
        if hasattr(report, "wasxfail"):
            return STILL_PRESENT if report.skipped else FIXED  # skipped: xfailed; passed: xpassed (not strict)
        if report.failed and str(report.longrepr).startswith("[XPASS(strict)]"):
            return FIXED
        return ERROR if report.failed else FIXED
    if report.when == "setup" and not report.passed:
        return ERROR if report.failed else NOT_RUN
    if report.when == "teardown" and report.failed:
        return ERROR
    return None


def record(report: pytest.TestReport, findings: list[dict[str, Any]]) -> None:
    """Append the finding's outcome to ``findings`` (once per test; a teardown error overrides)."""
    finding = next((value for name, value in report.user_properties if name == PROPERTY), None)
    status = status_of(report) if finding is not None else None
    if status is None:
        return
    entry = {**finding, "pinned": Finding(**finding).pinned, "status": status}
    same = [i for i, f in enumerate(findings) if f["nodeid"] == entry["nodeid"]]  # xdist interleaves tests
    if same:
        findings[same[0]] = entry
    else:
        findings.append(entry)


def summary_lines(findings: list[dict[str, Any]]) -> list[str]:
    """One line per finding checked on another version than it was found in, and what to do about them."""
    moved = [f for f in findings if not f["pinned"]]
    lines = [f"specdec: finding of {f['package']} {f['found_in']} on {f['installed']}: {f['status']}: {f['nodeid']}"
             for f in moved]
    if moved:
        lines.append(f"specdec: {len(moved)} finding(s) ran on another version than they were found in and were "
                     "reported, not failed; re-examine them and pin each to the installed version (still present) "
                     "or turn it into a plain test (fixed)")
    return lines


class Recorder:
    """Registered once per session: collects each finding's outcome into the session's results. Reports reach the
    xdist controller with their user properties, so this works under ``-n`` as well."""

    def __init__(self, findings: list[dict[str, Any]]) -> None:
        self.findings = findings

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.user_properties:
            record(report, self.findings)
