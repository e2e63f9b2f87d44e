"""Data the harness reads, shipped inside the package: protocol files, published numbers and grid files.

``protocols/*.yaml`` (the built-in protocols), ``reported/*.csv`` (published reference rows of the tables) and
``grids/*.yaml`` (the grids of the paper-style tables and of the synthetic benchmark) live here and are package
data of the wheel. In a checkout, ``benchmarks/protocols``, ``benchmarks/reported`` and ``benchmarks/grids`` are
links to these folders, so both paths name the same files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["resource_dir", "protocols_dir", "reported_dir", "grids_dir", "shipped_grid"]


def resource_dir(name: str) -> Path:
    """The folder ``harness/resources/<name>`` of the imported package (a real folder: the package is not zipped)."""
    return Path(str(resources.files(__name__) / name))


def protocols_dir() -> Path:
    return resource_dir("protocols")


def reported_dir() -> Path:
    return resource_dir("reported")


def grids_dir() -> Path:
    return resource_dir("grids")


def shipped_grid(name: str) -> Path | None:
    """The shipped grid file called ``name`` (``voc-classic`` or ``voc-classic.yaml``), or None."""
    if not name or "/" in name or "\\" in name:
        return None
    path = grids_dir() / (name if name.endswith(".yaml") else f"{name}.yaml")
    return path if path.is_file() else None
