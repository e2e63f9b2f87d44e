"""Built-in synthetic segmentation dataset, written in the PASCAL VOC layout.

A laptop-CPU test bed for semi-supervised segmentation. Classes are defined by *shape*, *texture* and
*context*, never by colour: colours are drawn independently of the class, and a texture is a luma pattern
between two colours, so the cues survive the photometric strong views of the methods (grey-scale, hue,
inversion, solarize, …). Version 3 (the default) gives each object class one texture and keeps the
geometry moderate so the benchmark's small CPU model learns in its budget; version 2 drew any texture for
any class, with clutter, a wider scale range and more blur.

Classes (index: name, definition)::

    0 background  flat background (v2: any texture), plus clutter (blobs, strokes; v3: none) labelled background
    1 disk        filled disk / mild ellipse                    v3 texture: stripes
    2 ring        annulus (the hole shows the background and is labelled background)          v3: flat
    3 square      filled square / mild rectangle, any rotation  v3 texture: checker
    4 triangle    filled triangle (mildly stretched), any rotation                            v3: speckle
    5 cross       plus sign (two crossing bars), any rotation    v3: flat
    6 dot_on      a small disk lying entirely *on* an object of classes 1, 3, 4 or 5 (context class)
    7 dot_alone   the same small disk lying alone on the background, away from objects and clutter

Classes 6 and 7 are the same shape with the same size and colour distribution; only the surroundings
tell them apart. Every item gets a colour from one distribution (uniform RGB, resampled until it contrasts
with what lies below); in v3 an object's texture colour differs from its base colour by at least
``texture_min_luma`` in luma, with stripe / checker periods in ``texture_period``. Objects have random
scale, rotation and aspect and occlude each other (later objects hide at most ``max_occlusion`` of an
earlier one); the image is then blurred, noised and given a random brightness / contrast / colour cast,
and saved as JPEG (quality 95).

Why v3: with v2 the small model trained on all 3,000 labeled images for 4,000 steps reached 31 mIoU
(training loss still 0.65, i.e. underfitting), and with 12 labels 11 mIoU, nearly all background, so
semi-supervised methods had no useful pseudo-labels to build on (results/calibration/README.md).

Layout (same reader as PASCAL VOC, spec §1)::

    <root>/JPEGImages/<id>.jpg              RGB, 64x64
    <root>/SegmentationClass/<id>.png       palette ("P", VOC palette), values 0..7, 255 = void
    <root>/splits/train.txt                 all train ids (``train_00000`` ...)
    <root>/splits/val.txt                   all val ids (``val_00000`` ...)
    <root>/splits/<n>/{labeled,unlabeled}.txt   n in LABELED_COUNTS; nested (100 ⊂ 200 ⊂ 400 ⊂ 800)
    <root>/splits/full/labeled.txt          all train ids, no unlabeled list
    <root>/splits/selection.txt             SELECTION_COUNT train ids outside every labeled list (selection split)
    <root>/splits/seed<k>/<n>/{labeled,unlabeled}.txt   split seed k in SPLIT_SEEDS: another draw of n labeled
    <root>/manifest.json                    version, counts, class names, parameters, split checksums,
                                            content_sha256 (fingerprint of every image and mask file)

Split lines are ``JPEGImages/<id>.jpg SegmentationClass/<id>.png`` with a final newline. The labeled lists
are prefixes of one fixed-seed permutation of the train ids, chosen so that the smallest (hence every) list
contains every foreground class; ``unlabeled`` is the rest of train. The selection split and the split seeds
follow :mod:`harness.data.split_seeds`: the selection split is drawn from the train ids outside the largest
labeled list (so outside every one), each split seed's lists from the train ids outside the selection split, with
the same every-class rule; roots generated before they existed get them on first use (:func:`ensure_seed_splits`,
from the masks). Void (255) is a ~2 px band on each
label boundary between different classes (like VOC's fine masks); background/clutter edges are not void.

Everything is deterministic: image ``i`` of split ``s`` is drawn from ``numpy.random.Generator(PCG64)``
seeded with ``SeedSequence([SEED_BASE, version, s, i])``; the split lists depend only on the masks.
Generation is atomic (a temporary sibling folder renamed at the end). Regenerate with
``python -m harness.data.synthetic [--root DIR] [--workers N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from ..errors import DataError
from ..hookspecs import hookimpl
from .registry import Dataset
from .voc import VOCLayout

SYNTHETIC_VERSION = 3
SEED_BASE = 20240531  # fixed; part of every per-image seed
IMAGE_SIZE = 64
JPEG_QUALITY = 95

CLASS_NAMES = ["background", "disk", "ring", "square", "triangle", "cross", "dot_on", "dot_alone"]
NUM_CLASSES = len(CLASS_NAMES)
BG, DISK, RING, SQUARE, TRIANGLE, CROSS, DOT_ON, DOT_ALONE = range(NUM_CLASSES)
OBJECT_CLASSES = (DISK, RING, SQUARE, TRIANGLE, CROSS)
HOST_CLASSES = (DISK, SQUARE, TRIANGLE, CROSS)  # rings are too thin to carry a dot
IGNORE = 255

NUM_TRAIN = 3000
NUM_VAL = 500
LABELED_COUNTS = (100, 200, 400, 800)
SPLIT_SEED = 7
SELECTION_COUNT = 200        # held-out train images that choose a checkpoint (--metric selected)
SPLIT_SEEDS = (1, 2, 3, 4, 5)  # further independent draws of every labeled count (harness/data/split_seeds.py)
MIN_CLASS_PIXELS = 8  # a class "is in" an image with at least this many non-void pixels

# --- generator knobs (defaults of SynthParams; all recorded in manifest.json) ---
NUM_OBJECTS = (2, 4)            # main objects per image, inclusive range
OBJECT_SIZE = (14.0, 20.0)      # object "radius" in px
ASPECT = (0.9, 1.1)             # x/y stretch of objects
RING_INNER = (0.45, 0.7)        # inner/outer radius of rings
CROSS_ARM = (0.24, 0.36)        # arm half-width / arm half-length of crosses
MAX_OCCLUSION = 0.5             # objects placed later hide at most this fraction of an earlier object
DOT_RADIUS = (3.0, 4.5)         # dot_on and dot_alone share it
P_DOT_ON = 0.4                  # probability that an eligible object carries a dot
NUM_LONE_DOTS = (0, 3)          # dot_alone per image, inclusive (placement may fail when crowded)
NUM_CLUTTER_BACK = (0, 0)       # blobs/strokes painted before objects
NUM_CLUTTER_FRONT = (0, 0)      # thin strokes painted over objects
MIN_CONTRAST = 90.0             # RGB distance of a colour from the colour below it
TEXTURE_AMP = (0.85, 1.0)       # mix weight of an object's texture colour
BG_TEXTURE_AMP = (0.0, 0.4)
BLUR_SIGMA = (0.0, 0.5)
NOISE_STD = (2.0, 6.0)
CONTRAST = (0.6, 1.3)
BRIGHTNESS = (-30.0, 30.0)
CHANNEL_GAIN = (0.85, 1.15)
OBJECT_TEXTURES = ("flat", "stripes", "checker", "noise", "speckle", "gradient")  # drawn uniformly per item
CLUTTER_TEXTURES = ("flat", "gradient")  # none of the class textures: clutter must not mimic an object
BG_TEXTURES = ("flat",)
# texture per object class (disk, ring, square, triangle, cross); () = any of OBJECT_TEXTURES (v2)
CLASS_TEXTURES: tuple[str, ...] = ("stripes", "flat", "checker", "speckle", "flat")
TEXTURE_PERIOD = (5.0, 7.0)     # period in px of object stripes / checkers
TEXTURE_MIN_LUMA = 90.0         # an object texture's second colour differs from the base by at least this luma
VOID_BAND = 1                   # void border: 1 = one pixel on the top item's side of a class boundary, 2 = both


@dataclasses.dataclass(frozen=True)
class SynthParams:
    """Generator knobs (tuples are inclusive ranges). Defaults are the module-level constants."""

    image_size: int = IMAGE_SIZE
    num_objects: tuple[int, int] = NUM_OBJECTS
    object_size: tuple[float, float] = OBJECT_SIZE
    aspect: tuple[float, float] = ASPECT
    ring_inner: tuple[float, float] = RING_INNER
    cross_arm: tuple[float, float] = CROSS_ARM
    max_occlusion: float = MAX_OCCLUSION
    dot_radius: tuple[float, float] = DOT_RADIUS
    p_dot_on: float = P_DOT_ON
    num_lone_dots: tuple[int, int] = NUM_LONE_DOTS
    num_clutter_back: tuple[int, int] = NUM_CLUTTER_BACK
    num_clutter_front: tuple[int, int] = NUM_CLUTTER_FRONT
    min_contrast: float = MIN_CONTRAST
    texture_amp: tuple[float, float] = TEXTURE_AMP
    bg_texture_amp: tuple[float, float] = BG_TEXTURE_AMP
    blur_sigma: tuple[float, float] = BLUR_SIGMA
    noise_std: tuple[float, float] = NOISE_STD
    contrast: tuple[float, float] = CONTRAST
    brightness: tuple[float, float] = BRIGHTNESS
    channel_gain: tuple[float, float] = CHANNEL_GAIN
    void_band: int = VOID_BAND
    texture_min_luma: float = TEXTURE_MIN_LUMA
    texture_period: tuple[float, float] = TEXTURE_PERIOD
    object_textures: tuple[str, ...] = OBJECT_TEXTURES
    clutter_textures: tuple[str, ...] = CLUTTER_TEXTURES
    bg_textures: tuple[str, ...] = BG_TEXTURES
    class_textures: tuple[str, ...] = CLASS_TEXTURES
    jpeg_quality: int = JPEG_QUALITY

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict) -> "SynthParams":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


SPLIT_CODES = {"train": 0, "val": 1}


def image_id(split: str, index: int) -> str:
    return f"{split}_{index:05d}"


def default_root(version: int = SYNTHETIC_VERSION) -> Path:
    cache = os.environ.get("HARNESS_CACHE") or str(Path.home() / ".cache" / "harness")
    return Path(cache).expanduser() / "synthetic" / f"v{version}"


def split_root(root: str | Path) -> Path:
    """The split root of a synthetic dataset root (what protocol split paths are relative to)."""
    return Path(root) / "splits"


def _palette() -> list[int]:
    from .voc import voc_palette_flat  # the one VOC colour map of the harness

    return [int(v) for v in voc_palette_flat()]


# ---------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------

_GRIDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    if size not in _GRIDS:
        c = np.arange(size, dtype=np.float32) + 0.5
        _GRIDS[size] = (np.broadcast_to(c[None, :], (size, size)).copy(),
                        np.broadcast_to(c[:, None], (size, size)).copy())
    return _GRIDS[size]


def _u(rng, lo_hi) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _i(rng, lo_hi) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


def _random_colour(rng, below: np.ndarray | None, min_contrast: float) -> np.ndarray:
    for _ in range(50):
        c = rng.uniform(0, 255, size=3).astype(np.float32)
        if below is None or float(np.linalg.norm(c - below)) >= min_contrast:
            return c
    return c


def _local(X, Y, cx, cy, theta, aspect):
    """Rotated, stretched local coordinates and the factor that turns local distances into pixels."""
    ct, st = math.cos(theta), math.sin(theta)
    dx, dy = X - cx, Y - cy
    sx, sy = math.sqrt(aspect), 1.0 / math.sqrt(aspect)
    u = (dx * ct + dy * st) / sx
    v = (-dx * st + dy * ct) / sy
    return u, v, min(sx, sy)


def _sdf_box(u, v, bx, by):
    qx, qy = np.abs(u) - bx, np.abs(v) - by
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _sdf_triangle(u, v, r):
    """Equilateral triangle with half side ``r``, centred (Inigo Quilez's exact SDF)."""
    k = math.sqrt(3.0)
    px = np.abs(u) - r
    py = -v + r / k
    flip = px + k * py > 0
    px2 = np.where(flip, (px - k * py) / 2, px)
    py2 = np.where(flip, (-k * px - py) / 2, py)
    px2 = px2 - np.clip(px2, -2 * r, 0)
    return -np.sqrt(px2 * px2 + py2 * py2) * np.sign(py2)


def _object_sdf(cls, rng, p: SynthParams, X, Y, cx, cy, size):
    theta = _u(rng, (0, 2 * math.pi))
    aspect = _u(rng, p.aspect)
    extra = size * _u(rng, p.ring_inner) if cls == RING else size * _u(rng, p.cross_arm) if cls == CROSS else 0.0
    g = 1.6 * size * math.sqrt(max(aspect, 1 / aspect)) + 2
    sl = _window(X.shape[0], cx - g, cx + g, cy - g, cy + g)
    out = np.full(X.shape, _FAR, np.float32)
    if X[sl].size == 0:
        return out
    u, v, f = _local(X[sl], Y[sl], cx, cy, theta, aspect)
    if cls == DISK:
        d = np.sqrt(u * u + v * v) - size
    elif cls == RING:
        inner = extra
        d = np.abs(np.sqrt(u * u + v * v) - (size + inner) / 2) - (size - inner) / 2
    elif cls == SQUARE:
        b = 0.82 * size
        d = _sdf_box(u, v, b, b)
    elif cls == TRIANGLE:
        r = 1.05 * size
        d = _sdf_triangle(u, v + 0.2 * r, r)  # centroid roughly at the centre
    elif cls == CROSS:
        a, w = 1.0 * size, extra
        d = np.minimum(_sdf_box(u, v, a, w), _sdf_box(u, v, w, a))
    else:
        raise ValueError(cls)
    out[sl] = d * f
    return out


_FAR = np.float32(1e3)


def _window(size, x0, x1, y0, y1):
    """Slices of the pixel grid covering [x0, x1] x [y0, y1] (possibly empty)."""
    xa, xb = max(int(math.floor(x0)), 0), min(int(math.ceil(x1)) + 1, size)
    ya, yb = max(int(math.floor(y0)), 0), min(int(math.ceil(y1)) + 1, size)
    return slice(ya, max(ya, yb)), slice(xa, max(xa, xb))


def _sdf_segments(X, Y, pts, half_width):
    pts = np.asarray(pts, dtype=np.float64)
    g = half_width + 2
    sl = _window(X.shape[0], pts[:, 0].min() - g, pts[:, 0].max() + g, pts[:, 1].min() - g, pts[:, 1].max() + g)
    out = np.full(X.shape, _FAR, np.float32)
    Xw, Yw = X[sl], Y[sl]
    if Xw.size == 0:
        return out
    d = None
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        ex, ey = x1 - x0, y1 - y0
        L2 = ex * ex + ey * ey + 1e-6
        t = np.clip(((Xw - x0) * ex + (Yw - y0) * ey) / L2, 0, 1)
        dd = (Xw - x0 - t * ex) ** 2 + (Yw - y0 - t * ey) ** 2
        d = dd if d is None else np.minimum(d, dd)
    out[sl] = np.sqrt(d) - half_width
    return out


def _stroke_sdf(rng, X, Y, size, thin: bool):
    """A curved stroke (quadratic Bezier as a polyline)."""
    p0 = rng.uniform(-0.1, 1.1, 2) * size
    ang = rng.uniform(0, 2 * math.pi)
    length = rng.uniform(0.2, 0.6) * size
    p2 = p0 + length * np.array([math.cos(ang), math.sin(ang)])
    mid = (p0 + p2) / 2 + rng.normal(0, 0.25 * length, 2)
    t = np.linspace(0, 1, 9)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * mid + t ** 2 * p2
    hw = rng.uniform(0.5, 1.0) if thin else rng.uniform(0.6, 1.8)
    return _sdf_segments(X, Y, pts, hw)


def _blob_sdf(rng, X, Y, size):
    """An irregular blob: radius modulated by low harmonics, clearly not a disk."""
    cx, cy = rng.uniform(0, size, 2)
    r0 = rng.uniform(4.0, 14.0)
    amps = [r0 * rng.uniform(0.08, 0.22) for _ in range(4)]
    phases = [rng.uniform(0, 2 * math.pi) for _ in range(4)]
    stretch = rng.uniform(1.0, 1.8)
    theta = rng.uniform(0, math.pi)
    g = (r0 + sum(amps)) * stretch + 2
    sl = _window(size, cx - g, cx + g, cy - g, cy + g)
    out = np.full(X.shape, _FAR, np.float32)
    if X[sl].size == 0:
        return out
    dx, dy, f = _local(X[sl], Y[sl], cx, cy, theta, stretch)
    ang = np.arctan2(dy, dx)
    r = np.full_like(ang, r0)
    for k, a, ph in zip((2, 3, 4, 5), amps, phases):
        r = r + a * np.sin(k * ang + ph)
    out[sl] = (np.sqrt(dx * dx + dy * dy) - r) * f
    return out


def _smooth_noise(rng, size, cells):
    small = rng.uniform(0, 1, (cells, cells)).astype(np.float32)
    im = Image.fromarray(small, mode="F").resize((size, size), Image.BICUBIC)
    return np.clip(np.asarray(im, dtype=np.float32), 0, 1)


TEXTURES = ("flat", "stripes", "checker", "noise", "speckle", "gradient")


def _pattern(rng, X, Y, size, sl, kinds, period_range=(3.0, 12.0)) -> np.ndarray:
    """A texture pattern in [0, 1] over ``X[sl]`` (``sl``: the window of the full grid being painted)."""
    kind = TEXTURES.index(kinds[int(rng.integers(0, len(kinds)))])
    ang = rng.uniform(0, math.pi)
    X, Y = X[sl], Y[sl]
    t = X * math.cos(ang) + Y * math.sin(ang)
    if kind == 0:  # flat
        return np.zeros_like(X)
    if kind == 1:  # stripes (soft square wave)
        period = _u(rng, period_range)
        s = np.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi))
        return np.clip(s * 2.5 + 0.5, 0, 1)
    if kind == 2:  # checker
        period = _u(rng, period_range)
        t2 = -X * math.sin(ang) + Y * math.cos(ang)
        s = np.sin(2 * math.pi * t / period) * np.sin(2 * math.pi * t2 / period)
        return np.clip(s * 3 + 0.5, 0, 1)
    if kind == 3:  # smooth noise
        return _smooth_noise(rng, size, int(rng.integers(3, 16)))[sl]
    if kind == 4:  # speckle
        return rng.uniform(0, 1, X.shape).astype(np.float32)
    lo = min(0.0, size * math.cos(ang)) + min(0.0, size * math.sin(ang))  # gradient across the full image
    g = (t - lo) / (size * (abs(math.cos(ang)) + abs(math.sin(ang))))
    return g if rng.uniform() < 0.5 else 1 - g


def _luma(c: np.ndarray) -> float:
    return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])


def _texture(rng, X, Y, size, base, amp_range, kinds, sl=(slice(None), slice(None)), min_luma: float = 0.0,
             period=(3.0, 12.0)):
    for _ in range(50):  # a pattern that survives greyscale needs a luma difference between its two colours
        second = _random_colour(rng, None, 0)
        if abs(_luma(second) - _luma(base)) >= min_luma:
            break
    amp = _u(rng, amp_range)
    pat = _pattern(rng, X, Y, size, sl, kinds, period)
    return base[None, None, :] + (amp * pat)[..., None] * (second - base)[None, None, :]


def _blur(img, sigma):
    """Separable Gaussian blur of an HxWxC float image (edge padding)."""
    r = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1, dtype=np.float32) / sigma) ** 2)
    k /= k.sum()
    H, W = img.shape[:2]
    pad = np.pad(img, ((r, r), (0, 0), (0, 0)), mode="edge")
    out = sum(k[j] * pad[j:j + H] for j in range(2 * r + 1))
    pad = np.pad(out, ((0, 0), (r, r), (0, 0)), mode="edge")
    return sum(k[j] * pad[:, j:j + W] for j in range(2 * r + 1)).astype(np.float32)


def _paint(img, rng, X, Y, size, sdf, base, amp_range, kinds, min_luma: float = 0.0, period=(3.0, 12.0)):
    """Paint a textured item with anti-aliased edges (alpha = coverage estimated from the SDF)."""
    alpha = np.clip(0.5 - sdf, 0.0, 1.0)
    rows = np.flatnonzero(alpha.any(axis=1))
    cols = np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:
        return
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    field = _texture(rng, X, Y, size, base, amp_range, kinds, sl, min_luma, period)
    a = alpha[sl][..., None]
    img[sl] += a * (field - img[sl])


def _place_dot(rng, X, Y, p, ok_center: Callable[[float, float, float], bool], tries=40):
    for _ in range(tries):
        r = _u(rng, p.dot_radius)
        cx, cy = rng.uniform(r + 1, p.image_size - r - 1, 2)
        if ok_center(cx, cy, r):
            return cx, cy, r
    return None


def render(split: str, index: int, version: int = SYNTHETIC_VERSION,
           params: SynthParams | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Render one image: (uint8 RGB HxWx3 before JPEG, uint8 mask with 255 void, info).

    ``info['objects']`` lists ``(class, mean RGB of its visible pixels)`` for tests of colour independence.
    """
    p = params or SynthParams()
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        [SEED_BASE, version, SPLIT_CODES[split], index])))
    S = p.image_size
    X, Y = _grid(S)

    # background
    bg = _random_colour(rng, None, 0)
    img = _texture(rng, X, Y, S, bg, p.bg_texture_amp, p.bg_textures).astype(np.float32).copy()
    label = np.zeros((S, S), np.uint8)
    inst = np.zeros((S, S), np.int16)  # painted item id (objects, dots, clutter), 0 = bare background
    items: list[int] = [BG]  # class of each item id
    occupied = np.zeros((S, S), bool)  # anything but bare background

    def add_item(cls, colour, sdf):
        inside = sdf < 0
        items.append(cls)
        inst[inside] = len(items) - 1
        label[inside] = cls
        occupied[inside] = True
        return inside

    def clutter(thin: bool):
        if thin or rng.uniform() < 0.5:
            sdf = _stroke_sdf(rng, X, Y, S, thin)
        else:
            sdf = _blob_sdf(rng, X, Y, S)
        c = _random_colour(rng, bg, p.min_contrast * 0.5)
        _paint(img, rng, X, Y, S, sdf, c, p.texture_amp, p.clutter_textures)
        add_item(BG, c, sdf)

    for _ in range(_i(rng, p.num_clutter_back)):
        clutter(thin=False)

    # objects, each possibly carrying a dot painted right after it
    n_obj = _i(rng, p.num_objects)
    placed_area: dict[int, int] = {}
    for _ in range(n_obj):
        cls = int(rng.choice(OBJECT_CLASSES))
        size = _u(rng, p.object_size)
        sdf = None
        for _try in range(20):
            cx, cy = rng.uniform(0.08 * S, 0.92 * S, 2)
            cand = _object_sdf(cls, rng, p, X, Y, cx, cy, size)
            inside = cand < 0
            if inside.sum() < 20:
                continue
            hidden = np.bincount(inst[inside], minlength=len(items))
            visible = np.bincount(inst.reshape(-1), minlength=len(items))
            if all(visible[k] - hidden[k] >= (1 - p.max_occlusion) * a for k, a in placed_area.items()):
                sdf = cand
                break
        if sdf is None:
            continue
        colour = _random_colour(rng, bg, p.min_contrast)
        kinds = (p.class_textures[OBJECT_CLASSES.index(cls)],) if p.class_textures else p.object_textures
        _paint(img, rng, X, Y, S, sdf, colour, p.texture_amp, kinds, p.texture_min_luma, p.texture_period)
        inside = add_item(cls, colour, sdf)
        placed_area[len(items) - 1] = int(inside.sum())
        # a dot on this object (dots are not counted as occluders of their host)
        if cls in HOST_CLASSES and rng.uniform() < p.p_dot_on:
            def on_host(x, y, r, _sdf=sdf):
                iy, ix = int(y), int(x)
                return _sdf[iy, ix] < -(r + 1.5)
            spot = _place_dot(rng, X, Y, p, on_host)
            if spot is not None:
                dcx, dcy, r = spot
                dsdf = np.sqrt((X - dcx) ** 2 + (Y - dcy) ** 2) - r
                dc = _random_colour(rng, colour, p.min_contrast)
                _paint(img, rng, X, Y, S, dsdf, dc, (0.0, 0.25), ("flat", "speckle", "noise"))
                add_item(DOT_ON, dc, dsdf)

    for _ in range(_i(rng, p.num_clutter_front)):
        clutter(thin=True)

    # dots alone: only bare background (no object, no clutter) within r + 3 px
    def free(x, y, r):
        g = r + 3.0
        x0, x1 = max(int(x - g), 0), min(int(x + g) + 1, S)
        y0, y1 = max(int(y - g), 0), min(int(y + g) + 1, S)
        win = occupied[y0:y1, x0:x1]
        dd = (X[y0:y1, x0:x1] - x) ** 2 + (Y[y0:y1, x0:x1] - y) ** 2
        return not bool((win & (dd <= g * g)).any())

    for _ in range(_i(rng, p.num_lone_dots)):
        spot = _place_dot(rng, X, Y, p, free)
        if spot is None:
            continue
        dcx, dcy, r = spot
        dsdf = np.sqrt((X - dcx) ** 2 + (Y - dcy) ** 2) - r
        dc = _random_colour(rng, bg, p.min_contrast)
        _paint(img, rng, X, Y, S, dsdf, dc, (0.0, 0.25), ("flat", "speckle", "noise"))
        add_item(DOT_ALONE, dc, dsdf)

    # mean colour of the visible pixels of every non-background item (before photometric effects)
    objects = []
    for k in np.unique(inst):
        if k and items[k] != BG:
            objects.append((items[k], img[inst == k].mean(axis=0).tolist()))

    # photometric effects: blur, contrast/brightness/colour cast, noise
    sigma = _u(rng, p.blur_sigma)
    contrast, bright = _u(rng, p.contrast), _u(rng, p.brightness)
    gain = rng.uniform(p.channel_gain[0], p.channel_gain[1], 3).astype(np.float32)
    noise = _u(rng, p.noise_std)
    if sigma > 0.05:
        img = _blur(img, sigma)
    img = ((img - 128.0) * contrast + 128.0 + bright) * gain
    img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    rgb = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    # void: a thin band on every boundary between different classes (void_band 1: the pixels of the item on top,
    # i.e. painted later; 2: both sides; 0: none)
    mask = label.copy()
    void = np.zeros((S, S), bool)
    if p.void_band:
        for a, b, ia, ib in ((np.s_[:, 1:], np.s_[:, :-1], np.s_[:, 1:], np.s_[:, :-1]),
                             (np.s_[1:, :], np.s_[:-1, :], np.s_[1:, :], np.s_[:-1, :])):
            edge = label[a] != label[b]
            if p.void_band >= 2:
                void[a] |= edge
                void[b] |= edge
            else:
                top_a = inst[ia] > inst[ib]
                void[a] |= edge & top_a
                void[b] |= edge & ~top_a
    mask[void] = IGNORE
    return rgb, mask, {"objects": objects}


# ---------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------

def _default_sigterm() -> None:
    """Pool initializer. A forked worker inherits the parent's SIGTERM handler; a grid task's handler only
    flags a stop, so the worker would survive the SIGTERM of ``Pool.terminate()`` and the pool's exit would
    wait for it forever."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _write_one(args) -> tuple[str, int, list[int]]:
    tmp, split, index, version, params_json, palette = args
    params = SynthParams.from_json(params_json)
    rgb, mask, _ = render(split, index, version, params)
    iid = image_id(split, index)
    Image.fromarray(rgb, mode="RGB").save(Path(tmp) / "JPEGImages" / f"{iid}.jpg", quality=params.jpeg_quality)
    m = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
    m.putpalette(palette)
    m.save(Path(tmp) / "SegmentationClass" / f"{iid}.png", optimize=False)
    counts = np.bincount(mask.reshape(-1), minlength=256)[:NUM_CLASSES]
    return split, index, [int(c) for c in counts]  # classes_present() applies MIN_CLASS_PIXELS to these


def _line(iid: str) -> str:
    return f"JPEGImages/{iid}.jpg SegmentationClass/{iid}.png\n"


def _write_list(path: Path, ids: list[str]) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = split_bytes(ids)
    path.write_bytes(data)
    return {"count": len(ids), "sha256": hashlib.sha256(data).hexdigest()}


def classes_present(mask: np.ndarray) -> set[int]:
    """Foreground classes with at least MIN_CLASS_PIXELS non-void pixels in a mask."""
    counts = np.bincount(mask.reshape(-1), minlength=256)[:NUM_CLASSES]
    return {c for c in range(1, NUM_CLASSES) if counts[c] >= MIN_CLASS_PIXELS}


def split_lists(num_train: int, num_val: int, labeled_counts: tuple[int, ...], version: int,
                present: Callable[[str], set[int]], selection_count: int = SELECTION_COUNT,
                split_seeds: tuple[int, ...] = SPLIT_SEEDS) -> tuple[dict[str, list[str]], int]:
    """The ids of every split list (``{relpath: ids}``) and the permutation attempt that was used.

    ``present(train_id)`` gives the foreground classes of a train image. The labeled lists are the prefixes of
    the first fixed-seed permutation of the train ids whose smallest prefix contains every foreground class
    (so the lists are nested and all cover every class); ids inside each list are sorted. The selection split and
    split seeds are :func:`seed_split_lists`'.
    """
    train_ids = [image_id("train", i) for i in range(num_train)]
    lists = {"train.txt": train_ids, "val.txt": [image_id("val", i) for i in range(num_val)]}
    need = set(range(1, NUM_CLASSES))
    smallest = min(labeled_counts)
    for attempt in range(10_000):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([SEED_BASE, version, SPLIT_SEED, attempt])))
        perm = [train_ids[i] for i in rng.permutation(num_train)]
        if need <= set().union(*(present(i) for i in perm[:smallest])):
            break
    else:
        raise DataError(f"synthetic: could not draw a {smallest}-image labeled list with every class; "
                        f"too few training images contain some class")
    for n in labeled_counts:
        lists[f"{n}/labeled.txt"] = sorted(perm[:n])
        lists[f"{n}/unlabeled.txt"] = sorted(perm[n:])
    lists["full/labeled.txt"] = train_ids
    lists.update(seed_split_lists(train_ids, perm[:max(labeled_counts)], labeled_counts, version, present,
                                  selection_count, split_seeds))
    return lists, attempt


def seed_split_lists(train_ids: list[str], standard_labeled: list[str], labeled_counts: tuple[int, ...],
                     version: int, present: Callable[[str], set[int]], selection_count: int = SELECTION_COUNT,
                     split_seeds: tuple[int, ...] = SPLIT_SEEDS) -> dict[str, list[str]]:
    """``{relpath: ids}`` of the selection split and of every split seed's lists (procedure:
    :mod:`harness.data.split_seeds`, keyed by ``(SEED_BASE, version)``); empty when fewer than
    ``selection_count`` train images lie outside the largest standard labeled list (the small roots of tests)."""
    from .split_seeds import draw_selection, draw_split_seed, unlabeled_of

    outside = unlabeled_of(train_ids, standard_labeled)
    if selection_count < 1 or len(outside) < selection_count:
        return {}
    key = (SEED_BASE, version)
    selection = draw_selection(outside, selection_count, key)
    pool = unlabeled_of(train_ids, selection)
    need = set(range(1, NUM_CLASSES))

    def every_class(ids: list[str]) -> bool:
        return need <= set().union(*(present(i) for i in ids))

    lists = {"selection.txt": selection}
    for k in split_seeds:
        drawn, _ = draw_split_seed(pool, labeled_counts, k, key, every_class)
        for n, labeled in drawn.items():
            lists[f"seed{k}/{n}/labeled.txt"] = labeled
            lists[f"seed{k}/{n}/unlabeled.txt"] = unlabeled_of(train_ids, labeled)
    return lists


def ensure_seed_splits(root: str | Path, selection_count: int = SELECTION_COUNT,
                       split_seeds: tuple[int, ...] = SPLIT_SEEDS) -> list[Path]:
    """Write the selection split and split-seed lists a root generated before they existed lacks (drawn from its
    masks, exactly as a new generation draws them); returns the files written. Each is written atomically, so
    concurrent runs that both find it missing write the same bytes. A root this cannot read or write (made by hand,
    read-only) is left as it is: a protocol that needs a missing list then names it when its lists are verified."""
    from ..errors import WriteError
    from ..records import atomic_write_bytes

    root = Path(root)
    try:
        m = json.loads((root / "manifest.json").read_text())
        counts, version = tuple(m["labeled_counts"]), m["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if "split_seeds" in m:  # generated with them: the manifest lists them and reuse checks that they exist
        return []
    sp = split_root(root)
    expected = ["selection.txt"] + [f"seed{k}/{n}/{kind}.txt" for k in split_seeds for n in counts
                                    for kind in ("labeled", "unlabeled")]
    if all((sp / rel).is_file() for rel in expected):
        return []
    try:
        train_ids = split_bytes_ids((sp / "train.txt").read_bytes())
        largest = split_bytes_ids((sp / f"{max(counts)}" / "labeled.txt").read_bytes())
    except OSError:
        return []
    cache: dict[str, set[int]] = {}

    def present(iid: str) -> set[int]:
        if iid not in cache:
            with Image.open(root / "SegmentationClass" / f"{iid}.png") as im:
                cache[iid] = classes_present(np.asarray(im))
        return cache[iid]

    written = []
    for rel, ids in seed_split_lists(train_ids, largest, counts, version, present, selection_count,
                                     split_seeds).items():
        if not (sp / rel).is_file():
            try:
                atomic_write_bytes(sp / rel, split_bytes(ids))
            except (OSError, WriteError):
                return written
            written.append(sp / rel)
    return written


def split_checksums(version: int = SYNTHETIC_VERSION, num_train: int = NUM_TRAIN, num_val: int = NUM_VAL,
                    labeled_counts: tuple[int, ...] = LABELED_COUNTS, selection_count: int = SELECTION_COUNT,
                    split_seeds: tuple[int, ...] = SPLIT_SEEDS, **params) -> dict[str, dict]:
    """``{relpath: {count, sha256}}`` of the split lists a generation would write, without writing images
    (renders only the masks the labeled-list draw looks at; fast)."""
    p = SynthParams(**params)
    cache: dict[str, set[int]] = {}

    def present(iid: str) -> set[int]:
        if iid not in cache:
            cache[iid] = classes_present(render("train", int(iid.split("_")[1]), version, p)[1])
        return cache[iid]

    counts = tuple(sorted(c for c in labeled_counts if c < num_train))
    lists, _ = split_lists(num_train, num_val, counts, version, present, selection_count, split_seeds)
    return {rel: {"count": len(ids), "sha256": hashlib.sha256(split_bytes(ids)).hexdigest()} for rel, ids in lists.items()}


def split_bytes_ids(data: bytes) -> list[str]:
    """The ids of a split list's raw bytes (the inverse of :func:`split_bytes`)."""
    return [Path(line.split()[0]).stem for line in data.decode().splitlines() if line.strip()]


def split_bytes(ids: list[str]) -> bytes:
    """The raw bytes of a split list (one ``JPEGImages/<id>.jpg SegmentationClass/<id>.png`` line per id)."""
    return "".join(_line(i) for i in ids).encode()


def _manifest_ok(root: Path, version: int, params: SynthParams | None = None,
                 num_train: int | None = None, num_val: int | None = None) -> tuple[bool, str]:
    mf = root / "manifest.json"
    if not mf.is_file():
        return False, f"{root} has no manifest.json (incomplete or not a synthetic dataset root)"
    try:
        m = json.loads(mf.read_text())
    except (OSError, ValueError) as exc:
        return False, f"{mf} is unreadable: {exc}"
    if m.get("version") != version:
        return False, f"{root} holds synthetic version {m.get('version')}, expected version {version}"
    if not m.get("complete"):
        return False, f"{root} is marked incomplete"
    if params is not None and m.get("params") != params.to_json():
        return False, f"{root} was generated with other parameters"
    if num_train is not None and m.get("num_train") != num_train:
        return False, f"{root} has {m.get('num_train')} train images, expected {num_train}"
    if num_val is not None and m.get("num_val") != num_val:
        return False, f"{root} has {m.get('num_val')} val images, expected {num_val}"
    n = m.get("num_train", 0) + m.get("num_val", 0)
    for sub, ext in (("JPEGImages", ".jpg"), ("SegmentationClass", ".png")):
        d = root / sub
        if not d.is_dir() or sum(1 for f in os.scandir(d) if f.name.endswith(ext)) != n:
            return False, f"{d} does not hold the {n} files the manifest lists"
    for rel in m.get("splits", {}):
        if not (root / "splits" / rel).is_file():
            return False, f"split list {root / 'splits' / rel} is missing"
    return True, ""


def content_fingerprint(root: str | Path) -> str:
    """SHA-256 over every image and mask file (sorted relative path and file hash). Generation is deterministic
    for a given generator version, numpy and Pillow; this tells whether two machines trained on the same pixels
    (JPEG encoding may differ between Pillow/libjpeg builds)."""
    root = Path(root)
    h = hashlib.sha256()
    for sub in ("JPEGImages", "SegmentationClass"):
        for path in sorted((root / sub).iterdir()):
            h.update(f"{sub}/{path.name} {hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def recorded_fingerprint(root: str | Path) -> str:
    """The manifest's ``content_sha256``; computed now for roots generated before it was recorded."""
    try:
        fp = json.loads((Path(root) / "manifest.json").read_text()).get("content_sha256")
    except (OSError, ValueError):
        fp = None
    return fp or content_fingerprint(root)


def generate(root: str | Path, version: int = SYNTHETIC_VERSION, num_train: int = NUM_TRAIN,
             num_val: int = NUM_VAL, workers: int = 1,
             progress: Callable[[int, int], None] | None = None,
             labeled_counts: tuple[int, ...] = LABELED_COUNTS, selection_count: int = SELECTION_COUNT,
             split_seeds: tuple[int, ...] = SPLIT_SEEDS, **params) -> Path:
    """Generate the dataset at ``root`` (atomically) and return ``root``.

    ``params`` override :class:`SynthParams` fields (generator knobs); ``selection_count`` and ``split_seeds``
    size the selection split and the split seeds (none when the train set has no room, see
    :func:`seed_split_lists`). An existing complete root with the same
    version, sizes and parameters is reused; any other existing ``root`` is an error (never mixed).
    ``progress(done, total)`` is called as images are written.
    """
    root = Path(root).expanduser()
    p = SynthParams(**params)
    labeled_counts = tuple(sorted(c for c in labeled_counts if c < num_train))
    if not labeled_counts:
        raise DataError(f"synthetic: every labeled count must be smaller than num_train={num_train}")
    root.parent.mkdir(parents=True, exist_ok=True)
    with _generation_lock(root) as locked:
        if root.exists():
            ok, why = _manifest_ok(root, version, p, num_train, num_val)
            if ok:
                return root
            raise DataError(f"synthetic dataset root {root} exists but cannot be reused: {why}. "
                            f"Delete it or choose another root.")
        if locked:
            _remove_partials(root)
        return _generate_into(root, version, num_train, num_val, workers, progress, labeled_counts, p,
                              selection_count, tuple(split_seeds))


@contextlib.contextmanager
def _generation_lock(root: Path) -> Iterator[bool]:
    """An exclusive flock on the folder that holds ``root``, for the whole generation (yields whether it is
    held): a second generator waits, then reuses the finished root; and any ``.<root name>.partial-*`` folder
    found while holding it belongs to a generator that died (the kernel released its lock). Locking the folder
    leaves no lock file behind."""
    fd = os.open(root.parent, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process that generates a dataset in {root.parent}", file=sys.stderr,
                  flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without flock: generate unlocked, and leave partial folders alone
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _remove_partials(root: Path) -> None:
    for orphan in root.parent.glob(f".{root.name}.partial-*"):
        shutil.rmtree(orphan, ignore_errors=True)


def _generate_into(root: Path, version: int, num_train: int, num_val: int, workers: int,
                   progress: Callable[[int, int], None] | None, labeled_counts: tuple[int, ...],
                   p: "SynthParams", selection_count: int = SELECTION_COUNT,
                   split_seeds: tuple[int, ...] = SPLIT_SEEDS) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        (tmp / "JPEGImages").mkdir()
        (tmp / "SegmentationClass").mkdir()
        palette = _palette()
        jobs = [(str(tmp), s, i, version, p.to_json(), palette)
                for s, n in (("train", num_train), ("val", num_val)) for i in range(n)]
        total = len(jobs)
        results = []
        t0 = time.time()
        if workers > 1:
            import multiprocessing as mp

            ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with ctx.Pool(workers, initializer=_default_sigterm) as pool:
                for r in pool.imap_unordered(_write_one, jobs, chunksize=16):
                    results.append(r)
                    if progress:
                        progress(len(results), total)
        else:
            for job in jobs:
                results.append(_write_one(job))
                if progress:
                    progress(len(results), total)
        results.sort(key=lambda r: (SPLIT_CODES[r[0]], r[1]))
        present = {image_id(s, i): {c for c in range(1, NUM_CLASSES) if cnt[c] >= MIN_CLASS_PIXELS}
                   for s, i, cnt in results}
        pixel_counts = np.zeros((2, NUM_CLASSES), np.int64)
        image_counts = np.zeros((2, NUM_CLASSES), np.int64)
        for s, _i_, cnt in results:
            pixel_counts[SPLIT_CODES[s]] += cnt
            image_counts[SPLIT_CODES[s]] += np.asarray(cnt) >= MIN_CLASS_PIXELS

        lists, attempt = split_lists(num_train, num_val, labeled_counts, version, present.__getitem__,
                                     selection_count, split_seeds)
        splits = {rel: _write_list(tmp / "splits" / rel, ids) for rel, ids in lists.items()}

        manifest = {
            "name": "synthetic",
            "version": version,
            "complete": True,
            "layout": "voc",
            "image_size": [p.image_size, p.image_size],
            "num_train": num_train,
            "num_val": num_val,
            "num_classes": NUM_CLASSES,
            "class_names": CLASS_NAMES,
            "ignore_index": IGNORE,
            "seed_base": SEED_BASE,
            "split_seed": [SPLIT_SEED, attempt],
            "labeled_counts": list(labeled_counts),
            "labeled_nested": True,
            "selection_count": len(lists.get("selection.txt", ())),
            "split_seeds": list(split_seeds) if "selection.txt" in lists else [],
            "params": p.to_json(),
            "splits": splits,
            "class_pixels": {"train": pixel_counts[0].tolist(), "val": pixel_counts[1].tolist()},
            "class_images": {"train": image_counts[0].tolist(), "val": image_counts[1].tolist()},
            "generation_seconds": round(time.time() - t0, 2),
            "workers": workers,
            "content_sha256": content_fingerprint(tmp),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            os.rename(tmp, root)
        except OSError:
            # another process finished first: use its root if it is the same dataset
            ok, why = _manifest_ok(root, version, p, num_train, num_val)
            if not ok:
                raise DataError(f"synthetic dataset root {root} appeared during generation and cannot be "
                                f"reused: {why}") from None
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def ensure_synthetic(root: str | Path | None = None, version: int = SYNTHETIC_VERSION, workers: int | None = None,
                     progress: Callable[[int, int], None] | None = None) -> Path:
    """Return the root of the default synthetic dataset, generating it on first use.

    Default root: ``$HARNESS_CACHE/synthetic/v<version>`` (``HARNESS_CACHE`` defaults to ``~/.cache/harness``).
    A complete root of this version is reused; an incomplete one or one of another version raises DataError.
    """
    root = Path(root).expanduser() if root is not None else default_root(version)
    if root.exists():
        ok, why = _manifest_ok(root, version, SynthParams(), NUM_TRAIN, NUM_VAL)
        if ok:
            ensure_seed_splits(root)
            return root
        raise DataError(f"synthetic dataset root {root} cannot be used: {why}. Delete it to regenerate.")
    if workers is None:
        workers = max(1, min(4, os.cpu_count() or 1))
    return generate(root, version=version, workers=workers, progress=progress)


def protocol_yaml(root: str | Path) -> str:
    """The text of ``benchmarks/protocols/synthetic.yaml`` for a generated root (split checksums from its manifest).

    Training settings are the benchmark's; keep them in sync with the checked-in file when regenerating it.
    """
    m = json.loads((Path(root) / "manifest.json").read_text())
    sp = m["splits"]
    n_train = m["num_train"]

    def sf(k):
        return f"{{path: {k}, sha256: {sp[k]['sha256']}, count: {sp[k]['count']}}}"

    nested = " ⊂ ".join(str(n) for n in m["labeled_counts"])
    out = [f"""# Built-in synthetic dataset (harness/data/synthetic.py, version {m['version']}): {m['image_size'][0]}x{m['image_size'][1]} images in the
# PASCAL VOC layout, background + {m['num_classes'] - 1} classes defined by shape and context, never by colour: disk, ring,
# square, triangle, cross, and a small dot that is `dot_on` when it lies on an object and `dot_alone` when it
# lies on the background. Random colours, textures, scales and rotations; occlusion; clutter (blobs, strokes)
# labelled background; blur, noise, brightness/contrast. {n_train:,} train / {m['num_val']:,} val images; the labeled lists
# are nested ({nested}) and each contains every class; `full` = all train images labeled, no unlabeled
# list. Split paths are relative to <root>/splits.
#
# Generate (deterministic, ~20 s on one core; cached in $HARNESS_CACHE/synthetic/v{m['version']}):
#     harness data synthetic      or      python -m harness.data.synthetic [--root DIR] [--workers N]
# Regenerate this file's checksums after a generator change (which must bump SYNTHETIC_VERSION):
#     python -m harness.data.synthetic --write-protocols benchmarks/protocols/synthetic.yaml
# tests/data/test_synthetic.py checks that the checksums match a default generation.

defaults:
  dataset: synthetic
  family: synthetic
  num_classes: {m['num_classes']}
  class_names: [{', '.join(m['class_names'])}]
  crop_size: 64
  # A narrower rescale range than the standard benchmarks' (0.5, 2.0): with 0.5-2.0, crops of these small
  # images lose whole objects and the small CPU model stops learning within the budget (measured).
  scale_range: [0.75, 1.25]
  eval: {{mode: whole, batch_images: 16}}  # 16 val images per forward: same predictions, faster (benchmarks/perf)
  # decoder_init: kaiming (not the default, PyTorch's init of the official UniMatch/iMAS models): the committed
  # benchmark (results/runs) was trained with Kaiming-initialised decoder convolutions, and this keeps every
  # synthetic run, and its record, exactly what it was.
  model: {{backbone: small, width: 32, decoder_channels: 64, output_stride: 16, pretrained: false, deep_stem: false,
          decoder_init: kaiming}}
  budget: {{iterations: 3000, batch_labeled: 8, batch_unlabeled: 8, lr: 0.01, head_lr_mult: 10, weight_decay: 1.0e-4,
           momentum: 0.9, poly_power: 0.9, num_evals: 5}}
  supervised_loss: {{type: ce}}
  method_settings:
    unimatch: {{tau: 0.95}}
    s4mim: {{tau: 0.95}}
    imas: {{tau: 0.95}}
    combined: {{tau: 0.95}}
  splits:
    val: {sf('val.txt')}

protocols:"""]
    for n in m["labeled_counts"]:
        out.append(f"""  - id: synthetic-{n}
    description: synthetic, {n} labeled / {n_train - n} unlabeled train images
    splits:
      labeled: {sf(f'{n}/labeled.txt')}
      unlabeled: {sf(f'{n}/unlabeled.txt')}""" + (f"\n      selection: {sf('selection.txt')}"
                                                  if "selection.txt" in sp else ""))
    out.append(f"""  - id: synthetic-full
    description: synthetic, all {n_train} train images labeled (fully supervised reference)
    splits:
      labeled: {sf('full/labeled.txt')}""")
    return "\n".join(out) + "\n"


def small_protocols_yaml(root: str | Path, family: str, budget: dict, with_full: bool = False,
                         split_seeds: bool = False) -> str:
    """Protocols over a small generated root (one labeled count) for tests and benchmarks of the harness
    itself: ``<family>-<n>`` (labeled + unlabeled) and, with ``with_full``, ``<family>-full``. A width-8
    ``small`` model at crop 48; ``budget`` holds the budget keys (iterations, batches, lr, ...). With
    ``split_seeds`` (a root generated with a selection split), ``<family>-<n>`` gets the selection split and
    ``<family>-<n>-split<k>`` are added for every split seed of the root."""
    import yaml

    m = json.loads((Path(root) / "manifest.json").read_text())
    sp = m["splits"]

    def split(rel: str) -> dict:
        return {"path": rel, "sha256": sp[rel]["sha256"], "count": sp[rel]["count"]}

    (n,) = m["labeled_counts"]
    protocols = [{"id": f"{family}-{n}", "splits": {"labeled": split(f"{n}/labeled.txt"),
                                                   "unlabeled": split(f"{n}/unlabeled.txt"), "val": split("val.txt")}}]
    if split_seeds:
        if "selection.txt" not in sp:
            raise DataError(f"{root} has no selection split: generate it with a selection_count that fits")
        protocols[0]["splits"]["selection"] = split("selection.txt")
        for k in m["split_seeds"]:
            protocols.append({"id": f"{family}-{n}-split{k}", "split_of": f"{family}-{n}", "split_seed": k,
                              "splits": {"labeled": split(f"seed{k}/{n}/labeled.txt"),
                                         "unlabeled": split(f"seed{k}/{n}/unlabeled.txt"), "val": split("val.txt"),
                                         "selection": split("selection.txt")}})
    if with_full:
        protocols.append({"id": f"{family}-full", "splits": {"labeled": split("full/labeled.txt"),
                                                            "val": split("val.txt")}})
    defaults = {"dataset": "synthetic", "family": family, "num_classes": m["num_classes"],
                "class_names": m["class_names"], "crop_size": 48, "eval": {"mode": "whole"},
                "model": {"backbone": "small", "width": 8, "decoder_channels": 16, "output_stride": 16,
                          "pretrained": False, "deep_stem": False, "decoder_init": "kaiming"},
                "budget": budget, "supervised_loss": {"type": "ce"}}
    return yaml.safe_dump({"defaults": defaults, "protocols": protocols}, sort_keys=False)


_SPLIT_ENTRY = re.compile(r"\{path: ([^,\s]+), sha256: [0-9a-f]{64}, count: \d+\}")


def write_protocol_file(path: str | Path, root: str | Path) -> None:
    """Write the protocol file for ``root``; an existing file keeps its text, only its split checksums and
    counts are updated (so tuned training settings survive a regeneration)."""
    path = Path(path)
    if not path.exists():
        path.write_text(protocol_yaml(root))
        return
    manifest = json.loads((Path(root) / "manifest.json").read_text())
    splits = dict(manifest["splits"])
    if "split_seeds" not in manifest:
        # a root generated before split seeds: its manifest does not list the lists ensure_seed_splits added
        for f in sorted(split_root(root).glob("seed*/*/*.txt")) + [split_root(root) / "selection.txt"]:
            if f.is_file():
                data = f.read_bytes()
                splits[f.relative_to(split_root(root)).as_posix()] = {"sha256": hashlib.sha256(data).hexdigest(),
                                                                     "count": len(split_bytes_ids(data))}

    def sub(mt):
        rel = mt.group(1)
        if rel not in splits:
            raise DataError(f"{path}: split {rel} is not produced by the generator (known: {', '.join(splits)})")
        return f"{{path: {rel}, sha256: {splits[rel]['sha256']}, count: {splits[rel]['count']}}}"

    path.write_text(_SPLIT_ENTRY.sub(sub, path.read_text()))


class SyntheticLayout(VOCLayout):
    """The synthetic dataset's reader: the VOC layout, with how to generate a root that is missing."""

    dataset = "synthetic"
    env = "HARNESS_DATA_SYNTHETIC"

    def __init__(self, root: str | Path, masks: bool = True):
        try:
            super().__init__(root, masks)
        except DataError as exc:
            raise DataError(f"{exc}; generate the synthetic dataset with `harness data synthetic` "
                            f"(python -m harness.data.synthetic --root DIR)") from None


def prepare_root(root: Path) -> Path:
    """A run's root: generated when it has no manifest; a user-made root (other sizes) is taken as is, since the
    protocol's split checksums decide whether it fits."""
    if not (root / "manifest.json").is_file():
        return ensure_synthetic(root)
    ensure_seed_splits(root)
    return root


@hookimpl
def harness_register_datasets(registry) -> None:
    registry.add(Dataset(
        name="synthetic", layout=SyntheticLayout, class_names=tuple(CLASS_NAMES), env=SyntheticLayout.env,
        default_root=default_root, prepare_root=prepare_root, split_root=split_root,
        fingerprint=recorded_fingerprint, published=False, order=100,
        description=f"built-in synthetic set (generated, {NUM_TRAIN:,} train, {NUM_VAL:,} val), "
                    f"{NUM_CLASSES} classes"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.data.synthetic", description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=None, help="dataset root (default: $HARNESS_CACHE/synthetic/v<version>)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--version", type=int, default=SYNTHETIC_VERSION)
    ap.add_argument("--write-protocols", type=Path, default=None, metavar="YAML",
                    help="also write the protocol file's split checksums (an existing file keeps its other text)")
    args = ap.parse_args(argv)
    t0 = time.time()

    def progress(done, total):
        if done % 250 == 0 or done == total:
            print(f"\r{done}/{total} images", end="\n" if done == total else "", file=sys.stderr, flush=True)

    try:
        root = ensure_synthetic(args.root, version=args.version, workers=args.workers, progress=progress)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"synthetic v{args.version} at {root} ({time.time() - t0:.1f} s)")
    if args.write_protocols:
        write_protocol_file(args.write_protocols, root)
        print(f"wrote {args.write_protocols}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
