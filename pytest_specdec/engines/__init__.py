"""Serving engines, gated over HTTP: llama.cpp's ``llama-server`` today.

- ``server``: find or build the binary, start it on loopback, stop it
  (``python -m pytest_specdec.engines.server build``).
- ``http``: an engine behind the decoder protocol (token ids in, streamed tokens out); ``llama_cpp``:
  its native-endpoint subclass.
- ``perf``: draft vs no-draft in the same run, and the engine's stored baseline.
- ``plugin``: the ``specdec_engine`` fixture and marker, registered by the main plugin.

May import: ``protocol``, ``perf``, ``reference_impl`` and ``pytest_specdec.options``.
"""
