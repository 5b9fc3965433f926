"""TableLM (``reference_impl.models.table``): a registered causal LM whose logits are a lookup table.

Checked here: it saves and loads through the Auto classes; its logits are the table row of each
position's state, read from its cache (prefill = one-token passes, crops take the state back,
masked slots are skipped); ``generate``, assisted generation, the reference decoders (single and
batched) and the in-process adapters run on it and agree with its greedy chain; ``constant_beta``
holds in every state for every warper. Mutants: a model that ignores its cache, one that ignores
the attention mask, and a decoder that never crops its caches each fail the check meant for them.

Forward cost and the reference decoder's throughput on a table pair (one torch thread, about 20 s;
run it alone, under the exclusive timing lock)::

    flock -x /tmp/specdec-timing.lock python -m tests.reference.test_table_model
"""

from __future__ import annotations

import functools
import itertools
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from pytest_specdec.adapters import hf_assisted, prompt_lookup
from pytest_specdec.perf.timing import torch_threads
from pytest_specdec.protocol.decoder import CheckedDecoder
from reference_impl import GREEDY, AutoregressiveDecoder, SamplingConfig, SpeculativeDecoder
from reference_impl.batched import BatchedAutoregressiveDecoder, BatchedSpeculativeDecoder
from reference_impl.models import named_pairs
from reference_impl.models.table import (
    MODEL_TYPE,
    TableLM,
    TableLMConfig,
    constant_beta,
    table_model,
    table_pair,
)
from tests.support import ROOT

VOCAB = 8
TARGET = [2.0, 1.5, 1.0, 0.6, 0.3, 0.0, -0.5, -1.0]
DRAFT = [3.0, 2.0, 1.2, 0.5, 0.0, -0.5, -1.0, -2.0]
REARRANGEMENT = [2, 0, 1, 3, 4, 5, 6, 7]
SAMPLINGS = {
    "T=1": SamplingConfig(temperature=1.0),
    "T=0.6": SamplingConfig(temperature=0.6),
    "top_k=3": SamplingConfig(temperature=1.0, top_k=3),
    "top_p=0.8": SamplingConfig(temperature=1.0, top_p=0.8),
    "T=0.7,top_p=0.9": SamplingConfig(temperature=0.7, top_p=0.9),
    "top_k=5,top_p=0.7": SamplingConfig(temperature=1.0, top_k=5, top_p=0.7),
}


@pytest.fixture(autouse=True)
def one_thread():
    """Tensors of 8 logits: a second intra-op thread only adds wake-ups (sampled decoding 10x slower when busy)."""
    with torch_threads(1):
        yield


def random_table(vocab: int = VOCAB, context: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((vocab + 1) ** context, vocab, generator=generator, dtype=torch.float64) * 2


@functools.cache
def random_pair(context: int) -> tuple[TableLM, TableLM]:
    """A target and a draft that agree on the argmax in some states only: on every prompt below, greedy
    acceptance is strictly between 0 and 1 and the greedy chain visits 3 tokens or more (seed 2 chosen so)."""
    table = random_table(context=context, seed=2)
    noise = torch.randn(table.shape, generator=torch.Generator().manual_seed(102), dtype=torch.float64)
    return table_model(table, context=context), table_model(table + 1.5 * noise, context=context)


@functools.cache
def constant_pair(context: int) -> tuple[TableLM, TableLM]:
    return table_pair(TARGET, DRAFT, REARRANGEMENT, context=context)


def state_of(tokens: list[int], vocab: int = VOCAB, context: int = 2) -> int:
    """The state after ``tokens``: base-(vocab + 1) digits, newest token first, ``vocab`` before the first token."""
    state = 0
    for token in ([vocab] * context + tokens)[::-1][:context]:
        state = state * (vocab + 1) + token
    return state


def greedy_chain(model: TableLM, prompt: list[int], n: int) -> list[int]:
    """The table's own argmax chain, state by state."""
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(model.table[state_of(seq, model.config.vocab_size, model.config.context)].argmax()))
    return seq[len(prompt) :]


def ids(*tokens: int) -> torch.Tensor:
    return torch.tensor([tokens])


def forward(model: TableLM, tokens: torch.Tensor, cache: DynamicCache | None = None, **kwargs) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=tokens, cache=cache, use_cache=cache is not None, **kwargs).logits


# --- 1. saving, loading, registration, bad input --------------------------------------------------


def test_save_pretrained_round_trip(tmp_path):
    model = table_model(random_table(context=2), context=2)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float64)
    assert type(loaded) is TableLM and loaded.config.model_type == MODEL_TYPE == "specdec-table"
    assert loaded.config.context == 2 and loaded.config.vocab_size == VOCAB
    assert torch.equal(loaded.table, model.table)
    prompt = ids(3, 1, 4, 1, 5, 0, 7)
    assert torch.equal(forward(loaded, prompt), forward(model, prompt))


def test_loading_needs_only_the_zoo_import(tmp_path):
    """In a fresh process, loading fails before ``import reference_impl.models`` and works after it."""
    table_model(random_table()).save_pretrained(tmp_path)
    script = (
        "import sys, transformers\n"
        "try:\n"
        f"    transformers.AutoModelForCausalLM.from_pretrained({str(tmp_path)!r})\n"
        "    sys.exit('loaded without the registration')\n"
        "except (ValueError, KeyError) as exc:\n"
        "    assert 'specdec-table' in str(exc), exc\n"
        "import reference_impl.models\n"
        f"model = transformers.AutoModelForCausalLM.from_pretrained({str(tmp_path)!r})\n"
        "print(type(model).__name__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["TableLM"]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: table_model(torch.zeros(3, 1)), r"vocab_size >= 2"),
        (lambda: table_model(torch.zeros(VOCAB, VOCAB)), r"shape \(9, 8\)"),
        (lambda: table_model(torch.zeros(9, VOCAB), context=2), r"shape \(81, 8\)"),
        (lambda: table_model(torch.zeros(9)), r"2-D"),
        (lambda: TableLMConfig(vocab_size=8, context=0), r"context >= 1"),
        (lambda: table_pair(TARGET, DRAFT[:-1], REARRANGEMENT), r"one entry per token"),
        (lambda: table_pair(TARGET, DRAFT, [0, 0, 1, 2, 3, 4, 5, 6]), r"a permutation"),
    ],
)
def test_bad_input_is_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --- 2. forward semantics -------------------------------------------------------------------------


def test_logits_are_the_row_of_the_previous_token():
    model = table_model(random_table())
    prompt = [3, 1, 4, 1, 5, 0, 7, 7]
    logits = forward(model, torch.tensor([prompt]))[0]
    assert torch.equal(logits, model.table[prompt])


def test_context_2_state_encoding():
    model = table_model(random_table(context=2), context=2)
    prompt = [3, 1, 4, 1, 5, 0, 7, 7]
    states = [prompt[0] * (VOCAB + 1) + VOCAB] + [b * (VOCAB + 1) + a for a, b in itertools.pairwise(prompt)]
    assert states == [state_of(prompt[: i + 1]) for i in range(len(prompt))]
    assert torch.equal(forward(model, torch.tensor([prompt]))[0], model.table[states])


@pytest.mark.parametrize("keep", [0, 1, 3, 20, torch.tensor([0, 4]), torch.tensor([1, 0, 0, 1, 1, 0])])
def test_logits_to_keep_selects_positions_as_transformers_does(keep):
    model = table_model(random_table(context=2), context=2)
    prompt = torch.tensor([[3, 1, 4, 1, 5, 0]])
    full = forward(model, prompt)
    index = slice(-keep, None) if isinstance(keep, int) and keep else (slice(None) if isinstance(keep, int) else keep)
    assert torch.equal(forward(model, prompt, logits_to_keep=keep), full[:, index])


def test_fast_output_equals_the_constructor():
    from reference_impl.models.table import causal_lm_output

    logits = torch.zeros(1, 1, VOCAB)
    for cache in (None, DynamicCache()):
        fast, slow = causal_lm_output(logits, cache), CausalLMOutputWithPast(logits=logits, cache=cache)
        assert type(fast) is type(slow) and vars(fast) == vars(slow) and list(fast.items()) == list(slow.items())
        assert fast.logits is logits and fast.cache is cache and fast[0] is logits


def test_cache_keys_hold_ids_exactly_in_half_precision():
    """The cache stores ids in float32: in bfloat16, 299 would read back as 300."""
    model = table_model(random_table(vocab=300), dtype=torch.bfloat16)
    logits = forward(model, ids(299, 0), DynamicCache(config=model.config), attention_mask=ids(1, 0))
    assert torch.equal(logits[0, 1], model.table[299])


def check_prefill_equals_steps(model: TableLM, prompt: list[int]) -> None:
    """A prefill of k tokens and k one-token passes with the cache give the same logits."""
    whole = forward(model, torch.tensor([prompt]), DynamicCache(config=model.config))[0]
    cache = DynamicCache(config=model.config)
    steps = torch.cat([forward(model, ids(token), cache)[0] for token in prompt])
    assert torch.equal(whole, steps), "one-token passes with the cache differ from the prefill"


def check_crop_takes_the_state_back(model: TableLM, prefix: list[int], rejected: list[int], next_token: int) -> None:
    """Feed ``prefix`` then ``rejected``, crop them, feed ``next_token``: as if ``rejected`` never came."""
    cache = DynamicCache(config=model.config)
    forward(model, torch.tensor([prefix]), cache)
    forward(model, torch.tensor([rejected]), cache)
    cache.crop(-len(rejected))
    assert cache.get_seq_length() == len(prefix)
    after_crop = forward(model, ids(next_token), cache)[0, -1]
    fresh = forward(model, torch.tensor([[*prefix, next_token]]))[0, -1]
    assert torch.equal(after_crop, fresh), "after a crop the logits are not those of the kept prefix"


@pytest.mark.parametrize("context", [1, 2])
@pytest.mark.parametrize("prompt", [[5], [3, 1], [3, 1, 4, 1, 5, 0, 7, 7, 2]])
def test_prefill_equals_one_token_forwards(context, prompt):
    check_prefill_equals_steps(table_model(random_table(context=context), context=context), prompt)


@pytest.mark.parametrize("context", [1, 2])
@pytest.mark.parametrize("rejected", [[6], [6, 2, 0]])
def test_crop_takes_the_state_back(context, rejected):
    check_crop_takes_the_state_back(table_model(random_table(context=context), context=context), [3, 1, 4], rejected, 5)


def test_a_cache_left_uncropped_changes_the_distribution():
    """With context 2 the next state reads the previous token from the cache: a rejected one left there moves it."""
    model = table_model(random_table(context=2), context=2)
    cache = DynamicCache(config=model.config)
    forward(model, ids(3, 1, 4), cache)
    forward(model, ids(6, 2), cache)  # rejected, not cropped
    stale = forward(model, ids(5), cache)[0, -1].softmax(-1)
    right = forward(model, ids(3, 1, 4, 5))[0, -1].softmax(-1)
    assert 0.5 * (stale - right).abs().sum() > 0.2


def check_masked_slots_are_skipped(model: TableLM) -> None:
    """Left padding and holes (mask 0) leave a row's logits at its valid slots equal to the unpadded row's."""
    row = [3, 1, 4, 5, 2]
    padded = torch.tensor([[0, 0, 3, 1, 4, 5, 2], [3, 7, 1, 4, 7, 5, 2], [3, 1, 4, 6, 6, 5, 2]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 0, 1, 1, 0, 1, 1], [1, 1, 1, 0, 0, 1, 1]])
    alone = forward(model, torch.tensor([row]))[0]
    both = forward(model, padded, attention_mask=mask)
    for b in range(padded.shape[0]):
        assert torch.equal(both[b][mask[b].bool()], alone), f"row {b}: masked slots changed the logits"
    # the same through the cache: a padded prefill, then one token with the mask over every slot
    cache = DynamicCache(config=model.config)
    forward(model, padded, cache, attention_mask=mask)
    full_mask = torch.cat([mask, torch.ones(3, 1, dtype=torch.long)], dim=1)
    next_logits = forward(model, torch.full((3, 1), 6), cache, attention_mask=full_mask)
    expected = forward(model, torch.tensor([[*row, 6]]))[0, -1]
    for b in range(padded.shape[0]):
        assert torch.equal(next_logits[b, -1], expected), f"row {b}: masked cache slots changed the next logits"
    # a hole made after the fact: slots cached as valid, then masked by the caller (rejected tokens left in place)
    cache = DynamicCache(config=model.config)
    forward(model, torch.tensor([row]), cache)
    forward(model, ids(6, 0), cache)
    masked = forward(model, ids(7), cache, attention_mask=torch.tensor([[1] * len(row) + [0, 0, 1]]))[0, -1]
    assert torch.equal(masked, forward(model, torch.tensor([[*row, 7]]))[0, -1]), "slots masked later were not skipped"


@pytest.mark.parametrize("context", [1, 2])
def test_masked_slots_are_skipped(context):
    check_masked_slots_are_skipped(table_model(random_table(context=context), context=context))


class CacheBlindTableLM(TableLM):
    """Mutant: keeps its cache's length right but computes the logits from input_ids alone."""

    def forward(self, input_ids=None, cache=None, past_key_values=None, **kwargs):
        cache = cache if cache is not None else past_key_values
        if cache is not None:
            super().forward(input_ids, cache=cache, **kwargs)
        return super().forward(input_ids, cache=None, **kwargs)


class MaskBlindTableLM(TableLM):
    """Mutant: ignores the attention mask (reads padding and holes as tokens)."""

    def forward(self, *args, attention_mask=None, **kwargs):
        return super().forward(*args, **kwargs)


def mutant(cls: type[TableLM], context: int) -> TableLM:
    model = cls(TableLMConfig(vocab_size=VOCAB, context=context)).double()
    return model.set_table(random_table(context=context)).eval()


def test_mutant_that_ignores_its_cache_fails_the_cache_checks():
    model = mutant(CacheBlindTableLM, context=2)
    with pytest.raises(AssertionError, match="prefill"):
        check_prefill_equals_steps(model, [3, 1, 4, 1])
    with pytest.raises(AssertionError, match="crop"):
        check_crop_takes_the_state_back(model, [3, 1, 4], [6], 5)


def test_mutant_that_ignores_the_mask_fails_the_mask_check():
    with pytest.raises(AssertionError, match="masked"):
        check_masked_slots_are_skipped(mutant(MaskBlindTableLM, context=2))


# --- 3. transformers generate ---------------------------------------------------------------------


def fixed_gamma(draft: TableLM, gamma: int) -> None:
    config = draft.generation_config
    config.num_assistant_tokens, config.num_assistant_tokens_schedule = gamma, "constant"
    config.assistant_confidence_threshold = 0.0


@pytest.mark.parametrize("context", [1, 2])
def test_generate_greedy_follows_the_argmax_chain(context):
    target, draft = random_pair.__wrapped__(context)  # a fresh pair: the draft's generation config is changed below
    prompt = [3, 1, 4]
    expected = greedy_chain(target, prompt, 20)
    assert len(set(expected)) >= 3, "the chain should visit several tokens to be a test"
    out = target.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False)
    assert out[0, 3:].tolist() == expected
    fixed_gamma(draft, 3)
    assisted = target.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, assistant_model=draft)
    assert assisted[0, 3:].tolist() == expected


def allowed_table(context: int) -> torch.Tensor:
    """Each state allows 3 tokens (the rest -inf): a wrong state shows up as a forbidden transition."""
    table = random_table(context=context)
    keep = table.argsort(dim=1)[:, -3:]
    return torch.full_like(table, float("-inf")).scatter(1, keep, table.gather(1, keep))


@pytest.mark.parametrize("assisted", [False, True])
def test_generate_sampled_never_takes_a_forbidden_transition(assisted):
    target = table_model(allowed_table(2), context=2)
    draft = table_model(allowed_table(2) * 0.5, context=2)
    fixed_gamma(draft, 4)
    extra = {"assistant_model": draft} if assisted else {}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        out = target.generate(ids(3, 1, 4), max_new_tokens=60, do_sample=True, top_k=0, **extra)[0].tolist()
    assert len(out) == 63
    states = [state_of(out[:i]) for i in range(3, len(out))]
    assert torch.isfinite(target.table.detach()[states, out[3:]]).all()
    assert len(set(out[3:])) >= 3


# --- 4. the suite's decoders ----------------------------------------------------------------------


PROMPTS = [[5], [3, 1], [3, 1, 4, 1, 5, 0, 7, 2, 6]]


@pytest.mark.parametrize("context", [1, 2])
@pytest.mark.parametrize("gamma", [1, 3, 6])
def test_reference_decoders_agree_in_greedy(context, gamma):
    for target, draft in (random_pair(context), constant_pair(context)):
        speculative, baseline = SpeculativeDecoder(target, draft, gamma=gamma), AutoregressiveDecoder(target)
        for prompt in PROMPTS:
            expected = greedy_chain(target, prompt, 24)
            assert baseline.generate(torch.tensor([prompt]), max_new_tokens=24).tokens == expected
            result = speculative.generate(torch.tensor([prompt]), max_new_tokens=24)
            assert result.tokens == expected, (prompt, gamma)
            agreeing = target is random_pair(context)[0]  # the constant pair's greedy drafts are never accepted
            assert (0 < result.stats.accepted < result.stats.drafted) if agreeing else result.stats.accepted == 0


class UncroppedSpeculativeDecoder(SpeculativeDecoder):
    """Mutant: keeps its length bookkeeping but never crops the models' caches."""

    def generate(self, *args, **kwargs):
        def no_crop(old: int, new: int) -> int:
            return min(old, new)

        original_reset = self._target.reset

        def reset(cached=self._target, original=original_reset):
            original()
            cached._rollback.rollback = no_crop

        self._target.reset = reset
        return super().generate(*args, **kwargs)


def test_a_decoder_that_never_crops_differs_on_a_context_2_pair():
    target, draft = constant_pair(2)
    expected = greedy_chain(target, [3, 1, 4], 24)
    assert SpeculativeDecoder(target, draft, gamma=3).generate(ids(3, 1, 4), max_new_tokens=24).tokens == expected
    mutant_tokens = UncroppedSpeculativeDecoder(target, draft, gamma=3).generate(ids(3, 1, 4), max_new_tokens=24).tokens
    assert mutant_tokens != expected


BATCHES = [[9], [1, 4], [9, 1, 3, 2, 6]]


@pytest.mark.parametrize("lengths", BATCHES, ids=lambda lengths: "x".join(map(str, lengths)))
@pytest.mark.parametrize("context", [1, 2])
def test_batched_decoders_give_each_row_the_unbatched_tokens(lengths, context):
    generator = torch.Generator().manual_seed(sum(lengths) + context)
    prompts = [torch.randint(0, VOCAB, (1, n), generator=generator) for n in lengths]
    new = [12 + 5 * (b % 3) for b in range(len(prompts))]
    for target, draft in (random_pair(context), constant_pair(context)):
        single = SpeculativeDecoder(target, draft, gamma=3)
        expected = [single.generate(p, max_new_tokens=n).tokens for p, n in zip(prompts, new, strict=True)]
        for decoder in (BatchedSpeculativeDecoder(target, draft, gamma=3), BatchedAutoregressiveDecoder(target)):
            rows = decoder.generate_batch(prompts, max_new_tokens=new, sampling=GREEDY)
            assert [row.tokens for row in rows] == expected, decoder.name


@pytest.mark.parametrize("context", [1, 2])
def test_batched_sampled_rows_equal_the_unbatched_decoder_with_the_same_seeds(context):
    target, draft = constant_pair(context)
    sampling = SAMPLINGS["T=0.7,top_p=0.9"]
    prompts = [ids(3, 1, 4), ids(5), ids(2, 6, 0, 1, 7, 7, 3)]
    single = [SpeculativeDecoder(target, draft, gamma=4).generate(p, max_new_tokens=20, sampling=sampling,
                                                                  generator=torch.Generator().manual_seed(b)).tokens
              for b, p in enumerate(prompts)]
    generators = [torch.Generator().manual_seed(b) for b in range(len(prompts))]
    rows = BatchedSpeculativeDecoder(target, draft, gamma=4).generate_batch(
        prompts, max_new_tokens=20, sampling=sampling, generators=generators)
    assert [row.tokens for row in rows] == single


ADAPTERS = {
    "hf_assisted.factory": lambda t, d: hf_assisted.factory(t, d, gamma=3),
    "hf_assisted.default_factory": hf_assisted.default_factory,
    "prompt_lookup.factory": lambda t, d: prompt_lookup.factory(t, d, gamma=3),
}


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@pytest.mark.parametrize("pair", ["random-context-2", "constant-context-1"])
def test_in_process_adapters_run_on_a_table_pair(name, pair):
    target, draft = random_pair(2) if pair == "random-context-2" else constant_pair(1)
    decoder = CheckedDecoder(ADAPTERS[name](target, draft), name, target, draft)
    for prompt in PROMPTS:
        result = decoder.generate(torch.tensor([prompt]), max_new_tokens=20, sampling=GREEDY, gamma=3)
        assert result.tokens == greedy_chain(target, prompt, 20), prompt
    sampled = decoder.generate(ids(3, 1, 4), max_new_tokens=20, sampling=SAMPLINGS["T=1"], gamma=3,
                               generator=torch.Generator().manual_seed(0))
    assert len(sampled.tokens) == 20 and sampled.stats.target_forwards >= 1


# --- 5. constant_beta -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLINGS))
@pytest.mark.parametrize("context", [1, 2])
def test_acceptance_is_the_same_in_every_state(name, context):
    from reference_impl.sampling import probs_from_logits

    target, draft = constant_pair(context)
    sampling = SAMPLINGS[name]
    beta = constant_beta(target, draft, sampling)
    target_table, draft_table = target.table.detach(), draft.table.detach()
    assert 0.05 < beta < 0.999
    for state in range(target.config.num_states):
        target_probs = probs_from_logits(target_table[state], sampling)
        draft_probs = probs_from_logits(draft_table[state], sampling)
        assert abs(float(target_probs.minimum(draft_probs).sum()) - beta) < 1e-12, state


def test_constant_beta_refuses_a_pair_not_built_by_table_pair():
    target, draft = random_pair(1)
    with pytest.raises(ValueError, match="not a table_pair"):
        constant_beta(target, draft, SAMPLINGS["T=1"])


def test_the_zoo_entry_is_a_constant_beta_table_pair():
    target, draft = named_pairs()["table"].build(torch.float32)
    assert isinstance(target, TableLM) and target.dtype == torch.float32 and target.config.context == 2
    assert abs(constant_beta(target, draft, SAMPLINGS["T=1"]) - 0.556) < 1e-3


# --- the measurement (python -m tests.reference.test_table_model) -------------------------------------------


def forward_us(model: TableLM, forwards: int) -> float:
    """Best of 5: microseconds per 1-token forward with the cache (cropped every 64 passes)."""
    import time

    best, token = float("inf"), ids(3)
    with torch.inference_mode():
        for _ in range(5):
            cache = DynamicCache(config=model.config)
            model(input_ids=ids(1, 2, 3), cache=cache, use_cache=True, logits_to_keep=1)
            start = time.perf_counter()
            for i in range(forwards):
                model(input_ids=token, cache=cache, use_cache=True, logits_to_keep=1)
                if i % 64 == 63:
                    cache.crop(-64)
            best = min(best, (time.perf_counter() - start) / forwards * 1e6)
    return best


def measure(forwards: int = 20_000, calls: int = 200) -> dict[str, object]:
    """One torch thread: forward cost, and the reference decoder's tokens/s (T=1, gamma 3, 32 new tokens a call).

    Also the forward with transformers' own ``CausalLMOutputWithPast(...)`` constructor, same run.
    """
    import time

    from reference_impl.models import table

    torch.set_num_threads(1)
    target, draft = table_pair(TARGET, DRAFT, REARRANGEMENT)
    figures: dict[str, object] = {"forward_us": forward_us(target, forwards)}
    if hasattr(table, "causal_lm_output"):
        fast, table.causal_lm_output = table.causal_lm_output, lambda logits, cache: CausalLMOutputWithPast(
            logits=logits, cache=cache)
        try:
            figures["forward_us_with_model_output_constructor"] = forward_us(target, forwards)
        finally:
            table.causal_lm_output = fast
    decoder = SpeculativeDecoder(target, draft, gamma=3)
    generator = torch.Generator().manual_seed(0)
    rates = []
    for _ in range(5):
        start, tokens = time.perf_counter(), 0
        for _ in range(calls):
            tokens += len(decoder.generate(ids(1, 2, 3), max_new_tokens=32, sampling=SAMPLINGS["T=1"],
                                           generator=generator).tokens)
        rates.append(tokens / (time.perf_counter() - start))
    figures["speculative_tokens_per_s"] = max(rates)
    figures["speculative_ms_per_call"] = 32 / max(rates) * 1e3
    figures.update(load_1min=os.getloadavg()[0], torch=torch.__version__, threads=torch.get_num_threads())
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
