"""Checks of generated LaTeX: a compile with pdflatex where it is installed, and a structural parse that runs
everywhere (balanced braces and environments, the same number of cells in every row of a tabular)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

PDFLATEX = shutil.which("pdflatex")

DOCUMENT = r"""\documentclass[twocolumn]{article}
\usepackage[T1]{fontenc}
\usepackage{booktabs}
\usepackage{graphicx}
\begin{document}
%s
\end{document}
"""

_ENV = re.compile(r"\\(begin|end)\{([^}]*)\}")
_MULTI = re.compile(r"\\multicolumn\{(\d+)\}")


class LatexError(AssertionError):
    pass


def _strip_comments(tex: str) -> str:
    return "\n".join(re.sub(r"(?<!\\)%.*", "", line) for line in tex.splitlines())


def _column_count(spec: str) -> int:
    """Columns of a tabular spec made of l, c, r and p{...} (spaces and @{} ignored)."""
    spec = re.sub(r"@\{[^}]*\}", "", spec)
    spec = re.sub(r"p\{[^}]*\}", "p", spec)
    bad = set(spec) - set("lcrp |")
    if bad:
        raise LatexError(f"tabular spec {spec!r} has column types this check does not know: {sorted(bad)}")
    return sum(spec.count(ch) for ch in "lcrp")


def _cells(row: str) -> int:
    """Columns a row spans: its unescaped & separators, a \\multicolumn{k} counting k."""
    parts = re.split(r"(?<!\\)&", row)
    return sum(int(m.group(1)) if (m := _MULTI.search(p)) else 1 for p in parts)


def structure(tex: str) -> None:
    """Raise LatexError unless braces balance, every \\begin has its \\end in order, and every row of every tabular
    has as many cells as the tabular has columns."""
    body = _strip_comments(tex)
    depth = 0
    for i, ch in enumerate(body):
        if ch in "{}" and (i == 0 or body[i - 1] != "\\"):
            depth += 1 if ch == "{" else -1
            if depth < 0:
                raise LatexError(f"unbalanced '}}' at character {i}: {body[max(0, i - 40):i + 1]!r}")
    if depth:
        raise LatexError(f"{depth} unclosed '{{'")
    stack: list[str] = []
    for m in _ENV.finditer(body):
        kind, name = m.groups()
        if kind == "begin":
            stack.append(name)
        elif not stack or stack.pop() != name:
            raise LatexError(f"\\end{{{name}}} without its \\begin{{{name}}}")
    if stack:
        raise LatexError(f"\\begin{{{stack[-1]}}} is never ended")
    tabulars = re.findall(r"\\begin\{tabular\}\{((?:[^{}]|\{[^{}]*\})*)\}(.*?)\\end\{tabular\}", body, re.S)
    if "\\begin{tabular}" in body and not tabulars:
        raise LatexError("a tabular whose spec could not be read")
    for spec, inner in tabulars:
        ncols = _column_count(spec)
        rows = [r.strip() for r in re.split(r"\\\\", inner)]
        for row in rows:
            row = re.sub(r"\\(toprule|midrule|bottomrule)|\\cmidrule(\([^)]*\))?\{[^}]*\}", "", row).strip()
            if row and _cells(row) != ncols:
                raise LatexError(f"row with {_cells(row)} cells in a tabular of {ncols} columns: {row!r}")


def compile_pdf(tex: str, workdir: Path) -> str:
    """Compile the table in a two-column article with pdflatex; return the log. Raise LatexError on an error or
    an overfull box (the table does not fit its float)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "doc.tex").write_text(DOCUMENT % tex)
    done = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=workdir,
                          capture_output=True, text=True, timeout=120)
    log = (workdir / "doc.log").read_text(errors="replace") if (workdir / "doc.log").exists() else done.stdout
    if done.returncode != 0 or not (workdir / "doc.pdf").exists():
        errors = [line for line in log.splitlines() if line.startswith("!")]
        raise LatexError(f"pdflatex failed ({done.returncode}): {errors or log[-2000:]}")
    overfull = [line for line in log.splitlines() if line.startswith("Overfull \\hbox")]
    if overfull:
        raise LatexError(f"the table does not fit: {overfull}")
    return log


def check(tex: str, workdir: Path) -> None:
    """The structural parse always; the compile too where pdflatex is installed."""
    structure(tex)
    if PDFLATEX:
        compile_pdf(tex, workdir)
