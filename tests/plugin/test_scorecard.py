"""What a run says of a foreign decoder: a setting it does not offer is a counted skip, never a failure, and
lossless-ness, counters, performance and protocol each get their own verdict (pytest_specdec/scorecard.py).

Through pytester, on a decoder that offers greedy and temperature sampling only (no top-k, no per-call gamma,
no streaming), as most packages published on the index do.
"""

from __future__ import annotations

import json

import pytest

from pytest_specdec.protocol.capabilities import asked, missing_from_reason, skip_reason
from reference_impl.sampling import SamplingConfig

DECODER = '''
import dataclasses

from reference_impl import SpeculativeDecoder

class Narrow(SpeculativeDecoder):
    capabilities = {"greedy", "temperature", "eos"}

class SlowStart(SpeculativeDecoder):
    """Lossless, but runs a draft pass before the first token (a TTFT property, not a lossless-ness one);
    it counts that pass honestly."""

    def generate(self, input_ids, **kwargs):
        self.draft(input_ids)
        result = super().generate(input_ids, **kwargs)
        s = result.stats
        return dataclasses.replace(result, stats=dataclasses.replace(
            s, draft_forwards=s.draft_forwards + 1, draft_prefills=s.draft_prefills + 1,
            draft_tokens_fed=s.draft_tokens_fed + input_ids.shape[1],
            forwards_before_first_token=s.forwards_before_first_token + 1))
'''

TESTS = '''
import pytest
import torch
from reference_impl.sampling import SamplingConfig

PROMPT = torch.tensor([[1, 2, 3]])

@pytest.mark.specdec_verdict("lossless")
@pytest.mark.parametrize("sampling", [SamplingConfig(), SamplingConfig(temperature=1.0),
                                      SamplingConfig(temperature=1.0, top_k=5)], ids=["greedy", "t1", "topk"])
def test_decodes(specdec_decoder, sampling):
    assert len(specdec_decoder.generate(PROMPT, max_new_tokens=6, sampling=sampling,
                                        generator=torch.Generator().manual_seed(0)).tokens) == 6

@pytest.mark.specdec_verdict("lossless")
def test_with_gamma(specdec_decoder):
    specdec_decoder.generate(PROMPT, max_new_tokens=6, sampling=SamplingConfig(), gamma=3)

@pytest.mark.specdec_verdict("performance")
def test_no_draft_pass_before_the_first_token(specdec_decoder, specdec_pair):
    calls = []
    handle = specdec_pair.draft.register_forward_hook(lambda *args: calls.append(1))
    first = []
    try:
        specdec_decoder.generate(PROMPT, max_new_tokens=4, sampling=SamplingConfig(),
                                 on_token=lambda t: first.append(len(calls)) if not first else None)
    finally:
        handle.remove()
    assert first[0] == 0, f"the draft ran {first[0]} pass(es) before the first token"
'''


@pytest.fixture
def project(pytester):
    pytester.makepyfile(user_decoders=DECODER, test_user=TESTS)
    pytester.syspathinsert()
    return pytester


def test_settings_a_decoder_does_not_offer_are_counted_skips(project):
    """Under pytest-xdist: the workers collect and run, the controller counts from the reports they send."""
    result = project.runpytest_subprocess("-n", "2", "--specdec-impl", "user_decoders:Narrow", "--specdec-pair",
                                          "tiny-llama-partial")
    result.assert_outcomes(passed=2, skipped=3)
    result.stdout.fnmatch_lines([
        "specdec verdicts on user_decoders:Narrow:",
        "  lossless-ness (*): PASS (2 passed, 2 skipped for capabilities)",
        "  performance properties (*): NOT RUN (1 skipped for capabilities)",
    ])
    result.stdout.fnmatch_lines([
        "specdec: 1 test(s) skipped: user_decoders:Narrow does not declare 'gamma' (a per-call gamma)",
        "specdec: 1 test(s) skipped: user_decoders:Narrow does not declare 'streaming' (*",
        "specdec: 1 test(s) skipped: user_decoders:Narrow does not declare 'top_k' (SamplingConfig.top_k)",
    ])
    assert "failed" not in result.stdout.str().split("short test summary")[-1]


def test_a_ttft_property_fails_performance_not_lossless_ness(project, tmp_path):
    out = tmp_path / "run.json"
    result = project.runpytest_subprocess("--specdec-impl", "user_decoders:SlowStart", "--specdec-pair",
                                          "tiny-llama-partial", "--specdec-json", str(out))
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines([
        "  lossless-ness (*): PASS (4 passed)",
        "  performance properties (*): FAIL (1 failed)",
        "    failed or error: test_user.py::test_no_draft_pass_before_the_first_token",
    ])
    verdicts = json.loads(out.read_text())["verdicts"]
    assert verdicts["decoder"] == "user_decoders:SlowStart"
    assert (verdicts["lossless"]["verdict"], verdicts["performance"]["verdict"]) == ("PASS", "FAIL")
    assert verdicts["performance"]["failed_tests"] == ["test_user.py::test_no_draft_pass_before_the_first_token"]


@pytest.mark.parametrize("request_, names", [
    ({}, {"greedy"}),
    ({"sampling": SamplingConfig()}, {"greedy"}),
    ({"sampling": SamplingConfig(top_k=5, top_p=0.5)}, {"greedy"}),  # truncation means nothing when greedy
    ({"sampling": SamplingConfig(temperature=0.7, top_k=5, top_p=0.9)}, {"temperature", "top_k", "top_p"}),
    ({"sampling": SamplingConfig(temperature=1.0, min_p=0.1, logit_bias={3: -1.0})},
     {"temperature", "min_p", "logit_bias"}),
    ({"gamma": 4, "eos_token_id": 0, "on_token": print}, {"greedy", "gamma", "eos", "streaming"}),
    ({"gamma": None, "eos_token_id": None, "on_token": None, "min_new_tokens": 0, "stop": []}, {"greedy"}),
    ({"min_new_tokens": 2, "stop": [[1]], "logprobs": 0}, {"greedy", "min_new_tokens", "stop", "logprobs"}),
])
def test_what_a_call_asks_for(request_, names):
    assert asked(request_) == names


def test_skip_reasons_read_back():
    assert missing_from_reason("Skipped: " + skip_reason("pkg.mod:make", ["top_p", "gamma"])) == (
        "pkg.mod:make", ["gamma", "top_p"])
    assert missing_from_reason("needs --specdec-gpu on a CUDA machine") == ("", [])


def test_a_batched_call_skips_when_any_row_asks_for_an_undeclared_capability():
    """Per-row fields: the second row's sampling alone asks for a penalty the decoder does not declare."""
    import torch

    from pytest_specdec.protocol.decoder import CheckedBatchedDecoder
    from reference_impl.batched import BatchedSpeculativeDecoder
    from reference_impl.processing import CLASSIC
    from tests.support.pairs import cached_pair

    class Classic(BatchedSpeculativeDecoder):
        capabilities = CLASSIC

    decoder = CheckedBatchedDecoder(Classic(*cached_pair("llama", "partial")), "classic")
    prompts = [torch.tensor([[1, 2, 3]]), torch.tensor([[4, 5]])]
    assert len(decoder.generate_batch(prompts, max_new_tokens=3, sampling=SamplingConfig())) == 2
    with pytest.raises(pytest.skip.Exception, match="classic does not declare: repetition_penalty"):
        decoder.generate_batch(prompts, max_new_tokens=3,
                               sampling=[SamplingConfig(), SamplingConfig(repetition_penalty=1.3)])
    with pytest.raises(pytest.skip.Exception, match="classic does not declare: stop"):
        decoder.generate_batch(prompts, max_new_tokens=3, sampling=SamplingConfig(), stop=[[], [[7]]])
