"""The decoder protocol: what the suite asks of any decoder, and how it holds a decoder to it.

- ``decoder``: the ``Decoder`` and ``BatchedDecoder`` protocols, ``--specdec-impl`` loading
  (``load_factory``), and ``CheckedDecoder`` / ``CheckedBatchedDecoder``, which turn a broken
  contract into a named failure.
- ``capabilities``: what a decoder declares it implements, and the checks of a result against the
  request features it was asked for.
- ``counters``: a decoder's reported counts checked against its tokens, each other and the passes
  its models ran.
- ``base_import``: the base branch's decoder imported beside the pull request's (``--specdec-base-path``).

May import: ``reference_impl`` and ``pytest_specdec.options``; every other package may import this one.
The names of ``decoder`` are re-exported here, where the flat layout had them (``pytest_specdec.protocol``).
"""

from .decoder import (
    BASELINE_IMPL,
    BATCHED_BASELINE_IMPL,
    DEFAULT_BATCHED_IMPL,
    DEFAULT_IMPL,
    BatchedDecoder,
    CheckedBatchedDecoder,
    CheckedDecoder,
    ContractError,
    CountError,
    Decoder,
    DecoderFactory,
    has_batched_entry_point,
    load_factory,
    make_decoder,
)

__all__ = [
    "BASELINE_IMPL", "BATCHED_BASELINE_IMPL", "DEFAULT_BATCHED_IMPL", "DEFAULT_IMPL", "BatchedDecoder",
    "CheckedBatchedDecoder", "CheckedDecoder", "ContractError", "CountError", "Decoder", "DecoderFactory",
    "has_batched_entry_point", "load_factory", "make_decoder",
]
