"""Machine facts every benchmark writes into its JSON (scripts here are run as ``python benchmarks/perf/<x>.py``,
so this module is importable as ``machine``)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def machine_info(device: str | torch.device = "cpu") -> dict:
    device = torch.device(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": str(device),
            "cuda_available": torch.cuda.is_available()}
    if hasattr(os, "sched_getaffinity"):
        info["cores_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):  # other load on the machine makes the timings upper bounds
        info["load_average_1min_at_start"] = round(os.getloadavg()[0], 2)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info
