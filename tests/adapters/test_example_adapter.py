"""The minimal decoder of docs/adapters.md (examples/minimal_decoder.py) meets the protocol.

Directly: its greedy output is the target's and its stats describe what it did. Through the
plugin: ``--specdec-impl examples.minimal_decoder:factory`` in a pytester run whose tests use
``specdec_factory``, as a user's own test file would.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from reference_impl import AutoregressiveDecoder, SamplingConfig
from reference_impl.models.tiny import ARCHITECTURES
from tests.support import ROOT
from tests.support.pairs import cached_pair

EXAMPLE = ROOT / "examples" / "minimal_decoder.py"
PROMPT = torch.tensor([[3, 17, 42, 8, 5]])


def load_example():
    spec = importlib.util.spec_from_file_location("minimal_decoder", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def example():
    return load_example()


def test_the_example_is_minimal():
    code = [line for line in EXAMPLE.read_text().splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(code) <= 80, f"the minimal example has grown to {len(code)} lines; keep it a page long"


@pytest.mark.parametrize("relation", ["identical", "partial", "unrelated"])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_example_greedy_equals_target_greedy(example, arch, relation):
    target, draft = cached_pair(arch, relation)
    expected = AutoregressiveDecoder(target).generate(PROMPT, max_new_tokens=20).tokens
    result = example.factory(target, draft).generate(PROMPT, max_new_tokens=20, sampling=SamplingConfig(), gamma=3)
    assert result.tokens == expected
    assert result.stats.forwards_before_first_token == 1
    assert result.stats.new_tokens == 20 == result.stats.accepted + result.stats.target_forwards


def test_example_identical_draft_accepts_everything_when_sampling(example):
    target, draft = cached_pair("llama", "identical")
    generator = torch.Generator().manual_seed(0)
    result = example.factory(target, draft).generate(
        PROMPT, max_new_tokens=17, sampling=SamplingConfig(temperature=0.7, top_p=0.9), gamma=3, generator=generator
    )
    assert result.stats.alpha_estimate == 1.0
    assert result.stats.gammas == (3, 3, 3, 3)  # the prefill's token, then 4 steps of gamma + 1 = 4


def test_example_eos_and_max_new_tokens(example):
    target, draft = cached_pair("llama", "partial")
    full = AutoregressiveDecoder(target).generate(PROMPT, max_new_tokens=20).tokens
    eos_index = next(i for i in range(2, 20) if full[i] not in full[:i])
    decoder = example.factory(target, draft)
    assert decoder.generate(PROMPT, max_new_tokens=20, eos_token_id=full[eos_index]).tokens == full[: eos_index + 1]
    assert decoder.generate(PROMPT, max_new_tokens=0).tokens == []


USER_TESTS = """
import torch
from reference_impl import AutoregressiveDecoder, SamplingConfig
from reference_impl.models.tiny import tiny_pair

PROMPT = torch.tensor([[3, 17, 42, 8, 5]])

def test_greedy_is_lossless(specdec_factory):
    target, draft = tiny_pair("gpt2", "partial")
    expected = AutoregressiveDecoder(target).generate(PROMPT, max_new_tokens=20).tokens
    decoder = specdec_factory(target, draft)
    assert decoder.name == "MinimalSpeculativeDecoder"
    assert decoder.generate(PROMPT, max_new_tokens=20, sampling=SamplingConfig(), gamma=2).tokens == expected

def test_contract_is_checked(specdec_factory):
    target, draft = tiny_pair("gpt2", "partial")
    result = specdec_factory(target, draft).generate(PROMPT, max_new_tokens=5)
    assert len(result.tokens) == 5 and result.stats.new_tokens == 5
"""


def test_example_runs_through_the_plugin(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny models: one thread is fastest
    pytester.makepyfile(minimal_decoder=EXAMPLE.read_text(), test_user=USER_TESTS)
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess("--specdec-impl", "minimal_decoder:factory", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_a_broken_example_fails_through_the_plugin(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """The companion: the same user tests catch a decoder that also emits the rejected draft token."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    broken = EXAMPLE.read_text().replace("torch.cat(drafts)[: int(n)]", "torch.cat(drafts)[: int(n) + 1]")
    assert broken != EXAMPLE.read_text()
    pytester.makepyfile(broken_decoder=broken, test_user=USER_TESTS)
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess("--specdec-impl", "broken_decoder:factory", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=1)


def test_the_docs_show_the_example_that_runs():
    """docs/adapters.md quotes the example's decoder verbatim, so the page cannot drift from the tested code."""
    page = (EXAMPLE.parents[1] / "docs" / "adapters.md").read_text()
    block = page.split("<!-- example:start -->\n```python\n", 1)[1].split("```\n<!-- example:end -->", 1)[0]
    assert block.strip() in EXAMPLE.read_text(), "docs/adapters.md's example differs from examples/minimal_decoder.py"
