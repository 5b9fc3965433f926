"""``@pytest.mark.specdec_requires(name, ...)``: a test of capabilities the decoder under test lacks is skipped,
and the run says so, one summary line per capability.

The decoder under test is ``--specdec-impl`` (the reference speculative decoder by default); what it
declares is read from its factory (``protocol.capabilities.declared``). Registered by
``plugin.pytest_configure``. A marker naming an unknown capability is a usage error, so a typo cannot
turn a test into a skip.
"""

from __future__ import annotations

from collections import Counter

import pytest

from .options import get_options
from .protocol.capabilities import FEATURES, KNOWN, MARKER, declared

MARKER_LINE = (f"{MARKER}(*capabilities): runs only on a decoder under test that declares them; skipped with "
               "one summary line per missing capability otherwise")


class CapabilityGate:
    """Skips the tests whose required capabilities the decoder under test does not declare, and counts them."""

    def __init__(self) -> None:
        self.skipped: Counter[str] = Counter()
        self.spec = ""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        marked = [(item, [n for mark in item.iter_markers(MARKER) for n in mark.args]) for item in items]
        marked = [(item, names) for item, names in marked if names]
        if not marked:
            return
        from .protocol.decoder import DEFAULT_IMPL, load_factory

        self.spec = get_options(config).impl or DEFAULT_IMPL
        has = declared(load_factory(self.spec))
        for item, names in marked:
            unknown = sorted(set(names) - KNOWN)
            if unknown:
                raise pytest.UsageError(f"{item.nodeid}: {MARKER} names unknown capabilities {unknown}; "
                                        f"the known ones are {sorted(KNOWN)}")
            missing = sorted(set(names) - has)
            if missing:
                item.add_marker(pytest.mark.skip(reason=f"{self.spec} does not declare {', '.join(missing)}"))
                self.skipped.update(missing)

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
        if hasattr(config, "workerinput"):
            return
        for name, count in sorted(self.skipped.items()):
            meaning = FEATURES.get(name, "a classic request feature")
            terminalreporter.write_line(f"specdec: {count} test(s) skipped: {self.spec} does not declare "
                                        f"'{name}' ({meaning})")
