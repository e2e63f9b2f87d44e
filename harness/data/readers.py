"""Image and mask readers, dataset layouts, and :class:`SegmentationSource` (a split list bound to a root).

Masks are read with PIL *without* mode conversion: a palette ("P") PNG yields its raw indices, a
greyscale ("L") PNG its values. RGB masks are refused (they are colour renderings, not class
indices). Values outside {0, …, K−1, 255} are an error naming the file and the values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

if TYPE_CHECKING:
    from ..protocols import Protocol

Entry = tuple[str, str]

_MASK_MODES = {"P", "L", "I", "I;16", "I;16L", "I;16B"}
_READ_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)


def read_image(path: str | Path) -> np.ndarray:
    """An RGB image as a uint8 ``H×W×3`` array; a missing or undecodable file is a DataError naming it."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist") from None
    except _READ_ERRORS as exc:
        raise DataError(f"image {path} cannot be decoded (corrupt or truncated file?): {exc}") from None
    return np.asarray(rgb, dtype=np.uint8)


#: EXIF orientations that swap width and height when a viewer applies them (90° / 270° rotations)
_EXIF_TRANSPOSED = {5, 6, 7, 8}


def exif_orientation(path: str | Path) -> int | None:
    """The EXIF orientation tag of an image file (1 = as stored), or None without one."""
    try:
        with Image.open(path) as img:
            value = img.getexif().get(0x0112)
    except _READ_ERRORS:
        return None
    return int(value) if value else None


def size_mismatch_hint(image_path: str | Path, image_hw: tuple[int, int], mask_hw: tuple[int, int]) -> str:
    """Why an image and its mask may differ in size: an EXIF orientation the harness does not apply."""
    orientation = exif_orientation(image_path)
    if orientation in (None, 1):
        return ""
    turned = orientation in _EXIF_TRANSPOSED and tuple(image_hw[::-1]) == tuple(mask_hw)
    return (f" The image carries an EXIF orientation tag ({orientation}: shown {'rotated' if turned else 'turned'} by "
            f"viewers), which the harness, like the reference code, does not apply: its pixels are read as stored"
            + (", and rotated they would match the mask" if turned else "") + ". Save the image with the rotation "
            "applied to the pixels and the tag removed (e.g. PIL.ImageOps.exif_transpose), so that image and mask "
            "agree as stored.")


def _allowed_table(num_classes: int) -> np.ndarray:
    allowed = np.zeros(256, dtype=bool)
    allowed[: min(num_classes, 256)] = True
    allowed[255] = True
    return allowed


def read_mask(path: str | Path, num_classes: int, lut: np.ndarray | None = None, hint: str = "") -> np.ndarray:
    """Class indices as a uint8 ``H×W`` array, from a palette ("P") or greyscale ("L") PNG.

    ``lut`` (256 uint8 entries) is applied to the raw values first (e.g. Cityscapes labelIds → trainIds).
    Values outside {0, …, num_classes−1, 255} are a DataError naming the file and the values (after the
    table; ``hint``, the dataset's :meth:`DataLayout.mask_hint`, says what they mean).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode not in _MASK_MODES:
                raise DataError(
                    f"mask {path} has image mode '{mode}'; a mask must be a single-channel PNG of class indices "
                    f"(palette 'P' or greyscale 'L'). An {mode} mask is a colour rendering: converting colours to "
                    f"indices is ambiguous, so the harness refuses it. Use the original palette/index PNGs "
                    f"(e.g. VOC SegmentationClass, Cityscapes *_gtFine_labelTrainIds.png, not *_color.png)")
            arr = np.asarray(img)  # 'P': raw palette indices, never colours or luminance
    except FileNotFoundError:
        raise DataError(f"mask {path} does not exist") from None
    except DataError:
        raise
    except _READ_ERRORS as exc:
        raise DataError(f"mask {path} cannot be decoded (corrupt or truncated file?): {exc}") from None
    if arr.dtype != np.uint8:
        if arr.size and (int(arr.max()) > 255 or int(arr.min()) < 0):
            bad = np.unique(arr[(arr > 255) | (arr < 0)])
            raise DataError(f"mask {path} has values {_fmt_values(bad)} outside 0–255; allowed values are "
                            f"0–{num_classes - 1} and 255 (ignore)")
        arr = arr.astype(np.uint8)
    if lut is not None:
        arr = np.asarray(lut, dtype=np.uint8)[arr]
    if arr.size and int(arr.max()) >= num_classes and num_classes < 256:
        allowed = _allowed_table(num_classes)
        ok = allowed[arr]
        if not ok.all():
            bad = np.unique(arr[~ok])
            if hint:
                hint = " " + hint
            elif lut is None and mode == "L":
                hint = (" A greyscale mask with such values may be a palette mask converted to 'L' (luminance) or "
                        "a Cityscapes labelIds file that needs the trainIds mapping (`harness data prepare-cityscapes "
                        "--data-root ROOT` writes the *_gtFine_labelTrainIds.png files).")
            raise DataError(
                f"mask {path} has values {_fmt_values(bad)} outside the allowed class indices 0–{num_classes - 1} "
                f"and 255 (ignore); {int((~ok).sum())} pixels affected.{hint}")
    return arr


def _fmt_values(values: np.ndarray, show: int = 10) -> str:
    vals = [int(v) for v in values[:show]]
    more = f" (and {len(values) - show} more)" if len(values) > show else ""
    return "[" + ", ".join(map(str, vals)) + "]" + more


def resolve_data_root(dataset: "str | Protocol", data_root: str | Path | None = None) -> Path:
    """``data_root`` if given, else ``$HARNESS_DATA_<DATASET>`` (the dataset's ``env``), else the dataset's
    ``default_root`` (synthetic: its cache folder); none → DataError saying how to set it.
    ``dataset``: a registered name or a Protocol (an unknown one is a ConfigError listing the registered ones)."""
    from .registry import get_dataset

    spec = get_dataset(dataset)
    if data_root is None:
        value = os.environ.get(spec.root_env)
        if value:
            data_root = value
        elif spec.default_root is not None:
            return spec.default_root()
        else:
            raise DataError(f"no data root for dataset '{spec.name}': pass --data-root or set {spec.root_env}")
    return Path(data_root).expanduser()


class DataLayout:
    """Maps split-list relpaths to files under a dataset root (generic: paths relative to the root).

    Each registered dataset's reader is a subclass (``VOCLayout``, ``CityscapesLayout``, ...): its constructor
    checks the expected folders (a DataError naming what is missing), ``mask_path`` gives the file and the
    decoding table of a mask, ``mask_hint`` what to add when a mask holds values outside the classes.
    """

    dataset = "generic"
    env = "HARNESS_DATA"

    def __init__(self, root: str | Path, masks: bool = True):
        self.root = Path(root)
        self.masks = masks
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise DataError(f"data root {self.root} {what}; pass --data-root or set {self.env}")

    def image_path(self, rel: str) -> Path:
        return self.root / rel

    def mask_path(self, rel: str) -> tuple[Path, np.ndarray | None]:
        """The file to read for a mask relpath and the lookup table to apply (or None)."""
        return self.root / rel, None

    def name(self, image_rel: str) -> str:
        return Path(image_rel).stem

    def missing_hint(self, rel: str, kind: str) -> str:
        return ""

    def mask_hint(self) -> str:
        """Added to a mask's out-of-range error: what such values mean for this dataset ("" when nothing)."""
        return ""

    def check_notes(self, decoded: int) -> list[str]:
        """Notes for ``harness data check``, given how many checked masks came with a decoding table."""
        return []


def make_layout(dataset: str, root: str | Path, masks: bool = True) -> DataLayout:
    """The registered dataset's reader bound to ``root`` (which it checks); an unknown name is a ConfigError."""
    from .registry import get_dataset

    return get_dataset(dataset).layout(root, masks)


class SegmentationSource:
    """A split list bound to a dataset root: resolves paths and reads ``(image, mask)`` arrays.

    ``masks=False`` (unlabeled lists): masks are neither checked nor readable. ``check_files`` verifies
    at construction that every listed file exists (one error naming the first missing entries).
    ``cache=True`` keeps decoded arrays in memory (per process; for small datasets).
    """

    def __init__(self, root: str | Path, entries: Sequence[Entry], num_classes: int, dataset: str,
                 split_name: str | None = None, masks: bool = True, cache: bool = False, check_files: bool = True,
                 check_hint: str = ""):
        self.layout = make_layout(dataset, root, masks)
        self.root = self.layout.root
        self.entries = list(entries)
        self.num_classes = num_classes
        self.dataset = dataset
        self.split_name = split_name or "<split list>"
        self.masks = masks
        self.cache = cache
        self.check_hint = check_hint  # how to find every unreadable file at once, added to read errors
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        if check_files:
            self.check_files()

    def __len__(self) -> int:
        return len(self.entries)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    def image_path(self, i: int) -> Path:
        return self.layout.image_path(self.entries[i][0])

    def mask_path(self, i: int) -> Path:
        return self.layout.mask_path(self.entries[i][1])[0]

    def name(self, i: int) -> str:
        return self.layout.name(self.entries[i][0])

    def _missing(self, i: int, kind: str, path: Path) -> DataError:
        img, mask = self.entries[i]
        rel = img if kind == "image" else mask
        return DataError(
            f"{kind} of entry #{i + 1} '{img} {mask}' of split file {self.split_name} is missing: {path} does not "
            f"exist (data root {self.root}).{self.layout.missing_hint(rel, kind)}")

    def check_files(self, show: int = 5) -> None:
        """DataError naming the first missing files (entry, split file, resolved path) and the count."""
        missing: list[tuple[int, str, Path]] = []
        for i, (img_rel, mask_rel) in enumerate(self.entries):
            p = self.layout.image_path(img_rel)
            if not p.is_file():
                missing.append((i, "image", p))
            if self.masks:
                m = self.layout.mask_path(mask_rel)[0]
                if not m.is_file():
                    missing.append((i, "mask", m))
        if missing:
            first = self._missing(*missing[0])
            if len(missing) == 1:
                raise first
            others = "; ".join(f"entry #{i + 1} {kind} {p}" for i, kind, p in missing[1:show])
            more = f" and {len(missing) - show} more" if len(missing) > show else ""
            raise DataError(f"{len(missing)} files listed in {self.split_name} are missing under {self.root}. "
                            f"First: {first}. Others: {others}{more}")

    def read_image(self, i: int) -> np.ndarray:
        if self.cache and i in self._cache:
            return self._cache[i][0]
        p = self.image_path(i)
        if not p.exists():
            raise self._missing(i, "image", p)
        try:
            img = read_image(p)
        except DataError as exc:
            raise DataError(f"{exc} (entry #{i + 1} of {self.split_name}).{self._check_hint()}") from None
        if self.cache:
            img.flags.writeable = False
            self._cache[i] = (img, None)
        return img

    def read_mask(self, i: int) -> np.ndarray:
        if not self.masks:
            raise RuntimeError(f"masks of {self.split_name} are not read (source built with masks=False)")
        if self.cache and i in self._cache and self._cache[i][1] is not None:
            return self._cache[i][1]
        p, lut = self.layout.mask_path(self.entries[i][1])
        if not p.exists():
            raise self._missing(i, "mask", p)
        try:
            return read_mask(p, self.num_classes, lut, self.layout.mask_hint())
        except DataError as exc:
            raise DataError(f"{exc} (entry #{i + 1} of {self.split_name}).{self._check_hint()}") from None

    def _check_hint(self) -> str:
        return f" {self.check_hint}" if self.check_hint else ""

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image H×W×3 uint8, mask H×W uint8)``; differing sizes are a DataError naming both files."""
        if self.cache and i in self._cache and self._cache[i][1] is not None:
            return self._cache[i]  # type: ignore[return-value]
        img = self.read_image(i)
        mask = self.read_mask(i)
        if img.shape[:2] != mask.shape:
            raise DataError(
                f"image {self.image_path(i)} is {img.shape[1]}×{img.shape[0]} (W×H) but its mask "
                f"{self.mask_path(i)} is {mask.shape[1]}×{mask.shape[0]}; entry #{i + 1} of {self.split_name}."
                f"{size_mismatch_hint(self.image_path(i), img.shape[:2], mask.shape)}{self._check_hint()}")
        if self.cache:
            mask.flags.writeable = False
            self._cache[i] = (img, mask)
        return img, mask
