"""Shared fixtures: a tiny synthetic benchmark registered as protocols, for fast end-to-end runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# The models in tests are tiny: one thread is faster than several, and it keeps a shared machine usable.
torch.set_num_threads(1)

TINY_BUDGET = {"iterations": 12, "batch_labeled": 4, "batch_unlabeled": 4, "lr": 0.01, "head_lr_mult": 10,
               "weight_decay": 1.0e-4, "eval_every": 4}


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory):
    """A 48-train / 8-val synthetic dataset and protocols ``tiny-8`` and ``tiny-full`` over it.

    Returns a dict with ``data_root`` and ``protocols_dir``; ``HARNESS_PROTOCOLS`` points at the latter
    for the whole session (subprocesses inherit it)."""
    from harness.data.synthetic import generate, small_protocols_yaml
    from harness.plugins import get_plugin_manager

    base = tmp_path_factory.mktemp("tiny")
    root = generate(base / "data", num_train=48, num_val=8, labeled_counts=(8,))
    pdir = base / "protocols"
    pdir.mkdir()
    (pdir / "tiny.yaml").write_text(small_protocols_yaml(root, "tiny", TINY_BUDGET, with_full=True))
    old = os.environ.get("HARNESS_PROTOCOLS")
    os.environ["HARNESS_PROTOCOLS"] = str(pdir)
    get_plugin_manager.cache_clear()
    yield {"data_root": Path(root), "protocols_dir": pdir}
    if old is None:
        os.environ.pop("HARNESS_PROTOCOLS", None)
    else:
        os.environ["HARNESS_PROTOCOLS"] = old
    get_plugin_manager.cache_clear()


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """No ImageNet weights anywhere the harness looks: an empty torchvision cache, no HARNESS_PRETRAINED_DIR."""
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.delenv("HARNESS_PRETRAINED_DIR", raising=False)
    return hub
