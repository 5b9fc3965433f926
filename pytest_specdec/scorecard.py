"""The scorecard: separate verdicts on the decoder under test: lossless-ness, counters, performance and protocol.

A run against someone's decoder answers four different questions, and a failure of one must not
read as a failure of another: "the draft ran 3 passes before the first token" is a TTFT property,
not a lossless-ness failure, and a miscounted ``accepted`` is a counters failure even when the test
that caught it was checking greedy equality.

- **lossless-ness**: greedy output equals the target's and sampled output follows its law
  (the tests under ``tests/greedy`` and ``tests/law``);
- **counters**: the reported counts agree with the tokens and with the passes the models ran
  (checked on every call through the protocol: a ``CountError`` fails the test whatever it checked);
- **performance**: acceptance, TTFT, throughput and pass-count properties (``specdec_perf`` tests,
  ``tests/perf``, and tests marked ``specdec_verdict("performance")``: an identical draft always accepted, the
  accepted counts against the pair's beta; a lossless decoder can still waste its drafts);
- **protocol**: the form of a result and the request's features (``ContractError``: overshoot, a
  token after a stop, a missing logprob).

Which verdict a test counts toward is its ``specdec_verdict(kind)`` marker, else its folder; tests of
the suite itself (plugin, reference, repo, adapters) count toward none. Skips for capabilities the
decoder does not declare are counted apart from failures (``requires``). The verdicts are printed at
the end of the run and written to ``--specdec-json`` under ``verdicts``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .protocol.capabilities import missing_from_reason

KINDS = {
    "lossless": "lossless-ness (greedy equals the target's, sampled follows its law)",
    "counters": "counters (reported counts agree with the tokens and the passes run)",
    "performance": "performance properties (acceptance, TTFT, throughput, passes before the first token)",
    "protocol": "protocol (result form, stops, EOS, min_new_tokens, logprobs records)",
}
MARKER = "specdec_verdict"
MARKER_LINE = (f"{MARKER}(kind): the verdict a test counts toward ({', '.join(KINDS)}); by default its folder "
               "decides (greedy, law: lossless; perf and specdec_perf tests: performance)")
BY_FOLDER = {"greedy": "lossless", "law": "lossless", "perf": "performance", "engines": "lossless"}
PROPERTY = "specdec_verdict"  # on each report, so xdist workers pass it on
OUTCOMES = ("passed", "failed", "errors", "skipped for capabilities", "skipped otherwise", "pinned findings")


def kind_of(item: pytest.Item) -> str | None:
    """The verdict ``item`` counts toward when it passes, or None for a test of the suite itself."""
    mark = item.get_closest_marker(MARKER)
    if mark is not None:
        if len(mark.args) != 1 or mark.args[0] not in KINDS:
            raise pytest.UsageError(f"{item.nodeid}: {MARKER} takes one of {sorted(KINDS)}, got {mark.args!r}")
        return mark.args[0]
    if item.get_closest_marker("specdec_perf"):
        return "performance"
    parts = Path(item.nodeid.split("::")[0]).parts
    return BY_FOLDER.get(parts[1]) if len(parts) > 2 and parts[0] == "tests" else None


def kind_of_failure(item_kind: str | None, excinfo: pytest.ExceptionInfo[BaseException] | None) -> str | None:
    """A failure's verdict: the protocol's own errors name theirs, whatever the test checked."""
    from .protocol.decoder import ContractError, CountError

    if excinfo is not None and excinfo.errisinstance(CountError):
        return "counters"
    if excinfo is not None and excinfo.errisinstance(ContractError):
        return "protocol"
    return item_kind


class Scorecard:
    """Tallies each verdict's outcomes from the test reports (so it works under pytest-xdist too)."""

    def __init__(self, store: dict[str, Any], decoder: str) -> None:
        self.store = store  # SessionResults.verdicts: written to the JSON as it is
        self.decoder = decoder
        self.tally: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
        self.failed: dict[str, list[str]] = {kind: [] for kind in KINDS}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
        outcome = yield
        report = outcome.get_result()
        kind = kind_of_failure(kind_of(item), call.excinfo) if report.failed else kind_of(item)
        if kind is not None:
            report.user_properties = [*report.user_properties, (PROPERTY, kind)]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        kind = dict(report.user_properties).get(PROPERTY)
        if not kind or not (report.when == "call" or (report.when == "setup" and not report.passed)):
            return
        if hasattr(report, "wasxfail"):
            outcome = "pinned findings" if report.skipped else "failed"
        elif report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            outcome = "skipped for capabilities" if missing_from_reason(reason)[1] else "skipped otherwise"
        else:
            outcome = "errors" if report.when == "setup" and report.failed else report.outcome
        self.tally[kind][outcome] += 1
        if outcome in ("failed", "errors"):
            self.failed[kind].append(report.nodeid)
        self.store.update(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        return {"decoder": self.decoder, **{
            kind: {"verdict": verdict(counts), **{o: counts[o] for o in OUTCOMES}, "failed_tests": self.failed[kind]}
            for kind, counts in self.tally.items()}}

    def lines(self) -> list[str]:
        if not any(self.tally.values()):
            return []
        lines = [f"specdec verdicts on {self.decoder}:"]
        for kind, counts in self.tally.items():
            if not counts:
                continue
            figures = ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if counts[o])
            lines.append(f"  {KINDS[kind]}: {verdict(counts)}" + (f" ({figures})" if figures else ""))
            lines += [f"    failed or error: {nodeid}" for nodeid in self.failed[kind][:10]]
            if len(self.failed[kind]) > 10:
                lines.append(f"    ... and {len(self.failed[kind]) - 10} more")
        return lines


def verdict(counts: Counter[str]) -> str:
    if counts["failed"]:
        return "FAIL"
    if counts["errors"]:
        return "ERROR"  # a fixture failed: the decoder was not judged
    return "PASS" if counts["passed"] else "NOT RUN"
