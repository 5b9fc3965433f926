"""Build the project's trained target/draft pair from text that ships with CPython.

The pair is a small Llama-architecture *target* model, a smaller Llama *draft*
model and a byte-level BPE tokenizer. It is trained on ``pydoc_data.topics``
(the text of Python's reference documentation) and on the standard library's
own ``.py`` sources, so building it needs no network and no model hub.

Steps (all deterministic: fixed seeds, sorted file list, step-count budgets):

1. Collect the corpus; every 20th document (sorted order) is held out.
2. Train a byte-level BPE tokenizer (vocab 4096) on the training documents.
3. Train the target with next-token cross-entropy (bf16 autocast on CPU).
4. Train the draft by distilling the target's next-token distributions
   (forward KL, mixed with a little cross-entropy on the data).
5. Save each model in bfloat16 with its tokenizer, so that each folder loads
   standalone with ``AutoModelForCausalLM`` / ``AutoTokenizer``.
6. Evaluate the saved pair (float32) on held-out text and write
   ``metrics.json``: held-out loss, greedy alpha at gamma=4 along the target's
   greedy path, teacher-forced greedy agreement, sampled acceptance
   (sum_x min(p_target, p_draft)), greedy loop fraction, sizes and timings.

Modules, one job each: ``corpus`` (documents, held-out split, tokenizer), ``training``
(model shapes, the training loop, saving), ``evaluation`` (the metrics of the saved pair),
``readme`` (the folder's README), ``pipeline`` (the stages in order, the command line).

Usage (from the repository root)::

    python -m reference_impl.models.build_trained --out reference_impl/models/trained
"""

from __future__ import annotations

from .pipeline import main, parse_args

__all__ = ["main", "parse_args"]
