"""ADE20K: the reader on real files in the official layout, the label shift, the checks, the shipped protocols."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data import ADE20K_CLASSES, SegmentationSource, check_dataset_root, get_dataset, make_layout
from harness.data.splits import read_split_file, verify_protocol_splits
from harness.errors import DataError
from harness.plugins import get_plugin_manager
from tests.data.layouts import save_grey_png, write_ade20k_tree, write_pairs, write_split_file


def test_registered_with_150_classes():
    ds = get_dataset("ade20k")
    assert ds.num_classes == 150 and ds.class_names == ADE20K_CLASSES
    assert ADE20K_CLASSES[0] == "wall" and ADE20K_CLASSES[-1] == "flag" and len(set(ADE20K_CLASSES)) == 150
    assert ds.root_env == "HARNESS_DATA_ADE20K" and ds.splits_repo[0] == "LiheYoung/UniMatch-V2"


def test_masks_shift_by_one_and_ignore_other(tmp_path):
    entries = write_ade20k_tree(tmp_path, "validation", n=1)
    raw = np.array([[0, 1, 2], [150, 75, 0]], dtype=np.uint8)
    write_pairs(tmp_path, entries, {entries[0][1]: np.kron(raw, np.ones((12, 20), dtype=np.uint8))}, (24, 60))
    src = SegmentationSource(tmp_path, entries, 150, "ade20k", split_name="val.txt")
    img, mask = src.read(0)
    assert img.shape == (24, 60, 3)
    assert mask[0, 0] == 255 and mask[0, 20] == 0 and mask[0, 40] == 1
    assert mask[12, 0] == 149 and mask[12, 20] == 74 and mask[12, 40] == 255


def test_real_split_lines_check_clean(tmp_path, shared_splits):
    """The first lines of UniMatch V2's own lists, written as files in the layout they name, check clean."""
    entries = read_split_file(shared_splits / "ade20k" / "1_64" / "labeled.txt")[:2]
    entries += read_split_file(shared_splits / "ade20k" / "val.txt")[:2]
    rng = np.random.default_rng(0)
    masks = {m: rng.integers(0, 151, (20, 30), dtype=np.uint8) for _, m in entries}
    write_pairs(tmp_path / "ADEChallengeData2016", entries, masks, (20, 30))
    split = write_split_file(tmp_path / "splits" / "list.txt", entries)
    report = check_dataset_root("ade20k", tmp_path / "ADEChallengeData2016", [split])
    assert report.ok and report.checked == 8, report.format()
    with pytest.raises(DataError, match=r"does not look like an ADE20K root.*Did you mean .*ADEChallengeData2016"):
        make_layout("ade20k", tmp_path)


def test_already_reduced_mask_is_refused_with_hint(tmp_path):
    entries = write_ade20k_tree(tmp_path, "training", n=2)
    reduced = np.full((24, 40), 255, dtype=np.uint8)
    reduced[:12] = 0  # wall in an already-shifted copy, 255 its ignore value
    save_grey_png(tmp_path / entries[1][1], reduced)
    split = write_split_file(tmp_path / "l.txt", entries)
    report = check_dataset_root("ade20k", tmp_path, [split])
    assert not report.ok and len(report.unreadable) == 1
    path, why = report.unreadable[0]
    assert path.name == entries[1][1].split("/")[-1] and "[254]" in why and "already shifted" in why


def test_shipped_protocols_match_the_official_lists(shared_splits):
    every = [p for p in get_plugin_manager().protocols if p.dataset == "ade20k"]
    # the ResNet-101 protocols; the DINOv2 ones (ade20k-uv2-*) are checked in tests/core/test_uv2_protocols.py
    protocols = [p for p in every if p.model.backbone == "resnet101"]
    assert sorted(p.labeled_count for p in protocols) == [316, 631, 1263, 2526, 5052, 10105, 20210]
    assert all(p.id.startswith("ade20k-uv2-") for p in every if p not in protocols)
    for p in protocols:
        assert p.num_classes == 150 and tuple(p.class_names) == ADE20K_CLASSES
        assert p.crop_size == 518
        splits = verify_protocol_splits(p, shared_splits)  # SHA-256, counts, labeled/unlabeled disjoint
        if splits["unlabeled"] is not None:
            assert len(splits["labeled"]) + len(splits["unlabeled"]) == 20210
