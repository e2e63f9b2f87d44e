"""The built wheel works on its own: installed into a fresh virtual environment outside the checkout, it lists
every protocol, reads the published numbers and the grid files, and trains a short synthetic run whose config
records the command, the installed distribution and no git revision (although a git repository surrounds the venv).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import yaml

from harness import records
from harness.report.tables import load_reported

REPO = Path(__file__).resolve().parents[2]


def _run(cmd, cwd, env, timeout=600):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _build_wheel(tmp: Path, env) -> Path:
    # Build from a copy of what the wheel is made of, so the checkout gets no build/ or egg-info folders.
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for pkg in ("harness", "methods"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", str(src),
          "-w", str(out)], cwd=tmp, env=env)
    (wheel,) = out.glob("ssseg_harness-*.whl")
    return wheel


def test_wheel_installed_in_a_fresh_venv_has_its_data_and_trains(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HARNESS_PROTOCOLS", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", HARNESS_CACHE=str(tmp_path / "cache"), PIP_NO_INPUT="1")
    wheel = _build_wheel(tmp_path, env)

    # A git repository around the venv must not be taken for the harness's checkout.
    work = tmp_path / "project"
    work.mkdir()
    _run(["git", "init", "-q"], cwd=work, env=env)
    venv.create(work / "venv", system_site_packages=True, with_pip=True)
    bindir = work / "venv" / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / "python"
    _run([py, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], cwd=work, env=env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    where = json.loads(_run([py, "-c", (
        "import json, harness, harness.resources as r, harness.report.tables as t;"
        "print(json.dumps({'file': harness.__file__, 'reported': len(t.load_reported()),"
        "'grids': sorted(p.name for p in r.grids_dir().glob('*.yaml')),"
        "'typed': (r.resource_dir('..') / 'py.typed').is_file()}))")], cwd=elsewhere, env=env))
    assert Path(where["file"]).resolve().is_relative_to((work / "venv").resolve()), where["file"]
    assert where["reported"] == len(load_reported(REPO / "benchmarks" / "reported")) > 0
    assert where["grids"] == sorted(p.name for p in (REPO / "benchmarks" / "grids").glob("*.yaml"))
    assert where["typed"]

    listing = _run([bindir / "harness", "list", "protocols"], cwd=elsewhere, env=env)
    ids = [p["id"] for f in sorted((REPO / "benchmarks" / "protocols").glob("*.yaml"))
           for p in yaml.safe_load(f.read_text())["protocols"]]
    assert len(ids) > 20
    for pid in ids:
        assert any(line.split()[:1] == [pid] for line in listing.splitlines()), f"{pid} not listed"

    out = elsewhere / "runs"
    _run([bindir / "harness", "run", "--method", "supervised", "--protocol", "synthetic-100", "--set",
          "budget.iterations=2", "--set", "budget.eval_every=2", "--out", str(out), "--no-progress"],
         cwd=elsewhere, env=env)
    (run_dir,) = out.glob("synthetic-100/supervised/*/seed0")
    rec = records.read_json(run_dir / "record.json")
    cfg = records.read_json(run_dir / "config.json")
    assert rec["status"] == "finished" and rec["total_steps"] == 2
    assert "run --method supervised --protocol synthetic-100 --set budget.iterations=2" in cfg["command"]
    assert cfg["harness"]["distribution"] == {"name": "ssseg-harness", "version": cfg["versions"]["ssseg-harness"]}
    assert Path(cfg["harness"]["location"]).resolve().is_relative_to((work / "venv").resolve())
    assert cfg["git_revision"] is None and cfg["harness"]["git_revision"] is None
    assert cfg["method"]["distribution"] == "ssseg-harness" and cfg["method"]["version"]
