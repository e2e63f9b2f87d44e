"""Weak augmentation geometry (benchmarks spec §5) and normalisation."""

from __future__ import annotations

import numpy as np
import torch

from harness.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, WeakParams, apply_weak, normalize,
                                     sample_weak_params, weak_augment)


def test_scale_range_and_aspect():
    rng = np.random.default_rng(0)
    longs, ratios = [], []
    for _ in range(3000):
        p = sample_weak_params(60, 100, 32, rng)
        longs.append(p.width)
        ratios.append(p.height / p.width)
        assert p.height == int(60 * p.width / 100 + 0.5)
        assert 0 <= p.top <= max(p.height, 32) - 32 and 0 <= p.left <= max(p.width, 32) - 32
    assert min(longs) == 50 and max(longs) == 200  # uniform integer in [⌊0.5L⌋, ⌊2L⌋], both ends reachable
    assert abs(np.mean(longs) - 125) < 3
    p = sample_weak_params(101, 41, 16, np.random.default_rng(1))  # portrait: the height is the long side
    assert 50 <= p.height <= 202


def test_output_shapes_and_dtypes():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    mask = rng.integers(0, 21, (40, 50), dtype=np.uint8)
    raw, label, valid = weak_augment(img, mask, 32, rng)
    assert raw.shape == (3, 32, 32) and raw.dtype == torch.uint8
    assert label.shape == (32, 32) and label.dtype == torch.long
    assert valid.shape == (32, 32) and valid.dtype == torch.bool
    raw, label, valid = weak_augment(img, None, 32, rng)
    assert label is None and raw.shape == (3, 32, 32)


def test_padding_right_bottom():
    img = np.full((10, 20, 3), 200, np.uint8)
    mask = np.full((10, 20), 3, np.uint8)
    p = WeakParams(height=10, width=20, top=0, left=0, flip=False)  # no resize, image smaller than the crop
    raw, label, valid = apply_weak(img, mask, p, 32)
    assert valid[:10, :20].all() and not valid[10:].any() and not valid[:, 20:].any()
    assert (label[valid] == 3).all() and (label[~valid] == 255).all()
    assert (raw[:, ~valid] == 0).all() and (raw[:, valid] == 200).all()
    # random draws on a small image: padding is always where valid is False, labels 255 there
    rng = np.random.default_rng(3)
    for _ in range(50):
        raw, label, valid = weak_augment(img, mask, 48, rng)
        assert (label[~valid] == 255).all() and (raw[:, ~valid] == 0).all()
        assert (label[valid] == 3).all() and valid.any()


def test_flip_consistency_image_and_mask():
    h, w = 40, 60
    mask = np.zeros((h, w), np.uint8)
    mask[:, : w // 2] = 1  # left half class 1 (bright), right half class 2 (dark)
    mask[:, w // 2:] = 2
    img = np.where(mask[..., None] == 1, 250, 5).astype(np.uint8).repeat(3, axis=2)
    base = WeakParams(height=h, width=w, top=4, left=10, flip=False)
    raw, label, valid = apply_weak(img, mask, base, 32)
    raw_f, label_f, valid_f = apply_weak(img, mask, WeakParams(h, w, 4, 10, True), 32)
    assert torch.equal(raw_f, raw.flip(-1)) and torch.equal(label_f, label.flip(-1)) and torch.equal(valid_f, valid.flip(-1))
    rng = np.random.default_rng(7)
    flips = 0
    for _ in range(40):
        p = sample_weak_params(h, w, 32, rng)
        flips += p.flip
        raw, label, valid = apply_weak(img, mask, p, 32)
        bright = raw[0] > 127
        agree = ((label == 1) == bright)[valid & (label != 255)].float().mean()
        assert agree > 0.95  # only bilinear boundary pixels may disagree
    assert 5 < flips < 35


def test_normalize():
    raw = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    raw[:, :, 0, 0] = 255
    out = normalize(raw)
    assert out.dtype == torch.float32 and out.shape == raw.shape
    for c in range(3):
        assert torch.isclose(out[0, c, 1, 1], torch.tensor(-IMAGENET_MEAN[c] / IMAGENET_STD[c]))
        assert torch.isclose(out[1, c, 0, 0], torch.tensor((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]))


def _reference(image, mask, p, crop):
    """The textbook pipeline: full PIL resize, pad right/bottom, crop, flip."""
    from PIL import Image
    img = np.asarray(Image.fromarray(image).resize((p.width, p.height), Image.BILINEAR))
    m = np.asarray(Image.fromarray(mask).resize((p.width, p.height), Image.NEAREST))
    ph, pw = max(p.height, crop), max(p.width, crop)
    pi = np.zeros((ph, pw, 3), np.uint8)
    pm = np.full((ph, pw), 255, np.uint8)
    pi[:p.height, :p.width], pm[:p.height, :p.width] = img, m
    pi, pm = pi[p.top:p.top + crop, p.left:p.left + crop], pm[p.top:p.top + crop, p.left:p.left + crop]
    return (pi[:, ::-1], pm[:, ::-1]) if p.flip else (pi, pm)


def test_region_resampling_matches_full_resize():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (45, 60, 3), dtype=np.uint8)
    mask = rng.integers(0, 21, (45, 60), dtype=np.uint8)
    for _ in range(60):
        p = sample_weak_params(45, 60, 40, rng)
        raw, label, _ = apply_weak(image, mask, p, 40)
        ref_img, ref_mask = _reference(image, mask, p, 40)
        assert np.array_equal(label.numpy(), ref_mask)  # nearest: bit-exact with PIL
        diff = np.abs(raw.numpy().transpose(1, 2, 0).astype(int) - ref_img)
        assert diff.max() <= 2 and (diff > 0).mean() < 0.2  # bilinear: fixed-point rounding only
