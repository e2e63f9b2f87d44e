"""Split lists: parsing, checksums against the shared reference files, fetching, disjointness."""

from __future__ import annotations

import shutil
import subprocess

import pydantic
import pytest

from harness.data.splits import (check_disjoint, fetch_splits, git_blob_id, load_protocol_splits, parse_split_bytes,
                                 read_sha256sums, read_split_file, resolve_split_root, verify_split)
from harness.errors import DataError
from harness.protocols import SplitFile
from harness.records import sha256_file
from tests.data.layouts import make_protocol, write_split_file

# entries per file (benchmarks spec §3)
COUNTS = {
    "pascal/train_aug.txt": 10582, "pascal/val.txt": 1449, "cityscapes/val.txt": 500,
    "pascal/92/labeled.txt": 92, "pascal/92/unlabeled.txt": 10490, "pascal/183/labeled.txt": 183,
    "pascal/183/unlabeled.txt": 10399, "pascal/366/labeled.txt": 366, "pascal/366/unlabeled.txt": 10216,
    "pascal/732/labeled.txt": 732, "pascal/732/unlabeled.txt": 9850, "pascal/1464/labeled.txt": 1464,
    "pascal/1464/unlabeled.txt": 9118,
    **{f"pascal/{f}/labeled.txt": n for f, n in [("1_16", 662), ("1_8", 1323), ("1_4", 2646), ("u2pl_1_16", 662),
                                                  ("u2pl_1_8", 1323), ("u2pl_1_4", 2646)]},
    **{f"pascal/{f}/unlabeled.txt": n for f, n in [("1_16", 9920), ("1_8", 9259), ("1_4", 7936), ("u2pl_1_16", 9920),
                                                    ("u2pl_1_8", 9259), ("u2pl_1_4", 7936)]},
    **{f"cityscapes/{f}/labeled.txt": n for f, n in [("1_16", 186), ("1_8", 372), ("1_4", 744), ("1_2", 1488),
                                                      ("1_30", 100)]},
    **{f"cityscapes/{f}/unlabeled.txt": n for f, n in [("1_16", 2789), ("1_8", 2603), ("1_4", 2231), ("1_2", 1487),
                                                        ("1_30", 2875)]},
}


def _spec(root, rel, sums):
    return SplitFile(path=rel, sha256=sums[rel], count=COUNTS[rel])


# ------------------------------------------------------------------------------------------------ parsing

def test_parse_with_and_without_final_newline():
    a = parse_split_bytes(b"x/1.jpg y/1.png\nx/2.jpg y/2.png\n")
    b = parse_split_bytes(b"x/1.jpg y/1.png\nx/2.jpg y/2.png")
    assert a == b == [("x/1.jpg", "y/1.png"), ("x/2.jpg", "y/2.png")]
    assert parse_split_bytes(b"\n\nx/1.jpg y/1.png\n\n") == [("x/1.jpg", "y/1.png")]


def test_shared_92_has_92_entries_without_final_newline(shared_splits):
    path = shared_splits / "pascal/92/labeled.txt"
    raw = path.read_bytes()
    assert not raw.endswith(b"\n") and raw.count(b"\n") == 91
    entries = read_split_file(path)
    assert len(entries) == 92
    img, mask = entries[0]
    assert img.startswith("JPEGImages/") and mask.startswith("SegmentationClass/")


def test_bad_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"a.jpg a.png\nb.jpg\nc.jpg c.png\n")
    with pytest.raises(DataError, match=r"bad\.txt, line 2: expected exactly two fields"):
        read_split_file(p)
    p.write_bytes(b"a.jpg a.png extra\n")
    with pytest.raises(DataError, match="line 1"):
        read_split_file(p)
    p.write_bytes(b"a\xff.jpg a.png\n")
    with pytest.raises(DataError, match="not valid UTF-8"):
        read_split_file(p)


# ---------------------------------------------------------------------------------------------- checksums

def test_all_shared_files_match_sha256sums(shared_splits):
    sums = read_sha256sums(shared_splits / "SHA256SUMS")
    assert set(COUNTS) <= set(sums)  # the 35 lists of the shipped protocols (more datasets may be added)
    for rel in sums:
        if rel in COUNTS:
            assert len(verify_split(shared_splits, _spec(shared_splits, rel, sums))) == COUNTS[rel]
        else:  # its count is whatever the file holds; the checksum must still match
            count = len(parse_split_bytes((shared_splits / rel).read_bytes()))
            verify_split(shared_splits, SplitFile(path=rel, sha256=sums[rel], count=count))


def test_tampered_copy_fails(shared_splits, tmp_path):
    sums = read_sha256sums(shared_splits / "SHA256SUMS")
    rel = "pascal/92/labeled.txt"
    copy = tmp_path / rel
    copy.parent.mkdir(parents=True)
    data = (shared_splits / rel).read_bytes()
    copy.write_bytes(data + b"\n")  # one extra newline: same entries, different bytes
    spec = _spec(shared_splits, rel, sums)
    with pytest.raises(DataError) as exc:
        verify_split(tmp_path, spec)
    msg = str(exc.value)
    assert str(copy) in msg and spec.sha256 in msg and sha256_file(copy) in msg and "--splits-dir" in msg


def test_count_mismatch(tmp_path):
    write_split_file(tmp_path / "l.txt", [("a.jpg", "a.png")])
    spec = SplitFile(path="l.txt", sha256=sha256_file(tmp_path / "l.txt"), count=2)
    with pytest.raises(DataError, match="has 1 entries, the protocol expects 2"):
        verify_split(tmp_path, spec)


# ------------------------------------------------------------------------------------ pinned by git blob id

def test_git_blob_id_is_what_git_computes(tmp_path):
    for data in (b"", b"a.jpg a.png\n", bytes(range(256)) * 3):
        (tmp_path / "f").write_bytes(data)
        git = subprocess.run(["git", "hash-object", str(tmp_path / "f")], capture_output=True, text=True, check=True)
        assert git_blob_id(data) == git.stdout.strip()


def test_git_blob_id_of_a_shared_list_is_its_blob_in_unimatch_v2s_tree(shared_splits):
    # `git ls-tree` of UniMatch V2 at f6afb4dfca2d gives splits/coco/1_512/labeled.txt this blob (the same id
    # pins the unlabeled lists, whose bytes are not in the shared copy)
    assert git_blob_id((shared_splits / "coco/1_512/labeled.txt").read_bytes()) == \
        "682578a8abd3c14622fa228c77e2ad602281b867"


def test_a_split_pinned_by_git_blob_is_verified_and_fetched_by_it(tmp_path):
    src = tmp_path / "src"
    write_split_file(src / "u.txt", [("a.jpg", "a.png"), ("b.jpg", "b.png")])
    data = (src / "u.txt").read_bytes()
    spec = SplitFile(path="u.txt", git_blob=git_blob_id(data), count=2)
    assert spec.pin == f"git-blob:{spec.git_blob}"
    dest = tmp_path / "dest"
    assert fetch_splits(dest, [spec], base_url=src.as_uri()) == [dest / "u.txt"]
    assert [e[0] for e in verify_split(dest, spec)] == ["a.jpg", "b.jpg"]
    assert fetch_splits(dest, [spec], base_url=src.as_uri()) == []  # a verified copy is not fetched again
    other = data + b"\n"  # the same entries, other bytes: not the pinned file
    (dest / "u.txt").write_bytes(other)
    with pytest.raises(DataError) as exc:
        verify_split(dest, spec)
    assert f"git blob id {git_blob_id(other)}, expected {spec.git_blob}" in str(exc.value)
    (src / "u.txt").write_bytes(b"c.jpg c.png\n")
    with pytest.raises(DataError, match=f"expected {spec.git_blob}; it was not saved"):
        fetch_splits(tmp_path / "fresh", [spec], base_url=src.as_uri())
    assert not (tmp_path / "fresh" / "u.txt").exists()


@pytest.mark.parametrize("pins", [{}, {"sha256": "0" * 64, "git_blob": "0" * 40}])
def test_a_split_names_exactly_one_pin(pins):
    with pytest.raises(pydantic.ValidationError, match="exactly one of 'sha256'"):
        SplitFile(path="u.txt", count=1, **pins)


# ------------------------------------------------------------------------------------------ root / fetch

def _shared_protocol(shared_splits, tmp_path, lab="pascal/92/labeled.txt", unl="pascal/92/unlabeled.txt",
                     val="pascal/val.txt"):
    return make_protocol(shared_splits, labeled=lab, unlabeled=unl, val=val)


def test_fetch_via_file_url_into_cache(shared_splits, tmp_path, monkeypatch):
    proto = _shared_protocol(shared_splits, tmp_path)
    monkeypatch.setenv("HARNESS_SPLITS_URL", shared_splits.as_uri())
    root = resolve_split_root(proto)
    assert root == tmp_path / "harness-cache" / "splits" / "0324f3dd4a22128105a5eb135d2586c0bb3cc647"
    for rel in ("pascal/92/labeled.txt", "pascal/92/unlabeled.txt", "pascal/val.txt"):
        assert (root / rel).read_bytes() == (shared_splits / rel).read_bytes()
    assert not list(root.rglob("*.tmp"))
    splits = load_protocol_splits(proto, root)
    assert len(splits["labeled"]) == 92 and len(splits["unlabeled"]) == 10490 and len(splits["val"]) == 1449
    # a corrupted cached file is replaced by a fresh download
    (root / "pascal/val.txt").write_bytes(b"junk")
    resolve_split_root(proto)
    assert sha256_file(root / "pascal/val.txt") == proto.splits.val.sha256


def test_fetch_network_failure_says_how_to_fix(shared_splits, tmp_path, monkeypatch):
    proto = _shared_protocol(shared_splits, tmp_path)
    monkeypatch.setenv("HARNESS_SPLITS_URL", (tmp_path / "nowhere").as_uri())
    with pytest.raises(DataError) as exc:
        resolve_split_root(proto)
    assert "--splits-dir" in str(exc.value) and "HARNESS_SPLITS" in str(exc.value)


def test_fetch_refuses_corrupt_download(shared_splits, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(shared_splits / "pascal" / "92", src / "pascal" / "92")
    (src / "pascal/92/labeled.txt").write_bytes(b"a.jpg a.png\n")
    sums = read_sha256sums(shared_splits / "SHA256SUMS")
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="expected " + sums["pascal/92/labeled.txt"]):
        fetch_splits(dest, [_spec(shared_splits, "pascal/92/labeled.txt", sums)], base_url=src.as_uri())
    assert not (dest / "pascal/92/labeled.txt").exists()
    assert not [p for p in dest.rglob("*") if p.is_file()]


def test_explicit_dir_env_and_synthetic(shared_splits, tmp_path, monkeypatch):
    proto = _shared_protocol(shared_splits, tmp_path)
    assert resolve_split_root(proto, splits_dir=shared_splits) == shared_splits
    monkeypatch.setenv("HARNESS_SPLITS", str(shared_splits))
    assert resolve_split_root(proto) == shared_splits
    assert resolve_split_root(proto, splits_dir=tmp_path) == tmp_path  # the argument wins over the env
    with pytest.raises(DataError, match="does not exist"):
        resolve_split_root(proto, splits_dir=tmp_path / "missing")
    syn = proto.model_copy(update={"dataset": "synthetic"})
    (tmp_path / "data" / "splits").mkdir(parents=True)
    assert resolve_split_root(syn, splits_dir=shared_splits, data_root=tmp_path / "data") == tmp_path / "data" / "splits"
    with pytest.raises(DataError, match="--data-root"):
        resolve_split_root(syn)


# ----------------------------------------------------------------------------------------------- disjoint

def test_shared_pairs_are_disjoint(shared_splits):
    for fam in ("92", "1_16", "u2pl_1_4"):
        lab = read_split_file(shared_splits / f"pascal/{fam}/labeled.txt")
        unl = read_split_file(shared_splits / f"pascal/{fam}/unlabeled.txt")
        check_disjoint(lab, unl, ("labeled", "unlabeled"))
        assert len({e[0] for e in lab} | {e[0] for e in unl}) == 10582


def test_overlap_names_files_and_entries():
    lab = [("JPEGImages/a.jpg", "S/a.png"), ("JPEGImages/b.jpg", "S/b.png")]
    unl = [("JPEGImages/b.jpg", "S/b.png"), ("JPEGImages/c.jpg", "S/c.png")]
    with pytest.raises(DataError) as exc:
        check_disjoint(lab, unl, ("x/labeled.txt", "x/unlabeled.txt"))
    msg = str(exc.value)
    assert "x/labeled.txt" in msg and "x/unlabeled.txt" in msg and "JPEGImages/b.jpg" in msg and "1 image" in msg


def test_ade20k_lists_come_from_unimatch_v2(shared_splits, tmp_path, monkeypatch):
    """A dataset's lists are fetched from its own source repository into a cache folder of that commit."""
    import io

    import harness.data.splits as splits_mod
    from harness.plugins import get_plugin_manager

    proto = get_plugin_manager().protocols.get("ade20k-316")
    urls = []

    def urlopen(url, timeout):
        urls.append(url)
        return io.BytesIO((shared_splits / url.split("/splits/", 1)[1]).read_bytes())

    monkeypatch.setattr(splits_mod.urllib.request, "urlopen", urlopen)
    root = resolve_split_root(proto)
    commit = "f6afb4dfca2d9dcbcee2307e97717954ca75c0ba"
    assert root == tmp_path / "harness-cache" / "splits" / commit
    assert sorted(urls) == [f"https://raw.githubusercontent.com/LiheYoung/UniMatch-V2/{commit}/splits/ade20k/{rel}"
                            for rel in ("1_64/labeled.txt", "1_64/unlabeled.txt", "val.txt")]
    splits = load_protocol_splits(proto, root)
    assert (len(splits["labeled"]), len(splits["unlabeled"]), len(splits["val"])) == (316, 19894, 2000)
    (root / "ade20k" / "val.txt").write_bytes(b"images/validation/a.jpg annotations/validation/a.png\n")
    with pytest.raises(DataError, match=r"not the pinned copy \(github.com/LiheYoung/UniMatch-V2 at f6afb4dfca2d"):
        load_protocol_splits(proto, root)
