"""Image/mask readers, VOC and Cityscapes layouts, the labelIds → trainIds table, the data check."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from harness.data import (CITYSCAPES_LABELID_TO_TRAINID, VOC_CLASSES, SegmentationSource, check_dataset_root,
                          prepare_cityscapes_trainids, read_image, read_mask, resolve_data_root, voc_palette)
from harness.errors import DataError
from tests.data.layouts import (save_grey_png, save_palette_png, voc_ids, write_cityscapes_tree, write_split_file,
                                write_voc_tree)

SPEC_PALETTE = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128), 5: (128, 0, 128),
                6: (0, 128, 128), 7: (128, 128, 128), 8: (64, 0, 0), 9: (192, 0, 0), 10: (64, 128, 0),
                11: (192, 128, 0), 12: (64, 0, 128), 13: (192, 0, 128), 14: (64, 128, 128), 15: (192, 128, 128),
                16: (0, 64, 0), 17: (128, 64, 0), 18: (0, 192, 0), 19: (128, 192, 0), 20: (0, 64, 128),
                255: (224, 224, 192)}

CS_TABLE = {0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255, 11: 2, 12: 3,
            13: 4, 14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
            26: 13, 27: 14, 28: 15, 29: 255, 30: 255, 31: 16, 32: 17, 33: 18}


def test_voc_palette_matches_spec():
    pal = voc_palette()
    for k, rgb in SPEC_PALETTE.items():
        assert tuple(pal[k]) == rgb
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[15] == "person"


def test_cityscapes_lut_all_ids():
    lut = CITYSCAPES_LABELID_TO_TRAINID
    assert lut.shape == (256,) and lut.dtype == np.uint8
    assert len(CS_TABLE) == 34
    for label_id, train_id in CS_TABLE.items():
        assert lut[label_id] == train_id, label_id
    for label_id in range(34, 256):  # lane-marking ids 34–45 and everything else → ignore
        assert lut[label_id] == 255
    assert sorted(set(lut.tolist()) - {255}) == list(range(19))


# ------------------------------------------------------------------------------------------------ masks

def test_palette_mask_read_as_indices(tmp_path):
    mask = np.array([[0, 1, 15, 255], [20, 8, 1, 0]], dtype=np.uint8)
    save_palette_png(tmp_path / "m.png", mask)
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "P"
        luminance = np.asarray(im.convert("L"))
    assert not np.array_equal(luminance, mask)  # the wrong way: colours → luminance (e.g. class 1 → 38)
    out = read_mask(tmp_path / "m.png", 21)
    assert out.dtype == np.uint8 and np.array_equal(out, mask)
    save_grey_png(tmp_path / "g.png", mask)
    assert np.array_equal(read_mask(tmp_path / "g.png", 21), mask)


def test_mask_out_of_range_and_rgb(tmp_path):
    bad = np.array([[0, 21, 3], [38, 255, 1]], dtype=np.uint8)
    save_palette_png(tmp_path / "bad.png", bad)
    with pytest.raises(DataError) as exc:
        read_mask(tmp_path / "bad.png", 21)
    msg = str(exc.value)
    assert "bad.png" in msg and "[21, 38]" in msg and "0–20 and 255" in msg
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match=r"rgb\.png has image mode 'RGB'.*colour"):
        read_mask(tmp_path / "rgb.png", 21)


def test_mask_lut(tmp_path):
    ids = np.array([[7, 8, 0], [33, 40, 26]], dtype=np.uint8)
    save_grey_png(tmp_path / "ids.png", ids)
    out = read_mask(tmp_path / "ids.png", 19, CITYSCAPES_LABELID_TO_TRAINID)
    assert out.tolist() == [[0, 1, 255], [18, 255, 13]]
    with pytest.raises(DataError, match=r"\[26, 33, 40\]"):
        read_mask(tmp_path / "ids.png", 19)  # raw labelIds are not trainIds


def test_corrupt_images(tmp_path):
    Image.fromarray(np.full((64, 64, 3), 100, np.uint8)).save(tmp_path / "ok.jpg", quality=90)
    data = (tmp_path / "ok.jpg").read_bytes()
    assert read_image(tmp_path / "ok.jpg").shape == (64, 64, 3)
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"not a jpeg at all")
    for name in ("trunc.jpg", "junk.jpg"):
        with pytest.raises(DataError, match=name.replace(".", r"\.") + " cannot be decoded"):
            read_image(tmp_path / name)
    with pytest.raises(DataError, match="does not exist"):
        read_image(tmp_path / "nope.jpg")


# ---------------------------------------------------------------------------------------------- layouts

def test_voc_source_reads_pairs(tmp_path):
    ids = voc_ids(3)
    entries = write_voc_tree(tmp_path / "voc", ids, size=(20, 30))
    src = SegmentationSource(tmp_path / "voc", entries, 21, "voc", split_name="l.txt", cache=True)
    img, mask = src.read(1)
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8 and mask.shape == (20, 30)
    assert set(np.unique(mask)) <= set(range(21)) | {255}
    assert src.name(1) == ids[1]
    assert src.read(1)[1] is mask  # cached


def test_voc_missing_root_and_wrong_layout(tmp_path):
    with pytest.raises(DataError, match=r"data root .*nothere does not exist; pass --data-root or set HARNESS_DATA_VOC"):
        SegmentationSource(tmp_path / "nothere", [], 21, "voc")
    (tmp_path / "voc" / "SegmentationClass").mkdir(parents=True)
    with pytest.raises(DataError) as exc:
        SegmentationSource(tmp_path / "voc", [], 21, "voc")
    assert "missing folder(s) JPEGImages" in str(exc.value) and "JPEGImages/<id>.jpg" in str(exc.value)
    write_voc_tree(tmp_path / "dev" / "VOCdevkit" / "VOC2012", voc_ids(1))
    with pytest.raises(DataError, match="Did you mean .*VOCdevkit/VOC2012"):
        SegmentationSource(tmp_path / "dev", [], 21, "voc")
    with pytest.raises(DataError, match="HARNESS_DATA_VOC"):
        resolve_data_root("voc", None)


def test_missing_entry_file_names_entry_split_and_path(tmp_path):
    entries = write_voc_tree(tmp_path / "voc", voc_ids(3))
    (tmp_path / "voc" / "SegmentationClass" / "2007_000001.png").unlink()
    with pytest.raises(DataError) as exc:
        SegmentationSource(tmp_path / "voc", entries, 21, "voc", split_name="pascal/92/labeled.txt")
    msg = str(exc.value)
    assert "entry #2" in msg and "pascal/92/labeled.txt" in msg
    assert str(tmp_path / "voc" / "SegmentationClass" / "2007_000001.png") in msg and "12,031" in msg
    # masks of an unlabeled list are never needed
    src = SegmentationSource(tmp_path / "voc", entries, 21, "voc", masks=False)
    assert src.read_image(1).shape == (48, 64, 3)
    with pytest.raises(RuntimeError):
        src.read_mask(1)


def test_size_mismatch_names_both_files(tmp_path):
    entries = write_voc_tree(tmp_path / "voc", voc_ids(1), size=(20, 30))
    save_palette_png(tmp_path / "voc" / "SegmentationClass" / "2007_000000.png", np.zeros((21, 30), np.uint8))
    src = SegmentationSource(tmp_path / "voc", entries, 21, "voc")
    with pytest.raises(DataError) as exc:
        src.read(0)
    msg = str(exc.value)
    assert "2007_000000.jpg is 30×20" in msg and "2007_000000.png is 30×21" in msg


def test_segmentation_class_aug_fallback(tmp_path):
    ids = voc_ids(2)
    entries = write_voc_tree(tmp_path / "voc", ids, mask_dir="SegmentationClassAug")
    assert entries[0][1] == f"SegmentationClass/{ids[0]}.png"
    src = SegmentationSource(tmp_path / "voc", entries, 21, "voc")
    assert src.mask_path(0) == tmp_path / "voc" / "SegmentationClassAug" / f"{ids[0]}.png"
    assert src.read(0)[1].shape == (48, 64)


def test_cityscapes_layout_labelids_fallback_and_prepare(tmp_path):
    root = tmp_path / "cs"
    entries = write_cityscapes_tree(root, "train", n=3, size=(16, 32), train_ids=False)
    src = SegmentationSource(root, entries, 19, "cityscapes")
    assert src.mask_path(0).name.endswith("_gtFine_labelIds.png")
    ids = np.asarray(Image.open(src.mask_path(0)))
    img, mask = src.read(0)
    assert img.shape == (16, 32, 3) and np.array_equal(mask, CITYSCAPES_LABELID_TO_TRAINID[ids])
    assert src.name(0) == "aachen_000000_000019"
    assert prepare_cityscapes_trainids(root) == 3
    assert prepare_cityscapes_trainids(root) == 0  # already there
    assert not list(root.rglob("*.tmp"))
    src2 = SegmentationSource(root, entries, 19, "cityscapes")
    assert src2.mask_path(0).name.endswith("_gtFine_labelTrainIds.png")
    assert np.array_equal(src2.read(0)[1], mask)
    with pytest.raises(DataError, match="missing folder.*gtFine.*HARNESS_DATA_CITYSCAPES"):
        SegmentationSource(root / "leftImg8bit", entries, 19, "cityscapes")


def test_cityscapes_missing_mask(tmp_path):
    root = tmp_path / "cs"
    entries = write_cityscapes_tree(root, "val", n=2, size=(16, 32), label_ids=False)
    (root / entries[1][1]).unlink()
    with pytest.raises(DataError, match="entry #2.*val.txt.*labelTrainIds.png does not exist.*labelIds"):
        SegmentationSource(root, entries, 19, "cityscapes", split_name="cityscapes/val.txt")


# ------------------------------------------------------------------------------------------------- check

def test_check_dataset_root(tmp_path):
    ids = voc_ids(6)
    entries = write_voc_tree(tmp_path / "voc", ids, size=(20, 30))
    lab = write_split_file(tmp_path / "s" / "labeled.txt", entries[:4], final_newline=False)
    val = write_split_file(tmp_path / "s" / "val.txt", entries[3:])
    rep = check_dataset_root("voc", tmp_path / "voc", [lab, val], workers=2)
    assert rep.ok and rep.exit_code == 0 and rep.checked == 12
    (tmp_path / "voc" / "JPEGImages" / f"{ids[0]}.jpg").unlink()
    (tmp_path / "voc" / "JPEGImages" / f"{ids[5]}.jpg").write_bytes(b"garbage")
    save_palette_png(tmp_path / "voc" / "SegmentationClass" / f"{ids[4]}.png", np.full((20, 30), 77, np.uint8))
    rep = check_dataset_root("voc", tmp_path / "voc", [lab, val])
    assert rep.exit_code == 1 and len(rep.missing) == 1 and len(rep.unreadable) == 2
    text = rep.format()
    assert f"{ids[0]}.jpg" in text and "labeled.txt:1" in text and f"{ids[5]}.jpg" in text and "[77]" in text
    assert "FAILED" in text
