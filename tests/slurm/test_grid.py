"""The grid launcher against the real local SLURM cluster (scripts/slurm/setup_cluster.sh).

* a grid of 7 tiny runs (supervised and mean_teacher x 3 seeds, plus one variant whose learning rate makes
  the loss non-finite at run time), split into two job arrays: the 6 good runs finish with records, the bad
  one is reported by ``harness status`` (failed, error, log path, log lines), ``--retry-failed`` resubmits
  only it;
* a run requeued mid-training with ``scontrol requeue`` (SIGTERM: the task's handler checkpoints at the next
  step boundary) and one preempted with ``job._interrupt()`` (SIGUSR2: submitit calls ``checkpoint()``)
  resume from their own latest.pt and end with exactly the metrics of an uninterrupted run;
* ``--nproc 2``: one run over two SLURM tasks (skipped until the engine supports multi-process training).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import submitit
import yaml

from harness.launch import slurm
from harness.cli import main
from harness.launch.status import RunStatus, collect_status, format_status
from harness.launch.manifest import load_manifest

pytestmark = pytest.mark.slurm

WAIT_S = 420  # a loaded 2-core machine; the tiny runs take ~10 s each, mostly interpreter start-up


@pytest.fixture
def manifests():
    """Manifests registered here have their still-queued jobs cancelled at teardown."""
    paths: list[Path] = []
    yield paths
    ids = set()
    for p in paths:
        if p.exists():
            for sub in json.loads(p.read_text())["submissions"]:
                ids.update(sub.get("arrays") or [])
    if ids:
        try:
            left = [j for j, s in slurm.squeue_states(sorted(ids)).items() if s not in slurm.FINISHED_STATES]
        except slurm.SlurmCommandError:
            left = []
        if left:
            subprocess.run(["scancel", *left], capture_output=True, timeout=30, check=False)


def write_grid(path: Path, tiny, partition: str, **doc) -> Path:
    base = dict(methods=["supervised"], protocols=["tiny-8"], seeds=[0], data_root=str(tiny["data_root"]),
                executor="slurm", slurm={"partition": partition, "cpus_per_task": 1, "time": 60})
    base.update(doc)
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def wait_all_ended(manifest: Path, timeout_s: float = WAIT_S) -> list[RunStatus]:
    deadline = time.monotonic() + timeout_s
    while True:
        statuses, note = collect_status(load_manifest(manifest))
        if all(s.state in ("finished", "failed", "stopped") for s in statuses):
            return statuses
        if time.monotonic() > deadline:
            pytest.fail(f"runs not ended after {timeout_s} s:\n{format_status(statuses, queue_note=note)}")
        time.sleep(1.0)


def test_grid_of_seven_runs_one_failing_status_and_retry(slurm_cluster, tiny_benchmark, tmp_path, capsys,
                                                         manifests):
    g = write_grid(tmp_path / "smoke.yaml", tiny_benchmark, slurm_cluster.partition, name="smoke",
                   out=str(tmp_path / "out"), methods=["supervised", "mean_teacher"], seeds=[0, 1, 2],
                   set={"budget.iterations": 4},
                   variants=[{"name": "base"},
                             {"name": "broken", "set": {"budget.lr": 1.0e30}, "methods": ["supervised"],
                              "seeds": [0]}])
    mpath = tmp_path / "out" / "grids" / "smoke" / "manifest.json"
    manifests.append(mpath)
    t0 = time.monotonic()
    assert main(["grid", str(g), "--max-array-size", "4", "--array-parallelism", "4"]) == 0
    out = capsys.readouterr().out
    assert "submitted 7 runs as 2 array job(s)" in out
    (sub,) = load_manifest(mpath)["submissions"]
    assert len(sub["arrays"]) == 2 and [r["job_id"].split("_")[0] for r in sub["runs"]] == [sub["arrays"][0]] * 4 + [
        sub["arrays"][1]] * 3
    assert sub["cluster"]["max_array_size"] >= 7 and sub["cluster"]["kill_wait_s"] is not None
    show = subprocess.run(["scontrol", "show", "job", sub["runs"][0]["job_id"]], capture_output=True, text=True)
    if show.returncode == 0:
        assert "ArrayTaskThrottle=4" in show.stdout and f"Partition={slurm_cluster.partition}" in show.stdout

    statuses = {s.label: s for s in wait_all_ended(mpath)}
    print(f"7 runs ended after {time.monotonic() - t0:.0f} s")
    bad = "tiny-8/supervised/broken/seed0"
    assert {k: s.state for k, s in statuses.items() if k != bad} == {
        f"tiny-8/{m}/base/seed{i}": "finished" for m in ("supervised", "mean_teacher") for i in range(3)}
    for label, s in statuses.items():
        if label != bad:
            record = json.loads((Path(s.run_dir) / "record.json").read_text())
            assert record["status"] == "finished" and record["total_steps"] == 4
    assert statuses[bad].state == "failed"

    assert main(["status", str(g)]) == 1
    out = capsys.readouterr().out
    assert "7 runs: 6 finished, 1 failed" in out
    failed_job = statuses[bad].job_id
    log = Path(statuses[bad].log)
    assert log.exists() and log.name == f"{failed_job}_0_log.err"
    assert f"FAILED {bad} (job {failed_job}" in out
    assert "error: NonFiniteLossError: training produced a non-finite loss" in out
    assert f"log:   {log}" in out
    assert re.search(r"\| .*NonFiniteLossError", out)

    assert main(["grid", str(g), "--retry-failed"]) == 0
    assert "submitted 1 runs as 1 array job(s)" in capsys.readouterr().out
    subs = load_manifest(mpath)["submissions"]
    assert len(subs) == 2 and [r["label"] for r in subs[1]["runs"]] == [bad] and subs[1]["retry_failed"]
    statuses = {s.label: s for s in wait_all_ended(mpath)}
    assert statuses[bad].state == "failed" and statuses[bad].job_id == subs[1]["runs"][0]["job_id"] != failed_job
    assert sum(s.state == "finished" for s in statuses.values()) == 6
    print(f"grid + retry took {time.monotonic() - t0:.0f} s")


def _final(run_dir: Path):
    record = json.loads((run_dir / "record.json").read_text())
    return record["final"]["miou"], record["final"]["iou"], record["num_evals"]


def test_requeued_and_preempted_runs_resume_with_identical_metrics(slurm_cluster, tiny_benchmark, tmp_path, manifests):
    settings = {"budget.iterations": 160, "budget.eval_every": 40}
    mp = {}
    for kind in ("reference", "requeue", "preempt"):
        g = write_grid(tmp_path / f"{kind}.yaml", tiny_benchmark, slurm_cluster.partition, name="one",
                       out=str(tmp_path / kind), set=settings)
        assert main(["grid", str(g)]) == 0
        mp[kind] = tmp_path / kind / "grids" / "one" / "manifest.json"
        manifests.append(mp[kind])
    runs = {k: load_manifest(p)["submissions"][0]["runs"][0] for k, p in mp.items()}
    run_dirs = {k: Path(r["run_dir"]) for k, r in runs.items()}

    def progress(kind):
        try:
            st = json.loads((run_dirs[kind] / "status.json").read_text())
        except (OSError, ValueError):
            return 0
        return st.get("step", 0) if st.get("state") == "running" else 0

    interrupted = {}
    deadline = time.monotonic() + WAIT_S
    while len(interrupted) < 2 and time.monotonic() < deadline:
        for kind in ("requeue", "preempt"):
            if kind not in interrupted and progress(kind) >= 40:  # after the first evaluation, mid-run
                job_id = runs[kind]["job_id"]
                if kind == "requeue":
                    slurm.requeue(job_id)  # SIGTERM, SIGKILL after KillWait; checkpoint() is not called
                else:
                    folder = load_manifest(mp[kind])["submissions"][0]["slurm_folder"]
                    submitit.SlurmJob(folder=folder, job_id=job_id)._interrupt()  # SIGTERM + SIGUSR2
                interrupted[kind] = time.monotonic()
        time.sleep(0.2)
    assert len(interrupted) == 2, f"runs never reached step 40: {interrupted}"

    for kind in mp:
        statuses = wait_all_ended(mp[kind])
        assert [s.state for s in statuses] == ["finished"], format_status(statuses)
    reference = _final(run_dirs["reference"])
    for kind in ("requeue", "preempt"):
        assert _final(run_dirs[kind]) == reference, kind
        config = json.loads((run_dirs[kind] / "config.json").read_text())
        assert 40 <= config["resumed_from_step"] < 160, kind  # resumed from its own latest.pt, not from 0
    assert "resumed_from_step" not in json.loads((run_dirs["reference"] / "config.json").read_text())

    folder = load_manifest(mp["requeue"])["submissions"][0]["slurm_folder"]
    job = submitit.SlurmJob(folder=folder, job_id=runs["requeue"]["job_id"])
    err, log_out = job.stderr() or "", job.stdout() or ""
    assert "DUE TO JOB REQUEUE" in err
    assert "SIGTERM: checkpointing at the next step boundary" in err
    assert "Calling checkpoint method" not in log_out + err
    folder = load_manifest(mp["preempt"])["submissions"][0]["slurm_folder"]
    job = submitit.SlurmJob(folder=folder, job_id=runs["preempt"]["job_id"])
    log_out = job.stdout() or ""
    assert "Calling checkpoint method" in log_out and f"Requeued job {job.job_id}" in log_out


def _distributed_supported() -> bool:
    import harness.train.engine
    return getattr(harness.train.engine, "DISTRIBUTED_SUPPORTED", False) is True


@pytest.mark.skipif(not _distributed_supported(), reason="harness.train.engine does not expose DISTRIBUTED_SUPPORTED = True "
                                                         "yet (multi-process training lands with the engine's DDP)")
def test_one_run_over_two_slurm_tasks(slurm_cluster, tiny_benchmark, tmp_path, manifests):
    g = write_grid(tmp_path / "ddp.yaml", tiny_benchmark, slurm_cluster.partition, name="ddp",
                   out=str(tmp_path / "out"), set={"budget.iterations": 4})
    assert main(["grid", str(g), "--nproc", "2"]) == 0
    mpath = tmp_path / "out" / "grids" / "ddp" / "manifest.json"
    manifests.append(mpath)
    sub = load_manifest(mpath)["submissions"][0]
    assert sub["sbatch"]["ntasks_per_node"] == 2
    (st,) = wait_all_ended(mpath)
    assert st.state == "finished", format_status([st])
    assert json.loads((Path(st.run_dir) / "config.json").read_text())["world_size"] == 2
    job_id = sub["runs"][0]["job_id"]
    logs = [submitit.core.utils.JobPaths(sub["slurm_folder"], job_id=job_id, task_id=t).stderr for t in (0, 1)]
    assert logs[0] == Path(sub["runs"][0]["log"])
    for rank, log in enumerate(logs):  # one log per SLURM task
        assert f"'RANK': '{rank}', 'WORLD_SIZE': '2'" in log.read_text()
