"""Every built-in method trains end to end on the ViT family (``vit_tiny``: timm ViT + UniMatch V2's DPT head) on
the synthetic data, through the CLI: the model interface of :mod:`harness.models.base` is all they use."""

from __future__ import annotations

import math

import pytest
import torch

from harness import records
from harness.cli import main
from harness.plugins import get_plugin_manager

# Every method the harness ships (registered by its own distribution), read from the plugin manager so that a new
# built-in method is covered without editing this file.
BUILTIN_METHODS = sorted(m.name for m in get_plugin_manager().methods if m.distribution == "ssseg-harness")
# In the default suite: UniMatch (the feature-perturbation stream) and S4MIM (encode / decode for its MIM terms);
# the seven methods of the first ViT commit took about 30 s together on 2 shared CPU cores, so the others run with
# -m slow.
DEFAULT = ("unimatch", "s4mim")


def test_the_seven_methods_of_the_issue_are_among_them():
    assert {"supervised", "mean_teacher", "unimatch", "imas", "s4mim", "combined", "fixmatch"} <= set(BUILTIN_METHODS)


@pytest.mark.parametrize("method", [m if m in DEFAULT else pytest.param(m, marks=pytest.mark.slow)
                                    for m in BUILTIN_METHODS])
def test_method_trains_on_vit_tiny(method, tiny_benchmark, tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "r"
    argv = ["run", "--method", method, "--protocol", "tiny-8", "--out", str(out), "--data-root",
            str(tiny_benchmark["data_root"]), "--no-progress", "--set", "model.backbone=vit_tiny",
            "--set", "budget.iterations=3", "--set", "budget.eval_every=3"]
    assert main(argv) == 0, capsys.readouterr().err
    (run,) = out.glob(f"tiny-8/{method}/*/seed0")
    rec = records.read_json(run / "record.json")
    cfg = records.read_json(run / "config.json")
    assert rec["status"] == "finished" and rec["total_steps"] == 3
    assert cfg["protocol"]["model"]["backbone"] == "vit_tiny" and cfg["versions"]["timm"]  # the ViT's library
    assert rec["pretrained_source"].startswith("random")
    assert 0 <= rec["final"]["miou"] <= 100 and len(rec["final"]["iou"]) == 8
    state = torch.load(run / records.CHECKPOINT, map_location="cpu", weights_only=False)["model"]
    assert "backbone.blocks.3.attn.qkv.weight" in state and "head.scratch.output_conv.2.weight" in state
    assert all(math.isfinite(float(v.float().abs().sum())) for v in state.values() if v.is_floating_point())


def test_frozen_encoder_run_trains_only_the_decoder(tiny_benchmark, tmp_path, capsys):
    """``--set model.freeze_backbone=true``: a settings folder of its own, no encoder parameter in the optimizer,
    the encoder's weights as they were built (two runs with different learning rates end with the same ones)."""
    torch.set_num_threads(1)
    states = []
    for lr in ("0.01", "0.05"):
        out = tmp_path / lr
        argv = ["run", "--method", "supervised", "--protocol", "tiny-8", "--out", str(out), "--data-root",
                str(tiny_benchmark["data_root"]), "--no-progress", "--set", "model.backbone=vit_tiny",
                "--set", "model.freeze_backbone=true", "--set", f"budget.lr={lr}", "--set", "budget.iterations=2",
                "--set", "budget.eval_every=2"]
        assert main(argv) == 0, capsys.readouterr().err
        (run,) = out.glob("tiny-8/supervised/*/seed0")
        assert run.parent.name != "default"
        ckpt = torch.load(run / records.CHECKPOINT, map_location="cpu", weights_only=False)
        groups = {g["name"]: g["params"] for g in ckpt["optimizer"]["param_groups"]}
        assert groups["backbone"] == [] and groups["head"]
        states.append(ckpt["model"])
    a, b = states
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("backbone."))
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("head."))
