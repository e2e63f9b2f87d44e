"""Machine facts every benchmark writes into its JSON (scripts here are run as ``python benchmarks/perf/<x>.py``,
so this module is importable as ``machine``)."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch


def machine_info(device: str | torch.device = "cpu") -> dict:
    device = torch.device(device)
    from harness.records import device_name

    info = {"cpu": device_name(torch.device("cpu")), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(),
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


def write_report(out: str | Path, benchmark: str, machine: dict, **fields) -> None:
    """Write a benchmark's JSON: its name, date, exact command line, the machine, then ``fields``."""
    doc = {"benchmark": benchmark, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "command": "python " + shlex.join(sys.argv), "machine": machine, **fields}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(out).with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    tmp.replace(out)
    print(f"wrote {out}")
