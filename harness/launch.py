"""Grid launcher: expand a grid file into runs, submit them (SLURM job arrays, local processes or
in-process), keep a manifest of what was submitted, report the state of every run, resubmit failures.

Overview
--------
A *grid file* (``benchmarks/grids/*.yaml``, schema :class:`GridFile`; unknown keys are errors naming
the file) lists methods, protocols, seeds, common ``--set`` overrides, per-method overrides and named
*variants* (each a dict of overrides, optionally restricted to some methods / protocols / seeds), plus
default executor options. :func:`expand` turns it into :class:`PlannedRun` objects, one
:class:`harness.runner.RunSpec` each, in the order protocol → method → variant → seed. Every run is
identified by its run directory (``<out>/<protocol>/<method>/<settings hash>/seed<k>``).

``harness grid GRID.yaml`` (:func:`launch`):

1. validates every run up front (:func:`harness.runner.resolve`: unknown method/protocol/key, bad
   value); invalid runs abort the submission (nothing is submitted) unless ``--skip-invalid``, which
   records them in the manifest as failed and submits the others;
2. skips runs whose ``record.json`` exists (finished) and runs that an earlier submission of the same
   grid still has queued or running (no two jobs ever train into one run directory);
3. submits the rest with the chosen executor:

   * ``slurm``: submitit ``SlurmExecutor.map_array`` of :class:`GridTask`, split into several arrays
     when there are more runs than the cluster's ``MaxArraySize`` (``scontrol show config``; or
     ``--max-array-size``); the throttle ``%N`` is ``--array-parallelism``. Logs go to
     ``<out>/grids/<grid>/slurm/<jobid>/``.
   * ``local``: one subprocess per run (``python -m harness.launch --task JSON``, or
     ``python -m torch.distributed.run --standalone --nproc_per_node N -m harness.launch ...`` with
     ``--nproc N``), at most ``--max-parallel`` at a time (default: one per GPU, 1 on CPU), each with
     ``OMP_NUM_THREADS = cores // (parallel × nproc)`` and its own ``CUDA_VISIBLE_DEVICES`` slot;
     the command blocks until all runs ended. Logs: ``<out>/grids/<grid>/local/<submission>/``.
   * ``debug``: in this process, one run after the other (no subprocess, no signals).

4. appends a submission entry to the manifest ``<out>/grids/<grid>/manifest.json`` (atomic writes
   under a lock file): time, command, executor options, cluster facts (MaxArraySize, KillWait),
   array ids and, per run, its spec, run directory, job id and log paths.

Fault tolerance (:class:`GridTask`, a ``submitit.helpers.Checkpointable``)
--------------------------------------------------------------------------
The task calls :func:`harness.runner.execute`, which resumes from the run's ``latest.pt``; a finished
run (``record.json``) is returned as is, so a duplicate or requeued task never retrains. Training runs
in a worker thread while the main thread waits, so signal handlers can act at any time:

* SLURM preemption / time limit (``SIGUSR2``, ``--signal=USR2@signal_delay_s``): submitit calls
  :meth:`GridTask.checkpoint`, which sets the stop flag, waits (``stop_grace_s``) for the engine to
  reach the next step boundary and write ``latest.pt`` (``StopRequested``), and returns a
  ``DelayedSubmission`` of itself; submitit requeues the job and the rerun resumes. Nothing already
  trained is lost.
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

Status without accounting
-------------------------
``harness status GRID.yaml|manifest.json`` (:func:`collect_status`, :func:`format_status`) reads,
for the latest submission of every run, ``record.json`` / ``status.json`` / ``metrics.jsonl`` in the
run directory and one ``squeue -r -t all`` call for the job states (``sacct`` is not needed:
submitit's ``job.state`` is ``UNKNOWN`` on clusters without accounting, see
``scripts/slurm/README.md``). A run is ``finished`` (record), ``pending`` (queued, also after a
requeue), ``running``, ``stopped`` (interrupted, checkpoint kept, nothing queued) or ``failed``
(``status.json`` says so, or its job ended / left the queue without a record); failures show the
error, the log path and the last lines of the log. ``harness grid ... --retry-failed`` resubmits only
the ``failed`` and ``stopped`` runs (they resume from their checkpoint when they have one).

User documentation: ``docs/launching.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import math
import os
import pickle
import platform
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import pydantic
import submitit
import yaml

from .errors import ConfigError, HarnessError

# File names of a run directory, as in harness.records (not imported here: it imports torch, and
# `harness status` should answer in well under a second).
RECORD, STATUS, METRICS = "record.json", "status.json", "metrics.jsonl"

__all__ = [
    "GridFile", "LocalOptions", "SlurmOptions", "Variant", "PlannedRun", "GridTask", "RunStatus",
    "load_grid", "expand", "validate_runs", "split_arrays", "slurm_parameters", "parse_time_minutes",
    "manifest_path", "load_manifest", "append_submission", "collect_status", "format_status", "decide_state",
    "launch", "show_status", "export_distributed_env",
]

EXECUTORS = ("slurm", "local", "debug")
#: exit code of ``python -m harness.launch --task`` when the run stopped on SIGTERM (checkpoint kept)
EXIT_STOPPED = 3
#: squeue states (``%T``) of a job that will still start
QUEUED_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING",
                           "STOPPED", "SUSPENDED"})
#: squeue states of a job whose processes are (still) alive
ACTIVE_STATES = frozenset({"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"})
STATES = ("pending", "running", "finished", "failed", "stopped", "unknown")
RETRY_STATES = frozenset({"failed", "stopped"})
_TAIL_BYTES = 64 * 1024


# ============================================================================ grid file schema
class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)


_SCALAR = str | int | float | bool


class SlurmOptions(_Strict):
    """SLURM resources of every task of the grid (CLI options override these)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: int | str = pydantic.Field(60, description="time limit: minutes, or [D-]HH:MM[:SS], or 90m / 4h")
    cpus_per_task: int = pydantic.Field(1, ge=1, description="CPUs per process")
    gpus_per_task: int = pydantic.Field(0, ge=0, description="GPUs per run; N > 0 runs one process per GPU")
    nproc: int | None = pydantic.Field(None, ge=1, description="processes per run (default max(1, gpus_per_task))")
    mem_gb: float | None = pydantic.Field(None, gt=0, description="memory per node (default: the cluster's)")
    array_parallelism: int = pydantic.Field(32, ge=1, description="running tasks per array (%N)")
    max_array_size: int | None = pydantic.Field(None, ge=1, description="default: the cluster's MaxArraySize")
    max_num_timeout: int = pydantic.Field(3, ge=0, description="requeues after a time-out before giving up")
    signal_delay_s: int = pydantic.Field(90, ge=0, description="SIGUSR2 this many seconds before the time limit")
    constraint: str | None = None
    job_name: str | None = None
    setup: list[str] = pydantic.Field(default_factory=list, description="shell lines run before the task")
    sbatch: dict[str, _SCALAR] = pydantic.Field(default_factory=dict,
                                                description="extra sbatch options, e.g. {exclude: node3}")

    @pydantic.field_validator("time")
    @classmethod
    def _check_time(cls, v):
        try:
            parse_time_minutes(v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return v


class LocalOptions(_Strict):
    max_parallel: int | None = pydantic.Field(None, ge=1, description="runs at a time (default: GPUs, or 1)")
    nproc: int = pydantic.Field(1, ge=1, description="processes per run (torchrun-style)")
    threads: int | None = pydantic.Field(None, ge=1, description="torch threads per process")


class Variant(_Strict):
    """A named settings variant: ``--set`` overrides, optionally for some methods/protocols/seeds only."""

    name: str = pydantic.Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    overrides: dict[str, Any] = pydantic.Field(default_factory=dict, alias="set")
    methods: list[str] | None = None
    protocols: list[str] | None = None
    seeds: list[int] | None = None


class GridFile(_Strict):
    name: str | None = pydantic.Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$",
                                      description="default: the file name without .yaml")
    description: str | None = None
    out: str = "runs"
    methods: list[str] = pydantic.Field(min_length=1)
    protocols: list[str] = pydantic.Field(min_length=1)
    seeds: list[int] = pydantic.Field(default_factory=lambda: [0], min_length=1)
    overrides: dict[str, Any] = pydantic.Field(default_factory=dict, alias="set")
    method_set: dict[str, dict[str, Any]] = pydantic.Field(default_factory=dict)
    variants: list[Variant] = pydantic.Field(default_factory=list)
    data_root: str | None = None
    splits_dir: str | None = None
    device: str = "auto"
    workers: int | None = pydantic.Field(None, ge=0)
    executor: Literal["slurm", "local", "debug"] = "slurm"
    slurm: SlurmOptions = pydantic.Field(default_factory=SlurmOptions)
    local: LocalOptions = pydantic.Field(default_factory=LocalOptions)

    @pydantic.model_validator(mode="after")
    def _cross_checks(self):
        for label, values in (("methods", self.methods), ("protocols", self.protocols), ("seeds", self.seeds)):
            dup = [v for v, n in Counter(values).items() if n > 1]
            if dup:
                raise ValueError(f"{label} lists {dup} more than once")
        unknown = sorted(set(self.method_set) - set(self.methods))
        if unknown:
            raise ValueError(f"method_set names {unknown}, which are not in methods {self.methods}")
        names = [v.name for v in self.variants]
        dup = [v for v, n in Counter(names).items() if n > 1]
        if dup:
            raise ValueError(f"variant names {dup} are used more than once")
        for v in self.variants:
            for label, sub, full in (("methods", v.methods, self.methods), ("protocols", v.protocols, self.protocols),
                                     ("seeds", v.seeds, self.seeds)):
                extra = sorted(set(sub or ()) - set(full), key=str)
                if extra:
                    raise ValueError(f"variant '{v.name}': {label} {extra} are not in the grid's {label} {full}")
        return self


def _format_errors(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        got = err.get("input")
        got_s = "" if isinstance(got, (dict, list)) or err["type"] == "missing" else f" (got {got!r})"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"key '{loc}': {msg}{got_s}" if err["type"] != "extra_forbidden"
                     else f"unknown key '{loc}'")
    return "; ".join(parts)


def load_grid(path: str | Path) -> GridFile:
    """Read and validate a grid file; every error names the file (and the key)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"grid file {path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"grid file {path} must be a mapping with at least 'methods' and 'protocols'")
    try:
        grid = GridFile.model_validate(doc)
    except pydantic.ValidationError as exc:
        fields = ", ".join(f.alias or k for k, f in GridFile.model_fields.items())
        raise ConfigError(f"grid file {path}: {_format_errors(exc)}. Valid top-level keys: {fields}") from None
    if grid.name is None:
        grid = grid.model_copy(update={"name": re.sub(r"[^A-Za-z0-9_.+-]", "_", path.stem)})
    return grid


_TIME_RE = re.compile(r"^(?:(\d+)-)?(\d+):(\d{1,2})(?::(\d{1,2}))?$")


def parse_time_minutes(value: int | float | str) -> int:
    """``90`` / ``"90"`` / ``"90m"`` / ``"4h"`` / ``"1:30:00"`` / ``"2-00:00:00"`` → whole minutes (≥ 1)."""
    if isinstance(value, bool):
        raise ConfigError(f"time limit must be minutes or [D-]HH:MM[:SS], got {value!r}")
    if isinstance(value, (int, float)):
        minutes = float(value)
    else:
        s = str(value).strip().lower()
        m = _TIME_RE.match(s)
        if m:
            days, a, b, c = m.groups()
            if c is None:  # HH:MM
                minutes = int(a) * 60 + int(b)
            else:  # HH:MM:SS
                minutes = int(a) * 60 + int(b) + int(c) / 60
            minutes += int(days or 0) * 1440
        elif re.fullmatch(r"\d+(\.\d+)?\s*(m|min)?", s):
            minutes = float(re.sub(r"[a-z\s]", "", s))
        elif re.fullmatch(r"\d+(\.\d+)?\s*h", s):
            minutes = float(s[:-1]) * 60
        elif re.fullmatch(r"\d+(\.\d+)?\s*d", s):
            minutes = float(s[:-1]) * 1440
        else:
            raise ConfigError(f"time limit must be minutes (90, 90m), hours (4h) or [D-]HH:MM[:SS], got {value!r}")
    if minutes <= 0:
        raise ConfigError(f"time limit must be positive, got {value!r}")
    return max(1, math.ceil(minutes))


def parse_sbatch_items(items: Sequence[str]) -> dict[str, Any]:
    """``['exclude=node3', 'exclusive']`` → ``{'exclude': 'node3', 'exclusive': True}`` (``--sbatch`` options)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not key:
            raise ConfigError(f"--sbatch expects KEY=VALUE or KEY, got '{item}'")
        out[key] = value if sep else True
    return out


# ============================================================================ expansion
@dataclasses.dataclass(frozen=True)
class PlannedRun:
    spec: Any  # harness.runner.RunSpec
    variant: str

    @property
    def run_dir(self) -> str:
        from .runner import run_dir
        return str(run_dir(self.spec))

    @property
    def label(self) -> str:
        return run_label(self.spec.protocol, self.spec.method, self.variant, self.spec.seed)

    def spec_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.spec)


def run_label(protocol: str, method: str, variant: str, seed: int) -> str:
    return f"{protocol}/{method}/{variant}/seed{seed}"


def spec_from_dict(doc: dict[str, Any]):
    from .runner import RunSpec
    known = {f.name for f in dataclasses.fields(RunSpec)}
    return RunSpec(**{k: v for k, v in doc.items() if k in known})


def expand(grid: GridFile, *, out: str | None = None, extra_set: dict[str, Any] | None = None,
           data_root: str | None = None, splits_dir: str | None = None, device: str | None = None,
           workers: int | None = None) -> list[PlannedRun]:
    """All runs of the grid: protocol → method → variant → seed. Overrides merge as
    grid ``set`` ← ``method_set[method]`` ← variant ``set`` ← ``extra_set`` (the command line).
    Runs that land in the same run directory (identical settings) are listed once."""
    from .runner import RunSpec, run_dir

    out_abs = os.path.abspath(os.path.expanduser(out or grid.out))
    variants = grid.variants or [Variant(name="default")]
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    for protocol in grid.protocols:
        for method in grid.methods:
            for v in variants:
                if v.methods is not None and method not in v.methods:
                    continue
                if v.protocols is not None and protocol not in v.protocols:
                    continue
                overrides = {**grid.overrides, **grid.method_set.get(method, {}), **v.overrides, **(extra_set or {})}
                for seed in (v.seeds if v.seeds is not None else grid.seeds):
                    spec = RunSpec(method=method, protocol=protocol, seed=seed, overrides=overrides, out=out_abs,
                                   data_root=data_root or grid.data_root, splits_dir=splits_dir or grid.splits_dir,
                                   device=device or grid.device, workers=grid.workers if workers is None else workers,
                                   force=False, stop_after=None, progress=False)
                    key = str(run_dir(spec))
                    if key in seen:
                        continue
                    seen.add(key)
                    runs.append(PlannedRun(spec, v.name))
    return runs


def validate_runs(runs: Iterable[PlannedRun]) -> list[tuple[PlannedRun, str]]:
    """Resolve every run (method, protocol, keys, values) without training; return the invalid ones."""
    from .runner import resolve
    bad = []
    for run in runs:
        try:
            resolve(run.spec)
        except HarnessError as exc:
            bad.append((run, str(exc)))
    return bad


def split_arrays(items: Sequence[Any], max_size: int) -> list[list[Any]]:
    """Chunks of at most ``max_size`` (array indices 0..n-1 must stay below ``MaxArraySize``)."""
    if max_size < 1:
        raise ValueError("max_size must be >= 1")
    items = list(items)
    return [items[i:i + max_size] for i in range(0, len(items), max_size)]


# ============================================================================ the task
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
    if _rank() != 0:
        return
    status_path = Path(out_dir) / STATUS
    try:
        old = _read_json(status_path) if status_path.exists() else {}
    except (OSError, ValueError):
        old = {}
    if old.get("state") == "failed":
        return
    from . import records
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
        from .engine import StopRequested
        from .runner import run_dir

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
        from .runner import execute

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
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum, frame):
            self._term_received = True
            self._stop.set()
            _log("SIGTERM: checkpointing at the next step boundary (the rerun resumes from latest.pt)")
            if callable(previous):
                previous(signum, frame)  # submitit's handler only logs ("Bypassing signal SIGTERM")

        signal.signal(signal.SIGTERM, on_sigterm)
        return lambda: signal.signal(signal.SIGTERM, previous)

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

    from .engine import StopRequested

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


def run_local(entries: list[dict], opts: LocalOptions, echo: Callable[[str], None]) -> dict[str, int]:
    """Run the entries' specs as subprocesses, ``parallel`` at a time; return {run_dir: exit code}."""
    parallel, slots, threads = _local_plan(opts)
    echo(f"local executor: {len(entries)} runs, {parallel} at a time, {opts.nproc} process(es) per run, "
         f"{threads} thread(s) per process")
    queue = list(entries)
    active: dict[int, tuple[subprocess.Popen, dict, Any, float]] = {}
    codes: dict[str, int] = {}
    done = 0
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
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True)
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
    except KeyboardInterrupt:
        echo("interrupted: asking the running runs to checkpoint and stop (SIGTERM)")
        for proc, *_ in active.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        for proc, _, logf, _ in active.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            logf.close()
        raise
    return codes


def run_debug(entries: list[dict], echo: Callable[[str], None]) -> dict[str, int]:
    """In this process, one after the other; a failing run is reported and the next one starts."""
    from .engine import StopRequested

    codes: dict[str, int] = {}
    for i, entry in enumerate(entries, 1):
        t0 = time.monotonic()
        try:
            rec = GridTask(handle_signals=False)(entry["spec"])
        except StopRequested as stop:
            codes[entry["run_dir"]] = EXIT_STOPPED
            echo(f"[{i}/{len(entries)}] stopped {entry['label']} after step {stop.step}")
            continue
        except Exception as exc:  # noqa: BLE001 - one failing run must not stop the others
            codes[entry["run_dir"]] = 1
            echo(f"[{i}/{len(entries)}] FAILED {entry['label']}: {type(exc).__name__}: {exc}")
            continue
        codes[entry["run_dir"]] = 0
        echo(f"[{i}/{len(entries)}] finished {entry['label']} in {time.monotonic() - t0:.1f} s "
             f"(final mIoU {rec['final']['miou']:.2f})")
    return codes


# ============================================================================ manifest
def grid_dir(out: str | Path, name: str) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(out)))) / "grids" / name


def manifest_path(out: str | Path, name: str) -> Path:
    return grid_dir(out, name) / "manifest.json"


@contextlib.contextmanager
def _locked(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def load_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"no grid manifest at {path}: nothing was submitted for this grid (or pass --out)")
    try:
        doc = _read_json(path)
    except (OSError, ValueError) as exc:
        raise HarnessError(f"grid manifest {path} cannot be read: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("submissions"), list):
        raise HarnessError(f"{path} is not a grid manifest (no 'submissions' list)")
    return doc


def append_submission(path: Path, header: dict[str, Any], submission: dict[str, Any]) -> int:
    """Append one submission (atomic rewrite under the caller's lock); returns its index."""
    doc = _read_json(path) if path.exists() else {**header, "submissions": []}
    submission = {"index": len(doc["submissions"]), **submission}
    doc["submissions"].append(submission)
    doc["updated"] = _now()
    _write_json(path, doc)
    return submission["index"]


def _read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def _read_metrics(path: str | Path) -> list[dict]:
    p = Path(path)
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()] if p.exists() else []


def _write_json(path: Path, obj: Any) -> None:
    from . import records
    records.write_json(path, obj)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def latest_entries(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per run directory: the latest submission that submitted it (else the first mention)."""
    latest: dict[str, dict] = {}
    for sub in doc["submissions"]:
        meta = {"submission": sub.get("index"), "executor": sub.get("executor"),
                "launcher": sub.get("launcher"), "submitted_at": sub.get("time"),
                "submitted_unix": sub.get("unix_time")}
        for e in sub.get("skipped", []):
            latest.setdefault(e["run_dir"], {**e, **meta, "executor": None})
        for e in sub.get("invalid", []):
            latest[e["run_dir"]] = {**e, **meta, "executor": None}
        for e in sub.get("runs", []):
            latest[e["run_dir"]] = {**e, **meta}
    return list(latest.values())


# ============================================================================ status
@dataclasses.dataclass
class RunStatus:
    label: str
    run_dir: str
    state: str
    job_id: str | None = None
    executor: str | None = None
    step: int | None = None
    total_steps: int | None = None
    miou: float | None = None
    queue_state: str | None = None
    note: str = ""
    error: str | None = None
    log: str | None = None
    log_tail: list[str] = dataclasses.field(default_factory=list)
    entry: dict = dataclasses.field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("entry")
        return d


def decide_state(*, finished: bool, status_state: str | None, executor: str | None, queue_state: str | None,
                 queue_known: bool, launcher_alive: bool | None, result: str | None) -> tuple[str, str]:
    """(state, note) of one run from what can be observed. ``queue_known``: squeue answered;
    ``result``: 'success' / 'error' from submitit's result pickle when it exists."""
    if finished:
        return "finished", ""
    if executor == "slurm":
        if not queue_known:
            if status_state == "failed" or result == "error":
                return "failed", ""
            return "unknown", "squeue failed; state unknown"
        if queue_state in QUEUED_STATES:
            note = "requeued" if status_state in ("running", "stopped") else ""
            return "pending", note if queue_state == "PENDING" else f"{queue_state.lower()} {note}".strip()
        if queue_state in ACTIVE_STATES:
            if status_state == "failed":
                return "failed", "exiting"
            return "running", "" if queue_state == "RUNNING" else queue_state.lower()
        if status_state == "failed" or result == "error":
            return "failed", ""
        if queue_state is not None:
            if queue_state == "COMPLETED" and result == "success":
                return "failed", "job completed without a record"
            return "failed", f"job ended {queue_state} without a record"
        if status_state == "stopped":
            return "stopped", "interrupted; no job queued (retry to resume)"
        return "failed", "job left the queue without a record"
    if executor in ("local", "debug"):
        if status_state == "failed":
            return "failed", ""
        if launcher_alive:
            if status_state == "running":
                return "running", ""
            if status_state == "stopped":
                return "stopped", ""
            return "pending", ""
        if status_state in ("running", "stopped"):
            return "stopped", "launcher ended before the run finished (retry to resume)"
        return "failed", "not run: the launcher ended first"
    # never submitted (invalid at submission)
    if status_state == "failed":
        return "failed", ""
    return "failed", "not submitted"


def _pid_alive(launcher: dict | None) -> bool | None:
    if not launcher:
        return None
    if launcher.get("host") != platform.node():
        return None
    try:
        os.kill(int(launcher["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True
    # the pid may have been reused: compare the process start time when /proc is there
    start = launcher.get("start_ticks")
    if start is not None:
        now = _proc_start_ticks(int(launcher["pid"]))
        if now is not None and now != start:
            return False
    return True


def _proc_start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def tail_lines(path: str | Path | None, n: int) -> list[str]:
    """Last ``n`` informative lines of a log (submitit's INFO/WARNING lines and blank lines skipped)."""
    if not path or n <= 0:
        return []
    p = Path(path)
    try:
        with open(p, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - _TAIL_BYTES))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    lines = [ln.rstrip() for ln in text.replace("\r", "\n").splitlines()]
    keep = [ln for ln in lines if ln.strip() and not re.match(r"^submitit (INFO|WARNING|DEBUG)\b", ln)]
    return keep[-n:]


def _result_kind(entry: dict) -> tuple[str | None, str | None]:
    """('success'|'error'|None, error text) from submitit's result pickle of a SLURM run."""
    folder = entry.get("slurm_folder")
    job_id = entry.get("job_id")
    if not folder or not job_id:
        return None, None
    path = submitit.core.utils.JobPaths(folder, job_id=job_id, task_id=0).result_pickle
    if not path.exists():
        return None, None
    try:
        with open(path, "rb") as f:
            kind, value = pickle.load(f)
    except Exception:  # noqa: BLE001 - an unreadable pickle tells nothing
        return None, None
    return kind, (str(value) if kind == "error" else None)


def collect_status(doc: dict[str, Any], *, lines: int = 5,
                   squeue: Callable[[Iterable[str]], dict[str, str]] | None = None) -> tuple[list[RunStatus], str]:
    """Status of every run of a manifest; returns (statuses, queue note)."""
    from . import slurm

    entries = latest_entries(doc)
    folders = {s.get("index"): s.get("slurm_folder") for s in doc["submissions"]}
    slurm_ids = sorted({str(e["job_id"]).split("_")[0] for e in entries
                        if e.get("executor") == "slurm" and e.get("job_id")})
    queue: dict[str, str] = {}
    queue_known, queue_note = True, ""
    if slurm_ids:
        try:
            queue = (squeue or slurm.squeue_states)(slurm_ids)
            queue_note = f"squeue: {len(queue)} task(s) known"
        except HarnessError as exc:
            queue_known, queue_note = False, f"squeue failed: {exc}"
    out: list[RunStatus] = []
    for e in entries:
        rd = Path(e["run_dir"])
        finished = (rd / RECORD).exists()
        st: dict = {}
        with contextlib.suppress(OSError, ValueError):
            st = _read_json(rd / STATUS) if (rd / STATUS).exists() else {}
        entry = {**e, "slurm_folder": folders.get(e.get("submission"))}
        job_id = e.get("job_id")
        qstate = queue.get(str(job_id)) if job_id else None
        result, result_err = (None, None)
        if e.get("executor") == "slurm" and not finished and qstate not in QUEUED_STATES | ACTIVE_STATES:
            result, result_err = _result_kind(entry)
        status_state = st.get("state")
        if status_state and (st.get("updated") or 0) < (e.get("submitted_unix") or 0):
            status_state = None  # written by an earlier attempt (before this submission)
        state, note = decide_state(finished=finished, status_state=status_state, executor=e.get("executor"),
                                   queue_state=qstate, queue_known=queue_known,
                                   launcher_alive=_pid_alive(e.get("launcher")), result=result)
        rs = RunStatus(label=e.get("label") or rd.name, run_dir=str(rd), state=state, job_id=job_id,
                       executor=e.get("executor"), queue_state=qstate, note=note, log=e.get("log"), entry=entry)
        if finished:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                rec = _read_json(rd / RECORD)
                rs.step = rs.total_steps = rec["total_steps"]
                rs.miou = rec["final"]["miou"]
        else:
            rs.step, rs.total_steps, rs.miou = st.get("step"), st.get("total_steps"), st.get("last_miou")
            if rs.miou is None:
                with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
                    metrics = _read_metrics(rd / METRICS)
                    if metrics:
                        rs.miou = metrics[-1]["miou"]
                        rs.step = rs.step or metrics[-1]["step"]
        if state in ("failed", "stopped", "unknown"):
            rs.error = e.get("error") or st.get("error") or (result_err.strip().splitlines()[-1]
                                                            if result_err else None)
            rs.log_tail = tail_lines(rs.log, lines)
            if not rs.log_tail and st.get("traceback"):
                rs.log_tail = [ln for ln in st["traceback"].splitlines() if ln.strip()][-lines:]
        out.append(rs)
    return out, queue_note


def format_status(statuses: Sequence[RunStatus], *, title: str = "", queue_note: str = "") -> str:
    from tabulate import tabulate

    counts = Counter(s.state for s in statuses)
    summary = ", ".join(f"{counts[k]} {k}" for k in STATES if counts[k])
    rows = []
    for s in statuses:
        step = f"{s.step if s.step is not None else '–'}/{s.total_steps}" if s.total_steps else "–"
        state = s.state + (f" ({s.note})" if s.note and s.state not in ("failed", "stopped") else "")
        rows.append((s.label, s.job_id or s.executor or "–", state, step,
                     f"{s.miou:.2f}" if isinstance(s.miou, (int, float)) else "–"))
    text = [f"{title}{len(statuses)} runs: {summary or 'none'}" + (f"   [{queue_note}]" if queue_note else "")]
    if rows:
        text.append(tabulate(rows, headers=["run", "job", "state", "step", "mIoU"], tablefmt="simple"))
    problems = [s for s in statuses if s.state in ("failed", "stopped", "unknown")]
    if problems:
        text.append("")
        for s in problems:
            where = f" (job {s.job_id}{', squeue ' + s.queue_state if s.queue_state else ''})" if s.job_id else ""
            text.append(f"{s.state.upper()} {s.label}{where}" + (f": {s.note}" if s.note else ""))
            if s.error:
                text.append(f"    error: {s.error}")
            text.append(f"    run:   {s.run_dir}")
            if s.log:
                text.append(f"    log:   {s.log}")
            text.extend(f"    | {ln}" for ln in s.log_tail)
    return "\n".join(text)


# ============================================================================ commands
@dataclasses.dataclass
class _Target:
    """What a GRID.yaml or manifest.json argument designates."""

    grid: GridFile | None
    grid_file: str | None
    name: str
    out: str
    manifest: Path


def _target(path: str, out: str | None) -> _Target:
    p = Path(path)
    if p.suffix == ".json":
        doc = load_manifest(p)
        return _Target(None, doc.get("grid_file"), doc.get("grid", p.parent.name), out or doc.get("out"), p)
    grid = load_grid(p)
    o = out or grid.out
    return _Target(grid, str(p.resolve()), grid.name, o, manifest_path(o, grid.name))


def _merge_options(model: type[pydantic.BaseModel], base: pydantic.BaseModel | dict, overrides: dict[str, Any]):
    data = base.model_dump(by_alias=True) if isinstance(base, pydantic.BaseModel) else dict(base)
    for k, v in overrides.items():
        if v is None:
            continue
        if k == "sbatch":
            data["sbatch"] = {**data.get("sbatch", {}), **v}
        elif k == "setup":
            data["setup"] = [*data.get("setup", []), *v]
        else:
            data[k] = v
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(f"invalid {model.__name__.replace('Options', '').lower()} option: "
                          f"{_format_errors(exc)}") from None


def launch(path: str, *, executor: str | None = None, out: str | None = None, set_items: Sequence[str] = (),
           data_root: str | None = None, splits_dir: str | None = None, device: str | None = None,
           slurm_overrides: dict[str, Any] | None = None, local_overrides: dict[str, Any] | None = None,
           retry_failed: bool = False, dry_run: bool = False, skip_invalid: bool = False,
           command: str | None = None, echo: Callable[[str], None] = print,
           executor_factory: Callable[..., Any] | None = None) -> int:
    """``harness grid``: expand, skip, validate, submit, record. Returns the command's exit status."""
    from .runner import parse_set

    target = _target(path, out)
    extra_set = parse_set(list(set_items))
    prev_doc = load_manifest(target.manifest) if target.manifest.exists() else None
    last = prev_doc["submissions"][-1] if prev_doc and prev_doc["submissions"] else {}
    if target.grid is None and not retry_failed:
        raise ConfigError(f"{path} is a manifest: it can only be used with --retry-failed (or pass the grid file)")
    executor = executor or (target.grid.executor if target.grid else last.get("executor")) or "slurm"
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got '{executor}'")
    base_slurm = target.grid.slurm if target.grid else (last.get("slurm_options") or {})
    base_local = target.grid.local if target.grid else (last.get("local_options") or {})
    slurm_opts = _merge_options(SlurmOptions, base_slurm, slurm_overrides or {})
    local_opts = _merge_options(LocalOptions, base_local, local_overrides or {})
    gdir = grid_dir(target.out, target.name)

    with _locked(target.manifest):
        prev_doc = load_manifest(target.manifest) if target.manifest.exists() else None
        current = {}
        if prev_doc:
            statuses, _ = collect_status(prev_doc, lines=0)
            current = {s.run_dir: s for s in statuses}
        # -- what to run ---------------------------------------------------------------------
        skipped: list[dict] = []
        if retry_failed:
            if not current:
                raise HarnessError(f"--retry-failed: no manifest at {target.manifest}; nothing was submitted yet")
            if extra_set:
                raise ConfigError("--set cannot be combined with --retry-failed: it would change the runs' settings "
                                  "(and run directories); change the grid file and run `harness grid` instead")
            # where the data is and which device to use are not part of a run's identity: they may change
            moved = {k: v for k, v in (("data_root", data_root), ("splits_dir", splits_dir), ("device", device))
                     if v is not None}
            todo = [PlannedRun(spec_from_dict({**s.entry["spec"], **moved}), s.entry.get("variant", "default"))
                    for s in current.values() if s.state in RETRY_STATES]
        else:
            planned = expand(target.grid, out=target.out, extra_set=extra_set, data_root=data_root,
                             splits_dir=splits_dir, device=device)
            todo = []
            for run in planned:
                if (Path(run.run_dir) / RECORD).exists():
                    skipped.append(_run_entry(run, reason="finished"))
                elif run.run_dir in current and current[run.run_dir].state in ("pending", "running"):
                    skipped.append(_run_entry(run, reason=f"already {current[run.run_dir].state}",
                                              job_id=current[run.run_dir].job_id))
                else:
                    todo.append(run)
        invalid = validate_runs(todo)
        bad_dirs = {r.run_dir for r, _ in invalid}
        reasons = Counter(e["reason"] for e in skipped)
        echo(f"grid {target.name}: {len(todo) + len(skipped)} runs" +
             "".join(f", {n} skipped ({why})" for why, n in reasons.items()) +
             f", {len(todo) - len(invalid)} to run with the {executor} executor" +
             (f", {len(invalid)} invalid" if invalid else ""))
        for run, err in invalid:
            echo(f"  invalid: {run.label}: {err}")
        if invalid and not skip_invalid and not dry_run:
            raise ConfigError(f"{len(invalid)} run(s) of grid {target.name} are invalid (see above); nothing was "
                              f"submitted. Fix the grid, or pass --skip-invalid to submit the others")
        todo = [r for r in todo if r.run_dir not in bad_dirs]
        if dry_run:
            for run in todo:
                echo(f"  would run: {run.label}  -> {run.run_dir}")
            if executor == "slurm" and todo:
                size = slurm_opts.max_array_size or cluster_facts()["max_array_size"]
                echo(f"  as {len(split_arrays(todo, size))} array(s) of at most {size}; sbatch parameters: "
                     f"{slurm_parameters(slurm_opts, target.name)}")
            return 0
        header = {"grid": target.name, "grid_file": target.grid_file,
                  "out": os.path.abspath(os.path.expanduser(str(target.out))),
                  "created": _now(), "format": 1}
        sub: dict[str, Any] = {
            "time": _now(), "unix_time": time.time(), "executor": executor, "retry_failed": retry_failed,
            "command": command or "harness grid " + path, "cwd": os.getcwd(), "host": platform.node(),
            "user": getpass.getuser(), "extra_set": extra_set,
            "skipped": skipped,
            "invalid": [_run_entry(r, error=err) for r, err in invalid],
            "runs": [],
        }
        if not todo:
            append_submission(target.manifest, header, sub)
            echo(f"nothing to submit; manifest: {target.manifest}")
            return 0
        t0 = time.perf_counter()
        if executor == "slurm":
            facts = cluster_facts()
            max_array = slurm_opts.max_array_size or facts["max_array_size"]
            folder = gdir / "slurm"
            entries, arrays, error = submit_slurm(todo, slurm_opts, folder, target.name, max_array, executor_factory)
            sub.update(slurm_options=slurm_opts.model_dump(by_alias=True), slurm_folder=str(folder / "%j"),
                       cluster=facts, max_array_size=max_array, arrays=arrays, runs=entries,
                       sbatch=slurm_parameters(slurm_opts, target.name),
                       submit_seconds=round(time.perf_counter() - t0, 3))
            if entries:
                append_submission(target.manifest, header, sub)
            if error and not entries:
                raise HarnessError(f"sbatch failed; nothing was submitted: {error}")
            if error:
                raise HarnessError(f"sbatch failed after {len(entries)} of {len(todo)} runs were submitted "
                                   f"(array jobs {', '.join(arrays)}): {error}. The manifest {target.manifest} lists "
                                   f"the submitted ones; rerun the same command to submit the rest")
            kill = facts.get("kill_wait_s")
            echo(f"submitted {len(entries)} runs as {len(arrays)} array job(s) {', '.join(arrays)} "
                 f"(≤ {max_array} tasks each, {slurm_opts.array_parallelism} at a time) in "
                 f"{time.perf_counter() - t0:.1f} s")
            if kill is not None:
                echo(f"cluster KillWait = {kill} s: after SIGTERM (requeue/preemption) a run has that long to "
                     f"finish its step and write latest.pt")
            echo(f"manifest: {target.manifest}\nfollow:   harness status {target.manifest}")
            return 0
        # local / debug: the manifest first (status works while the runs go), then run
        stamp = time.strftime("%Y%m%d-%H%M%S")
        entries = []
        for i, run in enumerate(todo):
            log = str(gdir / executor / stamp / f"{i:04d}-{run.label.replace('/', '_')}.log")
            entries.append(_run_entry(run, job_id=None, log=log if executor == "local" else None))
        launcher = {"pid": os.getpid(), "host": platform.node(), "start_ticks": _proc_start_ticks(os.getpid())}
        for e in entries:
            e["launcher"] = launcher
        sub.update(runs=entries, launcher=launcher,
                   local_options=local_opts.model_dump() if executor == "local" else None)
        append_submission(target.manifest, header, sub)
    echo(f"manifest: {target.manifest}")
    if executor == "local":
        codes = run_local(entries, local_opts, echo)
    else:
        codes = run_debug(entries, echo)
    failed = sum(1 for c in codes.values() if c != 0)
    echo(f"{len(codes) - failed} finished, {failed} failed or stopped; details: harness status {target.manifest}")
    return 1 if failed else 0


def show_status(path: str, *, out: str | None = None, lines: int = 5, as_json: bool = False,
                echo: Callable[[str], None] = print) -> int:
    """``harness status``: 0 when no run failed or stopped, 1 otherwise."""
    target = _target(path, out)
    doc = load_manifest(target.manifest)
    statuses, note = collect_status(doc, lines=lines)
    if as_json:
        echo(json.dumps({"grid": target.name, "manifest": str(target.manifest), "queue": note,
                         "runs": [s.to_json() for s in statuses]}, indent=1, default=str))
    else:
        echo(format_status(statuses, title=f"grid {target.name} ({len(doc['submissions'])} submission(s)): ",
                           queue_note=note))
    return 1 if any(s.state in RETRY_STATES for s in statuses) else 0


if __name__ == "__main__":
    sys.exit(_task_main(sys.argv[1:]))
