"""Performance and its gate: what a user of the decoder feels, measured side by side, and judged.

- ``timing``: one timed decode: TTFT, TPOT, latency, tokens/s (CUDA-synchronised); ``torch_threads``.
- ``interleaved``: several decoders on the same prompts, interleaved, in one run (``PerfRecord``).
- ``batched``: ``generate_batch`` against the batched baseline, and its baseline check.
- ``acceptance``: each request's own alpha and acceptance rate, and their distribution.
- ``ab``: the same-job A/B against the base branch's decoder: a timing verdict valid on any machine.
- ``environment``: the machine and software a measurement ran on.
- ``baselines/``: fingerprints, the atomic store, and the verdicts of a run against its stored baseline.

May import: ``protocol``, ``reference_impl`` and ``pytest_specdec.options``.
The names of ``interleaved`` are re-exported here, where the flat layout had them (``pytest_specdec.perf``).
"""

from .interleaved import PerfRecord, PerfSamples, measure_interleaved

__all__ = ["PerfRecord", "PerfSamples", "measure_interleaved"]
