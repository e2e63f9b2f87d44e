"""The compute view: `harness table --compute` (markdown, LaTeX, CSV) and `harness plot --kind miou-vs-compute`, from
records written here with known training times and image-passes."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from harness.cli import main
from harness.report.results import load_results
from harness.report.tables import build_table, render

from . import latex_check
from .conftest import write_run


def _compute(hours: float, with_grad: int, forward_only: int, device: str = "cuda") -> dict:
    return {"compute": {"images_seen": {"labeled": 800, "unlabeled": 800 if forward_only else 0},
                        "image_passes": {"with_grad": with_grad, "forward_only": forward_only},
                        "peak_memory_gib": 2.5, "peak_memory_of": "cuda_max_allocated", "device_hours": hours,
                        "device": device}}


@pytest.fixture
def costed(tmp_path):
    """Supervised and UniMatch on voc-92 and voc-732 (3 seeds each), with the hours each run spent; iMAS only on
    voc-1464, where there is no supervised run."""
    root = tmp_path / "runs"
    hours = {("supervised", "voc-92"): [1.0, 1.2, 1.4], ("supervised", "voc-732"): [2.0, 2.0, 2.0],
             ("unimatch", "voc-92"): [3.0, 3.6, 4.2], ("unimatch", "voc-732"): [4.0, 4.0, 4.0],
             ("imas", "voc-1464"): [5.0, 5.0, 5.0]}
    for (method, protocol), hs in hours.items():
        passes = (800, 0) if method == "supervised" else (1600, 1600)
        for seed, h in enumerate(hs):
            write_run(root, method, protocol, seed, 60.0 + seed, device="cuda:0", **_compute(h, *passes))
    return root


def _md_row(text: str, label: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells and cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in\n{text}")


def test_compute_column_is_the_mean_time_per_run_and_its_ratio_to_supervised(costed):
    t = build_table(load_results([costed], warn=False), compute=True)
    md = render(t, "markdown")
    header = next(l for l in md.splitlines() if l.startswith("| method"))
    assert header.endswith("| GPU-h per run (× supervised) |")
    # supervised: (1.0 + 1.2 + 1.4 + 3 × 2.0) / 6 = 1.60 h per run
    assert _md_row(md, "Supervised")[-1] == "1.60 (1.0×)"
    # UniMatch: (3.0 + 3.6 + 4.2 + 3 × 4.0) / 6 = 3.80 h; ratio (3.6 + 4.0) / (1.2 + 2.0) = 2.375
    assert _md_row(md, "UniMatch")[-1] == "3.80 (2.4×)"
    # iMAS has no supervised run on its only column: its time, no ratio
    assert _md_row(md, "iMAS")[-1] == "5.00"
    assert "Compute column: mean hours per run" in md and "GPU time" in md


def test_compute_in_csv_per_cell_and_per_row(costed):
    t = build_table(load_results([costed], warn=False), compute=True)
    df = pd.read_csv(io.StringIO(render(t, "csv")))
    cell = df[(df.method == "unimatch") & (df.protocol == "voc-92")].iloc[0]
    assert cell.hours_per_run == pytest.approx(3.6) and cell.hours_std == pytest.approx(0.6)
    assert cell.hours_vs_supervised == pytest.approx(3.0)
    assert cell.image_passes_per_run == 3200 and cell.image_passes_vs_supervised == pytest.approx(4.0)
    assert cell.peak_memory_gib == pytest.approx(2.5)
    row = df[(df.method == "unimatch") & (df.protocol == "compute")].iloc[0]
    assert row.hours_per_run == pytest.approx(3.8) and row.hours_vs_supervised == pytest.approx(7.6 / 3.2)
    assert row.n == 6
    assert "hours_per_run" not in pd.read_csv(io.StringIO(render(build_table(load_results([costed], warn=False)),
                                                                  "csv"))).columns


def test_compute_in_latex_compiles(costed, tmp_path):
    tex = render(build_table(load_results([costed], warn=False), compute=True, delta=True), "latex")
    assert "GPU-h per run ($\\times$ supervised)" in tex
    latex_check.check(tex, tmp_path / "tex")


def test_records_without_compute_use_wall_time_and_short_runs_are_in_minutes(tmp_path):
    for seed in range(2):
        write_run(tmp_path, "supervised", "synthetic-100", seed, 50.0, wall_time_s=600.0, world_size=1)
        write_run(tmp_path, "imas", "synthetic-100", seed, 52.0, wall_time_s=900.0, world_size=2)  # 2 processes
    rs = load_results([tmp_path], warn=False)
    assert sorted(rs.runs["process_hours"]) == pytest.approx([600 / 3600] * 2 + [1800 / 3600] * 2)
    md = render(build_table(rs, compute=True), "markdown")
    assert "CPU-min per run (× supervised)" in md
    assert _md_row(md, "Supervised")[-1] == "10.0 (1.0×)" and _md_row(md, "iMAS")[-1] == "30.0 (3.0×)"


def test_a_row_whose_records_hold_no_time_shows_a_dash(tmp_path):
    for seed in range(2):
        write_run(tmp_path, "supervised", "synthetic-100", seed, 50.0, wall_time_s=600.0)
        write_run(tmp_path, "imas", "synthetic-100", seed, 52.0, wall_time_s=None)
    md = render(build_table(load_results([tmp_path], warn=False), compute=True), "markdown")
    assert _md_row(md, "Supervised")[-1] == "10.0 (1.0×)" and _md_row(md, "iMAS")[-1] == "—"


def test_compute_does_not_apply_to_the_per_class_table(costed, capsys):
    assert main(["table", str(costed), "--per-class", "voc-92", "--compute"]) != 0
    assert "--compute adds a column to the methods × protocols table" in capsys.readouterr().err


def test_plot_miou_vs_compute_is_written(costed, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "plots" / "miou-vs-compute.png"
    assert main(["plot", str(costed), "--kind", "miou-vs-compute", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_committed_benchmark_compute_table_is_current(tmp_path):
    """results/synthetic-benchmark/compute.md is what `harness table --compute` writes from the committed records."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "compute.md"
    grid = repo / "benchmarks" / "grids" / "synthetic-benchmark.yaml"
    assert main(["table", str(grid), "--compute", "--format", "markdown", "--out", str(out)]) == 0
    assert (repo / "results" / "synthetic-benchmark" / "compute.md").read_text() == out.read_text()
