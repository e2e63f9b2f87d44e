"""``harness data draw-splits``: split seeds and a selection split for VOC and Cityscapes, drawn from the public
train lists. These are NOT the published splits: their protocol ids say ``drawn``, their families end in
``-drawn`` (a column group of their own in tables, never matched with published numbers) and their descriptions
say so.

A *preset* names the published protocols whose label counts are drawn again and where the draws come from:

- ``voc-classic``: voc-92 … voc-732, labeled lists drawn from the 1,464 fine VOC train images (voc-1464's labeled
  list), as the published classic lists; unlabeled = the rest of train_aug (10,582);
- ``voc-blended``: voc-blended-662 … 2646, labeled lists drawn from all of train_aug, as the CPS-style lists;
- ``cityscapes``: cityscapes-186 … 1488, labeled lists drawn from the 2,975 train images.

The procedure is :mod:`harness.data.split_seeds`' keyed by ``(DRAW_SEED_BASE, crc32 of the preset name)``: the
selection split comes from the train images outside the labeled pool's published labeled lists (VOC classic:
outside the 1,464 fine images; the others: outside every published labeled list of the preset), split seed ``k``
of every count from the labeled pool minus the selection split. The train images are the union of a preset
protocol's labeled and unlabeled lists, read from the split root and verified against their SHA-256 first, so the
draws are the same wherever the published lists are.

Files: the lists go into the split root, ``drawn/<preset>/selection.txt`` and
``drawn/<preset>/seed<k>/<n>/{labeled,unlabeled}.txt`` (the protocols' paths, next to the published lists their
val path names); the protocol file ``<preset>-drawn.yaml`` (settings copied from each published protocol, split
checksums of the drawn files) goes to ``--out`` (default ``<split root>/drawn/protocols``), which
``HARNESS_PROTOCOLS`` then names.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import yaml

from ..errors import ConfigError
from ..records import atomic_write_bytes
from .split_seeds import draw_selection, draw_split_seed, unlabeled_of
from .splits import DRAWN_PREFIX, Entry, load_protocol_splits, sha256_bytes

DRAW_SEED_BASE = 20261205
DEFAULT_SELECTION = 200


@dataclass(frozen=True)
class Preset:
    protocols: tuple[str, ...]           # published protocols whose label counts are drawn again
    labeled_pool: str | None             # a protocol whose labeled list is the pool; None: every train image
    what: str


PRESETS = {
    "voc-classic": Preset(("voc-92", "voc-183", "voc-366", "voc-732"), "voc-1464",
                          "labeled lists drawn from the 1,464 fine VOC train images"),
    "voc-blended": Preset(("voc-blended-662", "voc-blended-1323", "voc-blended-2646"), None,
                          "labeled lists drawn from the 10,582 train_aug images"),
    "cityscapes": Preset(("cityscapes-186", "cityscapes-372", "cityscapes-744", "cityscapes-1488"), None,
                         "labeled lists drawn from the 2,975 Cityscapes train images"),
}


def _key(preset: str) -> tuple[int, int]:
    return DRAW_SEED_BASE, zlib.crc32(preset.encode())


def _bytes(entries: Sequence[Entry]) -> bytes:
    return "".join(f"{image} {mask}\n" for image, mask in entries).encode()


def draw_splits(preset: str, split_root: str | Path, seeds: Sequence[int], selection: int = DEFAULT_SELECTION,
                out: str | Path | None = None) -> tuple[Path, list[str]]:
    """Draw the preset's split seeds and selection split into ``split_root`` and write their protocol file; returns
    (protocol file, ids of the protocols in it)."""
    from ..plugins import get_plugin_manager

    if preset not in PRESETS:
        raise ConfigError(f"unknown draw-splits preset {preset!r}; expected one of {', '.join(PRESETS)}")
    if not seeds or any(k < 1 for k in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must be distinct whole numbers >= 1, got {list(seeds)}")
    spec = PRESETS[preset]
    registry = get_plugin_manager().protocols
    sources = [registry.get(pid) for pid in spec.protocols]
    root = Path(split_root).expanduser()
    lists = {p.id: load_protocol_splits(p, root) for p in sources}  # verified against the published checksums
    entries: dict[str, Entry] = {}
    published_labeled: set[str] = set()
    for split in lists.values():
        for e in split["labeled"] + (split["unlabeled"] or []):
            entries[e[0]] = e
        published_labeled |= {e[0] for e in split["labeled"]}
    train = sorted(entries)
    if spec.labeled_pool is not None:
        pool_protocol = registry.get(spec.labeled_pool)
        pool = [e[0] for e in load_protocol_splits(pool_protocol, root)["labeled"]]
    else:
        pool = train
    avoid = set(pool) if spec.labeled_pool is not None else published_labeled
    chosen = draw_selection([i for i in train if i not in avoid], selection, _key(preset))
    counts = [p.labeled_count for p in sources]
    base = f"{DRAWN_PREFIX}{preset}"
    files = {f"{base}/selection.txt": chosen}
    held_out = set(chosen)
    for k in seeds:
        drawn, _ = draw_split_seed([i for i in pool if i not in held_out], counts, k, _key(preset))
        for n, labeled in drawn.items():
            files[f"{base}/seed{k}/{n}/labeled.txt"] = labeled
            files[f"{base}/seed{k}/{n}/unlabeled.txt"] = unlabeled_of(train, labeled)
    meta = {}
    for rel, ids in files.items():
        data = _bytes([entries[i] for i in ids])
        atomic_write_bytes(root / rel, data)
        meta[rel] = {"path": rel, "sha256": sha256_bytes(data), "count": len(ids)}
    protocols = []
    for p in sources:
        for k in seeds:
            n = p.labeled_count
            doc = p.model_dump(mode="json", exclude={"id", "description", "source", "family", "split_of",
                                                     "split_seed", "splits"})
            protocols.append({
                "id": f"{p.id}-drawn-split{k}",
                "description": f"{p.description} — DRAWN split seed {k} (harness data draw-splits, {spec.what}), "
                               f"NOT the published split",
                "family": f"{p.family}-drawn", "split_of": p.id, "split_seed": k,
                "splits": {"labeled": meta[f"{base}/seed{k}/{n}/labeled.txt"],
                           "unlabeled": meta[f"{base}/seed{k}/{n}/unlabeled.txt"],
                           "val": p.splits.val.model_dump(), "selection": meta[f"{base}/selection.txt"]},
                **doc})
    out_dir = Path(out).expanduser() if out is not None else root / base.rsplit("/", 1)[0] / "protocols"
    path = out_dir / f"{preset}-drawn.yaml"
    header = (f"# Split seeds {', '.join(map(str, seeds))} of {', '.join(spec.protocols)}: DRAWN by `harness data "
              f"draw-splits --preset {preset}`\n# ({spec.what}; selection split of {selection} images; procedure: "
              f"harness/data/draw_splits.py). NOT the published splits.\n# Split paths are relative to the split "
              f"root they were drawn into: {root}\n")
    atomic_write_bytes(path, (header + yaml.safe_dump({"protocols": protocols}, sort_keys=False,
                                                     allow_unicode=True, width=120)).encode())
    return path, [d["id"] for d in protocols]

