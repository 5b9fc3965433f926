"""The flat layout's paths still work after the regrouping by job (docs/house.md, "Public paths kept").

A user's test or CI script written against 0.1 imports ``pytest_specdec.numerics`` or runs ``python -m
pytest_specdec.engine_server build``. Each old path must give the module now at its new path (the same
object, so classes and state are shared), warn with the new path, and run under ``python -m``; the three
old modules that became packages (``protocol``, ``perf``, ``report``) must still offer every public name.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

from pytest_specdec.moved import MOVED

# every module of the flat layout, by its path there
FLAT_LAYOUT = (
    "ab", "acceptance", "adapters", "adapters.engine_http", "adapters.hf_assisted", "adapters.llama_cpp",
    "adapters.prompt_lookup", "base_import", "baselines", "batched", "batched_stats", "benchmark_json", "counters",
    "engine_perf", "engine_plugin", "engine_server", "environment", "findings", "fingerprint", "fixtures", "loading",
    "markdown_report", "numerics", "options", "perf", "perf_batched", "pit", "plot", "plugin", "prompts", "protocol",
    "report", "sample_pool", "sampling_law", "stats", "store", "timing", "verdicts",
)
# the public names of the flat modules whose paths are packages now
BECAME_PACKAGES = {
    "protocol": ("BASELINE_IMPL", "BATCHED_BASELINE_IMPL", "DEFAULT_BATCHED_IMPL", "DEFAULT_IMPL", "BatchedDecoder",
                 "CheckedBatchedDecoder", "CheckedDecoder", "ContractError", "CountError", "Decoder",
                 "DecoderFactory", "has_batched_entry_point", "load_factory", "make_decoder"),
    "perf": ("PerfRecord", "PerfSamples", "measure_interleaved"),
    "report": ("SessionResults", "atomic_write_text", "comparison_lines", "describe_change", "per_request_lines",
               "relative_to", "summary_lines", "write_json"),
}


@pytest.mark.parametrize("old", FLAT_LAYOUT)
def test_every_module_of_the_flat_layout_still_imports(old):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert importlib.import_module(f"pytest_specdec.{old}")


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_an_old_path_gives_the_module_at_its_new_path_and_says_where(monkeypatch, old, new):
    monkeypatch.delitem(sys.modules, old, raising=False)  # import it afresh, as a user's first import does
    with pytest.warns(DeprecationWarning, match=f"{old} has moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert module.__name__ == new and module.__spec__.name == new  # the module's own identity is untouched


@pytest.mark.parametrize("old", sorted(BECAME_PACKAGES))
def test_old_modules_that_became_packages_keep_their_names(old):
    package = importlib.import_module(f"pytest_specdec.{old}")
    missing = [name for name in BECAME_PACKAGES[old] if not hasattr(package, name)]
    assert missing == [], f"pytest_specdec.{old} lost {missing}"


def test_the_old_engine_build_command_runs_the_new_module():
    """``python -m`` through an old path runs the new module's code (here ``version``: nothing is built)."""
    def run(module: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", module, "version"], capture_output=True, text=True, timeout=120)

    old, new = run("pytest_specdec.engine_server"), run("pytest_specdec.engines.server")
    assert old.returncode == new.returncode == 0, old.stderr + new.stderr
    assert old.stdout == new.stdout and old.stdout.strip()


def test_the_identity_check_sees_a_loader_that_leaves_the_alias_spec(monkeypatch):
    """Companion: an alias loader that does not put the module's own spec back (the import system sets the
    alias's) leaves a module that calls itself by the old name, which the check above rejects."""
    from pytest_specdec import moved

    old, new = "pytest_specdec.pit", "pytest_specdec.law.pit"
    module = importlib.import_module(new)
    monkeypatch.setattr(module, "__spec__", module.__spec__)  # restored after the test
    monkeypatch.setattr(moved._AliasLoader, "exec_module", lambda self, module: None)  # BUG: spec not restored
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning):
        aliased = importlib.import_module(old)
    assert aliased is module and aliased.__spec__.name == old  # what the identity assertion fails on
    monkeypatch.delitem(sys.modules, old)
