"""Hugging Face prompt-lookup decoding (``model.generate(prompt_lookup_num_tokens=k)``) behind the decoder protocol.

Prompt lookup drafts without a draft model: it looks for the last n-gram of the sequence earlier
in the sequence and proposes the tokens that followed it; the target verifies them in one pass.
So its greedy output must equal the target's, and when sampling each emitted token is a draw from
the target (transformers samples every position from the target and keeps the matching prefix).

The draft model handed to the factory is ignored. ``gamma`` maps to ``prompt_lookup_num_tokens``
(the most tokens proposed per step). Sampling, seeding, streaming and stats work as in
``hf_assisted`` (see its docstring); there are no draft passes, so ``draft_forwards`` is 0 by
construction, and a step is counted only when the lookup proposed at least one token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .hf_assisted import DEFAULT_GAMMA, run_generate

DEFAULT_NGRAM = 2  # transformers' default max_matching_ngram_size


class HFPromptLookupDecoder:
    """transformers prompt-lookup decoding on ``target``: n-gram proposals from the sequence itself."""

    def __init__(
        self,
        target: Any,
        draft: Any = None,
        *,
        num_tokens: int = DEFAULT_GAMMA,
        max_matching_ngram_size: int = DEFAULT_NGRAM,
    ) -> None:
        from reference_impl.checks import check_gamma

        self.target = target
        self.num_tokens = check_gamma(num_tokens)
        self.max_matching_ngram_size = max_matching_ngram_size
        self.name = "hf-prompt-lookup"

    def generate(
        self,
        input_ids: Any,
        *,
        max_new_tokens: int,
        sampling: Any = None,
        gamma: int | None = None,
        eos_token_id: int | None = None,
        generator: Any = None,
        on_token: Callable[[int], None] | None = None,
        trace: Any = None,
    ) -> Any:
        """(1, prompt_len) prompt -> the new tokens; ``gamma`` is the most tokens proposed per step.

        ``trace`` is not part of the protocol: pass a ``hf_assisted.GenerateTrace`` to inspect chunks.
        """
        from reference_impl.checks import check_gamma
        from reference_impl.sampling import GREEDY

        num_tokens = self.num_tokens if gamma is None else check_gamma(gamma)
        return run_generate(
            self.target,
            [self.target],
            input_ids,
            max_new_tokens=max_new_tokens,
            sampling=GREEDY if sampling is None else sampling,
            eos_token_id=eos_token_id,
            generator=generator,
            on_token=on_token,
            generate_kwargs={
                "prompt_lookup_num_tokens": num_tokens,
                "max_matching_ngram_size": self.max_matching_ngram_size,
            },
            extra={"hf_prompt_lookup_num_tokens": float(num_tokens)},
            trace=trace,
        )


def factory(target: Any, draft: Any = None, *, gamma: int = DEFAULT_GAMMA, **options: Any) -> HFPromptLookupDecoder:
    """``--specdec-impl pytest_specdec.adapters.prompt_lookup:factory``; the draft is ignored."""
    if options:
        raise TypeError(f"prompt_lookup.factory takes only gamma, got {sorted(options)}")
    return HFPromptLookupDecoder(target, draft, num_tokens=gamma)
