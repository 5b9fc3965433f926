"""What a run reports: the plugin owns all output, written once at the end of the session.

- ``summary``: ``SessionResults`` (what tests record), the terminal summary table and the JSON file.
- ``markdown``: the markdown report written to ``--specdec-report-dir``, with ``plot`` (latency
  against output length, acceptance by position and per request) and ``benchmark_json``
  (pytest-benchmark's layout, for its tools and dashboards).

May import: ``perf``, ``reference_impl`` and ``pytest_specdec.options``.
The names of ``summary`` are re-exported here, where the flat layout had them (``pytest_specdec.report``).
"""

from .summary import (
    SessionResults,
    atomic_write_text,
    comparison_lines,
    describe_change,
    per_request_lines,
    relative_to,
    summary_lines,
    write_json,
)

__all__ = [
    "SessionResults", "atomic_write_text", "comparison_lines", "describe_change", "per_request_lines",
    "relative_to", "summary_lines", "write_json",
]
