"""Dataset-level confusion matrix and mIoU (the benchmarks spec §7).

Rows = ground truth, columns = prediction; 255 is ignored; IoU is NaN for a class absent from both prediction
and ground truth; mIoU = 100 · nanmean(IoU). Never the mean of per-image mIoUs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from ..errors import DataError

__all__ = ["IGNORE_INDEX", "ConfusionMatrix", "pseudo_label_quality"]

IGNORE_INDEX = 255


class ConfusionMatrix:
    """K×K int64 confusion matrix accumulated on the device of the first update."""

    def __init__(self, num_classes: int, device: torch.device | str | None = None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        """Add one or more images: ``pred`` and ``gt`` integer tensors of the same shape."""
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} differs from ground-truth shape {tuple(gt.shape)}")
        k = self.num_classes
        gt = gt.to(device=self.mat.device, dtype=torch.int64).reshape(-1)
        pred = pred.to(device=self.mat.device, dtype=torch.int64).reshape(-1)
        bad = ((gt < 0) | (gt >= k)) & (gt != IGNORE_INDEX)
        if bool(bad.any()):
            values = torch.unique(gt[bad]).tolist()
            raise DataError(f"ground truth holds values {values[:20]} outside the classes 0..{k - 1} and "
                            f"ignore {IGNORE_INDEX}")
        m = gt != IGNORE_INDEX
        gt, pred = gt[m], pred[m]
        if pred.numel() and bool(((pred < 0) | (pred >= k)).any()):
            values = torch.unique(pred[(pred < 0) | (pred >= k)]).tolist()
            raise ValueError(f"prediction holds values {values[:20]} outside the classes 0..{k - 1}")
        self.mat += torch.bincount(k * gt + pred, minlength=k * k).reshape(k, k)

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class one")
        self.mat += other.mat.to(self.mat.device)
        return self

    def all_reduce(self) -> "ConfusionMatrix":
        """Sum over the ranks of the default process group (no-op when torch.distributed is not initialised)."""
        if dist.is_available() and dist.is_initialized():
            mat = self.mat
            if dist.get_backend() == "nccl" and mat.device.type != "cuda":
                mat = mat.cuda()
            dist.all_reduce(mat, op=dist.ReduceOp.SUM)
            self.mat = mat.to(self.mat.device)
        return self

    def reset(self) -> None:
        self.mat.zero_()

    def numpy(self) -> np.ndarray:
        return self.mat.cpu().numpy()

    def iou(self) -> np.ndarray:
        """Per-class IoU (float64), NaN where the union is 0."""
        return iou_from_confusion(self.numpy())

    def miou(self) -> float:
        """100 · nanmean of the per-class IoUs (NaN if no class occurs at all)."""
        iou = self.iou()
        if np.all(np.isnan(iou)):
            return float("nan")
        return float(100.0 * np.nanmean(iou))


def iou_from_confusion(mat: np.ndarray) -> np.ndarray:
    """Per-class IoU (float64) of a K×K confusion matrix (rows: ground truth, columns: prediction), or of each
    matrix of a stack (…×K×K → …×K); NaN where a class's union is 0."""
    m = np.asarray(mat, dtype=np.float64)
    inter = np.diagonal(m, axis1=-2, axis2=-1)
    union = m.sum(-2) + m.sum(-1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)


def bootstrap_miou(per_image_confusion: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """Evaluation noise of a dataset-level mIoU: the images are resampled with replacement ``resamples`` times
    and the mIoU recomputed from the summed confusion matrices (the metric is dataset-level, so the images, not
    the pixels, are the sampling unit).

    ``per_image_confusion``: N×K×K (``evaluate(..., per_image=True)``). Returns the mIoU of all images, the
    bootstrap standard deviation and the 2.5 / 97.5 percentiles, in mIoU points."""
    cms = np.asarray(per_image_confusion, dtype=np.float64)
    n, k, _ = cms.shape
    if n < 2:
        raise ValueError(f"a bootstrap over images needs at least two images, got {n}")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)  # resamples × N
    mats = (counts @ cms.reshape(n, k * k)).reshape(resamples, k, k)
    miou = 100 * np.nanmean(iou_from_confusion(mats), axis=1)
    full = 100 * float(np.nanmean(iou_from_confusion(cms.sum(0))))
    lo, hi = np.percentile(miou, [2.5, 97.5])
    return {"miou": full, "std": float(miou.std(ddof=1)), "low": float(lo), "high": float(hi),
            "resamples": resamples, "images": n}


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def pseudo_label_quality(full: np.ndarray, confident: np.ndarray) -> dict[str, object]:
    """What thresholded pseudo-labels of a network would be worth, from two K×K confusion matrices (rows gt,
    columns prediction): ``full`` over every labeled pixel and ``confident`` over the pixels whose confidence
    passes the threshold.

    - ``coverage``: kept pixels / all pixels; ``accuracy``: correct kept / kept (pseudo-label precision);
      ``accuracy_all``: correct / all (the same network without a threshold).
    - per predicted class c (the pseudo-label's class): ``precision[c]`` = correct kept c / kept c and
      ``share[c]`` = kept c / kept.
    - per ground-truth class c: ``recall[c]`` = pixels of c kept with the right label / pixels of c, and
      ``wrong[c]`` = pixels of c kept with a wrong label / pixels of c (what the unsupervised loss reinforces).
    NaN where a denominator is 0.
    """
    full = np.asarray(full, dtype=np.float64)
    conf = np.asarray(confident, dtype=np.float64)
    if full.shape != conf.shape or full.ndim != 2 or full.shape[0] != full.shape[1]:
        raise ValueError(f"expected two K×K matrices of the same shape, got {full.shape} and {conf.shape}")
    if np.any(conf > full):
        raise ValueError("the confident matrix must count a subset of the full matrix's pixels")
    diag = np.diag(conf)
    per_gt = full.sum(axis=1)
    kept_gt = conf.sum(axis=1)
    return {
        "coverage": float(_ratio(conf.sum(), full.sum())),
        "accuracy": float(_ratio(diag.sum(), conf.sum())),
        "accuracy_all": float(_ratio(np.trace(full), full.sum())),
        "precision": _ratio(diag, conf.sum(axis=0)),
        "share": _ratio(conf.sum(axis=0), conf.sum()),
        "recall": _ratio(diag, per_gt),
        "wrong": _ratio(kept_gt - diag, per_gt),
    }
