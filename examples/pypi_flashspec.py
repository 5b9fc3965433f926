"""flashspec 0.3.1 (``flashspec.SpeculativeEngine``) behind the decoder protocol.

The engine takes a ``FlashSpecConfig``, drafters and a target; ``TargetModel`` and
``HuggingFaceDrafter`` accept an already loaded module (``model=``), so the suite's pair is wrapped
as it is, in float32 on the CPU with the compiled path off. Each call builds a fresh engine (the
config is frozen and holds the gamma, temperature, seed and EOS) and maps ``GenerationResult``:
``output_ids`` up to its ``-1`` padding, and one ``ArmStep`` per step (proposed, accepted, emitted:
already cut at EOS and ``max_new_tokens``). Two factories: ``factory`` runs the model drafter at the
call's gamma (``drafter_strategy="bandit"`` with one drafter, the 0.2.0 behaviour); ``default_factory``
runs the package's default (``"auto"``: prompt lookup of 6 tokens, else the model drafter at 2),
which ignores ``sampling.gamma``, so it does not declare a per-call gamma.

Capabilities: greedy (temperature 0 selects the package's greedy variant), temperature, gamma
(``factory`` only), EOS. Not top-k (no setting), not top-p: ``SamplingConfig.top_p`` exists but is
read only by the lossy ``"typical"`` variant, so the rejection path ignores it. No streaming: the
engine returns when the call is done. Randomness: the engine seeds its own ``torch.Generator`` from
``sampling.seed``; the seed is drawn from the protocol's generator. Pass counts stay 0.
"""

from __future__ import annotations

import torch

from examples.pypi_common import GREEDY, cut, result, seed_from


class FlashSpecAdapter:
    def __init__(self, target, draft, *, strategy: str = "bandit", gamma: int = 4) -> None:
        self.target, self.draft, self.strategy, self.gamma = target, draft, strategy, gamma
        self.capabilities = CAPABILITIES[strategy]

    def engine(self, sampling, gamma, seed, eos_token_id):
        import flashspec
        from flashspec.engine import HuggingFaceDrafter, TargetModel

        temperature, cpu = float(sampling.temperature), torch.device("cpu")
        config = flashspec.FlashSpecConfig(
            device="cpu", dtype="float32", compile=False, drafter_strategy=self.strategy,
            bandit=flashspec.BanditConfig(n_arms=1), eos_token_ids=() if eos_token_id is None else (eos_token_id,),
            sampling=flashspec.SamplingConfig(gamma=gamma, temperature=temperature, seed=seed))
        drafter = HuggingFaceDrafter("draft", cpu, torch.float32, temperature=temperature, model=self.draft)
        target = TargetModel("target", cpu, torch.float32, model=self.target)
        return flashspec.SpeculativeEngine(config, [drafter], target)

    @torch.inference_mode()
    def generate(self, input_ids, *, max_new_tokens, sampling=GREEDY, gamma=None, eos_token_id=None, generator=None,
                 **unset):  # undeclared features arrive unset: the suite skips a call that sets one
        if max_new_tokens == 0:  # the package's config requires max_new_tokens >= 1
            return result([], [])
        engine = self.engine(sampling, gamma or self.gamma, seed_from(generator), eos_token_id)
        out = engine.generate(input_ids, max_new_tokens=max_new_tokens)
        tokens = cut([t for t in out.output_ids[0].tolist() if t >= 0], max_new_tokens, eos_token_id)
        return result(tokens, [(s.proposed, s.accepted, s.emitted) for s in out.arm_steps])


CAPABILITIES = {"bandit": frozenset({"greedy", "temperature", "gamma", "eos"}),
                "auto": frozenset({"greedy", "temperature", "eos"})}


def factory(target, draft, **options) -> FlashSpecAdapter:
    return FlashSpecAdapter(target, draft, strategy="bandit", **options)


def default_factory(target, draft, **options) -> FlashSpecAdapter:
    return FlashSpecAdapter(target, draft, strategy="auto", **options)


factory.capabilities, default_factory.capabilities = CAPABILITIES["bandit"], CAPABILITIES["auto"]
