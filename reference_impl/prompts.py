"""The standard prompt set: short, varied, and in the register of the shipped trained pair.

It lives in ``reference_impl`` because the model zoo measures on it too (the calibrated pairs' alpha);
``pytest_specdec.prompts`` re-exports it for the plugin, and nothing here imports ``pytest_specdec``.
"""

from __future__ import annotations

from typing import Any

STANDARD_PROMPTS = (
    "The for statement in Python differs a bit from what you may be used to in C or Pascal.",
    "def read_config(path):\n    \"\"\"Return the settings stored in *path* as a dictionary.\"\"\"\n",
    "A module can contain executable statements as well as function definitions.",
    "class Queue:\n    def __init__(self, maxsize=0):\n",
    "Exceptions raised in a try clause are handled by the first matching except clause.",
    "import os\nimport sys\n\n\ndef main(argv=None):\n",
    "The with statement is used to wrap the execution of a block with methods defined by a context manager.",
    "Return a new sorted list from the items in iterable.",
)

RANDOM_PROMPT_LENGTHS = (5, 9, 12, 17, 7, 23, 3, 14)


def prompt_ids(tokenizer: Any | None, vocab_size: int, device: str, count: int | None = None) -> list[Any]:
    """(1, L) LongTensors on ``device``: the tokenized standard prompts, or seeded random ids without a tokenizer."""
    import torch

    count = count or len(STANDARD_PROMPTS)
    if tokenizer is not None:
        encoded = [tokenizer(text, return_tensors="pt").input_ids for text in STANDARD_PROMPTS[:count]]
        return [ids.to(device) for ids in encoded]
    generator = torch.Generator().manual_seed(1234)
    return [
        torch.randint(2, vocab_size, (1, length), generator=generator).to(device)
        for length in RANDOM_PROMPT_LENGTHS[:count]
    ]
