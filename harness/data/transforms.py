"""Weak augmentation of the standard training settings (benchmarks spec §5) and ImageNet normalisation.

Weak augmentation, in this order (one ``numpy.random.Generator`` drives every random choice):

1. resize: the long side L becomes a uniform integer in [⌊0.5L⌋, ⌊2L⌋], aspect kept, the short side
   rounded half up (bilinear for the image, nearest for the mask);
2. pad right/bottom to the crop size where the resized image is smaller (image 0, labeled mask 255,
   ``valid`` False on the padding);
3. random crop of ``crop × crop``;
4. horizontal flip with probability 0.5.

Outputs are CPU tensors: ``raw`` uint8 3×crop×crop, ``label`` long crop×crop (None for unlabeled
images) and ``valid`` bool crop×crop. Normalisation is not done here; the engine applies
:func:`normalize` on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SCALE_RANGE = (0.5, 2.0)
IGNORE_INDEX = 255


def normalize(raw: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalise a uint8 ``…×3×H×W`` tensor: float32 ``(raw/255 − mean)/std`` on ``raw``'s device."""
    mean = torch.tensor(IMAGENET_MEAN, device=raw.device, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=raw.device, dtype=torch.float32).view(3, 1, 1)
    return (raw.to(torch.float32) / 255.0 - mean) / std


@dataclass(frozen=True)
class WeakParams:
    """Geometry of one weak augmentation: resized size, crop origin in the padded image, flip."""

    height: int  # after resize
    width: int
    top: int
    left: int
    flip: bool


def sample_weak_params(h: int, w: int, crop: int, rng: np.random.Generator,
                       scale_range: tuple[float, float] = SCALE_RANGE) -> WeakParams:
    """Draw the weak-augmentation geometry for an ``h×w`` image (draw order: long side, top, left, flip)."""
    long_side = max(h, w)
    lo, hi = int(long_side * scale_range[0]), int(long_side * scale_range[1])
    new_long = max(1, int(rng.integers(lo, hi, endpoint=True)))
    if h >= w:
        oh, ow = new_long, max(1, int(w * new_long / h + 0.5))
    else:
        ow, oh = new_long, max(1, int(h * new_long / w + 0.5))
    ph, pw = max(oh, crop), max(ow, crop)
    top = int(rng.integers(0, ph - crop, endpoint=True))
    left = int(rng.integers(0, pw - crop, endpoint=True))
    flip = bool(rng.random() < 0.5)
    return WeakParams(oh, ow, top, left, flip)


def _nearest_index(n_out: int, n_in: int) -> np.ndarray:
    """Source index of each output pixel of PIL's NEAREST resize ``n_in → n_out`` (bit-exact).

    PIL accumulates the source coordinate: ``x_0 = s/2``, ``x_k = x_{k−1} + s`` with ``s = n_in/n_out``,
    and truncates; ``np.cumsum`` adds sequentially in float64, reproducing it.
    """
    scale = n_in / n_out
    steps = np.full(n_out, scale, dtype=np.float64)
    steps[0] = scale * 0.5
    return np.minimum(np.cumsum(steps).astype(np.int64), n_in - 1)


def apply_weak(image: np.ndarray, mask: np.ndarray | None, params: WeakParams, crop: int
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Apply :class:`WeakParams` to ``image`` (H×W×3 uint8) and ``mask`` (H×W uint8 or None)."""
    oh, ow, top, left = params.height, params.width, params.top, params.left
    h, w = image.shape[:2]
    # The crop window [top, top+crop) × [left, left+crop) of the padded resized image; only the part inside
    # the resized image (ch × cw at its top-left) is computed, resampling just that region of the source.
    ch, cw = min(top + crop, oh) - top, min(left + crop, ow) - left
    if (oh, ow) != (h, w):
        sy, sx = h / oh, w / ow
        box = (left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)
        region = np.asarray(Image.fromarray(image).resize((cw, ch), Image.BILINEAR, box=box))
        if mask is not None:
            ys = _nearest_index(oh, h)[top:top + ch]
            xs = _nearest_index(ow, w)[left:left + cw]
            mask = mask[ys[:, None], xs[None, :]]
    else:
        region = image[top:top + ch, left:left + cw]
        if mask is not None:
            mask = mask[top:top + ch, left:left + cw]
    out_img = np.zeros((crop, crop, 3), dtype=np.uint8)
    valid = np.zeros((crop, crop), dtype=bool)
    out_img[:ch, :cw] = region
    valid[:ch, :cw] = True
    out_mask = None
    if mask is not None:
        out_mask = np.full((crop, crop), IGNORE_INDEX, dtype=np.uint8)
        out_mask[:ch, :cw] = mask
    if params.flip:
        out_img = out_img[:, ::-1]
        valid = valid[:, ::-1]
        if out_mask is not None:
            out_mask = out_mask[:, ::-1]
    raw = torch.from_numpy(np.ascontiguousarray(out_img.transpose(2, 0, 1)))
    label = torch.from_numpy(out_mask.astype(np.int64)) if out_mask is not None else None
    return raw, label, torch.from_numpy(np.ascontiguousarray(valid))


def weak_augment(image: np.ndarray, mask: np.ndarray | None, crop: int, rng: np.random.Generator,
                 scale_range: tuple[float, float] = SCALE_RANGE) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Weakly augment one image (and its mask): ``(raw uint8 3×c×c, label long c×c or None, valid bool c×c)``."""
    params = sample_weak_params(image.shape[0], image.shape[1], crop, rng, scale_range)
    return apply_weak(image, mask, params, crop)


def to_tensors(image: np.ndarray, mask: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Unaugmented ``(raw uint8 3×H×W, label long H×W or None)`` for evaluation."""
    raw = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    label = torch.from_numpy(mask.astype(np.int64)) if mask is not None else None
    return raw, label
