"""The settings folder of a run is named by its resolved settings, not by the spelling of ``--set``."""

from harness import records
from harness.cli import main
from harness.launch.grid_file import expand
from harness.train.run import RunSpec, run_dir

from ..launch.conftest import write_grid


def _folder(tiny, method="supervised", **overrides):
    spec = RunSpec(method=method, protocol="tiny-8", overrides=overrides, data_root=str(tiny["data_root"]))
    return run_dir(spec).parent.name


def test_equal_settings_spelled_differently_share_one_folder(tiny_benchmark):
    assert _folder(tiny_benchmark) == "default"
    assert _folder(tiny_benchmark, **{"budget.iterations": 12}) == "default"  # the tiny protocols' default
    assert _folder(tiny_benchmark, **{"budget.iterations": 4}) == _folder(tiny_benchmark, **{"budget.iterations": 4.0})
    assert _folder(tiny_benchmark, **{"budget.iterations": 4}) != "default"
    assert _folder(tiny_benchmark, "imas", tau=0.95) == "default"  # the method default
    assert _folder(tiny_benchmark, "imas", tau=0.9) == _folder(tiny_benchmark, "imas", tau=0.90) != "default"
    assert _folder(tiny_benchmark, **{"run.precision": "fp32"}) == "default"
    assert _folder(tiny_benchmark, **{"run.precision": "bf16"}) != "default"


def test_a_run_restating_its_settings_is_the_same_finished_run(tiny_benchmark, tmp_path, capsys):
    argv = ["run", "--method", "supervised", "--protocol", "tiny-8", "--out", str(tmp_path / "r"),
            "--data-root", str(tiny_benchmark["data_root"]), "--no-progress"]
    assert main(argv + ["--set", "budget.iterations=2"]) == 0
    (d,) = (tmp_path / "r" / "tiny-8" / "supervised").glob("*/seed0")
    cfg = records.read_json(d / "config.json")
    assert cfg["settings"] == {"protocol": {"budget.iterations": 2}} and cfg["settings_hash"] == d.parent.name
    capsys.readouterr()
    assert main(argv + ["--set", "budget.iterations=2.0"]) == 2
    assert "already finished" in capsys.readouterr().err


def test_grid_variants_with_equal_settings_are_one_run(tiny_benchmark, tmp_path):
    from harness.launch.grid_file import load_grid

    g = write_grid(tmp_path / "g.yaml", name="g", out=str(tmp_path / "out"), methods=["supervised"],
                   protocols=["tiny-8"], seeds=[0], set={"budget.iterations": 4},
                   variants=[{"name": "int"}, {"name": "float", "set": {"budget.iterations": 4.0}},
                             {"name": "lr", "set": {"budget.lr": 0.01}}])  # 0.01 is the tiny protocols' lr
    runs = expand(load_grid(g))
    assert [r.variant for r in runs] == ["int"]
