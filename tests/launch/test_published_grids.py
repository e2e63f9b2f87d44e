"""The grid files of the published tables (benchmarks/grids/voc-classic, voc-blended, cityscapes): exact protocols,
methods, seeds and number of runs, resources that fit the protocols, the step count their comments state, and a
dry run through the CLI. No data, GPU or cluster needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.cli import main
from harness.launch.grid_file import expand, load_grid, validate_runs
from harness.train.run import resolve

GRIDS = Path(__file__).resolve().parents[2] / "benchmarks" / "grids"


@pytest.fixture(autouse=True)
def weight_files(tmp_path, monkeypatch):
    """The ImageNet files the protocols declare, as a cluster has them (resolving checks they exist)."""
    d = tmp_path / "pretrained"
    d.mkdir()
    for name in ("resnet101_deepstem.pth", "resnet50_deepstem.pth"):
        (d / name).write_bytes(b"")
    monkeypatch.setenv("HARNESS_PRETRAINED_DIR", str(d))
METHODS = ["supervised", "mean_teacher", "unimatch", "imas", "s4mim", "combined"]

PUBLISHED = {
    "voc-classic": {
        "protocols": ["voc-92", "voc-183", "voc-366", "voc-732", "voc-1464"],
        "families": {"voc-classic"}, "labeled": {92, 183, 366, 732, 1464}, "runs": 90,
    },
    "voc-blended": {
        "protocols": ["voc-blended-662", "voc-blended-1323", "voc-blended-2646",
                      "voc-u2pl-662", "voc-u2pl-1323", "voc-u2pl-2646"],
        "families": {"voc-blended", "voc-u2pl"}, "labeled": {662, 1323, 2646}, "runs": 108,
    },
    "cityscapes": {
        "protocols": ["cityscapes-186", "cityscapes-372", "cityscapes-744", "cityscapes-1488"],
        "families": {"cityscapes"}, "labeled": {186, 372, 744, 1488}, "runs": 72,
    },
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_grid_expands_to_the_exact_table(name, tmp_path):
    want = PUBLISHED[name]
    grid = load_grid(GRIDS / f"{name}.yaml")
    assert grid.name == name
    assert grid.protocols == want["protocols"]
    assert grid.methods == METHODS
    assert grid.seeds == [0, 1, 2]
    assert not grid.overrides and not grid.method_set and not grid.variants  # the protocols' own settings

    runs = expand(grid, out=str(tmp_path))
    assert len(runs) == want["runs"] == len(want["protocols"]) * len(METHODS) * 3
    assert {(r.spec.protocol, r.spec.method, r.spec.seed) for r in runs} == {
        (p, m, s) for p in want["protocols"] for m in METHODS for s in (0, 1, 2)}
    assert validate_runs(runs) == []  # every protocol id and method name is known

    resolved = [resolve(r.spec) for r in runs]
    assert {r.protocol.family for r in resolved} == want["families"]
    assert {r.protocol.labeled_count for r in resolved} == want["labeled"]
    # the step count the file's comment states is the one the runs will train
    stated = re.search(r"Cost: ([\d,]+) training steps", (GRIDS / f"{name}.yaml").read_text())
    assert stated and int(stated.group(1).replace(",", "")) == sum(r.total_steps for r in resolved)

    # GPU resources: one process per GPU, and the global batch splits evenly over them
    s = grid.slurm
    assert grid.executor == "slurm" and grid.device == "cuda"
    assert s.gpus_per_task == 4 and s.nproc is None and s.cpus_per_task >= 4 and s.mem_gb >= 32
    for r in resolved:
        assert r.protocol.budget.batch_labeled % s.gpus_per_task == 0
        assert r.protocol.budget.batch_unlabeled % s.gpus_per_task == 0


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_grid_dry_run_through_the_cli(name, tmp_path, fake_slurm, capsys):
    assert main(["grid", str(GRIDS / f"{name}.yaml"), "--executor", "slurm", "--dry-run",
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    n = PUBLISHED[name]["runs"]
    assert f"grid {name}: {n} runs, {n} to run with the slurm executor" in out
    assert out.count("would run:") == n
    assert "'gpus_per_node': 4" in out and "'ntasks_per_node': 4" in out and "'time': 1440" in out
    assert not (tmp_path / "out" / "grids" / name / "manifest.json").exists()


# The built-in benchmark's grids: what each must contain, and that they share runs (same pinned budget).
SYNTHETIC = {
    "synthetic-ssl": (["supervised", "mean_teacher", "imas"], 9),
    "s4mim-ablation": (["unimatch", "s4mim", "imas", "combined"], 18),
    "synthetic-benchmark": (METHODS, 75),
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_grids_expand_and_share_run_folders(name, tmp_path):
    methods, n = SYNTHETIC[name]
    grid = load_grid(GRIDS / f"{name}.yaml")
    runs = expand(grid, out=str(tmp_path))
    assert grid.methods == methods and len(runs) == n and validate_runs(runs) == []
    assert all(resolve(r.spec).total_steps == 3000 for r in runs)
    ssl = {str(r.run_dir) for r in expand(load_grid(GRIDS / "synthetic-ssl.yaml"), out=str(tmp_path))}
    mine = {str(r.run_dir) for r in runs}
    if name == "synthetic-benchmark":
        assert ssl <= mine  # the three-seed SSL comparison is part of the full table
    if name == "s4mim-ablation":
        assert {d for d in ssl if "/imas/" in d} <= mine  # its iMAS runs are the comparison's
        assert len({r.run_dir for r in runs if r.spec.method == "s4mim"}) == 9  # three distinct S4MIM variants


def test_pretrained_grid_covers_every_built_in_method_at_the_calibrated_budget(tmp_path):
    from harness.plugins import get_plugin_manager

    grid = load_grid(GRIDS / "synthetic-pt-benchmark.yaml")
    runs = expand(grid, out=str(tmp_path))
    builtin = {info.name for info in get_plugin_manager().methods if info.distribution == "ssseg-harness"}
    assert set(grid.methods) == builtin  # every built-in method, the same-encoder supervised row included
    assert len(runs) == len(builtin) * 4 * 3 + 3 and validate_runs(runs) == []
    for r in runs:
        resolved = resolve(r.spec)
        assert resolved.total_steps == 6000 and resolved.protocol.model.weights == "shapes-v1"
        assert "/default/" in str(r.run_dir)  # the protocols' own settings: nothing overridden


# The official iMAS recipe (imas spec §8.1) as protocols and the iMAS README's tables as a grid.
OFFICIAL = {  # id prefix: (backbone, output stride, aux head, crop, lr, head x, weight decay, loss, tau, group)
    "voc-imas-official-": ("resnet101", 16, False, 513, 0.001, 10.0, 1e-4, "ce", 0.95, 4),
    "voc-blended-imas-official-": ("resnet101", 16, False, 513, 0.001, 10.0, 1e-4, "ce", 0.95, 4),
    "voc-blended-imas-official-r50-": ("resnet50", 16, False, 513, 0.001, 10.0, 1e-4, "ce", 0.95, 4),
    "cityscapes-imas-official-": ("resnet50", 16, True, 769, 0.01, 1.0, 5e-4, "ohem", 0.7, 4),
    "cityscapes-imas-official-os8-": ("resnet50", 8, True, 769, 0.01, 1.0, 5e-4, "ohem", 0.7, 2),
}


def test_official_imas_protocols_follow_the_released_recipe():
    from harness.plugins import get_plugin_manager

    protocols = get_plugin_manager().protocols
    base = {p.splits.labeled.path: p for p in protocols if "official" not in p.id and p.dataset != "synthetic"}
    seen = 0
    for p in protocols:
        if "imas-official" not in p.id:
            continue
        prefix = max((k for k in OFFICIAL if p.id.startswith(k)), key=len)
        bb, os_, aux, crop, lr, mult, wd, loss, tau, group = OFFICIAL[prefix]
        m, b = p.model, p.budget
        assert (m.backbone, m.output_stride, m.aux_head, m.multi_grid, m.deep_stem, m.pretrained, m.decoder_init) == (
            bb, os_, aux, True, True, True, "pytorch")
        assert not aux or m.aux_weight == 0.4
        assert (p.crop_size, b.lr, b.head_lr_mult, b.weight_decay, b.batch_labeled, b.batch_unlabeled) == (
            crop, lr, mult, wd, 16, 16)
        assert b.epochs == (80 if p.dataset == "voc" else 240)
        assert p.supervised_loss.type == loss
        if loss == "ohem":
            assert (p.supervised_loss.thresh, p.supervised_loss.min_kept, p.supervised_loss.group) == (
                0.7, 100_000, group)
            assert (p.eval.mode, p.eval.window, p.eval.stride) == ("slide_truncated", 769, 512)
        else:
            assert p.eval.mode == "whole"
        assert p.method_settings["imas"] == {"tau": tau, "lambda_u": 3.0, "ema_decay": 0.996, "group_size": group}
        # the split lists and checksums of the harness protocol on the same lists
        ref = base[p.splits.labeled.path]
        assert (p.splits, p.family, p.labeled_count) == (ref.splits, ref.family, ref.labeled_count)
        seen += 1
    assert seen == 5 + 3 + 3 + 4 + 4


def test_official_imas_grid_expands_and_validates_on_its_gpus(tmp_path, fake_slurm, capsys):
    grid = load_grid(GRIDS / "imas-official.yaml")
    runs = expand(grid, out=str(tmp_path))
    assert grid.methods == ["supervised", "imas"] and len(runs) == 60
    assert validate_runs(runs, world_size=grid.slurm.gpus_per_task) == []
    stated = re.search(r"Cost: ([\d,]+) training steps", (GRIDS / "imas-official.yaml").read_text())
    assert int(stated.group(1).replace(",", "")) == sum(resolve(r.spec).total_steps for r in runs)
    assert main(["grid", "imas-official", "--dry-run", "--out", str(tmp_path / "out")]) == 0
    assert "grid imas-official: 60 runs, 60 to run with the slurm executor" in capsys.readouterr().out


def test_split_seed_grid_crosses_split_seeds_with_training_seeds(tmp_path, capsys):
    """benchmarks/grids/synthetic-split-seeds.yaml: 3 methods × 5 split seeds of synthetic-pt-100 × 3 training
    seeds, every run on a split-seed draw (never the standard list), in the pretrained regime."""
    from harness.plugins import get_plugin_manager

    grid = load_grid(GRIDS / "synthetic-split-seeds.yaml")
    runs = expand(grid, out=str(tmp_path))
    methods, splits, seeds = ["supervised", "unimatch", "mean_teacher"], [1, 2, 3, 4, 5], [0, 1, 2]
    assert len(runs) == 45
    assert [(r.spec.protocol, r.spec.method, r.spec.seed) for r in runs] == [
        (f"synthetic-pt-100-split{k}", m, s) for k in splits for m in methods for s in seeds]
    registry = get_plugin_manager().protocols
    for r in runs:
        p = registry.get(r.spec.protocol)
        assert p.split_of == "synthetic-pt-100" and p.labeled_count == 100 and p.model.weights == "shapes-v1"
        assert p.splits.selection is not None  # the same runs give --metric selected
    assert len({r.run_dir for r in runs}) == 45
    assert validate_runs(runs) == []
    assert main(["grid", str(GRIDS / "synthetic-split-seeds.yaml"), "--dry-run", "--out", str(tmp_path)]) == 0
    assert "synthetic-pt-100-split5" in capsys.readouterr().out


def test_split_seeds_of_a_protocol_without_draws_is_a_clear_error(tmp_path):
    from harness.errors import ConfigError

    path = tmp_path / "g.yaml"
    path.write_text("methods: [supervised]\nprotocols: [synthetic-pt-100, voc-92]\nsplit_seeds: [1, 9]\n")
    with pytest.raises(ConfigError, match="grid g: key split_seeds: protocol synthetic-pt-100 has no split seed 9; its "
                                          "split seeds are 1, 2, 3, 4, 5"):
        expand(load_grid(path), out=str(tmp_path))
    path.write_text("methods: [supervised]\nprotocols: [voc-92]\nsplit_seeds: [1]\n")
    with pytest.raises(ConfigError, match="voc-92 has no split seed 1; no protocol is a split-seed draw"):
        expand(load_grid(path), out=str(tmp_path))
    path.write_text("methods: [supervised]\nprotocols: [voc-92]\nsplit_seeds: [1, 1]\n")
    with pytest.raises(ConfigError, match="split_seeds lists \\[1\\] more than once"):
        load_grid(path)
