"""A dataset plugin as a third party would write one, used by tests/data/test_data_registry.py.

Layout: ``<root>/img/<name>.png`` and ``<root>/lbl/<name>.png``; label files hold 0–2 and 9 = void, which the
reader maps to the harness's 255. ``BrokenTwin`` registers a name the harness already has.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.data.readers import DataLayout
from harness.data.registry import Dataset
from harness.errors import DataError
from harness.hookspecs import hookimpl

TOY_LUT = np.arange(256, dtype=np.uint8)
TOY_LUT[9] = 255
TOY_LUT.flags.writeable = False


def toy_palette() -> np.ndarray:
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[:3] = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]
    return pal


class ToyLayout(DataLayout):
    def __init__(self, root: str | Path, masks: bool = True):
        super().__init__(root, masks)
        if not (self.root / "img").is_dir():
            raise DataError(f"data root {self.root} has no img/ folder (toy layout)")

    def mask_path(self, rel: str) -> tuple[Path, np.ndarray | None]:
        return self.root / rel, TOY_LUT


@hookimpl
def harness_register_datasets(registry) -> None:
    registry.add(Dataset(name="toy", layout=ToyLayout, class_names=("zero", "one", "two"), palette=toy_palette,
                         description="test plugin"))
