"""Request features whose effect depends on the history: logit bias, min_new_tokens, penalties.

Pure functions over tensors, used alike by the draft and the target, greedy and sampled, one
token at a time or ``gamma + 1`` verify positions at once. The processed logits at a position
depend on everything before it: the prompt, every token emitted before, and, inside a
speculative step, the draft tokens before that position (which are exactly the tokens emitted
before it if they are accepted). Speculation is lossless only if each verify row sees that
whole history; the shipped bugs (FIELD-NOTES, "Request features under speculation") update it
once per step instead.

The order, defined once (``SamplingConfig`` holds the parameters):

1. logit bias: ``logits[token] += bias`` (``-inf`` bans a token);
2. min_new_tokens: the EOS token is banned at every position where fewer than
   ``min_new_tokens`` tokens were generated before it;
3. repetition penalty (Hugging Face / llama.cpp semantics, over the prompt and the generated
   tokens): a logit of a token seen before is divided by the penalty if positive, multiplied if not;
4. presence and frequency penalties (OpenAI semantics, over the generated tokens only):
   ``logits[token] -= presence * (count > 0) + frequency * count``;
5. then the warpers of ``sampling``: temperature, top-k, top-p, min-p.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .errors import InvalidSamplingError
from .sampling import SamplingConfig, probs_dtype, warp_logits
from .stats import TokenLogprob


@dataclass
class History:
    """What the processed law of the next position depends on, kept on the models' device.

    ``seen``: (vocab,) bool, tokens of the prompt or generated (the repetition penalty's set);
    ``counts``: (vocab,) counts of generated tokens (presence and frequency penalties);
    ``generated``: how many tokens were generated.
    """

    seen: torch.Tensor
    counts: torch.Tensor
    generated: int = 0

    @classmethod
    def of_prompt(cls, input_ids: torch.Tensor, vocab: int) -> History:
        """(1, prompt_len) -> the history before the first new token."""
        seen = torch.zeros(vocab, dtype=torch.bool, device=input_ids.device)
        seen[input_ids[0]] = True
        return cls(seen=seen, counts=torch.zeros(vocab, dtype=torch.float32, device=input_ids.device))

    def extend(self, tokens: torch.Tensor) -> None:
        """Add generated ``tokens`` (n,) in order."""
        if tokens.numel():
            self.seen[tokens] = True
            self.counts.index_add_(0, tokens, torch.ones(tokens.shape[0], dtype=self.counts.dtype,
                                                         device=self.counts.device))
            self.generated += tokens.shape[0]

    def rows(self, drafted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The histories of the positions after each prefix of ``drafted`` (k,): row i has drafted[:i] added.

        -> seen (k+1, vocab) bool, counts (k+1, vocab), generated (k+1,) long.
        """
        k, vocab = drafted.shape[0], self.counts.shape[0]
        added = torch.zeros(k + 1, vocab, dtype=self.counts.dtype, device=self.counts.device)
        if k:
            one_hot = torch.nn.functional.one_hot(drafted, vocab).to(self.counts.dtype)
            added[1:] = one_hot.cumsum(dim=0)
        counts = self.counts.unsqueeze(0) + added
        seen = self.seen.unsqueeze(0) | (added > 0)
        generated = self.generated + torch.arange(k + 1, device=self.counts.device)
        return seen, counts, generated


def uses_history(sampling: SamplingConfig, min_new_tokens: int = 0, eos_token_id: int | None = None) -> bool:
    """Whether any feature of this request reads the history (if not, processing is the identity)."""
    return bool(sampling.logit_bias or sampling.repetition_penalty != 1.0 or sampling.presence_penalty
                or sampling.frequency_penalty or (min_new_tokens and eos_token_id is not None))


def process_logits(
    logits: torch.Tensor,
    sampling: SamplingConfig,
    seen: torch.Tensor,
    counts: torch.Tensor,
    generated: torch.Tensor,
    *,
    min_new_tokens: int = 0,
    eos_token_id: int | None = None,
) -> torch.Tensor:
    """(n, vocab) logits, with (n, vocab) seen, (n, vocab) counts, (n,) generated -> (n, vocab) processed logits.

    Steps 1-4 of the module docstring; the warpers come after (``sampling.probs_from_logits``).
    """
    if not uses_history(sampling, min_new_tokens, eos_token_id):
        return logits
    out = logits.to(probs_dtype(logits)).clone()
    for token, bias in sampling.logit_bias:
        out[..., token] += bias
    if min_new_tokens and eos_token_id is not None:
        out[..., eos_token_id] = out[..., eos_token_id].masked_fill(generated < min_new_tokens, -math.inf)
    if sampling.repetition_penalty != 1.0:
        penalised = torch.where(out > 0, out / sampling.repetition_penalty, out * sampling.repetition_penalty)
        out = torch.where(seen, penalised, out)
    if sampling.presence_penalty or sampling.frequency_penalty:
        counts = counts.to(out.dtype)
        out = out - sampling.presence_penalty * (counts > 0).to(out.dtype) - sampling.frequency_penalty * counts
    return out


def law_logprobs(processed: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """(n, vocab) processed logits -> (n, vocab) log-probabilities of the target's processed law.

    Sampled: the warped law the token is drawn from. Greedy: the processed logits at temperature 1,
    untruncated (the law is otherwise a point mass, and its logprobs say nothing).
    """
    if sampling.greedy:
        return processed.to(probs_dtype(processed)).log_softmax(dim=-1)
    return warp_logits(processed, sampling).log_softmax(dim=-1)


def token_logprobs(law: torch.Tensor, raw_logits: torch.Tensor, tokens: torch.Tensor, top: int) -> list[TokenLogprob]:
    """(n, vocab) law log-probs, (n, vocab) raw logits, (n,) tokens -> one ``TokenLogprob`` per row (one transfer)."""
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    chosen = law[rows, tokens]
    raw = raw_logits.to(law.dtype).log_softmax(dim=-1)[rows, tokens]
    values, indices = law.topk(min(top, law.shape[-1]), dim=-1) if top else (law[:, :0], tokens[:, None][:, :0])
    chosen_l, raw_l, values_l, indices_l = (x.tolist() for x in (chosen, raw, values, indices))
    return [
        TokenLogprob(logprob=c, top=tuple(zip(i, v, strict=True)), raw=r)
        for c, r, v, i in zip(chosen_l, raw_l, values_l, indices_l, strict=True)
    ]


# capability names (pytest_specdec.protocol.capabilities says what each means): the classic request, and what
# the reference decoders implement, every request feature
CLASSIC = frozenset({"greedy", "temperature", "top_k", "top_p", "streaming", "gamma", "eos"})
CAPABILITIES = CLASSIC | {"min_p", "repetition_penalty", "presence_penalty", "frequency_penalty", "logit_bias",
                          "min_new_tokens", "stop", "logprobs"}


@dataclass
class CallState:
    """What one ``generate`` call asks beyond tokens: the processing history and the logprobs to keep."""

    sampling: SamplingConfig
    min_new_tokens: int = 0
    eos_token_id: int | None = None
    history: History | None = None  # None: no feature reads the history, processing is the identity
    logprobs: int | None = None  # None: off; n: keep each token's logprob and its top n alternatives
    step_logprobs: list[TokenLogprob] | None = None  # the last step's, one per token it returned

    @classmethod
    def of(cls, input_ids: torch.Tensor, vocab: int, sampling: SamplingConfig, min_new_tokens: int,
           eos_token_id: int | None, logprobs: int | None) -> CallState:
        outside = [token for token, _ in sampling.logit_bias if token >= vocab]
        if outside:
            raise InvalidSamplingError(f"logit_bias names token(s) {outside}, but the vocabulary has {vocab} tokens")
        history = History.of_prompt(input_ids, vocab) if uses_history(sampling, min_new_tokens, eos_token_id) else None
        return cls(sampling, min_new_tokens, eos_token_id, history, logprobs)

    def processed(self, logits: torch.Tensor, drafted: Sequence[torch.Tensor] | torch.Tensor = ()) -> torch.Tensor:
        """(n, vocab) logits of the last n of the positions after each prefix of ``drafted`` -> processed logits.

        A verify pass has n = k + 1 rows for k drafted tokens; a draft pass one row, after all of them.
        """
        if self.history is None:
            return logits
        drafted = torch.stack(list(drafted)) if len(drafted) else logits.new_empty(0, dtype=torch.long)
        n = logits.shape[0]
        seen, counts, generated = self.history.rows(drafted)
        return process_logits(logits, self.sampling, seen[-n:], counts[-n:], generated[-n:],
                              min_new_tokens=self.min_new_tokens, eos_token_id=self.eos_token_id)

    def keep_logprobs(self, processed: torch.Tensor, raw: torch.Tensor, tokens: list[int]) -> None:
        """Rows (n, vocab) of the positions of the n ``tokens`` a step returns."""
        if self.logprobs is not None:
            chosen = torch.tensor(tokens, device=raw.device)
            law = law_logprobs(processed[: len(tokens)], self.sampling)
            self.step_logprobs = token_logprobs(law, raw[: len(tokens)], chosen, self.logprobs)

    def record(self, tokens: list[int], device: torch.device) -> None:
        """The tokens emitted, in order: they join the history of every later position."""
        if self.history is not None and tokens:
            self.history.extend(torch.tensor(tokens, device=device))
