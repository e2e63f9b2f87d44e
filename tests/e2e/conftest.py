"""Helpers of the end-to-end tests that start real `harness` processes and real (small) file systems."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest


def harness(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def run_args(tiny, out: Path, *extra: str, method: str = "supervised") -> list[str]:
    return ["run", "--method", method, "--protocol", "tiny-8", "--out", str(out), "--data-root",
            str(tiny["data_root"]), "--no-progress", "--threads", "1", *extra]


def read(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def wait_for(predicate, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def state_of(run_dir: Path) -> str | None:
    try:
        return read(run_dir / "status.json")["state"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture
def small_fs(tmp_path):
    """``make(size, readonly=False)`` → a freshly mounted tmpfs of that size (root only; skipped elsewhere)."""
    mounted: list[Path] = []

    def make(size: str, readonly: bool = False) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small file system needs root")
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        opts = f"size={size}" + (",ro" if readonly else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
