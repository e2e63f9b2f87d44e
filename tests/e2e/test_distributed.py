"""A 2-process (gloo) run through torchrun: one record, and its evaluation equals a 1-process evaluation."""

import os
import shutil
import subprocess

import pytest

from harness import records
from harness.evaluation.checkpoint_eval import evaluate_checkpoint


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_two_process_run_records_world_size_and_evaluates_like_one_process(tiny_benchmark, tmp_path):
    out = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = ["torchrun", "--nproc_per_node", "2", "--master_port", "29517", "-m", "harness.cli", "run",
           "--method", "supervised", "--protocol", "tiny-8", "--data-root", str(tiny_benchmark["data_root"]),
           "--out", str(out), "--set", "budget.iterations=4", "--no-progress"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("final mIoU") == 1
    (run_dir,) = out.glob("tiny-8/supervised/*/seed0")
    rec = records.read_json(run_dir / "record.json")
    cfg = records.read_json(run_dir / "config.json")
    assert rec["world_size"] == 2 and cfg["world_size"] == 2
    # 8 val images sharded 4 + 4 across the ranks, summed confusion matrices: same mIoU as one process.
    single = evaluate_checkpoint(str(run_dir), device="cpu")
    assert single["miou"] == pytest.approx(rec["final"]["miou"], abs=1e-9)
