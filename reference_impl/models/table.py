"""A causal LM whose next-token logits are a lookup table over the previous token: a forward pass in microseconds.

The distribution tests need hundreds of thousands of sampled tokens per sampling setting, and a
transformers forward pass of even a 2-layer, 16-wide model costs about 2 ms of framework overhead.
``TableLM`` is a real ``PreTrainedModel`` (registered with the Auto classes as ``specdec-table``,
saved and loaded with ``save_pretrained`` / ``from_pretrained``, run by ``generate``, assisted
generation and every decoder of the suite) whose forward pass is a handful of tensor ops:

- the logits at a position are row ``state`` of the table ``lm_head.weight.T`` (``(states, vocab)``),
  where ``state`` is the last ``context`` tokens up to that position (``context = 1``: the token
  itself) as base-``(vocab + 1)`` digits, newest first, ``vocab`` standing for "no token" (before
  the first one): with ``context = 2``, ``state = token * (vocab + 1) + previous token``;
- the tokens it reads come from its ``DynamicCache``, one layer whose keys are the token ids and
  whose values are their attention-mask bits. So with ``context >= 2`` a decoder that leaves
  rejected tokens in the cache, crops it to the wrong length or feeds tokens at the wrong slot sees
  another state and another distribution, as it would with a transformer (with ``context = 1`` the
  state is the token fed, whatever the cache holds); masked slots (padding, a batched cache's holes)
  are skipped, so a row's logits depend on its own tokens only. Keys are stored as float32, so ids
  stay exact (below 2**24) whatever the model's dtype; positions (``position_ids``) are ignored.

``table_pair`` builds a target and a draft whose rows are permutations of two fixed vectors,
with the draft's permutation a fixed rearrangement of the target's: every warper the suite uses
(temperature, top-k, top-p) commutes with permutations, so the per-step acceptance probability
beta = sum_x min(target(x), draft(x)) is the same in every state for every sampling setting, and
the law of accepted counts is known exactly (``constant_beta``).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Sequence

import torch
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

MODEL_TYPE = "specdec-table"
KEY_DTYPE = torch.float32  # the cache's keys (token ids, exact below 2**24) and values (mask bits), any model dtype


class TableLMConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(self, vocab_size: int = 8, context: int = 1, max_position_embeddings: int = 4096, **kwargs) -> None:
        if vocab_size < 2 or context < 1:
            raise ValueError(
                f"a table LM needs vocab_size >= 2 and context >= 1, got {vocab_size} and {context}: "
                "give the table at least two columns (tokens) and a context of at least one token"
            )
        self.vocab_size = vocab_size
        self.context = context
        self.max_position_embeddings = max_position_embeddings
        # one cache layer (keys: token ids, values: mask bits); the attention fields some callers read
        self.num_hidden_layers = 1
        self.num_attention_heads = 1
        self.num_key_value_heads = 1
        self.hidden_size = 1
        kwargs.setdefault("tie_word_embeddings", False)
        kwargs.setdefault("bos_token_id", None)
        kwargs.setdefault("eos_token_id", None)  # no EOS: the distribution tests ask for exact lengths
        super().__init__(**kwargs)

    @property
    def num_states(self) -> int:
        return (self.vocab_size + 1) ** self.context


class TableLM(PreTrainedModel, GenerationMixin):
    config_class = TableLMConfig
    base_model_prefix = "table"
    main_input_name = "input_ids"
    _supports_cache_class = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config: TableLMConfig) -> None:
        super().__init__(config)
        # the input embedding is the token id itself (so embeddings carry the device and dtype)
        self.embed_tokens = torch.nn.Embedding(config.vocab_size, 1)
        self.lm_head = torch.nn.Linear(config.num_states, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        with torch.no_grad():
            if module is self.embed_tokens:
                module.weight.copy_(torch.arange(self.config.vocab_size, dtype=module.weight.dtype).unsqueeze(1))
            elif module is self.lm_head:
                module.weight.zero_()

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embed_tokens

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.lm_head

    def set_table(self, table: torch.Tensor) -> TableLM:
        """(states, vocab) logits -> this model, with ``table`` as its lookup table."""
        expected = (self.config.num_states, self.config.vocab_size)
        if tuple(table.shape) != expected:
            raise ValueError(
                f"table must have shape {expected}: (vocab + 1) ** context states (a token or 'none' per "
                f"context slot) by vocab logits, got {tuple(table.shape)}"
            )
        with torch.no_grad():
            self.lm_head.weight.copy_(table.T)
        return self

    @property
    def table(self) -> torch.Tensor:
        """(states, vocab) logits."""
        return self.lm_head.weight.T

    def states(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(batch, slots) token ids and validity -> (batch, slots): the state each slot's logits come from."""
        vocab, context = self.config.vocab_size, self.config.context
        slots = torch.arange(tokens.shape[1], device=tokens.device)
        # last[i] = the newest valid slot at or before i (-1: none); skipping holes and padding
        last = torch.where(valid, slots, -1).cummax(dim=1).values
        state = torch.zeros_like(tokens)
        at = last
        for _ in range(context):
            token = torch.where(at >= 0, tokens.gather(1, at.clamp_min(0)), vocab)
            state = state * (vocab + 1) + token
            before = (at - 1).clamp_min(0)
            at = torch.where(at >= 1, last.gather(1, before), -1)
        return state

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: object | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values: object | None = None,
        **kwargs: object,
    ) -> CausalLMOutputWithPast:
        if input_ids is None:
            if inputs_embeds is None:
                raise ValueError("TableLM needs input_ids (or inputs_embeds holding token ids)")
            input_ids = inputs_embeds[..., 0].round().long()
        cache = cache if cache is not None else past_key_values
        batch, new = input_ids.shape
        if attention_mask is not None and attention_mask.dim() == 4:  # a tree: each row's own visible slots
            return self._forward_tree(input_ids, attention_mask, cache, logits_to_keep)
        new_valid = None if attention_mask is None else attention_mask[:, -new:]
        keys = input_ids.to(KEY_DTYPE).view(batch, 1, new, 1)
        values = torch.ones_like(keys) if new_valid is None else new_valid.to(KEY_DTYPE).view(batch, 1, new, 1)
        if cache is not None and use_cache is not False:
            keys, values = cache.update(keys, values, 0)
        if self.config.context == 1 and (new_valid is None or bool(new_valid.all())):
            states = input_ids  # context 1: a valid slot's state is its own token, whatever the cache holds before it
        else:
            tokens, valid = keys[:, 0, :, 0].long(), values[:, 0, :, 0].bool()
            if attention_mask is not None and attention_mask.shape[1] == valid.shape[1]:
                valid = valid & attention_mask.bool()  # the caller's mask over every slot wins (batched holes)
            states = self.states(tokens, valid)[:, -new:]
        logits = torch.nn.functional.embedding(states[:, kept(logits_to_keep, new)], self.lm_head.weight.T)
        return causal_lm_output(logits, cache)


    def _forward_tree(self, input_ids: torch.Tensor, mask: torch.Tensor, cache: object | None,
                      logits_to_keep: int | torch.Tensor) -> CausalLMOutputWithPast:
        """A 4-D additive mask (batch, 1, new, slots), 0 where a row sees a slot: a row's state is its last
        ``context`` visible slots, newest first (a tree node's: itself, its parent, ...)."""
        batch, new = input_ids.shape
        keys = input_ids.to(KEY_DTYPE).view(batch, 1, new, 1)
        if cache is not None:
            keys, _ = cache.update(keys, torch.ones_like(keys), 0)
        tokens = keys[:, 0, :, 0].long().unsqueeze(1)  # (batch, 1, slots)
        seen = mask[:, 0] == 0  # (batch, new, slots)
        rank = seen.flip(-1).long().cumsum(-1).flip(-1) * seen  # 1: the newest visible slot
        vocab, state = self.config.vocab_size, torch.zeros(batch, new, dtype=torch.long, device=input_ids.device)
        for k in range(1, self.config.context + 1):
            at = rank == k
            digit = torch.where(at.any(-1), (tokens * at).sum(-1), vocab)
            state = state * (vocab + 1) + digit
        logits = torch.nn.functional.embedding(state[:, kept(logits_to_keep, new)], self.lm_head.weight.T)
        return causal_lm_output(logits, cache)


def kept(logits_to_keep: int | torch.Tensor, new: int) -> slice | torch.Tensor:
    """transformers' ``logits_to_keep`` (0: all; k: the last k; a tensor: positions or a mask) -> index over ``new``."""
    if isinstance(logits_to_keep, int):
        return slice(-min(logits_to_keep, new) if logits_to_keep > 0 else -new, None)
    return logits_to_keep[-new:] if logits_to_keep.dtype == torch.bool else logits_to_keep - new


def causal_lm_output(logits: torch.Tensor, cache: object | None) -> CausalLMOutputWithPast:
    """``CausalLMOutputWithPast(logits=logits, cache=cache)``, built without ``ModelOutput``'s per-call field checks.

    The constructor validates its dataclass fields on every call (about 15 us, over a third of a forward
    pass here); this sets the same attributes and dict entries directly (``tests/reference/test_table_model.py``
    checks the result equals the constructor's, attributes included).
    """
    output = CausalLMOutputWithPast.__new__(CausalLMOutputWithPast)
    output.__dict__.update(_OUTPUT_FIELDS, logits=logits, cache=cache)
    OrderedDict.__setitem__(output, "logits", logits)
    if cache is not None:
        OrderedDict.__setitem__(output, "cache", cache)
    return output


_OUTPUT_FIELDS = dict.fromkeys(field.name for field in dataclasses.fields(CausalLMOutputWithPast))


def register() -> None:
    """Make ``AutoConfig`` / ``AutoModelForCausalLM`` know ``specdec-table`` (idempotent)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        AutoConfig.register(MODEL_TYPE, TableLMConfig)
        AutoModelForCausalLM.register(TableLMConfig, TableLM)
    except ValueError:  # already registered
        pass


register()


def table_model(table: torch.Tensor, *, context: int = 1, dtype: torch.dtype = torch.float64) -> TableLM:
    """A ``TableLM`` with ``table`` ((vocab + 1) ** context, vocab) as its logits, in eval mode."""
    if table.dim() != 2:
        raise ValueError(f"table must be 2-D ((vocab + 1) ** context states, vocab), got shape {tuple(table.shape)}")
    vocab = table.shape[1]
    model = TableLM(TableLMConfig(vocab_size=vocab, context=context))
    return model.to(dtype).set_table(table.to(dtype)).eval()


def permuted_rows(base: torch.Tensor, permutations: torch.Tensor) -> torch.Tensor:
    """(vocab,), (states, vocab) -> (states, vocab): row s puts base[i] on token permutations[s, i]."""
    rows = torch.empty(permutations.shape, dtype=base.dtype)
    return rows.scatter_(1, permutations, base.expand_as(rows).contiguous())


def table_pair(
    target_logits: Sequence[float],
    draft_logits: Sequence[float],
    rearrangement: Sequence[int],
    *,
    seed: int = 0,
    context: int = 1,
    dtype: torch.dtype = torch.float64,
) -> tuple[TableLM, TableLM]:
    """(target, draft): in every state the target puts ``target_logits[i]`` on token sigma_s(i) and the
    draft puts ``draft_logits[i]`` on token sigma_s(rearrangement[i]), sigma_s a random permutation.

    So in every state, and under every permutation-equivariant warper, the pair relates the same
    way: the acceptance probability is one number per sampling setting (``constant_beta``).
    ``context=2``: the state is the last two tokens, so a cache that keeps rejected tokens or is
    cropped to the wrong length changes the law (with ``context=1`` only the token fed matters).
    """
    vocab = len(target_logits)
    if len(draft_logits) != vocab or sorted(rearrangement) != list(range(vocab)):
        raise ValueError("target_logits, draft_logits and rearrangement (a permutation) must have one entry per token")
    generator = torch.Generator().manual_seed(seed)
    states = TableLMConfig(vocab_size=vocab, context=context).num_states
    sigma = torch.stack([torch.randperm(vocab, generator=generator) for _ in range(states)])
    target = permuted_rows(torch.tensor(target_logits, dtype=torch.float64), sigma)
    draft = permuted_rows(torch.tensor(draft_logits, dtype=torch.float64), sigma[:, list(rearrangement)])
    return table_model(target, context=context, dtype=dtype), table_model(draft, context=context, dtype=dtype)


def constant_beta(target: TableLM, draft: TableLM, sampling: object) -> float:
    """The acceptance probability of a ``table_pair`` under ``sampling`` (the same in every state; checked)."""
    from reference_impl.sampling import probs_from_logits

    target_probs = probs_from_logits(target.table.detach().double(), sampling)
    betas = target_probs.minimum(probs_from_logits(draft.table.detach().double(), sampling)).sum(dim=-1)
    if not torch.allclose(betas, betas[0].expand_as(betas), rtol=0, atol=1e-12):
        raise ValueError(f"acceptance differs between states ({betas.min():.6f}..{betas.max():.6f}): not a table_pair")
    return float(betas[0].detach())

