"""The reference tree decoder: a static draft tree per step, one target pass with a tree mask, the accepted path kept.

One step: the draft fills a static tree shape (``branching``, e.g. (2, 2, 1)), one draft pass per
non-leaf node over its path; the target scores the committed tokens it lacks and every tree node
in ONE pass, with a 4-D additive mask (a node sees the committed prefix, its ancestors and itself,
never a sibling) and position ids by depth (committed length - 1 + depth, never the flattened
index: SGLang PR #39287); ``reference_impl.tree`` verifies; the target's cache then keeps the
committed prefix and the accepted path only (compaction: the rejected branches leave it), and the
draft's cache goes back to the committed prefix. The first token comes from the target's prefill.

Attention-only models without a sliding window (the tiny llama, gpt2, qwen2 and mistral pairs).
Counts (``DecodeStats``): ``gammas`` holds each step's tree depth and ``drafted`` their sum, so the
chain's counter rules read a tree as a chain of its depth; ``tree_sizes`` holds each step's drafted
nodes and ``path_lengths`` its accepted path length (<= the depth; they sum to ``accepted``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from .checks import check_gamma, check_pair, check_request, default_generator
from .errors import SpecDecError
from .kv import CachedLM, check_finite
from .output import TokenSink
from .sampling import GREEDY, SamplingConfig, choose_token, probs_from_logits
from .stats import DecodeResult, StatsCounter
from .tree import RULES, Tree, depths, draft_tree, static_shape, tree_step


class UnsupportedTreeModelError(SpecDecError):
    """The model's cache cannot take a tree: a sliding window or recurrent layers."""


def tree_mask(committed: int, fed: int, parents: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """(1, 1, fed + nodes - 1, committed + nodes - 1) additive mask: causal over the committed tokens
    (the last ``fed`` of them are new), then each tree node (the root excluded: it is the last committed
    token) sees the committed prefix, its ancestors and itself."""
    nodes = len(parents) - 1
    allowed = torch.zeros(fed + nodes, committed + nodes, dtype=torch.bool)
    for row in range(fed):
        allowed[row, : committed - fed + row + 1] = True
    for node in range(1, nodes + 1):
        allowed[fed + node - 1, :committed] = True
        ancestor = node
        while ancestor > 0:
            allowed[fed + node - 1, committed + ancestor - 1] = True
            ancestor = parents[ancestor]
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask.view(1, 1, *allowed.shape)


def node_positions(committed: int, parents: tuple[int, ...]) -> list[int]:
    """Position ids of nodes 1.. : committed - 1 + depth (siblings share a position)."""
    return [committed - 1 + d for d in depths(parents)[1:]]


def tree_forward(lm: CachedLM, seq: list[int], tree: Tree, mask_fn: Callable[..., torch.Tensor] = tree_mask,
                 positions_fn: Callable[..., list[int]] = node_positions) -> torch.Tensor:
    """One pass over ``seq[lm.length:]`` and the tree's nodes -> (nodes, vocab) logits, row 0 the root's."""
    fed = seq[lm.length :]
    committed = len(seq)
    device = lm.model.get_input_embeddings().weight.device
    ids = torch.tensor([*fed, *tree.tokens[1:]], device=device).view(1, -1)
    positions = [*range(lm.length, committed), *positions_fn(committed, tree.parents)]
    dtype = lm.model.get_input_embeddings().weight.dtype
    out = lm.model(input_ids=ids, attention_mask=mask_fn(committed, len(fed), tree.parents, dtype).to(device),
                   position_ids=torch.tensor([positions], device=device), use_cache=True,
                   **{lm._cache_arg: lm.cache})
    lm.forwards += 1
    lm.prefills += int(lm.length == 0)
    lm.tokens_fed += ids.shape[1]
    lm.length += ids.shape[1]
    return out.logits[0, len(fed) - 1 :]


def keep_path(lm: CachedLM, committed: int, path: list[int]) -> None:
    """Compaction: keep the committed prefix and the accepted nodes' positions (node i sat at committed + i - 1)."""
    keep = torch.tensor([*range(committed), *(committed + node - 1 for node in path)])
    for layer in lm.cache.layers:
        layer.keys = layer.keys.index_select(-2, keep.to(layer.keys.device))
        layer.values = layer.values.index_select(-2, keep.to(layer.values.device))
        if hasattr(layer, "cumulative_length"):  # a window longer than the model's context never slides
            layer.cumulative_length = layer.keys.shape[-2]
    lm.length = committed + len(path)


def check_tree_model(model: torch.nn.Module) -> None:
    config = model.config
    window = getattr(config, "sliding_window", None)
    slides = window is not None and window < getattr(config, "max_position_embeddings", window + 1)
    kinds = getattr(config, "layer_types", None) or ()
    if slides or any(kind not in ("full_attention", "sliding_attention") for kind in kinds):
        raise UnsupportedTreeModelError(
            f"{type(model).__name__} has a sliding window or non-attention layers: the tree decoder keeps the "
            "accepted path by indexing attention caches; use a full-attention model, or the chain decoder"
        )


class TreeDecoder:
    """Static-tree speculative decoding of ``target`` with ``draft``, batch size 1, exact in distribution."""

    name = "tree"
    capabilities = frozenset({"greedy", "temperature", "top_k", "top_p", "streaming", "gamma", "eos"})
    mask_fn = staticmethod(tree_mask)  # the pieces a tree bug lives in, one attribute each
    positions_fn = staticmethod(node_positions)
    compact = staticmethod(keep_path)

    def __init__(self, target: torch.nn.Module, draft: torch.nn.Module, *, branching: tuple[int, ...] = (2, 2, 1),
                 rule: str = "iid") -> None:
        check_pair(target, draft)
        check_tree_model(target)
        if rule not in RULES:
            raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
        self.target, self.draft = target, draft
        self.branching, self.rule = tuple(branching), rule
        static_shape(self.branching)  # refuses a bad branching now
        self._target, self._draft = CachedLM(target), CachedLM(draft)

    def generate(self, input_ids: torch.Tensor, *, max_new_tokens: int, sampling: SamplingConfig = GREEDY,
                 gamma: int | None = None, eos_token_id: int | None = None, generator: torch.Generator | None = None,
                 on_token: Callable[[int], None] | None = None) -> DecodeResult:
        """(1, prompt_len) -> tokens and stats; ``gamma`` caps the tree's depth (None: the whole branching)."""
        depth = len(self.branching) if gamma is None else min(check_gamma(gamma), len(self.branching))
        check_request(self.target, input_ids, max_new_tokens, sampling, generator)
        if generator is None and not sampling.greedy:
            generator = default_generator(input_ids.device)
        self._target.reset()
        self._draft.reset()
        self._device = input_ids.device
        sink, counter = TokenSink(max_new_tokens, eos_token_id, on_token), StatsCounter()
        sizes, lengths, seq = [], [], input_ids[0].tolist()
        with torch.inference_mode():
            while not sink.finished:
                step_depth = min(depth, sink.remaining - 1) if len(seq) > input_ids.shape[1] else 0
                if step_depth == 0:
                    logits = self._target.forward(torch.tensor(seq[self._target.length :], device=input_ids.device))
                    check_finite(bool(torch.isfinite(logits).all()), "target")
                    new, n, nodes = [int(choose_token(logits[-1], sampling, generator))], 0, 0
                else:
                    new, n, nodes = self.step(seq, self.branching[:step_depth], sampling, generator)
                emitted = sink.emit(new)
                if len(seq) == input_ids.shape[1]:
                    counter.forwards_before_first_token = self._target.forwards + self._draft.forwards
                if step_depth:
                    counter.record_step(step_depth, min(n, emitted), n < step_depth and emitted > n)
                    sizes.append(nodes)
                    lengths.append(min(n, emitted))
                seq += new[:emitted]
        counter.new_tokens = len(sink.tokens)
        stats = replace(counter.freeze(self._target, self._draft), tree_sizes=tuple(sizes), path_lengths=tuple(lengths))
        return DecodeResult(tokens=sink.tokens, stats=stats)

    def step(self, seq: list[int], branching: tuple[int, ...], sampling: SamplingConfig,
             generator: torch.Generator | None) -> tuple[list[int], int, int]:
        """One tree step after ``seq`` -> (accepted tokens + the correction or bonus token, path length, nodes)."""
        committed = len(seq)
        # 1. Draft: catch the draft up with seq, then one pass per non-leaf node over its path.
        self._draft.rollback(committed - 1)
        root_logits = self._draft.forward(torch.tensor(seq[self._draft.length :], device=self._device))[-1]

        def draft_at(path: tuple[int, ...]) -> torch.Tensor:
            if len(path) == 1:
                logits = root_logits
            else:
                logits = self._draft.forward(torch.tensor(path[1:], device=self._device))[-1]
            self._draft.rollback(committed)
            return logits.softmax(-1) if sampling.greedy else probs_from_logits(logits, sampling)

        mode = "top_k" if sampling.greedy else RULES[self.rule][0]
        tree, draft_probs = draft_tree(static_shape(branching), seq[-1], draft_at, mode, generator)

        # 2. One target pass over the committed tokens it lacks and every node, tree mask, positions by depth.
        target_logits = tree_forward(self._target, seq, tree, self.mask_fn, self.positions_fn)  # (nodes, vocab)
        check_finite(bool(torch.isfinite(target_logits).all()), "target")

        # 3. Verify; 4. keep the accepted path in the target's cache; the draft goes back to seq.
        path, token = tree_step(tree, target_logits, draft_probs, sampling, generator, self.rule)
        self.compact(self._target, committed, path)
        self._draft.rollback(committed)
        return [*(tree.tokens[i] for i in path), token], len(path), len(tree.parents) - 1


def factory(
    target: torch.nn.Module, draft: torch.nn.Module, *, gamma: int | None = None, **options: object
) -> TreeDecoder:
    """``--specdec-impl reference_impl.tree_decoder:factory``: a 2-2-1 i.i.d. tree; ``gamma`` keeps its first levels."""
    branching = tuple(options.pop("branching", (2, 2, 1)))  # type: ignore[call-overload]
    return TreeDecoder(target, draft, branching=branching[:gamma] if gamma else branching, **options)  # type: ignore[arg-type]
