"""The three ways ``harness grid`` runs the runs it planned (``--executor``):

* ``slurm`` (:func:`submit_slurm`): submitit ``SlurmExecutor.map_array`` of :class:`harness.launch.task.GridTask`,
  split into several arrays when there are more runs than the cluster's ``MaxArraySize``
  (``scontrol show config``, :func:`cluster_facts`; or ``--max-array-size``); the throttle ``%N`` is
  ``--array-parallelism``. Logs go to ``<out>/grids/<grid>/slurm/<jobid>/``. :func:`slurm_parameters`
  turns :class:`harness.launch.grid_file.SlurmOptions` into the sbatch parameters.
* ``local`` (:func:`run_local`): one subprocess per run (``python -m harness.launch --task JSON``, or
  ``python -m torch.distributed.run --standalone --nproc_per_node N -m harness.launch ...`` with
  ``--nproc N``; :func:`local_command`), at most ``--max-parallel`` at a time (default: one per GPU, 1 on
  CPU), each with ``OMP_NUM_THREADS = cores // (parallel × nproc)`` and its own ``CUDA_VISIBLE_DEVICES``
  slot (:func:`_local_plan`); the command blocks until all runs ended. Logs:
  ``<out>/grids/<grid>/local/<submission>/``.
* ``debug`` (:func:`run_debug`): in this process, one run after the other (no subprocess, no signals).

Each submitted run becomes a manifest entry (:func:`_run_entry`: label, run directory, spec, job id, log
paths); :func:`harness.launch.launch` writes them to the manifest (:mod:`harness.launch.manifest`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import submitit

from .grid_file import LocalOptions, PlannedRun, SlurmOptions, parse_time_minutes, split_arrays
from .task import EXIT_STOPPED, GridTask

__all__ = ["slurm_parameters", "cluster_facts", "submit_slurm", "local_command", "run_local", "run_debug"]


# ============================================================================ slurm submission
def slurm_parameters(opts: SlurmOptions, job_name: str) -> dict[str, Any]:
    """``submitit.SlurmExecutor.update_parameters`` arguments for ``opts``."""
    nproc = opts.nproc or max(1, opts.gpus_per_task)
    params: dict[str, Any] = {
        "job_name": opts.job_name or job_name,
        "time": parse_time_minutes(opts.time),
        "nodes": 1,
        "ntasks_per_node": nproc,
        "cpus_per_task": opts.cpus_per_task,
        "array_parallelism": opts.array_parallelism,
        "signal_delay_s": opts.signal_delay_s,
    }
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(opts, key):
            params[key] = getattr(opts, key)
    if opts.gpus_per_task:
        params["gpus_per_node"] = opts.gpus_per_task
    if opts.mem_gb:
        gb = opts.mem_gb
        params["mem"] = f"{int(gb)}GB" if gb == int(gb) else f"{math.ceil(gb * 1024)}MB"
    if opts.setup:
        params["setup"] = list(opts.setup)
    if opts.sbatch:
        params["additional_parameters"] = dict(opts.sbatch)
    return params


def cluster_facts() -> dict[str, Any]:
    """``MaxArraySize`` and ``KillWait`` from ``scontrol show config`` (defaults when unreadable)."""
    from . import slurm
    facts: dict[str, Any] = {"max_array_size": slurm.DEFAULT_MAX_ARRAY_SIZE, "kill_wait_s": None}
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=15).stdout
    except (OSError, subprocess.SubprocessError):
        return facts
    m = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    if m:
        facts["max_array_size"] = int(m.group(1))
    m = re.search(r"^\s*KillWait\s*=\s*(\d+)", out, re.MULTILINE)
    if m:
        facts["kill_wait_s"] = int(m.group(1))
    return facts


def harness_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("HARNESS_")}


def submit_slurm(runs: Sequence[PlannedRun], opts: SlurmOptions, folder: Path, job_name: str, max_array: int,
                 executor_factory: Callable[..., Any] | None = None) -> tuple[list[dict], list[str], str | None]:
    """Submit ``runs`` as arrays of ≤ ``max_array`` tasks. Returns (run entries, array ids, error):
    when an sbatch fails part-way, the entries of the arrays already submitted are still returned."""
    factory = executor_factory or submitit.SlurmExecutor
    executor = factory(folder=folder / "%j", max_num_timeout=opts.max_num_timeout)
    executor.update_parameters(**slurm_parameters(opts, job_name))
    task = GridTask(harness_env())
    entries: list[dict] = []
    arrays: list[str] = []
    for chunk in split_arrays(runs, max_array):
        try:
            jobs = executor.map_array(task, [r.spec_dict() for r in chunk])
        except Exception as exc:  # noqa: BLE001 - reported, the manifest keeps what was submitted
            return entries, arrays, f"{type(exc).__name__}: {exc}"
        arrays.append(str(jobs[0].job_id).split("_")[0])
        for run, job in zip(chunk, jobs):
            entries.append(_run_entry(run, job_id=str(job.job_id), log=str(job.paths.stderr),
                                      stdout=str(job.paths.stdout)))
    return entries, arrays, None


def _run_entry(run: PlannedRun, **extra: Any) -> dict[str, Any]:
    s = run.spec
    return {"label": run.label, "run_dir": run.run_dir, "method": s.method, "protocol": s.protocol, "seed": s.seed,
            "variant": run.variant, "overrides": s.overrides, "spec": run.spec_dict(), **extra}


# ============================================================================ local / debug executors
def _local_plan(opts: LocalOptions) -> tuple[int, list[list[str] | None], int]:
    """(parallel runs, CUDA_VISIBLE_DEVICES per slot or None, threads per process)."""
    import torch

    ngpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()] or \
        [str(i) for i in range(ngpu)]
    visible = visible[:ngpu] if ngpu else []
    if visible:
        parallel = opts.max_parallel or max(1, len(visible) // opts.nproc)
        slots = []
        for s in range(parallel):
            ids = visible[s * opts.nproc:(s + 1) * opts.nproc]
            slots.append(ids if len(ids) == opts.nproc else None)
    else:
        parallel = opts.max_parallel or 1
        slots = [None] * parallel
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    threads = opts.threads or max(1, cores // (parallel * opts.nproc))
    return parallel, slots, threads


def local_command(spec: dict[str, Any], nproc: int) -> list[str]:
    task = ["-m", "harness.launch", "--task", json.dumps(spec, sort_keys=True)]
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *task]
    return [sys.executable, *task]


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn``: the child gets SIGTERM when the launcher dies, however it dies (SIGKILL included), so
    that no trainer outlives the launcher that started it (it checkpoints and exits; a retry resumes it).
    None where ``prctl`` does not exist (not Linux): the launcher's signal handlers still end its children.
    The function is looked up here, in the parent, so that the forked child only calls it."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
    return preexec


class LauncherStopped(KeyboardInterrupt):
    """The launcher got SIGTERM or SIGHUP (e.g. its terminal closed); handled like Ctrl-C."""


def _raise_stopped(signum, frame):
    raise LauncherStopped(signal.Signals(signum).name)


def _echo_quietly(echo: Callable[[str], None], text: str) -> None:
    try:
        echo(text)
    except OSError:  # the terminal is gone (SIGHUP)
        pass


def run_local(entries: list[dict], opts: LocalOptions, echo: Callable[[str], None]) -> dict[str, int]:
    """Run the entries' specs as subprocesses, ``parallel`` at a time; return {run_dir: exit code}.

    On Ctrl-C, SIGTERM or SIGHUP the running runs get SIGTERM (they checkpoint at the next step and stop) and the
    launcher waits for them (60 s at most, then SIGKILL); if the launcher is killed outright, its children get
    SIGTERM from the kernel (``PR_SET_PDEATHSIG``)."""
    parallel, slots, threads = _local_plan(opts)
    echo(f"local executor: {len(entries)} runs, {parallel} at a time, {opts.nproc} process(es) per run, "
         f"{threads} thread(s) per process")
    queue = list(entries)
    active: dict[int, tuple[subprocess.Popen, dict, Any, float]] = {}
    codes: dict[str, int] = {}
    done = 0
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        while queue or active:
            for slot in range(parallel):
                if slot in active or not queue:
                    continue
                entry = queue.pop(0)
                env = dict(os.environ, OMP_NUM_THREADS=str(threads), HARNESS_NUM_THREADS=str(threads),
                           PYTHONUNBUFFERED="1")
                if slots[slot] is not None:
                    env["CUDA_VISIBLE_DEVICES"] = ",".join(slots[slot])
                Path(entry["log"]).parent.mkdir(parents=True, exist_ok=True)
                logf = open(entry["log"], "ab")
                proc = subprocess.Popen(local_command(entry["spec"], opts.nproc), stdout=logf,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                        preexec_fn=_die_with_parent(os.getpid()))
                active[slot] = (proc, entry, logf, time.monotonic())
            for slot, (proc, entry, logf, t0) in list(active.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                logf.close()
                del active[slot]
                done += 1
                codes[entry["run_dir"]] = rc
                what = {0: "finished", EXIT_STOPPED: "stopped"}.get(rc, f"FAILED (exit {rc})")
                line = f"[{done}/{len(entries)}] {what} {entry['label']} in {time.monotonic() - t0:.1f} s"
                if rc not in (0,):
                    line += f"; log: {entry['log']}"
                echo(line)
            if active:
                time.sleep(0.2)
    except KeyboardInterrupt as exc:
        for sig in previous:  # a second signal must not interrupt the cleanup
            signal.signal(sig, signal.SIG_IGN)
        what = f"{exc.args[0]} received" if isinstance(exc, LauncherStopped) else "interrupted"
        _echo_quietly(echo, f"{what}: asking the running runs to checkpoint and stop (SIGTERM)")
        _stop_children(active)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return codes


def _stop_children(active: dict[int, tuple[subprocess.Popen, dict, Any, float]], grace_s: float = 60.0) -> None:
    for proc, *_ in active.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc, _, logf, _ in active.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        logf.close()


def run_debug(entries: list[dict], echo: Callable[[str], None]) -> dict[str, int]:
    """In this process, one after the other; a failing run is reported and the next one starts."""
    from ..train.engine import StopRequested

    codes: dict[str, int] = {}
    for i, entry in enumerate(entries, 1):
        t0 = time.monotonic()
        try:
            rec = GridTask(handle_signals=False)(entry["spec"])
        except StopRequested as stop:
            codes[entry["run_dir"]] = EXIT_STOPPED
            echo(f"[{i}/{len(entries)}] stopped {entry['label']} after step {stop.step}")
            if stop.reason:  # SIGTERM / Ctrl-C: the whole grid stops, not only this run
                raise KeyboardInterrupt from None
            continue
        except Exception as exc:  # noqa: BLE001 - one failing run must not stop the others
            codes[entry["run_dir"]] = 1
            echo(f"[{i}/{len(entries)}] FAILED {entry['label']}: {type(exc).__name__}: {exc}")
            continue
        codes[entry["run_dir"]] = 0
        echo(f"[{i}/{len(entries)}] finished {entry['label']} in {time.monotonic() - t0:.1f} s "
             f"(final mIoU {rec['final']['miou']:.2f})")
    return codes
