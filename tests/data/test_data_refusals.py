"""Data that must be refused or explained: evaluation images in a training list, repeated entries, EXIF-rotated
images, a corrupt unlabeled image met during training, masks of unlabeled lists, the Cityscapes labelIds hint."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from harness.cli import main
from harness.data import SegmentationSource, check_dataset_root, verify_protocol_splits
from harness.errors import DataError
from harness.plugins import get_plugin_manager
from tests.data.layouts import (make_protocol, voc_ids, write_cityscapes_tree, write_split_file, write_voc_tree)


def _tree(tmp_path, n=12, size=(24, 32)):
    root, splits = tmp_path / "VOC2012", tmp_path / "splits"
    entries = write_voc_tree(root, voc_ids(n), size=size)
    return root, splits, entries


def test_a_validation_image_in_a_training_list_is_refused_naming_it(tmp_path):
    root, splits, e = _tree(tmp_path)
    write_split_file(splits / "labeled.txt", e[:4])
    write_split_file(splits / "unlabeled.txt", e[4:8] + [e[9]])
    write_split_file(splits / "val.txt", e[8:])
    with pytest.raises(DataError) as err:
        verify_protocol_splits(make_protocol(splits), splits)
    text = str(err.value)
    assert f"validation list {splits / 'val.txt'} and training list {splits / 'unlabeled.txt'} share 1 image(s): " \
           f"{e[9][0]}" in text and "inflated" in text


def test_a_repeated_entry_is_refused_naming_its_lines(tmp_path):
    root, splits, e = _tree(tmp_path)
    write_split_file(splits / "labeled.txt", [e[0], e[1], e[0], e[2]])
    write_split_file(splits / "val.txt", e[8:])
    with pytest.raises(DataError, match=rf"labeled.txt lists 1 image\(s\) more than once: {e[0][0]} "
                                        rf"\(entries 1, 3\)"):
        verify_protocol_splits(make_protocol(splits, unlabeled=None), splits)


def _exif_rotated(path, hw):
    """Save the image as a camera does: pixels stored turned by 90°, EXIF orientation 6 to show them upright."""
    h, w = hw
    stored = Image.fromarray(np.random.default_rng(0).integers(0, 255, (w, h, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, format="JPEG", exif=exif)


def test_an_exif_rotated_image_is_explained(tmp_path):
    root, splits, e = _tree(tmp_path, size=(24, 32))
    _exif_rotated(root / e[1][0], (24, 32))
    src = SegmentationSource(root, e[:4], 21, "voc", split_name="labeled.txt")
    with pytest.raises(DataError) as err:
        src.read(1)
    text = str(err.value)
    assert "is 24×32 (W×H) but its mask" in text and "EXIF orientation tag (6" in text
    assert "rotated they would match the mask" in text and "exif_transpose" in text
    report = check_dataset_root("voc", root, [write_split_file(splits / "l.txt", e[:4])])
    assert not report.ok and "EXIF orientation tag (6" in report.format()


def _register(protocol):
    registry = get_plugin_manager().protocols
    if protocol.id not in registry.names():
        registry.add(protocol)
    return protocol


def _voc_protocol(splits, protocol_id):
    budget = {"iterations": 6, "batch_labeled": 2, "batch_unlabeled": 2, "lr": 0.01, "head_lr_mult": 10,
              "weight_decay": 1e-4, "eval_every": 6}
    return _register(make_protocol(splits, protocol_id=protocol_id, crop_size=16, budget=budget,
                                   model={"backbone": "small", "width": 8, "decoder_channels": 16,
                                          "pretrained": False, "deep_stem": False}))


def test_a_corrupt_unlabeled_image_met_in_training_points_at_data_check(tmp_path, capsys):
    root, splits, e = _tree(tmp_path)
    write_split_file(splits / "labeled.txt", e[:4])
    write_split_file(splits / "unlabeled.txt", e[4:8])
    write_split_file(splits / "val.txt", e[8:])
    proto = _voc_protocol(splits, "refusals-corrupt")
    for k in range(4, 8):  # whichever the first steps draw
        (root / e[k][0]).write_bytes(b"not a jpeg")
    argv = ["run", "--method", "mean_teacher", "--protocol", proto.id, "--data-root", str(root), "--splits-dir",
            str(splits), "--out", str(tmp_path / "runs"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot be decoded" in err and "unlabeled.txt" in err and "Traceback" not in err
    assert f"`harness data check --protocol {proto.id} --data-root {root}`" in err


def test_data_check_warns_about_a_missing_unlabeled_mask_and_fails_on_a_labeled_one(tmp_path, capsys):
    root, splits, e = _tree(tmp_path)
    write_split_file(splits / "labeled.txt", e[:4])
    write_split_file(splits / "unlabeled.txt", e[4:8])
    write_split_file(splits / "val.txt", e[8:])
    proto = _voc_protocol(splits, "refusals-masks")
    (root / e[5][1]).unlink()
    argv = ["data", "check", "--protocol", proto.id, "--data-root", str(root), "--splits-dir", str(splits)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "warning: 1 mask(s) of unlabeled lists are missing or unreadable" in out and str(root / e[5][1]) in out
    assert out.rstrip().endswith("OK")
    (root / e[1][1]).unlink()
    assert main(argv) == 1
    assert "FAILED" in capsys.readouterr().out


def test_cityscapes_labelids_note_names_the_command(tmp_path):
    root = tmp_path / "cityscapes"
    entries = write_cityscapes_tree(root, "train", n=2, train_ids=False)
    report = check_dataset_root("cityscapes", root, [write_split_file(tmp_path / "l.txt", entries)])
    assert report.ok and f"`harness data prepare-cityscapes --data-root {root}`" in report.format()
    assert "prepare_cityscapes_trainids" not in report.format()
