"""Fake run trees in the real layout ``<root>/<protocol>/<method>/<settings_hash>/seed<k>/`` for results tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]
SYN_CLASSES = ["background", "disk", "ring", "square", "triangle", "cross", "dot_on", "dot_alone"]

# protocol id -> record fields of that protocol
PROTOCOLS = {
    **{f"voc-{n}": dict(dataset="voc", family="voc-classic", labeled=n, eval_mode="whole", backbone="resnet101",
                        crop_size=321) for n in (92, 183, 366, 732, 1464)},
    "voc-732@crop513": dict(dataset="voc", family="voc-classic", labeled=732, eval_mode="whole",
                            backbone="resnet101", crop_size=513),
    **{f"voc-blended-{n}": dict(dataset="voc", family="voc-blended", labeled=n, eval_mode="whole",
                                backbone="resnet101", crop_size=513) for n in (662, 1323, 2646)},
    **{f"voc-u2pl-{n}": dict(dataset="voc", family="voc-u2pl", labeled=n, eval_mode="whole",
                             backbone="resnet101", crop_size=513) for n in (662, 1323, 2646)},
    **{f"cityscapes-{n}": dict(dataset="cityscapes", family="cityscapes", labeled=n, eval_mode="slide801",
                               backbone="resnet101", crop_size=801) for n in (186, 372, 744, 1488)},
    **{f"synthetic-{n}": dict(dataset="synthetic", family="synthetic", labeled=n, eval_mode="whole",
                              backbone="small", crop_size=64) for n in (12, 25, 50, 100)},
    **{f"synthetic-{n}-split{k}": dict(dataset="synthetic", family="synthetic-split-seeds", labeled=n,
                                       eval_mode="whole", backbone="small", crop_size=64)
       for n in (100, 200) for k in (1, 2, 3)},
}


def settings_hash(overrides: dict) -> str:
    if not overrides:
        return "default"
    return hashlib.sha256(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()[:10]


def write_run(root: Path, method: str, protocol: str, seed: int, miou: float, best: float | None = None,
              overrides: dict | None = None, iou: list | None = None, metrics: list[dict] | None = None,
              record: bool = True, light: bool = False, **extra) -> Path:
    """One finished run directory with config.json, metrics.jsonl and record.json (as build_record writes)."""
    overrides = overrides or {}
    h = settings_hash(overrides)
    meta = PROTOCOLS[protocol]
    classes = SYN_CLASSES if meta["dataset"] == "synthetic" else VOC_CLASSES
    d = Path(root) / protocol / method / h / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    if iou is None:
        iou = [miou / 100.0] * len(classes)
    total = 100
    if metrics is None:
        metrics = [{"step": s, "miou": miou - (total - s) / 20, "iou": iou,
                    "train": {"loss": 2.0 - s / 100, "loss_x": 1.0 - s / 200, "lr": 0.01 * (1 - s / total)},
                    "method": ({"h_mean": 0.3 + s / 500, "rho_t": 0.5 + s / 400} if method == "imas" else {})}
                   for s in (25, 50, 75, 100)]
    if not light:
        (d / "config.json").write_text(json.dumps({"method": {"name": method}, "seed": seed,
                                                   "overrides": overrides}))
        (d / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in metrics))
    best = miou + 0.5 if best is None else best
    rec = {"status": "finished", "method": method, "protocol": protocol, "dataset": meta["dataset"],
           "family": meta["family"], "labeled": meta["labeled"], "seed": seed, "settings_hash": h,
           "overrides": overrides, "eval_mode": meta["eval_mode"], "backbone": meta["backbone"],
           "crop_size": meta["crop_size"], "total_steps": total,
           "final": {"miou": miou, "step": total, "iou": dict(zip(classes, iou))},
           "best_on_val": {"miou": best, "step": 75, "note": "selected on the evaluation set; optimistic"},
           "num_evals": 4, "wall_time_s": 12.5, "device": "cpu", "finished_at": f"2026-01-01T00:00:{seed:02d}",
           "run_dir": str(d), **extra}
    if record:
        (d / "record.json").write_text(json.dumps(rec))
    else:
        (d / "status.json").write_text(json.dumps({"state": "running", "step": 40, "total_steps": total}))
    return d


@pytest.fixture
def fake_root(tmp_path):
    """Three seeds of supervised / unimatch / imas on the VOC classic family and one blended protocol."""
    root = tmp_path / "runs"
    sup = {"voc-92": [45.0, 46.0, 47.0], "voc-732": [69.0, 70.0, 71.0], "voc-1464": [73.0, 73.5, 74.0],
           "voc-blended-662": [67.0, 67.2, 67.4]}
    uni = {"voc-92": [74.0, 75.0, 76.0], "voc-732": [79.0, 80.0, 81.0], "voc-1464": [80.5, 81.0, 81.5],
           "voc-blended-662": [77.0, 77.5, 78.0]}
    ima = {"voc-92": [70.0, 70.0, 73.0], "voc-732": [80.5, 80.5, 80.5], "voc-1464": [81.0, 81.0]}  # 1464: 2 seeds
    for method, table in (("supervised", sup), ("unimatch", uni), ("imas", ima)):
        for proto, values in table.items():
            for seed, v in enumerate(values):
                write_run(root, method, proto, seed, v)
    return root
