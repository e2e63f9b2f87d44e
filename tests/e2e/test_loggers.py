"""Training events every N steps, plain log lines for logs that are not terminals, and the TensorBoard logger."""

import os
import subprocess
import sys

import pytest

from harness.errors import ConfigError
from harness.train.run import RunSpec, resolve


def _run(tiny, out, *extra):
    return subprocess.run([sys.executable, "-m", "harness", "run", "--method", "supervised", "--protocol", "tiny-8",
                           "--out", str(out), "--data-root", str(tiny["data_root"]), "--threads", "1", *extra],
                          capture_output=True, text=True, timeout=300, env={**os.environ})


def test_a_log_file_gets_plain_periodic_lines_with_the_losses(tiny_benchmark, tmp_path):
    done = _run(tiny_benchmark, tmp_path / "runs", "--log-every", "4")
    assert done.returncode == 0, done.stderr
    lines = [l for l in done.stderr.splitlines() if " it/s  ETA " in l]
    assert [l.split()[2] for l in lines] == ["4/12", "8/12", "12/12"]
    assert "loss_x" in lines[0] and "lr " in lines[0] and "\r" not in done.stderr  # no progress bar in a log


def test_tensorboard_logger_records_training_and_evaluation(tiny_benchmark, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    done = _run(tiny_benchmark, tmp_path / "runs", "--log-every", "4", "--logger", "tensorboard", "--no-progress")
    assert done.returncode == 0, done.stderr
    (tb,) = (tmp_path / "runs").glob("tiny-8/supervised/*/seed0/tensorboard")
    acc = EventAccumulator(str(tb))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/loss", "train/loss_x", "train/lr", "eval/miou"} <= set(tags)
    assert [e.step for e in acc.Scalars("train/loss")] == [4, 8, 12]
    assert [e.step for e in acc.Scalars("eval/miou")] == [4, 8, 12]  # tiny-8 evaluates every 4 steps
    assert any(t.startswith("eval_class/") for t in tags)
    # a run that does not ask for it gets no TensorBoard folder
    assert _run(tiny_benchmark, tmp_path / "plain", "--no-progress").returncode == 0
    assert not list((tmp_path / "plain").glob("tiny-8/supervised/*/seed0/tensorboard"))


def test_unknown_logger_and_bad_log_every_are_refused(tiny_benchmark):
    with pytest.raises(ConfigError, match=r"unknown --logger wandbx; installed loggers .*tensorboard"):
        resolve(RunSpec(method="supervised", protocol="tiny-8", loggers=("wandbx",)))
    with pytest.raises(ConfigError, match="--log-every"):
        resolve(RunSpec(method="supervised", protocol="tiny-8", log_every=-1))
