"""The layering of the code: ``reference_impl`` stands alone, below ``pytest_specdec``, whose packages import one way.

``reference_impl`` (the decoders, stats, model zoo and prompt set) must import nothing from
``pytest_specdec`` (the plugin), at module level or inside a function, so the reference decoder
and its models can be used, built and measured without the test suite. Inside the plugin, each
package by job (``protocol``, ``perf``, ``law``, ``report``, ``adapters``, ``engines``) imports only
the packages its rule allows (``ALLOWED``, written out in docs/house.md and in each package's
``__init__``), and none of them imports the plugin core. Checked on the source with ``ast``
(relative imports resolved), so a lazy import inside a rarely called function is caught as surely
as a top-level one. Also here: module sizes, and the trained pair's build script, split by job,
still renders its committed README and parses its command line.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from tests.support import ROOT

UPPER = "pytest_specdec"


def imports_of(source: str, filename: str = "<source>", module: str | None = None,
               is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every import in ``source``, including ``importlib.import_module("...")`` and
    ``__import__("...")`` with a literal name. With ``module`` (the dotted name of the file), relative
    imports are resolved too; ``from X import name`` gives ``X.name`` (the name may be a module)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                base = node.module
            elif node.level and module:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                continue
            found += [(node.lineno, base if alias.name == "*" else f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def upward_imports(folder: Path) -> list[str]:
    """``path:line module`` for every import of ``pytest_specdec`` by a module under ``folder``."""
    hits = []
    for path in sorted(folder.rglob("*.py")):
        for line, module in imports_of(path.read_text(encoding="utf-8"), str(path)):
            if module == UPPER or module.startswith(UPPER + "."):
                hits.append(f"{path.relative_to(ROOT).as_posix()}:{line} {module}")
    return hits


def test_reference_impl_imports_nothing_from_the_plugin():
    hits = upward_imports(ROOT / "reference_impl")
    assert not hits, (
        "reference_impl must not import pytest_specdec (move what it needs down into reference_impl and let "
        f"pytest_specdec import it from there): {hits}"
    )


@pytest.mark.parametrize(
    "source",
    [
        "from pytest_specdec.prompts import prompt_ids\n",
        "def f():\n    import pytest_specdec.report.summary as r\n    return r\n",
        "import importlib\nmodule = importlib.import_module('pytest_specdec.options')\n",
        "plugin = __import__('pytest_specdec')\n",
    ],
    ids=["top-level", "inside-a-function", "import_module", "__import__"],
)
def test_the_check_sees_every_way_of_importing_upward(tmp_path, source):
    """Mutants: each way of reaching for the plugin, planted in a copy of a reference_impl module, is reported."""
    (tmp_path / "module.py").write_text((ROOT / "reference_impl/stats.py").read_text() + "\n" + source)
    hits = [module for _, module in imports_of((tmp_path / "module.py").read_text())
            if module.startswith(UPPER)]
    assert hits, f"the planted import was not seen: {source!r}"


# What each package of the plugin may import, besides itself, reference_impl and pytest_specdec.options.
# The modules directly in pytest_specdec/ (hooks, fixtures, loading, findings: the core) may import anything.
ALLOWED: dict[str, set[str]] = {
    "protocol": set(),
    "perf": {"protocol"},
    "law": {"protocol", "perf"},
    "report": {"perf"},
    "adapters": {"protocol"},
    "engines": {"protocol", "perf"},
}
SHARED = "options"  # option names and the parsed record: imports nothing of the package, anyone may import it
CORE = "the core"


def unit_of(module: str) -> str:
    """The package of ``pytest_specdec`` a dotted name belongs to: one of ALLOWED, SHARED, or CORE."""
    parts = module.split(".")
    if len(parts) > 1 and (parts[1] in ALLOWED or parts[1] == SHARED):
        return parts[1]
    return CORE


def module_name(path: Path) -> tuple[str, bool]:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return (".".join(parts[:-1]), True) if parts[-1] == "__init__" else (".".join(parts), False)


def layer_violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """``line imported (rule)`` for each import by ``module`` that its package's rule forbids."""
    unit, found = unit_of(module), []
    if unit == CORE:
        return found
    allowed = set() if unit == SHARED else {unit, SHARED, *ALLOWED[unit]}
    for line, imported in imports_of(source, module, module, is_package):
        if imported != UPPER and not imported.startswith(UPPER + "."):
            continue
        target = unit_of(imported)
        if target not in allowed:
            rule = sorted(allowed - {unit}) or "nothing of the package"
            found.append(f"{line} {imported} ({unit} may import {rule})")
    return found


def plugin_violations() -> list[str]:
    hits = []
    for path in sorted((ROOT / UPPER).rglob("*.py")):
        module, is_package = module_name(path)
        hits += [f"{path.relative_to(ROOT).as_posix()}:{v}"
                 for v in layer_violations(path.read_text(encoding="utf-8"), module, is_package)]
    return hits


def test_each_package_imports_only_what_its_rule_allows():
    assert plugin_violations() == [], "move the code down, or change the rule here and in docs/house.md"


def test_the_rules_form_no_cycle():
    order: list[str] = []
    while len(order) < len(ALLOWED):
        ready = [unit for unit, needs in ALLOWED.items() if unit not in order and needs <= set(order)]
        assert ready, f"a cycle among {sorted(set(ALLOWED) - set(order))}"
        order += sorted(ready)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("pytest_specdec.perf.timing", "from ..report import summary\n"),
        ("pytest_specdec.perf.timing", "def f():\n    from ..fixtures import specdec_pair\n    return specdec_pair\n"),
        ("pytest_specdec.law.stats", "from pytest_specdec.engines.server import EngineServer\n"),
        ("pytest_specdec.protocol.counters", "import importlib\nm = importlib.import_module('pytest_specdec.perf')\n"),
        ("pytest_specdec.report.plot", "from .. import plugin\n"),
        ("pytest_specdec.options", "from .protocol import load_factory\n"),
        ("pytest_specdec.law", "from .. import loading\n"),
    ],
    ids=["relative", "inside-a-function", "absolute", "import_module", "the-core", "options-stays-a-leaf",
         "package-init"],
)
def test_the_layering_check_sees_every_forbidden_import(module, source):
    """Mutants: each forbidden import, planted in a module of a package, is reported."""
    assert layer_violations(source, module, is_package=module == "pytest_specdec.law"), source


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("pytest_specdec.perf.ab", "from ..protocol.decoder import load_factory\nfrom .. import options as opts\n"),
        ("pytest_specdec.law.sample_pool", "from ..perf.timing import torch_threads\nfrom .stats import pool_bins\n"),
        ("pytest_specdec.plugin", "from .engines import plugin as engine_plugin\nfrom .law import stats\n"),
    ],
    ids=["perf-imports-protocol", "law-imports-perf", "the-core-imports-anything"],
)
def test_the_layering_check_lets_allowed_imports_through(module, source):
    assert layer_violations(source, module) == []


def test_the_walk_reads_every_package(monkeypatch):
    """Companion: with a rule tightened, the walk over the real tree reports the real imports it now forbids."""
    monkeypatch.setitem(ALLOWED, "report", set())
    monkeypatch.setitem(ALLOWED, "law", {"protocol"})
    hits = " ".join(plugin_violations())
    assert "pytest_specdec/report/summary.py" in hits and "pytest_specdec/law/sample_pool.py" in hits


def test_each_package_states_its_rule():
    """Each package's ``__init__`` docstring has a ``May import:`` line naming exactly what ALLOWED allows."""
    for unit, allowed in ALLOWED.items():
        doc = ast.get_docstring(ast.parse((ROOT / UPPER / unit / "__init__.py").read_text())) or ""
        line = re.search(r"May import: (.*)", doc)
        assert line, f"pytest_specdec/{unit}/__init__.py: no 'May import:' line"
        named = set(re.findall(r"``([\w.]+)``", line.group(1))) - {"reference_impl", f"{UPPER}.{SHARED}"}
        assert named == allowed, f"pytest_specdec/{unit}: the docstring says {sorted(named)}, the rule says {allowed}"


def test_the_prompt_set_lives_in_reference_impl_and_the_plugin_reexports_it():
    from pytest_specdec import prompts as plugin_prompts
    from reference_impl import prompts

    assert plugin_prompts.STANDARD_PROMPTS is prompts.STANDARD_PROMPTS
    assert plugin_prompts.prompt_ids is prompts.prompt_ids


def test_the_split_build_script_renders_the_committed_readme():
    """The committed README.md of the trained pair is the rendering of its metrics.json plus hand-written notes."""
    from reference_impl.models.build_trained.readme import render_readme

    folder = ROOT / "reference_impl/models/trained"
    rendered = render_readme(json.loads((folder / "metrics.json").read_text()))
    assert (folder / "README.md").read_text().startswith(rendered)


def test_the_build_command_line_keeps_its_defaults():
    from reference_impl.models.build_trained import parse_args

    args = parse_args(["--out", "somewhere"])
    assert (str(args.out), args.target_steps, args.draft_steps, args.batch_size) == ("somewhere", 700, 360, 8)


MAX_MODULE_LINES = 400  # DESIGN.md: split a module by job before it passes this


def oversized_modules(folders: tuple[str, ...] = ("pytest_specdec", "reference_impl"), limit: int = MAX_MODULE_LINES):
    """``path: lines`` of every module of the packages longer than ``limit`` lines."""
    found = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > limit:
                found.append(f"{path.relative_to(ROOT)}: {lines}")
    return found


def test_no_package_module_passes_the_size_limit():
    assert oversized_modules() == [], f"split these by job (limit {MAX_MODULE_LINES} lines)"


def test_the_size_check_names_an_oversized_module():
    """Companion: at a limit every real module passes, the check lists them."""
    assert "pytest_specdec/protocol/counters.py" in " ".join(oversized_modules(limit=10))
