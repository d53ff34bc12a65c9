"""What a run ran on, as a study records it beside every score: the CPU by name (CPUs differ 2x and more in
speed between sessions, so a minutes budget means different training on each) and the device."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model as `lscpu` names it (from /proc/cpuinfo), with the number of cores."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores)"


def device_name(device: str) -> str:
    """What trained the run: the GPU's name for a CUDA run, else "cpu" (the CPU itself is in `cpu_name`)."""
    import torch

    from sagan.runtime import resolve_device

    dev = resolve_device(device)
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
