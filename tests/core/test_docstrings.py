"""Docstrings and comments cite files that ship with the repository, and state contracts rather than timings
(measurements belong in benchmarks/perf and results/)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for d in ("harness", "methods") for p in (REPO / d).rglob("*.py"))
MD_PATH = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]+\.md)\b")
TIMING = re.compile(r"\d\s*(?:s|ms)/step|\d(?:\.\d+)?\s*ms\b|\d(?:\.\d+)?\s*s/image|\b\d+(?:\.\d+)?\s*min vs\b")


def _docstrings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                  ast.ClassDef))]
    return [d for n in nodes if (d := ast.get_docstring(n))]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_cited_markdown_files_exist(path):
    missing = [m for m in MD_PATH.findall(path.read_text())
               if not (REPO / m).exists() and not (path.parent / m).exists()]
    assert not missing, f"{path.relative_to(REPO)} cites files the repository does not have: {missing}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_docstrings_hold_no_timings(path):
    found = [m.group(0) for d in _docstrings(path) for m in TIMING.finditer(d)]
    assert not found, f"{path.relative_to(REPO)}: timings in docstrings ({found}); put them in benchmarks/perf"
