"""UniMatch V2 (and its repository's FixMatch) end to end on the tiny ViT (DPT head) and the synthetic data, with
its optimizer and evaluation: a record, the teacher evaluated, and a resume that ends where an uninterrupted run
does."""

import pytest

from harness import records
from harness.train.engine import StopRequested
from harness.plugins import get_plugin_manager
from harness.train.run import RunSpec, execute, run_dir
from methods.unimatch_v2 import FixMatchV2, UniMatchV2

# UniMatch V2's recipe on the CPU-sized ViT: AdamW with a 40x head, evaluation at multiples of its patch (8)
VIT = {"model.backbone": "vit_tiny", "model.pretrained": False, "budget.optimizer": "adamw", "budget.lr": 1e-4,
       "budget.head_lr_mult": 40.0, "budget.weight_decay": 0.01, "eval.resize_multiple": 8}


@pytest.fixture
def registered(tiny_benchmark):
    """The method as its entry point registers it (an installed checkout's entry points may predate it)."""
    pm = get_plugin_manager()
    for cls in (UniMatchV2, FixMatchV2):
        if cls.name not in pm.methods.names():
            pm.methods.add(cls)
    return tiny_benchmark


def spec(tiny, out, **kw):
    return RunSpec(**{"method": "unimatch_v2", "protocol": "tiny-8", "out": str(out),
                      "data_root": str(tiny["data_root"]), "progress": False, "overrides": dict(VIT), **kw})


def test_unimatch_v2_on_vit_tiny_trains_and_resumes_exactly(registered, tmp_path):
    full = execute(spec(registered, tmp_path / "a"))
    assert full["status"] == "finished" and full["total_steps"] == 12
    assert full["eval_mode"] == "whole_resize8" and full["backbone"] == "vit_tiny"
    assert 0 <= full["final"]["miou"] <= 100
    metrics = records.read_metrics(run_dir(spec(registered, tmp_path / "a")) / "metrics.jsonl")
    assert len(metrics) == 3 and all(0 <= m["student_miou"] <= 100 for m in metrics)  # the teacher is reported
    assert {"loss_x", "loss_s", "mask_ratio"} <= set(metrics[-1]["train"])
    cfg = records.read_json(run_dir(spec(registered, tmp_path / "a")) / "config.json")
    assert cfg["protocol"]["budget"]["optimizer"] == "adamw" and cfg["method"]["config"]["ema_decay"] == 0.996

    interrupted = spec(registered, tmp_path / "b", stop_after=5)
    with pytest.raises(StopRequested):
        execute(interrupted)
    resumed = execute(spec(registered, tmp_path / "b"))
    assert resumed["final"]["miou"] == full["final"]["miou"] and resumed["final"]["iou"] == full["final"]["iou"]


def test_fixmatch_v2_on_vit_tiny_trains(registered, tmp_path):
    rec = execute(spec(registered, tmp_path, method="fixmatch_v2"))
    assert rec["status"] == "finished" and rec["method"] == "fixmatch_v2" and 0 <= rec["final"]["miou"] <= 100
    metrics = records.read_metrics(run_dir(spec(registered, tmp_path, method="fixmatch_v2")) / "metrics.jsonl")
    assert {"loss_x", "loss_s", "mask_ratio"} <= set(metrics[-1]["train"]) and "student_miou" in metrics[-1]
