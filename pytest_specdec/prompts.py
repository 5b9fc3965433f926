"""The standard prompt set the fixtures hand to tests (``specdec_prompts``); defined in ``reference_impl.prompts``."""

from __future__ import annotations

from reference_impl.prompts import RANDOM_PROMPT_LENGTHS, STANDARD_PROMPTS, prompt_ids

__all__ = ["RANDOM_PROMPT_LENGTHS", "STANDARD_PROMPTS", "prompt_ids"]
