"""One run of a grid, as it runs inside a SLURM task, a local subprocess or the launcher itself
(:class:`GridTask`), and ``python -m harness.launch --task JSON`` (:func:`_task_main`), the command line of
the local executor's subprocesses.

Fault tolerance (:class:`GridTask`, a ``submitit.helpers.Checkpointable``)
--------------------------------------------------------------------------
The task calls :func:`harness.train.run.execute`, which resumes from the run's ``latest.pt``; a finished
run (``record.json``) is returned as is, so a duplicate or requeued task never retrains. Training runs
in a worker thread while the main thread waits, so signal handlers can act at any time:

* SLURM preemption / time limit (``SIGUSR2``, ``--signal=USR2@signal_delay_s``): submitit calls
  :meth:`GridTask.checkpoint`, which sets the stop flag, waits (``stop_grace_s``) for the engine to
  reach the next step boundary and write ``latest.pt`` (``StopRequested``), and returns a
  ``DelayedSubmission`` of itself; submitit requeues the job and the rerun resumes. Nothing already
  trained is lost.
* ``SIGINT`` (a task run by hand) is handled as ``SIGTERM`` outside SLURM: checkpoint, exit 3.
* ``scontrol requeue`` / plain preemption send ``SIGTERM`` (then ``SIGKILL`` after ``KillWait``;
  submitit ignores SIGTERM and does not call ``checkpoint()``): the task's own SIGTERM handler sets the
  stop flag, the engine checkpoints at the next step boundary, and the task waits to be killed (if no
  kill comes within ``term_wait_s`` it resumes training in place). The rerun resumes from
  ``latest.pt``. The step plus the checkpoint write must fit in ``KillWait`` (recorded in the manifest;
  30 s by default, 5 s on the test cluster), else the rerun resumes from the previous checkpoint.
* A task that fails (bad override, crash, non-finite loss) writes ``status.json`` state ``failed``
  with the error and traceback (the engine does so for training errors; the task adds it for errors
  before training) and raises, so submitit records the traceback in the job's stderr log. Other
  tasks of the array are unaffected.
* ``tasks_per_node = N`` (``--gpus-per-task N`` or ``--nproc N``): each of the N processes exports
  ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``LOCAL_WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT``
  (``submitit.helpers.TorchDistributedEnvironment``) and picks the ``LOCAL_RANK``-th entry of
  ``CUDA_VISIBLE_DEVICES``; the engine initialises the process group from those variables.
* Threads: ``torch.set_num_threads(SLURM_CPUS_PER_TASK)`` in SLURM jobs, ``OMP_NUM_THREADS`` for
  local subprocesses (unless ``HARNESS_NUM_THREADS`` is set). ``HARNESS_*`` variables of the
  submitting shell are carried to the task (clusters that start jobs with ``--export=NONE``).

The task is pickled by submitit (on submission and on checkpoint), so it keeps only its settings
(``_PERSISTENT``); its module must stay importable on the compute nodes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import submitit

from ..errors import HarnessError
from .grid_file import spec_from_dict
from .manifest import RECORD, STATUS, _read_json
from ..train.runlock import RunLockedError

__all__ = ["GridTask", "export_distributed_env", "record_failure", "EXIT_STOPPED"]

#: exit code of ``python -m harness.launch --task`` when the run stopped on SIGTERM (checkpoint kept)
EXIT_STOPPED = 3


def _under_submitit_slurm() -> bool:
    return os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and "SLURM_JOB_ID" in os.environ


def _rank() -> int:
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def export_distributed_env() -> dict[str, str] | None:
    """In a SLURM job with several tasks, export the torchrun-style variables for ``env://`` init
    (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``)
    and give each process the ``LOCAL_RANK``-th of the job's visible GPUs. Returns what was exported,
    or None for a single-task job."""
    if not _under_submitit_slurm() or int(os.environ.get("SLURM_NTASKS", "1") or 1) <= 1:
        return None
    env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if len(visible) > 1 and len(visible) == env.local_world_size:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible[env.local_rank]
    keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
            "CUDA_VISIBLE_DEVICES")
    return {k: os.environ[k] for k in keys if k in os.environ}


def _set_threads() -> None:
    n = os.environ.get("HARNESS_NUM_THREADS") or (os.environ.get("SLURM_CPUS_PER_TASK")
                                                  if _under_submitit_slurm() else None)
    if n and n.isdigit() and int(n) > 0:
        import torch
        os.environ.setdefault("OMP_NUM_THREADS", n)  # data-loader workers and other children
        torch.set_num_threads(int(n))


def _log(msg: str) -> None:
    print(f"harness.launch: {msg}", file=sys.stderr, flush=True)


def record_failure(out_dir: Path, exc: BaseException) -> None:
    """Mark the run failed in status.json unless the engine already did (rank 0 only)."""
    if _rank() != 0 or (Path(out_dir) / RECORD).exists():
        return
    status_path = Path(out_dir) / STATUS
    try:
        old = _read_json(status_path) if status_path.exists() else {}
    except (OSError, ValueError):
        old = {}
    if old.get("state") == "failed":
        return
    from .. import records
    try:
        records.write_status(out_dir, "failed", error=f"{type(exc).__name__}: {exc}",
                             traceback=traceback.format_exc()[-4000:], step=old.get("step"),
                             total_steps=old.get("total_steps"))
    except OSError:
        pass


class GridTask(submitit.helpers.Checkpointable):
    """One grid run: ``execute(spec)`` with resume, preemption and failure handling (see module doc).

    Called with the run's spec as a plain dict (JSON-able, the same for every executor)."""

    def __init__(self, env: dict[str, str] | None = None, *, handle_signals: bool = True,
                 stop_grace_s: float = 60.0, term_wait_s: float = 120.0) -> None:
        self.env = dict(env or {})
        self.handle_signals = handle_signals
        self.stop_grace_s = stop_grace_s
        self.term_wait_s = term_wait_s
        self._reset()

    # runtime state is never pickled (submitit dumps the task on submission and on checkpoint)
    _PERSISTENT = ("env", "handle_signals", "stop_grace_s", "term_wait_s")

    def _reset(self) -> None:
        self._stop = threading.Event()
        self._term_received = False
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._PERSISTENT}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def __repr__(self) -> str:
        return f"GridTask(env={sorted(self.env)})"

    # -- entry points ----------------------------------------------------------------------------
    def __call__(self, spec: dict[str, Any]) -> dict[str, Any]:
        from ..train.engine import StopRequested
        from ..train.run import run_dir

        for key, value in self.env.items():
            os.environ.setdefault(key, value)
        exported = export_distributed_env()
        if exported:
            _log(f"distributed task: {exported}")
        _set_threads()
        rs = spec_from_dict({**spec, "force": False})
        out_dir = run_dir(rs)
        if (out_dir / RECORD).exists():
            _log(f"{out_dir} is already finished (record.json); nothing to do")
            return _read_json(out_dir / RECORD)
        threaded = self.handle_signals and threading.current_thread() is threading.main_thread()
        restore = self._install_sigterm() if threaded else (lambda: None)
        try:
            while True:
                try:
                    return self._execute(rs, threaded)
                except StopRequested as stop:
                    if not (self._term_received and _under_submitit_slurm()):
                        raise
                    self._await_kill(stop.step)
                    self._stop.clear()
                    self._term_received = False
                except RunLockedError:
                    raise  # the run's status belongs to the process that trains it
                except Exception as exc:
                    record_failure(out_dir, exc)
                    raise
        finally:
            restore()

    def checkpoint(self, spec: dict[str, Any]) -> submitit.helpers.DelayedSubmission:
        """submitit's preemption/time-out hook (SIGUSR2): stop at the next step boundary (the engine
        writes latest.pt), then requeue this same task; the rerun resumes from the checkpoint."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            _log(f"preemption/time-out: checkpointing at the next step boundary (waiting up to "
                 f"{self.stop_grace_s:g} s)")
            thread.join(self.stop_grace_s)
            if thread.is_alive():
                _log("the step did not end in time; the rerun resumes from the previous latest.pt")
        return submitit.helpers.DelayedSubmission(GridTask(self.env, handle_signals=self.handle_signals,
                                                           stop_grace_s=self.stop_grace_s,
                                                           term_wait_s=self.term_wait_s), spec)

    # -- internals -------------------------------------------------------------------------------
    def _execute(self, rs, threaded: bool) -> dict[str, Any]:
        from ..train.run import execute

        if not threaded:
            return execute(rs, should_stop=self._stop.is_set)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = execute(rs, should_stop=self._stop.is_set)
            except BaseException as exc:  # handed to the main thread
                box["error"] = exc

        self._thread = threading.Thread(target=target, name="harness-train", daemon=True)
        self._thread.start()
        while self._thread.is_alive():
            self._thread.join(0.25)  # short waits: signal handlers run in this (main) thread
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _install_sigterm(self) -> Callable[[], None]:
        """SIGTERM (and SIGINT, e.g. Ctrl-C on a task run by hand) → checkpoint at the next step boundary."""
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def on_signal(signum, frame):
            self._term_received = True
            self._stop.set()
            _log(f"{signal.Signals(signum).name}: checkpointing at the next step boundary (the rerun resumes from "
                 f"latest.pt)")
            if signum == signal.SIGTERM and callable(previous[signum]):
                previous[signum](signum, frame)  # submitit's handler only logs ("Bypassing signal SIGTERM")

        for sig in previous:
            signal.signal(sig, on_signal)

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return restore

    def _await_kill(self, step: int) -> None:
        _log(f"stopped after step {step} with latest.pt written; waiting for SLURM to end this job "
             f"(requeue / cancel / preemption)")
        deadline = time.monotonic() + self.term_wait_s
        while time.monotonic() < deadline:
            time.sleep(0.5)
        _log(f"not killed within {self.term_wait_s:g} s of SIGTERM; training continues from the checkpoint")


def _task_main(argv: Sequence[str]) -> int:
    """``python -m harness.launch --task JSON``: one run in this process (local executor / torchrun)."""
    import argparse

    from ..train.engine import StopRequested

    p = argparse.ArgumentParser(prog="python -m harness.launch")
    p.add_argument("--task", required=True, help="the run's spec as JSON")
    args = p.parse_args(argv)
    try:
        record = GridTask()(json.loads(args.task))
    except StopRequested as stop:
        _log(f"stopped after step {stop.step}; resubmit to resume from latest.pt")
        return EXIT_STOPPED
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if _rank() == 0:
        print(f"finished: final mIoU {record['final']['miou']:.2f} -> {record['run_dir']}", flush=True)
    return 0
