"""LaTeX rendering of a table (``harness.report.tables.Table``), ready to paste into a paper.

What the output is, so that it compiles as it stands with ``\\usepackage{booktabs}`` (and ``graphicx`` where the
first line says so):

- booktabs rules; one column group per split family under a spanning header, columns titled by labeled count;
  a compute column (``--compute``) after the groups;
- a short caption (what a cell is, over how many seeds, what bold means), then the longer explanation and the
  notes in plain words, in small type under the table; what only the person running the command needs (record
  files, command-line options) goes into ``%`` comment lines above it instead;
- ``table*`` (both columns of a two-column paper) when the table is wider than one column, scaled to the text
  width when wider than that;
- text is escaped for LaTeX; the few non-ASCII symbols the harness writes become math-mode symbols.
"""

from __future__ import annotations

import re

from .tables import Column, Table, family_label

# Widths in characters of \small type (about 4.5 pt each): a column of a two-column paper holds about 55 of them,
# the text width of a one- or two-column paper about 115 (column separation included).
ONE_COLUMN_CHARS = 55
TEXT_WIDTH_CHARS = 115
COLUMN_GAP_CHARS = 3  # 2 × \tabcolsep

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "—": "---", "–": "--",
        "−": "$-$", "Δ": r"$\Delta$", "τ": r"$\tau$", "λ": r"$\lambda$", "†": r"$^\dagger$", "‡": r"$^\ddagger$",
        "⊂": r"$\subset$", "²": r"$^2$", "·": r"$\cdot$", "→": r"$\rightarrow$", "≠": r"$\neq$", "≤": r"$\leq$",
        "≥": r"$\geq$", "×": r"$\times$", "≈": r"$\approx$", "…": r"\dots{}", "’": "'", "“": "``", "”": "''",
        "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}
_MINUS = re.compile(r"(?<![\w.])-(?=\d)")  # a negative number's sign, not a hyphen in "synthetic-100"


def tex_escape(s: str) -> str:
    text = _MINUS.sub("−", str(s))
    return "".join(_TEX.get(ch, ch) for ch in text)


def _plain_id(c: Column) -> bool:
    """True when the id is the usual ``<family-ish prefix>-<labeled>`` (the header shows only the count)."""
    return c.id.endswith(f"-{c.labeled}")


def _column_title(t: Table, c: Column) -> str:
    if not t.grouped or c.kind != "result":
        return c.header or c.id
    return f"{c.labeled}" + ("" if _plain_id(c) else f" ({c.id})")


def _widths(t: Table) -> list[int]:
    """Estimated width in characters of the stub and of every column (cells, titles and group headers)."""
    stub = max([len(t.stub_header)] + [len(r.label) for r in t.rows])
    cols = [max([len(_column_title(t, c))] + [len(t.cell(r, c).text) for r in t.rows]) for c in t.columns]
    if t.grouped:  # a group header wider than its columns widens them
        i = 0
        for (_, fam), cols_of in t.groups():
            k = len(cols_of)
            need = len(family_label(fam)) if cols_of[0].kind == "result" else 0
            have = sum(cols[i:i + k]) + COLUMN_GAP_CHARS * (k - 1)
            if need > have:
                cols[i + k - 1] += need - have
            i += k
    return [stub] + cols


def width_chars(t: Table) -> int:
    widths = _widths(t)
    return sum(widths) + COLUMN_GAP_CHARS * len(widths)


def render_latex(t: Table) -> str:
    width = width_chars(t)
    env = "table*" if width > ONE_COLUMN_CHARS else "table"
    scaled = width > TEXT_WIDTH_CHARS
    packages = "booktabs" + (", graphicx" if scaled else "")
    out = [f"% harness table (LaTeX); needs \\usepackage{{{packages}}}"]
    out += [f"% {line}" for line in t.diagnostics]
    out += [f"\\begin{{{env}}}[t]", "\\centering", "\\small",
            "\\caption{" + tex_escape(" ".join(t.caption)) + "}",
            "\\label{tab:" + ("per-class" if t.kind == "per-class" else "delta" if t.delta else "miou") + "}"]
    if scaled:
        out.append("\\resizebox{\\textwidth}{!}{%")
    out += _tabular(t)
    if scaled:
        out.append("}")
    body = t.details + t.notes
    if body:
        out.append("\\par\\smallskip")
        out.append("{\\footnotesize\\raggedright")
        out += [tex_escape(n) + "\\par" for n in body]
        out.append("}")
    out.append(f"\\end{{{env}}}")
    return "\n".join(out) + "\n"


def _tabular(t: Table) -> list[str]:
    groups = t.groups() if t.grouped else []
    if groups:
        spec = "l" + "".join(" " + "r" * len(cols) for _, cols in groups)
    else:
        spec = "l " + "r" * len(t.columns)
    out = ["\\begin{tabular}{" + spec + "}", "\\toprule"]
    if groups:
        heads, rules, start = [], [], 2
        for (_, fam), cols in groups:
            if cols[0].kind == "result":
                heads.append(f"\\multicolumn{{{len(cols)}}}{{c}}{{{tex_escape(family_label(fam))}}}")
                rules.append(f"\\cmidrule(lr){{{start}-{start + len(cols) - 1}}}")
            else:
                heads.append(" & ".join([""] * len(cols)))
            start += len(cols)
        out.append(" & " + " & ".join(heads) + " \\\\")
        out.append(" ".join(rules))
    out.append(tex_escape(t.stub_header) + " & " + " & ".join(tex_escape(_column_title(t, c)) for c in t.columns)
               + " \\\\")
    out.append("\\midrule")
    prev_kind = None
    for row in t.rows:
        if prev_kind == "harness" and row.kind == "reference":
            out.append("\\midrule")
        prev_kind = row.kind
        label = tex_escape(row.label)
        if row.kind == "reference":
            label = f"\\textit{{{label}}}"
        vals = []
        for col in t.columns:
            c = t.cell(row, col)
            txt = tex_escape(c.text)
            vals.append(f"\\textbf{{{txt}}}" if c.best and txt else txt)
        out.append(label + " & " + " & ".join(vals) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    return out
