"""A minimal speculative decoder written against the decoder protocol (the example in docs/adapters.md).

Run the suite against it with ``pytest --specdec-impl examples.minimal_decoder:factory``. It keeps
no KV cache (every pass re-reads the whole sequence), so it is slow but short; the sampling math
comes from ``reference_impl.sampling`` so the draft and the target are warped identically.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from reference_impl.sampling import GREEDY, choose_token, probs_from_logits, sample, verify_greedy, verify_sampled
from reference_impl.stats import DecodeResult, StatsCounter


class MinimalSpeculativeDecoder:
    def __init__(self, target, draft, gamma: int = 4) -> None:
        self.models, self.gamma = {"target": target, "draft": draft}, gamma

    def _logits(self, role, seq, keep, counts):  # (n,) tokens -> (keep, vocab) logits of the last keep positions
        from transformers import DynamicCache

        model = self.models[role]
        counts[role].forwards += 1
        counts[role].prefills += 1  # no cache: every pass is a prefill
        counts[role].tokens_fed += len(seq)
        out = model(input_ids=seq.view(1, -1), cache=DynamicCache(config=model.config), logits_to_keep=keep)
        return out.logits[0, -keep:]

    @torch.inference_mode()
    def generate(self, input_ids, *, max_new_tokens, sampling=GREEDY, gamma=None, eos_token_id=None,
                 generator=None, on_token=None) -> DecodeResult:
        gamma = gamma or self.gamma
        if generator is None:
            generator = torch.Generator(device=input_ids.device)
            generator.seed()
        counts = {role: SimpleNamespace(forwards=0, prefills=0, tokens_fed=0) for role in self.models}
        counter, seq, tokens = StatsCounter(), input_ids[0], []
        while len(tokens) < max_new_tokens and not (tokens and tokens[-1] == eos_token_id):
            k = min(gamma, max_new_tokens - len(tokens) - 1) if tokens else 0  # first token: target prefill only
            drafts, draft_probs = [], []
            for _ in range(k):  # 1. draft k tokens, one pass each
                logits = self._logits("draft", torch.cat([seq, *drafts]), 1, counts)[-1]
                probs = None if sampling.greedy else probs_from_logits(logits, sampling)
                drafts.append(logits.argmax().view(1) if probs is None else sample(probs[None], generator))
                draft_probs.append(probs)
            target_logits = self._logits("target", torch.cat([seq, *drafts]), k + 1, counts)  # 2. one target pass
            if k == 0:
                n, next_token = 0, choose_token(target_logits[-1], sampling, generator)
            elif sampling.greedy:  # 3. accept the agreeing prefix, add the correction or bonus token
                n, next_token = verify_greedy(target_logits, torch.cat(drafts))
            else:
                target_probs = probs_from_logits(target_logits, sampling)
                n, next_token = verify_sampled(target_probs, torch.stack(draft_probs), torch.cat(drafts), generator)
            new = [*torch.cat(drafts)[: int(n)].tolist(), int(next_token)] if k else [int(next_token)]
            emitted = 0
            for token in new:  # 4. emit until EOS or max_new_tokens
                if len(tokens) == max_new_tokens or (tokens and tokens[-1] == eos_token_id):
                    break
                tokens.append(token)
                emitted += 1
                counter.forwards_before_first_token = counter.forwards_before_first_token or sum(
                    c.forwards for c in counts.values())
                if on_token is not None:
                    on_token(token)
            if k:
                counter.record_step(k, min(int(n), emitted), rejected=int(n) < k and emitted > int(n))
            seq = torch.cat([seq, torch.tensor(new, device=seq.device)])
        counter.new_tokens = len(tokens)
        return DecodeResult(tokens=tokens, stats=counter.freeze(counts["target"], counts["draft"]))


def factory(target, draft, **options) -> MinimalSpeculativeDecoder:
    return MinimalSpeculativeDecoder(target, draft, **options)
