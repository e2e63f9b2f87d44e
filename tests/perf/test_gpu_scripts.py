"""The GPU check scripts, rehearsed on the CPU: they run, count, and compare what they say they do."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

PERF = Path(__file__).resolve().parents[2] / "benchmarks" / "perf"


def _load(name):
    sys.path.insert(0, str(PERF))
    try:
        spec = importlib.util.spec_from_file_location(name, PERF / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(PERF))


def test_gpu_step_quick_counts_flops_and_times_the_strong_views(tmp_path):
    out = tmp_path / "step.json"
    subprocess.run([sys.executable, str(PERF / "gpu_step.py"), "--quick", "--device", "cpu", "--methods", "floor",
                    "unimatch", "--modes", "fp32", "--out", str(out)], check=True, capture_output=True, timeout=300)
    doc = json.loads(out.read_text())
    rows = {r["method"]: r for r in doc["results"]}
    assert set(rows) == {"floor", "unimatch"}
    assert rows["floor"]["images_per_step"] == 2 and rows["unimatch"]["images_per_step"] == 6
    # UniMatch runs the model on more images than the floor (weak + two strong views + the source pass)
    assert rows["unimatch"]["flops_per_step"] > 2 * rows["floor"]["flops_per_step"] > 0
    assert 0 < rows["unimatch"]["strong_views_share_of_step"] < 1
    assert doc["matrix_peak"]["tflops"] > 0


def test_history_comparison_tells_identical_from_different_runs():
    checks = _load("gpu_checks")
    a = {"history": [{"step": 5, "miou": 10.0, "train": {"loss": 1.0, "lr": 0.1}},
                     {"step": 10, "miou": 12.0, "train": {"loss": 0.5, "lr": 0.05}}]}
    b = json.loads(json.dumps(a))
    assert checks.compare_histories(a, b)["bit_identical"] is True
    b["history"][1]["miou"] = 12.5
    b["history"][0]["train"]["loss"] = 1.25
    c = checks.compare_histories(a, b)
    assert not c["bit_identical"] and c["max_abs_miou_diff"] == 0.5 and c["max_abs_loss_diff"] == 0.25
    assert checks.compare_histories(a, {"history": a["history"][:1]})["comparable"] is False
