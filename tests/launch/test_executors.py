"""The task and the in-process / local executors on the tiny benchmark: failures recorded and isolated,
SIGTERM and checkpoint() stop at a step boundary and resume, distributed environment export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import pytest
import torch

from harness.cli import main
from harness.train.engine import StopRequested
from harness.launch.executors import local_command
from harness.launch.grid_file import PlannedRun, spec_from_dict
from harness.launch.manifest import load_manifest
from harness.launch.task import EXIT_STOPPED, GridTask, export_distributed_env

from .conftest import write_grid


@pytest.fixture(autouse=True)
def one_thread():
    """In-process training with one torch thread (the runs are tiny; more threads only contend)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _grid(tmp_path, tiny, **extra):
    doc = dict(name="g", out=str(tmp_path / "out"), methods=["supervised"], protocols=["tiny-8"], seeds=[0, 1],
               set={"budget.iterations": 4}, data_root=str(tiny["data_root"]),
               variants=[{"name": "base"},
                         {"name": "broken", "set": {"budget.lr": 1.0e30}, "seeds": [0]}])  # non-finite at run time
    doc.update(extra)
    return write_grid(tmp_path / "g.yaml", **doc)


def _spec(tiny, tmp_path, **overrides):
    return {"method": "supervised", "protocol": "tiny-8", "seed": 0, "out": str(tmp_path / "runs"),
            "data_root": str(tiny["data_root"]), "progress": False, "overrides": overrides}


def _run_dir(spec) -> Path:
    return Path(PlannedRun(spec_from_dict(spec), "x").run_dir)


def _read(path):
    return json.loads(Path(path).read_text())


def _wait_for(predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _running(run_dir):
    def check():
        try:
            return _read(run_dir / "status.json")["state"] == "running"
        except (OSError, ValueError, KeyError):
            return False
    return check


def test_debug_executor_isolates_a_failing_run_and_retries_only_it(tiny_benchmark, tmp_path, capsys):
    g = _grid(tmp_path, tiny_benchmark)
    assert main(["grid", str(g), "--executor", "debug"]) == 1  # one run failed
    out = capsys.readouterr().out
    assert "[3/3] FAILED tiny-8/supervised/broken/seed0: NonFiniteLossError" in out
    assert out.count(" finished tiny-8/supervised/base/") == 2
    assert main(["status", str(g)]) == 1
    out = capsys.readouterr().out
    assert "3 runs: 2 finished, 1 failed" in out and "error: NonFiniteLossError" in out
    mpath = tmp_path / "out" / "grids" / "g" / "manifest.json"
    assert main(["grid", str(g), "--executor", "debug", "--retry-failed"]) == 1
    out = capsys.readouterr().out
    assert "[1/1] FAILED tiny-8/supervised/broken/seed0" in out and "base" not in out.split("manifest:")[1]
    subs = load_manifest(mpath)["submissions"]
    assert [len(s["runs"]) for s in subs] == [3, 1] and subs[1]["retry_failed"] is True
    assert main(["grid", str(g), "--executor", "debug"]) == 1  # finished runs skipped, the failed one rerun
    assert "2 skipped (finished), 1 to run" in capsys.readouterr().out


def test_task_records_errors_before_training_and_returns_finished_records(tiny_benchmark, tmp_path):
    bad = _spec(tiny_benchmark, tmp_path, **{"budget.lr": "fast"})
    with pytest.raises(Exception, match="budget.lr"):
        GridTask(handle_signals=False)(bad)
    status = _read(_run_dir(bad) / "status.json")
    assert status["state"] == "failed" and status["error"].startswith("ConfigError:") and "budget.lr" in status["error"]
    assert "Traceback" in status["traceback"]
    if not torch.cuda.is_available():  # valid settings, refused only where the run starts
        no_gpu = {**_spec(tiny_benchmark, tmp_path), "device": "cuda"}
        with pytest.raises(Exception, match="CUDA is not available"):
            GridTask(handle_signals=False)(no_gpu)
        assert "CUDA is not available" in _read(_run_dir(no_gpu) / "status.json")["error"]
    ok = _spec(tiny_benchmark, tmp_path, **{"budget.iterations": 2})
    first = GridTask(handle_signals=False)(ok)
    mtime = (_run_dir(ok) / "record.json").stat().st_mtime_ns
    assert GridTask(handle_signals=False)(ok) == first  # a finished run is returned, not retrained
    assert (_run_dir(ok) / "record.json").stat().st_mtime_ns == mtime


def test_checkpoint_stops_at_a_step_boundary_and_the_delayed_submission_resumes(tiny_benchmark, tmp_path):
    spec = _spec(tiny_benchmark, tmp_path, **{"budget.iterations": 200, "budget.eval_every": 100})
    run_dir = _run_dir(spec)
    task = GridTask()
    box = {}

    def preempt():  # what submitit's SIGUSR2 handler does, from another thread
        _wait_for(_running(run_dir), "the run to start")
        time.sleep(0.5)
        box["delayed"] = task.checkpoint(spec)

    t = threading.Thread(target=preempt)
    t.start()
    with pytest.raises(StopRequested) as stop:
        task(spec)
    t.join()
    step = stop.value.step
    assert 0 < step < 200
    assert torch.load(run_dir / "latest.pt", weights_only=False)["step"] == step
    assert _read(run_dir / "status.json")["state"] == "stopped"
    delayed = cloudpickle.loads(cloudpickle.dumps(box["delayed"]))  # what submitit dumps and reruns
    assert isinstance(delayed.function, GridTask) and delayed.args == (spec,)
    record = delayed.result()
    assert record["total_steps"] == 200
    assert _read(run_dir / "config.json")["resumed_from_step"] == step


def test_sigterm_in_a_slurm_task_checkpoints_and_training_goes_on_when_no_kill_follows(tiny_benchmark, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SLURM_JOB_ID", "424242")
    for var in ("SLURM_NTASKS", "SLURM_CPUS_PER_TASK", "HARNESS_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    spec = _spec(tiny_benchmark, tmp_path, **{"budget.iterations": 200, "budget.eval_every": 100})
    run_dir = _run_dir(spec)
    before = signal.getsignal(signal.SIGTERM)

    def sigterm():
        _wait_for(_running(run_dir), "the run to start")
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    t = threading.Thread(target=sigterm)
    t.start()
    record = GridTask(term_wait_s=0.5)(spec)
    t.join()
    assert signal.getsignal(signal.SIGTERM) is before  # handler restored
    assert record["total_steps"] == 200
    resumed = _read(run_dir / "config.json")["resumed_from_step"]
    assert 0 < resumed < 200


def test_local_executor_runs_in_parallel_with_threads_per_run(tiny_benchmark, tmp_path, capsys):
    g = _grid(tmp_path, tiny_benchmark, seeds=[0])
    assert main(["grid", str(g), "--executor", "local", "--max-parallel", "2"]) == 1
    out = capsys.readouterr().out
    cores = len(os.sched_getaffinity(0))
    assert f"2 runs, 2 at a time, 1 process(es) per run, {max(1, cores // 2)} thread(s) per process" in out
    assert "finished tiny-8/supervised/base/seed0" in out and "FAILED (exit 1) tiny-8/supervised/broken/seed0" in out
    (sub,) = load_manifest(tmp_path / "out" / "grids" / "g" / "manifest.json")["submissions"]
    logs = {r["label"]: Path(r["log"]) for r in sub["runs"]}
    assert "NonFiniteLossError" in logs["tiny-8/supervised/broken/seed0"].read_text() or \
        "non-finite" in logs["tiny-8/supervised/broken/seed0"].read_text()
    assert main(["status", str(g)]) == 1
    out = capsys.readouterr().out
    assert "2 runs: 1 finished, 1 failed" in out and str(logs["tiny-8/supervised/broken/seed0"]) in out


def test_local_task_process_stops_on_sigterm_and_resumes(tiny_benchmark, tmp_path):
    spec = _spec(tiny_benchmark, tmp_path, **{"budget.iterations": 200, "budget.eval_every": 100})
    run_dir = _run_dir(spec)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = local_command(spec, 1)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(_running(run_dir), "the run to start")
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_STOPPED, out
    status = _read(run_dir / "status.json")
    assert status["state"] == "stopped" and 0 < status["step"] < 200
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _read(run_dir / "config.json")["resumed_from_step"] == status["step"]
    assert (run_dir / "record.json").exists()


def _fake_slurm_task_env(monkeypatch, rank, ntasks=2, visible="4,5"):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    env = {"SLURM_JOB_ID": "77", "SLURM_NTASKS": str(ntasks), "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0",
           "SLURM_JOB_NODELIST": "node7", "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
           "CUDA_VISIBLE_DEVICES": visible}
    for k, v in env.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def restore_environ():
    """export_distributed_env writes os.environ directly; leaked RANK/WORLD_SIZE would reach later jobs."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_distributed_environment_export(restore_environ, monkeypatch):  # restored after monkeypatch undoes
    _fake_slurm_task_env(monkeypatch, rank=1)
    exported = export_distributed_env()
    assert exported == {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                        "MASTER_ADDR": "node7", "MASTER_PORT": exported["MASTER_PORT"], "CUDA_VISIBLE_DEVICES": "5"}
    assert 20000 <= int(exported["MASTER_PORT"]) <= 60000
    for k, v in exported.items():
        assert os.environ[k] == v
    _fake_slurm_task_env(monkeypatch, rank=0, ntasks=1)
    assert export_distributed_env() is None and "RANK" not in os.environ
    monkeypatch.delenv("SUBMITIT_EXECUTOR")
    _fake_slurm_task_env(monkeypatch, rank=0)
    monkeypatch.delenv("SUBMITIT_EXECUTOR")
    assert export_distributed_env() is None  # not inside a submitit SLURM job


def test_local_command_uses_torchrun_for_several_processes():
    spec = {"method": "m"}
    assert local_command(spec, 1) == [sys.executable, "-m", "harness.launch", "--task", '{"method": "m"}']
    cmd = local_command(spec, 2)
    assert cmd[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert cmd[5:] == ["-m", "harness.launch", "--task", '{"method": "m"}']


def _distributed_supported() -> bool:
    import harness.train.engine
    return getattr(harness.train.engine, "DISTRIBUTED_SUPPORTED", False) is True


@pytest.mark.skipif(not _distributed_supported(), reason="harness.train.engine does not expose DISTRIBUTED_SUPPORTED = True "
                                                         "yet (multi-process training lands with the engine's DDP)")
def test_local_nproc_trains_one_run_over_two_processes(tiny_benchmark, tmp_path, capsys):
    g = _grid(tmp_path, tiny_benchmark, seeds=[0], variants=[])
    assert main(["grid", str(g), "--executor", "local", "--nproc", "2"]) == 0, capsys.readouterr()
    (sub,) = load_manifest(tmp_path / "out" / "grids" / "g" / "manifest.json")["submissions"]
    run_dir = Path(sub["runs"][0]["run_dir"])
    assert _read(run_dir / "config.json")["world_size"] == 2
    assert _read(run_dir / "record.json")["status"] == "finished"
