"""Thin helpers around the SLURM command-line tools, for the launcher.

Every helper shells out with a timeout. Query helpers that only answer "is it there?"
(:func:`cluster_available`, :func:`sacct_available`, :func:`max_array_size`) never raise; the others
raise :class:`SlurmCommandError`, whose message names the command, its exit status and its stderr.

Why :func:`squeue_states` exists: the local test cluster (``scripts/slurm/setup_cluster.sh``), like
many small clusters, runs without accounting (``AccountingStorageType=accounting_storage/none``),
so ``sacct`` exits 1 with "Slurm accounting storage is disabled". submitit's job state comes from
``sacct`` only: there ``job.state`` is always ``"UNKNOWN"`` and ``job.done()`` becomes true only
once the result pickle exists, so a task killed without writing one (cancelled, OOM, node failure)
would look pending forever. ``squeue -t all`` still reports finished jobs for ``MinJobAge``
seconds (300 on the test cluster); a job that squeue no longer knows has left the controller.
See ``scripts/slurm/README.md``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence

from harness.errors import HarnessError

__all__ = [
    "DEFAULT_MAX_ARRAY_SIZE",
    "FINISHED_STATES",
    "SlurmCommandError",
    "cluster_available",
    "max_array_size",
    "requeue",
    "sacct_available",
    "squeue_states",
]

DEFAULT_MAX_ARRAY_SIZE = 1001
DEFAULT_TIMEOUT_S = 30.0

#: States (``squeue %T``, long form) after which a job will not run again by itself.
FINISHED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)


class SlurmCommandError(HarnessError):
    """A SLURM command failed, timed out or is not installed."""

    def __init__(self, cmd: Sequence[str], message: str, returncode: int | None = None, stderr: str = ""):
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"`{' '.join(self.cmd)}` {message}")


def _run(cmd: Sequence[str], timeout: float = DEFAULT_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; raise SlurmCommandError when it is missing, times out or exits non-zero."""
    cmd = [str(c) for c in cmd]
    if shutil.which(cmd[0]) is None:
        raise SlurmCommandError(cmd, f"failed: {cmd[0]!r} is not installed (not on PATH)")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        message = f"timed out after {timeout:g} s; stderr: {stderr.strip()!r}"
        raise SlurmCommandError(cmd, message, None, stderr) from e
    except OSError as e:
        raise SlurmCommandError(cmd, f"could not be started: {e}") from e
    if proc.returncode != 0:
        stderr = proc.stderr.strip()
        raise SlurmCommandError(
            cmd, f"exited with status {proc.returncode}; stderr: {stderr!r}", proc.returncode, stderr
        )
    return proc


def cluster_available(timeout: float = 10.0) -> bool:
    """True when ``sinfo`` reaches a controller that reports at least one partition."""
    try:
        out = _run(["sinfo", "-h", "-o", "%P"], timeout=timeout).stdout
    except SlurmCommandError:
        return False
    return bool(out.strip())


def max_array_size(timeout: float = 10.0) -> int:
    """``MaxArraySize`` of the cluster (array indices must be < this); 1001 when it cannot be read."""
    try:
        out = _run(["scontrol", "show", "config"], timeout=timeout).stdout
    except SlurmCommandError:
        return DEFAULT_MAX_ARRAY_SIZE
    match = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)\s*$", out, flags=re.MULTILINE)
    return int(match.group(1)) if match else DEFAULT_MAX_ARRAY_SIZE


def sacct_available(timeout: float = 10.0) -> bool:
    """True when ``sacct`` works (accounting enabled). Never raises.

    With ``accounting_storage/none`` sacct exits 1 with "Slurm accounting storage is disabled".
    """
    try:
        _run(["sacct", "-n", "-X", "-o", "JobID", "-S", "now"], timeout=timeout)
    except SlurmCommandError:
        return False
    return True


def _expand_array_ids(job_id: str) -> list[str]:
    """``"12_[0-2,5%4]"`` -> ``["12_0", "12_1", "12_2", "12_5"]``; other ids unchanged."""
    match = re.fullmatch(r"(\d+)_\[([^\]]*)\]", job_id)
    if not match:
        return [job_id]
    base, spec = match.groups()
    spec = spec.split("%", 1)[0]  # throttle suffix
    ids: list[str] = []
    for part in filter(None, spec.split(",")):
        if "-" in part:
            lo, hi = part.split("-", 1)
            step = 1
            if ":" in hi:
                hi, step_s = hi.split(":", 1)
                step = int(step_s)
            ids.extend(f"{base}_{i}" for i in range(int(lo), int(hi) + 1, step))
        else:
            ids.append(f"{base}_{part}")
    return ids


def parse_squeue(output: str) -> dict[str, str]:
    """Parse ``squeue -h -o '%i %T'`` lines into ``{job_id: STATE}``.

    Job ids are ``"123"`` for plain jobs and ``"123_4"`` for array tasks; pending array ranges
    (``"123_[5-9]"``, shown without ``-r``) are expanded to one entry per task.
    """
    states: dict[str, str] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        for jid in _expand_array_ids(parts[0]):
            states[jid] = parts[1].upper()
    return states


def squeue_states(job_ids: Iterable[str | int], timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, str]:
    """Current state of jobs / array tasks as squeue sees it: ``{"123": "RUNNING", "124_3": "FAILED"}``.

    ``job_ids`` may mix plain ids (``123``), array job ids (``124``: all its tasks are returned) and
    array task ids (``"124_3"``). Finished jobs are included (``-t all``) until the controller purges
    them (``MinJobAge``); ids squeue does not know are absent from the result. Raises
    SlurmCommandError when squeue itself fails (e.g. controller down).
    """
    ids = [str(j).strip() for j in job_ids]
    ids = [j for j in ids if j]
    if not ids:
        return {}
    cmd = ["squeue", "-h", "-r", "-t", "all", "-o", "%i %T", "-j", ",".join(ids)]
    try:
        out = _run(cmd, timeout=timeout).stdout
    except SlurmCommandError as e:
        # squeue exits 1 when *none* of the requested ids is known (any known id -> exit 0).
        if e.returncode is not None and "Invalid job id" in e.stderr:
            return {}
        raise
    return parse_squeue(out)


def requeue(job_id: str | int, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """``scontrol requeue <job_id>`` (a job, an array job or one array task like ``"123_4"``).

    The running task gets SIGCONT+SIGTERM, then SIGKILL after ``KillWait``; it goes back to PENDING
    with ``Reason=BeginTime`` for the credential lifetime (``AuthInfo=cred_expire``, default 120 s,
    10 s on the test cluster) and then restarts its batch script from the beginning.
    """
    _run(["scontrol", "requeue", str(job_id)], timeout=timeout)
