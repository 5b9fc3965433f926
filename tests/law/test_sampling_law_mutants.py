"""The sampling-law tests reject every sampling bug class: each planted in a copy of the reference and
run through ``tests/law/test_sampling_law.py``'s tests (same pair, plan, seed and levels) by the same path a
user's decoder takes (``DecoderSource``: ``module:factory`` rebuilt in the worker processes).

A mutant runs in the setting where its bug exists, on ``fraction`` of that setting's default
calls: a bias the test detects on a fraction of its sample it detects at least as surely on all
of it (power grows with the sample), so gross biases cost a second here. Detection rates over 20
seeds at the full default size, and the biases below the default run's reach, are measured by
``python -m tests.support.sampling_law_sweep catalogue`` (docs/sampling-law.md, "Bug catalogue").
"""

from __future__ import annotations

import pytest

from tests.support import mutants

from .test_sampling_law import calls_ci, detects, draw, source

# mutant class (tests.support.mutants) -> (setting where its bug exists, fraction of the setting's calls)
DECODER_MUTANTS = {
    "GreedyDraftDecoder": ("T1", 1 / 8),
    "RawLogitDraftProbsDecoder": ("top_k", 1 / 2),
    "UniformZeroDecoder": ("T1", 1 / 8),
    "ResidualFromTargetDecoder": ("T1", 1 / 8),
    "ResidualUnnormalisedDecoder": ("T1", 1 / 8),
    "BonusFromDraftDecoder": ("T1", 1 / 8),
    "TargetUnwarpedDecoder": ("low_T", 1 / 8),
    "NoRollbackDecoder": ("T1_context2", 1 / 4),
    "RollbackOffByOneDecoder": ("T1_context2", 1 / 4),
    "ReseededPerDrawDecoder": ("T1", 1 / 8),
    "OneHotDraftDecoder": ("T1", 1 / 8),
}
assert set(DECODER_MUTANTS) <= {cls.__name__ for cls in mutants.DECODER_MUTANTS.values()}

# the small biases real engines shipped (tests/support/subtle_mutants.py; their TVs:
# docs/measurements/subtle-mutant-tv.json)
SUBTLE_MUTANTS = {
    "SharedNoiseDecoder": ("top_k5_top_p0.8", 1 / 4),  # vLLM PR #54282: TV 0.024-0.058 by setting
    "SharedUniformDecoder": ("T1", 1 / 4),
    "AcceptShiftedDecoder": ("low_T", 1),  # min(1, ratio + 0.02): TV 0.016 at T = 0.6; 19/20 seeds at full size
    "WarperOrderDecoder": ("top_k5_top_p0.8", 1 / 8),  # SGLang PR #36173
    "TopPBoundaryDecoder": ("top_p", 1 / 8),
    "DraftSampledUnwarpedDecoder": ("low_T", 1 / 8),
}


def mutant_detected(module: str, name: str, setting: str, fraction: float) -> tuple[bool, str]:
    sample = draw(source(f"{module}:{name}", setting), setting, calls=max(1, round(fraction * calls_ci(setting))))
    return detects(sample, setting)


@pytest.mark.parametrize("name", DECODER_MUTANTS)
def test_sampling_law_rejects(name):
    setting, fraction = DECODER_MUTANTS[name]
    rejected, detail = mutant_detected("tests.support.mutants", name, setting, fraction)
    assert rejected, f"{name} not detected under {setting}:\n{detail}"


@pytest.mark.parametrize("name", SUBTLE_MUTANTS)
def test_sampling_law_rejects_subtle_bias(name):
    setting, fraction = SUBTLE_MUTANTS[name]
    rejected, detail = mutant_detected("tests.support.subtle_mutants", name, setting, fraction)
    assert rejected, f"{name} not detected under {setting}:\n{detail}"
