"""Module paths of the flat layout, still importable: each module moved into its job's package.

Up to 0.1 every module sat directly under ``pytest_specdec``. A user's test that imports one by its
old path (``from pytest_specdec.numerics import judge_greedy``), or a CI script that runs
``python -m pytest_specdec.engine_server build``, keeps working: the old name gives the very module
object now at the new path (one module, not a copy, so its classes and state are shared), with a
``DeprecationWarning`` naming the new path. The old names ``perf``, ``report`` and ``protocol`` are
now packages that re-export the old modules' names themselves.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import CodeType, ModuleType

MOVED = {f"pytest_specdec.{old}": f"pytest_specdec.{new}" for old, new in {
    "ab": "perf.ab",
    "acceptance": "perf.acceptance",
    "base_import": "protocol.base_import",
    "baselines": "perf.baselines",
    "batched_stats": "law.batched",
    "benchmark_json": "report.benchmark_json",
    "counters": "protocol.counters",
    "engine_perf": "engines.perf",
    "engine_plugin": "engines.plugin",
    "engine_server": "engines.server",
    "environment": "perf.environment",
    "fingerprint": "perf.baselines.fingerprint",
    "markdown_report": "report.markdown",
    "numerics": "law.numerics",
    "perf_batched": "perf.batched",
    "pit": "law.pit",
    "plot": "report.plot",
    "sample_pool": "law.sample_pool",
    "sampling_law": "law.sampling_law",
    "stats": "law.stats",
    "store": "perf.baselines.store",
    "timing": "perf.timing",
    "verdicts": "perf.baselines.verdicts",
    "adapters.engine_http": "engines.http",
    "adapters.llama_cpp": "engines.llama_cpp",
}.items()}


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} has moved to {new}; import it from there", DeprecationWarning, stacklevel=3)


class _AliasLoader(importlib.abc.Loader):
    """Loads an old name as the module at its new path; ``get_code`` serves ``python -m OLD``."""

    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        _warn(spec.name, self.new)
        module = importlib.import_module(self.new)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import system set the alias's spec on the shared module: put it back

    def get_code(self, fullname: str) -> CodeType | None:
        _warn(fullname, self.new)
        spec = importlib.util.find_spec(self.new)
        return spec.loader.get_code(self.new)  # type: ignore[union-attr]


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        origin = importlib.util.find_spec(new).origin  # type: ignore[union-attr]  # python -m sets argv[0] to it
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new), origin=origin)


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (``pytest_specdec/__init__.py`` calls this)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
