"""Fixtures of the data-layer tests; puts the repository root on sys.path for ``tests.data.layouts``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))


def shared_splits_dir() -> Path | None:
    """The shared reference split folder: $HARNESS_TEST_SPLITS, else <checkout>/../shared/splits."""
    env = os.environ.get("HARNESS_TEST_SPLITS")
    cands = [Path(env)] if env else []
    cands += [_REPO.parent / "shared" / "splits", _REPO / "shared" / "splits"]
    for c in cands:
        if (c / "SHA256SUMS").is_file():
            return c
    return None


@pytest.fixture
def shared_splits() -> Path:
    d = shared_splits_dir()
    if d is None:
        pytest.skip("shared split files not found (set HARNESS_TEST_SPLITS to a folder with SHA256SUMS)")
    return d


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test touches the user's cache or sees a developer's data/split environment variables."""
    for var in ("HARNESS_SPLITS", "HARNESS_SPLITS_URL", "HARNESS_DATA_VOC", "HARNESS_DATA_CITYSCAPES",
                "HARNESS_DATA_SYNTHETIC",
                "HARNESS_DATA_ADE20K", "HARNESS_DATA_COCO"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "harness-cache"))
