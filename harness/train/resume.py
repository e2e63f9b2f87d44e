"""What a resumed run must share with the start whose checkpoint it continues, and the history of its starts.

A run's numbers depend on more than its settings: the torch thread count (on CPU, it changes the order of
float reductions), the precision, the device type, the number of processes, the versions of torch,
torchvision and numpy, and the data. None of these but the precision is part of the settings folder (the
thread count does not change what is computed in expectation, and the same run may be moved to another
machine), so a resume checks them instead: :func:`check_resume` refuses a checkpoint of other settings
(:func:`comparable`) and a start whose facts differ (:func:`facts`), in one paragraph that says what differs
and how to proceed.

``config.json`` keeps the facts of the start the run's checkpoint descends from (the first start, unless the
run restarted from step 0), and lists every start under ``starts`` (:func:`config_with_start`); nothing of an
earlier start is overwritten. ``resumed_from_step`` is the step the latest start resumed from.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pydantic

from ..errors import HarnessError
from ..protocols import Protocol

__all__ = ["ResumeMismatchError", "comparable", "facts", "check_resume", "start_entry", "config_with_start"]

#: config.json keys of a start (the rest of the document is the run's settings)
START_KEYS = ("device", "device_name", "torch_threads", "precision", "world_size", "versions", "git_revision",
              "data_root", "split_root", "data_fingerprint", "pretrained_source")
VERSIONED = ("torch", "torchvision", "numpy")


class ResumeMismatchError(HarnessError):
    """A checkpoint would be resumed under facts that change the numbers."""


def _with_defaults(protocol: dict[str, Any]) -> dict[str, Any]:
    """A recorded protocol with the settings added since it was written at their defaults (``model.freeze_backbone``
    is absent from the config.json of a run started before it existed, and false means what that run did); as
    recorded if it no longer validates (a setting since removed: then it cannot match anyway)."""
    try:
        return Protocol.model_validate(protocol).model_dump(mode="json")
    except pydantic.ValidationError:
        return protocol


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """The part of config.json that must match for a run directory to be resumed: the resolved settings (not
    the ``--set`` text, which may spell them differently; not the protocol file's path, which moves with the
    checkout; settings added since the run started count at their defaults)."""
    return {"method": {k: doc["method"][k] for k in ("name", "config")},
            "protocol": _trained_protocol(_with_defaults(doc["protocol"])),
            **{k: doc[k] for k in ("seed", "total_steps")}}


def _trained_protocol(protocol: dict[str, Any]) -> dict[str, Any]:
    """The part of a protocol that decides what is trained: not its file, and not its selection split (only
    evaluated, to choose a checkpoint; a run started before the protocol had one resumes with it)."""
    out = {k: v for k, v in protocol.items() if k != "source"}
    if isinstance(out.get("splits"), dict):
        out["splits"] = {k: v for k, v in out["splits"].items() if k != "selection"}
    return out


def _device_type(doc: dict[str, Any]) -> str:
    return str(doc.get("device", "cpu")).split(":")[0]


def facts(doc: dict[str, Any]) -> dict[str, Any]:
    """The execution facts of a config.json that change a run's numbers (None: not recorded)."""
    versions = doc.get("versions") or {}
    out: dict[str, Any] = {
        "device type": _device_type(doc),
        "precision": doc.get("precision", "fp32"),
        "processes": doc.get("world_size", 1),
        **{name: versions.get(name) for name in VERSIONED},
        "data fingerprint": doc.get("data_fingerprint"),
    }
    if out["device type"] == "cpu":  # on a GPU the CPU thread count does not touch the arithmetic
        out["torch threads"] = doc.get("torch_threads")
    return out


def _how(name: str, first: Any) -> str:
    return {
        "torch threads": f"rerun with --threads {first} (grid tasks: `harness grid --threads {first}` or "
                         f"HARNESS_NUM_THREADS={first})",
        "precision": f"rerun with --precision {first}",
        "device type": f"rerun with --device {first}" + (" on a machine with a GPU" if first == "cuda" else ""),
        "processes": f"rerun with {first} process(es) (--nproc / --gpus-per-task {first})",
        "data fingerprint": "point --data-root at the data the run started with",
    }.get(name, f"rerun in an environment with {name} {first}")


def check_resume(old: dict[str, Any], new: dict[str, Any], out_dir: Path) -> None:
    """Refuse to resume the checkpoint in ``out_dir`` (written under ``old``) under ``new``."""
    config_path = out_dir / "config.json"
    if json.dumps(comparable(old), sort_keys=True, default=str) != json.dumps(comparable(new), sort_keys=True,
                                                                              default=str):
        raise ResumeMismatchError(f"run directory {out_dir} holds a checkpoint of a different configuration "
                                  f"(compare {config_path} with this run); pass --force to start it again")
    a, b = facts(old), facts(new)
    differ = [k for k in b if k in a and a[k] is not None and b[k] is not None and a[k] != b[k]]
    if not differ:
        return
    what = "; ".join(f"{k}: {a[k]} at the start, {b[k]} now ({_how(k, a[k])})" for k in differ)
    raise ResumeMismatchError(
        f"run directory {out_dir} cannot be resumed under other conditions than it started with, recorded in "
        f"{config_path}: {what}. These change the run's numbers, and a resumed run would mix two of them. Rerun "
        f"as said, or pass --force to start the run again from scratch under the current ones")


def start_entry(doc: dict[str, Any], from_step: int) -> dict[str, Any]:
    """This start's facts, as listed under ``starts``."""
    return {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "from_step": from_step, "host": platform.node(),
            "pid": os.getpid(), "command": shlex.join([os.path.basename(sys.executable), *sys.argv])[:500],
            **{k: doc[k] for k in START_KEYS if k in doc}}


def config_with_start(old: dict[str, Any] | None, doc: dict[str, Any], from_step: int) -> dict[str, Any]:
    """The config.json to write for a start from ``from_step``: ``doc`` for a start from step 0 (earlier starts
    kept under ``starts``), else ``old`` with this start appended."""
    if old is None:
        earlier = []
    elif "starts" in old:
        earlier = list(old["starts"])
    else:  # written before starts were listed: its one start is known by its facts only
        earlier = [{"from_step": 0, **{k: old[k] for k in START_KEYS if k in old}}]
    entry = start_entry(doc, from_step)
    if from_step == 0 or old is None:
        return {**doc, "starts": [*earlier, entry]}
    return {**old, "settings": old.get("settings", doc.get("settings")), "starts": [*earlier, entry],
            "resumed_from_step": from_step}
