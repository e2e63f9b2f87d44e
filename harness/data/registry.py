"""Datasets as plugins: what the core needs to know about a dataset, and the registry that holds them.

A dataset is registered through the hook ``harness_register_datasets(registry)`` with a :class:`Dataset`:
its reader (a :class:`~harness.data.readers.DataLayout` class: how a split line maps to image and mask
files, how masks are decoded to class indices, what a root must hold), its class names and palette, where
its root comes from (``$HARNESS_DATA_<NAME>`` or a default) and where its split lists come from. The
built-in ones (``voc``, ``cityscapes``, ``ade20k``, ``coco``, ``synthetic``) register themselves at the end
of their modules. Protocols name a dataset by its ``name``; every place of the core that depends on the
dataset asks :func:`get_dataset` instead of spelling a name.

Masks always decode to class indices ``0 … K−1`` with 255 = ignore, the value every loss, metric and
picture of the harness ignores; a dataset whose files use another void value maps it in its reader
(ADE20K's 0).

``harness table`` reads dataset order and names through this module; it imports no model code itself (the
package ``harness.data`` around it does import torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import ConfigError
from ..named_registry import NamedRegistry

if TYPE_CHECKING:
    from .readers import DataLayout

UNIMATCH_SPLITS = ("LiheYoung/UniMatch", "0324f3dd4a22128105a5eb135d2586c0bb3cc647")
"""Where the VOC and Cityscapes split lists come from: (GitHub repository, commit); its ``splits/`` folder."""
UNIMATCH_V2_SPLITS = ("LiheYoung/UniMatch-V2", "f6afb4dfca2d9dcbcee2307e97717954ca75c0ba")
"""Where the ADE20K and COCO split lists come from: UniMatch V2's ``splits/`` folder at this commit."""


def splits_url(repo_commit: tuple[str, str]) -> str:
    """Base URL of the ``splits/`` folder of (repository, commit)."""
    repo, commit = repo_commit
    return f"https://raw.githubusercontent.com/{repo}/{commit}/splits/"


def splits_origin(repo_commit: tuple[str, str]) -> str:
    """How errors name the ``splits/`` folder of (repository, commit)."""
    repo, commit = repo_commit
    return f"github.com/{repo} at {commit[:12]}, folder splits/"


@dataclass(frozen=True)
class Dataset:
    """One dataset as the core sees it. Only ``name``, ``layout`` and ``class_names`` are required."""

    name: str
    layout: "type[DataLayout]"
    """reader: ``layout(root, masks)`` checks the root (raising DataError on a wrong layout) and maps split-list
    relpaths to files and mask decoding tables (``image_path``, ``mask_path``, ``name``, ``missing_hint``)."""
    class_names: tuple[str, ...]
    description: str = ""
    palette: Callable[[], np.ndarray] | None = None
    """256×3 uint8 colours for pictures (index 255 = void); None: the VOC colour map."""
    env: str = ""
    """environment variable holding the root; default ``HARNESS_DATA_<NAME>``."""
    default_root: Callable[[], Path] | None = None
    """the root when neither ``--data-root`` nor the variable is given (synthetic: its cache); None: required."""
    prepare_root: Callable[[Path], Path] | None = None
    """makes a root usable before a run (synthetic: generates it when absent); returns the root to use."""
    split_root: Callable[[Path], Path] | None = None
    """lists that live with the data: data root → split root (synthetic); None: lists fetched from ``splits_repo``."""
    splits_repo: tuple[str, str] = UNIMATCH_SPLITS
    """(GitHub repository, commit) whose ``splits/`` folder the protocols' split paths are relative to."""
    fingerprint: Callable[[Path], str] | None = None
    """a content fingerprint of a root, recorded in ``config.json`` and checked on resume (generated data)."""
    published: bool = True
    """False: tables never add published reference rows for it (a dataset nobody else reports on)."""
    order: int = 1000
    """column groups of tables are sorted by it, then by name."""

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.lower() or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"dataset name {self.name!r} must be a lowercase word (letters, digits, '-', '_')")
        if len(self.class_names) < 2:
            raise ConfigError(f"dataset '{self.name}' needs at least two class names, got {list(self.class_names)}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def root_env(self) -> str:
        return self.env or f"HARNESS_DATA_{self.name.upper().replace('-', '_')}"

    @property
    def splits_url(self) -> str:
        return splits_url(self.splits_repo)

    @property
    def splits_origin(self) -> str:
        return splits_origin(self.splits_repo)

    def colours(self) -> np.ndarray:
        if self.palette is not None:
            return self.palette()
        from .voc import voc_palette

        return voc_palette(256)


class DatasetRegistry(NamedRegistry[Dataset]):
    """Passed to ``harness_register_datasets``; remembers which plugin registered each dataset. Names in table
    order (``Dataset.order``, then name)."""

    kind, entry_type, protocol_key = "dataset", Dataset, "dataset"

    @staticmethod
    def sort_key(dataset: Dataset) -> int:
        return dataset.order


def registry() -> DatasetRegistry:
    """The datasets of every loaded plugin (built-ins included)."""
    from ..plugins import get_plugin_manager

    return get_plugin_manager().datasets


def get_dataset(name_or_protocol) -> Dataset:
    """A dataset by name, or a protocol's dataset (the error then names the protocol and its file)."""
    if isinstance(name_or_protocol, str):
        return registry().get(name_or_protocol)
    return registry().get(name_or_protocol.dataset, protocol=name_or_protocol)
