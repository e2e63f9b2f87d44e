"""Locating and checking the data a protocol needs: dataset root, split root, verified split lists.

Used by ``harness run`` (through the runner), ``harness eval`` and ``harness data``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..protocols import Protocol
from .check import check_dataset_root
from .readers import resolve_data_root
from .registry import get_dataset, registry
from .splits import default_splits_cache, fetch_splits, protocol_split_files, resolve_split_root, verify_protocol_splits


def prepare_data(protocol: Protocol, data_root: str | None, splits_dir: str | None) -> tuple[Path, Path]:
    """(data root, split root) for ``protocol``, split lists verified; a dataset with a ``prepare_root`` (the
    synthetic set: generated if absent) prepares its root first."""
    dataset = get_dataset(protocol)
    root = resolve_data_root(protocol, data_root)
    if dataset.prepare_root is not None:
        root = dataset.prepare_root(root)
    elif not root.is_dir():
        raise DataError(f"data root {root} for protocol {protocol.id} does not exist; pass --data-root "
                        f"(or set {dataset.root_env}) pointing at the {dataset.name} root described in the README")
    split_root = resolve_split_root(protocol, splits_dir, root)
    verify_protocol_splits(protocol, split_root)
    return root, split_root


def fetch_all_splits(dest: str | None = None, splits_dir: str | None = None) -> list[Path]:
    """Fetch (or, with ``splits_dir``, only verify) every split list of every registered protocol whose lists come
    from a repository (not those that live with their data, as the synthetic set's); returns the
    folders (each dataset's source repository and commit has its own cache folder unless ``dest`` is given)."""
    from ..plugins import get_plugin_manager

    protocols = [p for p in get_plugin_manager().protocols
                 if p.dataset in registry() and registry().get(p.dataset).split_root is None]
    by_source: dict[tuple[str, str], dict] = {}
    for p in protocols:
        by_source.setdefault(get_dataset(p).splits_repo, {}).update({f.path: f for f in protocol_split_files(p)})
    roots = {}
    for source, files in by_source.items():
        if splits_dir is None:
            roots[source] = Path(dest).expanduser() if dest else default_splits_cache(source[1])
            spec = next(get_dataset(p) for p in protocols if get_dataset(p).splits_repo == source)
            fetch_splits(roots[source], files.values(), default_url=spec.splits_url, origin=spec.splits_origin)
        else:
            roots[source] = Path(splits_dir).expanduser()
    for p in protocols:
        verify_protocol_splits(p, roots[get_dataset(p).splits_repo])
    return sorted(set(roots.values()))


def check_root(protocol_id: str, data_root: str | None, splits_dir: str | None) -> tuple[bool, str]:
    """Open every image and mask of a protocol's split lists; report missing and unreadable files."""
    from ..plugins import get_plugin_manager

    protocol = get_plugin_manager().protocols.get(protocol_id)
    root, split_root = prepare_data(protocol, data_root, splits_dir)
    files = [split_root / f.path for f in protocol_split_files(protocol)]
    unlabeled = [split_root / protocol.splits.unlabeled.path] if protocol.splits.unlabeled is not None else []
    report = check_dataset_root(protocol.dataset, root, files,
                                num_classes=protocol.num_classes, unlabeled=unlabeled)
    return report.ok, report.format()
