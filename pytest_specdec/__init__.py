"""pytest-specdec: a pytest plugin that proves a speculative decoder lossless and fast, and keeps it so.

The house, by job (each package's ``__init__`` says what it owns and what it may import):

- the plugin core, here: ``plugin`` (hooks, the ``pytest11`` entry point), ``options`` (option names
  and the parsed record), ``fixtures`` and ``batched`` (fixtures), ``requires`` (the capability
  gate), ``loading`` (model pairs), ``findings`` (``specdec_finding``), ``prompts`` (the standard prompt set);
- ``protocol/``: the decoder protocol, capabilities, ``--specdec-impl`` loading, the contract and counters checks;
- ``law/``: lossless-ness statistics: exact laws, goodness of fit, the sample pool, PIT, the near-tie judge;
- ``perf/``: timing, interleaved measurement, per-request acceptance, same-job A/B, ``baselines/``
  (fingerprint, store, verdicts);
- ``report/``: the terminal summary and JSON, the markdown report, its plot, pytest-benchmark JSON;
- ``engines/``: serving engines: the server process, HTTP adapters, engine timings, the engine plugin;
- ``adapters/``: in-process decoders written elsewhere (Hugging Face assisted generation, prompt lookup).

Imports run one way: ``reference_impl`` <- ``protocol`` <- ``perf`` <- ``law``, ``report``, ``engines``;
``protocol`` <- ``adapters``; the core imports any of them; ``options`` imports nothing of the package
and any package may import it (``tests/repo/test_structure.py`` checks all of this).

Importing the package stays cheap (no torch): heavy imports happen where they are used. The flat
layout's module paths stay importable (``moved``).
"""

from . import moved

moved.install()
