"""A resume checks the facts that change a run's numbers, and config.json keeps every start's facts."""

from __future__ import annotations

import json

import pytest
import torch

from harness import records
from harness.cli import main


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _argv(tiny, tmp_path, *extra):
    return ["run", "--method", "supervised", "--protocol", "tiny-8", "--out", str(tmp_path / "r"), "--data-root",
            str(tiny["data_root"]), "--no-progress", *extra]


def _dir(tmp_path):
    return tmp_path / "r" / "tiny-8" / "supervised" / "default" / "seed0"


def test_resume_with_another_thread_count_is_refused_and_every_start_is_kept(tiny_benchmark, tmp_path, capsys):
    assert main(_argv(tiny_benchmark, tmp_path, "--threads", "2", "--stop-after", "2")) == 0
    d = _dir(tmp_path)
    first = (d / "config.json").read_text()
    capsys.readouterr()
    assert main(_argv(tiny_benchmark, tmp_path, "--threads", "1")) == 2
    err = capsys.readouterr().err
    assert "torch threads: 2 at the start, 1 now (rerun with --threads 2" in err and "--force" in err, err
    assert (d / "config.json").read_text() == first  # the refused start changed nothing
    assert main(_argv(tiny_benchmark, tmp_path, "--threads", "2", "--stop-after", "3")) == 0
    assert main(_argv(tiny_benchmark, tmp_path, "--threads", "2")) == 0
    cfg = records.read_json(d / "config.json")
    assert cfg["torch_threads"] == 2 and cfg["resumed_from_step"] == 5
    assert [s["from_step"] for s in cfg["starts"]] == [0, 2, 5]
    assert all(s["torch_threads"] == 2 and s["versions"] == records.package_versions() for s in cfg["starts"])
    assert records.read_json(d / "record.json")["status"] == "finished"


@pytest.mark.parametrize("key, value, expected", [
    (("versions", "torch"), "1.0.0", f"torch: 1.0.0 at the start, {records.package_versions()['torch']} now (rerun "
                                     f"in an environment with torch 1.0.0)"),
    (("versions", "numpy"), "1.0.0", "numpy: 1.0.0 at the start"),
    (("data_fingerprint",), "0" * 64, "data fingerprint: 000"),
    (("device",), "cuda", "device type: cuda at the start, cpu now (rerun with --device cuda"),
    (("world_size",), 2, "processes: 2 at the start, 1 now"),
])
def test_resume_names_each_fact_that_changed(tiny_benchmark, tmp_path, capsys, key, value, expected):
    torch.set_num_threads(1)
    assert main(_argv(tiny_benchmark, tmp_path, "--stop-after", "1")) == 0
    path = _dir(tmp_path) / "config.json"
    doc = json.loads(path.read_text())
    node = doc
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = value
    path.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(_argv(tiny_benchmark, tmp_path, "--device", "cpu")) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err, err


def test_a_run_recorded_before_a_model_setting_existed_resumes(tiny_benchmark, tmp_path, capsys):
    """config.json of older code lacks model.freeze_backbone: it counts at its default (what that run did), while a
    recorded value other than this run's is still another configuration."""
    torch.set_num_threads(1)
    assert main(_argv(tiny_benchmark, tmp_path, "--stop-after", "1")) == 0
    path = _dir(tmp_path) / "config.json"
    doc = json.loads(path.read_text())
    assert doc["protocol"]["model"].pop("freeze_backbone") is False
    path.write_text(json.dumps(doc))
    assert main(_argv(tiny_benchmark, tmp_path, "--stop-after", "2")) == 0
    cfg = records.read_json(path)
    assert [s["from_step"] for s in cfg["starts"]] == [0, 1] and "freeze_backbone" not in cfg["protocol"]["model"]
    cfg["protocol"]["model"]["freeze_backbone"] = True
    path.write_text(json.dumps(cfg))
    capsys.readouterr()
    assert main(_argv(tiny_benchmark, tmp_path)) == 2
    assert "holds a checkpoint of a different configuration" in capsys.readouterr().err
