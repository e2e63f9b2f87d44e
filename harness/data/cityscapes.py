"""Cityscapes: class names, the labelIds → trainIds table and the on-disk layout (benchmarks spec §2).

Layout (relative to the Cityscapes root)::

    leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png

``*_gtFine_labelTrainIds.png`` is generated from the official ``*_gtFine_labelIds.png``. When a split
entry's trainIds file is absent but the labelIds file beside it exists, the labelIds file is read and
mapped with :data:`CITYSCAPES_LABELID_TO_TRAINID` on the fly; :func:`prepare_cityscapes_trainids`
writes the trainIds files once (``harness data`` command) so that this conversion is not repeated.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import DataError
from ..hookspecs import hookimpl
from .readers import DataLayout, read_mask
from .registry import Dataset

CITYSCAPES_NUM_CLASSES = 19
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
CITYSCAPES_ENV = "HARNESS_DATA_CITYSCAPES"
# The official Cityscapes colours of the 19 trainIds (cityscapesScripts' labels.py).
CITYSCAPES_COLORS: list[tuple[int, int, int]] = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
                     (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
                     (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
                     (0, 80, 100), (0, 0, 230), (119, 11, 32)]


def cityscapes_palette() -> np.ndarray:
    """256×3 uint8: the official trainId colours, VOC's colour map above them, void (255) black."""
    from .voc import voc_palette

    pal = voc_palette(256)
    pal[: len(CITYSCAPES_COLORS)] = np.array(CITYSCAPES_COLORS, dtype=np.uint8)
    pal[255] = (0, 0, 0)
    return pal


# All 34 ids of the benchmark (id: trainId); every other value maps to 255.
LABELID_TO_TRAINID: dict[int, int] = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255, 11: 2, 12: 3, 13: 4,
    14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 29: 255, 30: 255, 31: 16, 32: 17, 33: 18,
}


def _make_lut() -> np.ndarray:
    lut = np.full(256, 255, dtype=np.uint8)
    for k, v in LABELID_TO_TRAINID.items():
        lut[k] = v
    lut.flags.writeable = False
    return lut


CITYSCAPES_LABELID_TO_TRAINID: np.ndarray = _make_lut()
"""256-entry uint8 lookup table labelIds → trainIds (unlisted ids, e.g. lane markings 34–45, → 255)."""

TRAINIDS_SUFFIX = "_gtFine_labelTrainIds.png"
LABELIDS_SUFFIX = "_gtFine_labelIds.png"
IMAGE_SUFFIX = "_leftImg8bit.png"


def labelids_path_for(trainids_path: str | Path) -> Path | None:
    p = str(trainids_path)
    return Path(p[: -len(TRAINIDS_SUFFIX)] + LABELIDS_SUFFIX) if p.endswith(TRAINIDS_SUFFIX) else None


class CityscapesLayout(DataLayout):
    """Resolves Cityscapes split entries; falls back to ``*_gtFine_labelIds.png`` + LUT (module docstring)."""

    dataset = "cityscapes"
    env = CITYSCAPES_ENV

    def __init__(self, root: str | Path, masks: bool = True):
        super().__init__(root, masks)
        missing = [d for d in ("leftImg8bit",) + (("gtFine",) if masks else ()) if not (self.root / d).is_dir()]
        if missing:
            hint = ""
            for cand in self.root.glob("*/leftImg8bit"):
                hint = f" Did you mean {cand.parent}?"
                break
            raise DataError(
                f"data root {self.root} does not look like a Cityscapes root: missing folder(s) {', '.join(missing)}. "
                f"Expected {self.root}/leftImg8bit/<split>/<city>/<name>{IMAGE_SUFFIX} and "
                f"{self.root}/gtFine/<split>/<city>/<name>{TRAINIDS_SUFFIX} (or {LABELIDS_SUFFIX}); pass "
                f"--data-root or set {CITYSCAPES_ENV} to that folder.{hint}")

    def mask_path(self, rel: str) -> tuple[Path, np.ndarray | None]:
        path = self.root / rel
        if not path.exists():
            alt = labelids_path_for(path)
            if alt is not None and alt.exists():
                return alt, CITYSCAPES_LABELID_TO_TRAINID
        return path, None

    def name(self, image_rel: str) -> str:
        stem = Path(image_rel).name
        return stem[: -len(IMAGE_SUFFIX)] if stem.endswith(IMAGE_SUFFIX) else Path(stem).stem

    def check_notes(self, decoded: int) -> list[str]:
        if not decoded:
            return []
        return [f"{decoded} masks are read from *{LABELIDS_SUFFIX} and converted on the fly; write the trainIds "
                f"files once with `harness data prepare-cityscapes --data-root {self.root}`"]

    def missing_hint(self, rel: str, kind: str) -> str:
        if kind == "mask" and rel.endswith(TRAINIDS_SUFFIX):
            return (f" Neither it nor the {LABELIDS_SUFFIX} file beside it exists (gtFine_trainvaltest.zip from "
                    f"cityscapes-dataset.com provides the labelIds files).")
        return ""


def prepare_cityscapes_trainids(root: str | Path, overwrite: bool = False,
                                progress: Callable[[int, int], None] | None = None) -> int:
    """Write ``*_gtFine_labelTrainIds.png`` next to every ``gtFine/*/*/*_gtFine_labelIds.png``.

    Each file is written atomically (temporary file, then ``os.replace``). Existing trainIds files are
    kept unless ``overwrite``. Returns the number of files written.
    """
    root = Path(root)
    gt = root / "gtFine"
    if not gt.is_dir():
        raise DataError(f"{gt} does not exist: expected the Cityscapes root with gtFine/{{train,val}}/<city>/ "
                        f"holding *{LABELIDS_SUFFIX} files")
    sources = sorted(gt.glob(f"*/*/*{LABELIDS_SUFFIX}"))
    if not sources:
        raise DataError(f"no *{LABELIDS_SUFFIX} files under {gt}/<split>/<city>/")
    written = 0
    for i, src in enumerate(sources):
        dst = Path(str(src)[: -len(LABELIDS_SUFFIX)] + TRAINIDS_SUFFIX)
        if overwrite or not dst.exists():
            ids = read_mask(src, 256)
            train = CITYSCAPES_LABELID_TO_TRAINID[ids]
            fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    Image.fromarray(train).save(f, format="PNG")
                os.replace(tmp, dst)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            written += 1
        if progress is not None:
            progress(i + 1, len(sources))
    return written


@hookimpl
def harness_register_datasets(registry) -> None:
    registry.add(Dataset(
        name="cityscapes", layout=CityscapesLayout, class_names=CITYSCAPES_CLASSES, env=CITYSCAPES_ENV,
        palette=cityscapes_palette, order=10,
        description="Cityscapes fine (2,975 train, 500 val), 19 classes in trainId order"))
