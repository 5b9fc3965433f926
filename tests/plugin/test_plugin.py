"""The plugin as a black box, through pytester: options, ini settings, the GPU gate, markers,
--specdec-impl loading, model loading errors, the summary table and the JSON file.

Runs that load models go through ``runpytest_subprocess``: torch registers native libraries once
per process, and an in-process run would import some of its modules a second time."""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from pytest_specdec import options as opts
from reference_impl.models.tiny import tiny_pair

TINY = "tiny-llama-partial"


@functools.cache
def saved_tiny_pair() -> Path:
    """A tiny pair saved with save_pretrained, as a user's local model folders would be."""
    folder = Path(tempfile.mkdtemp(prefix="specdec-pair-"))
    atexit.register(shutil.rmtree, folder, True)
    target, draft = tiny_pair("llama", "partial", dtype=torch.float32)
    target.save_pretrained(folder / "target")
    draft.save_pretrained(folder / "draft")
    return folder


saved_tiny_pair()  # at collection, before any in-process pytester run snapshots sys.modules


def test_help_lists_the_specdec_group(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["speculative decoding checks:", f"*{opts.GPU}*", f"*{opts.IMPL}*"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_gpu_flag_without_cuda_is_a_usage_error(pytester):
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(opts.GPU)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--specdec-gpu needs a CUDA device*torch.cuda.is_available() is False*"])
    result.stdout.no_fnmatch_line("*passed*")


def test_gpu_tests_are_skipped_with_one_summary_line(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.specdec_gpu
        def test_on_gpu(): pass

        @pytest.mark.specdec_gpu
        def test_on_gpu_too(): pass

        def test_on_cpu(): pass
        """
    )
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*specdec: 2 GPU test(s) skipped; run `pytest --specdec-gpu` on a CUDA machine*"])


def test_markers_are_registered(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.specdec_perf(prompts=1, max_new_tokens=4, repeats=1, warmup=0)
        def test_perf(): pass

        @pytest.mark.specdec_statistical
        def test_stat(): pass
        """
    )
    result = pytester.runpytest("--strict-markers", "-m", "not specdec_statistical")
    result.assert_outcomes(passed=1, deselected=1)
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        ["@pytest.mark.specdec_gpu*", "@pytest.mark.specdec_perf*", "@pytest.mark.specdec_statistical*"]
    )


def test_options_from_the_ini_file_and_the_command_line(pytester):
    pytester.makeini(f"[pytest]\nspecdec_gamma = 2,5\nspecdec_pair = {TINY}\n")
    pytester.makepyfile(
        """
        def test_gamma(specdec_gamma, specdec_options):
            assert specdec_options.pair == "tiny-llama-partial"
            assert specdec_gamma in (2, 3, 5)
        """
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_gamma?gamma2?*", "*test_gamma?gamma5?*"])
    result = pytester.runpytest(f"{opts.GAMMA}=3", "-v")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([f"{opts.GAMMA}=0"], "*--specdec-gamma takes integers >= 1*"),
        ([f"{opts.GAMMA}=a,b"], "*--specdec-gamma takes integers >= 1*"),
        ([f"{opts.DTYPE}=float8"], "*--specdec-dtype must be one of*"),
        ([f"{opts.TARGET}=some/model"], "*--specdec-target needs --specdec-draft too*"),
        ([f"{opts.IMPL}=nocolon"], "*--specdec-impl takes module:factory*"),
        ([f"{opts.IMPL}=no_such_module_xyz:make"], "*cannot import module 'no_such_module_xyz'*"),
        ([f"{opts.IMPL}=json:no_such_factory"], "*module 'json' has no attribute 'no_such_factory'*"),
        ([f"{opts.IMPL}=json:__doc__"], "*is a str, not a callable factory*"),
        (
            [f"{opts.TARGET}=/no/such/folder", f"{opts.DRAFT}=/no/such/draft"],
            "*model folder /no/such/folder does not exist*",
        ),
        ([f"{opts.TARGET}=nobody/absent-model", f"{opts.DRAFT}=nobody/absent-draft"],
         "*'nobody/absent-model' is neither a local folder nor in the local Hugging Face cache*"),
        ([f"{opts.DEVICE}=cuda:0"], "*--specdec-device cuda:0 needs --specdec-gpu*"),
        ([f"{opts.SAMPLE_JOBS}=0"], "*--specdec-sample-jobs takes a whole number of processes >= 1*"),
        ([f"{opts.SAMPLE_JOBS}=two"], "*--specdec-sample-jobs takes a whole number of processes >= 1*"),
    ],
)
def test_bad_options_are_usage_errors(pytester, args, message):
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


USER_DECODER = """
from reference_impl import AutoregressiveDecoder


class EchoDecoder(AutoregressiveDecoder):
    name = "user-decoder"


def make(target, draft, **options):
    return EchoDecoder(target)


def broken(target, draft, **options):
    return object()
"""

USES_DECODER = """
import torch

def test_decoder(specdec_decoder, specdec_pair):
    assert specdec_decoder.name == "{name}"
    result = specdec_decoder.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=5)
    assert len(result.tokens) == 5
"""


def test_impl_runs_the_users_decoder(pytester):
    pytester.makepyfile(user_decoding=USER_DECODER, test_user=USES_DECODER.format(name="user-decoder"))
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess(f"{opts.IMPL}=user_decoding:make", f"{opts.PAIR}={TINY}")
    result.assert_outcomes(passed=1)


def test_impl_factory_returning_the_wrong_thing_fails_clearly(pytester):
    pytester.makepyfile(user_decoding=USER_DECODER, test_user=USES_DECODER.format(name="x"))
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess(f"{opts.IMPL}=user_decoding:broken", f"{opts.PAIR}={TINY}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*user_decoding:broken returned object, which has no generate() method*"])


def test_unknown_pair_name_is_a_clear_error(pytester):
    pytester.makepyfile("def test_pair(specdec_pair): pass")
    result = pytester.runpytest_subprocess(f"{opts.PAIR}=no-such-pair")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown pair 'no-such-pair'; named pairs:*tiny-llama-partial*"])


PERF_TEST = """
import pytest

@pytest.mark.specdec_perf(prompts=2, max_new_tokens=8, repeats=2, warmup=1)
def test_speed(specdec_measure):
    record = specdec_measure(gamma=3)
    assert record.speculative.total_tokens == 2 * 2 * 8
"""


def test_summary_table_and_json(pytester):
    pytester.makepyfile(test_perf=PERF_TEST)
    out = pytester.path / "results.json"
    result = pytester.runpytest_subprocess(f"{opts.PAIR}={TINY}", f"{opts.JSON}={out}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            f"pair {TINY}: load pair *s",
            "measurement*decoder*TTFT ms*TPOT ms*tok/s*speedup*alpha*tau*",
            "test_speed*speculative*",
            "test_speed*baseline*1.00*",
            f"specdec: results written to {out}",
        ]
    )
    data = json.loads(out.read_text())
    (record,) = data["perf"]
    assert record["pair"] == TINY and record["gamma"] == 3
    assert record["speculative"]["tokens"] == 32
    assert len(record["speculative"]["samples"]["ttft"]) == 4
    assert record["baseline"]["target_forwards_per_token"] == 1.0
    assert data["environment"]["torch"] == torch.__version__


def test_perf_tests_are_deselected_under_xdist(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_perf=PERF_TEST, test_other="def test_other(): pass")
    result = pytester.runpytest_subprocess("-n", "2", f"{opts.PAIR}={TINY}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*1 timing test(s) deselected because pytest-xdist runs several workers*"])


def test_a_session_started_inside_an_xdist_worker_is_its_own(pytester, monkeypatch):
    """A pytest run launched from a worker (pytester, a benchmark script) inherits the worker's environment;
    it must still run its timing tests and write its results."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    pytester.makepyfile(test_perf=PERF_TEST, test_other="def test_other(): pass")
    out = pytester.path / "results.json"
    result = pytester.runpytest_subprocess("-p", "no:xdist", f"{opts.PAIR}={TINY}", f"{opts.JSON}={out}")
    result.assert_outcomes(passed=2)
    assert out.exists()


def test_model_loads_from_a_local_folder_through_from_pretrained(pytester):
    tmp_path = saved_tiny_pair()
    pytester.makepyfile(
        """
        import torch

        def test_loaded(specdec_pair, specdec_decoder):
            assert specdec_pair.target.dtype == torch.float64
            assert set(specdec_pair.load_seconds) == {"target", "draft"}
            assert len(specdec_decoder.generate(torch.tensor([[1, 2]]), max_new_tokens=3).tokens) == 3
        """
    )
    result = pytester.runpytest_subprocess(
        f"{opts.TARGET}={tmp_path / 'target'}", f"{opts.DRAFT}={tmp_path / 'draft'}", f"{opts.DTYPE}=float64"
    )
    result.assert_outcomes(passed=1)


def test_device_map_is_passed_to_from_pretrained(pytester):
    pytest.importorskip("accelerate")
    tmp_path = saved_tiny_pair()
    pytester.makepyfile(
        """
        import torch

        def test_sharded(specdec_pair, specdec_decoder):
            assert specdec_pair.device_map == "auto"
            assert len(specdec_decoder.generate(torch.tensor([[1, 2]]), max_new_tokens=3).tokens) == 3
        """
    )
    result = pytester.runpytest_subprocess(
        f"{opts.TARGET}={tmp_path / 'target'}", f"{opts.DRAFT}={tmp_path / 'draft'}", f"{opts.DEVICE_MAP}=auto"
    )
    result.assert_outcomes(passed=1)


def test_folder_without_config_is_a_usage_error(pytester, tmp_path):
    (tmp_path / "empty").mkdir()
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(f"{opts.TARGET}={tmp_path / 'empty'}", f"{opts.DRAFT}={tmp_path / 'empty'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*has no config.json*save_pretrained*"])
