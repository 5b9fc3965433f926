"""The layering of the code: ``reference_impl`` stands alone, below ``pytest_specdec``.

``reference_impl`` (the decoders, stats, model zoo and prompt set) must import nothing from
``pytest_specdec`` (the plugin), at module level or inside a function, so the reference decoder
and its models can be used, built and measured without the test suite. Checked on the source
with ``ast``, so a lazy import inside a rarely called function is caught as surely as a top-level
one. Also here: the trained pair's build script, split by job, still renders its committed README
and parses its command line.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tests.support import ROOT

UPPER = "pytest_specdec"


def imports_of(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, module) of every absolute import in ``source``, including ``importlib.import_module("...")`` and
    ``__import__("...")`` with a literal name."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
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
