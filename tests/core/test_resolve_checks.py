"""Checks made when a run is resolved, before any training: ImageNet weights a protocol declares, and
settings that only fail with a given number of processes."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.errors import ConfigError
from harness.train.run import RunSpec, resolve, run_dir


@pytest.mark.parametrize("protocol, names", [("voc-92", ["resnet101_deepstem.pth", "resnet101.pth"]),
                                             ("cityscapes-186", ["resnet101_deepstem.pth"])])
def test_missing_weights_refuse_to_start_and_say_where_and_how_to_opt_out(no_weights, tmp_path, monkeypatch,
                                                                          protocol, names):
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setenv("HARNESS_PRETRAINED_DIR", str(weights))
    with pytest.raises(ConfigError) as err:
        resolve(RunSpec("supervised", protocol))
    msg = str(err.value)
    for name in names:
        assert str(weights / name) in msg
    assert "HARNESS_PRETRAINED_DIR" in msg and f"torchvision cache {no_weights / 'checkpoints'}" in msg
    assert "--set model.pretrained=false" in msg and protocol in msg

    # the opt-out resolves, and is a settings variant of its own
    spec = RunSpec("supervised", protocol, overrides={"model.pretrained": False})
    assert resolve(spec).protocol.model.pretrained is False
    assert run_dir(spec) != run_dir(RunSpec("supervised", protocol))
    # a weights file where the message says resolves (its contents are checked when the model is built)
    (weights / names[0]).write_bytes(b"")
    assert resolve(RunSpec("supervised", protocol)).protocol.model.pretrained


def test_the_cli_stops_before_creating_the_run(no_weights, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", "--method", "supervised", "--protocol", "voc-92", "--out", str(out)]) == 2
    assert "resnet101_deepstem.pth" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("method", ["imas", "combined"])
def test_group_size_is_checked_for_the_number_of_processes(tiny_benchmark, monkeypatch, method):
    def spec(**over):
        return RunSpec(method, "tiny-8", overrides=over)

    # tiny-8: 4 unlabeled images per step; group_size 4 fits 1, 2 and 4 processes
    for world in (1, 2, 4):
        resolve(spec(), world_size=world)
    with pytest.raises(ConfigError, match=r"group_size 3 .* unlabeled batch 4 is 4 per process"):
        resolve(spec(group_size=3))
    big = {"budget.batch_labeled": 12, "budget.batch_unlabeled": 12}
    resolve(spec(**big), world_size=3)  # 4 per process: one group each
    with pytest.raises(ConfigError) as err:
        resolve(spec(**big), world_size=2)  # 6 per process: a group of 4 neither fits in one nor spans whole ones
    msg = str(err.value)
    assert "group_size 4" in msg and "6 per process" in msg and "2 process(es)" in msg and "group_size=6" in msg
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun's environment is the default
    with pytest.raises(ConfigError, match="6 per process"):
        resolve(spec(**big))
    with pytest.raises(ConfigError, match="does not split evenly over 5 processes"):
        resolve(spec(), world_size=5)
