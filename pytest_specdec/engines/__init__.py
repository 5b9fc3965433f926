"""Serving engines, gated over HTTP: llama.cpp's ``llama-server`` today.

- ``server``: find or build the binary, start it on loopback, stop it
  (``python -m pytest_specdec.engines.server build``).
- ``http``: an engine behind the decoder protocol (token ids in, streamed tokens out), its faults
  named; ``llama_cpp``: llama.cpp's native endpoint; ``openai``: any engine's ``/v1/completions``,
  with ``profiles`` saying what differs per engine (extra samplers, token ids, counters).
- ``concurrency``: many requests in flight, timed per request.
- ``perf``: draft vs no-draft in the same run, and the engine's stored baseline.
- ``plugin``: the ``specdec_engine`` fixture and marker, registered by the main plugin.

May import: ``protocol``, ``perf``, ``reference_impl`` and ``pytest_specdec.options``.
"""
