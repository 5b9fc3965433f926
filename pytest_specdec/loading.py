"""Load a draft/target pair by name, Hugging Face id or local folder; time each load.

Named pairs that ship as files go through exactly the same ``from_pretrained`` code as a user's
Hugging Face pair. Loading never reaches a hub: a model must be a local folder or already in the
local Hugging Face cache, and a missing one is a clear error naming the fix.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .options import SpecDecOptions


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be found or loaded; the message says how to fix it."""


@dataclass
class ModelPair:
    """A loaded pair and what identifies it in reports and baselines."""

    label: str
    target: Any
    draft: Any
    tokenizer: Any | None
    device: str
    dtype: str
    target_id: str
    draft_id: str
    revision: str | None = None
    device_map: str | None = None
    load_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def eos_token_id(self) -> int | None:
        return getattr(self.tokenizer, "eos_token_id", None) if self.tokenizer is not None else None


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
            "float16": torch.float16}[name]


def worker_device(device: str) -> str:
    """Under pytest-xdist on a machine with several GPUs, worker gwN takes cuda:(N mod count)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if device != "cuda" or not worker.startswith("gw"):
        return device
    import torch

    count = torch.cuda.device_count()
    return f"cuda:{int(worker[2:]) % count}" if count > 1 else device


def check_model_available(spec: str, revision: str | None = None) -> None:
    """A local folder with a config, or a hub id whose config is in the local cache; else ModelLoadError."""
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{spec} exists but has no config.json: point at a folder saved with save_pretrained")
        return
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelLoadError(f"model folder {spec} does not exist; check the path")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(spec, "config.json", revision=revision)
    if not isinstance(cached, str):
        raise ModelLoadError(
            f"model {spec!r} is neither a local folder nor in the local Hugging Face cache "
            f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}); the suite never downloads: fetch it first "
            f"(huggingface-cli download {spec}) or pass a local folder"
        )


def load_model(spec: str | Path, *, dtype: str, device: str, revision: str | None = None,
               device_map: str | None = None) -> Any:
    """``AutoModelForCausalLM.from_pretrained`` offline, cast to ``dtype``, on ``device``, in eval mode."""
    from transformers import AutoModelForCausalLM

    check_model_available(str(spec), revision)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            spec, revision=revision, dtype=torch_dtype(dtype), local_files_only=True,
            device_map=device_map or None,
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load model {spec}: {exc}") from exc
    if not device_map:
        model = model.to(device)
    return model.to(torch_dtype(dtype)).eval() if not device_map else model.eval()


def load_tokenizer(spec: str | Path, revision: str | None = None) -> Any | None:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(spec, revision=revision, local_files_only=True)
    except (OSError, ValueError):
        return None


def check_same_vocabulary(target_tokenizer: Any, draft_tokenizer: Any, target_id: str, draft_id: str) -> None:
    from reference_impl.errors import VocabularyMismatchError

    if target_tokenizer is None or draft_tokenizer is None:
        return
    if target_tokenizer.get_vocab() != draft_tokenizer.get_vocab():
        raise VocabularyMismatchError(
            f"the tokenizers of target {target_id} and draft {draft_id} differ: draft tokens would mean other "
            "text to the target; choose a draft trained with the target's tokenizer"
        )


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def load_pair(options: SpecDecOptions) -> ModelPair:
    """The pair the options name: --specdec-target/--specdec-draft, else the named --specdec-pair."""
    from reference_impl.models import named_pairs

    device, dtype = worker_device(options.resolved_device()), options.resolved_dtype()
    common = {"dtype": dtype, "device": device, "revision": options.revision, "device_map": options.device_map}
    if options.target:
        target_id, draft_id = options.target, options.draft or ""
        target_path, draft_path = target_id, draft_id
    else:
        pairs = named_pairs()
        if options.pair not in pairs:
            raise ModelLoadError(f"unknown pair {options.pair!r}; named pairs: {', '.join(sorted(pairs))}")
        entry = pairs[options.pair]
        target_id, draft_id = f"{entry.name}:target", f"{entry.name}:draft"
        if entry.build is not None:
            (target, draft), seconds = _timed(entry.build, torch_dtype(dtype))
            target, draft = target.to(device), draft.to(device)
            return ModelPair(entry.name, target, draft, None, device, dtype, target_id, draft_id,
                             load_seconds={"pair": seconds})
        target_path, draft_path = entry.target_path, entry.draft_path
        common["revision"] = None
    target, target_s = _timed(load_model, target_path, **common)
    draft, draft_s = _timed(load_model, draft_path, **common)
    tokenizer = load_tokenizer(target_path, common["revision"])
    check_same_vocabulary(tokenizer, load_tokenizer(draft_path, common["revision"]), target_id, draft_id)
    label = options.pair_label
    return ModelPair(label, target, draft, tokenizer, device, dtype, target_id, draft_id, options.revision,
                     device_map=options.device_map, load_seconds={"target": target_s, "draft": draft_s})
