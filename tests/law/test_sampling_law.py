"""Check 3: the decoder under test samples from the target's law, token by token, to a total variation of 0.02.

The decoder named by ``--specdec-impl`` (default: the reference) decodes on ``TableLM`` pairs
(``reference_impl.models.table``): real transformers models, loaded and run like any other, whose
next-token logits are a row of a table chosen by the previous ``context`` tokens, so the target's
exact law of every emitted token is known and every token is an observation. Per sampling setting
the plan (``pytest_specdec.law.sample_pool.decode_plan``) is 1,250-1,550 calls with prompts of 1-12
tokens and 8-40 new tokens each (~24 on average, so decodes end at every position of a step), one
gamma per setting (1 to 4), drawn on every core from seeds derived from ``SEED``. Three checks
share the sample (docs/sampling-law.md):

- ``test_rank_law``: each emitted token's rank under the target's row, against the rank law (the
  same in every state of these pairs; ``sampling_law.rank_test``, <= 7 dof). Power >= 0.99
  against a TV >= ``Setting.stated_rank_tv`` = 0.02 of the rank law (profile, 4x the calls: 0.01).
- ``test_next_token_law``: the (state, token) counts against the target's warped rows
  (``sampling_law.conditional_test``). Law compared: the decoder's next-token law given the
  state, pooled over all emitted tokens. Power >= 0.99 against a mean TV >= ``Setting.stated_tv``
  (0.025-0.03; profile: half).
- ``test_acceptance_law``: the decoder's reported accepted count against Binomial(trials, beta),
  beta = sum min(target, draft), the same in every state of these pairs by construction
  (``sampling_law.acceptance_test``). Detects a shift of the per-position acceptance probability
  of ``Setting.stated_shift`` = 0.025. It assumes token-level rejection sampling; a decoder with
  another lossless verification scheme (tree, multi-draft) deselects it (``-k "not acceptance_law"``).

Error rates: each check runs at ``LEVEL`` = ``ALPHA`` / 3, so each setting's false-positive rate is
<= 1e-4 (Bonferroni) and the module's (7 settings) <= 7e-4. ``test_stated_reach_holds`` recomputes
the stated figures; ``tests/support/sampling_law_sweep.py`` measures the false-positive rate and the bug
catalogue's detection rates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pytest

from pytest_specdec.law import sampling_law
from pytest_specdec.law.sample_pool import DecoderSource, DecodeSample, decode_plan, sample_decodes
from pytest_specdec.protocol.decoder import DEFAULT_IMPL
from reference_impl.sampling import SamplingConfig

ALPHA = 1e-4  # per sampling setting, split evenly between its three checks
SEED = 20_261_130
# Target and draft rows are permutations of these logits. "main": the draft is sharper and puts its top
# token on the target's third (``rearrangement``), so steps reject often and the residual carries real mass.
# "context2": logits read the two previous tokens, so a decoder whose cache keeps a rejected token, or
# drops one too many, sees another state and another law (a context-1 table reads only the token fed).
PAIRS = {
    "main": dict(
        target_logits=(2.0, 1.5, 1.0, 0.6, 0.3, 0.0, -0.5, -1.0),
        draft_logits=(3.0, 2.0, 1.2, 0.5, 0.0, -0.5, -1.0, -2.0),
        rearrangement=(2, 0, 1, 3, 4, 5, 6, 7),
        seed=0,
        context=1,
    ),
    "context2": dict(
        target_logits=(1.2, 0.6, 0.0, -0.7),
        draft_logits=(2.0, 0.4, 0.0, -1.2),
        rearrangement=(1, 0, 2, 3),
        seed=1,
        context=2,
    ),
}


@dataclass(frozen=True)
class Setting:
    """A sampling setting, its gamma and its default-run size, and what that size detects with power >= 0.99."""

    sampling: SamplingConfig
    gamma: int
    calls: int  # in the default run; the profile draws PROFILE_FACTOR times as many
    stated_tv: float  # mean TV of the next-token law given the state
    stated_rank_tv: float = 0.02  # TV of the rank law
    stated_shift: float = 0.025  # shift of the acceptance probability
    pair: str = "main"


SETTINGS = {
    "T1": Setting(SamplingConfig(temperature=1.0), 2, 1_550, 0.027),
    "low_T": Setting(SamplingConfig(temperature=0.6), 1, 1_550, 0.027),
    "top_k": Setting(SamplingConfig(temperature=1.0, top_k=3), 3, 1_250, 0.025),
    "top_p": Setting(SamplingConfig(temperature=1.0, top_p=0.8), 2, 1_330, 0.026),
    "T0.7_top_p0.9": Setting(SamplingConfig(temperature=0.7, top_p=0.9), 1, 1_330, 0.026),
    "top_k5_top_p0.8": Setting(SamplingConfig(temperature=1.0, top_k=5, top_p=0.8), 4, 1_250, 0.025),
    "T1_context2": Setting(SamplingConfig(temperature=1.0), 3, 1_330, 0.03, pair="context2"),
}
NEW_TOKENS = (8, 40)  # fewest and most new tokens per call
PROFILE_FACTOR = 4  # the profile draws 4x the calls: half the detectable TV
TRIALS_PER_TOKEN = 0.6  # the acceptance test's stated reach assumes >= this many draft positions reached per token


def build_pair(name: str = "main"):
    """(target, draft) TableLMs; module-level so worker processes can rebuild them."""
    from reference_impl.models.table import table_pair

    spec = PAIRS[name]
    return table_pair(spec["target_logits"], spec["draft_logits"], spec["rearrangement"], seed=spec["seed"],
                      context=spec["context"])


@functools.cache
def pair(name: str = "main"):
    return build_pair(name)


def vocab(setting: str) -> int:
    return len(PAIRS[SETTINGS[setting].pair]["target_logits"])


def context(setting: str) -> int:
    return PAIRS[SETTINGS[setting].pair]["context"]


def exact_rows(setting: str):
    """(states, vocab): the target's warped next-token law in each state (the table's rows)."""
    from reference_impl.sampling import probs_from_logits

    return probs_from_logits(pair(SETTINGS[setting].pair)[0].table.detach().double(), SETTINGS[setting].sampling)


def calls_ci(setting: str) -> int:
    return SETTINGS[setting].calls


def exact_beta(setting: str) -> float:
    from reference_impl.models.table import constant_beta

    return constant_beta(*pair(SETTINGS[setting].pair), SETTINGS[setting].sampling)


def source(impl: str, setting: str, device: str = "cpu") -> DecoderSource:
    """``impl`` (module:factory) on ``setting``'s pair on ``device``, rebuildable in a worker process."""
    return DecoderSource(impl, functools.partial(build_pair, SETTINGS[setting].pair), device=device)


def plan(setting: str, calls: int, seed: int):
    return decode_plan(seed + sorted(SETTINGS).index(setting), calls, vocab(setting), NEW_TOKENS)


def draw(decoder, setting: str, *, calls: int | None = None, seed: int = SEED, jobs: int | None = None) -> DecodeSample:
    """The decodes of ``setting``'s plan by ``decoder`` (a decoder object or a ``DecoderSource``)."""
    calls = calls_ci(setting) if calls is None else calls
    spec = SETTINGS[setting]
    return sample_decodes(decoder, plan(setting, calls, seed), spec.sampling, seed=seed, gamma=spec.gamma, jobs=jobs)


def counts(sample: DecodeSample, setting: str):
    return sampling_law.transition_counts(sample.prompts, sample.sequences, vocab(setting), context(setting))


def rank_check(sample: DecodeSample, setting: str):
    return sampling_law.rank_test(counts(sample, setting), exact_rows(setting), name=f"rank law, {setting}")


def law_check(sample: DecodeSample, setting: str) -> sampling_law.ConditionalResult:
    name = f"next-token law, {setting}"
    return sampling_law.conditional_test(counts(sample, setting), exact_rows(setting), name=name)


def acceptance_check(sample: DecodeSample, setting: str) -> sampling_law.AcceptanceResult:
    return sampling_law.acceptance_test(sample.accepted, sample.rejections, exact_beta(setting))


CHECKS = {"rank": rank_check, "next_token": law_check, "acceptance": acceptance_check}
LEVEL = ALPHA / len(CHECKS)  # each check's level: a setting's false-positive rate is <= ALPHA (Bonferroni)


def detects(sample: DecodeSample, setting: str) -> tuple[bool, str]:
    """Does any check of ``setting`` reject at its level? -> (rejected, every check's description)."""
    results = [check(sample, setting) for check in CHECKS.values()]
    return any(r.rejects(LEVEL) for r in results), "\n".join(r.describe() for r in results)


@pytest.fixture(scope="module")
def impl(specdec_options) -> str:
    return specdec_options.impl or DEFAULT_IMPL


@pytest.fixture(scope="module")
def device(specdec_options) -> str:
    """The pair runs where the decoder under test runs (``cuda`` with ``--specdec-gpu``), in float64 on any device."""
    return specdec_options.resolved_device()


@pytest.fixture(scope="module")
def jobs(specdec_options) -> int | None:
    return specdec_options.sample_jobs


@pytest.fixture(scope="module")
def samples():
    return {}


def sample_for(samples, impl: str, setting: str, jobs: int | None, device: str) -> DecodeSample:
    if setting not in samples:
        samples[setting] = draw(source(impl, setting, device), setting, jobs=jobs)
    return samples[setting]


@pytest.mark.parametrize("setting", SETTINGS)
def test_rank_law(samples, impl, jobs, device, setting):
    """Rate <= LEVEL; power >= 0.99 against a TV >= 0.02 of the emitted tokens' rank law from the target's."""
    result = rank_check(sample_for(samples, impl, setting, jobs, device), setting)
    assert not result.rejects(LEVEL), result.describe()


@pytest.mark.parametrize("setting", SETTINGS)
def test_next_token_law(samples, impl, jobs, device, setting):
    """Rate <= LEVEL; power >= 0.99 against a mean TV >= Setting.stated_tv of the next-token law given the state."""
    result = law_check(sample_for(samples, impl, setting, jobs, device), setting)
    assert not result.rejects(LEVEL), result.describe()


@pytest.mark.specdec_verdict("performance")  # acceptance: a lossless decoder can waste drafts
@pytest.mark.parametrize("setting", SETTINGS)
def test_acceptance_law(samples, impl, jobs, device, setting):
    """Rate <= LEVEL; power >= 0.99 against an acceptance probability off by >= Setting.stated_shift."""
    result = acceptance_check(sample_for(samples, impl, setting, jobs, device), setting)
    least = min_trials(setting)
    assert result.trials >= least, (
        f"{result.describe()}: fewer than {least} draft positions reached, below the stated reach; "
        "does the decoder draft the gamma it is asked for?"
    )
    assert not result.rejects(LEVEL), result.describe()


@pytest.mark.specdec_statistical
@pytest.mark.parametrize("setting", SETTINGS)
def test_sampling_law_profile(impl, jobs, device, setting):
    """4x the calls, the three checks: rate <= 1e-4 together; half the default run's detectable TVs."""
    calls = PROFILE_FACTOR * calls_ci(setting)
    sample = draw(source(impl, setting, device), setting, calls=calls, seed=SEED + 1, jobs=jobs)
    rejected, detail = detects(sample, setting)
    assert not rejected, detail


def planned_tokens(setting: str, calls: int) -> int:
    return sum(call.max_new_tokens for call in plan(setting, calls, SEED))


def min_trials(setting: str) -> int:
    return int(TRIALS_PER_TOKEN * planned_tokens(setting, calls_ci(setting)))


def reach(setting: str, calls: int) -> dict[str, float]:
    """What ``calls`` calls of ``setting`` detect with power >= 0.99 at the checks' level (planned, before sampling)."""
    rows = exact_rows(setting)
    reachable = [s for s in range(rows.shape[0]) if not _starts_before_prompt(s, vocab(setting), context(setting))]
    rows = rows[reachable]  # prompts are never empty: no state has "no token" as the previous one
    tokens = planned_tokens(setting, calls)
    return {
        "tokens": tokens,
        "rank_tv": sampling_law.rank_reach(rows, tokens, LEVEL),
        "next_token_tv": sampling_law.conditional_reach(rows, tokens, LEVEL),
    }


@pytest.mark.parametrize("setting", SETTINGS)
def test_stated_reach_holds(setting):
    """The stated TVs and acceptance shift hold for the planned number of tokens (the plan is fixed by the seed)."""
    spec = SETTINGS[setting]
    for calls, scale in ((calls_ci(setting), 1.0), (PROFILE_FACTOR * calls_ci(setting), 0.5)):
        planned = reach(setting, calls)
        assert planned["next_token_tv"] <= scale * spec.stated_tv, f"{setting}, {calls} calls: {planned}"
        assert planned["rank_tv"] <= scale * spec.stated_rank_tv, f"{setting}, {calls} calls: {planned}"
    shift = sampling_law.acceptance_reach(min_trials(setting), exact_beta(setting), LEVEL)
    assert shift <= spec.stated_shift, f"{setting}: detects an acceptance shift of {shift:.4f}"


def reach_table() -> str:
    """The settings and what each detects, as a markdown table (``python -m tests.law.test_sampling_law``)."""
    lines = ["| setting | sampling | pair | gamma | beta | calls | tokens | rank-law TV | next-token TV "
             "| acceptance shift | profile: rank / next-token TV |", "|---" * 11 + "|"]
    for name, spec in SETTINGS.items():
        ci, profile = reach(name, spec.calls), reach(name, PROFILE_FACTOR * spec.calls)
        shift = sampling_law.acceptance_reach(min_trials(name), exact_beta(name), LEVEL)
        lines.append(
            f"| {name} | {spec.sampling.describe()} | {spec.pair} | {spec.gamma} | {exact_beta(name):.3f} "
            f"| {spec.calls:,} | {ci['tokens']:,} | {ci['rank_tv']:.4f} | {ci['next_token_tv']:.4f} | {shift:.4f} "
            f"| {profile['rank_tv']:.4f} / {profile['next_token_tv']:.4f} |"
        )
    return "\n".join(lines)


def _starts_before_prompt(state: int, vocab: int, context: int) -> bool:
    return state // (vocab + 1) ** (context - 1) == vocab  # the newest "previous token" is "no token"


if __name__ == "__main__":
    print(reach_table())
