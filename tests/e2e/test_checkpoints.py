"""Checkpoints on SIGTERM / Ctrl-C in a plain `harness run`, a cadence independent of evaluation, exact resumes
between evaluations, and a status.json that stays true however a run ends (a full disk included)."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
import torch

from harness import records
from harness.train.engine import StopRequested, parse_checkpoint_every
from harness.train.runlock import owner_alive
from harness.train.run import RunSpec, execute, run_dir

from .conftest import env, harness, read, run_args, state_of, wait_for

LONG = ["--set", "budget.iterations=5000", "--set", "budget.eval_every=5000"]


def _one_dir(out):
    (d,) = out.glob("tiny-8/*/*/seed0")
    return d


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_checkpoints_a_plain_run_which_then_resumes(tiny_benchmark, tmp_path, sig):
    out = tmp_path / "runs"
    proc = subprocess.Popen(harness(*run_args(tiny_benchmark, out, *LONG, "--checkpoint-every", "off")), env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(out.glob("tiny-8/*/*/seed0/status.json")), "the run to start")
        d = _one_dir(out)
        wait_for(lambda: state_of(d) == "running", "the run to train")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, err
    assert f"stopped on {sig.name} after step" in err and "Traceback" not in err
    status = read(d / "status.json")
    step = torch.load(d / "latest.pt", weights_only=False)["step"]
    assert status["state"] == "stopped" and status["step"] == step > 0
    again = subprocess.run(harness(*run_args(tiny_benchmark, out, *LONG, "--stop-after", "1")), env=env(),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert read(d / "config.json")["starts"][-1]["from_step"] == step


def test_checkpoint_cadence_is_independent_of_evaluation(tiny_benchmark, tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.Popen(harness(*run_args(tiny_benchmark, out, *LONG, "--checkpoint-every", "7")), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: any(out.glob("tiny-8/*/*/seed0/latest.pt")), "the first checkpoint (no evaluation yet)")
        d = _one_dir(out)
        wait_for(lambda: read(d / "status.json").get("checkpoint_step", 0) >= 14, "two checkpoints")
    finally:
        proc.kill()  # SIGKILL: nothing written on the way out
        proc.wait()
    step = torch.load(d / "latest.pt", weights_only=False)["step"]
    assert step % 7 == 0 and step >= 14
    assert state_of(d) == "running" and owner_alive(d) is False  # reads as interrupted
    (d / ".latest.pt.orphan.tmp").write_bytes(b"as a writer killed mid-write leaves it")
    again = subprocess.run(harness(*run_args(tiny_benchmark, out, *LONG, "--stop-after", "1")), env=env(),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert read(d / "config.json")["starts"][-1]["from_step"] == step and not list(d.glob(".*.tmp"))


def test_resume_between_two_evaluations_is_exact_training_logs_included(tiny_benchmark, tmp_path):
    def spec(where, **kw):
        return RunSpec(method="mean_teacher", protocol="tiny-8", out=str(tmp_path / where),
                       data_root=str(tiny_benchmark["data_root"]), progress=False,
                       overrides={"budget.eval_every": 6}, **kw)

    execute(spec("a"))
    with pytest.raises(StopRequested):
        execute(spec("b", stop_after=4, checkpoint_every="3"))  # checkpoints at 3 and 4, evaluation at 6
    execute(spec("b"))

    def metrics(where):
        return [{k: v for k, v in e.items() if k != "eval_seconds"}
                for e in records.read_metrics(run_dir(spec(where)) / "metrics.jsonl")]
    assert metrics("a") == metrics("b") and len(metrics("a")) == 2


def test_checkpoint_every_values():
    assert parse_checkpoint_every("500") == (500, None)
    assert parse_checkpoint_every("30m") == (None, 1800.0)
    assert parse_checkpoint_every("500, 2h") == (500, 7200.0)
    assert parse_checkpoint_every("off") == (None, None)
    for bad in ("0.5", "5x", "-3", "m"):
        with pytest.raises(ValueError, match="--checkpoint-every expects"):
            parse_checkpoint_every(bad)


def test_a_full_disk_is_one_sentence_and_the_kept_checkpoint_resumes(tiny_benchmark, tmp_path, small_fs):
    fs = small_fs("2m")
    out = fs / "runs"
    proc = subprocess.Popen(harness(*run_args(tiny_benchmark, out, *LONG, "--checkpoint-every", "5")), env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(out.glob("tiny-8/*/*/seed0/latest.pt")), "the first checkpoint")
        filler = fs / "filler"
        with open(filler, "wb") as f:  # fill the disk up while the run trains
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    d = _one_dir(out)
    kept = torch.load(d / "latest.pt", weights_only=False)["step"]
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "no space left on device" in err, err
    assert f"its checkpoint of step {kept} ({d / 'latest.pt'}) was kept" in err
    assert "Free space on that file system, then rerun the same command to resume from it" in err
    assert not list(d.glob(".*.tmp"))
    assert state_of(d) in ("failed", "running") and owner_alive(d) is False  # failed if it fitted; else interrupted
    filler.unlink()
    again = subprocess.run(harness(*run_args(tiny_benchmark, out, *LONG, "--stop-after", "1")), env=env(),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads((d / "config.json").read_text())["starts"][-1]["from_step"] == kept
