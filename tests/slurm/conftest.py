"""Session set-up for the real-SLURM tests: bring up the local one-node cluster once.

As root, ``scripts/slurm/setup_cluster.sh`` is run once per session (idempotent: ~0.2 s when the
cluster is already up; installs the Debian packages on a fresh machine). Not root: an already
running cluster is used as is. Otherwise every test here is SKIPPED with the reason (not root,
apt unavailable, a daemon did not start, ...). Set ``SSSEG_REQUIRE_SLURM=1`` (CI) to turn those
skips into failures so that a broken set-up cannot pass silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.launch import slurm

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO_ROOT / "scripts" / "slurm" / "setup_cluster.sh"
SETUP_TIMEOUT_S = 900  # apt-get install on a fresh machine
REQUIRE_ENV = "SSSEG_REQUIRE_SLURM"

# setup_cluster.sh exit codes -> what went wrong
_EXIT_REASONS = {
    2: "not root",
    3: "SLURM/munge packages missing and apt unavailable or failing",
    4: "a SLURM/munge daemon could not start",
    5: "the node did not become usable",
}


@dataclass(frozen=True)
class SlurmCluster:
    partition: str
    node: str
    set_up_here: bool  # True when setup_cluster.sh configured it (known MaxArraySize, KillWait, ...)


def _unavailable(reason: str) -> None:
    reason = f"local SLURM cluster unavailable: {reason}"
    if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set, so this is an error, not a skip)", pytrace=False)
    pytest.skip(reason)


def _default_partition() -> str:
    out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=10).stdout.split()
    for name in out:
        if name.endswith("*"):
            return name.rstrip("*")
    return out[0] if out else "debug"


def _bring_up() -> bool:
    """Run the set-up script (root) or accept a running cluster; return whether the script ran."""
    if not sys.platform.startswith("linux"):
        _unavailable(f"needs Linux, this is {sys.platform}")
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if not is_root:
        if slurm.cluster_available():
            return False
        _unavailable("not root (setup_cluster.sh must run as root) and no cluster is running (sinfo fails)")
    if shutil.which("bash") is None:
        _unavailable("bash not found")
    try:
        proc = subprocess.run(
            ["bash", str(SETUP_SCRIPT)], capture_output=True, text=True, timeout=SETUP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        _unavailable(f"{SETUP_SCRIPT.name} did not finish within {SETUP_TIMEOUT_S} s")
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln] or proc.stderr.strip().splitlines()[-3:]
        what = _EXIT_REASONS.get(proc.returncode, f"{SETUP_SCRIPT.name} exited with {proc.returncode}")
        _unavailable(f"{what}: {' | '.join(errors)}")
    if not slurm.cluster_available():
        _unavailable(f"{SETUP_SCRIPT.name} succeeded but sinfo still fails")
    return True


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    set_up_here = _bring_up()
    node = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, timeout=10)
    return SlurmCluster(
        partition=_default_partition(),
        node=(node.stdout.split() or ["?"])[0],
        set_up_here=set_up_here,
    )
