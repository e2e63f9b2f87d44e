"""The Weights & Biases logger plugin (``--logger wandb``) in W&B's offline mode: what it writes, and that a W&B
that fails never ends the run.

The plugin is found the way any plugin is, through an entry point of the ``harness`` group. The test declares that
entry point in a throw-away distribution on ``PYTHONPATH`` because an editable install's entry points are those of
the ``pyproject.toml`` it was installed from; where it already lists ``wandb`` the plugin manager registers the
module once.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from harness import records

pytest.importorskip("wandb")

REPO = Path(__file__).resolve().parents[2]


def _entry_point_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    info = site / "harness_wandb_entry-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-wandb-entry\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[harness]\nwandb = harness.loggers.wandb\n")
    return site


def _run(tiny, tmp_path: Path, out: Path, wandb_env: dict[str, str]) -> subprocess.CompletedProcess:
    path = [str(_entry_point_site(tmp_path)), str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "WANDB_SILENT": "true", **wandb_env}
    return subprocess.run([sys.executable, "-m", "harness", "run", "--method", "supervised", "--protocol", "tiny-8",
                           "--out", str(out), "--data-root", str(tiny["data_root"]), "--threads", "1",
                           "--no-progress", "--log-every", "4", "--logger", "wandb"],
                          capture_output=True, text=True, timeout=300, env=env)


def wandb_records(path: Path) -> list:
    """The protobuf records of a ``.wandb`` file: a 7-byte header (``:W&B``, magic, version), then 32 KiB blocks of
    chunks (CRC, length, type: full / first / middle / last), as W&B's own reader splits them."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B data file"
    pos, block, out, buf = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        buf += data[pos:pos + n]
        pos += n
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            out.append(record)
            buf = b""
    return out


def _items(update) -> dict[str, object]:
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in update}


def test_wandb_logger_offline_writes_config_training_evaluations_and_the_record(tiny_benchmark, tmp_path):
    from harness.loggers.wandb import run_id

    wandb_dir = tmp_path / "wandb-dir"
    wandb_dir.mkdir()
    done = _run(tiny_benchmark, tmp_path, tmp_path / "runs", {"WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir)})
    assert done.returncode == 0, done.stderr
    assert "failed in harness_run_event" not in done.stderr, done.stderr
    (run_dir,) = (tmp_path / "runs").glob("tiny-8/supervised/*/seed0")
    rid = run_id(run_dir)
    (data_file,) = wandb_dir.glob(f"wandb/offline-run-*-{rid}/run-{rid}.wandb")
    recs = wandb_records(data_file)

    (run,) = [r.run for r in recs if r.HasField("run")]
    config = _items(run.config.update)
    saved = records.read_json(run_dir / "config.json")
    assert config["method"]["name"] == "supervised"
    assert config["settings_hash"] == saved["settings_hash"]
    assert config["protocol"]["id"] == "tiny-8"

    rows = [_items(r.history.item) for r in recs if r.HasField("history")]
    train = [row for row in rows if "train/loss" in row]
    evals = [row for row in rows if "eval/miou" in row]
    assert [row["step"] for row in train] == [4, 8, 12]
    assert {"train/loss_x", "train/lr", "train/it_per_s"} <= set(train[0])
    assert [row["step"] for row in evals] == [4, 8, 12]  # tiny-8 evaluates every 4 steps
    assert any(k.startswith("eval_class/") for k in evals[-1])

    rec = records.read_json(run_dir / "record.json")
    summary = {}
    for r in recs:
        if r.HasField("summary"):
            summary.update(_items(r.summary.update))
    assert summary["final/miou"] == pytest.approx(rec["final"]["miou"])
    assert summary["best_on_val/miou"] == pytest.approx(rec["best_on_val"]["miou"])
    assert summary["compute/image_passes/with_grad"] == rec["compute"]["image_passes"]["with_grad"]
    (exit_record,) = [r.exit for r in recs if r.HasField("exit")]
    assert exit_record.exit_code == 0
    assert evals[-1]["eval/miou"] == pytest.approx(rec["final"]["miou"])


def test_a_failing_wandb_never_ends_the_run(tmp_path, monkeypatch, capsys):
    """W&B refusing to start (here: a mode it does not know) is reported once, and the run's later events pass."""
    from harness.loggers import wandb as wandb_logger
    from harness.plugins import PluginManager

    monkeypatch.setenv("WANDB_MODE", "no-such-mode")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    pm = PluginManager()
    if not pm.pm.is_registered(wandb_logger):
        pm.pm.register(wandb_logger, name="wandb")
    run_dir = str(tmp_path / "run")
    pm.emit("start", {"run_dir": run_dir, "method": "supervised", "protocol": "tiny-8", "seed": 0, "step": 0,
                      "loggers": ["wandb"], "config": {"settings_hash": "default"}})
    pm.emit("train", {"run_dir": run_dir, "step": 4, "lr": 0.01, "it_per_s": 1.0, "logs": {"loss": 1.0}})
    pm.emit("finish", {"run_dir": run_dir, "final": {"miou": 1.0}})
    err = capsys.readouterr().err
    assert "plugin 'wandb' failed in harness_run_event('start')" in err and "the run goes on" in err
    assert run_dir not in wandb_logger._runs  # nothing half-started is kept for the run's later events


def test_the_wandb_run_id_is_one_per_run_directory(tmp_path):
    """Every start of a run directory (a resume included) logs to the same W&B run; two directories never share."""
    from harness.loggers.wandb import run_id

    a, b = tmp_path / "runs" / "seed0", tmp_path / "runs" / "seed1"
    assert run_id(a) == run_id(tmp_path / "runs" / ".." / "runs" / "seed0") != run_id(b)
    assert len(run_id(a)) == 16 and set(run_id(a)) <= set("0123456789abcdef")  # W&B's allowed id characters


def test_the_package_declares_the_wandb_entry_point_and_extra():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["harness"]["wandb"] == "harness.loggers.wandb"
    assert any(req.startswith("wandb") for req in project["optional-dependencies"]["wandb"])
