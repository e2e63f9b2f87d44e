"""The grid files of UniMatch V2's tables (benchmarks/grids/unimatch-v2-*.yaml): methods x protocols x 3 seeds,
every run valid, the step count their comments state, SLURM resources sized as upstream trains (4 GPUs per run,
the per-GPU share of the batch), and a dry run through the CLI. No data, GPU or cluster needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.cli import main
from harness.launch.grid_file import expand, load_grid, validate_runs
from harness.plugins import get_plugin_manager
from harness.train.run import resolve
from methods.unimatch_v2 import FixMatchV2, UniMatchV2

GRIDS = Path(__file__).resolve().parents[2] / "benchmarks" / "grids"
SEMI = ["supervised", "fixmatch_v2", "unimatch", "unimatch_v2"]  # fixmatch_v2: upstream's FixMatch
ENC = ("dinov2s", "dinov2b")

UV2 = {
    "unimatch-v2-voc": (SEMI, [f"voc-uv2-{e}-{n}" for e in ENC for n in (92, 183, 366, 732, 1464)]),
    "unimatch-v2-cityscapes": (SEMI, [f"cityscapes-uv2-{e}-{n}" for e in ENC for n in (186, 372, 744, 1488)]),
    "unimatch-v2-ade20k": (SEMI, [f"ade20k-uv2-{e}-{n}" for e in ENC for n in (316, 631, 1263, 2526, 5052, 10105)]),
    "unimatch-v2-coco": (SEMI, [f"coco-uv2-{e}-{n}" for e in ENC for n in (232, 463, 925, 1849, 3697)]),
    "unimatch-v2-labeled-only": (["supervised"], [f"{d}-uv2-{e}-full" for d in ("voc", "ade20k", "coco") for e in ENC]),
}


@pytest.fixture(autouse=True)
def setting(tmp_path, monkeypatch):
    """The DINOv2 files the protocols declare, as a cluster has them (resolving checks they exist), and the method
    as its entry point registers it (an installed checkout's entry points may predate it)."""
    d = tmp_path / "pretrained"
    d.mkdir()
    for name in ("dinov2_small.pth", "dinov2_base.pth"):
        (d / name).write_bytes(b"")
    monkeypatch.setenv("HARNESS_PRETRAINED_DIR", str(d))
    pm = get_plugin_manager()
    for cls in (UniMatchV2, FixMatchV2):
        if cls.name not in pm.methods.names():
            pm.methods.add(cls)


@pytest.mark.parametrize("name", sorted(UV2))
def test_grid_expands_to_the_table_with_upstream_resources(name, tmp_path):
    methods, protocols = UV2[name]
    grid = load_grid(GRIDS / f"{name}.yaml")
    assert grid.name == name and grid.methods == methods and grid.protocols == protocols
    assert grid.seeds == [0, 1, 2] and not grid.overrides and not grid.variants
    runs = expand(grid, out=str(tmp_path))
    assert len(runs) == len(methods) * len(protocols) * 3
    assert validate_runs(runs) == []
    resolved = [resolve(r.spec) for r in runs]
    assert {r.protocol.model.backbone for r in resolved} == {"dinov2_small", "dinov2_base"}
    stated = re.search(r"Cost: ([\d,]+) training steps", (GRIDS / f"{name}.yaml").read_text())
    assert stated and int(stated.group(1).replace(",", "")) == sum(r.total_steps for r in resolved)
    # upstream: 4 GPUs per run, each with a quarter of the global batch; requeues cover its longest logged run
    s = grid.slurm
    assert grid.executor == "slurm" and grid.device == "cuda"
    assert s.gpus_per_task == 4 and s.nproc is None and s.cpus_per_task >= 5 and s.mem_gb >= 64
    # hours: twice upstream's longest run (its logs: Cityscapes, DINOv2-B, 47 h; COCO, UniMatch V1 on DINOv2-B, 52 h)
    assert (s.max_num_timeout + 1) * 24 >= 2 * (52 if name == "unimatch-v2-coco" else 47)
    for r in resolved:
        b = r.protocol.budget
        assert b.batch_labeled % 4 == 0 and (r.protocol.splits.unlabeled is None or b.batch_unlabeled % 4 == 0)
        assert b.optimizer == "adamw"


def test_dry_run_through_the_cli(tmp_path, fake_slurm, capsys):
    assert main(["grid", "unimatch-v2-voc", "--executor", "slurm", "--dry-run", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "grid unimatch-v2-voc: 120 runs, 120 to run with the slurm executor" in out
    assert out.count("would run:") == 120
    assert "'gpus_per_node': 4" in out and "'ntasks_per_node': 4" in out and "'time': 1440" in out
