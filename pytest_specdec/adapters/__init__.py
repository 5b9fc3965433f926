"""In-process adapters: decoders written outside this project, presented through the decoder protocol.

Each adapter module offers factories usable as ``--specdec-impl module:factory``:

- ``pytest_specdec.adapters.hf_assisted:factory``: Hugging Face assisted generation
  (``generate(assistant_model=...)``) with a fixed gamma; ``:default_factory``: with HF's own defaults.
  Both carry the request features transformers offers (``hf_features``).
- ``pytest_specdec.adapters.prompt_lookup:factory``: Hugging Face prompt-lookup decoding
  (``generate(prompt_lookup_num_tokens=...)``); the draft model is not used.

These are in-process peers: they run the models the suite hands them. Serving engines reached over
HTTP live in ``pytest_specdec.engines``. See docs/adapters.md for the protocol, how to write an
adapter and what the suite found.

May import: ``protocol``, ``reference_impl`` and ``pytest_specdec.options``.
"""
