"""iMAS and combined train on 1, 2 and 4 processes (gloo, CPU) with their default group_size 4 over an unlabeled
batch of 4: one group per process, a group over two processes (2 images each), a group over four (1 each).
Before groups could span processes, every multi-process run stopped at step 0."""

import os
import shutil
import socket
import subprocess
import sys

import pytest

from harness import records


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("world", [1, 2, 4])
@pytest.mark.parametrize("method", ["imas", "combined"])
def test_imas_family_trains_on_several_processes(tiny_benchmark, tmp_path, method, world):
    if world > 1 and shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    out = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = ([sys.executable, "-m", "harness.cli"] if world == 1 else
                ["torchrun", "--nproc_per_node", str(world), "--master_port", str(_free_port()), "-m", "harness.cli"])
    # cutmix_trigger=1.0: every group fires, so images are pasted across processes in every step
    cmd = [*launcher, "run", "--method", method, "--protocol", "tiny-8", "--data-root",
           str(tiny_benchmark["data_root"]), "--out", str(out), "--set", "budget.iterations=2",
           "--set", "cutmix_trigger=1.0", "--no-progress"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (run_dir,) = out.glob(f"tiny-8/{method}/*/seed0")
    rec = records.read_json(run_dir / "record.json")
    assert rec["status"] == "finished" and rec["world_size"] == world and rec["total_steps"] == 2
    assert rec["evaluated"] == "teacher"  # iMAS reports its EMA teacher
    logs = records.read_metrics(run_dir / "metrics.jsonl")[-1]
    assert logs["train"]["cutmix_fired"] == 1.0
