"""The README's two commands are the ones CI runs, and the package metadata stays honest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "the README must open with a bash block of the set-up and test commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands_and_ci_runs_them():
    commands = readme_commands()
    assert len(commands) == 2
    lines = (ROOT / ".ci/run").read_text().splitlines()
    ci = [line for line in lines if line and not line.startswith(("#", "set", "cd"))]
    assert ci == commands


def test_cpu_torch_is_pinned_only_in_the_constraints_file():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_requirement = next(dep for dep in project["dependencies"] if dep.startswith("torch"))
    assert "==" not in torch_requirement, "the package's own torch requirement must be a range GPU users can meet"
    assert re.search(r"^torch==\d", (ROOT / "constraints-cpu.txt").read_text(), re.M)


def test_plugin_is_registered_under_pytest11():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"specdec": "pytest_specdec.plugin"}
