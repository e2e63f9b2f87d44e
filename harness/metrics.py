"""Dataset-level confusion matrix and mIoU (``benchmarks.md`` §7).

Rows = ground truth, columns = prediction; 255 is ignored; IoU is NaN for a class absent from both prediction
and ground truth; mIoU = 100 · nanmean(IoU). Never the mean of per-image mIoUs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from .errors import DataError

__all__ = ["IGNORE_INDEX", "ConfusionMatrix"]

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
        c = self.numpy().astype(np.float64)
        inter = np.diag(c)
        union = c.sum(0) + c.sum(1) - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)

    def miou(self) -> float:
        """100 · nanmean of the per-class IoUs (NaN if no class occurs at all)."""
        iou = self.iou()
        if np.all(np.isnan(iou)):
            return float("nan")
        return float(100.0 * np.nanmean(iou))
