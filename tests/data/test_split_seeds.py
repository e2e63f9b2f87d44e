"""Split seeds and the selection split of the synthetic set: deterministic, checksummed, disjoint from val and from
the selection split, the right counts; the shipped split-seed protocols match the generator; older roots get the
lists on first use."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data import split_seeds as ss
from harness.data import synthetic as syn
from harness.data.splits import load_protocol_splits
from harness.errors import DataError
from harness.protocols import load_protocol_file

REPO = Path(__file__).resolve().parents[2]
PROTOCOLS = REPO / "harness" / "resources" / "protocols"
SMALL = dict(num_train=60, num_val=12, labeled_counts=(6, 12), selection_count=10, split_seeds=(1, 2, 3))


def _ids(path: Path) -> list[str]:
    return [Path(line.split()[0]).stem for line in path.read_text().splitlines() if line]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return syn.generate(tmp_path_factory.mktemp("seeds") / "v", **SMALL)


def test_draws_are_deterministic_and_depend_on_the_seed():
    pool = [f"img{i:03d}" for i in range(50)]
    a, _ = ss.draw_split_seed(pool, (5, 10), 1, (7, 3))
    b, _ = ss.draw_split_seed(list(reversed(pool)), (10, 5), 1, (7, 3))  # the pool's order does not matter
    c, _ = ss.draw_split_seed(pool, (5, 10), 2, (7, 3))
    assert a == b and a != c
    assert set(a[5]) <= set(a[10]) and len(a[5]) == 5 and len(a[10]) == 10  # nested, right counts
    assert ss.draw_selection(pool, 8, (7, 3)) == ss.draw_selection(sorted(pool, reverse=True), 8, (7, 3))
    # the acceptance rule redraws: refuse every draw that holds img000
    drawn, attempt = ss.draw_split_seed(pool, (25,), 1, (7, 3), accept=lambda ids: "img000" not in ids)
    assert "img000" not in drawn[25] and attempt >= 0
    with pytest.raises(DataError, match="at most 50"):
        ss.draw_selection(pool, 51, (7, 3))
    with pytest.raises(DataError, match="between 1 and the 50"):
        ss.draw_split_seed(pool, (60,), 1, (7, 3))


def test_generated_lists_counts_disjointness_and_checksums(root):
    sp = root / "splits"
    m = json.loads((root / "manifest.json").read_text())
    train, val = set(_ids(sp / "train.txt")), set(_ids(sp / "val.txt"))
    selection = _ids(sp / "selection.txt")
    assert len(selection) == 10 == m["selection_count"] and set(selection) <= train and not set(selection) & val
    assert not set(selection) & set(_ids(sp / "12" / "labeled.txt"))  # outside the largest standard list
    assert m["split_seeds"] == [1, 2, 3]
    draws = []
    for k in (1, 2, 3):
        previous: set[str] = set()
        for n in (6, 12):
            lab, unl = _ids(sp / f"seed{k}" / str(n) / "labeled.txt"), _ids(sp / f"seed{k}" / str(n) / "unlabeled.txt")
            assert len(lab) == n and len(unl) == len(train) - n and set(lab) | set(unl) == train
            assert not set(lab) & set(unl) and not set(lab) & set(selection) and not set(lab) & val
            assert previous <= set(lab)
            previous = set(lab)
            present = set()
            for i in lab[:n]:
                with Image.open(root / "SegmentationClass" / f"{i}.png") as im:
                    present |= syn.classes_present(np.asarray(im))
            assert present == set(range(1, syn.NUM_CLASSES))  # every class, as the standard lists
        draws.append(frozenset(_ids(sp / f"seed{k}" / "6" / "labeled.txt")))
    assert len(set(draws)) == 3  # independent draws differ
    for rel, entry in m["splits"].items():  # checksummed in the manifest
        assert hashlib.sha256((sp / rel).read_bytes()).hexdigest() == entry["sha256"], rel
    assert {k: v for k, v in m["splits"].items()} == syn.split_checksums(**SMALL)  # without writing images


def test_small_protocols_verify_and_refuse_a_selection_overlap(tmp_path):
    root = syn.generate(tmp_path / "one", num_train=40, num_val=8, labeled_counts=(6,), selection_count=8,
                        split_seeds=(1, 2, 3))
    path = tmp_path / "p.yaml"
    path.write_text(syn.small_protocols_yaml(root, "sm", {"iterations": 4, "batch_labeled": 2, "batch_unlabeled": 2,
                                                          "lr": 0.01, "head_lr_mult": 1, "weight_decay": 0},
                                             split_seeds=True))
    protocols = {p.id: p for p in load_protocol_file(path)}
    assert sorted(protocols) == ["sm-6", "sm-6-split1", "sm-6-split2", "sm-6-split3"]
    assert protocols["sm-6-split2"].split_of == "sm-6" and protocols["sm-6-split2"].split_seed == 2
    out = load_protocol_splits(protocols["sm-6-split2"], root / "splits")
    assert len(out["selection"]) == 8 and len(out["labeled"]) == 6
    # a selection list that shares an image with the labeled list is refused, naming both files
    bad = tmp_path / "splits"
    shutil.copytree(root / "splits", bad)
    (bad / "selection.txt").write_bytes((bad / "seed2" / "6" / "labeled.txt").read_bytes())
    p = protocols["sm-6-split2"]
    sel = p.splits.selection.model_copy(update={"sha256": hashlib.sha256((bad / "selection.txt").read_bytes())
                                                .hexdigest(), "count": 6})
    p = p.model_copy(update={"splits": p.splits.model_copy(update={"selection": sel})})
    with pytest.raises(DataError, match="selection list .* share 6 image"):
        load_protocol_splits(p, bad)


def test_an_older_root_gets_the_same_lists_on_first_use(root, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(root, old)
    m = json.loads((old / "manifest.json").read_text())
    for rel in [r for r in m["splits"] if r == "selection.txt" or r.startswith("seed")]:
        (old / "splits" / rel).unlink()
        del m["splits"][rel]
    del m["split_seeds"], m["selection_count"]
    (old / "manifest.json").write_text(json.dumps(m))
    # with the benchmark's selection size this small root has no room: nothing is drawn
    assert syn.ensure_seed_splits(old) == []
    written = syn.ensure_seed_splits(old, selection_count=10, split_seeds=(1, 2, 3))
    assert len(written) == 1 + 3 * 2 * 2
    for path in written:  # drawn from the masks, byte for byte what a generation writes
        assert path.read_bytes() == (root / path.relative_to(old)).read_bytes()
    assert syn.ensure_seed_splits(old, selection_count=10, split_seeds=(1, 2, 3)) == []  # then nothing to do
    # the protocol file's checksums are rewritten from the lists an older root got (its manifest does not list them)
    text = "  labeled: {path: seed2/6/labeled.txt, sha256: " + "0" * 64 + ", count: 1}\n"
    (tmp_path / "p.yaml").write_text(text)
    syn.write_protocol_file(tmp_path / "p.yaml", old)
    want = hashlib.sha256((root / "splits" / "seed2" / "6" / "labeled.txt").read_bytes()).hexdigest()
    assert (tmp_path / "p.yaml").read_text() == text.replace("0" * 64, want).replace("count: 1", "count: 6")


@pytest.fixture(scope="module")
def default_checksums() -> dict:
    return syn.split_checksums()  # renders only the masks the draws look at


@pytest.mark.parametrize("name, base, family", [("synthetic-splits.yaml", "synthetic", "synthetic-split-seeds"),
                                                ("synthetic-pt-splits.yaml", "synthetic-pt",
                                                 "synthetic-pt-split-seeds")])
def test_shipped_split_seed_protocols_match_the_generator(default_checksums, name, base, family):
    protocols = load_protocol_file(PROTOCOLS / name)
    assert [p.id for p in protocols] == [f"{base}-{n}-split{k}" for n in syn.LABELED_COUNTS for k in syn.SPLIT_SEEDS]
    standard = {p.id: p for p in load_protocol_file(
        PROTOCOLS / ("synthetic.yaml" if base == "synthetic" else "synthetic-pretrained.yaml"))}
    for p in protocols:
        ref = standard[p.split_of]
        assert p.family == family and p.labeled_count == ref.labeled_count and p.split_seed in syn.SPLIT_SEEDS
        # the same settings as the standard protocol; only the lists (and the labels saying so) differ
        assert p.model_dump(exclude={"id", "description", "family", "splits", "split_of", "split_seed", "source"}) \
            == ref.model_dump(exclude={"id", "description", "family", "splits", "split_of", "split_seed", "source"})
        assert p.splits.selection == ref.splits.selection and p.splits.val == ref.splits.val
        for f in (p.splits.labeled, p.splits.unlabeled, p.splits.selection):
            assert (f.sha256, f.count) == (default_checksums[f.path]["sha256"], default_checksums[f.path]["count"])
    assert len({p.splits.labeled.sha256 for p in protocols}) == len(protocols)  # every draw is another list
