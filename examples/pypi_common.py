"""What the three PyPI adapters (examples/pypi_*.py) share: step records to DecodeStats, seeds, refusals.

An adapter maps a package onto the decoder protocol; it never fixes or emulates what the package lacks.
So the counts here come only from what a package reports per step (tokens proposed, accepted, emitted);
pass counts it does not report stay 0 ("unknown") and ``extra`` says so; a setting the package does
not offer is refused through the capability skip, never answered with something else.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace

from pytest_specdec.adapters.hf_assisted import seed_from, seeded_global_rng  # noqa: F401  (re-exported)
from pytest_specdec.protocol.capabilities import skip_reason
from reference_impl.sampling import GREEDY  # noqa: F401  (re-exported: the protocol's default sampling)
from reference_impl.stats import DecodeResult, StatsCounter

PASSES_UNKNOWN = {"pass_counts_unknown": 1.0}  # the package reports no forward or prefill counts
NO_PASSES = SimpleNamespace(forwards=0, prefills=0, tokens_fed=0)


def cut(tokens: Iterable[int], max_new_tokens: int, eos_token_id: int | None) -> list[int]:
    """The protocol's output from a package's: at most max_new_tokens, ending at the first EOS (kept)."""
    out: list[int] = []
    for token in tokens:
        if len(out) == max_new_tokens or (out and out[-1] == eos_token_id):
            break
        out.append(int(token))
    return out


def result(tokens: list[int], steps: Iterable[tuple[int, int, int]], **extra: float) -> DecodeResult:
    """DecodeResult from the package's per-step (proposed, accepted, tokens appended) records.

    The output was cut to ``tokens``: a step keeps what survives the cut, and its tokens count as accepted
    drafts, then a correction (a rejection) or the bonus, only as far as they were kept.
    """
    counter, left = StatsCounter(), len(tokens)
    for proposed, accepted, appended in steps:
        kept, left = min(appended, left), left - min(appended, left)
        if kept == 0:
            break
        counter.record_step(proposed, min(accepted, kept), rejected=accepted < proposed and kept > accepted)
    counter.new_tokens = len(tokens)
    return DecodeResult(tokens=tokens, stats=counter.freeze(NO_PASSES, NO_PASSES, **PASSES_UNKNOWN, **extra))


def refuse(who: str, capability: str, why: str) -> None:
    """Skip the calling test: the package does not offer this setting (counted in the capability summary)."""
    import pytest

    pytest.skip(skip_reason(f"{who} ({why})", [capability]))
