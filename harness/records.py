"""Run-directory files: atomic JSON writes, the metrics log, the status file, environment facts, file checksums.

A run directory holds ``config.json`` (everything resolved), ``metrics.jsonl`` (one line per
evaluation), ``status.json`` (state, step, last error; rewritten as the run goes), ``latest.pt`` and,
once finished, ``record.json``. Every JSON file is written to a temporary file and renamed, so a
reader never sees a half-written file and a crash never destroys the previous version.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import platform
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import WriteError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
STATUS = "status.json"
RECORD = "record.json"
CHECKPOINT = "latest.pt"


def _json_default(obj: Any):
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(obj: Any):
    """NaN/Inf are not JSON; store them as null (per-class IoU of an absent class is NaN)."""
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(_clean(obj), default=_json_default, indent=1, sort_keys=False)


#: errors of the file system rather than of the harness: reported as one sentence naming the file
_WRITE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                 errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                 errno.EPERM: "operation not permitted", errno.EIO: "input/output error"}


def write_error(path: Path, exc: OSError) -> WriteError | None:
    """The :class:`WriteError` for an OSError of writing ``path``, or None for an error that is not the file
    system's (a bug)."""
    reason = _WRITE_ERRNOS.get(exc.errno)
    if reason is None:
        return None
    return WriteError(f"cannot write {path}: {reason}", str(path), exc.errno)


@contextlib.contextmanager
def _temporary_beside(path: Path):
    """A temporary file next to ``path``, opened for writing, renamed over ``path`` on success and removed on
    failure; a file-system error becomes a :class:`WriteError` naming ``path`` (no chained tracebacks)."""
    path = Path(path)
    tmp = None
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            err = write_error(path, exc)
            if err is None:
                raise
            raise err from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (weights files are large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, rename: readers see the old or the new file."""
    with _temporary_beside(path) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps(obj) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a file object (a full disk is then an OSError, not torch's writer errors)."""
    with _temporary_beside(path) as f:
        torch.save(obj, f)


def rewrite_metrics(path: Path, entries: list[dict]) -> None:
    """The metrics log is rewritten whole (atomically) from the checkpointed history, so a resumed run
    never keeps lines of evaluations that happened after its checkpoint."""
    atomic_write_text(path, "".join(json.dumps(_clean(e), default=_json_default) + "\n" for e in entries))


def read_metrics(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def write_status(run_dir: Path, state: str, **fields: Any) -> None:
    write_json(Path(run_dir) / STATUS, {"state": state, "updated": time.time(), "host": platform.node(),
                                        "pid": os.getpid(), **fields})


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model: float results of the same run differ between CPU models."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("ssseg-harness", "torch", "torchvision", "timm", "numpy", "pillow", "pydantic", "pluggy", "submitit"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    out["cuda"] = torch.version.cuda or "none"
    return out


def _is_harness_checkout(root: Path) -> bool:
    """``root`` is the top of a git checkout of this project (not a repository that merely contains a venv)."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root.resolve():
        return False
    try:
        return 'name = "ssseg-harness"' in (root / "pyproject.toml").read_text()
    except OSError:
        return False


def git_revision(path: Path | None = None) -> str | None:
    """Commit of the checkout the harness is imported from, with '+dirty' when it has uncommitted changes;
    None when the harness is not imported from a git checkout of this project (an installed package), and
    'unknown' when git cannot tell."""
    where = Path(path or Path(__file__).resolve().parent.parent)
    if not _is_harness_checkout(where):
        return None
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def harness_origin() -> dict[str, Any]:
    """Where the imported harness comes from: its folder, the installed distribution that holds those files
    (None for a checkout, editable installs included) and the checkout's revision (None for an installed package)."""
    location = Path(__file__).resolve().parent
    dist = None
    try:
        d = metadata.distribution("ssseg-harness")
        if Path(str(d.locate_file("harness/__init__.py"))).resolve() == location / "__init__.py":
            dist = {"name": d.metadata["Name"], "version": d.version}
    except metadata.PackageNotFoundError:
        pass
    return {"location": str(location), "distribution": dist, "git_revision": git_revision(location.parent)}
