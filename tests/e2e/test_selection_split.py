"""The selection split end to end: evaluated at every evaluation point, the record's "selected" checkpoint,
`harness eval --split selection`, split-seed protocols in records, and a run started by an older harness (its
protocol without a selection split, its config without the new keys) that resumes and tabulates."""

from __future__ import annotations

import json

import pytest

from harness import records
from harness.cli import main
from harness.data.synthetic import generate, small_protocols_yaml
from harness.train.engine import StopRequested
from harness.plugins import get_plugin_manager
from harness.report.results import load_results
from harness.train.run import RunSpec, execute, run_dir, selected_checkpoint
from harness.report.tables import build_table, render

from ..conftest import TINY_BUDGET


@pytest.fixture(scope="module")
def sel_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("sel") / "data", num_train=40, num_val=8, labeled_counts=(8,),
                    selection_count=8, split_seeds=(1, 2))


def _use_protocols(monkeypatch, tmp_path, root, split_seeds: bool):
    pdir = tmp_path / ("with" if split_seeds else "without")
    pdir.mkdir(exist_ok=True)
    (pdir / "sel.yaml").write_text(small_protocols_yaml(root, "sel", TINY_BUDGET, split_seeds=split_seeds))
    monkeypatch.setenv("HARNESS_PROTOCOLS", str(pdir))
    get_plugin_manager.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_registry():
    yield
    get_plugin_manager.cache_clear()


def _spec(root, out, **kw):
    return RunSpec(**{"method": "supervised", "protocol": "sel-8", "out": str(out), "data_root": str(root),
                      "progress": False, **kw})


def test_selection_is_evaluated_and_chooses_the_recorded_checkpoint(sel_root, tmp_path, monkeypatch, capsys):
    _use_protocols(monkeypatch, tmp_path, sel_root, split_seeds=True)
    rec = execute(_spec(sel_root, tmp_path / "runs", protocol="sel-8-split2"))
    d = run_dir(_spec(sel_root, tmp_path / "runs", protocol="sel-8-split2"))
    history = records.read_metrics(d / "metrics.jsonl")
    assert len(history) == 3 and all(0 <= e["selection"]["miou"] <= 100 for e in history)
    assert rec["selected"] == selected_checkpoint(history) and rec["selected"]["step"] in {4, 8, 12}
    assert (rec["split_of"], rec["split_seed"]) == ("sel-8", 2)
    cfg = records.read_json(d / "config.json")
    assert "selection.txt" in cfg["split_checksums"] and "seed2/8/labeled.txt" in cfg["split_checksums"]
    # harness eval --split selection scores the final checkpoint on the same list the run evaluated
    assert main(["eval", str(d), "--split", "selection", "--json", str(tmp_path / "eval.json")]) == 0
    assert "the selection list of sel-8-split2" in capsys.readouterr().out
    out = json.loads((tmp_path / "eval.json").read_text())
    assert out["num_images"] == 8 and out["miou"] == pytest.approx(history[-1]["selection"]["miou"], abs=1e-6)


def test_a_run_started_without_a_selection_split_resumes_and_tabulates(sel_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs"
    _use_protocols(monkeypatch, tmp_path, sel_root, split_seeds=False)  # the protocol as an older harness had it
    with pytest.raises(StopRequested):
        execute(_spec(sel_root, out, stop_after=5))  # evaluated at step 4, checkpoint at 5
    d = run_dir(_spec(sel_root, out))
    cfg = records.read_json(d / "config.json")
    for key in ("split_of", "split_seed"):  # the config an older harness wrote had no such keys
        del cfg["protocol"][key]
    del cfg["protocol"]["splits"]["selection"]
    (d / "config.json").write_text(json.dumps(cfg))
    _use_protocols(monkeypatch, tmp_path, sel_root, split_seeds=True)  # now the protocol has a selection split
    rec = execute(_spec(sel_root, out))
    history = records.read_metrics(d / "metrics.jsonl")
    assert "selection" not in history[0] and all("selection" in e for e in history[1:])
    assert rec["selected"] is None  # chosen among only some evaluations would be another rule
    rs = load_results([out])
    assert len(rs.runs) == 1
    text = render(build_table(rs, metric="final", reported=None), "markdown")
    assert f"{rec['final']['miou']:.2f}" in text
    selected = render(build_table(rs, metric="selected", reported=None), "markdown")
    assert f"{d / 'record.json'}: no selected" in selected  # named in the notes, not counted
