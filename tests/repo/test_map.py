"""The map of the house is true: every folder of the code and the tests is on it, nothing stale is, and the tests'
folders are packages with nothing collected outside them.

The README's tree ("Where each job lives") and docs/house.md's tree list one folder per line, indented two
spaces per level. A folder added without a line there, or a line left after its folder went, fails here.
"""

from __future__ import annotations

import re

import pytest

from tests.support import ROOT

MAPPED = ("pytest_specdec", "reference_impl", "tests")  # the trees whose every folder the map must name


def tree_folders(text: str) -> set[str]:
    """The folder paths of the first ``text`` block of a page: ``name/`` at two spaces per level."""
    block = re.search(r"```text\n(.*?)```", text, re.S)
    assert block, "no ```text tree block"
    folders, stack = set(), []
    for line in block.group(1).splitlines():
        match = re.match(r"( *)([\w.-]+)/(\s|$)", line)
        if not match:
            continue
        depth = len(match.group(1)) // 2
        stack = [*stack[:depth], match.group(2)]
        folders.add("/".join(stack))
    return folders


def code_folders() -> set[str]:
    """Every folder of the mapped trees whose parent is a package: the packages, and data such as the trained pair."""
    found = set(MAPPED)
    for top in MAPPED:
        for path in (ROOT / top).rglob("*"):
            if path.is_dir() and path.name != "__pycache__" and (path.parent / "__init__.py").exists():
                found.add(path.relative_to(ROOT).as_posix())
    return found


@pytest.mark.parametrize("page", ["README.md", "docs/house.md"])
def test_the_map_names_every_folder_and_no_stale_one(page):
    mapped = {f for f in tree_folders((ROOT / page).read_text()) if f.split("/")[0] in MAPPED}
    actual = code_folders()
    assert actual - mapped == set(), f"{page}: add these folders to the tree"
    assert mapped - actual == set(), f"{page}: these folders are gone; take them off the tree"


def test_the_tree_reader_sees_nesting():
    """Companion: the reader builds paths from indentation, so a folder at the wrong level is a different path."""
    text = "```text\npytest_specdec/   a\n  perf/   b\n    baselines/  c\n  law/  d\ntests/ e\n```\n"
    assert tree_folders(text) == {"pytest_specdec", "pytest_specdec/perf", "pytest_specdec/perf/baselines",
                                  "pytest_specdec/law", "tests"}


def test_tests_live_in_folders_that_are_packages():
    """No test file directly under tests/; every folder a package (no two test modules share a name); no
    ``test_*.py`` in support/, which holds helpers only."""
    assert sorted(p.name for p in ROOT.glob("tests/test_*.py")) == []
    folders = [p for p in (ROOT / "tests").iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert folders and all((p / "__init__.py").exists() for p in folders)
    assert sorted(p.name for p in (ROOT / "tests/support").glob("test_*.py")) == []
