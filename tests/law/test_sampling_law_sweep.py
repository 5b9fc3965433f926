"""The sampling-law sweep harness (tests/support/sampling_law_sweep.py, tests/support/sampling_law_catalogue.py):
its exact null is the null, its simulated acceptance counts are the reference decoder's, its counting is right, and
bad mutant names are errors.

The default run takes a few seconds; ``test_exact_null_false_positive_rate`` (``specdec_statistical``)
sweeps the exact null over 500 seeds (~5 minutes on one core).
"""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch

from pytest_specdec.law import sampling_law
from pytest_specdec.law.sample_pool import Call
from pytest_specdec.protocol.decoder import load_factory
from reference_impl.speculative import SpeculativeDecoder
from tests.support import sampling_law_catalogue as catalogue
from tests.support import sampling_law_sweep as sweep

from . import test_sampling_law as law

SEED = 4_242


@pytest.mark.parametrize("setting", ["T1", "top_k5_top_p0.8"])
def test_exact_sample_follows_the_target_law(setting):
    """1,000 calls (~24,000 tokens) from the exact sampler pass the next-token test and never draw a token the
    warper removed; the same tokens judged against another setting's rows are rejected (the check can fail)."""
    sample = sweep.exact_null(setting, 1_000, SEED)
    assert [len(s) for s in sample.sequences] == [c.max_new_tokens for c in law.plan(setting, 1_000, SEED)]
    result = law.law_check(sample, setting)
    assert result.impossible == 0 and result.pvalue > 1e-4, result.describe()
    counts = sampling_law.transition_counts(sample.prompts, sample.sequences, law.exact_rows(setting).shape[1])
    assert sampling_law.conditional_test(counts, law.exact_rows("low_T")).rejects(1e-4)


def test_exact_sample_starts_at_the_prompt():
    """The first token follows the row of the prompt's last token: a row that is a point mass is always taken."""
    vocab = 8
    rows = torch.zeros(vocab + 1, vocab, dtype=torch.float64)
    rows[torch.arange(vocab + 1), torch.arange(vocab + 1) % vocab] = 1.0  # token t -> t again
    calls = [Call((5, 3), 4), Call((7,), 2)]
    assert sweep.exact_sample(calls, rows, torch.Generator().manual_seed(0)) == [[3, 3, 3, 3], [7, 7]]


def test_exact_sample_reads_two_previous_tokens():
    """Context 2 (a ``TableLM`` reading two tokens): state = newest * (vocab + 1) + older, "no token" = vocab.
    Rows that emit (newest + 2 * older) % 3, with "no token" read as 0, give the sequences worked by hand."""
    vocab = 3
    rows = torch.zeros((vocab + 1) ** 2, vocab, dtype=torch.float64)
    for state in range(rows.shape[0]):
        newest, older = (t % vocab for t in divmod(state, vocab + 1))
        rows[state, (newest + 2 * older) % vocab] = 1.0
    calls = [Call((1, 2), 3), Call((2,), 2)]  # 2 + 2*1 = 4 -> 1; 1 + 2*2 -> 2; 2 + 2*1 -> 1 | 2 + 0 -> 2; 2 + 4 -> 0
    assert sweep.exact_sample(calls, rows, torch.Generator().manual_seed(0)) == [[1, 2, 1], [2, 0]]
    with pytest.raises(ValueError, match="context"):
        sweep.exact_sample(calls, rows[:-1], torch.Generator())


@pytest.mark.parametrize(
    ("beta", "expected"),
    [(1.0, (3 + 4, 0, 3 + 4, 1 + 2)), (0.0, (0, 3 + 5, 6 + 12, 3 + 5))],
)
def test_simulated_acceptance_follows_the_reference_loop(beta, expected):
    """(accepted, rejections, drafted, steps) for budgets 1, 2, 5 and 7 at gamma 3, worked by hand. The prefill
    gives the first token; while r >= 2 tokens remain a step drafts k = min(3, r - 1); a last one is a plain pass.
    All accepted: 5 -> k 3 (4 tokens); 7 -> k 3, then r = 2: k 1. None: 5 -> k 3, 2, 1; 7 -> k 3, 3, 3, 2, 1."""
    generator = torch.Generator().manual_seed(0)
    assert sweep.simulate_acceptance([1, 2, 5, 7], 3, beta, generator) == expected


@pytest.mark.parametrize("gamma", [1, 2, 4])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_simulated_counts_equal_the_reference_decoders_at_beta_0_and_1(gamma, beta):
    """Under top-k = 1 the pair's acceptance is 0 (the draft's top token is not the target's) or 1 (a draft
    equal to the target): the reference's counts are then a function of the budgets, and the simulation's
    must equal them exactly, call by call."""
    from reference_impl.models.table import table_pair
    from reference_impl.sampling import SamplingConfig

    spec = law.PAIRS["main"]
    draft_logits = spec["target_logits"] if beta else spec["draft_logits"]
    rearrangement = range(len(draft_logits)) if beta else spec["rearrangement"]
    decoder = SpeculativeDecoder(*table_pair(spec["target_logits"], draft_logits, list(rearrangement)))
    sampling = SamplingConfig(temperature=1.0, top_k=1)
    for budget in (8, 9, 10, 11, 12, 40):  # every end position of a step of up to 5 tokens, and a long call
        stats = decoder.generate(torch.tensor([[1, 2]]), max_new_tokens=budget, sampling=sampling, gamma=gamma,
                                 generator=torch.Generator().manual_seed(budget)).stats
        simulated = sweep.simulate_acceptance([budget], gamma, beta, torch.Generator())
        assert (stats.accepted, stats.rejections, stats.drafted, stats.steps) == simulated, f"{budget} tokens"


def test_simulated_counts_match_the_reference_decoder():
    """The reference's own accepted, rejections, drafted and steps on 40 calls at gamma 3 lie within 5 standard
    deviations of the simulation's mean (over 400 simulations of the same plan): the expectation at the
    setting's own acceptance (0 < beta < 1). The step rule itself is checked exactly at beta 0 and 1 above."""
    setting, calls = "top_k", 40
    sample = law.draw(SpeculativeDecoder(*law.pair()), setting, calls=calls, seed=SEED, jobs=1)
    budgets = [c.max_new_tokens for c in law.plan(setting, calls, SEED)]
    generator = torch.Generator().manual_seed(SEED)
    gamma, beta = law.SETTINGS[setting].gamma, law.exact_beta(setting)
    runs = [sweep.simulate_acceptance(budgets, gamma, beta, generator) for _ in range(400)]
    simulated = list(zip(*runs, strict=True))
    observed = (sample.accepted, sample.rejections, sample.drafted, sample.steps)
    for name, value, draws in zip(("accepted", "rejections", "drafted", "steps"), observed, simulated, strict=True):
        mean, sd = statistics.fmean(draws), statistics.stdev(draws)
        assert abs(value - mean) <= 5 * sd + 1e-9, f"{name}: reference {value}, simulated {mean:.1f} +- {sd:.1f}"


def test_counting_on_a_tiny_sweep(capsys, tmp_path):
    """Two seeds of the exact null through the command line: one JSON line per seed, counts that add up."""
    out = tmp_path / "summary.json"
    summary = sweep.main(["exact", "--seeds", "2", "--first-seed", "3", "--settings", "T1", "top_p",
                          "--fraction", "0.02", "--json", str(out)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line["seed"] for line in lines] == [3, 4] and set(lines[0]["p"]) == {"T1", "top_p"}
    assert json.loads(out.read_text()) == summary
    assert summary["ci"]["setting_runs"] == 4 and summary["ci"]["settings"]["T1"]["seeds"] == 2


def test_recount_a_sweep_cut_short(tmp_path, capsys):
    """``recount`` rebuilds the summary from the printed lines: the same counts as the sweep's own."""
    summary = sweep.main(["exact", "--seeds", "2", "--settings", "T1", "--fraction", "0.02"])
    path = tmp_path / "lines.jsonl"
    path.write_text(capsys.readouterr().out)
    assert sweep.main(["recount", str(path)])["ci"] == summary["ci"]


def test_count_levels_and_firings():
    """Each check's level is ALPHA split between the checks (5e-5 for two, 3.3e-5 for three): 3e-5 fires, 8e-5 not."""
    lines = [
        {"p": {"T1": {"law": 3e-5, "acceptance": 0.5}}},  # fires: below the check's level
        {"p": {"T1": {"law": 0.02, "acceptance": 8e-5}}},  # below ALPHA, not the check's level: does not fire
        {"p": {"T1": {"law": 0.5, "acceptance": 0.04}}},
    ]
    entry = sweep.count(lines)["settings"]["T1"]
    assert entry["seeds"] == 3 and entry["fired"] == 1
    keys = [str(x) for x in (law.LEVEL, 1e-4, 1e-2, 5e-2)]
    assert entry["law"] == dict(zip(keys, (1, 1, 1, 2), strict=True))
    assert entry["acceptance"] == dict(zip(keys, (0, 1, 1, 2), strict=True))


def test_catalogue_summary_counts_detections():
    lines = [{"mutant": "m", "setting": "T1", "fraction": 0.5, "seed": s, "p": {"law": p, "acceptance": 1.0},
              "detected": p < 5e-5} for s, p in enumerate((1e-9, 1e-6, 0.3))]
    lines.append({"mutant": "m", "setting": "T1", "fraction": 0.5, "seed": 3, "p": None, "detected": True,
                  "contract": "counts disagree"})
    (row,) = catalogue.catalogue_summary(lines)
    assert (row["detected"], row["seeds"], row["by_contract"], row["median_p_law"]) == (3, 4, 1, 1e-6)
    assert "m " in catalogue.format_catalogue([row])


def test_mutant_names_resolve_to_buildable_specs():
    """A registered name gives a module:Class spec that ``load_factory`` turns back into a decoder factory."""
    (spec,) = catalogue.resolve_mutants(["greedy_draft"]).values()
    assert spec == "tests.support.mutants:GreedyDraftDecoder"
    decoder = load_factory(spec)(*law.pair())
    assert decoder.generate(torch.tensor([[1]]), max_new_tokens=3, sampling=law.SETTINGS["T1"].sampling,
                            generator=torch.Generator().manual_seed(0)).tokens.__len__() == 3


def test_unknown_mutant_is_a_clear_error(capsys):
    with pytest.raises(catalogue.UnknownMutantError, match=r"unknown mutant 'no_such_bug'.*known: .*greedy_draft"):
        catalogue.resolve_mutants(["greedy_draft", "no_such_bug"])
    assert list(catalogue.resolve_mutants(["no_such_bug", "uniform_zero"], skip_missing=True)) == ["uniform_zero"]
    assert "skipping unknown mutant 'no_such_bug'" in capsys.readouterr().err


def test_catalogue_settings_exist():
    assert all(set(settings) <= set(law.SETTINGS) for settings in catalogue.CATALOGUE.values())
    assert set(catalogue.CATALOGUE) <= set(catalogue.registries()[0])


@pytest.mark.specdec_statistical
def test_exact_null_false_positive_rate():
    """500 seeds x 7 settings of the exact null at each setting's stated rate <= 1e-4: expected firings <= 0.35,
    P(>= 4) < 5e-4 under the stated rate; p-values below 0.05 within 5 sd of 5%. ~6 minutes on one idle core."""
    seeds = range(sweep.FIRST_SEED, sweep.FIRST_SEED + 500)
    lines = sweep.run_seeds(lambda s: sweep.exact_seed(s, sweep.ALL), seeds, {})
    summary = sweep.count(lines)
    assert summary["fired"] <= 3, sweep.format_counts("exact null", summary)
    at_5pct = sum(e[t][str(5e-2)] for e in summary["settings"].values() for t in law.CHECKS)
    runs = len(law.CHECKS) * summary["setting_runs"]
    assert abs(at_5pct - 0.05 * runs) <= 5 * math.sqrt(0.05 * 0.95 * runs), sweep.format_counts("exact null", summary)
