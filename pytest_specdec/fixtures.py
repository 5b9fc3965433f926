"""The plugin's fixtures: the model pair, the decoders, prompts, generators and the timer.

Heavy objects are session scoped (each model loads once per session, or once per xdist
worker). The decoder under test comes from ``--specdec-impl`` (default: the reference decoder).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .options import SAVE_BASELINE as SAVE_BASELINE_FLAG
from .options import SpecDecOptions, get_options
from .perf.interleaved import PerfRecord, measure_interleaved
from .protocol.decoder import BASELINE_IMPL, DEFAULT_IMPL, CheckedDecoder, load_factory, make_decoder
from .report.summary import SessionResults

RESULTS_KEY = pytest.StashKey[SessionResults]()


@pytest.fixture(scope="session")
def specdec_options(pytestconfig: pytest.Config) -> SpecDecOptions:
    """The parsed ``--specdec-*`` options."""
    return get_options(pytestconfig)


@pytest.fixture(scope="session")
def specdec_results(pytestconfig: pytest.Config) -> SessionResults:
    """Where tests record figures for the end-of-session table and JSON."""
    return pytestconfig.stash[RESULTS_KEY]


@pytest.fixture(scope="session")
def specdec_pair(specdec_options: SpecDecOptions, specdec_results: SessionResults) -> Any:
    """The loaded model pair (``ModelPair``), loaded once per session; its load time is reported."""
    from .loading import load_pair

    pair = load_pair(specdec_options)
    specdec_results.load_seconds[pair.label] = dict(pair.load_seconds)
    return pair


@pytest.fixture(scope="session")
def specdec_target(specdec_pair: Any) -> Any:
    return specdec_pair.target


@pytest.fixture(scope="session")
def specdec_draft(specdec_pair: Any) -> Any:
    return specdec_pair.draft


@pytest.fixture(scope="session")
def specdec_tokenizer(specdec_pair: Any) -> Any:
    """The pair's tokenizer, or None for pairs built without one (tiny and calibrated pairs)."""
    return specdec_pair.tokenizer


@pytest.fixture(scope="session")
def specdec_factory(specdec_options: SpecDecOptions) -> Callable[..., CheckedDecoder]:
    """``factory(target, draft, **options)`` for the decoder under test, its results checked against the protocol."""
    spec = specdec_options.impl or DEFAULT_IMPL
    factory = load_factory(spec)

    def build(target: Any, draft: Any, **options: Any) -> CheckedDecoder:
        return make_decoder(factory, spec, target, draft, **options)

    return build


@pytest.fixture(scope="session")
def specdec_baseline_factory() -> Callable[..., CheckedDecoder]:
    """``factory(target, draft=None)`` for the autoregressive baseline."""
    factory = load_factory(BASELINE_IMPL)
    return lambda target, draft=None, **options: make_decoder(factory, BASELINE_IMPL, target, draft, **options)


@pytest.fixture(scope="session")
def specdec_decoder(specdec_factory: Callable[..., CheckedDecoder], specdec_pair: Any) -> CheckedDecoder:
    """The decoder under test, built on the session's pair."""
    return specdec_factory(specdec_pair.target, specdec_pair.draft)


@pytest.fixture(scope="session")
def specdec_baseline_decoder(specdec_baseline_factory: Callable[..., CheckedDecoder], specdec_pair: Any) -> Any:
    """The autoregressive baseline on the session's target."""
    return specdec_baseline_factory(specdec_pair.target)


@pytest.fixture(scope="session")
def specdec_base_decoder(specdec_options: SpecDecOptions, specdec_pair: Any) -> CheckedDecoder | None:
    """The base branch's decoder (``--specdec-base-impl``, from ``--specdec-base-path`` when given) on the session's
    pair, timed beside the decoder under test for the same-job A/B; None without the option."""
    if not specdec_options.base_impl:
        return None
    from .protocol.base_import import load_base_factory

    factory = load_base_factory(specdec_options.base_impl, specdec_options.base_path)
    return make_decoder(factory, f"base {specdec_options.base_impl}", specdec_pair.target, specdec_pair.draft)


@pytest.fixture(scope="session")
def specdec_prompts(specdec_pair: Any) -> list[Any]:
    """The standard prompt set as (1, L) LongTensors on the pair's device."""
    from .prompts import prompt_ids

    vocab = specdec_pair.target.get_output_embeddings().weight.shape[0]
    return prompt_ids(specdec_pair.tokenizer, vocab, specdec_pair.device)


@pytest.fixture
def specdec_generator(specdec_pair: Any) -> Callable[[int], Any]:
    """``make(seed)`` -> a ``torch.Generator`` on the pair's device, seeded."""
    import torch

    device = specdec_pair.device.split(":")[0] if specdec_pair.device.startswith("cpu") else specdec_pair.device
    return lambda seed: torch.Generator(device=device).manual_seed(seed)


@pytest.fixture(scope="session")
def specdec_timer(specdec_pair: Any) -> Any:
    """A ``Timer`` for the pair's device: TTFT, TPOT and throughput per decode, CUDA-synchronised."""
    from .perf.timing import Timer

    return Timer(specdec_pair.device)


@pytest.fixture
def specdec_measure(
    request: pytest.FixtureRequest,
    specdec_pair: Any,
    specdec_decoder: CheckedDecoder,
    specdec_baseline_decoder: Any,
    specdec_prompts: list[Any],
    specdec_timer: Any,
    specdec_results: SessionResults,
    specdec_forward_costs: Callable[[int], dict[str, float]],
    specdec_base_decoder: CheckedDecoder | None,
) -> Callable[..., PerfRecord]:
    """``measure(gamma=None, sampling=GREEDY, name=None)``: time the decoder under test against the
    baseline, interleaved, with the prompt count, max_new_tokens, repeats and warm-up given by the
    test's ``specdec_perf`` marker; the record goes to the session report. With a base decoder
    (``--specdec-base-impl``) it is timed in the same loop, swapping places with the decoder under test."""
    import torch

    from reference_impl.sampling import GREEDY

    marker = request.node.get_closest_marker("specdec_perf")
    settings = {"prompts": 4, "max_new_tokens": 32, "repeats": 3, "warmup": 1, **(marker.kwargs if marker else {})}

    default_gamma = getattr(specdec_decoder, "gamma", None) or 4  # c and v for auto-gamma decoders: at gamma 4

    def measure(gamma: int | None = None, sampling: Any = GREEDY, name: str | None = None) -> PerfRecord:
        device = specdec_pair.device
        decoders = {"speculative": specdec_decoder, "baseline": specdec_baseline_decoder}
        if specdec_base_decoder is not None:
            decoders = {"speculative": specdec_decoder, "base": specdec_base_decoder, **decoders}
        prompts = specdec_prompts[: settings["prompts"]]
        generate_kwargs = {"sampling": sampling, "gamma": gamma,
                           "make_generator": lambda seed: torch.Generator(device=device).manual_seed(seed)}
        samples = measure_interleaved(
            specdec_timer, decoders, prompts, repeats=settings["repeats"], warmup=settings["warmup"],
            generate_kwargs={**generate_kwargs, "max_new_tokens": settings["max_new_tokens"]},
            alternate=("speculative", "base") if "base" in decoders else None,
        )
        first_tokens = {}
        if specdec_base_decoder is not None:
            from .perf.ab import measure_first_tokens

            first_tokens = measure_first_tokens(specdec_timer, specdec_decoder, specdec_base_decoder, prompts,
                                                generate_kwargs)
        record = PerfRecord(
            name=name or request.node.name,
            pair=specdec_pair.label,
            gamma=gamma,
            sampling=sampling.describe(),
            max_new_tokens=settings["max_new_tokens"],
            speculative=samples["speculative"],
            baseline=samples["baseline"],
            extra=_perf_extra(settings, specdec_prompts, specdec_forward_costs(gamma or default_gamma)),
            base=samples.get("base"),
            first_tokens=first_tokens,
        )
        specdec_results.perf.append(record)
        return record

    return measure


# --- performance baselines: forward-pass costs, fingerprint, comparison (see perf/baselines/) -------


def _perf_extra(settings: dict[str, Any], prompts: list[Any], costs: dict[str, float]) -> dict[str, Any]:
    """What a ``PerfRecord`` carries besides its samples: the protocol (part of the fingerprint), c and v, and the
    torch thread count the decodes ran with."""
    import torch

    from .perf.baselines import prompt_digest

    protocol = {"prompts": prompt_digest(prompts[: settings["prompts"]]), "max_new_tokens": settings["max_new_tokens"],
                "repeats": settings["repeats"], "warmup": settings["warmup"]}
    return {"protocol": protocol, "forward_costs": costs, "torch_threads": torch.get_num_threads()}


@pytest.fixture(scope="session")
def specdec_forward_costs(specdec_pair: Any) -> Callable[[int], dict[str, float]]:
    """``costs(gamma)`` -> the pair's cost ratios c and v(gamma) for the speedup model (FIELD-NOTES), measured by
    ``reference_impl.autogamma.measure_costs`` once per gamma."""
    cache: dict[int, dict[str, float]] = {}

    def costs(gamma: int) -> dict[str, float]:
        if gamma not in cache:
            from reference_impl.autogamma import measure_costs

            model = measure_costs(specdec_pair.target, specdec_pair.draft, max_tokens=gamma + 1, repeats=15)
            cache[gamma] = {"gamma": gamma, "c": model.c, "v": model.v(gamma), "target_pass_s": model.target_decode_s,
                            "draft_pass_s": model.draft_decode_s, "verify_pass_s": model.verify_s[gamma]}
        return cache[gamma]

    return costs


@pytest.fixture(scope="session")
def specdec_pair_identity(specdec_pair: Any) -> dict[str, Any]:
    """The pair's part of a baseline fingerprint: ids, revision, dtype and digests of config and weights."""
    from .perf.baselines import model_digest

    return {"target": specdec_pair.target_id, "draft": specdec_pair.draft_id, "revision": specdec_pair.revision,
            "target_digest": model_digest(specdec_pair.target), "draft_digest": model_digest(specdec_pair.draft),
            "dtype": specdec_pair.dtype}


@pytest.fixture
def specdec_baseline_check(
    specdec_options: SpecDecOptions,
    specdec_pair: Any,
    specdec_decoder: CheckedDecoder,
    specdec_pair_identity: dict[str, Any],
    specdec_results: SessionResults,
) -> Callable[[PerfRecord], Any]:
    """``check(record) -> Comparison`` against the stored baseline of the record's fingerprint.

    A regression fails the test with the metric, the baseline, the new value and the evidence; no
    comparable baseline skips it, naming the differing fields, unless a base decoder was timed
    alongside: its same-job A/B verdict (perf/ab.py) gates the timings on any machine, and a regression
    there fails the test too. With ``--specdec-save-baseline`` the
    record becomes the baseline (atomically, other entries kept) and the test passes. The decoder's
    ``name`` is part of the fingerprint: a changed decoder keeps its name and meets its old
    baseline; another decoder (an adapter) has baselines of its own.
    """

    def check(record: PerfRecord) -> Any:
        from .perf import baselines
        from .perf.environment import describe_environment

        measurement = {"name": record.name, "decoder": specdec_decoder.name, "gamma": record.gamma,
                       "sampling": record.sampling,
                       **{k: record.extra["protocol"][k] for k in ("prompts", "max_new_tokens", "repeats")}}
        fp = baselines.fingerprint(describe_environment(specdec_pair.device), specdec_pair_identity, measurement)
        timing, figures = baselines.timing_samples(record), baselines.deterministic_figures(record)
        exact = specdec_pair.device == "cpu" and specdec_pair.dtype in ("float32", "float64")
        try:
            stored = baselines.load_baselines(specdec_options.baseline_dir)
            comparison = baselines.compare(stored, fp, timing, figures, exact_numerics=exact)
            specdec_results.comparisons.append(comparison.as_dict())
            if specdec_options.save_baseline:
                path = baselines.baseline_file(specdec_options.baseline_dir, specdec_pair.label)
                summary = {k: v for k, v in record.as_dict().items() if k in ("speedup", "ttft_ratio")}
                key = baselines.save_baseline(path, fp, timing, figures, summary=summary,
                                              decoder=specdec_options.impl or DEFAULT_IMPL)
                specdec_results.notes.append(f"baseline for {record.name} saved to {path} (entry {key})")
                return comparison
        except baselines.BaselineError as exc:
            pytest.fail(str(exc), pytrace=False)
        failures = [comparison.message()] if comparison.failed else []
        if record.base is not None:
            from .perf.ab import compare_ab

            where = f" from {specdec_options.base_path}" if specdec_options.base_path else ""
            ab = compare_ab(record, f"{specdec_options.base_impl}{where}")
            specdec_results.comparisons.append(ab.as_dict())
            failures += [ab.message()] if ab.failed else []
        if failures:
            pytest.fail("\n".join(failures), pytrace=False)
        if comparison.status == "no comparable baseline" and record.base is None:
            pytest.skip(f"no comparable baseline for {record.name} in {specdec_options.baseline_dir}: "
                        f"{comparison.differences()}; record one with {SAVE_BASELINE_FLAG}")
        return comparison

    return check


# --- batched throughput (see perf/batched.py) -------------------------------------------------------


@pytest.fixture
def specdec_measure_batched(
    request: pytest.FixtureRequest,
    specdec_options: SpecDecOptions,
    specdec_pair: Any,
    specdec_prompts: list[Any],
    specdec_results: SessionResults,
    specdec_pair_identity: dict[str, Any],
    specdec_batched_factory: Callable[..., Any],
    specdec_batched_baseline_factory: Callable[..., Any],
) -> Callable[..., Any]:
    """``measure(gamma=None, sampling=GREEDY, name=None)``: time the decoder under test's ``generate_batch`` on
    the session's prompts as one batch (``prompts`` of the ``specdec_perf`` marker is the batch size) against
    the batched baseline, interleaved; note the figures in the summary and judge them against the stored
    baseline as ``specdec_baseline_check`` does. Skips when the decoder has no batched entry point."""
    import torch

    from reference_impl.sampling import GREEDY

    from .perf.baselines import prompt_digest
    from .perf.batched import BatchedPerfRecord, check_against_baseline, measure_batched

    marker = request.node.get_closest_marker("specdec_perf")
    settings = {"prompts": 8, "max_new_tokens": 32, "repeats": 5, "warmup": 1, **(marker.kwargs if marker else {})}
    decoder = specdec_batched_factory(specdec_pair.target, specdec_pair.draft)
    baseline = specdec_batched_baseline_factory(specdec_pair.target)
    prompts = [specdec_prompts[i % len(specdec_prompts)] for i in range(settings["prompts"])]
    device = specdec_pair.device

    def measure(gamma: int | None = None, sampling: Any = GREEDY, name: str | None = None) -> BatchedPerfRecord:
        runs = measure_batched(
            {"speculative": decoder, "baseline": baseline}, prompts, repeats=settings["repeats"],
            warmup=settings["warmup"], max_new_tokens=settings["max_new_tokens"], sampling=sampling, gamma=gamma,
            make_generators=lambda r: [torch.Generator(device=device).manual_seed(1000 * r + i) for i in
                                       range(len(prompts))],
            sync=(lambda: torch.cuda.synchronize(device)) if device.startswith("cuda") else (lambda: None))
        protocol = {"prompts": prompt_digest(prompts), "max_new_tokens": settings["max_new_tokens"],
                    "repeats": settings["repeats"], "warmup": settings["warmup"]}
        record = BatchedPerfRecord(name or request.node.name, specdec_pair.label, len(prompts), gamma,
                                   sampling.describe(), settings["max_new_tokens"], runs["speculative"],
                                   runs["baseline"], extra={"protocol": protocol,
                                                            "torch_threads": torch.get_num_threads()})
        specdec_results.notes.append(record.note())
        check_against_baseline(record, options=specdec_options, pair=specdec_pair, identity=specdec_pair_identity,
                               decoder_name=decoder.name, decoder_spec=decoder.label, results=specdec_results)
        return record

    return measure
