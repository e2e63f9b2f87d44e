"""--metric selected: val mIoU at the evaluation that is best on the held-out selection split; records of older
harness versions (no "selected") still load and are named, not counted."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.report.results import aggregate, load_results, per_class
from harness.train.run import selected_checkpoint
from harness.report.tables import SELECTED_TITLE, build_table, render

from .conftest import write_run


def _history(val, sel):
    return [{"step": 25 * (i + 1), "miou": v, "iou": [v / 100] * 8, **({"selection": {"miou": s}} if s is not None
                                                                        else {})}
            for i, (v, s) in enumerate(zip(val, sel))]


def test_selected_checkpoint_is_the_best_on_the_selection_split_not_on_val():
    h = _history([50.0, 58.0, 55.0, 54.0], [40.0, 41.0, 47.0, 47.0])  # val peaks at step 50, selection at 75 and 100
    chosen = selected_checkpoint(h)
    assert chosen["step"] == 75 and chosen["miou"] == 55.0 and chosen["selection_miou"] == 47.0  # first of equals
    assert max(h, key=lambda e: e["miou"])["step"] == 50  # what best-on-val would have picked
    # an evaluation without a selection score (a protocol without one, or a resume of an older run): no choice
    assert selected_checkpoint(_history([50.0, 58.0], [None, 41.0])) is None
    assert selected_checkpoint([]) is None


def _record(run_dir, **fields):
    path = run_dir / "record.json"
    rec = json.loads(path.read_text())
    rec.update(fields)
    path.write_text(json.dumps(rec))


def test_table_metric_selected_reports_the_selected_checkpoint(tmp_path, capsys):
    root = tmp_path / "runs"
    for seed, (val, sel) in enumerate([([50.0, 58.0, 55.0, 54.0], [40.0, 41.0, 47.0, 45.0]),
                                       ([52.0, 57.0, 53.0, 56.0], [42.0, 46.0, 43.0, 44.0])]):
        h = _history(val, sel)
        d = write_run(root, "supervised", "synthetic-100", seed, val[-1], metrics=h)
        _record(d, selected=selected_checkpoint(h))
    old = write_run(root, "supervised", "synthetic-100", 2, 51.0)  # an older record: no "selected"
    rs = load_results([root])
    assert len(rs.runs) == 3 and not rs.warnings
    agg = aggregate(rs.runs, "selected").iloc[0]
    assert agg["n"] == 2 and agg["mean"] == pytest.approx((55.0 + 57.0) / 2)  # steps 75 and 50
    t = build_table(rs, metric="selected", reported=None)
    text = render(t, "markdown")
    assert SELECTED_TITLE in text and "56.00 ± 1.41" in text
    assert f"{old / 'record.json'}: no selected" in text
    assert "selected (on the held-out selection split" in render(t, "csv")
    df, _ = per_class(rs.runs, "synthetic-100", "selected")
    assert df.iloc[0]["n"] == 2 and df.iloc[0]["mIoU"] == pytest.approx(56.0)
    assert main(["table", str(root), "--metric", "selected"]) == 0
    assert SELECTED_TITLE in capsys.readouterr().out
    # the final-checkpoint table still counts all three
    assert aggregate(rs.runs, "final").iloc[0]["n"] == 3
    pytest.importorskip("matplotlib")
    for kind in ("miou-vs-labels", "per-class"):
        png = tmp_path / f"{kind}.png"
        assert main(["plot", str(root), "--kind", kind, "--metric", "selected", "--protocol", "synthetic-100",
                     "--out", str(png)]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
