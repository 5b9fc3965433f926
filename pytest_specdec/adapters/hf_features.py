"""Request features through transformers' ``generate``: what it offers, mapped exactly onto the protocol's.

- ``SamplingConfig.repetition_penalty`` -> ``repetition_penalty`` (prompt and generated tokens, the same formula);
- ``SamplingConfig.logit_bias`` -> ``sequence_bias={(token,): bias}``, single-token sequences; ``-inf`` bans;
- ``SamplingConfig.min_p`` -> ``min_p`` (``MinPLogitsWarper``, after top-p; when sampling, as every warper);
- ``min_new_tokens`` -> ``min_new_tokens`` (``MinNewTokensLengthLogitsProcessor``: EOS banned before n tokens);
- ``stop`` -> ``stopping_criteria=[TokenSequenceStop]``, a ``StoppingCriteria`` that is true when a stop sequence
  ends the tokens and at least ``min_new_tokens`` were generated: the end of the sequence is how transformers'
  own ``EosTokenCriteria`` and ``StopStringCriteria`` judge it (``eos_token_id`` lists stop on single tokens only,
  ``stop_strings`` needs a tokenizer);
- ``logprobs=n`` -> ``output_scores``, ``output_logits``, ``return_dict_in_generate``: the scores are the
  processed (and, sampling, warped) logits each token was chosen from, so their log-softmax is the protocol's
  law; ``raw`` comes from the logits.

Presence and frequency penalties do not exist in transformers (``GenerationConfig`` has neither;
``repetition_penalty`` is multiplicative and counts a token once): not declared, refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..protocol.capabilities import CLASSIC

HF_FEATURES = frozenset({"min_p", "repetition_penalty", "logit_bias", "min_new_tokens", "stop", "logprobs"})
CAPABILITIES = CLASSIC | HF_FEATURES
NOT_IN_TRANSFORMERS = ("presence_penalty", "frequency_penalty")


@dataclass(frozen=True)
class Features:
    """The request features of one ``generate`` call beyond ``SamplingConfig``, checked."""

    min_new_tokens: int = 0
    stop: tuple[tuple[int, ...], ...] = ()
    logprobs: int | None = None

    @classmethod
    def of(cls, target: Any, sampling: Any, min_new_tokens: object, stop: object, logprobs: object) -> Features:
        """Check the request as the reference does; a feature transformers lacks is refused by name."""
        from reference_impl.checks import check_features, check_supported
        from reference_impl.errors import InvalidSamplingError

        check_supported("transformers' generate (it has no presence or frequency penalty)", sampling, CAPABILITIES)
        vocab = target.get_output_embeddings().weight.shape[0]
        outside = [token for token, _ in sampling.logit_bias if token >= vocab]
        if outside:
            raise InvalidSamplingError(f"logit_bias names token(s) {outside}, but the vocabulary has {vocab} tokens")
        return cls(*check_features(min_new_tokens, stop, logprobs))

    def generate_kwargs(self, sampling: Any, prompt_len: int) -> dict[str, Any]:
        """-> the ``generate`` keywords of these features and ``sampling``'s history features."""
        kwargs: dict[str, Any] = {"min_new_tokens": self.min_new_tokens}
        if sampling.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = float(sampling.repetition_penalty)
        if sampling.logit_bias:
            kwargs["sequence_bias"] = {(token,): float(bias) for token, bias in sampling.logit_bias}
        if sampling.min_p and not sampling.greedy:
            kwargs["min_p"] = float(sampling.min_p)
        if self.stop:
            kwargs["stopping_criteria"] = [token_sequence_stop(self.stop, prompt_len, self.min_new_tokens)]
        if self.logprobs is not None:
            kwargs.update(return_dict_in_generate=True, output_scores=True, output_logits=True)
        return kwargs

    def logprobs_of(self, output: Any, tokens: list[int]) -> list[Any] | None:
        """One ``TokenLogprob`` per emitted token from ``generate``'s scores (the law) and logits (raw)."""
        import torch

        from reference_impl.processing import token_logprobs

        if self.logprobs is None:
            return None
        if not tokens:
            return []
        law = torch.cat(output.scores[: len(tokens)]).log_softmax(dim=-1)  # (n, vocab), transformers' float32
        raw = torch.cat(output.logits[: len(tokens)])
        return token_logprobs(law, raw, torch.tensor(tokens, device=law.device), self.logprobs)


def token_sequence_stop(stops: tuple[tuple[int, ...], ...], prompt_len: int, floor: int) -> Any:
    """A ``StoppingCriteria``: true when one of ``stops`` ends the sequence and ``floor`` new tokens were generated."""
    import torch
    from transformers import StoppingCriteria

    class TokenSequenceStop(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            generated = input_ids.shape[-1] - prompt_len
            tail = input_ids[0, -max(map(len, stops)):].tolist()
            done = generated >= floor and any(generated >= len(s) and tuple(tail[len(tail) - len(s):]) == s
                                              for s in stops)
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return TokenSequenceStop()
