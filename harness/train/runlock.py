"""One trainer per run directory: ``run.lock``, held for the life of the trainer.

The trainer (rank 0 of a run) takes an exclusive ``fcntl.flock`` on ``<run dir>/run.lock`` before it touches
anything in the folder and keeps it until it returns; the kernel releases it when the process dies, however it
dies (SIGKILL, OOM killer, a lost node's NFS lease), so a killed run can be resumed at once and no stale lock
is ever left to clean up. The file holds the owner's pid, host, start time and command line, which the error
of a second trainer names. :func:`owner_alive` asks, without taking the lock for longer than a probe, whether
a live process holds it: a ``status.json`` that says ``running`` while no process holds the lock belongs to a
run that was killed.

The lock file is removed (while still locked) when its owner returns; a process that opened the old file just
before compares inodes after locking and starts over (:meth:`RunLock.acquire`). On a file system without
``flock`` (some parallel file systems mounted without it) the run goes on unlocked, with a warning.

Nothing here imports torch: ``harness status`` uses :func:`owner_alive`.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import HarnessError

__all__ = ["LOCK", "RunLock", "RunLockedError", "owner_alive", "read_owner"]

LOCK = "run.lock"
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class RunLockedError(HarnessError):
    """Another live process trains in this run directory."""


def read_owner(run_dir: str | Path) -> dict[str, Any]:
    """The owner record of ``run.lock`` (empty when absent or unreadable)."""
    try:
        doc = json.loads((Path(run_dir) / LOCK).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def owner_alive(run_dir: str | Path) -> bool | None:
    """True when a live process holds the run's lock, False when none does, None when it cannot be told."""
    import fcntl

    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops the probe's shared lock, if it got one
    return False


def describe_owner(owner: dict[str, Any]) -> str:
    if not owner:
        return "another process (its run.lock names none yet)"
    text = f"process {owner.get('pid', '?')} on host {owner.get('host', '?')}"
    if owner.get("started"):
        text += f", started {owner['started']}"
    if owner.get("command"):
        text += f" (`{owner['command']}`)"
    return text


class RunLock:
    """The exclusive lock of one run directory (see the module docstring)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, force: bool = False, wait_s: float = 2.0) -> None:
        """Take the lock or raise :class:`RunLockedError` naming the owner. ``wait_s`` covers a probe of
        :func:`owner_alive`, which holds a shared lock for microseconds."""
        import fcntl

        deadline = time.monotonic() + wait_s
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                raise RunLockedError(self._locked_message(force)) from None
            except OSError as exc:
                if exc.errno not in _NO_FLOCK:
                    os.close(fd)
                    raise
                print(f"warning: the file system of {self.run_dir} does not support flock ({exc.strerror}); this "
                      f"run is not protected against a second trainer in the same folder", file=sys.stderr)
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the previous owner removed the file between our open and our lock: start over
        self._fd = fd
        owner = {"pid": os.getpid(), "host": platform.node(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "command": shlex.join([os.path.basename(sys.executable), *sys.argv])[:500]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still locked: a waiting process sees another inode and starts over
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def _locked_message(self, force: bool) -> str:
        owner = describe_owner(read_owner(self.run_dir))
        what = ("--force does not delete a run directory that is being trained" if force else
                "two trainers must not share one run directory")
        return (f"run directory {self.run_dir} is being trained by {owner}; {what}. Wait for that run to end, or "
                f"stop it (e.g. `kill {read_owner(self.run_dir).get('pid', 'PID')}` on that host, which keeps its "
                f"last checkpoint), then rerun this command to resume from the checkpoint"
                + (" (or with --force to start again from scratch)" if force else ""))

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
