"""A causal LM with one KV cache shared by a batch of rows of different lengths.

Rows feed different numbers of tokens per pass and keep different numbers after a rollback,
while a ``DynamicCache`` has one sequence length for the whole batch. The exact scheme used here:
every cache slot carries a validity bit per row (``valid``, passed to the model as the attention
mask), each row's positions are counted from its own valid slots (explicit ``position_ids``), and

- a pass left-pads the rows' chunks to the longest one, so every row's last token sits in the
  last column (padding slots are fed token 0 and stay invalid);
- a rollback marks each row's slots beyond its own kept length invalid, then compacts the cache:
  each row's valid slots are moved, in order, to the right end of a cache as long as the longest
  row, so masked slots never pile up;
- a finished row leaves the batch (``select``), so it costs nothing in later passes.

A masked slot gets attention weight exactly zero, so a row's logits depend only on its own
tokens and positions; in float64 they equal an unbatched pass up to summation order (checked on
the four tiny architectures by ``tests/reference/test_batched_cache.py``). Pass counts are kept per row.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from ..errors import ContextLengthError
from ..kv import model_device

PAD_ID = 0  # fed in padding slots; never attended to


@dataclass
class PassCounts:
    """One row's share of a model's work: the passes it fed tokens to, and how many tokens."""

    forwards: int = 0
    prefills: int = 0
    tokens_fed: int = 0


class BatchedLM:
    """One model plus a batch-wide ``DynamicCache``, a per-row validity mask and per-row lengths."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self.reset(0)

    def reset(self, batch: int) -> None:
        from transformers import DynamicCache

        device = model_device(self.model)
        self.cache = DynamicCache(config=self.model.config)
        self.valid = torch.zeros(batch, 0, dtype=torch.bool, device=device)  # (batch, slots)
        self.lengths = [0] * batch  # valid slots per row: the tokens the row has in the cache
        self.counts = [PassCounts() for _ in range(batch)]
        self.passes = 0  # batch-wide forward passes

    def forward(self, chunks: list[torch.Tensor], keep: int = 1) -> torch.Tensor:
        """One pass; ``chunks[b]``: (k_b,) new tokens of row b (may be empty) -> (batch, keep, vocab)
        logits of the last ``keep`` columns; row b's j-th last token is at column keep - j."""
        ids, new_valid = left_pad(chunks, self.valid.device)
        check_window(self.model.config, self.valid.shape[1] + ids.shape[1])
        positions = self.positions(new_valid)
        self.valid = torch.cat([self.valid, new_valid], dim=1)
        out = self.model(
            input_ids=ids,
            attention_mask=self.valid.long(),
            position_ids=positions,
            use_cache=True,
            logits_to_keep=keep,
            **{self._cache_arg: self.cache},
        )
        self.passes += 1
        for b, chunk in enumerate(chunks):
            self._count(b, chunk.shape[0])
        return out.logits[:, -keep:]

    def positions(self, new_valid: torch.Tensor) -> torch.Tensor:
        """(batch, k) validity of the new slots -> (batch, k) position ids: each row counts its own tokens."""
        lengths = torch.tensor(self.lengths, device=new_valid.device).unsqueeze(1)
        return (lengths + new_valid.cumsum(1) - 1).clamp_min(0)  # padding slots get a position too, never attended

    def _count(self, row: int, fed: int) -> None:
        if fed:
            counts = self.counts[row]
            counts.prefills += int(self.lengths[row] == 0)
            counts.forwards += 1
            counts.tokens_fed += fed
            self.lengths[row] += fed

    def rollback(self, lengths: list[int]) -> None:
        """Keep the first ``lengths[b]`` tokens of each row (no-op for a row not longer), then compact."""
        keep = torch.tensor(lengths, device=self.valid.device).unsqueeze(1)
        self.valid = self.valid & (self.valid.cumsum(1) <= keep)
        self.lengths = [min(old, new) for old, new in zip(self.lengths, lengths, strict=True)]
        self._compact()

    def select(self, rows: list[int]) -> None:
        """Keep only the batch rows ``rows`` (in that order): finished rows leave the batch."""
        index = torch.tensor(rows, dtype=torch.long, device=self.valid.device)
        if self.valid.shape[1]:
            self.cache.batch_select_indices(index)
        self.valid = self.valid[index]
        self.lengths = [self.lengths[b] for b in rows]
        self.counts = [self.counts[b] for b in rows]
        self._compact()

    def _compact(self) -> None:
        """Move each row's valid slots, in order, to the right end of a cache as long as the longest row."""
        slots = max(self.lengths, default=0)
        if slots == self.valid.shape[1]:
            return
        order = torch.sort(self.valid.int(), dim=1, stable=True).indices[:, self.valid.shape[1] - slots :]
        self.valid = self.valid.gather(1, order)
        for layer in self.cache.layers:
            if getattr(layer, "keys", None) is None or layer.keys.numel() == 0:
                continue
            index = order[:, None, :, None]  # (batch, 1, slots, 1) -> gathered along the sequence dimension
            layer.keys = layer.keys.gather(2, index.expand(-1, layer.keys.shape[1], -1, layer.keys.shape[3]))
            layer.values = layer.values.gather(2, index.expand(-1, layer.values.shape[1], -1, layer.values.shape[3]))
            if hasattr(layer, "cumulative_length"):  # sliding-window layers count their slots themselves
                layer.cumulative_length = slots


def check_window(config: object, slots: int) -> None:
    """A sliding window counts cache slots, padding included: exact only while the padded batch fits in it."""
    window = getattr(config, "sliding_window", None)
    if isinstance(window, int) and slots >= window:
        raise ContextLengthError(
            f"the padded batch needs {slots} cache slots but the model attends over a sliding window of {window}; "
            "batch prompts of similar lengths, or decode this one alone"
        )


def left_pad(chunks: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row chunks of lengths k_b -> (batch, max k) ids, right-aligned, and the (batch, max k) validity mask."""
    width = max((chunk.shape[0] for chunk in chunks), default=0)
    ids = torch.full((len(chunks), width), PAD_ID, dtype=torch.long, device=device)
    valid = torch.zeros(len(chunks), width, dtype=torch.bool, device=device)
    for b, chunk in enumerate(chunks):
        if chunk.shape[0]:
            ids[b, width - chunk.shape[0] :] = chunk
            valid[b, width - chunk.shape[0] :] = True
    return ids, valid
