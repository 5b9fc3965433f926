"""Each subtle mutant's bias on a table pair: the total variation between its output law and the target's.

Two laws per mutant and sampling setting, both conditional on the previous token (a table pair's
rows depend on nothing else):

- ``per_position``: the token emitted at a draft position j < gamma of a step that reaches j (the
  same law at every j); the bonus position is the target's own law unless the mutant warps it;
- ``pooled``: every emitted token, the mixture of the per-position and bonus laws in the proportion
  a long run emits them (tokens per step from the mutant's acceptance; the prefill's token and a
  shortened last step left out).

Exact where the mutant is a function of the target and draft rows (accept and residual changes via
``pytest_specdec.law.stats.step_law``, warpers, shared inverse-CDF uniforms); ``shared_noise`` by Monte
Carlo over the exponential noise (sample size and the estimate's noise floor in the output). The
states of a table pair are permutations of each other, so mutants that do not look at token ids
have the same TV in every state; ``shared_uniform`` does (its CDF runs in token-id order), and gets
the mean and max over states.

    python -m tests.support.subtle_mutants [--out docs/measurements/subtle-mutant-tv.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
from pathlib import Path

import torch

from pytest_specdec.law.stats import accepted_length_law, step_law
from reference_impl.models.table import table_pair
from reference_impl.sampling import probs_from_logits, residual_probs
from tests.law import test_sampling_law as law

from .subtle_mutants import SUBTLE_MUTANTS, warp_nucleus_exclusive, warp_top_p_first

PAIR = {key: list(law.PAIRS["main"][key]) for key in ("target_logits", "draft_logits", "rearrangement")}
GAMMA = 3
SETTINGS = {  # the sampling-law tests' settings on the main pair, under this catalogue's labels
    label: law.SETTINGS[name].sampling
    for label, name in (("T=1", "T1"), ("T=0.6", "low_T"), ("top_k=3", "top_k"), ("top_p=0.8", "top_p"),
                        ("T=0.7,top_p=0.9", "T0.7_top_p0.9"), ("top_k=5,top_p=0.8", "top_k5_top_p0.8"))
}
MC_SAMPLES = 2**22
VALIDATE_STEPS = 20_000
VALIDATE = {  # mutant -> the setting its computed law is checked under
    "shared_noise": "T=1",
    "shared_uniform": "T=1",
    "accept_bf16": "top_k=3",
    "uniform_bf16": "T=1",
    "accept_scaled": "top_k=3",
    "accept_shifted": "T=0.6",
    "uniform_inclusive": "top_k=3",
    "warper_order": "top_k=5,top_p=0.8",
    "top_p_boundary": "top_p=0.8",
    "draft_sampled_unwarped": "T=0.6",
}
OUT = Path("docs/measurements/subtle-mutant-tv.json")


def tv(a, b):
    return 0.5 * float((a - b).abs().sum())


def ratio(p, q):
    """min(1, p / q) where the draft proposes (q > 0), as the reference's accept test."""
    return torch.where(q > 0, (p / q.clamp_min(1e-300)).clamp(max=1.0), torch.zeros_like(p))


@functools.cache
def torch_bf16_uniform_law():
    """(values, P(u < value)) of ``torch.rand(dtype=torch.bfloat16)`` on CPU: a float32 uniform k / 2**24
    rounded to nearest bf16, 1.0 wrapped to 0 (matches a 4M-draw chi-square: 1275 on 1281 bins)."""
    grid = (torch.arange(2**24, dtype=torch.float64) / 2**24).float().bfloat16().double()
    values, counts = grid.masked_fill(grid == 1.0, 0.0).unique(return_counts=True)
    return values, torch.cat([counts.new_zeros(1), counts.cumsum(0)]).double() / 2**24


def accept_law(name):
    """The probability each pure accept mutant accepts a draft token, as a function of the rows."""
    if name == "accept_scaled":
        return lambda p, q, x: (1.05 * ratio(p, q)).clamp(max=1.0)[torch.arange(len(x)), x]
    if name == "accept_shifted":
        return lambda p, q, x: torch.where(q > 0, (ratio(p, q) + 0.02).clamp(max=1.0), 0.0)[torch.arange(len(x)), x]
    if name == "accept_bf16":  # P(round(U) < c), c = round(ratio): U below the midpoint under c

        def law(p, q, x):
            c = ratio(p, q)[torch.arange(len(x)), x].bfloat16()
            below = (c.view(torch.int16) - 1).view(torch.bfloat16).double()
            return torch.where(c > 0, (c.double() + below) / 2, 0.0)

        return law
    if name == "uniform_bf16":
        values, below = torch_bf16_uniform_law()
        return lambda p, q, x: below[torch.searchsorted(values, ratio(p, q)[torch.arange(len(x)), x])]
    raise KeyError(name)


def shared_uniform_law(p, q):
    """Exact: the residual token shares the draft token's uniform, both drawn by inverse CDF in id order."""
    r = residual_probs(p, q)
    q_hi, r_hi = q.cumsum(0), r.cumsum(0)
    joint = (torch.minimum(q_hi[:, None], r_hi[None]) - torch.maximum((q_hi - q)[:, None], (r_hi - r)[None])).clamp_min(
        0
    )
    a = ratio(p, q)
    return q * a + ((1 - a)[:, None] * joint).sum(0)


def shared_noise_law(p, q, n, seed=0):
    """Monte Carlo over the exponential noise: (law with shared noise, law with fresh noise: the floor)."""
    generator = torch.Generator().manual_seed(seed)
    r, a = residual_probs(p, q), ratio(p, q)
    vocab = len(p)
    joint = torch.zeros(2, vocab, vocab, dtype=torch.float64)
    for start in range(0, n, 2**20):
        size = min(2**20, n - start)
        noise = torch.empty(2, size, vocab, dtype=torch.float64).exponential_(generator=generator)
        drafted = (q / noise[0]).argmax(-1)
        for k, residual_noise in enumerate(noise):  # 0: the shared noise (the bug), 1: fresh noise
            joint[k].view(-1).index_add_(
                0, drafted * vocab + (r / residual_noise).argmax(-1), torch.ones(size, dtype=torch.float64)
            )
    joint /= n
    return tuple(q * a + ((1 - a)[:, None] * j).sum(0) for j in joint)


def unwarped_draft_law(p, q, raw_draft):
    """Exact: draft tokens come from ``raw_draft``, the verifier is told ``q``."""
    a = torch.where(q > 0, ratio(p, q), (p > 0).double())  # p / 0 = inf -> 1; 0 / 0 = nan -> rejected
    accepted = raw_draft * a
    return accepted + (1 - accepted.sum()) * residual_probs(p, q)


def row_laws(name, target_row, draft_row, sampling):
    """-> (per-position law, bonus law, acceptance beta) of mutant ``name`` on one state."""
    p, q = probs_from_logits(target_row, sampling), probs_from_logits(draft_row, sampling)
    beta = float(p.minimum(q).sum())
    if name in ("warper_order", "top_p_boundary"):
        warp = warp_top_p_first if name == "warper_order" else warp_nucleus_exclusive
        wp, wq = warp(target_row, sampling).softmax(-1), warp(draft_row, sampling).softmax(-1)
        return wp, wp, float(wp.minimum(wq).sum())
    if name == "shared_uniform":
        return shared_uniform_law(p, q), p, beta
    if name == "draft_sampled_unwarped":
        raw = draft_row.softmax(-1)
        law = unwarped_draft_law(p, q, raw)
        return law, p, float((raw * torch.where(q > 0, ratio(p, q), (p > 0).double())).sum())
    law = step_law(torch.stack([p, p]), q[None], accept_fn=accept_law(name))
    return law.token_probs[0], p, float(law.betas[0])


def pooled_weight(beta, gamma):
    """The share of emitted tokens that come from draft positions (not the bonus) in a long run."""
    lengths = accepted_length_law(torch.full((gamma,), beta, dtype=torch.float64))
    per_step = float((lengths * torch.arange(1, gamma + 2)).sum())
    return (per_step - float(lengths[-1])) / per_step


def mutant_tv(name, target, draft, sampling, gamma=GAMMA, mc_samples=MC_SAMPLES):
    """The TVs of mutant ``name`` on the pair (target, draft) under ``sampling`` (see the module doc)."""
    t_rows, d_rows = target.table.detach().double(), draft.table.detach().double()
    if name == "uniform_inclusive":
        return {
            "per_position": 2.0**-53,
            "pooled": 2.0**-53,
            "method": "analytic bound: P(u == 0 or u == ratio) <= 2**-53 per draft position",
        }
    if name == "shared_noise":
        p, q = probs_from_logits(t_rows[0], sampling), probs_from_logits(d_rows[0], sampling)
        shared, fresh = shared_noise_law(p, q, mc_samples)
        w = pooled_weight(float(p.minimum(q).sum()), gamma)
        return {
            "per_position": tv(shared, p),
            "pooled": w * tv(shared, p),
            "noise_floor_per_position": tv(fresh, p),
            "method": f"Monte Carlo, {mc_samples} noise draws, state 0 (the same in every state); "
            "noise_floor: the same estimator with fresh noise",
        }
    per_position, pooled = [], []
    for t_row, d_row in zip(t_rows, d_rows, strict=True):
        law, bonus, beta = row_laws(name, t_row, d_row, sampling)
        p = probs_from_logits(t_row, sampling)
        w = pooled_weight(beta, gamma)
        per_position.append(tv(law, p))
        pooled.append(tv(w * law + (1 - w) * bonus, p))
    result = {"per_position": max(per_position), "pooled": max(pooled), "method": "exact"}
    if name == "shared_uniform":
        result |= {
            "per_position_mean_over_states": sum(per_position) / len(per_position),
            "pooled_mean_over_states": sum(pooled) / len(pooled),
            "method": "exact, max over states (and mean)",
        }
    return result


def position0_law(name, target, draft, sampling, state=0):
    """The computed law of the first draft position's token in ``state`` (what ``simulate_position0`` samples)."""
    t_row, d_row = target.table.detach().double()[state], draft.table.detach().double()[state]
    if name == "shared_noise":
        p, q = probs_from_logits(t_row, sampling), probs_from_logits(d_row, sampling)
        return shared_noise_law(p, q, MC_SAMPLES)[0]
    if name == "uniform_inclusive":
        return probs_from_logits(t_row, sampling)
    return row_laws(name, t_row, d_row, sampling)[0]


def simulate_position0(name, target, draft, sampling, n, state=0, seed=0):
    """(vocab,) counts of the tokens the mutant's own hooks emit first in n gamma-1 steps from ``state``."""
    decoder = SUBTLE_MUTANTS[name](target, draft)
    generator = torch.Generator().manual_seed(seed)
    t_rows, d_row = target.table.detach().double(), draft.table.detach().double()[state]
    counts = torch.zeros(t_rows.shape[1], dtype=torch.long)
    for _ in range(n):
        token, probs = decoder.draft_token(d_row, sampling, generator)
        target_probs = decoder.target_probs(t_rows[[state, int(token)]], sampling)
        n_accepted, next_token = decoder.verify(target_probs, probs[None], token.view(1), generator)
        counts[int(token) if int(n_accepted) == 1 else int(next_token)] += 1
    return counts


def validate(name, setting, n, target, draft):
    """Chi-square p-values of the simulated first-position tokens against the computed law and the target's."""
    from scipy.stats import chisquare

    sampling = SETTINGS[setting]
    counts = simulate_position0(name, target, draft, sampling, n).double()
    law = position0_law(name, target, draft, sampling)
    p = probs_from_logits(target.table.detach().double()[0], sampling)
    support = (law > 0) | (p > 0)
    if bool((counts[~(law > 0)] > 0).any()):
        return {"setting": setting, "n": n, "p_computed_law": 0.0, "note": "a token outside the computed law"}
    keep = law > 0
    against_law = chisquare(counts[keep], n * law[keep] / law[keep].sum()).pvalue
    against_p = 0.0 if bool((counts[~(p > 0)] > 0).any()) else chisquare(counts[p > 0], n * p[p > 0]).pvalue
    return {
        "setting": setting,
        "n": n,
        "support": int(support.sum()),
        "p_computed_law": float(against_law),
        "p_target_law": float(against_p),
    }


def catalogue(pair=PAIR, gamma=GAMMA, settings=SETTINGS, mc_samples=MC_SAMPLES):
    target, draft = table_pair(pair["target_logits"], pair["draft_logits"], pair["rearrangement"])
    table = {}
    for name in SUBTLE_MUTANTS:
        table[name] = {}
        for label, sampling in settings.items():
            entry = mutant_tv(name, target, draft, sampling, gamma, mc_samples)
            table[name][label] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in entry.items()}
    betas = {
        label: round(
            float(
                probs_from_logits(target.table.detach()[0], s)
                .minimum(probs_from_logits(draft.table.detach()[0], s))
                .sum()
            ),
            6,
        )
        for label, s in settings.items()
    }
    return {"pair": pair, "gamma": gamma, "beta": betas, "mutants": table}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--mc-samples", type=int, default=MC_SAMPLES)
    parser.add_argument(
        "--pair",
        type=lambda text: [[float(x) for x in part.split(",")] for part in text.split("/")],
        help="another table pair: target logits / draft logits / rearrangement, comma-separated (no validation)",
    )
    parser.add_argument("--validate", type=int, default=VALIDATE_STEPS, help="steps per mutant (0: none)")
    args = parser.parse_args(argv)
    pair = PAIR if args.pair is None else dict(zip(PAIR, args.pair, strict=True))
    pair["rearrangement"] = [int(i) for i in pair["rearrangement"]]
    result = catalogue(pair, mc_samples=args.mc_samples)
    result["command"] = "python -m tests.support.subtle_mutants" + (
        f" --pair {'/'.join(','.join(map(str, v)) for v in pair.values())}" if args.pair else ""
    )
    if args.validate and args.pair is None:
        target, draft = table_pair(PAIR["target_logits"], PAIR["draft_logits"], PAIR["rearrangement"])
        result["validation"] = {
            "what": "first-position tokens of n gamma-1 steps run through the mutant's own hooks in state 0, "
            "chi-square against the computed law (should not reject) and the target's (rejects where the bias is big)",
            **{name: validate(name, setting, args.validate, target, draft) for name, setting in VALIDATE.items()},
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name, row in result["mutants"].items():
        cells = "  ".join(f"{label} {entry['per_position']:.4f}/{entry['pooled']:.4f}" for label, entry in row.items())
        print(f"{name:24s} {cells}")
    print(f"(per-position / pooled TV; beta {result['beta']}; written to {args.out})")
    assert math.isfinite(sum(e["pooled"] for row in result["mutants"].values() for e in row.values()))
