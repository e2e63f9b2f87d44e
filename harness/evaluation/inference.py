"""Single-scale evaluation (the benchmarks spec §6) and the dataset-level mIoU (§7).

Every val image is evaluated once, single scale, no flipping, with the prediction it gets at batch 1
(``whole`` and ``center_crop`` forward up to ``batch_images`` equal-sized images together; eval-mode
BatchNorm makes that the same prediction). With ``world`` > 1 rank r takes the images
``r, r + world, r + 2·world, …`` (no padding, nothing dropped) and the confusion matrices are summed with
``all_reduce``. Modes:

* ``whole``: the full image; argmax of the logits. With ``resize_multiple`` m (``whole_resize<m>``, UniMatch V2's
  evaluation of its ViTs): the image is first resized (bilinear, corners aligned) to sides
  ``⌊side/m + ½⌋·m``, the nearest multiples of m, and the logits are resized back the same way before the argmax.
* ``slide`` (``slide<w>``): windows of side w (or the image side if smaller) at starts
  ``r_j = min(j·s, H − w)``, ``j = 0 … ⌈(H − w)/s⌉``, so every window lies inside the image; softmax
  probabilities summed per pixel; argmax. Windows go through the model ``batch_windows`` at a time.
* ``slide_truncated``: the reference implementations' windows: starts 0, s, 2s, … < H, each truncated at the
  border (smaller last windows). Only for reproducing published numbers.
* ``center_crop``: pad symmetrically to at least crop × crop (⌊pad/2⌋ before; image 0 after normalisation,
  mask 255), then the central crop × crop region (start ⌊(size − crop)/2⌋).

Images arrive as uint8 3×H×W RGB and are normalised with ``harness.data.transforms.normalize``.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..data.transforms import normalize
from .metrics import IGNORE_INDEX, ConfusionMatrix
from ..protocols import EvalSpec

__all__ = ["window_starts", "windows", "normalize", "predict_scores", "center_crop_pair", "evaluate",
           "nearest_multiple"]

# --- window arithmetic ------------------------------------------------------------------------------

def window_starts(length: int, window: int, stride: int, truncated: bool = False) -> list[int]:
    """Window starts along one axis of ``length`` pixels.

    Default (windows kept inside): one window at 0 if ``length ≤ window``, else ``min(j·stride, length − window)``
    for ``j = 0 … ⌈(length − window)/stride⌉``. ``truncated``: ``0, stride, 2·stride, … < length``.
    """
    if length <= 0 or window <= 0 or stride <= 0:
        raise ValueError(f"length, window and stride must be positive, got {length}, {window}, {stride}")
    if truncated:
        return list(range(0, length, stride))
    if length <= window:
        return [0]
    n = math.ceil((length - window) / stride) + 1
    return [min(j * stride, length - window) for j in range(n)]


def windows(height: int, width: int, window: int, stride: int,
            truncated: bool = False) -> list[tuple[int, int, int, int]]:
    """All windows ``(top, bottom, left, right)`` (end exclusive), rows outer, columns inner."""
    out = []
    for r in window_starts(height, window, stride, truncated):
        for c in window_starts(width, window, stride, truncated):
            out.append((r, min(r + window, height), c, min(c + window, width)))
    return out


# --- inference --------------------------------------------------------------------------------------

def _forward(model: nn.Module, x: torch.Tensor, autocast: Callable[[], Any] | None,
             memory_format: torch.memory_format) -> torch.Tensor:
    with autocast() if autocast is not None else contextlib.nullcontext():
        out = model(x.contiguous(memory_format=memory_format))
    return out.float()


def nearest_multiple(side: int, multiple: int) -> int:
    """``⌊side/multiple + ½⌋·multiple`` (UniMatch V2's rounding; a side below ``multiple/2`` would give 0 and is
    refused)."""
    out = int(side / multiple + 0.5) * multiple
    if out <= 0:
        raise ValueError(f"an image side of {side} pixels rounds to 0 at resize_multiple {multiple}")
    return out


def _whole_forward(model: nn.Module, x: torch.Tensor, eval_spec: EvalSpec, autocast: Callable[[], Any] | None,
                   memory_format: torch.memory_format) -> torch.Tensor:
    """Logits of a batch of equal-sized normalised images, at their size (``whole`` and ``center_crop``)."""
    m = eval_spec.resize_multiple
    if m is None:
        return _forward(model, x, autocast, memory_format)
    h, w = x.shape[-2:]
    size = (nearest_multiple(h, m), nearest_multiple(w, m))
    if size != (h, w):
        x = F.interpolate(x, size, mode="bilinear", align_corners=True)
    out = _forward(model, x, autocast, memory_format)
    if out.shape[-2:] != (h, w):
        out = F.interpolate(out, (h, w), mode="bilinear", align_corners=True)
    return out


def predict_scores(model: nn.Module, x: torch.Tensor, eval_spec: EvalSpec, num_classes: int,
                   autocast: Callable[[], Any] | None = None,
                   memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Per-pixel class scores K×H×W for a normalised 1×3×H×W image (logits for ``whole``/``center_crop``,
    summed window softmax probabilities for the sliding modes). Argmax gives the prediction."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one normalised image 1×3×H×W, got shape {tuple(x.shape)}")
    if not eval_spec.mode.startswith("slide"):
        return _whole_forward(model, x, eval_spec, autocast, memory_format)[0]
    h, w = x.shape[-2:]
    wins = windows(h, w, eval_spec.window, eval_spec.stride, truncated=eval_spec.mode == "slide_truncated")
    scores = torch.zeros(num_classes, h, w, dtype=torch.float32, device=x.device)
    by_size: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
    for win in wins:  # only equal-sized windows share a forward (truncated border windows are smaller)
        by_size.setdefault((win[1] - win[0], win[3] - win[2]), []).append(win)
    for group in by_size.values():
        for i in range(0, len(group), eval_spec.batch_windows):
            chunk = group[i:i + eval_spec.batch_windows]
            batch = torch.cat([x[:, :, t:b, l:r] for t, b, l, r in chunk])
            prob = _forward(model, batch, autocast, memory_format).softmax(dim=1)
            for (t, b, l, r), p in zip(chunk, prob):
                scores[:, t:b, l:r] += p
    return scores


def center_crop_pair(x: torch.Tensor, mask: torch.Tensor, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a normalised 1×3×H×W image (0) and its H×W mask (255) symmetrically to ≥ crop, take the centre."""
    h, w = x.shape[-2:]
    ph, pw = max(crop - h, 0), max(crop - w, 0)
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)  # left, right, top, bottom
    x = F.pad(x, pad, value=0.0)
    mask = F.pad(mask, pad, value=IGNORE_INDEX)
    hh, ww = x.shape[-2:]
    t, l = (hh - crop) // 2, (ww - crop) // 2
    return x[:, :, t:t + crop, l:l + crop], mask[t:t + crop, l:l + crop]


# --- data plumbing ----------------------------------------------------------------------------------

def _pairs(item: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 3×H×W image, H×W mask) from a dataset item ``(image, mask, ...)``."""
    image, mask = item[0], item[1]
    if image.dtype != torch.uint8 or image.dim() != 3:
        raise TypeError(f"evaluation images must be uint8 3×H×W RGB (normalised here), got {image.dtype} "
                        f"{tuple(image.shape)}")
    return image, mask


def _first(batch: Sequence[Any]) -> Any:
    return batch[0]


def _shard(data: Any, rank: int, world: int, num_workers: int) -> Iterable[Any]:
    if isinstance(data, torch.utils.data.DataLoader):
        # A loader is iterated as it is: the caller shards it (or passes the same loader with world = 1).
        return data
    indices = list(range(rank, len(data), world))
    if num_workers > 0:
        subset = torch.utils.data.Subset(data, indices)
        return torch.utils.data.DataLoader(subset, batch_size=1, shuffle=False, num_workers=num_workers,
                                           collate_fn=_first)
    return (data[i] for i in indices)


def _memory_format(model: nn.Module) -> torch.memory_format:
    for p in model.parameters():
        if p.dim() == 4:
            return torch.channels_last if (p.is_contiguous(memory_format=torch.channels_last)
                                           and not p.is_contiguous()) else torch.contiguous_format
    return torch.contiguous_format


# --- entry point ------------------------------------------------------------------------------------

def evaluate(model: nn.Module, dataset_or_loader: Any, eval_spec: EvalSpec, num_classes: int,
             device: torch.device | str, autocast: Callable[[], Any] | None = None, rank: int = 0, world: int = 1,
             num_workers: int = 0, confidence: float | None = None, per_image: bool = False) -> dict[str, Any]:
    """Evaluate ``model`` on every image once and return the dataset-level result.

    ``dataset_or_loader``: a map-style dataset (``len`` and ``[i]``, sharded here as ``rank::world``) whose items
    are ``(image, mask, ...)`` (uint8 3×H×W RGB, mask H×W with 255 = ignore), or a loader of such items with
    batch 1 collated by ``_first``, iterated as is (already sharded by the caller). ``autocast``: a callable returning a
    context manager (e.g. ``MethodContext.autocast``) or None. With ``world`` > 1 torch.distributed must be
    initialised; the confusion matrices and image counts are summed over ranks.

    Returns ``{"miou": float (percent), "iou": [per-class float, NaN if absent], "confusion_matrix":
    K×K int64 ndarray (rows gt, columns prediction), "num_images": int, "mode": eval_spec.name}``.

    ``confidence`` τ (diagnostics of pseudo-labels): also ``"confident_matrix"``, the confusion matrix of the
    pixels whose predicted-class probability is ≥ τ (softmax of the logits; for the sliding modes the window
    average), i.e. what a thresholded pseudo-label of this network would keep.
    """
    device = torch.device(device)
    if world > 1 and not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(f"evaluate(world={world}) needs an initialised torch.distributed process group")
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module  # no collectives inside the forward: ranks may hold different image counts
    was_training = model.training
    model.eval()
    fmt = _memory_format(model)
    cm = ConfusionMatrix(num_classes, device=device)
    cm_conf = ConfusionMatrix(num_classes, device=device) if confidence is not None else None
    slide = eval_spec.mode.startswith("slide")
    if per_image and world > 1:
        raise ValueError("evaluate(per_image=True) runs in one process (world=1)")
    image_cms: list[np.ndarray] = []

    def update(scores: torch.Tensor, mask: torch.Tensor) -> None:
        if per_image:
            one = ConfusionMatrix(num_classes, device=device)
            one.update(scores.argmax(dim=0), mask)
            image_cms.append(one.numpy())
        if cm_conf is None:
            cm.update(scores.argmax(dim=0), mask)
            return
        # sliding scores are summed window probabilities: dividing by their sum gives the window average
        prob = scores / scores.sum(dim=0, keepdim=True) if slide else scores.softmax(dim=0)
        conf, pred = prob.max(dim=0)
        cm.update(pred, mask)
        cm_conf.update(pred, torch.where(conf >= confidence, mask, IGNORE_INDEX))

    count = 0
    try:
        with torch.no_grad():
            pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # equal-sized whole images / centre crops

            def flush() -> None:
                scores = _whole_forward(model, torch.cat([x for x, _ in pending]), eval_spec, autocast, fmt)
                for s, (_, m) in zip(scores, pending):
                    update(s, m)
                pending.clear()

            for item in _shard(dataset_or_loader, rank, world, num_workers):
                image, mask = _pairs(item)
                x = normalize(image.to(device, non_blocking=True)).unsqueeze(0)
                mask = mask.to(device, dtype=torch.int64, non_blocking=True)
                if mask.shape != x.shape[-2:]:
                    raise ValueError(f"mask shape {tuple(mask.shape)} differs from image size {tuple(x.shape[-2:])}")
                if eval_spec.mode == "center_crop":
                    x, mask = center_crop_pair(x, mask, eval_spec.crop)
                count += 1
                if slide:
                    update(predict_scores(model, x, eval_spec, num_classes, autocast, fmt), mask)
                    continue
                # Eval-mode BatchNorm makes a batch of images give each image's batch-1 prediction, so
                # consecutive images of one size share a forward (the synthetic and Cityscapes val sets are
                # one size; VOC's vary, and a size change flushes).
                if pending and pending[0][0].shape != x.shape:
                    flush()
                pending.append((x, mask))
                if len(pending) == eval_spec.batch_images:
                    flush()
            if pending:
                flush()
    finally:
        model.train(was_training)
    if world > 1:
        cm.all_reduce()
        if cm_conf is not None:
            cm_conf.all_reduce()
        n = torch.tensor([count], dtype=torch.int64, device=cm.mat.device)
        if dist.get_backend() == "nccl" and n.device.type != "cuda":
            n = n.cuda()
        dist.all_reduce(n)
        count = int(n.item())
    out = {"miou": cm.miou(), "iou": [float(v) for v in cm.iou()], "confusion_matrix": cm.numpy(),
           "num_images": count, "mode": eval_spec.name}
    if cm_conf is not None:
        out["confident_matrix"] = cm_conf.numpy()
    if per_image:
        out["per_image_confusion"] = (np.stack(image_cms) if image_cms
                                      else np.zeros((0, num_classes, num_classes), np.int64))
    return out
