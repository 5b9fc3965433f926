"""The batched entry point in the suite: fixtures that build batched decoders, and the summary line.

``specdec_batched_factory`` builds the decoder under test (``--specdec-impl``; by default the
batched reference) wrapped in ``CheckedBatchedDecoder``. A decoder without ``generate_batch``
skips the test that asked for it, with a reason naming the decoder, and the terminal summary
says whether the entry point was present and how many batched tests were skipped for lack of
it, so a decoder is never silently left untested in batches. Tests that use these fixtures
carry the ``specdec_batched`` marker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .options import get_options
from .protocol.decoder import (
    BATCHED_BASELINE_IMPL,
    DEFAULT_BATCHED_IMPL,
    CheckedBatchedDecoder,
    has_batched_entry_point,
    load_factory,
)

MARKER = "specdec_batched"
ABSENT = "batched entry point absent"  # the start of every skip reason for a decoder without generate_batch


@pytest.fixture(scope="session")
def specdec_batched_factory(pytestconfig: pytest.Config) -> Callable[..., CheckedBatchedDecoder]:
    """``factory(target, draft, **options)`` -> the decoder under test's batched entry point, checked;
    skips the calling test (counted in the summary) when the decoder has no ``generate_batch``."""
    spec = get_options(pytestconfig).impl or DEFAULT_BATCHED_IMPL
    factory = load_factory(spec)

    def build(target: Any, draft: Any, **options: Any) -> CheckedBatchedDecoder:
        decoder = factory(target, draft, **options)
        if not has_batched_entry_point(decoder):
            pytest.skip(f"{ABSENT}: {spec} returns {type(decoder).__name__}, which has no generate_batch(prompts, "
                        "*, max_new_tokens, sampling, ...) (see the README, 'The decoder protocol')")
        return CheckedBatchedDecoder(decoder, spec)

    return build


@pytest.fixture(scope="session")
def specdec_batched_baseline_factory() -> Callable[..., CheckedBatchedDecoder]:
    """``factory(target, draft=None)`` -> the batched autoregressive baseline, checked."""
    factory = load_factory(BATCHED_BASELINE_IMPL)
    return lambda target, draft=None, **options: CheckedBatchedDecoder(factory(target, draft, **options),
                                                                       BATCHED_BASELINE_IMPL)


class BatchedTally:
    """Counts batched tests that ran and those skipped for a missing entry point; one summary line."""

    def __init__(self) -> None:
        self.ran = 0
        self.skipped = 0

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if MARKER not in report.keywords:
            return
        if report.skipped and ABSENT in str(report.longrepr):
            self.skipped += 1
        elif report.when == "call":
            self.ran += 1

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
        if hasattr(config, "workerinput") or not (self.ran or self.skipped):
            return
        presence = "absent" if self.skipped and not self.ran else "present"
        spec = get_options(config).impl or DEFAULT_BATCHED_IMPL
        terminalreporter.write_line(f"specdec: batched entry point ({spec}): {presence}; {self.ran} batched test(s) "
                                    f"ran, {self.skipped} skipped")
