"""Hypothesis profiles, chosen by HYPOTHESIS_PROFILE (default: ci where the CI variable is set, else dev)."""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

pytest_plugins = ("pytester",)


@pytest.fixture(scope="module")
def single_torch_thread():
    """For modules of tiny models (``pytestmark = pytest.mark.usefixtures("single_torch_thread")``): they run far
    faster on one thread, above all when other jobs share the CPU."""
    from pytest_specdec.perf.timing import torch_threads

    with torch_threads(1):
        yield
