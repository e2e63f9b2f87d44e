"""Grid launcher: the ``harness grid`` command (:func:`launch`), which expands a grid file into runs,
submits them (SLURM job arrays, local processes or in-process), keeps a manifest of what was submitted and
resubmits failures, and the ``harness status`` command (:func:`show_status`). Both take a grid file or a
manifest (:func:`_target`).

``harness grid GRID.yaml`` (:func:`launch`):

1. validates every run up front (:func:`harness.launch.grid_file.validate_runs`); invalid runs abort the submission
   (nothing is submitted) unless ``--skip-invalid``, which records them in the manifest as failed and
   submits the others;
2. skips runs whose ``record.json`` exists (finished), runs that an earlier submission of the same
   grid still has queued or running, and runs that a live process trains elsewhere (its ``run.lock`` is held:
   another grid, or ``harness run``), so no two jobs ever train into one run directory;
3. submits the rest with the chosen executor: ``slurm``, ``local`` or ``debug``;
4. appends a submission entry to the manifest ``<out>/grids/<grid>/manifest.json``.

The pieces live in modules named after what they do:

* :mod:`harness.launch.grid_file`: the grid-file schema and its expansion into runs;
* :mod:`harness.launch.executors`: SLURM job arrays, local subprocesses, in-process runs;
* :mod:`harness.launch.task`: what runs inside one task (resume, preemption, requeue, failures, distributed env);
* :mod:`harness.launch.manifest`: the manifest file, its lock and the launcher's JSON helpers;
* :mod:`harness.launch.status`: the state of every run (``harness status``).

``python -m harness.launch --task JSON`` runs one run in this process (:func:`harness.launch.task._task_main`);
the local executor starts its subprocesses with that command line (:func:`harness.launch.executors.local_command`).

User documentation: ``docs/launching.md``.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import platform
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import pydantic

from ..errors import ConfigError, HarnessError
from ..train.runlock import owner_alive
from .executors import _run_entry, cluster_facts, run_debug, run_local, slurm_parameters, submit_slurm
from .status import RETRY_STATES, _proc_start_ticks, collect_status, format_status
from .grid_file import (GridFile, LocalOptions, PlannedRun, SlurmOptions, _format_errors, expand, grid_path, load_grid,
                        spec_from_dict, split_arrays, validate_runs)
from .manifest import RECORD, _locked, _now, append_submission, grid_dir, load_manifest, manifest_path

__all__ = ["launch", "show_status"]

EXECUTORS = ("slurm", "local", "debug")


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
    p = grid_path(p)
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
           order: str | None = None, command: str | None = None, echo: Callable[[str], None] = print,
           executor_factory: Callable[..., Any] | None = None) -> int:
    """``harness grid``: expand, skip, validate, submit, record. Returns the command's exit status."""
    from ..train.run import parse_set

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
                             splits_dir=splits_dir, device=device, order=order)
            todo = []
            for run in planned:
                if (Path(run.run_dir) / RECORD).exists():
                    skipped.append(_run_entry(run, reason="finished"))
                elif run.run_dir in current and current[run.run_dir].state in ("pending", "running"):
                    skipped.append(_run_entry(run, reason=f"already {current[run.run_dir].state}",
                                              job_id=current[run.run_dir].job_id))
                elif owner_alive(run.run_dir):
                    # a sub-grid or a `harness run` of the same settings trains there now: submitting it would only
                    # fail on the lock; the next `harness grid` finds it finished (or resumes it)
                    skipped.append(_run_entry(run, reason="running elsewhere"))
                else:
                    todo.append(run)
        nproc = {"slurm": slurm_opts.nproc or max(1, slurm_opts.gpus_per_task), "local": local_opts.nproc}
        invalid = validate_runs(todo, world_size=nproc.get(executor, 1))
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


