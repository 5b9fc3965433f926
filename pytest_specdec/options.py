"""The plugin's options: names as constants, parsed once into a frozen record kept in ``config.stash``.

Every option is also an ini setting (``specdec_<name>`` in pytest.ini, tox.ini or
``[tool.pytest.ini_options]``); the command line wins over the ini file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

GPU = "--specdec-gpu"
PAIR = "--specdec-pair"
TARGET = "--specdec-target"
DRAFT = "--specdec-draft"
REVISION = "--specdec-revision"
DTYPE = "--specdec-dtype"
DEVICE = "--specdec-device"
DEVICE_MAP = "--specdec-device-map"
GAMMA = "--specdec-gamma"
IMPL = "--specdec-impl"
JSON = "--specdec-json"
REPORT_DIR = "--specdec-report-dir"
BASELINE_DIR = "--specdec-baseline-dir"
SAVE_BASELINE = "--specdec-save-baseline"
# same-job A/B against the base branch's decoder (docs/ci.md, "Same-job A/B")
BASE_IMPL = "--specdec-base-impl"
BASE_PATH = "--specdec-base-path"
SAMPLE_JOBS = "--specdec-sample-jobs"

DEFAULT_PAIR = "trained"
DEFAULT_GAMMAS = (4,)
DTYPES = ("float32", "float64", "bfloat16", "float16")

# (flag, ini name, help, kind) where kind is "bool", "str" or "path"
_OPTIONS: tuple[tuple[str, str, str, str], ...] = (
    (GPU, "specdec_gpu", "run on CUDA (bfloat16 by default) and enable the specdec_gpu tests; "
     "a usage error when no CUDA device is usable", "bool"),
    (PAIR, "specdec_pair", f"a named pair the project ships or builds (default: {DEFAULT_PAIR}); "
     "listed in the README", "str"),
    (TARGET, "specdec_target", "target model: a Hugging Face id (from the local cache) or a local folder; "
     "overrides --specdec-pair", "str"),
    (DRAFT, "specdec_draft", "draft model: a Hugging Face id or a local folder (needed with --specdec-target)",
     "str"),
    (REVISION, "specdec_revision", "revision of the Hugging Face models (branch, tag or commit)", "str"),
    (DTYPE, "specdec_dtype", f"model dtype, one of {', '.join(DTYPES)} (default: float32 on CPU, bfloat16 on GPU)",
     "str"),
    (DEVICE, "specdec_device", "torch device for the models (default: cuda with --specdec-gpu, else cpu)", "str"),
    (DEVICE_MAP, "specdec_device_map", "accelerate device_map for pairs too large for one device, e.g. auto", "str"),
    (GAMMA, "specdec_gamma", "draft tokens per step: one value or a comma list the performance tests "
     "parametrize over (default: 4)", "str"),
    (IMPL, "specdec_impl", "decoder under test as module:factory (default: the reference speculative decoder)",
     "str"),
    (JSON, "specdec_json", "write the run's results as JSON to this path", "path"),
    (REPORT_DIR, "specdec_report_dir", "write the markdown report and plot to this folder", "path"),
    (BASELINE_DIR, "specdec_baseline_dir", "folder of stored performance baselines (default: baselines)", "path"),
    (SAVE_BASELINE, "specdec_save_baseline", "store this run's performance figures as the baseline for its "
     "fingerprint (atomically; other fingerprints are kept)", "bool"),
    (SAMPLE_JOBS, "specdec_sample_jobs", "processes that draw the sampling-law tests' decodes, each rebuilding the "
     "decoder from its module:factory (default: one per usable core, 1 under pytest-xdist; 1: in the test process)",
     "str"),
    # same-job A/B against the base branch's decoder
    (BASE_IMPL, "specdec_base_impl", "the base branch's decoder as module:factory: the performance tests time it "
     "interleaved with the decoder under test and fail on a same-run regression, on any machine", "str"),
    (BASE_PATH, "specdec_base_path", f"import the top-level package of {BASE_IMPL} from this folder (a checkout of "
     "the base branch, or a wheel installed with pip install --no-deps --target), beside the pull request's", "path"),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("specdec", "speculative decoding checks")
    for flag, ini, help_text, kind in _OPTIONS:
        if kind == "bool":
            group.addoption(flag, action="store_true", default=None, help=help_text)
            parser.addini(ini, help_text, type="bool", default=False)
        else:
            group.addoption(flag, action="store", default=None, metavar=ini.removeprefix("specdec_").upper(),
                            help=help_text)
            parser.addini(ini, help_text, default="")


def _value(config: pytest.Config, flag: str) -> object:
    ini = next(name for f, name, _, _ in _OPTIONS if f == flag)
    given = config.getoption(flag)
    return given if given is not None else config.getini(ini)


def parse_gammas(text: str) -> tuple[int, ...]:
    """'4' or '2,4,6' -> (4,) or (2, 4, 6); anything else is a usage error."""
    try:
        gammas = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        gammas = ()
    if not gammas or any(g < 1 for g in gammas):
        raise pytest.UsageError(f"{GAMMA} takes integers >= 1, one or a comma list such as 2,4,6; got {text!r}")
    return gammas


@dataclass(frozen=True)
class SpecDecOptions:
    gpu: bool = False
    pair: str = DEFAULT_PAIR
    target: str | None = None
    draft: str | None = None
    revision: str | None = None
    dtype: str | None = None
    device: str | None = None
    device_map: str | None = None
    gammas: tuple[int, ...] = DEFAULT_GAMMAS
    impl: str | None = None
    json_path: Path | None = None
    report_dir: Path | None = None
    baseline_dir: Path = Path("baselines")
    save_baseline: bool = False
    base_impl: str | None = None
    base_path: Path | None = None
    sample_jobs: int | None = None  # None: one per usable core

    @classmethod
    def from_pytest_config(cls, config: pytest.Config) -> SpecDecOptions:
        def text(flag: str) -> str | None:
            value = _value(config, flag)
            return str(value).strip() or None if value is not None else None

        def path(flag: str) -> Path | None:
            value = text(flag)
            return Path(value) if value else None

        dtype = text(DTYPE)
        if dtype is not None and dtype not in DTYPES:
            raise pytest.UsageError(f"{DTYPE} must be one of {', '.join(DTYPES)}; got {dtype!r}")
        target, draft = text(TARGET), text(DRAFT)
        if (target is None) != (draft is None):
            given, missing = (TARGET, DRAFT) if target else (DRAFT, TARGET)
            raise pytest.UsageError(f"{given} needs {missing} too: a speculative decoder needs both models")
        baseline_dir = path(BASELINE_DIR) or Path(config.rootpath, "baselines")
        return cls(
            gpu=bool(_value(config, GPU)),
            pair=text(PAIR) or DEFAULT_PAIR,
            target=target,
            draft=draft,
            revision=text(REVISION),
            dtype=dtype,
            device=text(DEVICE),
            device_map=text(DEVICE_MAP),
            gammas=parse_gammas(text(GAMMA) or ",".join(map(str, DEFAULT_GAMMAS))),
            impl=text(IMPL),
            json_path=path(JSON),
            report_dir=path(REPORT_DIR),
            baseline_dir=baseline_dir,
            save_baseline=bool(_value(config, SAVE_BASELINE)),
            sample_jobs=_sample_jobs(text(SAMPLE_JOBS)),
            **_base_options(text(BASE_IMPL), path(BASE_PATH)),
        )

    @property
    def pair_label(self) -> str:
        return f"{self.target} <- {self.draft}" if self.target else self.pair

    def resolved_device(self) -> str:
        return self.device or ("cuda" if self.gpu else "cpu")

    def resolved_dtype(self) -> str:
        return self.dtype or ("bfloat16" if self.gpu else "float32")


def _sample_jobs(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or int(text) < 1:
        raise pytest.UsageError(f"{SAMPLE_JOBS} takes a whole number of processes >= 1 (1: in the test process); "
                                f"got {text!r}")
    return int(text)


def _base_options(impl: str | None, base_path: Path | None) -> dict[str, object]:
    if base_path is not None and impl is None:
        raise pytest.UsageError(f"{BASE_PATH} needs {BASE_IMPL} too: name the base decoder's factory, for example "
                                f"{BASE_IMPL} reference_impl.speculative:SpeculativeDecoder")
    if base_path is not None and not base_path.is_dir():
        raise pytest.UsageError(f"{BASE_PATH} {base_path} is not a folder; check out the base branch there first "
                                "(git worktree add DIR origin/main)")
    return {"base_impl": impl, "base_path": base_path}


OPTIONS_KEY = pytest.StashKey[SpecDecOptions]()


def get_options(config: pytest.Config) -> SpecDecOptions:
    return config.stash[OPTIONS_KEY]


# --- Serving-engine options (the specdec_engine tests; pytest_specdec.engines.plugin) ------------------
ENGINE_URL = "--specdec-engine-url"
ENGINE_BIN = "--specdec-engine-bin"
ENGINE_PROFILE = "--specdec-engine-profile"
_ENGINE_OPTIONS: tuple[tuple[str, str, str], ...] = (
    (ENGINE_URL, "specdec_engine_url", "a speculative serving engine already running, as http://host:port "
     "(llama.cpp's server by default); the specdec_engine tests send it token ids"),
    (ENGINE_BIN, "specdec_engine_bin", "a llama-server binary the specdec_engine tests start on 127.0.0.1 "
     "(default: $SPECDEC_ENGINE_BIN, else a build in the cache; see docs/engines.md)"),
    (ENGINE_PROFILE, "specdec_engine_profile", "the engine behind --specdec-engine-url, reached through its "
     "OpenAI-compatible /v1/completions: llama.cpp (default), vllm or sglang (docs/engines.md)"),
)


def add_engine_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("specdec", "speculative decoding checks")
    for flag, ini, help_text in _ENGINE_OPTIONS:
        group.addoption(flag, action="store", default=None, metavar=ini.removeprefix("specdec_").upper(),
                        help=help_text)
        parser.addini(ini, help_text, default="")


def engine_option(config: pytest.Config, flag: str) -> str | None:
    """The value of an engine option (command line over ini), or None."""
    ini = next(name for f, name, _ in _ENGINE_OPTIONS if f == flag)
    given = config.getoption(flag)
    value = given if given is not None else config.getini(ini)
    return str(value).strip() or None
