"""Baseline storage: JSON files under ``baselines/``, one per model pair, entries keyed by a fingerprint digest.

Saving is atomic and keeps every other entry (concurrent savers are serialised by a lock file); a
corrupt or foreign file is a ``BaselineError`` that names the file and the fix.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .fingerprint import fingerprint_key

FORMAT = "pytest-specdec-baselines"
VERSION = 1


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; the result should read like any other file
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise



class BaselineError(Exception):
    """A baseline file is corrupt, foreign or from a newer format; the message names the file and the fix."""


@dataclass(frozen=True)
class StoredBaseline:
    path: Path
    key: str
    fingerprint: dict[str, Any]
    timing: dict[str, list[float]]
    deterministic: dict[str, Any]
    saved: str = ""
    decoder: str = ""


def baseline_file(directory: Path, pair_label: str) -> Path:
    """One file per model pair: baselines/<pair>.json (a name safe on every file system)."""
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", pair_label).strip("-.") or "pair"
    return directory / f"{slug}.json"


def _read(path: Path) -> dict[str, Any]:
    fix = (f"restore it (git checkout -- {path}) or delete it and record again with --specdec-save-baseline")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise BaselineError(f"baseline file {path} is not UTF-8 text ({exc}); {fix}") from None
    except json.JSONDecodeError as exc:
        raise BaselineError(f"baseline file {path} is corrupt: not valid JSON ({exc}); {fix}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise BaselineError(
            f"{path} is not a pytest-specdec baseline file (format {found!r}, expected {FORMAT!r}); the baseline "
            f"folder must hold only files written by --specdec-save-baseline: move it out, or choose another "
            f"folder with --specdec-baseline-dir"
        )
    version = document.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise BaselineError(f"{path} has format version {version!r}; this pytest-specdec reads version {VERSION}: "
                            "upgrade pytest-specdec, or record the baseline again with this version")
    entries = document.get("entries")
    bad = not isinstance(entries, dict) or any(
        not isinstance(e, dict) or not isinstance(e.get("fingerprint"), dict) or not isinstance(e.get("timing"), dict)
        or not isinstance(e.get("deterministic"), dict) for e in entries.values())
    if bad:
        raise BaselineError(f"baseline file {path} is corrupt: an entry lacks fingerprint, timing or deterministic; "
                            f"{fix}")
    return document


def load_baselines(directory: Path) -> list[StoredBaseline]:
    """Every entry of every ``*.json`` file in ``directory`` (none if the folder does not exist)."""
    if not directory.is_dir():
        return []
    stored = []
    for path in sorted(directory.glob("*.json")):
        for key, entry in _read(path)["entries"].items():
            stored.append(StoredBaseline(path, key, entry["fingerprint"], entry["timing"], entry["deterministic"],
                                         entry.get("saved", ""), entry.get("decoder", "")))
    return stored


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise read-modify-write of baseline files between processes (POSIX; a no-op elsewhere)."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: atomic replace still guarantees whole files
        yield
        return
    with open(directory / ".lock", "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def json_safe(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def save_baseline(path: Path, fp: dict[str, Any], timing: dict[str, list[float]], deterministic: dict[str, Any],
                  *, decoder: str, summary: dict[str, Any] | None = None) -> str:
    """Write or replace the entry for ``fp`` in ``path``, keeping every other entry; returns its key."""
    key = fingerprint_key(fp)
    with _locked(path.parent):
        document = _read(path) if path.exists() else {"format": FORMAT, "version": VERSION, "entries": {}}
        document["entries"][key] = json_safe({
            "fingerprint": fp,
            "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "decoder": decoder,
            "summary": summary or {},
            "timing": {name: [round(v, 9) for v in values] for name, values in timing.items()},
            "deterministic": deterministic,
        })
        document["version"] = VERSION
        atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True) + "\n")
    return key
