"""Shared fixtures: a tiny synthetic benchmark registered as protocols, for fast end-to-end runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

# The models in tests are tiny: one thread is faster than several, and it keeps a shared machine usable.
torch.set_num_threads(1)

TINY_PROTOCOLS = """
defaults:
  dataset: synthetic
  family: tiny
  num_classes: {k}
  class_names: {names}
  crop_size: 48
  eval: {{mode: whole}}
  model: {{backbone: small, width: 8, decoder_channels: 16, output_stride: 16, pretrained: false, deep_stem: false}}
  budget: {{iterations: 12, batch_labeled: 4, batch_unlabeled: 4, lr: 0.01, head_lr_mult: 10, weight_decay: 1.0e-4,
           eval_every: 4}}
  supervised_loss: {{type: ce}}
protocols:
  - id: tiny-8
    splits:
      labeled: {{path: {lab}, sha256: {lab_sha}, count: {lab_n}}}
      unlabeled: {{path: {unl}, sha256: {unl_sha}, count: {unl_n}}}
      val: {{path: val.txt, sha256: {val_sha}, count: {val_n}}}
  - id: tiny-full
    splits:
      labeled: {{path: full/labeled.txt, sha256: {full_sha}, count: {full_n}}}
      val: {{path: val.txt, sha256: {val_sha}, count: {val_n}}}
"""


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory):
    """A 48-train / 8-val synthetic dataset and protocols ``tiny-8`` and ``tiny-full`` over it.

    Returns a dict with ``data_root`` and ``protocols_dir``; ``HARNESS_PROTOCOLS`` points at the latter
    for the whole session (subprocesses inherit it)."""
    from harness.data.synthetic import generate
    from harness.plugins import get_plugin_manager

    base = tmp_path_factory.mktemp("tiny")
    root = generate(base / "data", num_train=48, num_val=8, labeled_counts=(8,))
    m = json.loads((root / "manifest.json").read_text())
    sp = m["splits"]
    lab = next(k for k in sp if k.endswith("labeled.txt") and not k.startswith("full") and "unlabeled" not in k)
    unl = lab.replace("labeled.txt", "unlabeled.txt")
    pdir = base / "protocols"
    pdir.mkdir()
    (pdir / "tiny.yaml").write_text(TINY_PROTOCOLS.format(
        k=m["num_classes"], names=json.dumps(m["class_names"]),
        lab=lab, lab_sha=sp[lab]["sha256"], lab_n=sp[lab]["count"],
        unl=unl, unl_sha=sp[unl]["sha256"], unl_n=sp[unl]["count"],
        val_sha=sp["val.txt"]["sha256"], val_n=sp["val.txt"]["count"],
        full_sha=sp["full/labeled.txt"]["sha256"], full_n=sp["full/labeled.txt"]["count"]))
    old = os.environ.get("HARNESS_PROTOCOLS")
    os.environ["HARNESS_PROTOCOLS"] = str(pdir)
    get_plugin_manager.cache_clear()
    yield {"data_root": Path(root), "protocols_dir": pdir}
    if old is None:
        os.environ.pop("HARNESS_PROTOCOLS", None)
    else:
        os.environ["HARNESS_PROTOCOLS"] = old
    get_plugin_manager.cache_clear()
