"""The precision switch: fp32 by default, bf16 on request, recorded and part of the run's settings."""

import pytest
import torch

from harness import records
from harness.cli import main
from harness.train.engine import autocast_for
from harness.errors import ConfigError
from harness.train.run import RunSpec, resolve


def _argv(tiny, out, *extra):
    return ["run", "--method", "supervised", "--protocol", "tiny-8", "--out", str(out),
            "--data-root", str(tiny["data_root"]), "--no-progress", "--set", "budget.iterations=2", *extra]


def test_autocast_is_off_in_fp32_and_bf16_on_request():
    x = torch.randn(2, 3)
    w = torch.randn(3, 3)
    with autocast_for(torch.device("cpu"))():
        assert (x @ w).dtype == torch.float32
    with autocast_for(torch.device("cpu"), "bf16")():
        assert (x @ w).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        autocast_for(torch.device("cpu"), "fp16")


def test_precision_is_recorded_and_separates_runs(tiny_benchmark, tmp_path):
    out = tmp_path / "runs"
    assert main(_argv(tiny_benchmark, out)) == 0
    assert main(_argv(tiny_benchmark, out, "--precision", "bf16")) == 0
    folders = sorted((out / "tiny-8" / "supervised").iterdir())
    assert len(folders) == 2  # bf16 is another settings folder
    docs = {records.read_json(f / "seed0" / "record.json")["precision"]: f.name for f in folders}
    assert set(docs) == {"fp32", "bf16"}
    cfg = records.read_json(out / "tiny-8" / "supervised" / docs["bf16"] / "seed0" / "config.json")
    assert cfg["precision"] == "bf16" and cfg["overrides"] == {"budget.iterations": 2, "run.precision": "bf16"}
    # --precision fp32 is the default: the same run as no flag at all, hence "already finished"
    assert main(_argv(tiny_benchmark, out, "--precision", "fp32")) == 2


def test_bad_precision_is_a_config_error(tiny_benchmark):
    with pytest.raises(ConfigError, match=r"run\.precision.*fp32, bf16.*'fp16'"):
        resolve(RunSpec(method="supervised", protocol="tiny-8", overrides={"run.precision": "fp16"}))
