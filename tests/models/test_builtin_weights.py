"""The built-in pretrained encoder: shipped file and checksum, loading, refusal of a changed file, the pretraining
task and the determinism of its training."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.data import pretraining as task
from harness.errors import ConfigError
from harness.models import build_model
from harness.records import sha256_file
from harness.models import builtin_weights as bw
from harness.protocols import ModelSpec

SPEC = ModelSpec(backbone="small", width=32, decoder_channels=64, output_stride=16, pretrained=True,
                 weights="shapes-v1", deep_stem=False)


def test_shipped_file_matches_its_checksum_and_metadata():
    path = bw.verify("shapes-v1")
    assert sha256_file(path) == bw.BUILTIN_WEIGHTS["shapes-v1"].sha256
    meta = bw.metadata("shapes-v1")
    assert meta["sha256"] == bw.BUILTIN_WEIGHTS["shapes-v1"].sha256
    assert meta["recipe"]["weights"] == "shapes-v1" and meta["heldout"]["mean_ap"] > 0.5


def test_model_loads_the_weights_and_records_the_full_sha():
    model = build_model(SPEC, num_classes=8)
    state = torch.load(bw.weights_path("shapes-v1"), map_location="cpu", weights_only=True)
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert model.pretrained_source == f"builtin shapes-v1: sha256 {bw.BUILTIN_WEIGHTS['shapes-v1'].sha256}"
    random = build_model(SPEC.model_copy(update={"pretrained": False}), num_classes=8)
    assert not torch.equal(random.backbone.conv1[0].weight, model.backbone.conv1[0].weight)


def test_changed_file_and_wrong_backbone_are_refused(tmp_path, monkeypatch):
    bad = tmp_path / "small-w32-shapes-v1.pth"
    shutil.copy(bw.weights_path("shapes-v1"), bad)
    with open(bad, "r+b") as f:
        f.seek(-3, 2)
        f.write(b"\x00\x01\x02")
    monkeypatch.setattr(bw, "weights_path", lambda name: bad)
    with pytest.raises(ConfigError, match="has SHA-256 .* expected"):
        build_model(SPEC, num_classes=8)
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="width 32.*width 16"):
        build_model(SPEC.model_copy(update={"width": 16}), num_classes=8)
    with pytest.raises(ConfigError, match="unknown built-in weights"):
        bw.builtin_weights("shapes-v0")


def test_run_resolution_checks_the_weights_before_training():
    from harness.train.run import RunSpec, resolve

    r = resolve(RunSpec(method="supervised", protocol="synthetic-pt-100", seed=0))
    assert r.protocol.model.weights == "shapes-v1" and r.protocol.model.pretrained
    with pytest.raises(ConfigError, match="built-in weights 'shapes-v1' are for the small backbone of width 32"):
        resolve(RunSpec(method="supervised", protocol="synthetic-pt-100", seed=0, overrides={"model.width": 16}))
    with pytest.raises(ConfigError, match="neither 'imagenet' nor a built-in name"):
        resolve(RunSpec(method="supervised", protocol="synthetic-pt-100", seed=0,
                        overrides={"model.weights": "imagenet21k"}))


def test_pretraining_images_are_deterministic_and_labelled_by_what_is_visible():
    a, ya = task.render(5)
    b, yb = task.render(5)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8 and ya.shape == (task.NUM_LABELS,)
    x, y = task.render_many(0, 200)
    shapes, textures = y[:, :len(task.SHAPES)], y[:, len(task.SHAPES):]
    # every image shows 1-4 objects (some may be hidden); each visible object adds one shape and one texture
    assert shapes.sum(1).max() <= task.NUM_OBJECTS[1] and textures.sum(1).max() <= task.NUM_OBJECTS[1]
    assert ((shapes.sum(1) > 0) == (textures.sum(1) > 0)).all()
    assert (y.mean(0) > 0.05).all()  # every label occurs
    # its own images: not one of the benchmark generator's (different seed base)
    from harness.data import synthetic

    assert task.SEED_BASE != synthetic.SEED_BASE


def test_pretraining_is_deterministic(tmp_path):
    from harness.train.pretraining import train

    tiny = {"train_images": 256, "heldout_images": 64, "epochs": 1, "batch": 64, "warmup_steps": 2}
    infos = [train(tmp_path / str(i), workers=w, log=lambda *a: None, recipe=tiny) for i, w in ((0, 1), (1, 2))]
    assert infos[0]["sha256"] == infos[1]["sha256"]
    assert (tmp_path / "0" / "small-w32-shapes-v1.pth").read_bytes() == (tmp_path / "1" / "small-w32-shapes-v1.pth").read_bytes()
    assert set(infos[0]["heldout"]) >= {"label_accuracy", "exact_match", "mean_ap"}


def test_data_weights_command_verifies():
    out = subprocess.run([sys.executable, "-m", "harness", "data", "weights"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"shapes-v1: " in out.stdout and bw.BUILTIN_WEIGHTS["shapes-v1"].sha256 in out.stdout and " OK;" in out.stdout


@pytest.mark.slow
def test_rebuild_is_bit_identical(tmp_path):
    """The exact command of the README rebuilds the shipped file byte for byte (about 30 min on 2 cores)."""
    out = subprocess.run([sys.executable, "-m", "harness", "data", "weights", "--rebuild", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "identical to the shipped file" in out.stdout
