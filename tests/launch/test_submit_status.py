"""Submission through a fake submitit executor, the manifest, skipping, retry and status (no cluster)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from harness.launch import submit as launch
from harness.cli import main
from harness.launch.status import collect_status, decide_state, format_status, tail_lines
from harness.launch.grid_file import expand, load_grid
from harness.launch.manifest import load_manifest
from harness.launch.task import GridTask

from .conftest import FakeSlurmExecutor, write_grid


def _grid(tmp_path, tiny, **extra):
    doc = dict(name="g", out=str(tmp_path / "out"), methods=["supervised", "mean_teacher"], protocols=["tiny-8"],
               seeds=[0, 1, 2], set={"budget.iterations": 2}, data_root=str(tiny["data_root"]),
               slurm={"partition": "debug", "time": 30})
    doc.update(extra)
    return write_grid(tmp_path / "g.yaml", **doc)


def _launch(path, **kw):
    kw.setdefault("echo", lambda s: None)
    return launch.launch(str(path), executor_factory=FakeSlurmExecutor, **kw)


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def _status(run_dir, state, **kw):
    _write(Path(run_dir) / "status.json", {"state": state, "updated": time.time(), **kw})


def _record(run_dir, miou=12.5, total=2):
    _write(Path(run_dir) / "record.json", {"status": "finished", "total_steps": total, "final": {"miou": miou}})


def test_submission_splits_arrays_and_writes_the_manifest(tiny_benchmark, tmp_path, fake_slurm):
    g = _grid(tmp_path, tiny_benchmark)
    assert _launch(g, slurm_overrides={"max_array_size": 4, "array_parallelism": 3, "account": "acc"},
                   command="harness grid g.yaml") == 0
    ex = FakeSlurmExecutor.instances[-1]
    assert [len(items) for _, _, items in ex.arrays] == [4, 2]
    assert ex.parameters["partition"] == "debug" and ex.parameters["account"] == "acc"
    assert ex.parameters["array_parallelism"] == 3 and ex.parameters["time"] == 30
    task = ex.arrays[0][1]
    assert isinstance(task, GridTask) and task.env["HARNESS_PROTOCOLS"] == str(tiny_benchmark["protocols_dir"])
    assert ex.arrays[0][2][0]["method"] == "supervised" and ex.arrays[0][2][0]["overrides"] == {"budget.iterations": 2}
    assert ex.folder == tmp_path / "out" / "grids" / "g" / "slurm" / "%j"
    doc = load_manifest(tmp_path / "out" / "grids" / "g" / "manifest.json")
    assert doc["grid"] == "g" and doc["grid_file"] == str(g.resolve())
    (sub,) = doc["submissions"]
    assert sub["executor"] == "slurm" and sub["command"] == "harness grid g.yaml" and sub["arrays"] == ["1000", "1001"]
    assert sub["cluster"] == {"max_array_size": 1001, "kill_wait_s": 30} and sub["max_array_size"] == 4
    assert [r["job_id"] for r in sub["runs"]] == ["1000_0", "1000_1", "1000_2", "1000_3", "1001_0", "1001_1"]
    assert sub["runs"][0]["log"].endswith("slurm/1000_0/1000_0_0_log.err")
    assert sub["runs"][5]["label"] == "tiny-8/mean_teacher/default/seed2"


def test_skips_finished_and_queued_runs_and_retries_only_failures(tiny_benchmark, tmp_path, fake_slurm):
    g = _grid(tmp_path, tiny_benchmark)
    _launch(g)
    mpath = tmp_path / "out" / "grids" / "g" / "manifest.json"
    runs = load_manifest(mpath)["submissions"][0]["runs"]
    d = [r["run_dir"] for r in runs]
    _record(d[0])                                             # finished
    _status(d[1], "failed", error="RuntimeError: boom")       # failed (squeue FAILED)
    fake_slurm.update({"1000_1": "FAILED", "1000_2": "RUNNING", "1000_3": "PENDING", "1000_4": "CANCELLED"})
    _status(d[2], "running", step=0, total_steps=2)
    _status(d[5], "stopped", step=1, total_steps=2)            # interrupted, job gone from squeue
    statuses = {s.label: s for s in collect_status(load_manifest(mpath))[0]}
    states = [statuses[r["label"]].state for r in runs]
    assert states == ["finished", "failed", "running", "pending", "failed", "stopped"]
    assert statuses[runs[4]["label"]].note == "job ended CANCELLED without a record"

    # a plain resubmission skips finished and queued runs
    FakeSlurmExecutor.instances.clear()
    _launch(g)
    (ex,) = FakeSlurmExecutor.instances
    assert [i["seed"] for i in ex.arrays[0][2]] == [1, 1, 2] and [i["method"] for i in ex.arrays[0][2]] == [
        "supervised", "mean_teacher", "mean_teacher"]
    sub = load_manifest(mpath)["submissions"][1]
    assert sorted(s["reason"] for s in sub["skipped"]) == ["already pending", "already running", "finished"]

    # --retry-failed: only failed/stopped runs of the latest submissions (by manifest path as well)
    fake_slurm.update({"1001_0": "FAILED", "1001_1": "PENDING", "1001_2": "RUNNING"})
    FakeSlurmExecutor.instances.clear()
    _launch(mpath, retry_failed=True)
    (ex,) = FakeSlurmExecutor.instances
    assert [(i["method"], i["seed"]) for i in ex.arrays[0][2]] == [("supervised", 1)]
    assert len(load_manifest(mpath)["submissions"]) == 3


def test_invalid_runs_abort_unless_skipped(tiny_benchmark, tmp_path, fake_slurm, capsys):
    g = _grid(tmp_path, tiny_benchmark, variants=[{"name": "ok"}, {"name": "bad", "set": {"budget.lr": "fast"},
                                                                    "methods": ["supervised"], "seeds": [0]}])
    from harness.errors import ConfigError
    with pytest.raises(ConfigError, match="1 run.* invalid.*nothing was submitted.*--skip-invalid"):
        _launch(g)
    assert not FakeSlurmExecutor.instances  # no executor was even created
    assert _launch(g, skip_invalid=True) == 0
    assert len(FakeSlurmExecutor.instances[-1].arrays[0][2]) == 6
    doc = load_manifest(tmp_path / "out" / "grids" / "g" / "manifest.json")
    (inv,) = doc["submissions"][0]["invalid"]
    assert inv["label"] == "tiny-8/supervised/bad/seed0" and "budget.lr" in inv["error"]
    st = {s.label: s for s in collect_status(doc)[0]}["tiny-8/supervised/bad/seed0"]
    assert st.state == "failed" and "budget.lr" in st.error and st.note == "not submitted"


def test_dry_run_submits_nothing(tiny_benchmark, tmp_path, fake_slurm):
    out = []
    assert _launch(_grid(tmp_path, tiny_benchmark), dry_run=True, echo=out.append) == 0
    assert not any(ex.arrays for ex in FakeSlurmExecutor.instances)
    assert not (tmp_path / "out" / "grids" / "g" / "manifest.json").exists()
    assert sum("would run" in line for line in out) == 6 and "1 array(s)" in out[-1]


def test_a_run_trained_elsewhere_is_skipped_not_submitted(tiny_benchmark, tmp_path, fake_slurm):
    """A live run.lock (another grid's local run, or `harness run`) keeps the run out of the submission; once the
    lock is released the run is submitted again (it would resume)."""
    from harness.train.runlock import RunLock

    g = _grid(tmp_path, tiny_benchmark)
    busy = expand(load_grid(g))[1].run_dir
    Path(busy).mkdir(parents=True)
    lock = RunLock(busy)
    lock.acquire()
    try:
        out = []
        assert _launch(g, echo=out.append) == 0
        assert "6 runs, 1 skipped (running elsewhere), 5 to run" in out[0]
        last = load_manifest(tmp_path / "out" / "grids" / "g" / "manifest.json")["submissions"][-1]
        assert [e["run_dir"] for e in last["skipped"]] == [busy]
        assert len(last["runs"]) == 5 and busy not in {e["run_dir"] for e in last["runs"]}
    finally:
        lock.release()
    assert _launch(g) == 0
    last = load_manifest(tmp_path / "out" / "grids" / "g" / "manifest.json")["submissions"][-1]
    assert busy in {e["run_dir"] for e in last["runs"]}


def test_manifest_path_without_retry_is_refused(tiny_benchmark, tmp_path, fake_slurm):
    _launch(_grid(tmp_path, tiny_benchmark))
    from harness.errors import ConfigError
    with pytest.raises(ConfigError, match="only be used with --retry-failed"):
        _launch(tmp_path / "out" / "grids" / "g" / "manifest.json")


@pytest.mark.parametrize("kw, expected", [
    (dict(finished=True, status_state="failed", executor="slurm", queue_state="FAILED"), "finished"),
    (dict(status_state=None, executor="slurm", queue_state="PENDING"), "pending"),
    (dict(status_state="stopped", executor="slurm", queue_state="PENDING"), "pending"),      # requeued
    (dict(status_state="running", executor="slurm", queue_state="RUNNING"), "running"),
    (dict(status_state="failed", executor="slurm", queue_state="RUNNING"), "failed"),        # exiting
    (dict(status_state="failed", executor="slurm", queue_state="FAILED"), "failed"),
    (dict(status_state=None, executor="slurm", queue_state="FAILED", result="error"), "failed"),
    (dict(status_state="running", executor="slurm", queue_state="CANCELLED"), "failed"),
    (dict(status_state="running", executor="slurm", queue_state="TIMEOUT"), "failed"),
    (dict(status_state="stopped", executor="slurm", queue_state=None), "stopped"),
    (dict(status_state=None, executor="slurm", queue_state=None), "failed"),                 # purged, no record
    (dict(status_state="running", executor="slurm", queue_state=None, queue_known=False), "unknown"),
    (dict(status_state="running", executor="local", launcher_alive=True), "running"),
    (dict(status_state=None, executor="local", launcher_alive=True), "pending"),
    (dict(status_state="running", executor="local", launcher_alive=False), "stopped"),
    (dict(status_state=None, executor="debug", launcher_alive=False), "failed"),
    (dict(status_state="failed", executor="local", launcher_alive=True), "failed"),
])
def test_decide_state(kw, expected):
    args = dict(finished=False, status_state=None, executor=None, queue_state=None, queue_known=True,
                launcher_alive=None, result=None)
    args.update(kw)
    assert decide_state(**args)[0] == expected


def test_status_output_shows_progress_errors_logs_and_exit_code(tiny_benchmark, tmp_path, fake_slurm, capsys):
    g = _grid(tmp_path, tiny_benchmark, methods=["supervised"], seeds=[0, 1, 2])
    _launch(g)
    runs = load_manifest(tmp_path / "out" / "grids" / "g" / "manifest.json")["submissions"][0]["runs"]
    _record(runs[0]["run_dir"], miou=33.333)
    _status(runs[1]["run_dir"], "running", step=4, total_steps=12, last_miou=21.5)
    _status(runs[2]["run_dir"], "failed", step=0, total_steps=12,
            error="NonFiniteLossError: training produced a non-finite loss", traceback="Traceback...\nX")
    log = Path(runs[2]["log"])
    log.parent.mkdir(parents=True)
    log.write_text("submitit INFO (x) - Starting\nTraceback (most recent call last):\n  File x\n"
                   "harness.errors.NonFiniteLossError: training produced a non-finite loss\n"
                   "submitit INFO (x) - exiting\nsrun: error: vm: task 0: Exited with exit code 1\n")
    fake_slurm.update({"1000_1": "RUNNING", "1000_2": "FAILED"})
    assert main(["status", str(g)]) == 1
    out = capsys.readouterr().out
    assert "3 runs: 1 running, 1 finished, 1 failed" in out
    assert re.search(r"tiny-8/supervised/default/seed0\s+1000_0\s+finished\s+2/2\s+33.33\n", out)
    assert re.search(r"tiny-8/supervised/default/seed1\s+1000_1\s+running\s+4/12\s+21.50\n", out)
    assert "FAILED tiny-8/supervised/default/seed2 (job 1000_2, squeue FAILED)" in out
    assert "    error: NonFiniteLossError: training produced a non-finite loss" in out
    assert f"    log:   {log}" in out
    assert "    | srun: error: vm: task 0: Exited with exit code 1" in out
    assert "submitit INFO" not in out
    assert main(["status", str(tmp_path / "out" / "grids" / "g" / "manifest.json"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [r["state"] for r in doc["runs"]] == ["finished", "running", "failed"]


def test_status_ignores_a_status_file_older_than_the_submission(tiny_benchmark, tmp_path, fake_slurm):
    g = _grid(tmp_path, tiny_benchmark, methods=["supervised"], seeds=[0])
    run_dir = expand(load_grid(g))[0].run_dir
    _write(Path(run_dir) / "status.json", {"state": "failed", "updated": time.time() - 60, "error": "old"})
    _launch(g)
    fake_slurm["1000"] = "RUNNING"
    (st,), _ = collect_status(load_manifest(tmp_path / "out" / "grids" / "g" / "manifest.json"))
    assert st.state == "running"


def test_status_without_squeue_says_unknown(tiny_benchmark, tmp_path, fake_slurm, monkeypatch):
    from harness.launch import slurm
    _launch(_grid(tmp_path, tiny_benchmark, methods=["supervised"], seeds=[0]))

    def broken(ids):
        raise slurm.SlurmCommandError(["squeue"], "timed out")

    monkeypatch.setattr(slurm, "squeue_states", broken)
    (st,), note = collect_status(load_manifest(tmp_path / "out" / "grids" / "g" / "manifest.json"))
    assert st.state == "unknown" and "squeue failed" in note
    assert "1 unknown" in format_status([st])


def test_missing_manifest_is_a_clear_error(tiny_benchmark, tmp_path, capsys):
    g = _grid(tmp_path, tiny_benchmark)
    assert main(["status", str(g)]) == 2
    assert "no grid manifest" in capsys.readouterr().err


def test_tail_lines_skips_submitit_noise(tmp_path):
    p = tmp_path / "log"
    p.write_text("a\nsubmitit WARNING (t) - Bypassing signal SIGTERM\n\nb\r\nc\n")
    assert tail_lines(p, 2) == ["b", "c"] and tail_lines(p, 10) == ["a", "b", "c"]
    assert tail_lines(tmp_path / "none", 3) == [] and tail_lines(None, 3) == []


def test_retry_refuses_set_and_applies_data_location(tiny_benchmark, tmp_path, fake_slurm):
    from harness.errors import ConfigError
    g = _grid(tmp_path, tiny_benchmark, methods=["supervised"], seeds=[0])
    _launch(g)
    fake_slurm["1000"] = "FAILED"
    with pytest.raises(ConfigError, match="--set cannot be combined with --retry-failed"):
        _launch(g, retry_failed=True, set_items=["budget.lr=0.1"])
    FakeSlurmExecutor.instances.clear()
    _launch(g, retry_failed=True, data_root=str(tmp_path / "moved"))
    (item,) = FakeSlurmExecutor.instances[-1].arrays[0][2]
    assert item["data_root"] == str(tmp_path / "moved") and item["overrides"] == {"budget.iterations": 2}
