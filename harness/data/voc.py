"""PASCAL VOC 2012 (+ SBD): class names, colour palette and the on-disk layout (benchmarks spec §1).

Layout (paths in the split files are relative to the VOC root)::

    <voc_root>/JPEGImages/<id>.jpg
    <voc_root>/SegmentationClass/<id>.png      merged mask set: 10,582 train_aug + 1,449 val

Masks are palette ("P") or greyscale ("L") PNGs holding class indices 0–20 and 255 = void.

**SegmentationClassAug fallback.** The split lists name ``SegmentationClass/<id>.png``. When the root has
no ``SegmentationClass/`` folder but has ``SegmentationClassAug/`` (the name other code bases use for
the merged VOC + SBD masks), masks are read from ``SegmentationClassAug/<id>.png`` instead. The
fallback is per folder, not per file: a ``SegmentationClass/`` folder that lacks files (e.g. the
official devkit's 2,913 fine masks) is an error, never silently mixed with another mask set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..hookspecs import hookimpl
from .readers import DataLayout
from .registry import Dataset

VOC_NUM_CLASSES = 21
VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
VOC_DISPLAY_NAMES: tuple[str, ...] = tuple(
    {"diningtable": "dining table", "pottedplant": "potted plant", "tvmonitor": "tv/monitor"}.get(c, c)
    for c in VOC_CLASSES)

VOC_IMAGE_DIR = "JPEGImages"
VOC_MASK_DIR = "SegmentationClass"
VOC_MASK_DIR_AUG = "SegmentationClassAug"
VOC_ENV = "HARNESS_DATA_VOC"


def voc_palette(n: int = 256) -> np.ndarray:
    """The bit-interleaved VOC colour map as an ``n×3`` uint8 array (index → RGB).

    For index i and bit j = 0..7, bits 3j, 3j+1, 3j+2 of i set bit 7−j of R, G, B respectively.
    """
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        for j in range(8):
            r |= ((i >> (3 * j)) & 1) << (7 - j)
            g |= ((i >> (3 * j + 1)) & 1) << (7 - j)
            b |= ((i >> (3 * j + 2)) & 1) << (7 - j)
        pal[i] = (r, g, b)
    return pal


def voc_palette_flat() -> list[int]:
    """The 768-value palette list for ``PIL.Image.putpalette``."""
    return voc_palette(256).reshape(-1).tolist()


class VOCLayout(DataLayout):
    """Resolves VOC split entries to files (with the SegmentationClassAug fallback of the module docstring)."""

    dataset = "voc"
    env = VOC_ENV

    def __init__(self, root: str | Path, masks: bool = True):
        super().__init__(root, masks)
        root = self.root
        has_img = (root / VOC_IMAGE_DIR).is_dir()
        has_cls = (root / VOC_MASK_DIR).is_dir()
        has_aug = (root / VOC_MASK_DIR_AUG).is_dir()
        self.mask_fallback = masks and not has_cls and has_aug
        if not has_img or (masks and not (has_cls or has_aug)):
            missing = [VOC_IMAGE_DIR] if not has_img else []
            if masks and not (has_cls or has_aug):
                missing.append(f"{VOC_MASK_DIR} (or {VOC_MASK_DIR_AUG})")
            hint = self._nested_hint()
            raise DataError(
                f"data root {root} does not look like a VOC root: missing folder(s) {', '.join(missing)}. Expected "
                f"{root}/{VOC_IMAGE_DIR}/<id>.jpg and {root}/{VOC_MASK_DIR}/<id>.png (the merged VOC + SBD mask set, "
                f"or {VOC_MASK_DIR_AUG}/); pass --data-root or set {VOC_ENV} to that folder.{hint}")

    def _nested_hint(self) -> str:
        for cand in ("VOC2012", "VOCdevkit/VOC2012", "VOCdevkit/VOC2012_trainval", "VOC2012_trainval"):
            if (self.root / cand / VOC_IMAGE_DIR).is_dir():
                return f" Did you mean {self.root / cand}?"
        return ""

    def mask_path(self, rel: str) -> tuple[Path, np.ndarray | None]:
        if self.mask_fallback:
            parts = rel.split("/", 1)
            if len(parts) == 2 and parts[0] == VOC_MASK_DIR:
                return self.root / VOC_MASK_DIR_AUG / parts[1], None
        return self.root / rel, None

    def missing_hint(self, rel: str, kind: str) -> str:
        if kind != "mask" or self.mask_fallback:
            return ""
        cls_dir = self.root / VOC_MASK_DIR
        hint = (f" The split files expect the merged mask set in {VOC_MASK_DIR}/ (12,031 masks: VOC fine + SBD), "
                f"not the official devkit's 2,913 masks (benchmarks spec §1).")
        name = rel.split("/", 1)[-1]
        if (self.root / VOC_MASK_DIR_AUG / name).is_file() and cls_dir.is_dir():
            hint += (f" {VOC_MASK_DIR_AUG}/{name} exists: remove or rename {VOC_MASK_DIR}/ to read all masks from "
                     f"{VOC_MASK_DIR_AUG}/.")
        return hint


@hookimpl
def harness_register_datasets(registry) -> None:
    registry.add(Dataset(
        name="voc", layout=VOCLayout, class_names=VOC_CLASSES, env=VOC_ENV, order=0,
        description="PASCAL VOC 2012 + SBD (10,582 train_aug, 1,449 val), 21 classes"))
