"""Measured error rates of the processed-law tests (tests/law/test_processed_law.py).

- ``exact``: the false-positive rate on the exact null. Tokens are drawn straight from the target's processed law
  (``exact_null``: every call of the plan advanced in lockstep on the context-1 table, the request's processing
  applied to each row's own history, then the warpers), and the tests' own check (``processed_pit_test``) is run
  on them; a firing is a p-value below ``ALPHA``.
- ``mutants``: the detection rate of each companion mutant over seeds, at the fraction of the calls the default
  run uses.

    python -m tests.support.processed_law_sweep exact --seeds 200 --json exact.json
    python -m tests.support.processed_law_sweep mutants --seeds 20 --json mutants.json  # --only NAME: one companion

The same for the per-state acceptance test (tests/law/test_processed_acceptance.py):

- ``acceptance-exact``: the states of one reference draw of the full plan per setting, then ``--seeds`` accepted
  counts drawn as sums of independent Bernoulli(beta_state) (the exact null given the states) and tested as the
  test does; the normal approximation is the only thing measured, so many seeds are cheap.
- ``acceptance-mutants``: the companion's detection rate over seeds at the fraction of the calls the test uses.

    python -m tests.support.processed_law_sweep acceptance-exact --seeds 20000 --json acceptance-exact.json
    python -m tests.support.processed_law_sweep acceptance-mutants --seeds 20 --json acceptance-mutants.json

- ``decoder``: the tests' own draw and check (seed ``SEED``) on the decoder ``--impl`` names, every setting whose
  capabilities it declares; ``--batch N``: the calls through ``generate_batch``, N rows at a time.

    python -m tests.support.processed_law_sweep decoder --impl pytest_specdec.adapters.hf_assisted:factory
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from reference_impl.processing import process_logits
from reference_impl.sampling import probs_from_logits
from tests.law import test_processed_acceptance as acceptance
from tests.law import test_processed_law as law


def exact_null(setting: str, calls: int, seed: int) -> tuple[list[tuple[int, ...]], list[list[int]]]:
    """(prompts, sequences) of the plan, every token drawn from the target's exact processed law."""
    sampling = law.SETTINGS[setting][0]
    plan = law.plan(setting, calls, seed)
    target = law.pair("main")[0]
    assert target.config.context == 1, "the lockstep draw reads the state from the last token only"
    table = target.table.detach().double()
    vocab = table.shape[1]
    generator = torch.Generator().manual_seed(seed * 7_919 + 1)  # not the plan's stream
    seen = torch.zeros(len(plan), vocab, dtype=torch.bool)
    for i, call in enumerate(plan):
        seen[i, list(call.prompt)] = True
    counts = torch.zeros(len(plan), vocab)
    last = torch.tensor([call.prompt[-1] for call in plan])
    budgets = torch.tensor([call.max_new_tokens for call in plan])
    drawn = torch.zeros(len(plan), int(budgets.max()), dtype=torch.long)
    for t in range(int(budgets.max())):
        rows = (budgets > t).nonzero().squeeze(1)
        processed = process_logits(table[last[rows]], sampling, seen[rows], counts[rows], torch.full((len(rows),), t))
        tokens = torch.multinomial(probs_from_logits(processed, sampling), 1, generator=generator).squeeze(1)
        seen[rows, tokens] = True
        counts[rows, tokens] += 1
        last[rows] = tokens
        drawn[rows, t] = tokens
    sequences = [drawn[i, : call.max_new_tokens].tolist() for i, call in enumerate(plan)]
    return [call.prompt for call in plan], sequences


def sweep_exact(seeds: range) -> dict:
    fired, p_values = {}, {}
    for setting in law.SETTINGS:
        values = []
        for seed in seeds:
            prompts, sequences = exact_null(setting, law.CALLS, seed)
            values.append(law.processed_pit_test(law.pair("main")[0], prompts, sequences, law.SETTINGS[setting][0],
                                                 seed=seed).p_value)
        p_values[setting] = values
        fired[setting] = sum(p < law.ALPHA for p in values)
        print(f"{setting}: {fired[setting]} of {len(values)} fired; smallest p {min(values):.3g}; "
              f"p < 0.01: {sum(p < 0.01 for p in values)}, p < 0.05: {sum(p < 0.05 for p in values)}", flush=True)
    return {"alpha": law.ALPHA, "calls": law.CALLS, "seeds": [seeds.start, seeds.stop], "fired": fired,
            "p_values": p_values}


def sweep_mutants(seeds: range, only: str | None = None) -> dict:
    detected = {}
    for mutant, (setting, fraction) in law.COMPANIONS.items():
        if only and not mutant.endswith(f":{only}"):
            continue
        hits = 0
        for seed in seeds:
            sample = law.draw(mutant, setting, calls=round(law.CALLS * fraction), seed=seed, jobs=1)
            hits += law.check(sample, setting, seed).rejects(law.ALPHA)
        mutant = mutant.rpartition(":")[2]
        detected[mutant] = {"setting": setting, "fraction": fraction, "detected": hits, "seeds": len(seeds)}
        print(f"{mutant} on {setting} at {fraction:g} of the calls: {hits}/{len(seeds)}", flush=True)
    return detected


def sweep_decoder(impl: str, batch: int) -> dict:
    import functools

    from pytest_specdec.law.sample_pool import DecoderSource, sample_decodes
    from pytest_specdec.protocol.capabilities import declared
    from pytest_specdec.protocol.decoder import load_factory

    has = declared(load_factory(impl))
    results = {}
    for setting, (sampling, gamma, needs) in law.SETTINGS.items():
        if not set(needs) <= has:
            continue
        start = time.perf_counter()
        source = DecoderSource(impl, functools.partial(law.build_pair, "main"), batch=batch)
        sample = sample_decodes(source, law.plan(setting, law.CALLS, law.SEED), sampling, seed=law.SEED, gamma=gamma,
                                jobs=1)
        result = law.check(sample, setting)
        results[setting] = {"ks": result.ks, "p_value": result.p_value, "tokens": result.n,
                            "rejects": result.rejects(law.ALPHA), "seconds": round(time.perf_counter() - start, 1)}
        print(f"{setting}: {result.describe()} ({results[setting]['seconds']} s)", flush=True)
    return {"impl": impl, "batch": batch, "alpha": law.ALPHA, "seed": law.SEED, "settings": results}


def sweep_acceptance_exact(seeds: range, only: str | None = None) -> dict:
    from pytest_specdec.law.processed_acceptance import per_state_acceptance_test, state_betas

    fired = {}
    for setting in law.SETTINGS:
        sample = acceptance.draw("reference_impl.speculative:SpeculativeDecoder", setting)
        betas = torch.tensor(state_betas(*law.pair("main"), sample.prompts, sample.sequences,
                                         law.SETTINGS[setting][0]), dtype=torch.float64)
        generator = torch.Generator().manual_seed(seeds.start)
        hits = []
        for start in range(0, len(seeds), 1_000):
            n = min(1_000, len(seeds) - start)
            accepted = torch.bernoulli(betas.expand(n, -1), generator=generator).sum(dim=1).long().tolist()
            hits += [per_state_acceptance_test(a, len(betas) - a, betas.tolist()).p_value for a in accepted]
        fired[setting] = {"fired": sum(p < acceptance.ALPHA for p in hits), "p<0.01": sum(p < 0.01 for p in hits),
                          "p<0.05": sum(p < 0.05 for p in hits), "simulations": len(hits),
                          "mean_beta": round(float(betas.mean()), 4)}
        print(f"{setting}: {fired[setting]}", flush=True)
    return {"alpha": acceptance.ALPHA, "calls": acceptance.CALLS, "fired": fired}


def sweep_acceptance_mutants(seeds: range, only: str | None = None) -> dict:
    impl, setting, fraction = acceptance.COMPANION
    hits = sum(acceptance.check(acceptance.draw(impl, setting, calls=round(acceptance.CALLS * fraction), seed=seed,
                                                jobs=1), setting).rejects(acceptance.ALPHA) for seed in seeds)
    print(f"{impl} on {setting} at {fraction:g} of the calls: {hits}/{len(seeds)}", flush=True)
    return {impl.rpartition(":")[2]: {"setting": setting, "fraction": fraction, "detected": hits, "seeds": len(seeds)}}


SWEEPS = {"exact": sweep_exact, "mutants": sweep_mutants, "acceptance-exact": sweep_acceptance_exact,
          "acceptance-mutants": sweep_acceptance_mutants, "decoder": None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=SWEEPS)
    parser.add_argument("--impl", default="reference_impl.speculative:SpeculativeDecoder")
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=9_000)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--only", help="mutants: this companion alone (its class name)")
    args = parser.parse_args(argv)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    start = time.perf_counter()
    result = sweep_decoder(args.impl, args.batch) if args.what == "decoder" else SWEEPS[args.what](seeds, args.only)
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=1)
            handle.write("\n")


if __name__ == "__main__":
    main()
