"""Helpers for the launcher tests: grid files in tmp_path and a fake submitit executor (no cluster)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml


def write_grid(path: Path, **doc) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class FakeJob:
    def __init__(self, job_id: str, folder: Path):
        import submitit

        self.job_id = job_id
        self.paths = submitit.core.utils.JobPaths(folder, job_id=job_id, task_id=0)


class FakeSlurmExecutor:
    """Records map_array calls like submitit.SlurmExecutor; job ids 1000, 1001, ... (array tasks <id>_<i>)."""

    ids = itertools.count(1000)
    instances: list["FakeSlurmExecutor"] = []

    def __init__(self, folder, max_num_timeout=3):
        self.folder = Path(folder)
        self.max_num_timeout = max_num_timeout
        self.parameters: dict = {}
        self.arrays: list[tuple[str, object, list]] = []
        FakeSlurmExecutor.instances.append(self)

    def update_parameters(self, **kw):
        self.parameters.update(kw)

    def map_array(self, fn, items):
        items = list(items)
        base = str(next(self.ids))
        self.arrays.append((base, fn, items))
        if len(items) == 1:
            return [FakeJob(base, self.folder)]
        return [FakeJob(f"{base}_{i}", self.folder) for i in range(len(items))]


@pytest.fixture
def fake_slurm(monkeypatch):
    """No cluster: scontrol facts are fixed, squeue answers from ``queue`` (a dict the test fills)."""
    from harness.launch import submit as launch
    from harness.launch import slurm

    FakeSlurmExecutor.instances.clear()
    FakeSlurmExecutor.ids = itertools.count(1000)
    queue: dict[str, str] = {}
    # patched where `harness grid` (harness.launch.launch) looks it up
    monkeypatch.setattr(launch, "cluster_facts", lambda: {"max_array_size": 1001, "kill_wait_s": 30})

    def squeue(ids):
        ids = [str(i) for i in ids]
        return {k: v for k, v in queue.items() if k in ids or k.split("_")[0] in ids}

    monkeypatch.setattr(slurm, "squeue_states", squeue)
    return queue
