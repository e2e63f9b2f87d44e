"""End-to-end runs on a tiny synthetic benchmark: records, resume, refusals, bad input."""

import json

import pytest
import torch

from harness import records
from harness.cli import main
from harness.train.engine import StopRequested
from harness.errors import ConfigError, HarnessError, NonFiniteLossError
from harness.method import StepOutput
from harness.plugins import get_plugin_manager
from harness.train.run import RunSpec, execute, run_dir


def spec(tiny, tmp_path, **kw):
    base = dict(method="supervised", protocol="tiny-8", out=str(tmp_path / "runs"),
                data_root=str(tiny["data_root"]), progress=False)
    base.update(kw)
    return RunSpec(**base)


def test_cli_run_writes_a_complete_record_and_refuses_to_overwrite(tiny_benchmark, tmp_path, capsys):
    argv = ["run", "--method", "supervised", "--protocol", "tiny-8", "--seed", "3", "--out", str(tmp_path / "r"),
            "--data-root", str(tiny_benchmark["data_root"]), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "supervised on tiny-8 seed 3: final mIoU" in out
    d = tmp_path / "r" / "tiny-8" / "supervised" / "default" / "seed3"
    rec = records.read_json(d / "record.json")
    assert rec["status"] == "finished" and rec["total_steps"] == 12 and rec["num_evals"] == 3
    assert 0 <= rec["final"]["miou"] <= 100 and len(rec["final"]["iou"]) == 8
    assert rec["pretrained_source"].startswith("random") and rec["evaluated"] == "student"
    cfg = records.read_json(d / "config.json")
    assert cfg["versions"]["torch"] and cfg["git_revision"] and cfg["split_checksums"]
    assert cfg["method"]["distribution"] == "ssseg-harness"
    import torch
    assert cfg["torch_threads"] == torch.get_num_threads()  # floats of a run depend on it
    assert cfg["device_name"] == records.device_name(torch.device("cpu")) and cfg["device_name"] != "cpu"
    from harness.data.synthetic import content_fingerprint
    assert cfg["data_fingerprint"] == content_fingerprint(tiny_benchmark["data_root"])  # which pixels it saw
    assert len(records.read_metrics(d / "metrics.jsonl")) == 3
    before = (d / "record.json").read_bytes()
    assert main(argv) == 2
    assert "already finished" in capsys.readouterr().err
    assert (d / "record.json").read_bytes() == before


def _final(record):
    return record["final"]["miou"], record["final"]["iou"]


@pytest.mark.parametrize("method, stop_after", [("supervised", 1), ("supervised", 6), ("mean_teacher", 5),
                                               ("imas", 11), ("unimatch", 3), ("s4mim", 7), ("combined", 10)])
def test_interrupted_and_resumed_run_ends_with_identical_metrics(tiny_benchmark, tmp_path, method, stop_after):
    # Every method draws random augmentations; iMAS/combined pass their first epoch (10 steps) here.
    full = execute(spec(tiny_benchmark, tmp_path / "a", method=method))
    interrupted = spec(tiny_benchmark, tmp_path / "b", method=method, stop_after=stop_after)
    with pytest.raises(StopRequested):
        execute(interrupted)
    assert not (run_dir(interrupted) / "record.json").exists()
    assert records.read_json(run_dir(interrupted) / "status.json")["state"] == "stopped"
    resumed = execute(spec(tiny_benchmark, tmp_path / "b", method=method))
    assert _final(resumed) == _final(full)
    a = [e["miou"] for e in records.read_metrics(run_dir(spec(tiny_benchmark, tmp_path / "a", method=method))
                                                 / "metrics.jsonl")]
    b = [e["miou"] for e in records.read_metrics(run_dir(interrupted) / "metrics.jsonl")]
    assert a == b


def test_unknown_method_key_is_a_config_error_naming_it(tiny_benchmark, tmp_path):
    with pytest.raises(ConfigError, match=r"key 'tauu'.*Keys of this method: budget"):
        execute(spec(tiny_benchmark, tmp_path, overrides={"tauu": 0.9}))
    with pytest.raises(ConfigError, match="budget.iters"):
        execute(spec(tiny_benchmark, tmp_path, overrides={"budget.iters": 3}))
    with pytest.raises(ConfigError, match="budget.lr"):
        execute(spec(tiny_benchmark, tmp_path, overrides={"budget.lr": "fast"}))
    assert not (tmp_path / "runs").exists()


def test_semi_supervised_method_on_a_fully_labeled_protocol_is_refused(tiny_benchmark, tmp_path):
    pm = get_plugin_manager()
    semi = next((m for m in pm.methods if m.cls.uses_unlabeled), None)
    if semi is None:
        pytest.skip("no semi-supervised method installed")
    with pytest.raises(ConfigError, match="no unlabeled split"):
        execute(spec(tiny_benchmark, tmp_path, method=semi.name, protocol="tiny-full"))


def test_fully_supervised_protocol_runs(tiny_benchmark, tmp_path):
    rec = execute(spec(tiny_benchmark, tmp_path, protocol="tiny-full", overrides={"budget.iterations": 4}))
    assert rec["total_steps"] == 4 and rec["labeled"] == 48


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_benchmark, tmp_path, monkeypatch):
    info = get_plugin_manager().methods.get("supervised")
    original = info.cls.training_step

    def poisoned(self, labeled, unlabeled, step):
        out = original(self, labeled, unlabeled, step)
        if step == 6:
            return StepOutput(out.loss * float("nan"), {"loss_x": float("nan")})
        return out

    monkeypatch.setattr(info.cls, "training_step", poisoned)
    s = spec(tiny_benchmark, tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss by step 7 of 12.*loss_x.*step 4"):
        execute(s)
    d = run_dir(s)
    ckpt = torch.load(d / "latest.pt", weights_only=False)
    assert ckpt["step"] == 4 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    status = records.read_json(d / "status.json")
    assert status["state"] == "failed" and "NonFiniteLossError" in status["error"]
    assert not (d / "record.json").exists()


def test_resume_refuses_a_checkpoint_of_another_configuration(tiny_benchmark, tmp_path):
    s = spec(tiny_benchmark, tmp_path, stop_after=2)
    with pytest.raises(StopRequested):
        execute(s)
    cfg_path = run_dir(s) / "config.json"
    doc = json.loads(cfg_path.read_text())
    doc["total_steps"] = 999
    cfg_path.write_text(json.dumps(doc))
    with pytest.raises(HarnessError, match="different configuration"):
        execute(spec(tiny_benchmark, tmp_path))


def test_force_retrains_a_finished_run(tiny_benchmark, tmp_path):
    s = spec(tiny_benchmark, tmp_path, overrides={"budget.iterations": 2})
    first = execute(s)
    again = execute(spec(tiny_benchmark, tmp_path, overrides={"budget.iterations": 2}, force=True))
    assert _final(again) == _final(first)
