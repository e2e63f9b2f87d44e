"""Results layer: discovery, aggregation, paper-style tables, reference rows, CSV/LaTeX output, CLI."""

from __future__ import annotations

import io
import json
import math
import statistics
import time

import pandas as pd
import pytest

from harness.cli import main
from harness.report.results import ResultsWarning, aggregate, load_results
from harness.report.tables import (BEST_TITLE, REPORTED_COLUMNS, build_per_class, build_table, fmt_stats, load_reported,
                                   render)

from .conftest import write_run


def _table(root, **kw):
    rs = load_results([root], warn=False)
    return build_table(rs, reported=kw.pop("reported", None), **kw)


def _md_row(text: str, label: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells and cells[0].strip("*") == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in\n{text}")


def _header(text: str) -> list[str]:
    line = next(l for l in text.splitlines() if l.startswith("| method"))
    return [c.strip() for c in line.strip().strip("|").split(" | ")][1:]


# ----------------------------------------------------------------- aggregation


def test_mean_and_sample_std_over_seeds(fake_root):
    rs = load_results([fake_root], warn=False)
    agg = aggregate(rs.runs).set_index(["protocol", "method"])
    a = agg.loc[("voc-92", "imas")]
    assert a["n"] == 3 and a["seeds"] == (0, 1, 2)
    assert a["mean"] == pytest.approx(statistics.mean([70.0, 70.0, 73.0]))
    assert a["std"] == pytest.approx(statistics.stdev([70.0, 70.0, 73.0]))  # n − 1
    assert a["std"] == pytest.approx(math.sqrt(3.0))
    md = render(_table(fake_root), "markdown")
    assert _md_row(md, "iMAS")[0] == "71.00 ± 1.73"
    assert fmt_stats(72.314, 0.8449, 3) == "72.31 ± 0.84 (3)"
    assert fmt_stats(72.314, 0.8449, 3, usual_n=3) == "72.31 ± 0.84"  # the caption says the usual count once
    assert fmt_stats(72.314, math.nan, 1) == "72.31 (1)"  # a single run shows no ±


def test_single_run_has_no_plus_minus(tmp_path):
    write_run(tmp_path, "supervised", "voc-92", 0, 45.0)
    write_run(tmp_path, "unimatch", "voc-92", 0, 70.123)
    md = render(_table(tmp_path), "markdown")
    assert _md_row(md, "UniMatch") == ["**70.12**"]
    assert "one run per cell" in md
    assert "±" not in _md_row(md, "Supervised")[0]


def test_corrupt_and_incomplete_records_are_skipped_with_warnings(fake_root):
    bad = fake_root / "voc-92" / "unimatch" / "default" / "seed7"
    bad.mkdir(parents=True)
    (bad / "record.json").write_text('{"method": "unimatch", "final": {"miou": 7')
    partial = write_run(fake_root, "unimatch", "voc-92", 8, 99.0)
    rec = json.loads((partial / "record.json").read_text())
    del rec["family"], rec["final"]
    (partial / "record.json").write_text(json.dumps(rec))
    with pytest.warns(ResultsWarning) as caught:
        rs = load_results([fake_root])
    texts = [str(w.message) for w in caught]
    assert any(str(bad / "record.json") in t and "corrupt JSON" in t for t in texts)
    assert any(str(partial / "record.json") in t and "family" in t and "final.miou" in t for t in texts)
    assert len(rs.warnings) == 2
    assert 99.0 not in set(rs.runs["final_miou"])
    assert set(rs.runs[rs.runs.protocol.eq("voc-92") & rs.runs.method.eq("unimatch")]["seed"]) == {0, 1, 2}


def test_duplicate_run_counted_once(fake_root, tmp_path):
    other = tmp_path / "copy"
    write_run(other, "unimatch", "voc-92", 0, 74.0)
    rs = load_results([fake_root, other], warn=False)
    assert sum(rs.runs.protocol.eq("voc-92") & rs.runs.method.eq("unimatch")) == 3
    assert any("duplicate" in w for w in rs.warnings)


# ----------------------------------------------------------------- table layout


def test_best_cell_marked_per_column(fake_root):
    t = _table(fake_root)
    md = render(t, "markdown")
    assert _md_row(md, "UniMatch")[0] == "**75.00 ± 1.00**"          # voc-92
    assert _md_row(md, "iMAS")[1] == "**80.50 ± 0.00**"              # voc-732: iMAS beats UniMatch
    assert _md_row(md, "UniMatch")[1] == "80.00 ± 1.00"
    for col in t.columns:
        assert sum(t.cell(r, col).best for r in t.rows if r.kind == "harness") >= 1
    tex = render(t, "latex")
    assert r"\textbf{75.00 $\pm$ 1.00}" in tex


def test_a_tie_at_the_shown_precision_bolds_no_cell_in_every_format(tmp_path):
    for s in range(2):
        write_run(tmp_path, "unimatch", "voc-92", s, 70.0)
        write_run(tmp_path, "imas", "voc-92", s, 70.001)  # 70.00 as shown: a tie, although not in the fourth digit
        write_run(tmp_path, "supervised", "voc-92", s, 60.0)
        write_run(tmp_path, "unimatch", "voc-732", s, 71.0)
        write_run(tmp_path, "imas", "voc-732", s, 70.99)
    t = _table(tmp_path)
    md = render(t, "markdown")
    assert _md_row(md, "UniMatch")[0] == "70.00 ± 0.00" and _md_row(md, "iMAS")[0] == "70.00 ± 0.00"
    assert _md_row(md, "UniMatch")[1] == "**71.00 ± 0.00**" and _md_row(md, "iMAS")[1] == "70.99 ± 0.00"
    assert "not bold" in md  # the rule is said
    tex = render(t, "latex")
    assert tex.count(r"\textbf{") == 1 and r"\textbf{71.00 $\pm$ 0.00}" in tex
    assert pd.read_csv(io.StringIO(render(t, "csv"))).best.sum() == 1


def test_missing_and_partial_cells_are_dashes_with_notes(fake_root):
    from harness.train.runlock import RunLock

    write_run(fake_root, "imas", "voc-1464", 2, 0.0, record=False)  # status.json says running
    with RunLock(fake_root / "voc-1464" / "imas" / "default" / "seed2"):  # and a live process trains it
        md = render(_table(fake_root), "markdown")
    cols = _header(md)
    imas = dict(zip(cols, _md_row(md, "iMAS")))
    assert imas["voc-blended-662"] == "—"                  # no run at all
    assert imas["voc-1464"] == "—"                         # 2 of 3 seeds
    assert "iMAS: no finished run on voc-blended-662" in md
    assert "iMAS on voc-1464: 2 of 3 seeds finished; missing seed(s) 2 (seed 2 running at step 40/100)" in md
    # without an owner, a 'running' status is a run that was killed
    assert "(seed 2 interrupted at step 40/100)" in render(_table(fake_root), "markdown")
    assert "partial mean 81.00 ± 0.00 (2)" in md
    shown = render(_table(fake_root, show_partial=True), "markdown")
    assert dict(zip(cols, _md_row(shown, "iMAS")))["voc-1464"] == "81.00 ± 0.00 (2)†"


def test_delta_vs_supervised(fake_root):
    write_run(fake_root, "unimatch", "voc-92", 0, 60.0, overrides={"budget.iterations": 50})
    write_run(fake_root, "supervised", "voc-92", 0, 40.0, overrides={"budget.iterations": 50})
    write_run(fake_root, "unimatch", "voc-92", 0, 77.0, overrides={"tau": 0.9})
    t = _table(fake_root, delta=True, show_partial=True)
    md = render(t, "markdown")
    cols = _header(md)
    uni = dict(zip(cols, _md_row(md, "UniMatch")))
    # every seed 29 above its supervised seed: no spread, so no p-value
    assert uni["voc-92"] == "**+29.00 ± 0.00**"                # 75 − 46
    assert uni["voc-732"] == "+10.00 ± 0.00"                   # 80 − 70; iMAS +10.5 is best
    # iMAS − supervised per seed: 11.5, 10.5, 9.5 → s = 1, half-width t(0.975, 2)/√3 = 2.48, t = 18.2
    assert dict(zip(cols, _md_row(md, "iMAS")))["voc-732"] == "**+10.50 ± 2.48, p = 0.003**"
    assert dict(zip(cols, _md_row(md, "Supervised")))["voc-92"] == "46.00 ± 1.00"  # baseline, absolute
    # a budget variant is compared with the supervised run of the same budget; a method-setting variant with
    # the default supervised row (one seed where the table's usual n is 3: marked † when partial cells are shown)
    assert dict(zip(cols, _md_row(md, "UniMatch [budget.iterations=50]")))["voc-92"] == "+20.00 (1)†"
    assert dict(zip(cols, _md_row(md, "UniMatch [tau=0.9]")))["voc-92"] == "+31.00 (1)†"
    assert dict(zip(cols, _md_row(md, "Supervised [budget.iterations=50]")))["voc-92"] == "40.00 (1)†"
    assert "Δ" in t.title and any("supervised" in c for c in t.caption)


def test_columns_grouped_by_dataset_and_family_ordered_by_labels(tmp_path):
    for p in ("cityscapes-186", "voc-u2pl-662", "voc-1464", "voc-blended-1323", "voc-92", "voc-blended-662",
              "synthetic-100", "voc-183"):
        write_run(tmp_path, "supervised", p, 0, 50.0)
    t = _table(tmp_path)
    assert [c.id for c in t.columns] == ["voc-92", "voc-183", "voc-1464", "voc-blended-662", "voc-blended-1323",
                                         "voc-u2pl-662", "cityscapes-186", "synthetic-100"]
    assert [g[1] for g, _ in t.groups()] == ["voc-classic", "voc-blended", "voc-u2pl", "cityscapes", "synthetic"]
    cap = " ".join(t.caption + t.details)
    for fam in ("VOC classic", "VOC blended, CPS-style", "VOC blended, U2PL-style", "Cityscapes (CPS lists)"):
        assert fam in cap
    assert "final checkpoint" in cap and "eval whole image" in cap and "sliding window 801" in cap
    tex = render(t, "latex")
    assert r"\multicolumn{3}{c}{VOC classic" in tex and r"\cmidrule(lr){2-4}" in tex


def test_settings_variant_is_its_own_row(fake_root):
    write_run(fake_root, "unimatch", "voc-92", 0, 77.0, overrides={"tau": 0.9, "cmim.enabled": False})
    md = render(_table(fake_root), "markdown")
    assert _md_row(md, "UniMatch [cmim.enabled=False, tau=0.9]")[0] == "—"  # 1 seed, the table's usual n is 3
    assert "UniMatch [cmim.enabled=False, tau=0.9] on voc-92: 1 of 3 seeds finished" in md
    assert "UniMatch [cmim.enabled=False, tau=0.9]: no finished run on voc-732" in md
    md = render(_table(fake_root, show_partial=True), "markdown")
    assert _md_row(md, "UniMatch [cmim.enabled=False, tau=0.9]")[0] == "77.00 (1)†"  # never marked best


def test_best_on_val_metric_is_titled(fake_root):
    t = _table(fake_root, metric="best")
    md = render(t, "markdown")
    assert all(BEST_TITLE in h for h in _header(md))
    assert BEST_TITLE in t.title and any(BEST_TITLE in c for c in t.caption)
    assert _md_row(md, "UniMatch")[0] == "**75.50 ± 1.00**"  # best_on_val = final + 0.5 in the fakes
    assert BEST_TITLE in render(t, "latex")
    final = render(_table(fake_root), "markdown")
    assert "best-on-val" not in final


def test_interpretation_names(tmp_path):
    write_run(tmp_path, "s4mim", "voc-92", 0, 70.0)
    write_run(tmp_path, "combined", "voc-92", 0, 71.0)
    t = _table(tmp_path)
    labels = [r.label for r in t.rows]
    assert "S4MIM (harness interpretation)" in labels
    assert "combined (iMAS + S4MIM, harness interpretation)" in labels
    assert any("interpretation" in n for n in t.notes)


# ----------------------------------------------------------------- reported rows


def test_reported_csvs_are_well_formed():
    rep = load_reported()
    assert list(rep.columns[:len(REPORTED_COLUMNS)]) == REPORTED_COLUMNS
    assert not rep["method"].str.lower().str.contains("s4mim").any()
    assert set(rep["source_type"]) <= {"README", "paper", "log"}
    assert (rep["miou_value"].between(0, 100)).all()
    uni = rep[(rep.method == "UniMatch") & (rep.source == "UniMatch README") & (rep.family == "voc-classic")]
    assert dict(zip(uni.labeled, uni.miou_value)) == {92: 75.2, 183: 77.2, 366: 78.8, 732: 79.9, 1464: 81.2}


def test_reference_rows_match_setting(tmp_path):
    write_run(tmp_path, "unimatch", "voc-732", 0, 78.0)
    write_run(tmp_path, "unimatch", "voc-732@crop513", 0, 79.0)
    t = _table(tmp_path, reported=load_reported())
    md = render(t, "markdown")
    cols = _header(md)
    assert cols == ["voc-732", "voc-732@crop513"]
    readme = dict(zip(cols, _md_row(md, "UniMatch (reported, best-epoch)")))
    assert readme == {"voc-732": "79.9", "voc-732@crop513": ""}      # crop 321 row only under crop 321
    corr = dict(zip(cols, _md_row(md, "CorrMatch (reported, best-epoch)")))
    assert corr == {"voc-732": "80.4", "voc-732@crop513": "80.6"}     # 513 value in parentheses in the README
    imas = dict(zip(cols, _md_row(md, "iMAS (reported, best-epoch (EMA teacher))")))
    assert imas == {"voc-732": "", "voc-732@crop513": "80.2"}
    logs = dict(zip(cols, _md_row(md, "UniMatch (released logs, final)")))
    assert logs["voc-732"] == "79.47 ± 0.35 (3)"  # a reference row keeps its own count
    # reference rows never take the best mark and are marked as such
    assert not any(t.cell(r, c).best for r in t.rows if r.kind == "reference" for c in t.columns)
    assert "*UniMatch (reported, best-epoch)*" in md
    assert "crop not stated" in md  # quoted rows with an unknown setting are listed as not shown


def test_no_reference_rows_for_crop_mismatch_eval_mismatch_or_synthetic(tmp_path):
    write_run(tmp_path, "unimatch", "voc-732@crop513", 0, 79.0)
    write_run(tmp_path, "unimatch", "synthetic-100", 0, 30.0)
    write_run(tmp_path, "unimatch", "cityscapes-186", 0, 70.0)
    t = _table(tmp_path, reported=load_reported())
    rows = {r.label: r for r in t.rows if r.kind == "reference"}
    by_col = {c.id: [r.label for r in rows.values() if t.cell(r, c).text] for c in t.columns}
    assert by_col["synthetic-100"] == []
    assert "UniMatch (reported, best-epoch)" not in by_col["voc-732@crop513"]
    assert "SupBaseline (reported, best-epoch)" not in by_col["voc-732@crop513"]
    # the README's Cityscapes numbers truncate border windows; the harness keeps windows inside the image
    assert by_col["cityscapes-186"] == []
    assert "eval slide801_truncated vs slide801" in " ".join(t.notes)


def test_reported_s4mim_row_never_shown(tmp_path):
    rdir = tmp_path / "reported"
    rdir.mkdir()
    row = dict(dataset="voc", family="voc-classic", labeled=732, method="S4MIM", miou=99.0, backbone="resnet101",
               crop=321, os=16, eval_mode="whole", selection="best-epoch", source_type="paper", source="x", note="")
    pd.DataFrame([row, {**row, "method": "Other", "miou": 55.5}])[REPORTED_COLUMNS].to_csv(rdir / "x.csv", index=False)
    write_run(tmp_path / "runs", "s4mim", "voc-732", 0, 70.0)
    md = render(_table(tmp_path / "runs", reported=load_reported(rdir)), "markdown")
    assert "99" not in md and "Other (reported, best-epoch)" in md


def test_reported_file_with_wrong_columns_is_an_error(tmp_path):
    (tmp_path / "bad.csv").write_text("method,miou\nX,1\n")
    from harness.errors import HarnessError
    with pytest.raises(HarnessError, match="bad.csv"):
        load_reported(tmp_path)


# ----------------------------------------------------------------- formats


def test_csv_parses_with_pandas(fake_root):
    t = _table(fake_root, reported=load_reported())
    df = pd.read_csv(io.StringIO(render(t, "csv")))
    assert {"row", "protocol", "mean", "std", "n", "best", "cell", "state"} <= set(df.columns)
    best = df[df.best]
    assert set(best.protocol) == {c.id for c in t.columns}
    assert best.cell.str.endswith("*").all()
    u = df[(df["method"] == "unimatch") & (df.protocol == "voc-92")].iloc[0]
    assert u["mean"] == pytest.approx(75.0) and u["std"] == pytest.approx(1.0) and u["n"] == 3
    miss = df[(df["method"] == "imas") & (df.protocol == "voc-blended-662")].iloc[0]
    assert miss.state == "missing" and miss.cell == "—"
    assert (df[df.kind == "reference"].metric == "reported").all()


def test_per_class_table(tmp_path):
    iou = [0.9, 0.5, None, 0.25, 0.0, 0.1, 0.3, 0.8]
    write_run(tmp_path, "supervised", "synthetic-100", 0, 40.0, iou=iou)
    write_run(tmp_path, "supervised", "synthetic-100", 1, 42.0, iou=[0.7, 0.5, None, 0.35, 0.0, 0.1, None, 0.8])
    write_run(tmp_path, "unimatch", "synthetic-100", 0, 50.0, iou=[0.95] + [0.6] * 7)
    rs = load_results([tmp_path], warn=False)
    t = build_per_class(rs, "synthetic-100")
    md = render(t, "markdown")
    hdr = _header(md)
    assert hdr[:3] == ["background", "disk", "ring"] and hdr[-1] == "mIoU"
    sup = dict(zip(hdr, _md_row(md, "Supervised (2)")))
    assert sup["background"] == "80.00" and sup["square"] == "30.00"
    assert sup["ring"] == "—"                      # NaN in every seed
    assert sup["dot_on"] == "30.00"                # NaN in one seed: mean of the other
    assert dict(zip(hdr, _md_row(md, "UniMatch (1)")))["background"] == "**95.00**"
    df = pd.read_csv(io.StringIO(render(t, "csv")))
    assert len(df) == 2 * 9
    assert r"\toprule" in render(t, "latex")


# ----------------------------------------------------------------- plots


@pytest.mark.parametrize("kind", ["miou-vs-labels", "curves", "per-class"])
def test_plots_write_png(fake_root, tmp_path, kind):
    pytest.importorskip("matplotlib")
    from harness.report.plots import plot

    rs = load_results([fake_root], warn=False)
    out = tmp_path / f"{kind}.png"
    proto = None if kind == "miou-vs-labels" else "voc-92"
    method = ["imas"] if kind == "curves" else None
    plot(rs, kind, out, protocol=proto, methods=method)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_curves_per_run_and_cli_plot(fake_root, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "c.png"
    assert main(["plot", str(fake_root), "--kind", "curves", "--protocol", "voc-732", "--per-run",
                 "--out", str(out)]) == 0
    assert out.stat().st_size > 5000
    assert main(["plot", str(fake_root), "--kind", "curves", "--out", str(out)]) == 2  # several protocols
    assert main(["plot", str(fake_root), "--kind", "curves", "--protocol", "voc-92", "--method", "imas",
                 "--method", "supervised", "--out", str(out)]) == 0
    assert main(["plot", str(fake_root), "--kind", "curves", "--protocol", "voc-92", "--method", "nope",
                 "--out", str(out)]) == 2


# ----------------------------------------------------------------- CLI, manifest, speed


def test_cli_table(fake_root, tmp_path, capsys):
    assert main(["table", str(fake_root), "--no-reported"]) == 0
    out = capsys.readouterr().out
    assert "| method | voc-92 |" in out and "(reported" not in out
    f = tmp_path / "t.csv"
    assert main(["table", str(fake_root), "--format", "csv", "--delta", "--methods", "uni*", "supervised",
                 "--protocols", "voc-*", "--out", str(f)]) == 0
    df = pd.read_csv(f)
    assert set(df[df.kind == "harness"]["method"]) == {"unimatch", "supervised"}
    assert main(["table", str(fake_root), "--per-class", "voc-92", "--format", "latex"]) == 0
    assert r"\bottomrule" in capsys.readouterr().out
    assert main(["table", str(tmp_path / "nowhere")]) == 2


def test_grid_manifest(fake_root, tmp_path):
    man = tmp_path / "grid.yaml"
    runs = [{"method": "unimatch", "protocol": "voc-92", "seed": s} for s in range(4)]
    runs += [{"method": "supervised", "protocol": "voc-732", "seed": s} for s in range(3)]
    man.write_text(json.dumps({"out": str(fake_root), "runs": runs}))
    rs = load_results([man], warn=False)
    t = build_table(rs)
    md = render(t, "markdown")
    # the manifest asks for 4 seeds: 3 finished → partial; cells the manifest does not ask for stay empty
    assert _md_row(md, "UniMatch")[0] == "—"
    assert "3 of 4 seeds finished; missing seed(s) 3" in md
    assert _md_row(md, "UniMatch")[1] == "" and "Blank cells are not part of the grid." in md


def test_speed_3000_records(tmp_path):
    root = tmp_path / "many"
    protos = ["voc-92", "voc-183", "voc-366", "voc-732", "voc-1464", "voc-blended-662", "voc-blended-1323",
              "voc-blended-2646", "cityscapes-186", "cityscapes-372"]
    n = 0
    for p in protos:
        for m in ("supervised", "unimatch", "imas", "mean_teacher", "s4mim", "combined"):
            for v in range(5):
                over = {"tau": 0.5 + v / 10} if v else {}
                for s in range(10):
                    write_run(root, m, p, s, 50 + s / 10 + v, overrides=over, metrics=[], light=True)
                    n += 1
    assert n == 3000
    t0 = time.perf_counter()
    rs = load_results([root], warn=False)
    t = build_table(rs, reported=load_reported())
    text = render(t, "markdown") + render(t, "latex") + render(t, "csv")
    elapsed = time.perf_counter() - t0
    assert len(rs.runs) == 3000 and len(t.rows) >= 30 and text
    print(f"aggregated 3,000 records in {elapsed:.2f} s")
    assert elapsed < 5.0, f"aggregating 3,000 records took {elapsed:.2f} s"


def test_launch_manifest_and_grid_file(fake_root, tmp_path):
    d = fake_root / "voc-92" / "unimatch" / "default"
    man = fake_root / "grids" / "g" / "manifest.json"
    man.parent.mkdir(parents=True)
    man.write_text(json.dumps({"grid": "g", "out": str(fake_root), "submissions": [
        {"index": 0, "runs": [{"run_dir": str(d / f"seed{s}")} for s in (3, 4)],
         "skipped": [{"run_dir": str(d / f"seed{s}")} for s in (0, 1, 2)], "invalid": []}]}))
    md = render(build_table(load_results([man], warn=False)), "markdown")
    assert _md_row(md, "UniMatch")[0] == "—" and "3 of 5 seeds finished; missing seed(s) 3, 4" in md
    assert "| Supervised |" not in md  # runs the grid did not ask for are not part of its table
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"out: {fake_root}\nmethods: [unimatch, supervised]\nprotocols: [voc-92, voc-732]\n"
                    f"seeds: [0, 1, 2]\n")
    md = render(build_table(load_results([grid], warn=False)), "markdown")
    assert _md_row(md, "UniMatch")[:2] == ["**75.00 ± 1.00**", "**80.00 ± 1.00**"]
    assert "| iMAS |" not in md


def test_override_restating_the_protocol_default_is_left_out_of_the_label(tmp_path):
    """A grid pins e.g. the protocol's default budget; the row keeps the plain method name and a note says so,
    unless a run without the pin exists for the same method (then the label must tell the rows apart)."""
    from harness.protocols import ProtocolRegistry, default_protocol_dirs

    reg = ProtocolRegistry()
    for d in default_protocol_dirs():
        reg.add_dir(d)
    lr = reg.get("voc-92").budget.lr
    for seed in (0, 1, 2):
        write_run(tmp_path, "imas", "voc-92", seed, 70.0, overrides={"budget.lr": lr})
        write_run(tmp_path, "unimatch", "voc-92", seed, 71.0, overrides={"budget.lr": lr, "tau": 0.9})
        write_run(tmp_path, "unimatch", "voc-92", seed, 70.5, overrides={"budget.lr": lr, "tau": 0.8})
        write_run(tmp_path, "supervised", "voc-92", seed, 60.0, overrides={"budget.lr": lr * 2})
    md = render(_table(tmp_path), "markdown")
    assert _md_row(md, "iMAS")[0] == "70.00 ± 0.00"
    assert _md_row(md, "UniMatch [tau=0.9]")[0] == "**71.00 ± 0.00**"  # best of the column
    assert _md_row(md, f"Supervised [budget.lr={lr * 2}]")[0] == "60.00 ± 0.00"  # not the default: shown
    assert f"protocol default budget.lr={lr}; not shown in the row labels of: UniMatch, iMAS." in md
    for seed in (0, 1, 2):
        write_run(tmp_path, "imas", "voc-92", seed, 69.0)
    md = render(_table(tmp_path), "markdown")
    assert _md_row(md, "iMAS")[0] == "69.00 ± 0.00"
    assert _md_row(md, f"iMAS [budget.lr={lr}]")[0] == "70.00 ± 0.00"


def test_curve_panels_one_per_signal_total_loss_first():
    import pandas as pd

    from harness.report.plots import _signal_panels

    df = pd.DataFrame({"miou": [1.0], "student_miou": [1.0], "train.loss_x": [1.0], "train.loss": [1.0],
                       "train.lr": [0.1], "train.w_cons": [0.5], "method.h_mean": [0.3], "train.loss_u": [None]})
    keys = [k for k, _ in _signal_panels(df)]
    assert keys == ["miou", "student_miou", "train.loss", "train.loss_x", "method.h_mean", "train.w_cons"]


def test_rows_without_the_protocols_weights_are_marked(tmp_path):
    from harness.report.results import load_results
    from harness.report.tables import WEIGHTS_MARK, build_per_class, build_table, render

    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, "supervised", "voc-92", seed, 60 + seed,
                  pretrained_source="imagenet: /w/resnet101_deepstem.pth (sha256 0123456789ab)")
        write_run(root, "unimatch", "voc-92", seed, 70 + seed, pretrained_source="imagenet: /w/x.pth")
        write_run(root, "supervised", "synthetic-100", seed, 40, pretrained_source="random (pretrained disabled)")
    # one seed of iMAS from random weights on a protocol that declares ImageNet weights
    write_run(root, "imas", "voc-92", 0, 71, pretrained_source="imagenet: /w/x.pth")
    write_run(root, "imas", "voc-92", 1, 50, pretrained_source="random (pretrained disabled)")
    write_run(root, "imas", "voc-92", 0, 49, overrides={"model.pretrained": False},
              pretrained_source="random (pretrained disabled)")
    table = build_table(load_results([root], warn=False))
    labels = {r.label for r in table.rows if r.kind == "harness"}
    assert "Supervised" in labels and "UniMatch" in labels  # ImageNet runs; synthetic declares no weights
    assert f"iMAS {WEIGHTS_MARK}" in labels and f"iMAS [model.pretrained=False] {WEIGHTS_MARK}" in labels
    text = render(table, "markdown")
    assert f"{WEIGHTS_MARK} iMAS: runs on voc-92 started from random weights" in text
    per_class = build_per_class(load_results([root], warn=False), "voc-92")
    assert any(r.label.endswith(WEIGHTS_MARK) and r.method == "imas" for r in per_class.rows)


def test_delta_view_carries_interval_and_p_value_and_bolds_only_an_improvement(tmp_path):
    from harness.report.results import load_results
    from harness.report.tables import build_table, render

    root = tmp_path / "runs"
    for seed, (sup, uni, im, mt) in enumerate([(60.0, 58.0, 59.0, 61.0), (62.0, 59.0, 61.5, 61.0),
                                                (61.0, 58.5, 60.0, 62.5)]):
        write_run(root, "supervised", "voc-92", seed, sup)
        write_run(root, "unimatch", "voc-92", seed, uni)
        write_run(root, "imas", "voc-92", seed, im)
        write_run(root, "mean_teacher", "voc-92", seed, mt)
    table = build_table(load_results([root], warn=False), delta=True)
    md = render(table, "markdown")
    # UniMatch: differences -2, -3, -2.5 (paired): mean -2.5, s 0.5, t = -8.66, p = 0.013
    assert _md_row(md, "UniMatch")[0] == "-2.50 ± 1.24, p = 0.013"
    # iMAS: -1, -0.5, -1: mean -0.83, s 0.29, t = -5, p = 0.038
    assert _md_row(md, "iMAS")[0] == "-0.83 ± 0.72, p = 0.038"
    # mean teacher: +1, -1, +1.5 (s 1.32, t 0.65): the one improvement, bold although not significant
    assert _md_row(md, "Mean Teacher")[0] == "**+0.50 ± 3.29, p = 0.580 n.s.**"
    assert md.count("**+") == 1 and "**-" not in md
    csv_text = render(table, "csv")
    line = next(l for l in csv_text.splitlines() if l.startswith("UniMatch,"))
    assert ",-2.5,1.2421,0.0131,True," in line
    ci = render(build_table(load_results([root], warn=False), interval="ci"), "markdown")
    assert _md_row(ci, "Supervised")[0].startswith("61.00 ± 2.48")  # s = 1, t(0.975, 2)/√3 = 2.484


def test_a_default_folder_run_that_restates_a_default_is_compared_with_the_plain_supervised_row(tmp_path):
    """A run made while the protocol's default was another value, pinned with --set and moved into the default
    folder after the default changed, is Δ'd against the supervised row without overrides (not left without one)."""
    root = tmp_path / "runs"
    for seed, sup in enumerate([60.0, 62.0, 61.0]):
        write_run(root, "supervised", "voc-92", seed, sup)
    write_run(root, "unimatch", "voc-92", 0, 64.0, overrides={"budget.iterations": 100}, settings_hash="default")
    md = render(build_table(load_results([root], warn=False), delta=True, show_partial=True), "markdown")
    assert _md_row(md, "UniMatch")[0] == "+3.00 (1)†"  # 64 - mean(60, 62, 61); one seed: no interval
    assert "Runs pinned to the protocol default budget.iterations=100" in md


def test_the_caption_names_the_rows_evaluated_through_a_teacher_from_the_records(tmp_path):
    """Each run records the network it evaluated; records made before that field take the method's default
    (``Method.evaluates``): mean teacher's teacher, supervised's student."""
    root = tmp_path / "runs"
    write_run(root, "supervised", "voc-92", 0, 60.0)
    write_run(root, "mean_teacher", "voc-92", 0, 61.0)  # no "evaluated": the plugin's default, the teacher
    write_run(root, "imas", "voc-92", 0, 59.0, evaluated="student")  # eval_network: student
    md = render(build_table(load_results([root], warn=False)), "markdown")
    assert "the last evaluation of each run (of the EMA teacher for Mean Teacher), on the validation set" in md
    write_run(root, "imas", "voc-92", 1, 59.5, evaluated="teacher")
    md = render(build_table(load_results([root], warn=False), show_partial=True), "markdown")
    assert "(of the EMA teacher for Mean Teacher and iMAS (some runs))" in md


def test_row_labels_order_and_notes_come_from_the_method_plugins(monkeypatch):
    from harness.report import tables
    from harness.plugins import MethodInfo, get_plugin_manager
    from methods.unimatch import UniMatch

    class MyMatch(UniMatch):  # a third-party subclass: inherits nothing of UniMatch's table identity
        name = "mymatch"
        description = "test"

    pm = get_plugin_manager()
    monkeypatch.setitem(pm.methods._methods, "mymatch", MethodInfo("mymatch", MyMatch, "x", "1", "test"))
    tables._method_meta.cache_clear()
    try:
        assert tables.method_label("unimatch") == "UniMatch" and tables.method_label("mymatch") == "mymatch"
        assert tables.method_label("not-installed") == "not-installed"
        order = sorted(["mymatch", "combined", "supervised", "not-installed", "unimatch"], key=tables.method_order)
        assert order == ["supervised", "unimatch", "combined", "mymatch", "not-installed"]
        notes = tables.method_notes(["s4mim", "unimatch", "combined"])
        assert len(notes) == 2 and notes[0].startswith("S4MIM (harness interpretation)")
    finally:
        tables._method_meta.cache_clear()


def test_unimatch_v2_rows_shown_only_where_the_encoder_matches():
    """UniMatch V2's rows (README and released logs) carry their encoder: a ResNet-101 column never shows them, a
    DINOv2-B column with their crop and evaluation shows the README's best and the logs' best and final."""
    from harness.report.tables import Column, load_reported, match_reported

    reported = load_reported()
    resnet = Column("ade20k-316", "ade20k", "ade20k", 316, "whole", "resnet101", 518)
    matched, near = match_reported(reported, resnet)
    assert matched.empty  # the only ResNet row (UniMatch V1 in UniMatch V2's README) states no crop or evaluation
    assert ("UniMatch", "crop not stated; eval mode not stated") in near
    dino = Column("ade20k-316-dino", "ade20k", "ade20k", 316, "whole_resize14", "dinov2_base", 518)
    matched, _ = match_reported(reported, dino)
    v2 = matched[matched.method == "UniMatch V2"].set_index("selection")["miou"].to_dict()
    assert v2["best-epoch (EMA)"] in {"38.7", "38.70"} and float(v2["final (EMA)"]) == 38.08
    assert set(matched.method) == {"SupBaseline", "FixMatch", "UniMatch", "UniMatch V2"}
    coco = Column("coco-232", "coco", "coco-unimatch", 232, "whole", "xception65", 513)
    assert "UniMatch V2" not in set(match_reported(reported, coco)[0].method)
