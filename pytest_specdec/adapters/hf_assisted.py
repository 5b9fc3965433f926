"""Hugging Face assisted generation (``model.generate(assistant_model=draft)``) behind the decoder protocol.

``HFAssistedDecoder(target, draft, num_assistant_tokens=None)`` runs transformers' own assisted
decoding loop; this module only maps the protocol onto ``generate`` and watches what happens:

- Sampling: ``SamplingConfig(temperature, top_k, top_p)`` becomes ``do_sample``, ``temperature``,
  ``top_k`` and ``top_p`` (greedy is ``do_sample=False``); ``eos_token_id`` is passed through
  (``None`` really means no EOS, overriding the model's generation config), ``pad_token_id`` is the
  EOS token (or None) so no padding mask is ever inferred, and ``min_new_tokens=0`` is set.
  ``max_new_tokens=0`` returns no tokens without calling transformers, which rejects it.
- Gamma: ``generate(gamma=g)`` sets the draft's ``num_assistant_tokens=g`` with the ``"constant"``
  schedule and ``assistant_confidence_threshold=0.0`` for that call. ``gamma=None`` uses the
  constructor's ``num_assistant_tokens``; when that is None too, transformers' defaults (up to 20
  draft tokens, stopping early below a 0.4 draft confidence). The draft's generation config is
  restored after every call.
- Randomness: transformers draws from the global RNG and takes no generator. A 63-bit seed is drawn
  from the caller's ``torch.Generator`` and ``generate`` runs inside ``torch.random.fork_rng`` seeded
  with it, so the caller's global RNG is untouched and one generator seed gives one output.
- Streaming: a streamer passed to ``generate`` receives the prompt first (skipped), then each
  iteration's accepted tokens at once; ``on_token`` is called for each as that chunk arrives, so
  TTFT measured through ``on_token`` includes every forward pass transformers runs before it.
- Stats: forward passes, prefills and tokens fed are counted with forward pre-hooks; a pass is the
  draft's when it runs inside the candidate generator's ``get_candidates`` (so a draft that is the
  target object itself is counted right). Each step's proposed tokens are read from
  ``get_candidates``' return value, its emitted tokens from the streamer; the accepted count is the
  length of the common prefix of the two, which is exact: a rejected draft token has zero residual
  mass (sampling) or is not the target's argmax (greedy), so the token emitted after the accepted
  prefix always differs from the rejected proposal. ``extra`` records how the stats were derived
  (``gamma_ignored`` for ``default_factory``, which runs transformers' own gamma whatever a call asks for).
  Wrapping ``get_candidates`` reaches into transformers' private ``_get_candidate_generator``; the
  adapter was written against transformers ``TESTED_TRANSFORMERS``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from ..protocol.capabilities import CLASSIC
from ..protocol.counters import GAMMA_IGNORED
from .hf_features import CAPABILITIES, Features

TESTED_TRANSFORMERS = "5.24.0"
DEFAULT_GAMMA = 4
_SEED_BOUND = 2**63 - 1
_ASSISTANT_FIELDS = ("num_assistant_tokens", "num_assistant_tokens_schedule", "assistant_confidence_threshold",
                     "eos_token_id")


def sampling_kwargs(sampling: Any) -> dict[str, Any]:
    """SamplingConfig -> transformers generation kwargs (top_k=0 and top_p=1 are off in both)."""
    if sampling.greedy:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": float(sampling.temperature), "top_k": sampling.top_k,
            "top_p": float(sampling.top_p)}


def seed_from(generator: Any) -> int:
    """One 63-bit seed drawn with ``generator`` (a fresh random one when generator is None)."""
    import torch

    if generator is None:
        return int.from_bytes(os.urandom(8), "little") >> 1
    return int(torch.randint(0, _SEED_BOUND, (1,), generator=generator, device=generator.device).item())


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: Any) -> Iterator[None]:
    """Run the body with the global RNG (CPU and the model's CUDA device) seeded, then restore it."""
    import torch

    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def assistant_settings(draft: Any, gamma: int | None, eos_token_id: int | None) -> Iterator[None]:
    """The call's gamma (None: leave the draft's setting) and EOS on the draft's generation config; always restored.

    The EOS is set because the assistant's nested ``generate`` fills an EOS of None from the draft's own
    generation config, so without this the draft would stop drafting at the model's EOS when the caller
    asked for none (tests/adapters/test_adapters.py documents it).
    """
    config = draft.generation_config
    saved = {name: getattr(config, name, None) for name in _ASSISTANT_FIELDS}
    try:
        config.eos_token_id = eos_token_id
        if gamma is not None:
            config.num_assistant_tokens = gamma
            config.num_assistant_tokens_schedule = "constant"
            config.assistant_confidence_threshold = 0.0
        yield
    finally:
        for name, value in saved.items():
            setattr(config, name, value)


class GenerateTrace:
    """What one ``generate`` call did, observed from outside: passes, proposals and emitted chunks."""

    def __init__(self, on_token: Callable[[int], None] | None = None, *, keep_proposals: bool = False) -> None:
        from reference_impl.stats import StatsCounter

        self.counter = StatsCounter()
        self.on_token = on_token
        self.keep_proposals = keep_proposals
        self.proposals: list[tuple[Any, Any]] = []  # (candidate ids, candidate logits) per step, if kept
        self.chunks: list[list[int]] = []
        self.tokens: list[int] = []
        self.in_draft = False
        self.candidates: list[int] | None = None
        self.forwards = {"target": 0, "draft": 0}
        self.prefills = {"target": 0, "draft": 0}
        self.tokens_fed = {"target": 0, "draft": 0}
        self._prompt_seen = False

    def forward_hook(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        role = "draft" if self.in_draft else "target"
        ids = kwargs.get("input_ids", args[0] if args else None)
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        self.forwards[role] += 1
        self.tokens_fed[role] += int(ids.shape[-1]) if ids is not None else 0
        self.prefills[role] += int(cache is None or cache.get_seq_length() == 0)

    def proposed(self, input_len: int, candidate_ids: Any, candidate_logits: Any) -> None:
        self.candidates = candidate_ids[0, input_len:].tolist()
        if self.keep_proposals:
            self.proposals.append((candidate_ids[0, input_len:].clone(), candidate_logits))

    def put(self, value: Any) -> None:
        """Streamer ``put``: the prompt first (skipped), then one chunk of accepted tokens per iteration."""
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        chunk = [int(t) for t in value.reshape(-1).tolist()]
        if not self.tokens:
            self.counter.forwards_before_first_token = self.forwards["target"] + self.forwards["draft"]
        self._record_step(chunk)
        self.chunks.append(chunk)
        for token in chunk:
            self.tokens.append(token)
            if self.on_token is not None:
                self.on_token(token)

    def end(self) -> None:
        pass

    def _record_step(self, chunk: list[int]) -> None:
        proposed, self.candidates = self.candidates or [], None
        if not proposed:
            return  # a plain target pass: nothing was drafted
        accepted = 0
        while accepted < min(len(proposed), len(chunk)) and proposed[accepted] == chunk[accepted]:
            accepted += 1
        rejected = accepted < len(proposed) and len(chunk) > accepted
        self.counter.record_step(len(proposed), accepted, rejected)

    def stats(self, **extra: float) -> Any:
        from reference_impl.stats import DecodeStats

        c = self.counter
        return DecodeStats(
            new_tokens=len(self.tokens),
            steps=c.steps,
            drafted=c.drafted,
            accepted=c.accepted,
            rejections=c.rejections,
            drafted_by_position=tuple(c.drafted_by_position),
            accepted_by_position=tuple(c.accepted_by_position),
            target_forwards=self.forwards["target"],
            draft_forwards=self.forwards["draft"],
            target_prefills=self.prefills["target"],
            draft_prefills=self.prefills["draft"],
            target_tokens_fed=self.tokens_fed["target"],
            draft_tokens_fed=self.tokens_fed["draft"],
            forwards_before_first_token=c.forwards_before_first_token,
            gammas=tuple(c.gammas),
            extra={"stats_observed_from_outside": 1.0, **extra},
        )


@contextlib.contextmanager
def instrumented(target: Any, models: list[Any], trace: GenerateTrace) -> Iterator[None]:
    """Hook every model's forward and wrap the candidate generator ``target.generate`` builds."""
    original = target._get_candidate_generator

    def get_candidate_generator(*args: Any, **kwargs: Any) -> Any:
        candidate_generator = original(*args, **kwargs)
        get_candidates = candidate_generator.get_candidates

        def traced_get_candidates(input_ids: Any, *rest: Any, **more: Any) -> Any:
            trace.in_draft = True
            try:
                candidate_ids, candidate_logits = get_candidates(input_ids, *rest, **more)
            finally:
                trace.in_draft = False
            trace.proposed(input_ids.shape[-1], candidate_ids, candidate_logits)
            return candidate_ids, candidate_logits

        candidate_generator.get_candidates = traced_get_candidates
        return candidate_generator

    unique = list({id(m): m for m in models}.values())
    handles = [m.register_forward_pre_hook(trace.forward_hook, with_kwargs=True) for m in unique]
    target._get_candidate_generator = get_candidate_generator
    try:
        yield
    finally:
        del target._get_candidate_generator
        for handle in handles:
            handle.remove()


def run_generate(
    target: Any,
    models: list[Any],
    input_ids: Any,
    *,
    max_new_tokens: int,
    sampling: Any,
    eos_token_id: int | None,
    generator: Any,
    on_token: Callable[[int], None] | None,
    generate_kwargs: dict[str, Any],
    extra: dict[str, float],
    trace: GenerateTrace | None = None,
    features: Features | None = None,
) -> Any:
    """Check the request, run ``target.generate`` seeded and instrumented, return a DecodeResult.

    ``trace``: pass one to look at what happened beyond the stats (chunks, proposals). ``features``: the
    request features (``hf_features``) of a decoder that declares them; None: the classic request only.
    """
    import torch

    from reference_impl.checks import check_request, check_supported
    from reference_impl.kv import model_device
    from reference_impl.stats import DecodeResult

    check_request(target, input_ids, max_new_tokens, sampling, generator)
    if features is None:
        check_supported("this adapter of transformers' generate", sampling, CLASSIC)
    trace = trace or GenerateTrace()
    trace.on_token = on_token
    if max_new_tokens == 0:
        return DecodeResult(tokens=[], stats=trace.stats(**extra), logprobs=[] if features and features.logprobs
                            is not None else None)
    seed = None if sampling.greedy else seed_from(generator)
    kwargs = {
        "attention_mask": torch.ones_like(input_ids),
        "max_new_tokens": max_new_tokens,
        "min_new_tokens": 0,
        "eos_token_id": eos_token_id,
        # transformers infers an attention mask from a pad token that occurs in the sequence (unless it is the EOS
        # token), and the assistant does so even over the caller's all-ones mask (tests/adapters/test_adapters.py):
        # a real token as pad would hide it from the draft. EOS as pad, or None, is never inferred.
        "pad_token_id": eos_token_id,
        "streamer": trace,
        **sampling_kwargs(sampling),
        **(features.generate_kwargs(sampling, input_ids.shape[1]) if features else {}),
        **generate_kwargs,
    }
    device = model_device(target)
    with instrumented(target, models, trace), torch.inference_mode():
        if seed is None:
            output = target.generate(input_ids, **kwargs)
        else:
            with seeded_global_rng(seed, device):
                output = target.generate(input_ids, **kwargs)
    logprobs = features.logprobs_of(output, trace.tokens) if features else None
    return DecodeResult(tokens=trace.tokens, stats=trace.stats(**extra), logprobs=logprobs)


class HFAssistedDecoder:
    """transformers assisted generation: the draft proposes, ``target.generate`` verifies.

    ``capabilities``: the classic request and the features transformers offers (``hf_features``).

    ``num_assistant_tokens``: None for transformers' defaults, an int for a fixed gamma. With
    ``per_call_gamma=False`` the ``gamma`` argument of ``generate`` is ignored (the decoder keeps
    its own setting), which is how ``default_factory`` runs the suite on transformers' defaults.
    """

    def __init__(
        self,
        target: Any,
        draft: Any,
        *,
        num_assistant_tokens: int | None = None,
        per_call_gamma: bool = True,
    ) -> None:
        from reference_impl.checks import check_gamma, check_pair

        check_pair(target, draft)
        self.target = target
        self.draft = draft
        self.num_assistant_tokens = None if num_assistant_tokens is None else check_gamma(num_assistant_tokens)
        self.per_call_gamma = per_call_gamma
        self.name = "hf-assisted" if num_assistant_tokens is not None else "hf-assisted-defaults"

    capabilities = CAPABILITIES

    def generate(
        self,
        input_ids: Any,
        *,
        max_new_tokens: int,
        sampling: Any = None,
        gamma: int | None = None,
        eos_token_id: int | None = None,
        generator: Any = None,
        on_token: Callable[[int], None] | None = None,
        min_new_tokens: int = 0,
        stop: Any = (),
        logprobs: int | None = None,
        trace: GenerateTrace | None = None,
    ) -> Any:
        """(1, prompt_len) prompt -> the new tokens and the stats observed from outside transformers.

        Request features as transformers offers them (``hf_features``). ``trace`` is not part of the
        protocol: pass a ``GenerateTrace`` to inspect chunks and proposals.
        """
        from reference_impl.checks import check_gamma
        from reference_impl.sampling import GREEDY

        sampling = GREEDY if sampling is None else sampling
        features = Features.of(self.target, sampling, min_new_tokens, stop, logprobs)
        if gamma is not None:
            check_gamma(gamma)
        step_gamma = gamma if gamma is not None and self.per_call_gamma else self.num_assistant_tokens
        extra = {"hf_fixed_gamma": float(step_gamma or 0)}  # 0: transformers' defaults
        if not self.per_call_gamma:
            extra[GAMMA_IGNORED] = 1.0  # the counters check then does not hold the steps to the gamma asked for
        with assistant_settings(self.draft, step_gamma, eos_token_id):
            return run_generate(
                self.target,
                [self.target, self.draft],
                input_ids,
                max_new_tokens=max_new_tokens,
                sampling=sampling,
                eos_token_id=eos_token_id,
                generator=generator,
                on_token=on_token,
                generate_kwargs={"assistant_model": self.draft},
                extra=extra,
                trace=trace,
                features=features,
            )


def factory(target: Any, draft: Any, *, gamma: int = DEFAULT_GAMMA, **options: Any) -> HFAssistedDecoder:
    """``--specdec-impl pytest_specdec.adapters.hf_assisted:factory``: a fixed gamma (per call, else ``gamma``)."""
    if options:
        raise TypeError(f"hf_assisted.factory takes only gamma, got {sorted(options)}")
    return HFAssistedDecoder(target, draft, num_assistant_tokens=gamma)


def default_factory(target: Any, draft: Any, **options: Any) -> HFAssistedDecoder:
    """``--specdec-impl pytest_specdec.adapters.hf_assisted:default_factory``: transformers' defaults, always.

    The ``gamma`` a test passes is ignored: this factory exists to run the suite on the assisted
    generation a user gets by passing nothing but ``assistant_model``.
    """
    if options:
        raise TypeError(f"hf_assisted.default_factory takes no options, got {sorted(options)}")
    return HFAssistedDecoder(target, draft, num_assistant_tokens=None, per_call_gamma=False)


factory.capabilities = default_factory.capabilities = CAPABILITIES  # type: ignore[attr-defined]
