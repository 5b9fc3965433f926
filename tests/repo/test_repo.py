"""The README's two commands are the ones CI runs, the lock pins what they install, and the package metadata
stays honest."""

from __future__ import annotations

import re

import pytest

from tests.support import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+



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


def lock_problems(lock_text: str, requirements: list[str]) -> list[str]:
    """What keeps ``lock_text`` from being a lock of ``requirements``: a line that is not ``name==version``, a
    requirement with no pin, or a pin outside the requirement's range."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    pins, problems = {}, []
    for line in lock_text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip())
        if not match:
            problems.append(f"{line!r} is not an exact pin")
            continue
        pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    for text in requirements:
        requirement = Requirement(text)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name not in pins:
            problems.append(f"{requirement.name} is not pinned")
        elif not requirement.specifier.contains(Version(pins[name]), prereleases=True):
            problems.append(f"{requirement.name}=={pins[name]} is outside {requirement.specifier}")
    return problems


def project_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project["optional-dependencies"]["test"]


def test_the_lock_pins_every_requirement_of_the_readme_install_inside_its_range():
    """Transitive completeness is checked where it can be, in an installed environment: ``python .ci/lock.py
    --check`` (docs/ci.md)."""
    lock = (ROOT / "constraints-cpu.txt").read_text()
    assert lock_problems(lock, project_requirements()) == []
    pins = [line for line in (ROOT / "constraints-cpu.in").read_text().splitlines() if line and line[0] != "#"]
    assert pins and all(pin in lock.splitlines() for pin in pins), "the hand-chosen pins must be in the lock as written"


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda lock: re.sub(r"(?m)^scipy==.*\n", "", lock), "scipy is not pinned"),
        (lambda lock: re.sub(r"(?m)^transformers==.*$", "transformers==4.57.0", lock), "outside"),
        (lambda lock: re.sub(r"(?m)^pytest==.*$", "pytest>=8", lock), "not an exact pin"),
    ],
    ids=["missing", "out-of-range", "a-range-not-a-pin"],
)
def test_the_lock_check_fails_a_broken_lock(edit, problem):
    """Mutants of the committed lock: each is reported."""
    broken = edit((ROOT / "constraints-cpu.txt").read_text())
    assert any(problem in p for p in lock_problems(broken, project_requirements()))


MACHINE_PATH = re.compile(r"(?<![\w.-])/(?:work|tmp|root|home|Users|private|var/folders)/[^\s\"'`)]*")


def machine_paths(text: str) -> list[str]:
    """Absolute paths of a machine in ``text`` (the shared timing lock, a command's fixed path, excepted)."""
    return [p for p in MACHINE_PATH.findall(text) if p != "/tmp/specdec-timing.lock"]


def test_committed_reports_and_measurements_name_no_path_of_the_machine_that_ran_them():
    written = [p for folder in ("docs/example-report", "docs/measurements", "baselines")
               for p in sorted((ROOT / folder).rglob("*")) if p.suffix in (".md", ".json", ".jsonl", ".txt")]
    assert written
    found = {p.relative_to(ROOT).as_posix(): machine_paths(p.read_text()) for p in written}
    assert not {k: v for k, v in found.items() if v}, "write paths relative to the repository"


def test_the_path_check_sees_absolute_paths():
    """Mutants: paths as the writers used to leave them are found; relative ones and the lock are not."""
    assert machine_paths('Baseline: `/work/repo/baselines/a.json` entry') == ["/work/repo/baselines/a.json"]
    assert machine_paths('"baseline_dir": "/tmp/x/baselines"') == ["/tmp/x/baselines"]
    assert machine_paths("`baselines/trained.json`; flock /tmp/specdec-timing.lock pytest") == []
