"""Locating and checking the data a protocol needs: dataset root, split root, verified split lists.

Used by ``harness run`` (through the runner), ``harness eval`` and ``harness data``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..protocols import Protocol
from .check import check_dataset_root
from .readers import resolve_data_root
from .splits import default_splits_cache, fetch_splits, protocol_split_files, resolve_split_root, verify_protocol_splits


def prepare_data(protocol: Protocol, data_root: str | None, splits_dir: str | None) -> tuple[Path, Path]:
    """(data root, split root) for ``protocol``, split lists verified; the synthetic set is generated if absent."""
    if protocol.dataset == "synthetic":
        from .synthetic import ensure_synthetic

        root = Path(data_root).expanduser() if data_root else resolve_data_root(protocol)
        # A user-made root (other sizes) is taken as is: the protocol's split checksums decide if it fits.
        if not (root / "manifest.json").is_file():
            root = ensure_synthetic(root)
    else:
        root = resolve_data_root(protocol, data_root)
        if not root.is_dir():
            raise DataError(f"data root {root} for protocol {protocol.id} does not exist; pass --data-root "
                            f"(or set HARNESS_DATA_{protocol.dataset.upper()}) pointing at the {protocol.dataset} "
                            f"root described in the README")
    split_root = resolve_split_root(protocol, splits_dir, root)
    verify_protocol_splits(protocol, split_root)
    return root, split_root


def fetch_all_splits(dest: str | None = None, splits_dir: str | None = None) -> Path:
    """Fetch (or, with ``splits_dir``, only verify) every split list of every registered VOC/Cityscapes protocol."""
    from ..plugins import get_plugin_manager

    protocols = [p for p in get_plugin_manager().protocols if p.dataset != "synthetic"]
    files = {f.path: f for p in protocols for f in protocol_split_files(p)}
    if splits_dir is None:
        root = Path(dest).expanduser() if dest else default_splits_cache()
        fetch_splits(root, files.values())
    else:
        root = Path(splits_dir).expanduser()
    for p in protocols:
        verify_protocol_splits(p, root)
    return root


def check_root(protocol_id: str, data_root: str | None, splits_dir: str | None) -> tuple[bool, str]:
    """Open every image and mask of a protocol's split lists; report missing and unreadable files."""
    from ..plugins import get_plugin_manager

    protocol = get_plugin_manager().protocols.get(protocol_id)
    root, split_root = prepare_data(protocol, data_root, splits_dir)
    files = [split_root / f.path for f in protocol_split_files(protocol)]
    unlabeled = [split_root / protocol.splits.unlabeled.path] if protocol.splits.unlabeled is not None else []
    report = check_dataset_root(protocol.dataset if protocol.dataset != "synthetic" else "voc", root, files,
                                num_classes=protocol.num_classes, unlabeled=unlabeled)
    return report.ok, report.format()
