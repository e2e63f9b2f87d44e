"""The example third-party package (examples/harness-entmin), built and installed for real, trains through the CLI."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import records

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "harness-entmin"


def test_installed_plugin_distribution_trains_through_the_cli(tiny_benchmark, tmp_path):
    import shutil

    src = tmp_path / "src"  # a copy: building in place would leave build/ and *.egg-info in the repository
    shutil.copytree(EXAMPLE, src)
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                          "--target", str(site), str(src)], capture_output=True, text=True, timeout=300)
    if pip.returncode != 0:
        pytest.fail(f"pip install of the plugin failed:\n{pip.stdout}\n{pip.stderr}")
    env = {**os.environ, "PYTHONPATH": str(site)}
    listing = subprocess.run([sys.executable, "-m", "harness.cli", "list", "methods"], env=env,
                             capture_output=True, text=True, timeout=120)
    line = next(l for l in listing.stdout.splitlines() if l.startswith("entmin"))
    assert "harness-entmin 0.3.1" in line and "Entropy minimisation" in line
    protocols = subprocess.run([sys.executable, "-m", "harness", "list", "protocols"], env=env,
                               capture_output=True, text=True, timeout=120)
    assert any(l.split()[:3] == ["synthetic-100-short", "synthetic", "synthetic-short"]
               for l in protocols.stdout.splitlines()), protocols.stdout
    settings = subprocess.run([sys.executable, "-m", "harness", "list", "settings", "entmin", "--protocol",
                               "synthetic-100-short"], env=env, capture_output=True, text=True, timeout=120)
    assert settings.stdout.splitlines()[2].split()[:4] == ["weight", "float", "0.1", "0.1"], settings.stdout
    out = tmp_path / "runs"
    run = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--method", "entmin", "--protocol", "tiny-8",
                          "--set", "weight=0.5", "--set", "budget.iterations=4", "--out", str(out),
                          "--data-root", str(tiny_benchmark["data_root"]), "--no-progress"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    (record_path,) = out.glob("tiny-8/entmin/*/seed0/record.json")
    rec = records.read_json(record_path)
    assert rec["status"] == "finished" and rec["total_steps"] == 4
    cfg = records.read_json(record_path.parent / "config.json")
    assert cfg["method"]["distribution"] == "harness-entmin" and cfg["method"]["config"] == {"weight": 0.5}
    assert "entropy" in records.read_metrics(record_path.parent / "metrics.jsonl")[-1]["train"]
