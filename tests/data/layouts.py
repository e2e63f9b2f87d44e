"""Helpers that write small fake dataset trees in the exact public layouts (real JPEG/PNG files).

Import from other tests as ``from tests.data.layouts import write_voc_tree`` (the repository root must
be on ``sys.path``: ``python -m pytest`` or ``pythonpath = ["."]`` in the pytest settings).

* :func:`write_voc_tree` — ``JPEGImages/<id>.jpg`` + ``SegmentationClass/<id>.png`` (palette "P" with
  the VOC palette) or ``SegmentationClassAug/``; returns split entries.
* :func:`write_cityscapes_tree` — ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` +
  ``gtFine/<split>/<city>/<name>_gtFine_labelIds.png`` / ``_gtFine_labelTrainIds.png``.
* :func:`write_ade20k_tree` — ``images/<split>/<name>.jpg`` + ``annotations/<split>/<name>.png`` (greyscale
  "L", the official values: 0 = other, 1–150 = classes).
* :func:`write_coco_tree` — ``train2017/<id>.jpg`` / ``val2017/<id>.jpg`` + ``masks/<id>.png`` (greyscale,
  0–80 and 255, as UniMatch's masks).
* :func:`write_split_file`, :func:`make_protocol` — split lists and a matching :class:`Protocol`.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from harness.data.cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_LABELID_TO_TRAINID
from harness.data.voc import VOC_CLASSES, voc_palette, voc_palette_flat
from harness.protocols import Protocol

Entry = tuple[str, str]


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def fake_mask(h: int, w: int, num_classes: int, rng: np.random.Generator, void_border: bool = True) -> np.ndarray:
    """Background 0 with two rectangles of random foreground classes (1-pixel 255 border on the first)."""
    m = np.zeros((h, w), dtype=np.uint8)
    for k in range(2):
        c = int(rng.integers(1, num_classes)) if num_classes > 1 else 0
        y0, x0 = int(rng.integers(0, max(1, h // 2))), int(rng.integers(0, max(1, w // 2)))
        y1, x1 = min(h, y0 + max(2, h // 3)), min(w, x0 + max(2, w // 3))
        if k == 0 and void_border:
            m[max(0, y0 - 1):min(h, y1 + 1), max(0, x0 - 1):min(w, x1 + 1)] = 255
        m[y0:y1, x0:x1] = c
    return m


def image_for_mask(mask: np.ndarray, rng: np.random.Generator, noise: int = 20) -> np.ndarray:
    """An RGB image whose colours follow the mask (VOC palette colour + noise)."""
    img = voc_palette(256)[mask].astype(np.int16)
    img += rng.integers(-noise, noise + 1, size=img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def save_palette_png(path: str | Path, mask: np.ndarray) -> None:
    im = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.astype(np.uint8).tobytes())
    im.putpalette(voc_palette_flat())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format="PNG")


def save_grey_png(path: str | Path, mask: np.ndarray) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8)).save(path, format="PNG")


def write_voc_tree(root: str | Path, ids: Sequence[str], size: tuple[int, int] = (48, 64), num_classes: int = 21,
                   mask_dir: str = "SegmentationClass", mask_mode: str = "P", sizes: dict[str, tuple[int, int]] | None = None,
                   seed: int = 0, masks: bool = True, jpeg_quality: int = 92) -> list[Entry]:
    """Write ``root/JPEGImages/<id>.jpg`` and ``root/<mask_dir>/<id>.png`` for every id; return split entries.

    Entries always name ``SegmentationClass/<id>.png`` (as the public split lists do), also when the masks
    are written to ``SegmentationClassAug/``. ``mask_mode`` "P" (VOC palette) or "L". ``sizes`` overrides
    ``size`` (h, w) per id.
    """
    root = Path(root)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    if masks:
        (root / mask_dir).mkdir(parents=True, exist_ok=True)
    entries = []
    for i in ids:
        h, w = (sizes or {}).get(i, size)
        rng = _rng(seed, i)
        mask = fake_mask(h, w, num_classes, rng)
        Image.fromarray(image_for_mask(mask, rng)).save(root / "JPEGImages" / f"{i}.jpg", format="JPEG",
                                                        quality=jpeg_quality)
        if masks:
            (save_palette_png if mask_mode == "P" else save_grey_png)(root / mask_dir / f"{i}.png", mask)
        entries.append((f"JPEGImages/{i}.jpg", f"SegmentationClass/{i}.png"))
    return entries


def voc_ids(n: int, start: int = 0, year: int = 2007) -> list[str]:
    return [f"{year}_{start + k:06d}" for k in range(n)]


def write_cityscapes_tree(root: str | Path, split: str = "train", names: Sequence[str] | None = None, n: int = 4,
                          cities: Sequence[str] = ("aachen", "jena"), size: tuple[int, int] = (32, 64),
                          label_ids: bool = True, train_ids: bool = True, seed: int = 0) -> list[Entry]:
    """Write Cityscapes images and gtFine masks; return entries naming ``*_gtFine_labelTrainIds.png``.

    ``names`` are ``<city>_<seq>_<frame>`` stems (default: ``n`` names spread over ``cities``).
    ``label_ids`` writes the official ``*_gtFine_labelIds.png`` (random ids 0–33), ``train_ids`` the
    generated ``*_gtFine_labelTrainIds.png`` (the same ids mapped with the benchmark table).
    """
    root = Path(root)
    if names is None:
        names = [f"{cities[k % len(cities)]}_{k:06d}_000019" for k in range(n)]
    entries = []
    h, w = size
    for name in names:
        city = name.split("_")[0]
        rng = _rng(seed, name)
        ids = np.zeros((h, w), dtype=np.uint8)
        for y in range(0, h, 8):
            for x in range(0, w, 8):
                ids[y:y + 8, x:x + 8] = rng.integers(0, 34)
        train = CITYSCAPES_LABELID_TO_TRAINID[ids]
        img = np.clip(voc_palette(256)[train].astype(np.int16) + rng.integers(-10, 11, (h, w, 3)), 0, 255)
        img_rel = f"leftImg8bit/{split}/{city}/{name}_leftImg8bit.png"
        gt_dir = root / "gtFine" / split / city
        (root / img_rel).parent.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.astype(np.uint8)).save(root / img_rel, format="PNG")
        if label_ids:
            save_grey_png(gt_dir / f"{name}_gtFine_labelIds.png", ids)
        if train_ids:
            save_grey_png(gt_dir / f"{name}_gtFine_labelTrainIds.png", train)
        entries.append((img_rel, f"gtFine/{split}/{city}/{name}_gtFine_labelTrainIds.png"))
    return entries


def write_pairs(root: str | Path, entries: Sequence[Entry], masks: dict[str, np.ndarray], size: tuple[int, int],
                seed: int = 0) -> list[Entry]:
    """Write each entry's image (JPEG) and mask (greyscale PNG) at the relpaths the entry names.

    ``masks`` maps a mask relpath to its array; other masks get :func:`fake_mask` values 0–20 (+ 255 border).
    """
    root = Path(root)
    for img_rel, mask_rel in entries:
        rng = _rng(seed, img_rel)
        mask = masks.get(mask_rel)
        if mask is None:
            mask = fake_mask(*size, 21, rng)
        (root / img_rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image_for_mask(mask, rng)).save(root / img_rel, format="JPEG", quality=90)
        save_grey_png(root / mask_rel, mask)
    return list(entries)


def write_ade20k_tree(root: str | Path, split: str = "training", n: int = 3, size: tuple[int, int] = (24, 40),
                      seed: int = 0) -> list[Entry]:
    """ADE20K entries in the official layout, masks with the official values (0 = other, 1–150)."""
    prefix = "ADE_train_" if split == "training" else "ADE_val_"
    entries = []
    masks = {}
    for k in range(n):
        name = f"{prefix}{k + 1:08d}"
        rng = _rng(seed, name)
        m = rng.integers(0, 151, size=size, dtype=np.uint8)
        entry = (f"images/{split}/{name}.jpg", f"annotations/{split}/{name}.png")
        masks[entry[1]] = m
        entries.append(entry)
    return write_pairs(root, entries, masks, size, seed)


def write_coco_tree(root: str | Path, split: str = "train2017", ids: Sequence[int] = (9, 25, 30),
                    size: tuple[int, int] = (24, 40), seed: int = 0) -> list[Entry]:
    """COCO entries in UniMatch's layout (``<split>/<12 digits>.jpg``, ``masks/<12 digits>.png``), masks 0–80 + 255."""
    entries, masks = [], {}
    for i in ids:
        entry = (f"{split}/{i:012d}.jpg", f"masks/{i:012d}.png")
        m = _rng(seed, entry[0]).integers(0, 81, size=size, dtype=np.uint8)
        m[0, :] = 255
        masks[entry[1]] = m
        entries.append(entry)
    return write_pairs(root, entries, masks, size, seed)


def write_split_file(path: str | Path, entries: Sequence[Entry], final_newline: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(f"{a} {b}" for a, b in entries) + ("\n" if final_newline and entries else "")
    path.write_bytes(text.encode("utf-8"))
    return path


def split_file_spec(split_root: str | Path, relpath: str) -> dict[str, Any]:
    """``{'path', 'sha256', 'count'}`` of an existing split file (for a Protocol's ``splits``)."""
    data = (Path(split_root) / relpath).read_bytes()
    count = sum(1 for line in data.decode().split("\n") if line.strip())
    return {"path": relpath, "sha256": hashlib.sha256(data).hexdigest(), "count": count}


def make_protocol(split_root: str | Path, labeled: str = "labeled.txt", unlabeled: str | None = "unlabeled.txt",
                  val: str = "val.txt", dataset: str = "voc", crop_size: int = 32, batch_labeled: int = 2,
                  batch_unlabeled: int = 2, num_classes: int | None = None, iterations: int = 10,
                  protocol_id: str = "test-proto", **extra: Any) -> Protocol:
    """A valid Protocol whose split files are the given files under ``split_root`` (checksums computed)."""
    if num_classes is None:
        num_classes = 19 if dataset == "cityscapes" else 21
    names = list(CITYSCAPES_CLASSES if dataset == "cityscapes" and num_classes == 19 else
                 VOC_CLASSES if num_classes == 21 else [f"c{k}" for k in range(num_classes)])
    splits = {"labeled": split_file_spec(split_root, labeled), "val": split_file_spec(split_root, val)}
    if unlabeled is not None:
        splits["unlabeled"] = split_file_spec(split_root, unlabeled)
    data = {
        "id": protocol_id, "dataset": dataset, "family": "test", "splits": splits, "num_classes": num_classes,
        "class_names": names, "crop_size": crop_size, "eval": {"mode": "whole"},
        "budget": {"iterations": iterations, "batch_labeled": batch_labeled, "batch_unlabeled": batch_unlabeled,
                   "lr": 0.01, "head_lr_mult": 1.0, "weight_decay": 1e-4},
        "model": {"backbone": "small", "pretrained": False},
    }
    data.update(extra)
    return Protocol.model_validate(data)
