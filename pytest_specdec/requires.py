"""``@pytest.mark.specdec_requires(name, ...)``: a test of capabilities the decoder under test lacks is skipped,
and the run says so, one summary line per capability.

The decoder under test is ``--specdec-impl`` (the reference speculative decoder by default); what it
declares is read from its factory (``protocol.capabilities.declared``). Registered by
``plugin.pytest_configure``. A marker naming an unknown capability is a usage error, so a typo cannot
turn a test into a skip.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from .options import get_options
from .protocol.capabilities import FEATURES, KNOWN, MARKER, declared, missing_from_reason, skip_reason

CLASSIC_MEANING = {
    "greedy": "temperature 0", "temperature": "sampling at temperature > 0", "top_k": "SamplingConfig.top_k",
    "top_p": "SamplingConfig.top_p", "streaming": "on_token called as each token becomes visible",
    "gamma": "a per-call gamma", "eos": "generate(eos_token_id=...) ends the output",
}
MARKER_LINE = (f"{MARKER}(*capabilities): runs only on a decoder under test that declares them; skipped with "
               "one summary line per missing capability otherwise")


class CapabilityGate:
    """Skips the tests whose required capabilities the decoder under test does not declare, and counts every
    capability skip (these, and the calls ``CheckedDecoder`` skips) from the test reports."""

    def __init__(self) -> None:
        self.skipped: Counter[str] = Counter()
        self.who: defaultdict[str, set[str]] = defaultdict(set)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        marked = [(item, [n for mark in item.iter_markers(MARKER) for n in mark.args]) for item in items]
        marked = [(item, names) for item, names in marked if names]
        if not marked:
            return
        from .protocol.decoder import DEFAULT_IMPL, load_factory

        spec = get_options(config).impl or DEFAULT_IMPL
        has = declared(load_factory(spec))
        for item, names in marked:
            unknown = sorted(set(names) - KNOWN)
            if unknown:
                raise pytest.UsageError(f"{item.nodeid}: {MARKER} names unknown capabilities {unknown}; "
                                        f"the known ones are {sorted(KNOWN)}")
            missing = sorted(set(names) - has)
            if missing:
                item.add_marker(pytest.mark.skip(reason=skip_reason(spec, missing)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and isinstance(report.longrepr, tuple) and not hasattr(report, "wasxfail"):
            who, names = missing_from_reason(report.longrepr[2])
            for name in names:
                self.skipped[name] += 1
                self.who[name].add(who)

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
        if hasattr(config, "workerinput"):
            return
        for name, count in sorted(self.skipped.items()):
            meaning = FEATURES.get(name, CLASSIC_MEANING.get(name, ""))
            terminalreporter.write_line(f"specdec: {count} test(s) skipped: {', '.join(sorted(self.who[name]))} "
                                        f"does not declare '{name}' ({meaning})")
