"""Weights & Biases logger, a plugin on ``harness_run_event`` (entry point ``wandb``; ``--logger wandb``).

Records a run as one W&B run: the run's ``config.json`` as its config at ``start``; every ``train`` event's losses
and method signals (``train/<name>``), learning rate and speed; every evaluation's mIoU, secondary mIoUs and
per-class IoU (``eval/...``); and at ``finish`` the record's final and best-on-val mIoU, wall time and what the
run spent (images seen, image-passes, peak memory, device-hours) in the run's summary. Every value is plotted
against the training step (``step``), which W&B is told is the x axis, so a resumed run, whose first steps
repeat steps already logged before its checkpoint, is not refused by W&B's rule that its own step only grows.

The W&B run id is derived from the run directory, so a resumed run continues the same W&B run. Where it is
written and whether it syncs are W&B's own settings: ``WANDB_MODE=offline`` (nothing leaves the machine; ``wandb
sync`` uploads later), ``WANDB_DIR`` (default: the run directory, so its files sit beside ``record.json``),
``WANDB_PROJECT`` (default ``ssseg-harness``), ``WANDB_ENTITY``. Needs the ``wandb`` package (``pip install
'ssseg-harness[wandb]'``). Like every observer, a failure here is reported once and never ends the run (the plugin
manager calls each observer on its own).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from harness.hookspecs import hookimpl

NAME = "wandb"
DEFAULT_PROJECT = "ssseg-harness"
_runs: dict[str, Any] = {}  # run directory → wandb Run, for the runs that asked for this logger
_classes: dict[str, list[str]] = {}


def run_id(run_dir: str | Path) -> str:
    """A W&B run id that is the same for every start of one run directory (W&B allows [a-z0-9], 64 chars)."""
    return hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def _start(run_dir: str, payload: dict) -> None:
    try:
        import wandb
    except ImportError:
        raise RuntimeError("--logger wandb needs the wandb package: pip install 'ssseg-harness[wandb]'") from None
    cfg = payload.get("config", {})
    name = f"{payload.get('method')}/{payload.get('protocol')}/seed{payload.get('seed')}"
    settings = cfg.get("settings_hash", "default")
    if settings != "default":
        name += f" [{settings}]"
    run = wandb.init(project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
                     dir=os.environ.get("WANDB_DIR") or run_dir, id=run_id(run_dir), name=name,
                     group=f"{payload.get('method')}/{payload.get('protocol')}/{settings}",
                     job_type="train", config=cfg, resume="allow", reinit="create_new")
    run.define_metric("step")
    run.define_metric("*", step_metric="step")
    _runs[run_dir] = run
    _classes[run_dir] = list(cfg.get("protocol", {}).get("class_names", []))


def _summary(record: dict) -> dict[str, Any]:
    """The record's headline numbers, flat (W&B's summary shows one value per key)."""
    out: dict[str, Any] = {}
    final = record.get("final", {})
    out["final/miou"] = final.get("miou")
    out["final/step"] = final.get("step")
    best = record.get("best_on_val", {})
    out["best_on_val/miou"] = best.get("miou")
    out["best_on_val/step"] = best.get("step")
    out["wall_time_s"] = record.get("wall_time_s")
    compute = record.get("compute") or {}
    for group in ("images_seen", "image_passes"):
        for key, value in (compute.get(group) or {}).items():
            out[f"compute/{group}/{key}"] = value
    for key in ("device_hours", "peak_memory_gib", "peak_memory_of", "device"):
        if key in compute:
            out[f"compute/{key}"] = compute[key]
    return {k: v for k, v in out.items() if v is not None}


@hookimpl
def harness_run_event(event: str, payload: dict) -> None:
    run_dir = str(payload.get("run_dir", ""))
    if event == "start":
        if NAME in payload.get("loggers", ()):
            _start(run_dir, payload)
        return
    run = _runs.get(run_dir)
    if run is None:
        return
    if event == "train":
        logs = {f"train/{key}": value for key, value in payload.get("logs", {}).items()}
        run.log({"step": payload["step"], **logs, "train/lr": payload["lr"], "train/it_per_s": payload["it_per_s"]})
    elif event == "eval":
        logs = {"step": payload["step"], "eval/miou": payload["miou"]}
        logs.update({f"eval/{key}": value for key, value in payload.items() if key.endswith("_miou")})
        names = _classes.get(run_dir, [])
        for k, iou in enumerate(payload.get("iou", [])):
            if iou == iou:  # NaN: class absent from the evaluation set
                logs[f"eval_class/{names[k] if k < len(names) else k}"] = iou
        run.log(logs)
    elif event == "finish":
        _classes.pop(run_dir, None)
        run = _runs.pop(run_dir)
        run.summary.update(_summary(payload))
        run.finish()
    elif event == "fail":
        _classes.pop(run_dir, None)
        _runs.pop(run_dir).finish(exit_code=1)
