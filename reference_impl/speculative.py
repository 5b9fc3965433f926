"""The reference speculative decoder (Leviathan et al. 2023; Chen et al. 2023).

One step: the draft proposes gamma tokens (one pass each), the target scores them all in one
pass, the rejection test keeps the longest accepted prefix and adds one token from the residual
or, when all gamma were accepted, a bonus token from the target. Both KV caches are then cropped
back to the accepted prefix. The first token comes from the target's prefill, before any draft
work, so time to first token equals the autoregressive baseline's.

``gamma="auto"`` picks each step's gamma from the decoder's running alpha estimate and the costs
of drafting and verifying measured on the device (``autogamma``): the costs are measured once,
at the first speculative step (after the first token), unless passed in as ``costs``; the
probe passes count in that call's stats, as passes the call ran. The alpha
estimate carries over between calls, so with auto gamma the gammas (not the distribution of the
output) depend on what the decoder decoded before.

Request features (``processing``: logit bias, min_new_tokens, penalties; min-p; stop sequences;
logprobs) act on every position: each draft position and each verify row sees the history up to
it, the draft tokens before it included, and a stop ends the output at the token that completes
it, inside an accepted block too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .autogamma import AlphaTracker, CostModel, choose_gamma, measure_costs
from .checks import check_features, check_gamma, check_pair, check_request, default_generator
from .errors import InvalidGammaError
from .kv import CachedLM, check_finite, model_device
from .output import TokenSink
from .processing import CAPABILITIES, CallState
from .sampling import (
    GREEDY,
    SamplingConfig,
    choose_token,
    probs_from_logits,
    sample,
    verify_greedy,
    verify_sampled,
)
from .stats import DecodeResult, StatsCounter

AUTO = "auto"
def check_gamma_or_auto(gamma: object) -> int | str:
    """A valid fixed gamma, or ``"auto"`` (chosen each step from measured alpha and costs)."""
    if isinstance(gamma, str):
        if gamma == AUTO:
            return AUTO
        raise InvalidGammaError(
            f"gamma must be an integer >= 1 (draft tokens per step) or 'auto', got {gamma!r}; typical values are 2 to 8"
        )
    return check_gamma(gamma)


class SpeculativeDecoder:
    """Draft-then-verify decoding of ``target`` with ``draft``, batch size 1, exact in distribution."""

    name = "speculative"
    capabilities = CAPABILITIES
    call_state = CallState  # per-call processing state (processing.CallState)
    token_sink = TokenSink  # where emitted tokens go, and when to stop (output.TokenSink)

    def __init__(
        self,
        target: torch.nn.Module,
        draft: torch.nn.Module,
        *,
        gamma: int | str = 4,
        costs: CostModel | None = None,
    ) -> None:
        check_pair(target, draft)
        self.target = target
        self.draft = draft
        self.gamma = check_gamma_or_auto(gamma)
        self.costs = costs
        self.alpha = AlphaTracker()
        self._target = CachedLM(target)
        self._draft = CachedLM(draft)

    def choose_gamma(self, max_gamma: int | None = None) -> int:
        """Auto gamma: the best predicted speedup at the running alpha estimate (costs measured once)."""
        if self.costs is None:
            self.costs = measure_costs(self.target, self.draft, count_into=(self._target, self._draft))
        return choose_gamma(self.alpha.alpha, self.costs, max_gamma=max_gamma)

    def _step_gamma(self, gamma: int | str, remaining: int) -> int:
        """Draft tokens for the next step: at most remaining - 1, as the step adds one token of its own."""
        if remaining <= 1:
            return 0
        return self.choose_gamma(remaining - 1) if gamma == AUTO else min(gamma, remaining - 1)

    def generate(
        self,
        input_ids: torch.Tensor,
        *,
        max_new_tokens: int,
        sampling: SamplingConfig = GREEDY,
        gamma: int | str | None = None,
        eos_token_id: int | None = None,
        generator: torch.Generator | None = None,
        on_token: Callable[[int], None] | None = None,
        min_new_tokens: int = 0,
        stop: Sequence[Sequence[int]] = (),
        logprobs: int | None = None,
    ) -> DecodeResult:
        """(1, prompt_len) prompt -> the new tokens and their stats. gamma None: the decoder's own."""
        gamma = check_gamma_or_auto(self.gamma if gamma is None else gamma)
        check_request(self.target, input_ids, max_new_tokens, sampling, generator)
        min_new_tokens, stop, logprobs = check_features(min_new_tokens, stop, logprobs)
        if generator is None and not sampling.greedy:
            generator = default_generator(model_device(self.target))
        self._target.reset()
        self._draft.reset()
        vocab = self.target.get_output_embeddings().weight.shape[0]
        self.call = self.call_state.of(input_ids, vocab, sampling, min_new_tokens, eos_token_id, logprobs)
        sink = self.token_sink(max_new_tokens, eos_token_id, on_token, stop=stop, min_new_tokens=min_new_tokens,
                               logprobs=logprobs is not None)
        counter = StatsCounter()
        prompt_len = input_ids.shape[1]
        seq = torch.empty(prompt_len + max_new_tokens, dtype=torch.long, device=input_ids.device)
        seq[:prompt_len] = input_ids[0]
        length = prompt_len
        with torch.inference_mode():
            while not sink.finished:
                step_gamma = self._step_gamma(gamma, sink.remaining) if length > prompt_len else 0
                self.call.step_logprobs = None
                if step_gamma == 0:
                    new, n_accepted = self._target_step(seq, length, sampling, generator), 0
                else:
                    new, n_accepted = self.step(seq, length, step_gamma, sampling, generator)
                emitted = sink.emit(new, self.call.step_logprobs)
                self.call.record(new[:emitted], seq.device)
                if length == prompt_len:
                    counter.forwards_before_first_token = self._target.forwards + self._draft.forwards
                if step_gamma:
                    rejected = n_accepted < step_gamma and emitted > n_accepted
                    counter.record_step(step_gamma, min(n_accepted, emitted), rejected)
                    self.alpha.update(min(n_accepted, emitted), rejected)
                length += len(new)
        counter.new_tokens = len(sink.tokens)
        return DecodeResult(tokens=sink.tokens, stats=counter.freeze(self._target, self._draft), logprobs=sink.logprobs)

    def step(
        self,
        seq: torch.Tensor,
        length: int,
        gamma: int,
        sampling: SamplingConfig,
        generator: torch.Generator | None,
    ) -> tuple[list[int], int]:
        """One speculative step on ``seq[:length]``; writes the new tokens into ``seq``.

        Returns (the accepted draft tokens plus the correction or bonus token, n accepted).
        """
        # 1. Draft gamma tokens, one pass each; the first pass also catches the draft up with seq.
        pending = seq[self._draft.length : length]
        draft_tokens, draft_probs, finite = [], [], []
        for _ in range(gamma):
            logits = self._draft.forward(pending)[-1]  # (vocab,)
            finite.append(torch.isfinite(logits).all())
            logits = self.call.processed(logits.unsqueeze(0), draft_tokens)[0]  # history + the tokens drafted so far
            if sampling.greedy:
                token = logits.argmax()
            else:
                probs = probs_from_logits(logits, sampling)  # the distribution the token is drawn from
                token = sample(probs.unsqueeze(0), generator)[0]
                draft_probs.append(probs)
            draft_tokens.append(token)
            pending = token.view(1)
        draft_tokens = torch.stack(draft_tokens)  # (gamma,)

        # 2. One target pass over the last committed token and the gamma draft tokens.
        verify_input = torch.cat([seq[self._target.length : length], draft_tokens])
        target_logits = self._target.forward(verify_input, keep=gamma + 1)  # (gamma + 1, vocab)
        finite.append(torch.isfinite(target_logits).all())
        processed = self.call.processed(target_logits, draft_tokens)  # row i: history + draft_tokens[:i]

        # 3. Accept or reject on the device.
        if sampling.greedy:
            n_accepted, next_token = verify_greedy(processed, draft_tokens)
        else:
            target_probs = probs_from_logits(processed, sampling)
            n_accepted, next_token = verify_sampled(target_probs, torch.stack(draft_probs), draft_tokens, generator)

        # 4. One transfer to the host per step.
        tail = torch.stack([next_token, n_accepted, torch.stack(finite).all().long()])
        *drafted, next_id, n, ok = torch.cat([draft_tokens, tail]).tolist()
        check_finite(bool(ok), "draft or target")
        seq[length : length + n] = draft_tokens[:n]
        seq[length + n] = next_token
        self.call.keep_logprobs(processed, target_logits, [*drafted[:n], next_id])

        # 5. Crop both caches to the accepted prefix; the new last token is fed on the next step.
        self._target.rollback(length + n)
        self._draft.rollback(length + n)
        return [*drafted[:n], next_id], n

    def _target_step(
        self, seq: torch.Tensor, length: int, sampling: SamplingConfig, generator: torch.Generator | None
    ) -> list[int]:
        """One plain target pass: the prefill's first token, or the last token when only one is left."""
        logits = self._target.forward(seq[self._target.length : length])[-1:]  # (1, vocab)
        processed = self.call.processed(logits)
        token = choose_token(processed[0], sampling, generator)
        token_id, finite = torch.stack([token, torch.isfinite(logits).all().long()]).tolist()
        check_finite(bool(finite), "target")
        seq[length] = token
        self.call.keep_logprobs(processed, logits, [token_id])
        return [token_id]
