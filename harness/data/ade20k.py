"""ADE20K (SceneParsing / ADEChallengeData2016): 150 classes, the on-disk layout and the mask decoding.

Layout (the official ``ADEChallengeData2016.zip``; paths in UniMatch V2's split lists are relative to it)::

    <root>/images/training/ADE_train_<8 digits>.jpg           20,210 images
    <root>/images/validation/ADE_val_<8 digits>.jpg           2,000 images
    <root>/annotations/{training,validation}/<same stem>.png   greyscale ("L") class indices

**Label values.** The official annotations hold 0 = "other" (not one of the 150 classes) and 1…150 = the
classes in ``objectInfo150.txt`` order. The harness reads them with 0 → 255 (ignored) and k → k − 1, the
usual "reduce zero label" of ADE20K benchmarks. UniMatch V2 distributes its own "pre-processed" copy of the
annotations and reads masks as stored, with 150 classes named wall … flag (index 0 = wall) and 255 ignored:
its copy is therefore the official annotations with this same mapping already applied, so the two give
the same training targets. The reader expects the official files; a mask holding 255 (which the official
files never do) is refused with a hint that it looks like an already-reduced copy, which this reader
would shift by one class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..hookspecs import hookimpl
from .readers import DataLayout
from .registry import UNIMATCH_V2_SPLITS, Dataset

ADE20K_ENV = "HARNESS_DATA_ADE20K"

# The 150 classes of the SceneParsing benchmark in objectInfo150.txt order (short names, as ADE20K benchmarks
# print them); index i is the official annotation value i + 1.
ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
    "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
ADE20K_NUM_CLASSES = len(ADE20K_CLASSES)


def _reduce_zero_label() -> np.ndarray:
    """256-entry table: 0 → 255 (ignore), k → k − 1. Values above 150 land at 150 or more, outside the classes,
    so a mask that holds them is still refused by the reader (with :meth:`ADE20KLayout.mask_hint`)."""
    lut = np.arange(256, dtype=np.int16) - 1
    lut[0] = 255
    lut = lut.astype(np.uint8)
    lut.flags.writeable = False
    return lut


ADE20K_REDUCE_ZERO_LABEL: np.ndarray = _reduce_zero_label()

IMAGE_DIR, MASK_DIR = "images", "annotations"


class ADE20KLayout(DataLayout):
    """Resolves ADE20K split entries to files; every mask is decoded with :data:`ADE20K_REDUCE_ZERO_LABEL`."""

    dataset = "ade20k"
    env = ADE20K_ENV

    def __init__(self, root: str | Path, masks: bool = True):
        super().__init__(root, masks)
        needed = [IMAGE_DIR] + ([MASK_DIR] if masks else [])
        missing = [d for d in needed if not (self.root / d).is_dir()]
        if missing:
            hint = ""
            for cand in ("ADEChallengeData2016", "ADE20K/ADEChallengeData2016", "ADE20K"):
                if (self.root / cand / IMAGE_DIR).is_dir():
                    hint = f" Did you mean {self.root / cand}?"
                    break
            raise DataError(
                f"data root {self.root} does not look like an ADE20K root: missing folder(s) {', '.join(missing)}. "
                f"Expected {self.root}/{IMAGE_DIR}/{{training,validation}}/ADE_*.jpg and "
                f"{self.root}/{MASK_DIR}/{{training,validation}}/ADE_*.png (the official ADEChallengeData2016 "
                f"folder); pass --data-root or set {ADE20K_ENV} to that folder.{hint}")

    def mask_path(self, rel: str) -> tuple[Path, np.ndarray | None]:
        return self.root / rel, ADE20K_REDUCE_ZERO_LABEL

    def mask_hint(self) -> str:
        return ("ADE20K masks are read as the official annotations: 0 = other (ignored) and 1–150 = the classes, "
                "stored as 0–149 after the shift, so the values above were 151 or more in the file. A value of 255 in "
                "the file (here 254) means a copy whose labels were already shifted (such as UniMatch V2's "
                "pre-processed annotations): use the official annotations from ADEChallengeData2016.zip, which this "
                "reader shifts the same way.")


@hookimpl
def harness_register_datasets(registry) -> None:
    registry.add(Dataset(
        name="ade20k", layout=ADE20KLayout, class_names=ADE20K_CLASSES, env=ADE20K_ENV,
        splits_repo=UNIMATCH_V2_SPLITS, order=20,
        description="ADE20K SceneParsing (20,210 train, 2,000 val), 150 classes; 0 = other is ignored"))
