"""scripts/same_training.py: the tensor walk it compares checkpoints with, and (slow) a real comparison."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("same_training", ROOT / "scripts" / "same_training.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tensors_walks_nested_checkpoints():
    ckpt = {"step": 3, "model": {"w": torch.ones(2)}, "rng": [torch.zeros(1), {"cuda": torch.arange(3)}], "x": "s"}
    found = _script().tensors(ckpt)
    assert set(found) == {"/model/w", "/rng/0", "/rng/1/cuda"}
    assert torch.equal(found["/rng/1/cuda"], torch.arange(3))


@pytest.mark.slow
def test_same_checkout_trains_identically(tmp_path, capsys):
    rc = _script().main([str(ROOT), str(ROOT), "--methods", "supervised", "--protocol", "synthetic-pt-100",
                         "--steps", "3", "--out", str(tmp_path)])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["identical"] and doc["methods"]["supervised"]["tensors_compared"] > 50
