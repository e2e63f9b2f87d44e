"""harness diagnose: per-class pseudo-label quality of the reference run beside each method's IoU Δ."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.cli import main
from harness.report.diagnose import class_diagnostics


def test_class_diagnostics_on_a_hand_made_matrix():
    # rows: ground truth, columns: prediction; confident ⊂ full
    full = np.array([[90, 10, 0], [20, 60, 20], [0, 0, 0]])
    conf = np.array([[80, 2, 0], [10, 30, 15], [0, 0, 0]])
    rows = class_diagnostics(full, conf, ["bg", "a", "b"])
    bg, a, b = rows
    assert bg["kept_right"] == pytest.approx(80.0) and bg["kept_wrong"] == pytest.approx(2.0)
    assert bg["main_wrong"] == "a" and bg["ratio"] == pytest.approx(40.0)
    assert a["kept_right"] == pytest.approx(30.0) and a["kept_wrong"] == pytest.approx(25.0)
    assert a["main_wrong"] == "b" and a["ratio"] == pytest.approx(1.2)
    assert math.isnan(b["kept_right"]) and math.isnan(b["ratio"]) and b["main_wrong"] is None
    clean = class_diagnostics(np.eye(2) * 5, np.eye(2) * 5, ["x", "y"])
    assert clean[0]["ratio"] == math.inf and clean[0]["main_wrong"] is None


def test_diagnose_a_tiny_grid_and_reuse_the_cached_evaluation(tiny_benchmark, tmp_path, capsys):
    out = tmp_path / "runs"
    common = ["--protocol", "tiny-8", "--out", str(out), "--data-root", str(tiny_benchmark["data_root"]),
              "--threads", "1", "--no-progress"]
    for method, seed in (("supervised", 0), ("supervised", 1), ("fixmatch", 0)):
        assert main(["run", "--method", method, "--seed", str(seed), *common]) == 0
    capsys.readouterr()
    args = ["diagnose", str(out), "--protocol", "tiny-8", "--data-root", str(tiny_benchmark["data_root"])]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "| class | supervised kept right % |" in text and "fixmatch − supervised" in text
    assert "seeds: supervised 2, fixmatch 1" in text
    mious = [line for line in text.splitlines() if line.startswith("| mIoU")]
    assert len(mious) == 1
    cache = out / "tiny-8" / "supervised" / "default" / "seed0" / "diagnostics" / "unlabeled-tau0.95.json"
    assert cache.is_file()
    # the cached evaluation is read without the checkpoint, and gives the same table
    (cache.parent.parent / "latest.pt").unlink()
    assert main(args) == 0
    assert capsys.readouterr().out == text
    # another seed has no cache and no checkpoint once removed: a clear error
    (out / "tiny-8" / "supervised" / "default" / "seed1" / "latest.pt").unlink()
    assert main([*args, "--seed", "1"]) == 2
    assert "no diagnostics/unlabeled-tau0.95.json and no checkpoint" in capsys.readouterr().err
