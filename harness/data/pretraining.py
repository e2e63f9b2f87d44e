"""Built-in pretraining task: multi-label recognition of procedurally drawn shapes and textures.

The stand-in for ImageNet in the synthetic benchmark's pretrained regime. Published semi-supervised
segmentation starts from an encoder pretrained on a *different* task and different images (ImageNet
classification, DINOv2 self-supervision); this task keeps those two properties:

* **Different images.** Every image is drawn on the fly from ``SeedSequence([SEED_BASE, PRETRAIN_VERSION,
  index])`` with a seed base of its own: none of the benchmark's train or val images occur, and nothing is
  written to disk.
* **A different task and no segmentation labels.** Targets are image-level: which of ``SHAPES`` (12 shape
  families, 5 of which are shapes the benchmark also segments, as ImageNet holds many VOC classes) and which of
  ``TEXTURES`` (6 surface patterns) occur in the image: 18 binary labels, no masks. The benchmark's context
  classes (a dot on an object / alone) are not part of it, and there are more shapes, sizes and aspects than in
  the benchmark, plus background clutter that is none of the shapes.

Images are 64×64 RGB uint8 after the benchmark's photometric effects (blur, contrast, brightness, colour cast,
noise), rendered with the benchmark generator's drawing primitives (signed-distance shapes, textures), so the
low-level statistics match as ImageNet's match VOC's.
"""

from __future__ import annotations

import math

import numpy as np

from .synthetic import (TEXTURES, _blob_sdf, _blur, _grid, _local, _paint, _random_colour, _sdf_box,
                        _sdf_segments, _sdf_triangle, _stroke_sdf, _texture, _u, _window, _FAR)

PRETRAIN_VERSION = 1
SEED_BASE = 20261204  # differs from the benchmark's (synthetic.SEED_BASE): disjoint images
IMAGE_SIZE = 64

SHAPES = ("disk", "ring", "square", "triangle", "cross", "star", "pentagon", "hexagon", "crescent", "ellipse",
          "bar", "ell")
LABEL_NAMES = tuple(f"shape:{s}" for s in SHAPES) + tuple(f"texture:{t}" for t in TEXTURES)
NUM_LABELS = len(LABEL_NAMES)

NUM_OBJECTS = (1, 4)
OBJECT_SIZE = (8.0, 22.0)
ASPECT = (0.75, 1.33)
NUM_CLUTTER = (0, 2)
MIN_CONTRAST = 80.0
MIN_VISIBLE_PIXELS = 30  # an object counts as present only if this much of it is visible


def _polygon_sdf(u, v, r, n):
    """Regular n-gon with circumradius ``r`` (exact distance inside, a close bound outside)."""
    ang = np.arctan2(v, u)
    sector = 2 * math.pi / n
    a = np.mod(ang, sector) - sector / 2
    rho = np.sqrt(u * u + v * v)
    return rho * np.cos(a) - r * math.cos(math.pi / n)


def _shape_sdf(shape: str, rng, X, Y, cx, cy, size):
    """Signed distance (px, negative inside) of one shape over the grid, far outside its window."""
    theta = _u(rng, (0, 2 * math.pi))
    aspect = _u(rng, ASPECT)
    if shape == "ellipse":
        aspect = _u(rng, (1.8, 2.6))
    g = 2.2 * size + 2
    sl = _window(X.shape[0], cx - g, cx + g, cy - g, cy + g)
    out = np.full(X.shape, _FAR, np.float32)
    if X[sl].size == 0:
        return out
    if shape == "bar":  # a long thin bar: the segment primitive, not a stretched box
        ang = theta
        d = np.array([math.cos(ang), math.sin(ang)]) * size
        pts = np.array([[cx, cy] - d, [cx, cy] + d])
        return _sdf_segments(X, Y, pts, _u(rng, (0.15, 0.25)) * size)
    u, v, f = _local(X[sl], Y[sl], cx, cy, theta, aspect)
    rho = np.sqrt(u * u + v * v)
    if shape in ("disk", "ellipse"):
        d = rho - size
    elif shape == "ring":
        inner = size * _u(rng, (0.4, 0.7))
        d = np.abs(rho - (size + inner) / 2) - (size - inner) / 2
    elif shape == "square":
        d = _sdf_box(u, v, 0.82 * size, 0.82 * size)
    elif shape == "triangle":
        d = _sdf_triangle(u, v + 0.21 * size, 1.05 * size)
    elif shape == "cross":
        w = size * _u(rng, (0.22, 0.36))
        d = np.minimum(_sdf_box(u, v, size, w), _sdf_box(u, v, w, size))
    elif shape == "star":
        # five points: the radius swings between inner and outer with the angle (distance scaled to stay a bound)
        ang = np.arctan2(v, u)
        depth = _u(rng, (0.35, 0.5))
        r = size * (1 - depth * (0.5 + 0.5 * np.cos(5 * ang)))
        d = (rho - r) * 0.6
    elif shape == "pentagon":
        d = _polygon_sdf(u, v, size, 5)
    elif shape == "hexagon":
        d = _polygon_sdf(u, v, size, 6)
    elif shape == "crescent":
        off = size * _u(rng, (0.35, 0.6))
        d = np.maximum(rho - size, -(np.sqrt((u - off) ** 2 + v * v) - 0.85 * size))
    elif shape == "ell":  # an L: two bars meeting at a corner
        w = size * _u(rng, (0.25, 0.4))
        d = np.minimum(_sdf_box(u + size - w, v, w, size), _sdf_box(u, v - size + w, size, w))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    out[sl] = d * f
    return out


def render(index: int) -> tuple[np.ndarray, np.ndarray]:
    """Image ``index`` of the pretraining stream: (uint8 RGB 64×64×3, float32 multi-hot labels of NUM_LABELS)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([SEED_BASE, PRETRAIN_VERSION, index])))
    S = IMAGE_SIZE
    X, Y = _grid(S)
    bg = _random_colour(rng, None, 0)
    img = _texture(rng, X, Y, S, bg, (0.0, 0.6), ("flat", "gradient", "noise")).astype(np.float32).copy()
    owner = np.zeros((S, S), np.int16)  # which object (1-based) shows at each pixel; 0 = background/clutter
    for _ in range(int(rng.integers(NUM_CLUTTER[0], NUM_CLUTTER[1] + 1))):  # distractors that are no shape
        sdf = _blob_sdf(rng, X, Y, S) if rng.uniform() < 0.5 else _stroke_sdf(rng, X, Y, S, thin=False)
        _paint(img, rng, X, Y, S, sdf, _random_colour(rng, bg, MIN_CONTRAST / 2), (0.0, 0.3), ("flat", "gradient"))
    objects: list[tuple[int, int]] = []  # (shape index, texture index)
    for k in range(int(rng.integers(NUM_OBJECTS[0], NUM_OBJECTS[1] + 1))):
        shape = int(rng.integers(0, len(SHAPES)))
        texture = int(rng.integers(0, len(TEXTURES)))
        size = _u(rng, OBJECT_SIZE)
        cx, cy = rng.uniform(0.1 * S, 0.9 * S, 2)
        sdf = _shape_sdf(SHAPES[shape], rng, X, Y, cx, cy, size)
        colour = _random_colour(rng, bg, MIN_CONTRAST)
        _paint(img, rng, X, Y, S, sdf, colour, (0.85, 1.0), (TEXTURES[texture],), 70.0, (3.0, 9.0))
        owner[sdf < 0] = k + 1
        objects.append((shape, texture))
    target = np.zeros(NUM_LABELS, np.float32)
    visible = np.bincount(owner.reshape(-1), minlength=len(objects) + 1)
    for k, (shape, texture) in enumerate(objects):
        if visible[k + 1] >= MIN_VISIBLE_PIXELS:  # an object hidden by later ones is not "present"
            target[shape] = 1.0
            target[len(SHAPES) + texture] = 1.0
    sigma = _u(rng, (0.0, 0.6))
    contrast, bright = _u(rng, (0.6, 1.3)), _u(rng, (-30.0, 30.0))
    gain = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    noise = _u(rng, (2.0, 6.0))
    if sigma > 0.05:
        img = _blur(img, sigma)
    img = ((img - 128.0) * contrast + 128.0 + bright) * gain
    img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), target


def render_many(start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Images ``start .. start+count-1``: (uint8 N×64×64×3, float32 N×NUM_LABELS)."""
    pairs = [render(i) for i in range(start, start + count)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
