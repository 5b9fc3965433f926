"""A draft whose every proposal is scripted: agree with the target's greedy path or not, by position.

It answers by absolute position (its KV cache length), so a decoder that rolls a cache back to
the wrong length makes it propose the wrong tokens, and the stats show it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from types import SimpleNamespace

import torch


class ScriptedDraft(torch.nn.Module):
    """``agree(p)`` says whether the draft's token for sequence position p is the target's greedy token."""

    def __init__(self, target: torch.nn.Module, greedy_sequence: list[int], agree: Callable[[int], bool]) -> None:
        super().__init__()
        self.config = copy.deepcopy(target.config)
        self.config.num_hidden_layers = 1
        self.config.layer_types = None
        vocab = target.get_output_embeddings().weight.shape[0]
        self.embed = torch.nn.Embedding(vocab, 1, dtype=target.dtype)
        self.head = torch.nn.Linear(1, vocab, bias=False, dtype=target.dtype)
        self.sequence = greedy_sequence
        self.agree = agree
        self.vocab = vocab

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embed

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.head

    def forward(self, input_ids: torch.Tensor, cache, use_cache: bool = True, logits_to_keep: int = 1, **_):
        start = cache.get_seq_length()
        k = input_ids.shape[1]
        empty = torch.zeros(1, 1, k, 1, dtype=self.head.weight.dtype)
        cache.update(empty, empty, 0)
        logits = torch.zeros(1, k, self.vocab, dtype=self.head.weight.dtype)
        for i in range(k):
            position = start + i + 1  # the position whose token this row predicts
            true_token = self.sequence[position] if position < len(self.sequence) else 0
            token = true_token if self.agree(position) else (true_token + 1) % self.vocab
            logits[0, i, token] = 1.0
        return SimpleNamespace(logits=logits[:, -logits_to_keep:])
