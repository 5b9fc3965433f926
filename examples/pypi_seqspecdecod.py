"""sequential-speculative-decoding 0.1.1 (``import seqspecdecod``) behind the decoder protocol.

The package offers three step functions, ``standard_speculative_step``, ``naive_hsd_step`` and
``capped_hsd_step`` (hierarchical speculative decoding), each ``(draft, target, input_ids, gamma,
draft_temperature, target_temperature) -> (input_ids + new tokens, n_accepted, gamma)``, and a text
loop ``speculative_generate`` that needs a tokenizer with a chat template. This adapter runs the same
loop over token ids: steps until ``max_new_tokens`` new tokens or an EOS among them, the output then
cut to the protocol's bound (the package's loop may overshoot by up to gamma tokens; it drops the EOS,
the protocol keeps it). One factory per method: ``factory`` (standard), ``naive_hsd_factory``,
``capped_hsd_factory``.

Capabilities: greedy (temperature 0 makes both distributions one-hot), temperature, a per-call gamma,
EOS. No top-k, no top-p, no streaming (a step returns only when its tokens are final).
Randomness: the package draws from the global RNG (``torch.rand``, ``torch.multinomial``), so each
call runs inside ``fork_rng`` seeded from the protocol's generator. Counts: steps, drafted, accepted
and rejections from each step's ``n_accepted``; the package keeps no KV cache and reports no pass
counts, so forwards, prefills and tokens fed stay 0 (``extra["pass_counts_unknown"]``).
"""

from __future__ import annotations

import torch

from examples.pypi_common import GREEDY, cut, result, seed_from, seeded_global_rng


class SeqSpecDecoder:
    capabilities = frozenset({"greedy", "temperature", "gamma", "eos"})

    def __init__(self, target, draft, *, method: str = "standard", gamma: int = 5) -> None:
        import seqspecdecod.capped_hsd
        import seqspecdecod.naive_hsd
        import seqspecdecod.standard_sd

        self.step = {"standard": seqspecdecod.standard_sd.standard_speculative_step,
                     "naive_hsd": seqspecdecod.naive_hsd.naive_hsd_step,
                     "capped_hsd": seqspecdecod.capped_hsd.capped_hsd_step}[method]
        self.target, self.draft, self.gamma = target, draft, gamma

    @torch.inference_mode()
    def generate(self, input_ids, *, max_new_tokens, sampling=GREEDY, gamma=None, eos_token_id=None, generator=None,
                 **unset):  # undeclared features arrive unset: the suite skips a call that sets one
        temperature, gamma = float(sampling.temperature), gamma or self.gamma
        ids, prompt_len, steps = input_ids, input_ids.shape[1], []
        with seeded_global_rng(seed_from(generator), input_ids.device):
            while ids.shape[1] - prompt_len < max_new_tokens and eos_token_id not in ids[0, prompt_len:].tolist():
                before = ids.shape[1]
                ids, n_accepted, n_drafted = self.step(self.draft, self.target, ids, gamma=gamma,
                                                       draft_temperature=temperature, target_temperature=temperature)
                steps.append((int(n_drafted), int(n_accepted), ids.shape[1] - before))
        tokens = cut(ids[0, prompt_len:].tolist(), max_new_tokens, eos_token_id)
        return result(tokens, steps)


def factory(target, draft, **options) -> SeqSpecDecoder:
    return SeqSpecDecoder(target, draft, method="standard", **options)


def naive_hsd_factory(target, draft, **options) -> SeqSpecDecoder:
    return SeqSpecDecoder(target, draft, method="naive_hsd", **options)


def capped_hsd_factory(target, draft, **options) -> SeqSpecDecoder:
    return SeqSpecDecoder(target, draft, method="capped_hsd", **options)


factory.capabilities = naive_hsd_factory.capabilities = capped_hsd_factory.capabilities = SeqSpecDecoder.capabilities
