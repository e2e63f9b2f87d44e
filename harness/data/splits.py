"""Split lists: parsing, checksum verification, locating/fetching the split root, disjointness.

A split file lists one sample per line, ``<image relpath> <mask relpath>`` relative to the dataset
root (benchmarks spec §3). Some files end without a final newline, so entries are counted as non-empty
lines, never as newline characters.

Split root resolution (:func:`resolve_split_root`):

* a dataset whose lists live with its data (its registered ``split_root``; the synthetic set's
  ``<data_root>/splits``): that folder;
* otherwise the explicit ``splits_dir`` argument (``--splits-dir``), else ``$HARNESS_SPLITS``, else the
  cache folder ``$HARNESS_CACHE/splits/<commit>`` (``HARNESS_CACHE`` defaults to ``~/.cache/harness``),
  filled on first use from the ``splits/`` folder of the dataset's source repository at a pinned commit
  (UniMatch for VOC and Cityscapes, UniMatch V2 for ADE20K and COCO; base URL overridable with
  ``$HARNESS_SPLITS_URL``, e.g. a ``file://`` URL of a local copy).

Every file is verified against the SHA-256 (or git blob id) the protocol pins before use (:func:`verify_split`).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import DataError
from ..records import atomic_write_bytes
from ..protocols import Protocol, SplitFile
from .registry import UNIMATCH_SPLITS, get_dataset, splits_origin, splits_url

Entry = tuple[str, str]

UNIMATCH_COMMIT = UNIMATCH_SPLITS[1]
DEFAULT_SPLITS_URL = splits_url(UNIMATCH_SPLITS)
_FETCH_TIMEOUT_S = 60
DRAWN_PREFIX = "drawn/"  # split lists drawn by `harness data draw-splits` (harness/data/draw_splits.py), never fetched


# --------------------------------------------------------------------------------------------- parsing

def parse_split_bytes(data: bytes, source: str | Path = "<bytes>") -> list[Entry]:
    """Parse the raw bytes of a split file (UTF-8; empty lines dropped; exactly two fields a line)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"split file {source} is not valid UTF-8 (byte {exc.start}): {exc.reason}") from None
    entries: list[Entry] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            shown = line if len(line) <= 200 else line[:200] + "..."
            raise DataError(
                f"split file {source}, line {lineno}: expected exactly two fields "
                f"'<image relpath> <mask relpath>', got {len(fields)}: {shown!r}")
        entries.append((fields[0], fields[1]))
    return entries


def read_split_file(path: str | Path) -> list[Entry]:
    """Entries ``(image relpath, mask relpath)`` of a split file, in file order."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"split file {path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read split file {path}: {exc}") from None
    return parse_split_bytes(data, path)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob_id(data: bytes) -> str:
    """The id git gives a file with these bytes (``git hash-object``): SHA-1 of ``b"blob <size>\\0" + data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def pin_mismatch(data: bytes, split: SplitFile) -> str | None:
    """None if ``data`` are the bytes ``split`` pins, else what they are instead ("SHA-256 ..., expected ...")."""
    if split.sha256 is not None:
        actual = sha256_bytes(data)
        return None if actual == split.sha256 else f"SHA-256 {actual}, expected {split.sha256}"
    actual = git_blob_id(data)
    return None if actual == split.git_blob else f"git blob id {actual}, expected {split.git_blob}"


def read_sha256sums(path: str | Path) -> dict[str, str]:
    """``{relpath: digest}`` from a ``sha256sum``-format file (``<hex>  ./<relpath>``)."""
    path = Path(path)
    out: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise DataError(f"{path}, line {lineno}: expected '<sha256>  <path>', got {line!r}")
        rel = parts[1].strip().lstrip("*")
        if rel.startswith("./"):
            rel = rel[2:]
        out[rel] = parts[0].lower()
    return out


# ---------------------------------------------------------------------------------------- verification

def verify_split(split_root: str | Path, split: SplitFile, origin: str = "") -> list[Entry]:
    """Read ``split_root/split.path``, check its SHA-256 and entry count against the protocol; return entries.
    ``origin`` names where the pinned copy comes from (default: UniMatch's ``splits/`` at the pinned commit)."""
    path = Path(split_root) / split.path
    origin = origin or splits_origin(UNIMATCH_SPLITS)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"split file {path} does not exist (split root {split_root}); pass --splits-dir pointing at a copy of "
            f"the splits/ folder of {origin}, set HARNESS_SPLITS, or unset both to fetch them into the cache") from None
    except OSError as exc:
        raise DataError(f"cannot read split file {path}: {exc}") from None
    wrong = pin_mismatch(data, split)
    if wrong:
        raise DataError(
            f"split file {path} has {wrong}: it is not the pinned copy "
            f"({origin}, {split.path}). Replace it with the "
            f"original file (delete it if it is in the harness cache and it will be fetched again), or point "
            f"--splits-dir / HARNESS_SPLITS at an unmodified copy")
    entries = parse_split_bytes(data, path)
    if len(entries) != split.count:
        raise DataError(f"split file {path} has {len(entries)} entries, the protocol expects {split.count}")
    check_unique(entries, path)
    return entries


def check_unique(entries: Sequence[Entry], source: str | Path, show: int = 5) -> None:
    """An image listed twice in one split file is a DataError naming the images and their lines."""
    lines: dict[str, list[int]] = {}
    for lineno, (image, _) in enumerate(entries, start=1):
        lines.setdefault(image, []).append(lineno)
    dup = [(image, at) for image, at in lines.items() if len(at) > 1]
    if dup:
        shown = "; ".join(f"{image} (entries {', '.join(map(str, at))})" for image, at in dup[:show])
        more = f" and {len(dup) - show} more" if len(dup) > show else ""
        raise DataError(f"split file {source} lists {len(dup)} image(s) more than once: {shown}{more}. Each image "
                        f"must be listed once (a repeated one is trained or evaluated on more often than the others); "
                        f"remove the repeated entries, then update the protocol's sha256 and count for this file")


def check_disjoint(labeled: Sequence[Entry], unlabeled: Sequence[Entry], source_names: Sequence[str] = ("labeled", "unlabeled"),
                   show: int = 5) -> None:
    """A labeled/unlabeled overlap (same image path) is a DataError naming both files and some shared entries."""
    lab = {e[0] for e in labeled}
    common = sorted(lab.intersection(e[0] for e in unlabeled))
    if common:
        a, b = (list(source_names) + ["labeled", "unlabeled"])[:2]
        more = f" (and {len(common) - show} more)" if len(common) > show else ""
        raise DataError(
            f"split files {a} and {b} overlap in {len(common)} image(s): {', '.join(common[:show])}{more}; "
            f"a labeled image must not also be in the unlabeled list")


def protocol_split_files(protocol: Protocol) -> list[SplitFile]:
    """The protocol's split files: labeled, unlabeled (if any), val, selection (if any)."""
    s = protocol.splits
    return [f for f in (s.labeled, s.unlabeled, s.val, s.selection) if f is not None]


def load_protocol_splits(protocol: Protocol, split_root: str | Path) -> dict[str, list[Entry] | None]:
    """Verified entries ``{'labeled', 'unlabeled' (None if absent), 'val', 'selection' (None if absent)}``;
    labeled/unlabeled checked disjoint, val disjoint from every training list, the selection list disjoint from the
    labeled list and from val (its images may be in the unlabeled list: no method reads an unlabeled label)."""
    s = protocol.splits
    dataset = get_dataset(protocol)
    origin = (dataset.splits_origin if dataset.split_root is None
              else f"the split folder of the {dataset.name} data root, as its generator wrote it")
    out: dict[str, list[Entry] | None] = {
        "labeled": verify_split(split_root, s.labeled, origin),
        "unlabeled": verify_split(split_root, s.unlabeled, origin) if s.unlabeled is not None else None,
        "val": verify_split(split_root, s.val, origin),
        "selection": verify_split(split_root, s.selection, origin) if s.selection is not None else None,
    }
    root = Path(split_root)
    if out["unlabeled"] is not None:
        check_disjoint(out["labeled"], out["unlabeled"], (str(root / s.labeled.path), str(root / s.unlabeled.path)))
    for name, train in (("labeled", s.labeled), ("unlabeled", s.unlabeled)):
        if train is not None:
            check_not_evaluated(out[name], out["val"], str(root / train.path), str(root / s.val.path))
    if out["selection"] is not None:
        check_selection(out["selection"], out["labeled"], out["val"], str(root / s.selection.path),
                        str(root / s.labeled.path), str(root / s.val.path))
    return out


def check_selection(selection: Sequence[Entry], labeled: Sequence[Entry], val: Sequence[Entry], selection_name: str,
                    labeled_name: str, val_name: str, show: int = 5) -> None:
    """A selection image that is labeled for training or in val is a DataError naming both files: a checkpoint
    chosen on it would be chosen on images the run fits, or on the set it is reported on."""
    chosen = {e[0] for e in selection}
    for other, name, why in ((labeled, labeled_name, "the run trains on their labels"),
                             (val, val_name, "the reported number would be selected on the set it is reported on")):
        common = sorted(chosen.intersection(e[0] for e in other))
        if common:
            more = f" (and {len(common) - show} more)" if len(common) > show else ""
            raise DataError(f"selection list {selection_name} and {name} share {len(common)} image(s): "
                            f"{', '.join(common[:show])}{more}; the selection split must be held out from both "
                            f"({why}). Draw it again outside them, then update the protocol's sha256 and count")


def check_not_evaluated(train: Sequence[Entry], val: Sequence[Entry], train_name: str, val_name: str,
                        show: int = 5) -> None:
    """A validation image that is also in a training list is a DataError naming both files and the images:
    the run would be scored on images it trained on."""
    common = sorted({e[0] for e in val}.intersection(e[0] for e in train))
    if common:
        more = f" (and {len(common) - show} more)" if len(common) > show else ""
        raise DataError(
            f"validation list {val_name} and training list {train_name} share {len(common)} image(s): "
            f"{', '.join(common[:show])}{more}. An image the run trains on must not be one it is evaluated on (its "
            f"score would be inflated); remove them from one of the lists, then update the protocol's sha256 and "
            f"count for that file")


def verify_protocol_splits(protocol: Protocol, split_root: str | Path) -> dict[str, list[Entry] | None]:
    """Check every split file of ``protocol`` (checksum, count, labeled/unlabeled disjoint) before a run."""
    return load_protocol_splits(protocol, split_root)


# ------------------------------------------------------------------------------------ split root / fetch

def cache_root() -> Path:
    env = os.environ.get("HARNESS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "harness"


def default_splits_cache(commit: str = UNIMATCH_COMMIT) -> Path:
    """The cache folder of one source repository's split lists (one folder per pinned commit)."""
    return cache_root() / "splits" / commit


def resolve_split_root(protocol: Protocol, splits_dir: str | Path | None = None, data_root: str | Path | None = None,
                       fetch: bool = True) -> Path:
    """The folder the protocol's split paths are relative to (see the module docstring for the order).

    With the cache (no ``splits_dir``, no ``HARNESS_SPLITS``), missing or corrupt files are fetched when
    ``fetch`` is true. The files themselves are verified later by :func:`verify_split`.
    """
    dataset = get_dataset(protocol)
    if dataset.split_root is not None:
        if data_root is None:
            raise DataError(f"protocol {protocol.id} uses the {dataset.name} dataset: its split lists live with its "
                            f"data; pass --data-root")
        root = dataset.split_root(Path(data_root))
        if not root.is_dir():
            raise DataError(f"split folder {root} of the {dataset.name} dataset does not exist: {data_root} is not a "
                            f"complete {dataset.name} root ({dataset.description}); pass the right --data-root")
        return root
    if splits_dir is not None or os.environ.get("HARNESS_SPLITS"):
        root = Path(splits_dir if splits_dir is not None else os.environ["HARNESS_SPLITS"]).expanduser()
        how = "--splits-dir" if splits_dir is not None else "HARNESS_SPLITS"
        if not root.is_dir():
            raise DataError(f"split folder {root} (from {how}) does not exist; it must be a copy of the splits/ "
                            f"folder of {dataset.splits_origin}")
        return root
    root = default_splits_cache(dataset.splits_repo[1])
    if fetch:
        files = protocol_split_files(protocol)
        drawn = [f for f in files if f.path.startswith(DRAWN_PREFIX)]
        fetch_splits(root, [f for f in files if f not in drawn], default_url=dataset.splits_url,
                     origin=dataset.splits_origin)
        missing = [f.path for f in drawn if not (root / f.path).is_file()]
        if missing:  # drawn lists exist only where they were drawn: there is nothing to download
            raise DataError(f"protocol {protocol.id} uses drawn split lists (harness data draw-splits, not the "
                            f"published ones) that are not in the split cache {root}: {', '.join(missing[:3])}. "
                            f"Draw them there with `harness data draw-splits`, or pass --splits-dir (HARNESS_SPLITS) "
                            f"naming the folder they were drawn into")
    return root


def _splits_base_url(base_url: str | None, default_url: str = DEFAULT_SPLITS_URL) -> str:
    url = base_url or os.environ.get("HARNESS_SPLITS_URL") or default_url
    return url if url.endswith("/") else url + "/"


def fetch_splits(dest: str | Path, files: Iterable[SplitFile], base_url: str | None = None,
                 default_url: str = DEFAULT_SPLITS_URL, origin: str = "") -> list[Path]:
    """Download the split files not already present with the right checksum into ``dest``.

    From ``base_url``, else ``$HARNESS_SPLITS_URL``, else ``default_url`` (the dataset's source repository;
    ``origin`` names it in errors). Each download is verified before it is moved into place (temporary
    file + ``os.replace``), so ``dest`` never holds a partial or corrupt file. Returns the paths fetched.
    """
    dest = Path(dest)
    base = _splits_base_url(base_url, default_url)
    origin = origin or splits_origin(UNIMATCH_SPLITS)
    fetched = []
    for f in files:
        target = dest / f.path
        if target.is_file():
            try:
                if pin_mismatch(target.read_bytes(), f) is None:
                    continue
            except OSError:
                pass
        url = base + urllib.parse.quote(f.path)
        try:
            with urllib.request.urlopen(url, timeout=_FETCH_TIMEOUT_S) as resp:
                data = resp.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(
                f"cannot download split file {f.path} from {url}: {reason}. Without network access, pass "
                f"--splits-dir DIR or set HARNESS_SPLITS=DIR, DIR being a copy of the splits/ folder of "
                f"{origin}") from None
        wrong = pin_mismatch(data, f)
        if wrong:
            raise DataError(
                f"downloaded split file {f.path} from {url} has {wrong}; it was not "
                f"saved. Check HARNESS_SPLITS_URL, or pass --splits-dir / set HARNESS_SPLITS to a verified copy")
        atomic_write_bytes(target, data)
        fetched.append(target)
    return fetched

