"""COCO 2017 with the 81-class masks of UniMatch / UniMatch V2: class names and the on-disk layout.

Layout (what UniMatch V2's README lists; paths in its split lists are relative to the root)::

    <root>/train2017/<12 digits>.jpg      the official COCO 2017 train images (118,287)
    <root>/val2017/<12 digits>.jpg        the official COCO 2017 val images (5,000)
    <root>/masks/<12 digits>.png          one mask per image, train and val in one folder

The masks are not part of the official COCO release: UniMatch (V1 and V2) distributes them ready-made
("pre-processed", from the COCO instance annotations). They hold class indices 0–80 (0 = background, i.e.
no thing; 1–80 the 80 thing categories in COCO's category-id order) and 255 = ignore, and are read as stored.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..hookspecs import hookimpl
from .readers import DataLayout
from .registry import UNIMATCH_V2_SPLITS, Dataset

COCO_ENV = "HARNESS_DATA_COCO"

# Background, then COCO's 80 thing categories in category-id order (the 81 classes of UniMatch's masks; UniMatch
# calls index 0 "void", but it is the background class, trained and scored like any other).
COCO_CLASSES: tuple[str, ...] = (
    "background", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep",
    "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven",
    "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
COCO_NUM_CLASSES = len(COCO_CLASSES)

IMAGE_DIRS, MASK_DIR = ("train2017", "val2017"), "masks"


class COCOLayout(DataLayout):
    """Resolves COCO split entries to files; masks are read as stored (module docstring)."""

    dataset = "coco"
    env = COCO_ENV

    def __init__(self, root: str | Path, masks: bool = True):
        super().__init__(root, masks)
        # A root may hold only train2017 or only val2017 (e.g. to check one list), but never neither.
        missing = [] if any((self.root / d).is_dir() for d in IMAGE_DIRS) else [" or ".join(IMAGE_DIRS)]
        if masks and not (self.root / MASK_DIR).is_dir():
            missing.append(MASK_DIR)
        if missing:
            hint = ""
            if (self.root / "annotations").is_dir() and masks:
                hint = (f" {self.root}/annotations/ holds the official instance annotations, not the class-index "
                        f"masks: the harness reads the {MASK_DIR}/ folder that UniMatch distributes.")
            raise DataError(
                f"data root {self.root} does not look like a COCO root: missing folder(s) {', '.join(missing)}. "
                f"Expected {self.root}/train2017/<id>.jpg, {self.root}/val2017/<id>.jpg and "
                f"{self.root}/{MASK_DIR}/<id>.png (UniMatch's 81-class masks); pass --data-root or set {COCO_ENV} "
                f"to that folder.{hint}")

    def missing_hint(self, rel: str, kind: str) -> str:
        if kind == "mask":
            return (f" The masks are UniMatch's 81-class PNGs (linked from its README), one per image in "
                    f"{MASK_DIR}/, not part of the official COCO release.")
        return ""

    def mask_hint(self) -> str:
        return ("COCO masks hold 0 (background), 1–80 (the things) and 255 (ignore): a mask with other values is "
                "not one of UniMatch's 81-class masks (COCO-Stuff's 171/182-class masks are another label set).")


@hookimpl
def harness_register_datasets(registry) -> None:
    registry.add(Dataset(
        name="coco", layout=COCOLayout, class_names=COCO_CLASSES, env=COCO_ENV, splits_repo=UNIMATCH_V2_SPLITS,
        order=30, description="COCO 2017 (118,287 train, 5,000 val) with UniMatch's masks, 81 classes"))
