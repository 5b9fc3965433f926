"""The offline model zoo: pairs selectable by name (``--specdec-pair NAME``).

- ``trained``: a small Llama target and draft with a byte-level BPE tokenizer, trained on text
  that ships with CPython; stored as safetensors and loaded with ``from_pretrained`` like any
  user's pair (``trained/``; rebuilt by ``python -m reference_impl.models.build_trained``).
- ``tiny-<arch>-<relation>``: random pairs built from a config and a seed (``tiny.py``).
- ``calibrated-*``: random pairs of realistic CPU cost whose acceptance is set by construction
  (``calibrated.py``).
- ``table``: lookup-table LMs (``table.py``, a forward pass in tens of microseconds) whose
  acceptance probability is the same in every state for every sampling setting. Importing this
  package registers their model type (``specdec-table``) with the Auto classes, so a saved table
  pair loads with ``AutoModelForCausalLM.from_pretrained``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .table import table_pair
from .tiny import ARCHITECTURES, RELATIONS, tiny_pair

TRAINED_DIR = Path(__file__).parent / "trained"
# the ``table`` pair: target and draft logits, and where the draft puts its i-th logit (sigma_s(rearrangement[i]))
TABLE_TARGET = (2.0, 1.5, 1.0, 0.6, 0.3, 0.0, -0.5, -1.0)
TABLE_DRAFT = (3.0, 2.0, 1.2, 0.5, 0.0, -0.5, -1.0, -2.0)
TABLE_REARRANGEMENT = (2, 0, 1, 3, 4, 5, 6, 7)


@dataclass(frozen=True)
class NamedPair:
    """Either folders to load with ``from_pretrained``, or a builder ``(dtype) -> (target, draft)``."""

    name: str
    description: str
    target_path: Path | None = None
    draft_path: Path | None = None
    build: Callable[[Any], tuple[Any, Any]] | None = None


def _tiny_entry(arch: str, relation: str) -> NamedPair:
    return NamedPair(
        name=f"tiny-{arch}-{relation}",
        description=f"tiny random {arch} pair, draft {relation} to the target (vocab 96, built from seed 0)",
        build=lambda dtype: tiny_pair(arch, relation, seed=0, dtype=dtype),
    )


def named_pairs() -> dict[str, NamedPair]:
    pairs = {
        "trained": NamedPair(
            name="trained",
            description="Llama 4x256 target, 1x128 draft, BPE 4096, trained on CPython docs and sources",
            target_path=TRAINED_DIR / "target",
            draft_path=TRAINED_DIR / "draft",
        ),
    }
    pairs["table"] = NamedPair(
        name="table",
        description="lookup-table target and draft, vocab 8, state = last 2 tokens; acceptance 0.556 at T=1 in "
        "every state (0 greedy: the draft's argmax is never the target's); built from seed 0",
        build=lambda dtype: table_pair(TABLE_TARGET, TABLE_DRAFT, TABLE_REARRANGEMENT, context=2, dtype=dtype),
    )
    for arch in ARCHITECTURES:
        for relation in RELATIONS:
            entry = _tiny_entry(arch, relation)
            pairs[entry.name] = entry
    try:
        from .calibrated import CALIBRATED_PAIRS
    except ImportError:
        CALIBRATED_PAIRS = {}
    pairs.update(CALIBRATED_PAIRS)
    return pairs
