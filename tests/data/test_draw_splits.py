"""`harness data draw-splits`: VOC and Cityscapes split seeds drawn from the public train lists (the shared copy of
UniMatch's lists): deterministic, checksummed, the right counts, disjoint from val and from the selection split,
and labelled as not the published splits."""

from __future__ import annotations

import shutil

import pytest

from harness.cli import main
from harness.data.splits import load_protocol_splits
from harness.plugins import get_plugin_manager
from harness.protocols import load_protocol_file


@pytest.fixture
def splits_copy(shared_splits, tmp_path):
    dest = tmp_path / "splits"
    shutil.copytree(shared_splits, dest)  # draws are written next to the published lists: never into the shared copy
    return dest


@pytest.fixture(autouse=True)
def _fresh_registry():
    yield
    get_plugin_manager.cache_clear()


@pytest.mark.parametrize("preset, labeled, pool, train", [
    ("voc-classic", [92, 183, 366, 732], "pascal/1464/labeled.txt", 10582),
    ("cityscapes", [186, 372, 744, 1488], None, 2975)])
def test_draws_are_deterministic_disjoint_and_labelled(splits_copy, tmp_path, monkeypatch, capsys, preset, labeled,
                                                       pool, train):
    out = tmp_path / "protocols"
    argv = ["data", "draw-splits", "--preset", preset, "--seeds", "1", "2", "--splits-dir", str(splits_copy),
            "--out", str(out)]
    assert main(argv) == 0
    assert "NOT the published splits" in capsys.readouterr().out
    path = out / f"{preset}-drawn.yaml"
    first = {p: p.read_bytes() for p in sorted((splits_copy / "drawn").rglob("*.txt"))} | {path: path.read_bytes()}
    assert main(argv) == 0  # the same draws again, byte for byte
    again = {p: p.read_bytes() for p in sorted((splits_copy / "drawn").rglob("*.txt"))} | {path: path.read_bytes()}
    assert first == again and len(first) == 1 + 1 + 2 * len(labeled) * 2
    protocols = load_protocol_file(path)
    assert [p.labeled_count for p in protocols] == [n for n in labeled for _ in (1, 2)]
    monkeypatch.setenv("HARNESS_PROTOCOLS", str(out))
    get_plugin_manager.cache_clear()
    registry = get_plugin_manager().protocols
    lists_by_seed = {}
    for p in protocols:
        published = registry.get(p.split_of)
        assert p.id == f"{published.id}-drawn-split{p.split_seed}" and "NOT the published split" in p.description
        assert p.family == f"{published.family}-drawn" and p.budget == published.budget and p.model == published.model
        assert registry.get(p.id).splits == p.splits  # registered beside the published protocols
        lists = load_protocol_splits(p, splits_copy)  # checksums, counts; labeled/unlabeled, val, selection disjoint
        lab = {e[0] for e in lists["labeled"]}
        assert len(lab) + len(lists["unlabeled"]) == train and len(lists["selection"]) == 200
        assert lab != {e[0] for e in load_protocol_splits(published, splits_copy)["labeled"]}  # not the published list
        if pool:
            fine = {line.split()[0] for line in (splits_copy / pool).read_text().splitlines() if line.strip()}
            assert lab <= fine and not {e[0] for e in lists["selection"]} & fine
        lists_by_seed.setdefault(p.split_seed, []).append(lab)
    for seed, nested in lists_by_seed.items():  # one seed's lists are nested
        assert all(a <= b for a, b in zip(nested, nested[1:]))
    assert lists_by_seed[1][0] != lists_by_seed[2][0]


def test_bad_seeds_are_refused(splits_copy, capsys):
    assert main(["data", "draw-splits", "--preset", "cityscapes", "--seeds", "0", "--splits-dir",
                 str(splits_copy)]) == 2
    assert "--seeds must be distinct whole numbers >= 1" in capsys.readouterr().err


def test_drawn_lists_are_never_fetched(splits_copy, tmp_path, monkeypatch):
    """Drawn lists exist only where they were drawn: a split cache without them is a clear error, not a download
    from the published repository."""
    from harness.data.splits import resolve_split_root
    from harness.errors import DataError

    out = tmp_path / "protocols"
    assert main(["data", "draw-splits", "--preset", "cityscapes", "--seeds", "1", "--splits-dir", str(splits_copy),
                 "--out", str(out)]) == 0
    p = load_protocol_file(out / "cityscapes-drawn.yaml")[0]
    cache = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    monkeypatch.setenv("HARNESS_SPLITS_URL", splits_copy.as_uri() + "/")  # the published lists come from here
    with pytest.raises(DataError, match="drawn split lists .* not in the split cache"):
        resolve_split_root(p, None)
    assert (cache / "splits").exists() and not list((cache / "splits").rglob("drawn"))
    # without --splits-dir, draw-splits fetches every published list it reads into the cache, then draws there
    assert main(["data", "draw-splits", "--preset", "voc-classic", "--seeds", "1", "--out", str(out)]) == 0
    drawn = load_protocol_file(out / "voc-classic-drawn.yaml")
    root = resolve_split_root(drawn[0], None)
    assert all(load_protocol_splits(q, root)["selection"] for q in drawn)
