"""What machine and software a measurement ran on: the raw material of baseline fingerprints."""

from __future__ import annotations

import os
import platform
from typing import Any


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_environment(device: str) -> dict[str, Any]:
    """Device (GPU name and memory, or CPU model and cores) and library versions."""
    import torch
    import transformers

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        info["device"] = f"{props.name} ({props.total_memory // 2**30} GiB)"
    else:
        # The vector ISA torch dispatches to decides float32 kernels, hence near-tie outcomes, as much as the model
        # name does (a virtual CPU often reports a bare family name).
        info["device"] = f"{info['cpu']} x{info['cpu_count']} ({info['cpu_capability']})"
    return info
