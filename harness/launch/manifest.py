"""The manifest of a grid, ``<out>/grids/<grid>/manifest.json``: one entry per ``harness grid``
submission (time, command, executor options, cluster facts such as MaxArraySize and KillWait, array ids
and, per run, its spec, run directory, job id and log paths), appended with atomic writes under a lock
file (:func:`_locked`, :func:`append_submission`). :func:`latest_entries` gives, per run directory, the
latest submission that submitted it, which is what ``harness status`` and ``--retry-failed`` work from.

Also the small file helpers the launcher modules share: the file names of a run directory and JSON
reading / writing.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import HarnessError

__all__ = ["manifest_path", "load_manifest", "append_submission", "latest_entries"]

# File names of a run directory, as in harness.records (not imported here: it imports torch, and
# `harness status` should answer in well under a second).
RECORD, STATUS, METRICS = "record.json", "status.json", "metrics.jsonl"


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


def _write_json(path: Path, obj: Any) -> None:
    from .. import records
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
