"""Grid files: schema (unknown keys name the file), expansion order and overrides, time limits, sbatch text."""

from __future__ import annotations

from pathlib import Path

import pytest
import submitit

from harness.errors import ConfigError
from harness.launch.executors import slurm_parameters
from harness.launch.grid_file import (GridFile, SlurmOptions, expand, load_grid, parse_sbatch_items, parse_time_minutes,
                                      split_arrays, validate_runs)

from .conftest import write_grid

REPO = Path(__file__).resolve().parents[2]


def test_unknown_keys_are_errors_naming_the_file_and_key(tmp_path):
    g = write_grid(tmp_path / "g.yaml", methods=["supervised"], protocols=["tiny-8"], seedz=[1])
    with pytest.raises(ConfigError, match=r"grid file .*g\.yaml: unknown key 'seedz'.*Valid top-level keys: .*seeds"):
        load_grid(g)
    g = write_grid(tmp_path / "g.yaml", methods=["supervised"], protocols=["tiny-8"], slurm={"partitoin": "gpu"})
    with pytest.raises(ConfigError, match=r"g\.yaml: unknown key 'slurm.partitoin'"):
        load_grid(g)
    g = write_grid(tmp_path / "g.yaml", methods=["supervised"], protocols=["tiny-8"],
                   variants=[{"name": "a", "sett": {}}])
    with pytest.raises(ConfigError, match=r"g\.yaml: unknown key 'variants.0.sett'"):
        load_grid(g)


@pytest.mark.parametrize("doc, message", [
    ({"protocols": ["p"]}, r"key 'methods': Field required"),
    ({"methods": [], "protocols": ["p"]}, r"key 'methods'"),
    ({"methods": ["a", "a"], "protocols": ["p"]}, r"methods lists \['a'\] more than once"),
    ({"methods": ["a"], "protocols": ["p"], "method_set": {"b": {}}}, r"method_set names \['b'\]"),
    ({"methods": ["a"], "protocols": ["p"], "variants": [{"name": "v", "methods": ["b"]}]},
     r"variant 'v': methods \['b'\] are not in the grid's methods"),
    ({"methods": ["a"], "protocols": ["p"], "variants": [{"name": "v"}, {"name": "v"}]}, r"variant names \['v'\]"),
    ({"methods": ["a"], "protocols": ["p"], "executor": "pbs"}, r"key 'executor'"),
    ({"methods": ["a"], "protocols": ["p"], "slurm": {"time": "soon"}}, r"key 'slurm.time'.*time limit"),
    ({"methods": ["a"], "protocols": ["p"], "slurm": {"gpus_per_task": -1}}, r"key 'slurm.gpus_per_task'"),
])
def test_invalid_values_name_the_file_and_key(tmp_path, doc, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_grid(write_grid(tmp_path / "bad.yaml", **doc))
    assert "bad.yaml" in str(info.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_grid(tmp_path / "nope.yaml")
    (tmp_path / "b.yaml").write_text("methods: [a\n")
    with pytest.raises(ConfigError, match=r"b\.yaml is not valid YAML"):
        load_grid(tmp_path / "b.yaml")
    (tmp_path / "c.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match=r"c\.yaml must be a mapping"):
        load_grid(tmp_path / "c.yaml")


def test_name_defaults_to_the_file_stem(tmp_path):
    g = load_grid(write_grid(tmp_path / "my grid.yaml", methods=["a"], protocols=["p"]))
    assert g.name == "my_grid" and g.seeds == [0] and g.executor == "slurm" and g.slurm.time == 60


def test_expansion_order_overrides_and_variant_restrictions(tmp_path):
    grid = GridFile.model_validate({
        "methods": ["supervised", "mean_teacher"], "protocols": ["tiny-8", "tiny-full"], "seeds": [0, 1],
        "set": {"budget.iterations": 8, "budget.lr": 0.02},
        "method_set": {"mean_teacher": {"ema_decay": 0.9, "budget.lr": 0.03}},
        "variants": [{"name": "base"},
                     {"name": "long", "set": {"budget.iterations": 16}, "protocols": ["tiny-8"], "seeds": [1]},
                     {"name": "mt", "set": {"lambda_c": 2.0}, "methods": ["mean_teacher"]}],
    })
    runs = expand(grid, out=str(tmp_path / "o"), extra_set={"budget.lr": 0.05})
    labels = [r.label for r in runs]
    assert labels == [
        "tiny-8/supervised/base/seed0", "tiny-8/supervised/base/seed1", "tiny-8/supervised/long/seed1",
        "tiny-8/mean_teacher/base/seed0", "tiny-8/mean_teacher/base/seed1", "tiny-8/mean_teacher/long/seed1",
        "tiny-8/mean_teacher/mt/seed0", "tiny-8/mean_teacher/mt/seed1",
        "tiny-full/supervised/base/seed0", "tiny-full/supervised/base/seed1",
        "tiny-full/mean_teacher/base/seed0", "tiny-full/mean_teacher/base/seed1",
        "tiny-full/mean_teacher/mt/seed0", "tiny-full/mean_teacher/mt/seed1"]
    by = {r.label: r.spec for r in runs}
    # grid set <- method_set <- variant set <- command line
    assert by["tiny-8/supervised/long/seed1"].overrides == {"budget.iterations": 16, "budget.lr": 0.05}
    assert by["tiny-8/mean_teacher/mt/seed0"].overrides == {"budget.iterations": 8, "budget.lr": 0.05,
                                                            "ema_decay": 0.9, "lambda_c": 2.0}
    spec = by["tiny-8/supervised/base/seed0"]
    assert spec.out == str(tmp_path / "o") and spec.progress is False and spec.force is False
    assert runs[0].run_dir.startswith(str(tmp_path / "o" / "tiny-8" / "supervised"))
    assert len({r.run_dir for r in runs}) == len(runs)


def test_seed_order_puts_every_runs_first_seed_first(tmp_path, capsys):
    doc = {"methods": ["supervised", "mean_teacher"], "protocols": ["synthetic-pt-100", "synthetic-pt-200"],
           "seeds": [2, 0],
           "variants": [{"name": "base"}, {"name": "extra", "set": {"budget.iterations": 16}, "seeds": [0],
                                           "methods": ["supervised"], "protocols": ["synthetic-pt-100"]}]}
    by_protocol = expand(GridFile.model_validate(doc), out=str(tmp_path))
    by_seed = expand(GridFile.model_validate({**doc, "order": "seed"}), out=str(tmp_path))
    # the same runs; seeds in the file's order (2 before 0), the protocol order within a seed
    assert sorted(r.label for r in by_seed) == sorted(r.label for r in by_protocol)
    assert [r.label for r in by_seed] == [
        "synthetic-pt-100/supervised/base/seed2", "synthetic-pt-100/mean_teacher/base/seed2",
        "synthetic-pt-200/supervised/base/seed2", "synthetic-pt-200/mean_teacher/base/seed2",
        "synthetic-pt-100/supervised/base/seed0", "synthetic-pt-100/supervised/extra/seed0",
        "synthetic-pt-100/mean_teacher/base/seed0",
        "synthetic-pt-200/supervised/base/seed0", "synthetic-pt-200/mean_teacher/base/seed0"]
    # the command line's --order overrides the file's
    assert [r.label for r in expand(GridFile.model_validate({**doc, "order": "seed"}), out=str(tmp_path),
                                    order="protocol")] == [r.label for r in by_protocol]
    # and through the command line, what a dry run lists
    from harness.cli import main
    path = write_grid(tmp_path / "g.yaml", **doc)
    assert main(["grid", str(path), "--executor", "local", "--order", "seed", "--dry-run", "--out", str(tmp_path)]) == 0
    listed = [line.split()[2] for line in capsys.readouterr().out.splitlines() if "would run:" in line]
    assert listed == [r.label for r in by_seed]
    with pytest.raises(ConfigError, match="order must be 'protocol' or 'seed', got 'method'"):
        expand(GridFile.model_validate(doc), out=str(tmp_path), order="method")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*key 'order'"):
        load_grid(write_grid(tmp_path / "bad.yaml", **{**doc, "order": "seeds"}))


def test_variants_with_identical_settings_are_one_run(tmp_path):
    grid = GridFile.model_validate({"methods": ["supervised"], "protocols": ["tiny-8"],
                                    "variants": [{"name": "a", "set": {"budget.lr": 0.1}},
                                                 {"name": "b", "set": {"budget.lr": 0.1}}]})
    assert [r.label for r in expand(grid, out=str(tmp_path))] == ["tiny-8/supervised/a/seed0"]


def test_validation_reports_every_invalid_run(tiny_benchmark, tmp_path):
    grid = GridFile.model_validate({"methods": ["supervised", "nosuch"], "protocols": ["tiny-8"],
                                    "variants": [{"name": "ok"}, {"name": "typo", "set": {"budget.iters": 3}}]})
    bad = {r.label: err for r, err in validate_runs(expand(grid, out=str(tmp_path)))}
    assert set(bad) == {"tiny-8/supervised/typo/seed0", "tiny-8/nosuch/ok/seed0", "tiny-8/nosuch/typo/seed0"}
    assert "budget.iters" in bad["tiny-8/supervised/typo/seed0"]
    assert "nosuch" in bad["tiny-8/nosuch/ok/seed0"]


def test_example_grid_loads_expands_and_validates():
    grid = load_grid(REPO / "benchmarks" / "grids" / "synthetic-smoke.yaml")
    runs = expand(grid, out="/tmp/unused")
    assert grid.name == "synthetic-smoke" and len(runs) == 9
    assert validate_runs(runs) == []


@pytest.mark.parametrize("value, minutes", [(90, 90), ("90", 90), ("90m", 90), ("4h", 240), ("1.5h", 90),
                                            ("1:30", 90), ("1:30:00", 90), ("0:00:30", 1), ("2-00:00:00", 2880),
                                            ("1d", 1440), (0.2, 1)])
def test_time_limits(value, minutes):
    assert parse_time_minutes(value) == minutes


@pytest.mark.parametrize("value", ["soon", "0", -5, "1:2:3:4", True])
def test_bad_time_limits(value):
    with pytest.raises(ConfigError, match="time limit"):
        parse_time_minutes(value)


def test_sbatch_items():
    assert parse_sbatch_items(["exclude=node[1-3]", "--exclusive", "mail-type=END,FAIL"]) == {
        "exclude": "node[1-3]", "exclusive": True, "mail-type": "END,FAIL"}
    with pytest.raises(ConfigError):
        parse_sbatch_items(["=x"])


@pytest.mark.parametrize("n, size, expected", [(0, 5, []), (1, 5, [1]), (5, 5, [5]), (7, 3, [3, 3, 1]),
                                               (2500, 1001, [1001, 1001, 498])])
def test_split_arrays(n, size, expected):
    chunks = split_arrays(list(range(n)), size)
    assert [len(c) for c in chunks] == expected
    assert [x for c in chunks for x in c] == list(range(n))


def test_slurm_parameters_reach_the_sbatch_script(tmp_path, monkeypatch):
    # Only the sbatch text is built: no cluster is needed, but submitit refuses to build an executor
    # where `srun` is not on PATH (the SLURM packages are installed later, by tests/slurm).
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    opts = SlurmOptions(partition="gpu", account="proj", qos="high", time="2:00:00", gpus_per_task=4,
                        cpus_per_task=8, mem_gb=64, array_parallelism=5, constraint="a100", setup=["module load x"],
                        sbatch={"exclude": "node3", "exclusive": True})
    params = slurm_parameters(opts, "mygrid")
    assert params["ntasks_per_node"] == 4 and params["gpus_per_node"] == 4 and params["time"] == 120
    ex = submitit.SlurmExecutor(folder=tmp_path / "%j")
    ex.update_parameters(**params)
    ex.parameters["map_count"] = 12
    text = ex._make_submission_file_text("python -m x", "uid")
    for line in ["--partition=gpu", "--account=proj", "--qos=high", "--time=120", "--gpus-per-node=4",
                 "--ntasks-per-node=4", "--cpus-per-task=8", "--mem=64GB", "--array=0-11%5", "--constraint=a100",
                 "--exclude=node3", "--exclusive", "--job-name=mygrid", "--signal=USR2@90"]:
        assert f"#SBATCH {line}\n" in text + "\n", line
    assert "module load x" in text
    small = slurm_parameters(SlurmOptions(mem_gb=0.5, nproc=2), "g")
    assert small["mem"] == "512MB" and small["ntasks_per_node"] == 2 and "gpus_per_node" not in small
    assert "partition" not in small  # the cluster's default partition


def test_shipped_grids_are_found_by_name(tmp_path, monkeypatch):
    from harness.launch.grid_file import grid_path
    from harness.resources import grids_dir

    monkeypatch.chdir(tmp_path)  # no benchmarks/ folder here
    assert grid_path("voc-classic") == grids_dir() / "voc-classic.yaml"
    assert load_grid("voc-classic.yaml").name == "voc-classic"
    with pytest.raises(ConfigError, match="shipped grids, usable by name: .*synthetic-smoke"):
        load_grid("no-such-grid")
