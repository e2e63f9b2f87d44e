"""LaTeX a paper can use: it compiles (pdflatex where installed; a structural parse everywhere), with a short caption,
notes in plain words, the seed count said once, table* when wide, and the committed benchmark table up to date."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.report.results import load_results
from harness.report.tables import BEST_TITLE, build_per_class, build_table, load_reported, render

from . import latex_check
from .conftest import write_run

REPO = Path(__file__).resolve().parents[2]
FILE_NAME = re.compile(r"[\w-]+\.(?:md|json|jsonl|csv|py|yaml|pt)\b|\b[\w.-]+/[\w.-]+/")


def _visible(tex: str) -> str:
    """What the reader sees: the lines that are not LaTeX comments."""
    return "\n".join(line for line in tex.splitlines() if not line.startswith("%"))


def _table(root, kind: str):
    rs = load_results([root], warn=False)
    if kind == "per-class":
        return build_per_class(rs, "voc-92")
    options = {"main": {"reported": load_reported()}, "delta": {"delta": True, "reported": load_reported()},
               "best": {"metric": "best"}, "ci": {"interval": "ci"}, "partial": {"show_partial": True}}[kind]
    return build_table(rs, **options)


@pytest.mark.parametrize("kind", ["main", "delta", "best", "ci", "partial", "per-class"])
def test_every_kind_of_table_compiles(fake_root, tmp_path, kind):
    tex = render(_table(fake_root, kind), "latex")
    latex_check.check(tex, tmp_path / "tex")


def test_the_structural_check_fails_on_broken_latex():
    good = ("\\begin{table}\n\\begin{tabular}{l rr}\n\\toprule\na & b & c \\\\\n\\bottomrule\n"
            "\\end{tabular}\n\\end{table}")
    latex_check.structure(good)
    for broken, why in ((good.replace("a & b & c", "a & b"), "cells"),
                        (good.replace("a & b", "\\textbf{a & b"), "unclosed"),
                        (good.replace("\\end{table}", ""), "never ended"),
                        (good.replace("\\end{tabular}\n\\end{table}", "\\end{table}\n\\end{tabular}"), "without"),
                        (good.replace("\\toprule", "\\multicolumn{2}{c}{x} & y & z \\\\"), "cells")):
        with pytest.raises(latex_check.LatexError, match=why):
            latex_check.structure(broken)


@pytest.mark.skipif(latex_check.PDFLATEX is None, reason="pdflatex is not installed")
def test_the_compile_check_fails_on_latex_that_does_not_compile(tmp_path):
    with pytest.raises(latex_check.LatexError, match="pdflatex failed"):
        latex_check.compile_pdf("\\begin{tabular}{l}\n\\undefinedcommand\n\\end{tabular}", tmp_path)


def test_ready_to_paste_short_caption_plain_notes_seed_count_once(fake_root):
    tex = render(_table(fake_root, "main"), "latex")
    caption = re.search(r"\\caption\{(.*)\}", tex).group(1)
    assert len(caption) < 200 and "over 3 seeds" in caption
    assert not FILE_NAME.search(_visible(tex)), FILE_NAME.search(_visible(tex))
    rows = [line for line in tex.splitlines() if line.startswith(("Supervised", "UniMatch", "iMAS"))]
    assert rows and not any("(3)" in line for line in rows)  # the seed count is in the caption, not in cells
    assert "(2)" not in " ".join(rows)  # a partial cell is a dash (its partial mean is in a note)
    assert "(2)" in render(_table(fake_root, "partial"), "latex")  # shown partial cells carry their own count
    assert "\\begin{table*}" in tex  # five columns of "mean ± std" do not fit one column


def test_a_narrow_table_takes_one_column_and_a_record_path_is_only_a_comment(tmp_path):
    for s in range(3):
        write_run(tmp_path, "supervised", "voc-92", s, 45.0 + s)
        write_run(tmp_path, "unimatch", "voc-92", s, 60.0 + s, best=float("nan") if s == 0 else None)
    t = build_table(load_results([tmp_path], warn=False), metric="best")
    tex = render(t, "latex")
    assert "\\begin{table}[t]" in tex and "table*" not in tex and "resizebox" not in tex
    comments = [line for line in tex.splitlines() if line.startswith("%")]
    assert any("record.json: no best_on_val value" in line for line in comments)
    assert "record.json" not in _visible(tex)
    latex_check.check(tex, tmp_path / "tex")


def test_best_on_val_has_no_extra_header_row_and_says_so_in_the_caption(fake_root):
    tex = render(_table(fake_root, "best"), "latex")
    head = tex.split("\\toprule", 1)[1].split("\\midrule", 1)[0]
    lines = [line for line in head.strip().splitlines() if line.strip()]
    assert len(lines) == 3  # group headers, their rules, labeled counts
    assert BEST_TITLE not in head
    assert BEST_TITLE in re.search(r"\\caption\{(.*)\}", tex).group(1)


def test_delta_view_carries_its_interval_and_p_value_in_latex(fake_root):
    tex = render(_table(fake_root, "delta"), "latex")
    row = next(line for line in tex.splitlines() if line.startswith("iMAS"))
    # iMAS − supervised on voc-732 per seed: 11.5, 10.5, 9.5 → +10.50 ± 2.48 (t interval), paired p = 0.003
    assert "\\textbf{+10.50 $\\pm$ 2.48, p = 0.003}" in row
    assert "95 \\% confidence" in re.search(r"\\caption\{(.*)\}", tex).group(1)


def test_escaping_gives_negative_numbers_a_minus_sign_and_leaves_hyphens():
    from harness.report.table_latex import tex_escape

    assert tex_escape("-2.50 ± 1.24, p < 0.001") == "$-$2.50 $\\pm$ 1.24, p \\textless{} 0.001"
    assert tex_escape("synthetic-100 (1/30)") == "synthetic-100 (1/30)"
    assert tex_escape("iMAS ‡ 95 % τ_1") == "iMAS $^\\ddagger$ 95 \\% $\\tau$\\_1"


def test_committed_benchmark_table_is_current_and_compiles(tmp_path):
    """results/synthetic-benchmark/table.tex is what `harness table` writes from the committed records."""
    from harness.cli import main

    out = tmp_path / "table.tex"
    grid = REPO / "benchmarks" / "grids" / "synthetic-benchmark.yaml"
    assert main(["table", str(grid), "--format", "latex", "--out", str(out)]) == 0
    committed = REPO / "results" / "synthetic-benchmark" / "table.tex"
    assert committed.read_text() == out.read_text(), "regenerate it with the command in its README"
    latex_check.check(committed.read_text(), tmp_path / "tex")
