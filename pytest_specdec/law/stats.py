"""Statistics for the losslessness tests: goodness of fit, its power, and the exact laws it tests against.

- ``goodness_of_fit``: Pearson chi-square (or G-test) of observed counts against exact
  probabilities, the low-expectation tail pooled so every bin expects >= 5, observations on
  zero-probability cells reported separately (they reject outright). The ``GofResult`` carries
  the table for failure messages.
- ``power`` / ``detectable_tv``: for ``n`` draws, ``dof`` and ``alpha``, the power against any
  alternative at total-variation distance ``tv`` on the test's bins (worst case over alternatives,
  noncentral chi-square approximation) and the smallest ``tv`` detected with a given power.
- ``step_law``: the closed-form output law of one speculative rejection step, given per-position
  target and draft distributions; ``accepted_length_law``: the truncated geometric law of the
  number of accepted draft tokens.
- ``simulate_steps`` / ``rejection_step_tests``: vectorised Monte Carlo of a ``verify_sampled``-like
  function (``torch.vmap`` over independent steps) and its tests.
- ``sequence_probs`` / ``decoder_distribution_test``: the exact probability of every short
  continuation under a target with warping, and the end-to-end test of a decoder against it.

Pure functions; every draw takes an explicit ``torch.Generator``. torch and scipy are imported
where they are used, so importing this module (and the plugin) stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from reference_impl.sampling import SamplingConfig

MIN_EXPECTED = 5.0
VerifyFn = Callable[..., "tuple[torch.Tensor, torch.Tensor]"]


@dataclass(frozen=True)
class GofResult:
    """One goodness-of-fit test: the statistic, its p-value and the pooled table behind it."""

    name: str
    method: str  # "chi2" (Pearson) or "g" (likelihood ratio)
    n: int
    statistic: float
    dof: int
    pvalue: float
    labels: tuple[str, ...]
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    impossible: int = 0  # observations on cells of probability exactly 0

    def rejects(self, alpha: float) -> bool:
        return self.pvalue < alpha

    @property
    def tv(self) -> float:
        """Total variation between the observed frequencies and the law, on the test's bins."""
        if not self.n:
            return 0.0
        gaps = sum(abs(o - e) for o, e in zip(self.observed, self.expected, strict=True))
        return 0.5 * (gaps + self.impossible) / self.n

    def describe(self, max_rows: int = 24) -> str:
        """A header line and the table of observed and expected counts, largest deviations first."""
        head = (
            f"{self.name}: {self.method} = {self.statistic:.2f}, dof = {self.dof}, p = {self.pvalue:.3g}, "
            f"n = {self.n}, observed TV = {self.tv:.4f}, impossible observations = {self.impossible}"
        )
        rows = sorted(
            zip(self.labels, self.observed, self.expected, strict=True),
            key=lambda r: -abs(r[1] - r[2]) / math.sqrt(r[2]) if r[2] > 0 else 0.0,
        )
        lines = [head, f"  {'bin':>16} {'observed':>10} {'expected':>12}"]
        lines += [f"  {label:>16} {o:>10d} {e:>12.1f}" for label, o, e in rows[:max_rows]]
        if len(rows) > max_rows:
            lines.append(f"  ... {len(rows) - max_rows} more bins")
        return "\n".join(lines)


def pool_bins(
    counts: Sequence[int], probs: Sequence[float], labels: Sequence[str], n: int, min_expected: float = MIN_EXPECTED
) -> tuple[list[str], list[int], list[float], int]:
    """Keep cells expecting >= ``min_expected``; pool the rest into one tail bin that does too.

    Returns (labels, observed, expected, impossible). Pooling depends on ``probs`` and ``n``
    only, never on the observations, so the bins (and the dof) are fixed before sampling.
    """
    impossible = sum(c for c, p in zip(counts, probs, strict=True) if p <= 0)
    order = sorted((i for i, p in enumerate(probs) if p > 0), key=lambda i: -probs[i])
    kept = [i for i in order if n * probs[i] >= min_expected]
    tail = [i for i in order if n * probs[i] < min_expected]
    while tail and kept and n * sum(probs[i] for i in tail) < min_expected:
        tail.append(kept.pop())  # the smallest kept cell joins the tail
    out_labels = [labels[i] for i in kept]
    observed = [int(counts[i]) for i in kept]
    expected = [n * probs[i] for i in kept]
    if tail:
        out_labels.append(f"other({len(tail)})")
        observed.append(int(sum(counts[i] for i in tail)))
        expected.append(n * sum(probs[i] for i in tail))
    return out_labels, observed, expected, impossible


def goodness_of_fit(
    counts: Sequence[int],
    probs: Sequence[float],
    *,
    labels: Sequence[str] | None = None,
    name: str = "goodness of fit",
    method: str = "chi2",
    min_expected: float = MIN_EXPECTED,
) -> GofResult:
    """Test observed ``counts`` per cell against the exact cell ``probs`` (which sum to 1)."""
    from scipy.stats import chi2

    if len(counts) != len(probs):
        raise ValueError(f"{len(counts)} counts but {len(probs)} probabilities")
    total = float(sum(probs))
    if not math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-6):
        raise ValueError(f"probabilities sum to {total}, not 1")
    probs = [max(p, 0.0) / total for p in probs]
    n = int(sum(counts))
    labels = [str(i) for i in range(len(counts))] if labels is None else list(labels)
    bins, observed, expected, impossible = pool_bins(counts, probs, labels, n, min_expected)
    dof = max(len(bins) - 1, 0)
    if method not in ("chi2", "g"):
        raise ValueError(f"method must be 'chi2' or 'g', got {method!r}")
    if impossible:
        statistic, pvalue = math.inf, 0.0
    elif dof == 0:  # one bin (or no draws): nothing to test beyond the impossible cells
        statistic, pvalue = 0.0, 1.0
    elif method == "chi2":
        statistic = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
        pvalue = float(chi2.sf(statistic, dof))
    else:
        statistic = 2 * sum(o * math.log(o / e) for o, e in zip(observed, expected, strict=True) if o > 0)
        pvalue = float(chi2.sf(statistic, dof))
    return GofResult(
        name, method, n, float(statistic), dof, pvalue, tuple(bins), tuple(observed), tuple(expected), impossible
    )


def power(n: int, dof: int, alpha: float, tv: float) -> float:
    """Power of the level-``alpha`` chi-square test with ``dof`` against any law at distance ``tv``.

    For an alternative r at total variation tv from the null p (on the test's bins), the
    noncentrality n * sum((r - p)^2 / p) is at least 4 n tv^2 (Cauchy-Schwarz), and power grows
    with it, so ncx2(dof, 4 n tv^2) beyond the critical value is a lower bound (asymptotic).
    """
    from scipy.stats import chi2, ncx2

    if dof < 1:
        return 0.0
    return float(ncx2.sf(chi2.isf(alpha, dof), dof, 4 * n * tv * tv))


def detectable_tv(n: int, dof: int, alpha: float, target_power: float = 0.99) -> float:
    """The smallest total variation the test detects with ``target_power`` (inf if none up to 1)."""
    from scipy.optimize import brentq

    if n < 1 or dof < 1 or power(n, dof, alpha, 1.0) < target_power:
        return math.inf
    return float(brentq(lambda tv: power(n, dof, alpha, tv) - target_power, 1e-9, 1.0, xtol=1e-7))


def planned_dof(probs: Sequence[float], n: int, min_expected: float = MIN_EXPECTED) -> int:
    """The dof ``goodness_of_fit`` will use for ``n`` draws from ``probs`` (known before sampling)."""
    labels = [""] * len(probs)
    bins = pool_bins([0] * len(probs), list(probs), labels, n, min_expected)[0]
    return max(len(bins) - 1, 0)


# --- one rejection step ------------------------------------------------------------------------


@dataclass(frozen=True)
class StepLaw:
    """The exact output law of one speculative step with per-position (prefix-free) distributions."""

    token_probs: torch.Tensor  # (gamma + 1, vocab): P(token at position j = x | the step reaches j)
    betas: torch.Tensor  # (gamma,): P(draft token j accepted | the step reaches j)
    accepted_length: torch.Tensor  # (gamma + 1,): P(exactly k draft tokens accepted)


def acceptance_rates(target_probs: torch.Tensor, draft_probs: torch.Tensor) -> torch.Tensor:
    """(..., vocab) x2 -> (...): beta = sum_x min(target, draft) = 1 - TV(target, draft)."""
    return target_probs.minimum(draft_probs).sum(dim=-1)


def accepted_length_law(betas: torch.Tensor) -> torch.Tensor:
    """(gamma,) -> (gamma + 1,): P(n = k) = beta_0 ... beta_{k-1} (1 - beta_k), P(n = gamma) = prod beta.

    The truncated geometric law (beta^k (1 - beta), truncated at gamma) when all betas are equal.
    """
    import torch

    reach = torch.cat([betas.new_ones(1), betas.cumprod(dim=0)])  # P(n >= k)
    return torch.cat([reach[:-1] * (1 - betas), reach[-1:]])


def step_law(
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor,
    *,
    accept_fn: Callable[..., torch.Tensor] | None = None,
    residual_fn: Callable[..., torch.Tensor] | None = None,
) -> StepLaw:
    """(gamma + 1, vocab), (gamma, vocab) -> the closed-form law of one step.

    Position j < gamma emits the draft token x with probability draft(x) * accept(x), else (with
    probability 1 - beta_j) a token from the residual; position gamma emits the bonus token from
    the target. ``accept_fn`` and ``residual_fn`` default to the reference's pure functions
    (``accept_probs``, ``residual_probs``); pass others to test them.
    """
    import torch

    from reference_impl.sampling import accept_probs, residual_probs

    accept_fn = accept_fn or accept_probs
    residual_fn = residual_fn or residual_probs
    gamma, vocab = draft_probs.shape
    target_rows = target_probs[:gamma]
    every_token = torch.arange(vocab, device=draft_probs.device).repeat(gamma)  # (gamma * vocab,)
    accept = accept_fn(
        target_rows.repeat_interleave(vocab, dim=0), draft_probs.repeat_interleave(vocab, dim=0), every_token
    ).view(gamma, vocab)
    accepted_mass = torch.where(draft_probs > 0, draft_probs * accept, torch.zeros_like(draft_probs))
    betas = accepted_mass.sum(dim=-1)
    emitted = accepted_mass + (1 - betas).unsqueeze(-1) * residual_fn(target_rows, draft_probs)
    token_probs = torch.cat([emitted, target_probs[gamma:]])
    return StepLaw(token_probs, betas, accepted_length_law(betas))


def simulate_steps(
    verify: VerifyFn,
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor,
    n: int,
    generator: torch.Generator,
    *,
    proposal_probs: torch.Tensor | None = None,
    chunk: int = 250_000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` independent steps of ``verify`` -> (n_accepted (n,), emitted tokens (n, gamma + 1), -1 = none).

    Draft tokens are drawn from ``proposal_probs`` (default ``draft_probs``, the distribution
    ``verify`` is told about); a mismatch models a draft that samples from one distribution and
    reports another. ``verify(target_probs, draft_probs, draft_tokens, generator)`` returns
    (n_accepted, next_token) as 0-d tensors (next_token < 0: no token) and is vectorised with
    ``torch.vmap(randomness="different")``, so the real, unbatched function is what runs.
    """
    import torch

    proposal = draft_probs if proposal_probs is None else proposal_probs
    gamma = draft_probs.shape[0]
    batched = torch.vmap(lambda tokens: verify(target_probs, draft_probs, tokens, generator), randomness="different")
    accepted, emitted = [], []
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        draft_tokens = torch.multinomial(proposal, size, replacement=True, generator=generator).T  # (size, gamma)
        n_accepted, next_token = batched(draft_tokens)
        tokens = torch.cat([draft_tokens, draft_tokens.new_zeros(size, 1)], dim=1)
        tokens = tokens.masked_fill(torch.arange(gamma + 1) >= n_accepted.unsqueeze(-1), -1)
        tokens[torch.arange(size), n_accepted] = next_token.long().clamp_min(-1)
        accepted.append(n_accepted.long())
        emitted.append(tokens)
    return torch.cat(accepted), torch.cat(emitted)


def rejection_step_tests(
    target_probs: torch.Tensor, n_accepted: torch.Tensor, tokens: torch.Tensor, law: StepLaw | None = None
) -> list[GofResult]:
    """Per position j: tokens emitted at j by the steps that reached j, against ``target_probs[j]``;
    then the number of tokens each step emitted, against 1 + the accepted-length law (``law``,
    from ``step_law``). Position j's test has "none" (no token emitted) as an impossible cell.
    """
    import torch

    gamma_plus_1, vocab = target_probs.shape
    labels = [*map(str, range(vocab)), "none"]
    results = []
    for j in range(gamma_plus_1):
        at_j = tokens[n_accepted >= j, j]
        counts = torch.bincount(at_j.clamp_min(-1) % (vocab + 1), minlength=vocab + 1).tolist()  # -1 -> "none"
        probs = [*target_probs[j].tolist(), 0.0]
        results.append(goodness_of_fit(counts, probs, labels=labels, name=f"position {j} token"))
    if law is not None:
        lengths = (tokens >= 0).sum(dim=1)
        counts = torch.bincount(lengths, minlength=gamma_plus_1 + 1).tolist()
        probs = [0.0, *law.accepted_length.tolist()]
        results.append(
            goodness_of_fit(counts, probs, labels=[f"len{k}" for k in range(len(probs))], name="tokens per step")
        )
    return results


# --- whole sequences under a model --------------------------------------------------------------


def sequence_probs(target: Any, prompt: torch.Tensor, sampling: SamplingConfig, length: int) -> torch.Tensor:
    """(1, prompt_len) -> (vocab ** length,) float64: the target's exact probability of every
    continuation of ``length`` tokens under ``sampling`` (warped with the reference's
    ``probs_from_logits``), indexed lexicographically (token t has weight vocab ** (length - 1 - t)).
    """
    import torch

    from reference_impl.sampling import probs_from_logits

    vocab = target.get_output_embeddings().weight.shape[0]
    prefixes = prompt.new_zeros(1, 0)  # (vocab ** t, t)
    probs = torch.ones(1, dtype=torch.float64, device=prompt.device)
    with torch.inference_mode():
        for _ in range(length):
            ids = torch.cat([prompt.expand(prefixes.shape[0], -1), prefixes], dim=1)
            logits = target(input_ids=ids, use_cache=False).logits[:, -1]  # (vocab ** t, vocab)
            step = probs_from_logits(logits, sampling).double()
            probs = (probs.unsqueeze(-1) * step).reshape(-1)
            tokens = torch.arange(vocab, device=prompt.device).repeat(prefixes.shape[0]).unsqueeze(-1)
            prefixes = torch.cat([prefixes.repeat_interleave(vocab, dim=0), tokens], dim=1)
    return probs


def sequence_index(sequences: torch.Tensor, vocab: int) -> torch.Tensor:
    """(n, length) tokens -> (n,) lexicographic indices into ``sequence_probs``."""
    import torch

    length = sequences.shape[1]
    weights = vocab ** torch.arange(length - 1, -1, -1, device=sequences.device)
    return (sequences * weights).sum(dim=1)


def sample_sequences(
    decoder: Any,
    prompt: torch.Tensor,
    sampling: SamplingConfig,
    *,
    n: int,
    length: int,
    generator: torch.Generator,
    gamma: int | None = None,
) -> torch.Tensor:
    """``n`` calls of ``decoder.generate`` sharing one generator -> (n, length) tokens."""
    import torch

    rows = []
    for _ in range(n):
        result = decoder.generate(prompt, max_new_tokens=length, sampling=sampling, gamma=gamma, generator=generator)
        if len(result.tokens) != length:
            raise AssertionError(f"asked for {length} new tokens without EOS, got {len(result.tokens)}")
        rows.append(result.tokens)
    return torch.tensor(rows, dtype=torch.long)


def decoder_distribution_test(
    decoder: Any,
    target: Any,
    prompt: torch.Tensor,
    sampling: SamplingConfig,
    *,
    n: int,
    seed: int,
    length: int = 4,
    gamma: int | None = None,
    method: str = "chi2",
) -> GofResult:
    """Sample ``n`` continuations of ``length`` tokens from ``decoder`` (one generator seeded with
    ``seed``) and test their joint law against the target's exact sequence probabilities."""
    import torch

    exact = sequence_probs(target, prompt, sampling, length)
    vocab = target.get_output_embeddings().weight.shape[0]
    generator = torch.Generator(device=prompt.device).manual_seed(seed)
    sequences = sample_sequences(decoder, prompt, sampling, n=n, length=length, generator=generator, gamma=gamma)
    counts = torch.bincount(sequence_index(sequences, vocab), minlength=vocab**length).tolist()
    every_sequence = torch.cartesian_prod(*[torch.arange(vocab)] * length).view(-1, length)  # lexicographic
    labels = [",".join(map(str, row)) for row in every_sequence.tolist()]
    return goodness_of_fit(
        counts, exact.tolist(), labels=labels, method=method, name=f"{length}-token sequences, {sampling.describe()}"
    )
