"""The decoder protocol: the seam that lets the suite test any speculative decoder.

A decoder under test is named on the command line as ``--specdec-impl module:factory``, where::

    def factory(target, draft, **options) -> Decoder

and a ``Decoder`` has one method, ``generate`` (below), returning a ``DecodeResult``: the new
tokens and a ``DecodeStats`` record. The reference decoders satisfy it, and so must any
implementation pointed at the suite. ``CheckedDecoder`` wraps whatever the factory returns and
turns a broken contract into a clear test failure instead of a confusing one downstream; that
includes counts that disagree with the tokens or with the passes the models ran (counters.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pytest

from .counters import PassObserver, count_violations

if TYPE_CHECKING:
    import torch

    from reference_impl.sampling import SamplingConfig
    from reference_impl.stats import DecodeResult

DEFAULT_IMPL = "reference_impl.speculative:SpeculativeDecoder"
BASELINE_IMPL = "reference_impl.autoregressive:AutoregressiveDecoder"


@runtime_checkable
class Decoder(Protocol):
    def generate(
        self,
        input_ids: torch.Tensor,
        *,
        max_new_tokens: int,
        sampling: SamplingConfig,
        gamma: int | None = None,
        eos_token_id: int | None = None,
        generator: torch.Generator | None = None,
        on_token: Callable[[int], None] | None = None,
    ) -> DecodeResult: ...


DecoderFactory = Callable[..., Decoder]


def load_factory(spec: str, option: str = "--specdec-impl") -> DecoderFactory:
    """'module:factory' -> the callable, or a usage error that says what is wrong with the spec."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise pytest.UsageError(
            f"{option} takes module:factory (for example mypkg.decoding:make_decoder); got {spec!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise pytest.UsageError(
            f"{option} {spec}: cannot import module {module_name!r} ({exc}); "
            "check the name and that it is importable from the test run (installed, or on sys.path)"
        ) from exc
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise pytest.UsageError(f"{option} {spec}: module {module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise pytest.UsageError(f"{option} {spec}: {attr!r} is a {type(factory).__name__}, not a callable factory")
    return factory  # type: ignore[return-value]


class ContractError(AssertionError):
    """A decoder under test broke the protocol (wrong return type, overshoot, bad stats)."""


class CheckedDecoder:
    """Wraps a decoder and checks every ``generate`` result against the protocol."""

    def __init__(self, decoder: Any, label: str, target: Any = None, draft: Any = None) -> None:
        if not isinstance(decoder, Decoder):
            raise ContractError(
                f"{label} returned {type(decoder).__name__}, which has no generate() method; "
                "a factory must return an object with generate(input_ids, *, max_new_tokens, sampling, ...) "
                "(see the README, 'The decoder protocol')"
            )
        self.inner = decoder
        self.label = label
        self.name = getattr(decoder, "name", type(decoder).__name__)
        self.counted_models = {"target": target, "draft": draft}  # handed to the factory: their passes are counted

    def generate(self, input_ids: torch.Tensor, *, max_new_tokens: int, **kwargs: Any) -> DecodeResult:
        with PassObserver(self.counted_models) as passes:
            kwargs["on_token"] = passes.watch(kwargs.get("on_token"))
            result = self.inner.generate(input_ids, max_new_tokens=max_new_tokens, **kwargs)
        tokens = getattr(result, "tokens", None)
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise ContractError(
                f"{self.label}: generate() must return a DecodeResult whose tokens are a list of ints, "
                f"got {type(result).__name__} with tokens of type {type(tokens).__name__}"
            )
        if len(tokens) > max_new_tokens:
            raise ContractError(
                f"{self.label}: generate() returned {len(tokens)} tokens for max_new_tokens={max_new_tokens}"
            )
        if getattr(result, "stats", None) is None:
            raise ContractError(f"{self.label}: the DecodeResult has no stats record")
        self.check_counts(result, passes, kwargs.get("gamma"))
        return result

    def check_counts(self, result: DecodeResult, passes: Any, gamma: object) -> None:
        """The counts must agree with each other, the tokens, the gamma asked for and the passes the models ran."""
        problems = count_violations(result.stats, result.tokens, gamma)
        problems = problems or passes.violations(result.stats)
        if problems:
            raise ContractError(
                f"{self.label}: the decoder's counts disagree with what it did ({len(result.tokens)} tokens, "
                f"gamma={gamma}):\n  - " + "\n  - ".join(problems)
            )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def make_decoder(factory: DecoderFactory, label: str, target: Any, draft: Any, **options: Any) -> CheckedDecoder:
    """Call ``factory`` and wrap what it returns; a factory that raises is reported with its spec."""
    return CheckedDecoder(factory(target, draft, **options), label, target, draft)
