"""pytest-specdec: hooks only, in lifecycle order.

addoption -> configure (options parsed once, GPU gate, decoder spec and model checks) ->
generate_tests (gamma parametrization) -> collection (GPU skips, timing tests under xdist) ->
logreport (findings, through a Recorder; the scorecard) -> terminal summary (skips, the scorecard's verdicts,
findings on another version, results table, baseline verdicts, JSON, report with plot and benchmark JSON).
"""

from __future__ import annotations

import os

import pytest

from . import findings, requires, scorecard
from . import options as opts
from .batched import BatchedTally, specdec_batched_baseline_factory, specdec_batched_factory  # noqa: F401
from .fixtures import (  # noqa: F401  (fixtures are registered by import)
    RESULTS_KEY,
    specdec_base_decoder,
    specdec_baseline_check,
    specdec_baseline_decoder,
    specdec_baseline_factory,
    specdec_decoder,
    specdec_draft,
    specdec_factory,
    specdec_forward_costs,
    specdec_generator,
    specdec_measure,
    specdec_measure_batched,
    specdec_options,
    specdec_pair,
    specdec_pair_identity,
    specdec_prompts,
    specdec_results,
    specdec_target,
    specdec_timer,
    specdec_tokenizer,
)
from .report.summary import SessionResults

MARKERS = (
    "specdec_gpu: needs a CUDA device; runs only with --specdec-gpu",
    "specdec_perf(prompts=4, max_new_tokens=32, repeats=3, warmup=1): a timing test; never timed while "
    "other xdist workers compete",
    "specdec_batched: uses the decoder's batched entry point (generate_batch); counted in the summary",
    "specdec_statistical: a long statistical test (select with -m specdec_statistical, skip with "
    "-m 'not specdec_statistical')",
    findings.MARKER,
    "specdec_long: a long-context or long-generation correctness test, deselected by default (select with "
    "-m specdec_long)",
    "specdec_engine: runs against a serving engine (llama-server binary or --specdec-engine-url); skipped "
    "with one summary line when there is none",
    requires.MARKER_LINE,
    scorecard.MARKER_LINE,
)

GPU_SKIPPED_KEY = pytest.StashKey[int]()
PERF_DESELECTED_KEY = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    opts.add_options(parser)
    opts.add_engine_options(parser)


def _check_gpu(options: opts.SpecDecOptions) -> None:
    """--specdec-gpu without a usable CUDA device stops the run: a gate that skips everything is worse than none."""
    import torch

    if not torch.cuda.is_available():
        built = torch.version.cuda or "none (a CPU-only build)"
        raise pytest.UsageError(
            f"{opts.GPU} needs a CUDA device, but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, CUDA build: {built}). Run on a machine with an NVIDIA GPU and a CUDA "
            f"build of torch, or drop {opts.GPU} to run the CPU suite."
        )
    device = options.resolved_device()
    if ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
        raise pytest.UsageError(f"{opts.DEVICE} {device}: only {torch.cuda.device_count()} CUDA device(s) visible")


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    from .engines import plugin as engine_plugin

    config.pluginmanager.register(engine_plugin, "specdec-engine")
    options = opts.SpecDecOptions.from_pytest_config(config)
    config.stash[opts.OPTIONS_KEY] = options
    config.stash[RESULTS_KEY] = SessionResults(root=config.rootpath)
    config.stash[GPU_SKIPPED_KEY] = 0
    config.stash[PERF_DESELECTED_KEY] = 0
    config.pluginmanager.register(findings.Recorder(config.stash[RESULTS_KEY].findings), "specdec-findings")
    config.pluginmanager.register(BatchedTally(), "specdec-batched-tally")
    config.pluginmanager.register(requires.CapabilityGate(), "specdec-capabilities")
    from .protocol.decoder import DEFAULT_IMPL

    config.pluginmanager.register(scorecard.Scorecard(config.stash[RESULTS_KEY].verdicts, options.impl or DEFAULT_IMPL),
                                  "specdec-scorecard")
    if options.gpu:
        _check_gpu(options)
    elif options.resolved_device().startswith("cuda"):
        raise pytest.UsageError(f"{opts.DEVICE} {options.resolved_device()} needs {opts.GPU} as well")
    if options.impl:
        from .protocol.decoder import load_factory

        load_factory(options.impl)
    if options.base_impl:
        from .protocol.base_import import load_base_factory

        load_base_factory(options.base_impl, options.base_path)
    if options.target:
        from .loading import ModelLoadError, check_model_available

        for flag, spec in ((opts.TARGET, options.target), (opts.DRAFT, options.draft)):
            try:
                check_model_available(spec, options.revision)
            except ModelLoadError as exc:
                raise pytest.UsageError(f"{flag}: {exc}") from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "specdec_gamma" in metafunc.fixturenames:
        gammas = metafunc.config.stash[opts.OPTIONS_KEY].gammas
        metafunc.parametrize("specdec_gamma", gammas, ids=[f"gamma{g}" for g in gammas])


def _is_xdist_worker(config: pytest.Config) -> bool:
    """From the config, not the environment: a pytest started inside a worker (pytester, a benchmark script)
    inherits PYTEST_XDIST_WORKER but is a session of its own."""
    return hasattr(config, "workerinput")


def _xdist_workers(config: pytest.Config) -> int:
    if _is_xdist_worker(config):
        return int(config.workerinput.get("workercount", 1))  # type: ignore[attr-defined]
    numprocesses = getattr(config.option, "numprocesses", None)
    return int(numprocesses or 0) if str(numprocesses).isdigit() else 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    options = config.stash[opts.OPTIONS_KEY]
    findings.mark_items(items)
    if not options.gpu:
        skip = pytest.mark.skip(reason=f"needs {opts.GPU} on a CUDA machine")
        gpu_items = [item for item in items if item.get_closest_marker("specdec_gpu")]
        for item in gpu_items:
            item.add_marker(skip)
        config.stash[GPU_SKIPPED_KEY] = len(gpu_items)
    if _xdist_workers(config) > 1:
        perf = [item for item in items if item.get_closest_marker("specdec_perf")]
        if perf:
            config.hook.pytest_deselected(items=perf)
            items[:] = [item for item in items if not item.get_closest_marker("specdec_perf")]
            config.stash[PERF_DESELECTED_KEY] = len(perf)
            if _is_xdist_worker(config):  # tell the controller
                config.workeroutput["specdec_perf_deselected"] = len(perf)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """xdist controller: collect the workers' count of deselected timing tests for the summary."""
    config = node.config  # type: ignore[attr-defined]
    count = getattr(node, "workeroutput", {}).get("specdec_perf_deselected", 0)
    config.stash[PERF_DESELECTED_KEY] = max(config.stash.get(PERF_DESELECTED_KEY, 0), count)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    from .report.summary import summary_lines, write_json

    options = config.stash[opts.OPTIONS_KEY]
    results = config.stash[RESULTS_KEY]
    write = terminalreporter.write_line
    skipped, deselected = config.stash[GPU_SKIPPED_KEY], config.stash[PERF_DESELECTED_KEY]
    finding_lines = findings.summary_lines(results.findings)
    card = config.pluginmanager.get_plugin("specdec-scorecard").lines()
    if skipped or deselected or finding_lines or card or results.load_seconds or results.perf:
        terminalreporter.section("specdec")
    if skipped:
        write(f"specdec: {skipped} GPU test(s) skipped; run `pytest {opts.GPU}` on a CUDA machine to run them")
    if deselected:
        write(
            f"specdec: {deselected} timing test(s) deselected because pytest-xdist runs several workers; "
            "run them alone (pytest -m specdec_perf -p no:xdist) so no worker competes with the clock"
        )
    for line in card + finding_lines + summary_lines(results):
        write(line)
    if options.json_path is not None and not _is_xdist_worker(config):
        from .perf.environment import describe_environment

        write_json(options.json_path, results, describe_environment(options.resolved_device()))
        write(f"specdec: results written to {options.json_path}")
    if options.report_dir is not None and results.perf and not _is_xdist_worker(config):
        from .perf.environment import describe_environment
        from .protocol.decoder import DEFAULT_IMPL
        from .report.markdown import write_report

        written = write_report(options.report_dir, results, describe_environment(options.resolved_device()),
                               decoder=options.impl or DEFAULT_IMPL)
        for what, path in written.items():
            write(f"specdec: {what} {'written to ' if isinstance(path, os.PathLike) else 'not written: '}{path}")
