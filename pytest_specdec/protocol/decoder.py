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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pytest

from .capabilities import asked, declared, feature_violations, skip_reason
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


class CountError(ContractError):
    """A decoder's counts disagree with each other, its tokens, the gamma asked or the passes the models ran."""


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
        self.capabilities = declared(decoder)

    def generate(self, input_ids: torch.Tensor, *, max_new_tokens: int, **kwargs: Any) -> DecodeResult:
        skip_unless_declared(self.label, self.capabilities, kwargs)
        with PassObserver(self.counted_models) as passes:
            if "streaming" in self.capabilities:  # notes the passes before the first token
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
        problems = feature_violations(tokens, result, kwargs)
        if problems:
            raise ContractError(f"{self.label}: the result breaks the request's features:\n  - "
                                + "\n  - ".join(problems))
        return result

    def check_counts(self, result: DecodeResult, passes: Any, gamma: object) -> None:
        """The counts must agree with each other, the tokens, the gamma asked for and the passes the models ran."""
        problems = count_violations(result.stats, result.tokens, gamma)
        problems = problems or passes.violations(result.stats)
        if problems:
            raise CountError(
                f"{self.label}: the decoder's counts disagree with what it did ({len(result.tokens)} tokens, "
                f"gamma={gamma}):\n  - " + "\n  - ".join(problems)
            )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def skip_unless_declared(who: str, capabilities: frozenset[str], request: dict[str, Any]) -> None:
    """Skip the calling test if the request asks for something ``who`` does not declare (counted in the summary)."""
    missing = asked(request) - capabilities
    if missing:
        pytest.skip(skip_reason(who, sorted(missing)))


def make_decoder(factory: DecoderFactory, label: str, target: Any, draft: Any, **options: Any) -> CheckedDecoder:
    """Call ``factory`` and wrap what it returns; a factory that raises is reported with its spec."""
    return CheckedDecoder(factory(target, draft, **options), label, target, draft)


# --- the optional batched entry point --------------------------------------------------------------
#
#     def generate_batch(self, prompts, *, max_new_tokens, sampling, gamma=None, eos_token_id=None,
#                        generators=None, min_new_tokens=0, stop=(), logprobs=None) -> list[DecodeResult]
#
# prompts: a list of (1, L_i) LongTensors of any lengths; max_new_tokens, sampling, eos_token_id,
# min_new_tokens and logprobs: one value for every row or a list with one per row; stop: one list of
# token-id sequences for every row ([[13, 13], [2]]) or one such list per row ([[[13, 13]], [], [[2]]]);
# generators: None or one torch.Generator (or None) per row, row i's randomness drawn from generators[i]
# alone, so a row's tokens do not depend on the batch. One DecodeResult per row, in the prompts' order,
# with that row's own tokens, stats and logprobs. The request features (min_new_tokens, stop, logprobs,
# and the history features of sampling) are passed only to a decoder that declares them (capabilities).

DEFAULT_BATCHED_IMPL = "reference_impl.batched:BatchedSpeculativeDecoder"
BATCHED_BASELINE_IMPL = "reference_impl.batched:BatchedAutoregressiveDecoder"


@runtime_checkable
class BatchedDecoder(Protocol):
    def generate_batch(
        self,
        prompts: list[torch.Tensor],
        *,
        max_new_tokens: int | list[int],
        sampling: SamplingConfig,
        gamma: int | None = None,
        eos_token_id: int | list[int | None] | None = None,
        generators: list[torch.Generator | None] | None = None,
        # request features, shared or per row, passed only to a decoder that declares them (capabilities):
        min_new_tokens: int | list[int] = 0,
        stop: Sequence[Sequence[int]] | Sequence[Sequence[Sequence[int]]] = (),
        logprobs: int | list[int | None] | None = None,
    ) -> list[DecodeResult]: ...


def row_request(kwargs: dict[str, Any], row: int, rows: int) -> dict[str, Any]:
    """Row ``row``'s own ``min_new_tokens``, ``stop`` and ``logprobs`` from a batched call's keywords (each shared,
    or one per row; ``stop`` per row is a list of stop lists)."""
    from reference_impl.batched.rows import per_row, stops_per_row

    return {"min_new_tokens": per_row(kwargs.get("min_new_tokens", 0), rows, "min_new_tokens")[row],
            "stop": stops_per_row(kwargs.get("stop", ()), rows)[row],
            "logprobs": per_row(kwargs.get("logprobs"), rows, "logprobs")[row]}


def has_batched_entry_point(decoder: Any) -> bool:
    """Whether ``decoder`` (or the decoder a ``CheckedDecoder`` wraps) implements ``generate_batch``."""
    return callable(getattr(getattr(decoder, "inner", decoder), "generate_batch", None))


class CheckedBatchedDecoder:
    """Wraps a decoder with ``generate_batch`` and checks every batched result against the protocol."""

    def __init__(self, decoder: Any, label: str) -> None:
        self.inner = getattr(decoder, "inner", decoder)
        self.label = label
        self.name = getattr(self.inner, "name", type(self.inner).__name__)
        if not has_batched_entry_point(self.inner):
            raise ContractError(f"{label}: {type(self.inner).__name__} has no generate_batch() method")
        self.capabilities = declared(self.inner)

    def generate_batch(self, prompts: list[torch.Tensor], *, max_new_tokens: int | list[int],
                       eos_token_id: int | list[int | None] | None = None, **kwargs: Any) -> list[DecodeResult]:
        rows, sampling = len(prompts), kwargs.get("sampling")
        eos = eos_token_id if isinstance(eos_token_id, list) else [eos_token_id] * rows
        for row in range(rows):  # what each row asks for: a per-row field may ask for more than the first row
            skip_unless_declared(self.label, self.capabilities, {
                **kwargs, **row_request(kwargs, row, rows), "eos_token_id": eos[row],
                "sampling": sampling[row] if isinstance(sampling, list | tuple) else sampling})
        results = self.inner.generate_batch(prompts, max_new_tokens=max_new_tokens, eos_token_id=eos_token_id,
                                            **kwargs)
        if not isinstance(results, list) or len(results) != len(prompts):
            got = f"{len(results)} results" if isinstance(results, list) else type(results).__name__
            raise ContractError(f"{self.label}: generate_batch() must return a list of one DecodeResult per "
                                f"prompt ({len(prompts)}), got {got}")
        limits = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * len(prompts)
        for row, (result, limit, eos_id) in enumerate(zip(results, limits, eos, strict=True)):
            self._check_row(row, result, limit, eos_id)
        for row, result in enumerate(results):
            self._check_row_counts(row, result, kwargs.get("gamma"))
            problems = feature_violations(result.tokens, result, {**row_request(kwargs, row, len(prompts)),
                                                                  "eos_token_id": eos[row]})
            if problems:
                raise ContractError(f"{self.label}: generate_batch() row {row} breaks the request's features:\n  - "
                                    + "\n  - ".join(problems))
        return results

    def _check_row(self, row: int, result: Any, limit: int, eos_id: int | None) -> None:
        tokens = getattr(result, "tokens", None)
        where = f"{self.label}: generate_batch() row {row}"
        if not isinstance(tokens, list) or not all(type(t) is int for t in tokens):
            kinds = sorted({type(t).__name__ for t in tokens}) if isinstance(tokens, list) else type(tokens).__name__
            raise ContractError(f"{where}: tokens must be a list of Python ints, got {kinds}")
        if len(tokens) > limit:
            raise ContractError(f"{where} returned {len(tokens)} tokens for max_new_tokens={limit}")
        if eos_id is not None and eos_id in tokens[:-1]:
            raise ContractError(f"{where} continued past its EOS token {eos_id} (at index {tokens.index(eos_id)})")
        if getattr(result, "stats", None) is None:
            raise ContractError(f"{where}: the DecodeResult has no stats record")

    def _check_row_counts(self, row: int, result: DecodeResult, gamma: object) -> None:
        # A row's counts obey the single-sequence rules; passes are shared by the batch, so the models'
        # own pass counts are compared only for generate() (PassObserver), not per row.
        problems = count_violations(result.stats, result.tokens, gamma)
        if problems:
            where = f"{self.label}: generate_batch() row {row}"
            raise CountError(f"{where}: the row's counts disagree with what it emitted "
                                f"({len(result.tokens)} tokens, gamma={gamma}):\n  - " + "\n  - ".join(problems))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
