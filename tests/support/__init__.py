"""What the tests share and pytest never collects: model pairs, scripted drafts, broken decoders, sweeps.

- ``pairs``, ``scripted``: tiny pairs built once per process; a draft whose every proposal is scripted.
- ``mutants``, ``subtle_mutants``, ``state_mutants``, ``batched_mutants``, ``miscounting``, ``injected``:
  deliberately broken decoders (one bug each, marked ``# BUG``) that the tests must reject, usable as
  ``--specdec-impl tests.support.<module>:<Name>``.
- ``tree_pairs``, ``tree_mutants``: the table pairs and laws of the tree tests; broken tree verifiers and
  decoders. ``tree_eagle``, ``tree_mutant_rates``: the measurement commands behind docs/trees.md.
- ``batched_checks``: the batch-invariance checks shared by the property and mutation tests.
- ``sampling_law_sweep``, ``sampling_law_catalogue``, ``subtle_mutant_tv``: measurement commands
  (``python -m tests.support.sampling_law_sweep ...``) behind the figures in docs/.

No file here is named ``test_*.py``, so collection never picks one up; tests import what they need.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
