"""The plugin's fixtures: the model pair, the decoders, prompts, generators and the timer.

Heavy objects are session scoped (each model loads once per session, or once per xdist
worker). The decoder under test comes from ``--specdec-impl`` (default: the reference decoder).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .options import SpecDecOptions, get_options
from .perf import PerfRecord, measure_interleaved
from .protocol import BASELINE_IMPL, DEFAULT_IMPL, CheckedDecoder, load_factory, make_decoder
from .report import SessionResults

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
    from .timing import Timer

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
) -> Callable[..., PerfRecord]:
    """``measure(gamma=None, sampling=GREEDY, name=None)``: time the decoder under test against the
    baseline, interleaved, with the prompt count, max_new_tokens, repeats and warm-up given by the
    test's ``specdec_perf`` marker; the record goes to the session report."""
    import torch

    from reference_impl.sampling import GREEDY

    marker = request.node.get_closest_marker("specdec_perf")
    settings = {"prompts": 4, "max_new_tokens": 32, "repeats": 3, "warmup": 1, **(marker.kwargs if marker else {})}

    def measure(gamma: int | None = None, sampling: Any = GREEDY, name: str | None = None) -> PerfRecord:
        device = specdec_pair.device
        samples = measure_interleaved(
            specdec_timer,
            {"speculative": specdec_decoder, "baseline": specdec_baseline_decoder},
            specdec_prompts[: settings["prompts"]],
            repeats=settings["repeats"],
            warmup=settings["warmup"],
            generate_kwargs={
                "max_new_tokens": settings["max_new_tokens"],
                "sampling": sampling,
                "gamma": gamma,
                "make_generator": lambda seed: torch.Generator(device=device).manual_seed(seed),
            },
        )
        record = PerfRecord(
            name=name or request.node.name,
            pair=specdec_pair.label,
            gamma=gamma,
            sampling=sampling.describe(),
            max_new_tokens=settings["max_new_tokens"],
            speculative=samples["speculative"],
            baseline=samples["baseline"],
        )
        specdec_results.perf.append(record)
        return record

    return measure
