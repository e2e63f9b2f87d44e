"""End-to-end checks of submitit on the real local SLURM cluster (scripts/slurm/setup_cluster.sh).

What these tests pin down (details in scripts/slurm/README.md):

* map_array of 6 tasks with a throttle runs and returns every result;
* a failing array task leaves the others alone; its traceback is in ``job.stderr()``;
* without accounting ``sacct`` fails, submitit's ``job.state`` is always ``"UNKNOWN"`` and
  ``job.done()`` only sees the result pickle: a cancelled task is never "done" for submitit, so
  the launcher must use ``harness.launch.slurm.squeue_states``;
* ``scontrol requeue``: SIGTERM (ignored by submitit) then SIGKILL after KillWait, *no* checkpoint
  call, the job restarts from the originally submitted pickle; a Checkpointable that resumes from
  its own progress file ends with the uninterrupted result;
* ``job._interrupt()`` (SIGTERM + SIGUSR2, i.e. preemption): submitit calls ``checkpoint()``,
  requeues the job itself and exits; same final result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit

from harness.launch import slurm

pytestmark = pytest.mark.slurm

# Jobs unpickle these functions in a fresh interpreter whose cwd / sys.path may not contain this
# test package: ship them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

JOB_TIMEOUT_S = 90  # generous upper bound for any single test's jobs
N_STEPS = 12
STEP_S = 1.0


# --------------------------------------------------------------------------- job functions
def square(x: int) -> int:
    time.sleep(0.5)
    return x * x


def fail_on_three(x: int) -> int:
    time.sleep(0.5)
    if x == 3:
        raise ValueError(f"boom on task {x}")
    return x + 100


def sleeper(seconds: float) -> str:
    time.sleep(seconds)
    return f"slept {seconds}"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ProgressCounter(submitit.helpers.Checkpointable):
    """Accumulates sum((i+1)**2) over ``n_steps`` steps, persisting progress after every step.

    Restarts (requeue) resume from ``progress.json``; every start is appended to ``starts.log``;
    every call of ``checkpoint()`` (submitit's preemption/timeout hook) to ``checkpoints.log``.
    """

    def __call__(self, workdir: str, n_steps: int, step_s: float) -> int:
        wd = Path(workdir)
        progress = wd / "progress.json"
        state = json.loads(progress.read_text()) if progress.exists() else {"step": 0, "acc": 0}
        with open(wd / "starts.log", "a") as f:
            start = {"step": state["step"], "restart_count": int(os.environ.get("SLURM_RESTART_COUNT", "0"))}
            f.write(json.dumps(start) + "\n")
        for i in range(state["step"], n_steps):
            time.sleep(step_s)
            state = {"step": i + 1, "acc": state["acc"] + (i + 1) ** 2}
            _atomic_write(progress, json.dumps(state))
        return state["acc"]

    def checkpoint(self, workdir: str, n_steps: int, step_s: float) -> submitit.helpers.DelayedSubmission:
        with open(Path(workdir) / "checkpoints.log", "a") as f:
            f.write(f"{time.time()}\n")
        return super().checkpoint(workdir, n_steps, step_s)


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def submitted():
    """Jobs registered here are scancel'ed at teardown if still queued (failed test, timeout)."""
    jobs: list[submitit.Job] = []
    yield jobs
    ids = [j.job_id for j in jobs]
    if ids:
        left = {k: v for k, v in _states(ids).items() if v not in slurm.FINISHED_STATES}
        if left:
            subprocess.run(["scancel", *sorted(left)], capture_output=True, timeout=30, check=False)


def _states(ids) -> dict[str, str]:
    try:
        return slurm.squeue_states(ids)
    except slurm.SlurmCommandError:
        return {}


def make_executor(folder: Path, partition: str, **params) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
    # timeout_min=60: submitit labels a SIGUSR2 "timed-out" (not "preempted") once the job ran for
    # min(0.8*T, T - 10 min), which is <= 0 for T <= 10 min.
    defaults = dict(slurm_partition=partition, cpus_per_task=1, mem_gb=0.25, timeout_min=60)
    defaults.update(params)
    executor.update_parameters(**defaults)
    return executor


def wait_finished(jobs, timeout_s: float = JOB_TIMEOUT_S) -> None:
    """Wait until each job wrote its result pickle; fail fast when squeue says a job ended without one."""
    deadline = time.monotonic() + timeout_s
    ended_without_pickle: dict[str, float] = {}
    while True:
        pending = [j for j in jobs if not j.paths.result_pickle.exists()]
        if not pending:
            return
        states = _states(j.job_id for j in pending)
        now = time.monotonic()
        for j in pending:
            if states.get(j.job_id) in slurm.FINISHED_STATES:
                first = ended_without_pickle.setdefault(j.job_id, now)
                if now - first > 5:
                    pytest.fail(f"job {j.job_id} is {states[j.job_id]} without a result; stderr:\n{j.stderr()}")
        if now > deadline:
            logs = "\n".join(f"--- {j.job_id}\n{(j.stderr() or '')[-2000:]}" for j in pending)
            pytest.fail(f"jobs not finished after {timeout_s} s; squeue: {states}\n{logs}")
        time.sleep(0.5)


def wait_for(predicate, what: str, timeout_s: float = JOB_TIMEOUT_S, interval: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def read_progress(workdir: Path) -> int:
    try:
        return json.loads((workdir / "progress.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def read_starts(workdir: Path) -> list[dict]:
    path = workdir / "starts.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --------------------------------------------------------------------------- tests
def test_helpers_on_live_cluster(slurm_cluster):
    assert slurm.cluster_available()
    size = slurm.max_array_size()
    assert size >= 6
    if slurm_cluster.set_up_here:
        assert size == 1001
        assert slurm.sacct_available() is False  # accounting_storage/none
    assert slurm.squeue_states(["987654321"]) == {}
    with pytest.raises(slurm.SlurmCommandError, match=r"scontrol requeue 987654321.*Invalid job id"):
        slurm.requeue("987654321")


def test_map_array_six_tasks(slurm_cluster, tmp_path, submitted):
    executor = make_executor(tmp_path, slurm_cluster.partition, slurm_array_parallelism=6)
    jobs = executor.map_array(square, list(range(6)))
    submitted.extend(jobs)
    assert len(jobs) == 6
    array_ids = {j.job_id.split("_")[0] for j in jobs}
    assert len(array_ids) == 1 and all("_" in j.job_id for j in jobs)
    wait_finished(jobs)
    assert [j.result() for j in jobs] == [x * x for x in range(6)]
    # the throttle reached SLURM (finished tasks stay visible for MinJobAge)
    show = subprocess.run(["scontrol", "show", "job", jobs[0].job_id], capture_output=True, text=True, timeout=10)
    if show.returncode == 0:
        assert "ArrayTaskThrottle=6" in show.stdout
    # The result pickle is written before the task exits: SLURM may still say RUNNING/COMPLETING.
    wait_for(
        lambda: {_states(array_ids).get(j.job_id) for j in jobs} <= {"COMPLETED", None},
        "all six tasks COMPLETED in squeue",
        timeout_s=30,
    )


def test_failing_task_does_not_stop_the_others(slurm_cluster, tmp_path, submitted):
    executor = make_executor(tmp_path, slurm_cluster.partition, slurm_array_parallelism=4)
    jobs = executor.map_array(fail_on_three, list(range(4)))
    submitted.extend(jobs)
    wait_finished(jobs)
    assert [j.result() for j in jobs if j is not jobs[3]] == [100, 101, 102]
    bad = jobs[3]
    with pytest.raises(submitit.core.utils.FailedJobError, match="boom on task 3"):
        bad.result()
    assert isinstance(bad.exception(), submitit.core.utils.FailedJobError)
    assert bad.paths.stderr.exists()
    stderr = bad.stderr()
    assert "ValueError: boom on task 3" in stderr and "Traceback" in stderr
    wait_for(lambda: _states([bad.job_id]).get(bad.job_id, "FAILED") == "FAILED", "FAILED in squeue", 30)
    for good in jobs[:3]:
        assert "boom" not in (good.stderr() or "")


def test_state_without_accounting_needs_squeue(slurm_cluster, tmp_path, submitted):
    if slurm.sacct_available():
        pytest.skip("this cluster has accounting; submitit's sacct-based state works there")
    executor = make_executor(tmp_path, slurm_cluster.partition)
    short = executor.submit(sleeper, 2)
    doomed = executor.submit(sleeper, 120)
    submitted.extend([short, doomed])
    ids = [short.job_id, doomed.job_id]
    wait_for(lambda: set(_states(ids).values()) == {"RUNNING"}, "both jobs RUNNING")
    assert short.state == "UNKNOWN"  # sacct fails -> submitit cannot tell
    doomed.cancel()
    wait_finished([short])
    assert short.result() == "slept 2"
    assert short.state == "UNKNOWN" and short.done()  # done() only because the result pickle exists
    wait_for(lambda: _states([doomed.job_id]).get(doomed.job_id) == "CANCELLED", "CANCELLED in squeue")
    # the result pickle can exist while squeue still says RUNNING (the task is exiting)
    wait_for(lambda: _states([short.job_id]) == {short.job_id: "COMPLETED"}, "COMPLETED in squeue", 30)
    # The caveat: a job killed without writing its result pickle never becomes "done" for
    # submitit when sacct is unavailable -> doomed.result() would block forever.
    assert not doomed.paths.result_pickle.exists()
    assert doomed.done(force_check=True) is False
    assert doomed.state == "UNKNOWN"


def _run_interrupted(slurm_cluster, tmp_path, submitted, interrupt) -> tuple[submitit.Job, Path, int]:
    workdir = tmp_path / "work"
    workdir.mkdir()
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    expected = ProgressCounter()(str(reference_dir), N_STEPS, 0.0)  # uninterrupted run, in-process
    assert expected == sum((i + 1) ** 2 for i in range(N_STEPS))

    executor = make_executor(tmp_path / "logs", slurm_cluster.partition)
    job = executor.submit(ProgressCounter(), str(workdir), N_STEPS, STEP_S)
    submitted.append(job)
    wait_for(lambda: read_progress(workdir) >= 3, "3 steps of progress")
    interrupt(job)
    wait_for(lambda: len(read_starts(workdir)) >= 2, "the requeued job to start again")
    wait_finished([job])
    assert job.result() == expected
    starts = read_starts(workdir)
    assert len(starts) == 2, starts
    assert starts[0] == {"step": 0, "restart_count": 0}
    assert 3 <= starts[1]["step"] < N_STEPS  # resumed mid-run from its own progress file
    assert starts[1]["restart_count"] == 1  # same job id, SLURM_RESTART_COUNT bumped
    return job, workdir, expected


def test_scontrol_requeue_restarts_and_resumes_from_progress_file(slurm_cluster, tmp_path, submitted):
    job, workdir, _ = _run_interrupted(slurm_cluster, tmp_path, submitted, lambda j: slurm.requeue(j.job_id))
    # scontrol requeue sends SIGTERM, which submitit ignores ("Bypassing signal SIGTERM") until
    # SIGKILL after KillWait: checkpoint() is NOT called; the original submitted pickle reruns.
    assert not (workdir / "checkpoints.log").exists()
    out, err = job.stdout() or "", job.stderr() or ""
    assert "Bypassing signal SIGTERM" in out + err
    assert "DUE TO JOB REQUEUE" in err
    assert "Calling checkpoint method" not in out + err


def test_preemption_signal_checkpoints_and_requeues(slurm_cluster, tmp_path, submitted):
    job, workdir, _ = _run_interrupted(slurm_cluster, tmp_path, submitted, lambda j: j._interrupt())
    # _interrupt() = scancel --signal SIGTERM (ignored) then --signal USR2: submitit's handler calls
    # checkpoint(), dumps the returned DelayedSubmission, runs `scontrol requeue` itself and exits.
    assert len((workdir / "checkpoints.log").read_text().splitlines()) == 1
    out = job.stdout() or ""
    assert "Caught signal SIGUSR2" in out and "this job is preempted" in out
    assert "Calling checkpoint method" in out
    assert f"Requeued job {job.job_id}" in out


# --------------------------------------------------------------------------- parsing (no cluster)
def test_parse_squeue_plain_array_and_ranges():
    out = "12 RUNNING\n13_0 COMPLETED\n13_[2-4,7%2] PENDING\n14_[1] PENDING\n\ngarbage\n"
    assert slurm.parse_squeue(out) == {
        "12": "RUNNING",
        "13_0": "COMPLETED",
        "13_2": "PENDING",
        "13_3": "PENDING",
        "13_4": "PENDING",
        "13_7": "PENDING",
        "14_1": "PENDING",
    }


def test_helpers_without_slurm_commands(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert slurm.cluster_available() is False
    assert slurm.sacct_available() is False
    assert slurm.max_array_size() == slurm.DEFAULT_MAX_ARRAY_SIZE
    assert slurm.squeue_states([]) == {}
    with pytest.raises(slurm.SlurmCommandError, match="squeue.*not installed"):
        slurm.squeue_states(["1"])
    with pytest.raises(slurm.SlurmCommandError, match="scontrol requeue 5.*not installed"):
        slurm.requeue(5)
