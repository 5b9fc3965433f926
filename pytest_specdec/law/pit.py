"""An exact distribution test for sampled sequences over a large vocabulary: the sequential PIT.

The sequence-law test (``stats.decoder_distribution_test``) enumerates every continuation, which
needs a vocabulary of a few tokens. A serving engine runs a real pair (4096 tokens), so this test
works token by token instead. For each sampled token x_t the target's exact conditional law p_t
at the sampled prefix (one batched target pass per sequence, the suite's warpers) gives a
randomized probability integral transform

    U_t = P_t(tokens ranked before x_t) + V_t * p_t(x_t),   V_t ~ Uniform(0, 1) independent,

with tokens ranked by p_t (most likely first, ties by id). If every token is drawn from the
target's conditional law, each U_t is Uniform(0, 1) given everything before it, so all U_t of
all sequences are i.i.d. uniform (Rosenblatt): a Kolmogorov-Smirnov test of the pooled U's is
exact at any sample size, whatever the vocabulary. A token outside the warped support (p_t(x) =
0: outside top-k / top-p) is impossible under the law and fails the test on its own, except a
token at the very edge of the top-p set (mass before it within ``top_p_slack`` of ``top_p``),
where another implementation's rounding legitimately decides the other way: it is left out and
counted (leaving out a handful of tokens by the target's own probabilities moves the U law by
at most their share).

Reach: the KS statistic rejects at ``alpha`` when it exceeds ``c = sqrt(ln(2/alpha) / 2n)``
(DKW); a decoder whose pooled U law is at KS distance ``d`` from uniform is detected with
power >= 0.99 when ``d >= c + sqrt(ln(200) / 2n)`` (``detectable_ks``). Sampling a law q_t
instead of p_t moves the U law by at most the average TV(p_t, q_t), so the figure is also a
floor on the per-token TV the test can see; biases toward likely tokens (a draft's typical
error, an accept-everything bug, a temperature applied on one side) move U toward 0 and are
what it sees best.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PitResult:
    n: int
    ks: float
    p_value: float
    impossible: int  # tokens of probability 0 under the warped target law
    boundary: int = 0  # tokens just outside the top-p set, within ``top_p_slack`` of its edge (left out)

    def rejects(self, alpha: float) -> bool:
        """Impossible tokens, a small p-value, or no token to test at all (an empty test must not pass)."""
        return self.impossible > 0 or not self.p_value >= alpha

    def describe(self) -> str:
        return (f"sequential PIT over {self.n} tokens: KS = {self.ks:.4f}, p = {self.p_value:.3g}, "
                f"{self.impossible} impossible token(s), {self.boundary} at the top-p edge left out")


def detectable_ks(n: int, alpha: float, power: float = 0.99) -> float:
    """Smallest KS distance of the U law from uniform detected with ``power`` at level ``alpha`` (DKW bounds)."""
    return math.sqrt(math.log(2 / alpha) / (2 * n)) + math.sqrt(math.log(2 / (1 - power)) / (2 * n))


def pit_values(
    target: Any, prompt: Any, sequences: list[list[int]], sampling: Any, seed: int, top_p_slack: float = 0.0
) -> tuple[list[float], int, int]:
    """The randomized PIT of every token under the target's warped conditional laws, impossible and edge counts.

    ``top_p_slack``: a token outside the top-p set whose probability mass before it is within this of
    ``top_p`` is an edge case of two implementations' rounding (another kernel may include it), not an
    impossible token; it is left out of the test and counted.
    """
    import dataclasses

    import torch

    from reference_impl.sampling import probs_from_logits

    uniforms = torch.Generator().manual_seed(seed)
    values: list[float] = []
    impossible = edge = 0
    looser = dataclasses.replace(sampling, top_p=min(1.0, sampling.top_p + top_p_slack)) if top_p_slack else None
    start = prompt.shape[1]
    for tokens in sequences:
        if not tokens:
            continue
        ids = torch.cat([prompt[0].cpu(), torch.tensor(tokens, dtype=torch.long)]).unsqueeze(0).to(prompt.device)
        with torch.inference_mode():
            logits = target(input_ids=ids, use_cache=False).logits[0, start - 1 : start - 1 + len(tokens)]
        probs = probs_from_logits(logits.double().cpu(), sampling)
        chosen = torch.tensor(tokens)
        u, keep = randomized_pit(probs, chosen, uniforms)
        if looser is not None and sampling.top_p < 1.0:
            loose = probs_from_logits(logits.double().cpu(), looser).gather(1, chosen.unsqueeze(1))[:, 0]
            at_edge = ~keep & (loose > 0)
            edge += int(at_edge.sum())
            impossible += int((~keep & ~at_edge).sum())
        else:
            impossible += int((~keep).sum())
        values += u[keep].tolist()
    return values, impossible, edge


def randomized_pit(probs: Any, tokens: Any, uniforms: Any) -> tuple[Any, Any]:
    """(n, vocab) laws, (n,) tokens -> (n,) U values and (n,) bool: the token has probability > 0.

    U = P(tokens ranked before x) + V * p(x), ranked by probability (ties by id), V uniform from ``uniforms``.
    """
    import torch

    p_chosen = probs.gather(1, tokens.unsqueeze(1)).squeeze(1)
    vocab = torch.arange(probs.shape[1])
    before = (probs > p_chosen.unsqueeze(1)) | ((probs == p_chosen.unsqueeze(1)) & (vocab < tokens.unsqueeze(1)))
    v = torch.rand(len(tokens), generator=uniforms, dtype=torch.float64)
    return ((probs * before).sum(dim=1) + v * p_chosen).clamp(0.0, 1.0), p_chosen > 0


def pit_test(
    target: Any, prompt: Any, sequences: list[list[int]], sampling: Any, seed: int = 0, top_p_slack: float = 0.0
) -> PitResult:
    from scipy import stats

    values, impossible, edge = pit_values(target, prompt, sequences, sampling, seed, top_p_slack)
    if not values:  # nothing to test: a nan p-value, which no threshold accepts
        return PitResult(n=0, ks=math.nan, p_value=math.nan, impossible=impossible, boundary=edge)
    result = stats.kstest(values, "uniform")
    return PitResult(n=len(values), ks=float(result.statistic), p_value=float(result.pvalue), impossible=impossible,
                     boundary=edge)


def processed_pit_test(
    target: Any, prompts: list[tuple[int, ...]], sequences: list[list[int]], sampling: Any, seed: int = 0,
    chunk: int = 8_192,
) -> PitResult:
    """The sequential PIT of sequences with their own prompts under the request's history-dependent processing.

    Each token's law is the target's processed law at its whole prefix (``reference_impl.processing``: logit
    bias and penalties over the prompt and the tokens before it, then the warpers, min-p included), from one
    teacher-forced pass per sequence; the laws are computed ``chunk`` rows at a time. Without such features it
    is the plain warped law.
    """
    import torch
    from scipy import stats

    from reference_impl.processing import History, process_logits
    from reference_impl.sampling import probs_from_logits

    uniforms = torch.Generator().manual_seed(seed)
    values: list[float] = []
    impossible = 0
    pending: list[tuple[Any, ...]] = []

    def flush() -> None:
        nonlocal impossible
        logits, seen, counts, generated, chosen = (torch.cat(part) for part in zip(*pending, strict=True))
        probs = probs_from_logits(process_logits(logits, sampling, seen, counts, generated), sampling)
        u, keep = randomized_pit(probs, chosen, uniforms)
        impossible += int((~keep).sum())
        values.extend(u[keep].tolist())
        pending.clear()

    for prompt, tokens in zip(prompts, sequences, strict=True):
        if not tokens:
            continue
        prompt_ids = torch.tensor([prompt], dtype=torch.long)
        chosen = torch.tensor(tokens, dtype=torch.long)
        with torch.inference_mode():
            ids = torch.cat([prompt_ids[0], chosen]).unsqueeze(0).to(target.device)
            logits = target(input_ids=ids, use_cache=False).logits[0, len(prompt) - 1 : len(prompt) - 1 + len(tokens)]
        rows = History.of_prompt(prompt_ids, logits.shape[-1]).rows(chosen[:-1])
        pending.append((logits.double().cpu(), *rows, chosen))
        if sum(len(part[-1]) for part in pending) >= chunk:
            flush()
    if pending:
        flush()
    if not values:
        return PitResult(n=0, ks=math.nan, p_value=math.nan, impossible=impossible)
    result = stats.kstest(values, "uniform")
    return PitResult(n=len(values), ks=float(result.statistic), p_value=float(result.pvalue), impossible=impossible)
