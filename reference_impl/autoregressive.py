"""The autoregressive baseline: the target alone, one forward pass per token.

It satisfies the same decoder protocol as the speculative decoder (the draft is ignored), so
every correctness, distribution and timing test can run on either. Request features are applied
exactly as the speculative decoder applies them (``processing``, ``output``): one position at a
time, this is the law the speculative decoder must reproduce.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .checks import check_features, check_request, default_generator
from .kv import CachedLM, check_finite, model_device
from .output import TokenSink
from .processing import CAPABILITIES, CallState
from .sampling import GREEDY, SamplingConfig, choose_token
from .stats import DecodeResult, StatsCounter


class AutoregressiveDecoder:
    """Greedy or sampled decoding with the target model and its KV cache."""

    name = "autoregressive"
    capabilities = CAPABILITIES
    call_state = CallState
    token_sink = TokenSink

    def __init__(self, target: torch.nn.Module, draft: torch.nn.Module | None = None, **options: object) -> None:
        if options:
            raise TypeError(f"AutoregressiveDecoder takes no options, got {sorted(options)}")
        self.target = target
        self._target = CachedLM(target, rollback=False)

    def generate(
        self,
        input_ids: torch.Tensor,
        *,
        max_new_tokens: int,
        sampling: SamplingConfig = GREEDY,
        gamma: int | None = None,
        eos_token_id: int | None = None,
        generator: torch.Generator | None = None,
        on_token: Callable[[int], None] | None = None,
        min_new_tokens: int = 0,
        stop: Sequence[Sequence[int]] = (),
        logprobs: int | None = None,
    ) -> DecodeResult:
        """(1, prompt_len) prompt -> the new tokens and their stats. ``gamma`` is accepted and ignored."""
        check_request(self.target, input_ids, max_new_tokens, sampling, generator)
        min_new_tokens, stop, logprobs = check_features(min_new_tokens, stop, logprobs)
        if generator is None and not sampling.greedy:
            generator = default_generator(model_device(self.target))
        target = self._target
        target.reset()
        vocab = self.target.get_output_embeddings().weight.shape[0]
        call = self.call_state.of(input_ids, vocab, sampling, min_new_tokens, eos_token_id, logprobs)
        sink = self.token_sink(max_new_tokens, eos_token_id, on_token, stop=stop, min_new_tokens=min_new_tokens,
                               logprobs=logprobs is not None)
        counter = StatsCounter()
        with torch.inference_mode():
            pending = input_ids[0]
            while not sink.finished:
                logits = target.forward(pending)[-1:]  # (1, vocab)
                processed = call.processed(logits)
                token = choose_token(processed[0], sampling, generator)
                token_id, finite = torch.stack([token, torch.isfinite(logits).all().long()]).tolist()
                check_finite(bool(finite), "target")
                call.keep_logprobs(processed, logits, [token_id])
                sink.emit([token_id], call.step_logprobs)
                call.record([token_id], pending.device)
                counter.forwards_before_first_token = counter.forwards_before_first_token or target.forwards
                pending = token.view(1)
        counter.new_tokens = len(sink.tokens)
        return DecodeResult(tokens=sink.tokens, stats=counter.freeze(target), logprobs=sink.logprobs)
