"""COCO with UniMatch's 81-class masks: the reader on real files in that layout, and its checks."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data import COCO_CLASSES, SegmentationSource, check_dataset_root, get_dataset, make_layout
from harness.data.splits import read_split_file
from harness.errors import DataError
from tests.data.layouts import save_grey_png, write_coco_tree, write_pairs, write_split_file


def test_registered_with_81_classes():
    ds = get_dataset("coco")
    assert ds.num_classes == 81 and ds.class_names == COCO_CLASSES
    assert COCO_CLASSES[:3] == ("background", "person", "bicycle") and COCO_CLASSES[-1] == "toothbrush"
    assert len(set(COCO_CLASSES)) == 81 and ds.root_env == "HARNESS_DATA_COCO"


def test_masks_read_as_stored(tmp_path):
    entries = write_coco_tree(tmp_path, "val2017", ids=(139,))
    mask = np.zeros((24, 40), dtype=np.uint8)
    mask[:, 10:] = 80
    mask[:, 30:] = 255
    save_grey_png(tmp_path / entries[0][1], mask)
    src = SegmentationSource(tmp_path, entries, 81, "coco", split_name="val.txt")
    assert entries[0] == ("val2017/000000000139.jpg", "masks/000000000139.png")
    np.testing.assert_array_equal(src.read(0)[1], mask)


def test_real_split_lines_check_clean(tmp_path, shared_splits):
    entries = read_split_file(shared_splits / "coco" / "1_512" / "labeled.txt")[:2]
    entries += read_split_file(shared_splits / "coco" / "val.txt")[:2]
    rng = np.random.default_rng(1)
    masks = {m: rng.integers(0, 81, (20, 30), dtype=np.uint8) for _, m in entries}
    write_pairs(tmp_path, entries, masks, (20, 30))
    assert {e[0].split("/")[0] for e in entries} == {"train2017", "val2017"}
    report = check_dataset_root("coco", tmp_path, [write_split_file(tmp_path / "list.txt", entries)])
    assert report.ok and report.checked == 8, report.format()


def test_out_of_range_mask_and_wrong_root(tmp_path):
    entries = write_coco_tree(tmp_path / "root", "train2017", ids=(9, 25))
    stuff = np.full((24, 40), 120, dtype=np.uint8)  # a COCO-Stuff class id, not one of the 81
    save_grey_png(tmp_path / "root" / entries[0][1], stuff)
    report = check_dataset_root("coco", tmp_path / "root", [write_split_file(tmp_path / "l.txt", entries)])
    assert not report.ok and "[120]" in report.unreadable[0][1] and "COCO-Stuff" in report.unreadable[0][1]
    (tmp_path / "official" / "train2017").mkdir(parents=True)
    (tmp_path / "official" / "annotations").mkdir()
    with pytest.raises(DataError, match=r"missing folder\(s\) masks.*instance annotations"):
        make_layout("coco", tmp_path / "official")


@pytest.mark.parametrize("dataset", ["ade20k", "coco"])
def test_harness_data_check_on_a_protocol(tmp_path, monkeypatch, capsys, shared_splits, dataset):
    """`harness data check --protocol` over the public layout: lines of the real lists as a small protocol."""
    import yaml

    from harness.cli import main
    from harness.plugins import get_plugin_manager
    from tests.data.layouts import split_file_spec

    lists = {"ade20k": ("ade20k/1_64/labeled.txt", "ade20k/1_64/unlabeled.txt", "ade20k/val.txt"),
             "coco": ("coco/1_512/labeled.txt", "coco/1_512/labeled.txt", "coco/val.txt")}[dataset]
    labeled = read_split_file(shared_splits / lists[0])[:2]
    unlabeled = read_split_file(shared_splits / lists[1])[2:4]  # COCO's unlabeled lists are not available here
    val = read_split_file(shared_splits / lists[2])[:2]
    splits = tmp_path / "splits"
    for name, entries in (("l.txt", labeled), ("u.txt", unlabeled), ("v.txt", val)):
        write_split_file(splits / name, entries)
    k = get_dataset(dataset).num_classes
    rng = np.random.default_rng(2)
    masks = {m: rng.integers(0, k + 1 if dataset == "ade20k" else k, (16, 24), dtype=np.uint8)
             for _, m in labeled + unlabeled + val}
    write_pairs(tmp_path / "root", labeled + unlabeled + val, masks, (16, 24))
    doc = {"protocols": [{
        "id": f"mini-{dataset}", "dataset": dataset, "family": "test", "num_classes": k,
        "class_names": list(get_dataset(dataset).class_names), "crop_size": 16, "eval": {"mode": "whole"},
        "splits": {"labeled": split_file_spec(splits, "l.txt"), "unlabeled": split_file_spec(splits, "u.txt"),
                   "val": split_file_spec(splits, "v.txt")},
        "budget": {"iterations": 1, "batch_labeled": 1, "batch_unlabeled": 1, "lr": 0.01, "head_lr_mult": 1.0,
                   "weight_decay": 0.0},
        "model": {"backbone": "small", "pretrained": False}}]}
    (tmp_path / "protocols").mkdir()
    (tmp_path / "protocols" / "mini.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("HARNESS_PROTOCOLS", str(tmp_path / "protocols"))
    monkeypatch.setenv(get_dataset(dataset).root_env, str(tmp_path / "root"))
    get_plugin_manager.cache_clear()
    try:
        assert main(["data", "check", "--protocol", f"mini-{dataset}", "--splits-dir", str(splits)]) == 0
        out = capsys.readouterr().out
        assert f"{dataset} root {tmp_path / 'root'}: 3 split file(s), 12 files opened, 0 missing" in out
        (tmp_path / "root" / val[1][1]).unlink()
        assert main(["data", "check", "--protocol", f"mini-{dataset}", "--splits-dir", str(splits)]) == 1
        assert str(tmp_path / "root" / val[1][1]) in capsys.readouterr().out
    finally:
        get_plugin_manager.cache_clear()
