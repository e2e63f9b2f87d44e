"""Where every run of a grid stands (``harness status``), without SLURM accounting.

:func:`collect_status` reads, for the latest submission of every run (:func:`harness.launch.manifest.latest_entries`),
``record.json`` / ``status.json`` / ``metrics.jsonl`` in the run directory and one ``squeue -r -t all``
call for the job states (``sacct`` is not needed: submitit's ``job.state`` is ``UNKNOWN`` on clusters
without accounting, see ``scripts/slurm/README.md``); :func:`decide_state` turns what it observed into
a state. A run is ``finished`` (record), ``pending`` (queued, also after a requeue), ``running``,
``stopped`` (interrupted, checkpoint kept, nothing queued) or ``failed`` (``status.json`` says so, or its
job ended / left the queue without a record); failures show the error, the log path and the last lines
of the log (:func:`format_status`). ``harness grid ... --retry-failed`` resubmits only the ``failed``
and ``stopped`` runs (:data:`RETRY_STATES`; they resume from their checkpoint when they have one).

Nothing here imports torch: ``harness status`` should answer in well under a second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import platform
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import submitit

from ..errors import HarnessError
from .manifest import METRICS, RECORD, STATUS, _read_json, latest_entries
from ..train.runlock import owner_alive

__all__ = ["RunStatus", "collect_status", "format_status", "decide_state", "tail_lines"]

#: squeue states (``%T``) of a job that will still start
QUEUED_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING",
                           "STOPPED", "SUSPENDED"})
#: squeue states of a job whose processes are (still) alive
ACTIVE_STATES = frozenset({"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"})
STATES = ("pending", "running", "finished", "failed", "stopped", "unknown")
RETRY_STATES = frozenset({"failed", "stopped"})
_TAIL_BYTES = 64 * 1024


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
                 queue_known: bool, launcher_alive: bool | None, result: str | None,
                 owner_alive: bool | None = None) -> tuple[str, str]:
    """(state, note) of one run from what can be observed. ``queue_known``: squeue answered;
    ``result``: 'success' / 'error' from submitit's result pickle when it exists; ``owner_alive``: whether a
    live process holds the run directory's lock (:func:`harness.train.runlock.owner_alive`; None: unknown). A
    ``running`` status whose owner is gone is a run that was killed: it reads as interrupted."""
    if finished:
        return "finished", ""
    if owner_alive and status_state != "failed":
        if executor in ("local", "debug") and launcher_alive is False:
            return "running", "its launcher ended; the trainer still runs"
        if executor == "slurm" and queue_known and queue_state not in ACTIVE_STATES:
            return "running", "not in the queue, but a trainer holds the run"
        if executor not in ("local", "debug", "slurm"):
            return "running", "started outside this grid"
    if status_state == "running" and owner_alive is False and executor in ("local", "debug", None):
        return "stopped", "interrupted: no process trains it any more (killed?); retry to resume"
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


def _read_metrics(path: str | Path) -> list[dict]:
    p = Path(path)
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()] if p.exists() else []


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
        owner = owner_alive(rd) if not finished else None
        state, note = decide_state(finished=finished, status_state=status_state, executor=e.get("executor"),
                                   queue_state=qstate, queue_known=queue_known,
                                   launcher_alive=_pid_alive(e.get("launcher")), result=result, owner_alive=owner)
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
