"""The adapters of three speculative decoders from PyPI (examples/pypi_*.py) are well formed without the packages.

The packages themselves are not installed by the default run: ``tox -e pypi-examples`` installs them and runs
the suite against each factory (docs/adapters.md, "Three decoders from PyPI"). Here, in milliseconds: each
adapter imports its package only when a decoder is built, stays a page long, declares only capabilities the
package offers; the tox env and the pins exist; and the step records an adapter maps become counts that pass
the suite's counter rules, also when the last step is cut short (the companion shows the cut matters).
"""

from __future__ import annotations

import ast
import configparser
import importlib

import pytest

from examples.pypi_common import NO_PASSES, refuse, result
from pytest_specdec.protocol.capabilities import KNOWN, declared, missing_from_reason
from pytest_specdec.protocol.counters import count_violations
from reference_impl.stats import StatsCounter
from tests.support import ROOT

PACKAGES = {"pypi_flashspec": ("flashspec", "0.3.1"), "pypi_seqspecdecod": ("seqspecdecod", "0.1.1"),
            "pypi_specdec": ("specdec", "0.2.0")}
FACTORIES = {"pypi_flashspec": ["factory", "default_factory"], "pypi_specdec": ["factory"],
             "pypi_seqspecdecod": ["factory", "naive_hsd_factory", "capped_hsd_factory"]}
LACKED_BY_ALL = {"top_k", "top_p", "streaming"}  # none of the three packages offers these (read from their source)


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_an_adapter_imports_its_package_only_when_it_builds_a_decoder(name):
    tree = ast.parse((ROOT / "examples" / f"{name}.py").read_text())
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)
           for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert PACKAGES[name][0] not in top, f"examples/{name}.py imports {PACKAGES[name][0]} at module level"
    code = [n for n in ast.walk(tree) if isinstance(n, ast.stmt) and n is not tree.body[0]]
    assert max(n.end_lineno for n in code) - tree.body[0].end_lineno <= 60, "an adapter maps; keep it a page"


@pytest.mark.parametrize(("name", "factory"), [(n, f) for n, fs in sorted(FACTORIES.items()) for f in fs])
def test_a_factory_declares_only_what_its_package_offers(name, factory):
    has = declared(getattr(importlib.import_module(f"examples.{name}"), factory))
    assert has <= KNOWN and not has & LACKED_BY_ALL, f"examples.{name}:{factory} claims {sorted(has & LACKED_BY_ALL)}"


def test_the_tox_env_installs_the_pinned_packages():
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    assert "examples/pypi-requirements.txt" in tox["testenv:pypi-examples"]["deps"]
    pins = (ROOT / "examples" / "pypi-requirements.txt").read_text()
    for pin in ("flashspec==0.3.1", "sequential-speculative-decoding==0.1.1", "specdec==0.2.0"):
        assert pin in pins.splitlines()


def test_step_records_become_counts_that_pass_the_counter_rules():
    """Two full steps (4 accepted + bonus; 1 accepted + correction), then one cut to 1 of its 5 tokens."""
    tokens = list(range(8))
    stats = result(tokens, [(4, 4, 5), (4, 1, 2), (4, 4, 5)]).stats
    assert (stats.steps, stats.accepted, stats.rejections, stats.gammas) == (3, 6, 1, (4, 4, 4))
    assert count_violations(stats, tokens, 4) == []


def test_companion_a_cut_step_counted_whole_breaks_the_rules():
    counter = StatsCounter()
    for gamma, accepted, rejected in [(4, 4, False), (4, 1, True), (4, 4, False)]:
        counter.record_step(gamma, accepted, rejected)  # the last step's 4 accepted, though only 1 token was kept
    counter.new_tokens = 8
    stats = counter.freeze(NO_PASSES, NO_PASSES)
    assert count_violations(stats, list(range(8)), 4) != []


def test_a_refused_setting_is_a_counted_capability_skip():
    with pytest.raises(pytest.skip.Exception) as skipped:
        refuse("examples.pypi_specdec:factory", "temperature", "temperature 1 only")
    assert missing_from_reason(str(skipped.value)) == ("examples.pypi_specdec:factory (temperature 1 only)",
                                                       ["temperature"])
