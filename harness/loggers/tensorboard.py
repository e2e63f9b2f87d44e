"""TensorBoard logger, a plugin on ``harness_run_event`` (entry point ``tensorboard``; ``--logger tensorboard``).

Writes ``<run dir>/tensorboard/``: every ``train`` event's losses and method signals (``train/<name>``), the
learning rate and speed, and every evaluation's mIoU, secondary mIoUs and per-class IoU (``eval/...``), at the
training step. A resumed run appends to the same folder. Needs the ``tensorboard`` package
(``pip install 'ssseg-harness[tensorboard]'``); without it the run goes on and the harness warns once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.hookspecs import hookimpl

NAME = "tensorboard"
_writers: dict[str, Any] = {}  # run directory → SummaryWriter, for the runs that asked for this logger
_classes: dict[str, list[str]] = {}


@hookimpl
def harness_run_event(event: str, payload: dict) -> None:
    run_dir = str(payload.get("run_dir", ""))
    if event == "start":
        if NAME not in payload.get("loggers", ()):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RuntimeError("--logger tensorboard needs the tensorboard package: pip install "
                               "'ssseg-harness[tensorboard]'") from None
        _writers[run_dir] = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"),
                                          purge_step=payload.get("step") or None)
        cfg = payload.get("config", {})
        _classes[run_dir] = list(cfg.get("protocol", {}).get("class_names", []))
        _writers[run_dir].add_text("run", f"{payload.get('method')} on {payload.get('protocol')}, seed "
                                          f"{payload.get('seed')}, settings {cfg.get('settings_hash', '?')}")
        return
    w = _writers.get(run_dir)
    if w is None:
        return
    if event == "train":
        step = payload["step"]
        for key, value in payload.get("logs", {}).items():
            w.add_scalar(f"train/{key}", value, step)
        w.add_scalar("train/lr", payload["lr"], step)
        w.add_scalar("train/it_per_s", payload["it_per_s"], step)
    elif event == "eval":
        step = payload["step"]
        w.add_scalar("eval/miou", payload["miou"], step)
        for key, value in payload.items():
            if key.endswith("_miou"):
                w.add_scalar(f"eval/{key}", value, step)
        names = _classes.get(run_dir, [])
        for k, iou in enumerate(payload.get("iou", [])):
            if iou == iou:  # NaN: class absent from the evaluation set
                w.add_scalar(f"eval_class/{names[k] if k < len(names) else k}", iou, step)
        w.flush()
    elif event == "checkpoint":  # also what a stopped run writes last
        w.flush()
    elif event in ("finish", "fail"):
        _writers.pop(run_dir).close()
        _classes.pop(run_dir, None)
