"""specdec 0.2.0 (``specdec.decoder.SpecDecoder``) behind the decoder protocol.

The package's ``SpecDecoder(small_model, big_model, device)`` loads both models by name with
``from_pretrained``; its step is two methods, ``generate_small(ids, n) -> (tokens, draft probs)`` and
``verify(ids, tokens, draft probs) -> accepted tokens + one``, and ``spec_gen(prompt, max_new_tok,
num_sample_tok)`` loops them over a string. This adapter builds the object around the suite's models
(``__init__`` only loads and moves them) and runs ``spec_gen``'s loop over token ids: steps until
``max_new_tokens`` tokens, the output then cut to that bound (the package's loop overshoots by up
to ``num_sample_tok``).

Capabilities: sampling at temperature 1 (softmax of the raw logits; the package has no temperature,
top-k or top-p setting, no greedy speculative path, no EOS handling and no streaming) and a per-call
gamma (``num_sample_tok``). A call at another temperature is refused with the capability skip: the
adapter does not warp the logits itself. Randomness: the package draws from the global RNG
(``torch.multinomial``, ``torch.rand``), so each call runs inside ``fork_rng`` seeded from the
protocol's generator. Counts: accepted = ``len(verify(...)) - 1`` per step; pass counts stay 0.
"""

from __future__ import annotations

import torch

from examples.pypi_common import GREEDY, cut, refuse, result, seed_from, seeded_global_rng

WHO = "examples.pypi_specdec:factory"


class SpecDecAdapter:
    capabilities = frozenset({"temperature", "gamma"})

    def __init__(self, target, draft, *, gamma: int = 4) -> None:
        from specdec.decoder import SpecDecoder

        self.package = SpecDecoder.__new__(SpecDecoder)  # its __init__ only loads models by name
        self.package.small_model, self.package.big_model = draft.eval(), target.eval()
        self.gamma = gamma

    @torch.inference_mode()
    def generate(self, input_ids, *, max_new_tokens, sampling=GREEDY, gamma=None, eos_token_id=None, generator=None,
                 **unset):  # undeclared features arrive unset: the suite skips a call that sets one
        if float(sampling.temperature) != 1.0:
            refuse(WHO, "temperature", "specdec 0.2.0 samples at temperature 1 only")
        gamma, package, inp = gamma or self.gamma, self.package, input_ids
        package.device, steps = input_ids.device, []
        with seeded_global_rng(seed_from(generator), input_ids.device):
            while sum(step[2] for step in steps) < max_new_tokens:
                drafts, draft_probs = package.generate_small(inp, gamma)
                new = package.verify(inp, drafts, draft_probs)
                steps.append((gamma, len(new) - 1, len(new)))
                inp = torch.cat([inp, torch.tensor([new], device=inp.device)], dim=1)
        tokens = cut(inp[0, input_ids.shape[1]:].tolist(), max_new_tokens, None)
        return result(tokens, steps)


def factory(target, draft, **options) -> SpecDecAdapter:
    return SpecDecAdapter(target, draft, **options)


factory.capabilities = SpecDecAdapter.capabilities
