"""One trainer per run directory: real `harness` processes, real signals, the kernel's lock release."""

from __future__ import annotations

import platform
import signal
import subprocess
from pathlib import Path

import pytest

from harness.train.runlock import owner_alive

from ..launch.conftest import write_grid
from .conftest import env, harness, read, run_args, state_of, wait_for

LONG = ["--set", "budget.iterations=5000", "--set", "budget.eval_every=5000"]  # killed long before the end


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def the_run_dir(out: Path) -> Path:
    (d,) = out.glob("tiny-8/supervised/*/seed0")
    return d


def test_a_second_trainer_and_force_are_refused_and_a_killed_run_resumes_at_once(tiny_benchmark, tmp_path):
    out = tmp_path / "runs"
    first = subprocess.Popen(harness(*run_args(tiny_benchmark, out, *LONG)), env=env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: out.exists() and any(out.glob("*/*/*/seed0/status.json")), "the first run to start")
        d = the_run_dir(out)
        wait_for(lambda: state_of(d) == "running", "the first run to train")
        assert owner_alive(d) is True
        second = subprocess.run(harness(*run_args(tiny_benchmark, out, *LONG)), env=env(), capture_output=True,
                                text=True, timeout=60)
        assert second.returncode == 2, second.stderr
        assert f"being trained by process {first.pid} on host {platform.node()}" in second.stderr
        assert "Traceback" not in second.stderr
        forced = subprocess.run(harness(*run_args(tiny_benchmark, out, *LONG, "--force")), env=env(),
                                capture_output=True, text=True, timeout=60)
        assert forced.returncode == 2 and "--force does not delete a run directory that is being trained" in \
            forced.stderr, forced.stderr
        assert (d / "config.json").exists() and first.poll() is None  # the running trainer was left alone
    finally:
        first.kill()
        first.wait()
    assert state_of(d) == "running" and owner_alive(d) is False  # killed: status can only say what it said
    again = subprocess.run(harness(*run_args(tiny_benchmark, out, *LONG, "--stop-after", "3")), env=env(),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr  # the kernel released the lock: no waiting, no stale lock
    assert state_of(d) == "stopped" and not (d / "run.lock").exists()


def _grid(tmp_path, tiny, executor="local"):
    return write_grid(tmp_path / "g.yaml", name="g", out=str(tmp_path / "out"), methods=["supervised"],
                      protocols=["tiny-8"], seeds=[0], data_root=str(tiny["data_root"]), executor=executor,
                      set={"budget.iterations": 5000, "budget.eval_every": 5000}, local={"threads": 1})


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL])
def test_a_dying_local_launcher_ends_its_trainer_which_checkpoints(tiny_benchmark, tmp_path, sig):
    g = _grid(tmp_path, tiny_benchmark)
    launcher = subprocess.Popen(harness("grid", str(g)), env=env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    out = tmp_path / "out"
    try:
        wait_for(lambda: any(out.glob("tiny-8/*/*/seed0/status.json")), "the run to start")
        d = the_run_dir(out)
        wait_for(lambda: state_of(d) == "running", "the run to train")
        trainer = read(d / "status.json")["pid"]
        launcher.send_signal(sig)
        launcher.wait(timeout=90)
        wait_for(lambda: not alive(trainer), "the trainer to end with its launcher", timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    status = read(d / "status.json")
    assert status["state"] == "stopped" and status["step"] > 0 and (d / "latest.pt").exists()
    report = subprocess.run(harness("status", str(g)), env=env(), capture_output=True, text=True, timeout=60)
    assert report.returncode == 1 and "1 stopped" in report.stdout, report.stdout


def test_status_tells_a_live_trainer_from_a_killed_one(tiny_benchmark, tmp_path):
    """The issue's sequence: the launcher is gone but a trainer still runs the run (here started by hand);
    `harness status` must not call it 'stopped … retry to resume', and a retry must not start a second one."""
    g = _grid(tmp_path, tiny_benchmark, executor="debug")
    launcher = subprocess.Popen(harness("grid", str(g)), env=env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    out = tmp_path / "out"
    wait_for(lambda: any(out.glob("tiny-8/*/*/seed0/status.json")), "the grid run to start")
    d = the_run_dir(out)
    wait_for(lambda: state_of(d) == "running", "the grid run to train")
    launcher.kill()  # the in-process trainer dies with it
    launcher.wait()
    report = subprocess.run(harness("status", str(g)), env=env(), capture_output=True, text=True, timeout=60)
    assert "1 stopped" in report.stdout and "interrupted" in report.stdout, report.stdout
    by_hand = subprocess.Popen(harness(*run_args(tiny_benchmark, out, *LONG)), env=env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: owner_alive(d) is True, "the hand-started trainer to take the run")
        report = subprocess.run(harness("status", str(g)), env=env(), capture_output=True, text=True, timeout=60)
        assert "1 running" in report.stdout and "still runs" in report.stdout, report.stdout
        retry = subprocess.run(harness("grid", str(g), "--retry-failed"), env=env(), capture_output=True, text=True,
                               timeout=60)
        assert "0 to run" in retry.stdout or "nothing to submit" in retry.stdout, retry.stdout + retry.stderr
    finally:
        by_hand.kill()
        by_hand.wait()
