"""Inputs a user gets wrong are one paragraph naming the file or value and the way on, never a traceback."""

from __future__ import annotations

import shutil

import pytest
import torch

from harness.cli import main
from harness.errors import NonFiniteLossError
from harness.method import StepOutput
from harness.plugins import get_plugin_manager
from harness.train.run import RunSpec, execute

from .conftest import run_args


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _run(tiny, out, *extra, method="supervised"):
    return run_args(tiny, out, *extra, method=method)


def _ckpt(out, method="supervised"):
    return out / "tiny-8" / method / "default" / "seed0" / "latest.pt"


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("option, value, expected", [
    ("--seed", "-1", "--seed must be a whole number >= 0"),
    ("--workers", "-1", "--workers must be a whole number >= 0"),
    ("--stop-after", "0", "--stop-after must be a number of steps >= 1, got 0"),
    ("--threads", "0", "--threads must be at least 1"),
    ("--checkpoint-every", "5x", "--checkpoint-every expects N (steps)"),
])
def test_out_of_range_options_are_refused_before_anything_is_written(tiny_benchmark, tmp_path, capsys, option, value,
                                                                     expected):
    assert main(_run(tiny_benchmark, tmp_path / "r", option, value)) == 2
    assert expected in _error(capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("damage, expected", [
    (lambda p: p.write_bytes(b""), "is empty (0 bytes), so the run cannot resume"),
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "cannot be read ("),
    (lambda p: p.write_text("not a checkpoint"), "cannot be read ("),
    (lambda p: torch.save({"weights": torch.zeros(3)}, p), "is not a checkpoint of a harness run (no step, model"),
])
def test_a_damaged_checkpoint_is_named_with_the_way_on(tiny_benchmark, tmp_path, capsys, damage, expected):
    out = tmp_path / "r"
    assert main(_run(tiny_benchmark, out, "--stop-after", "2")) == 0
    damage(_ckpt(out))
    capsys.readouterr()
    assert main(_run(tiny_benchmark, out)) == 2
    err = _error(capsys)
    assert f"checkpoint {_ckpt(out)} " in err or f"{_ckpt(out)} is not a checkpoint" in err
    assert expected in err and "Pass --force to start the run again from step 0" in err, err
    assert main(_run(tiny_benchmark, out, "--force", "--stop-after", "1")) == 0


@pytest.mark.parametrize("old_format", [False, True])
def test_a_checkpoint_of_another_method_is_refused(tiny_benchmark, tmp_path, capsys, old_format):
    """The issue's case: a supervised checkpoint in an iMAS folder (before: ``KeyError: 'teacher'``)."""
    assert main(_run(tiny_benchmark, tmp_path / "a", "--stop-after", "2")) == 0
    assert main(_run(tiny_benchmark, tmp_path / "b", "--stop-after", "2", method="imas")) == 0
    foreign = torch.load(_ckpt(tmp_path / "a"), weights_only=False)
    if old_format:  # written before checkpoints named their run
        foreign.pop("run")
    torch.save(foreign, _ckpt(tmp_path / "b", "imas"))
    capsys.readouterr()
    assert main(_run(tiny_benchmark, tmp_path / "b", method="imas")) == 2
    err = _error(capsys)
    if old_format:
        assert "does not fit this imas run on tiny-8 (" in err and "written by another method" in err, err
    else:
        assert "was written by a supervised run on tiny-8 seed 0, not by this imas run" in err, err
    assert "--force" in err


def test_a_read_only_out_is_named(tiny_benchmark, tmp_path, capsys, small_fs):
    ro = small_fs("1m", readonly=True)
    assert main(_run(tiny_benchmark, ro)) == 2
    err = _error(capsys)
    assert f"cannot create the run directory {ro / 'tiny-8'}" in err and f"--out {ro}: read-only file system" in err


def test_non_finite_loss_before_any_checkpoint_does_not_promise_a_resume(tiny_benchmark, tmp_path, monkeypatch):
    info = get_plugin_manager().methods.get("supervised")
    original = info.cls.training_step

    def poisoned(self, labeled, unlabeled, step):
        out = original(self, labeled, unlabeled, step)
        return StepOutput(out.loss * float("nan"), out.logs) if step == 1 else out

    monkeypatch.setattr(info.cls, "training_step", poisoned)
    s = RunSpec(method="supervised", protocol="tiny-8", out=str(tmp_path / "r"),
                data_root=str(tiny_benchmark["data_root"]), progress=False)
    with pytest.raises(NonFiniteLossError) as err:
        execute(s)
    text = str(err.value)
    assert "no checkpoint had been written yet" in text and "starts the run again from step 0" in text
    assert "resume" not in text
    shutil.rmtree(tmp_path / "r")


def test_harness_eval_of_a_damaged_checkpoint_is_one_sentence(tiny_benchmark, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(_run(tiny_benchmark, out, "--stop-after", "2")) == 0
    _ckpt(out).write_bytes(_ckpt(out).read_bytes()[:1000])
    capsys.readouterr()
    assert main(["eval", str(_ckpt(out).parent)]) == 2
    err = _error(capsys)
    assert f"checkpoint {_ckpt(out)} cannot be read (1000 bytes" in err and "so it cannot be evaluated" in err
