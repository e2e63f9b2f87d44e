"""Datasets as plugins: a dataset registered through the hook is used everywhere the core reads data; unknown
and duplicate names are errors that name what is registered."""

from __future__ import annotations

import numpy as np
import pytest

from harness import plugins
from harness.data.registry import Dataset, get_dataset
from harness.data.roots import prepare_data
from harness.data.check import check_dataset_root
from harness.errors import ConfigError
from harness.report.pictures import palette
from tests.data.layouts import save_grey_png, write_split_file, make_protocol


@pytest.fixture
def with_plugins(monkeypatch):
    """A plugin manager that loads tests.data.toy_dataset and tests.data.toy_duplicate next to the built-ins."""
    monkeypatch.setattr(plugins, "BUILTIN_DATASET_MODULES",
                        plugins.BUILTIN_DATASET_MODULES + ("tests.data.toy_dataset", "tests.data.toy_duplicate"))
    plugins.get_plugin_manager.cache_clear()
    yield plugins.get_plugin_manager()
    plugins.get_plugin_manager.cache_clear()


def _toy_tree(root, names=("a", "b")):
    from PIL import Image

    entries = []
    for k, name in enumerate(names):
        (root / "img").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 10, 3), 40 * k, dtype=np.uint8)).save(root / "img" / f"{name}.png")
        lbl = np.zeros((8, 10), dtype=np.uint8)
        lbl[:, 5:] = 9
        lbl[0, 0] = 2
        save_grey_png(root / "lbl" / f"{name}.png", lbl)
        entries.append((f"img/{name}.png", f"lbl/{name}.png"))
    return entries


def test_builtins_registered_in_order():
    assert plugins.get_plugin_manager().datasets.names() == ["voc", "cityscapes", "ade20k", "coco", "synthetic"]
    assert get_dataset("synthetic").published is False and get_dataset("voc").published is True


def test_plugin_dataset_reads_checks_and_draws(tmp_path, monkeypatch, with_plugins):
    entries = _toy_tree(tmp_path / "data")
    splits = tmp_path / "splits"
    write_split_file(splits / "labeled.txt", entries)
    write_split_file(splits / "unlabeled.txt", _toy_tree(tmp_path / "data", ("c",)))
    write_split_file(splits / "val.txt", _toy_tree(tmp_path / "data", ("d",)))
    protocol = make_protocol(splits, dataset="toy", num_classes=3, class_names=["zero", "one", "two"])
    monkeypatch.setenv("HARNESS_DATA_TOY", str(tmp_path / "data"))  # the root variable named after the dataset
    root, split_root = prepare_data(protocol, None, str(splits))
    assert root == tmp_path / "data" and split_root == splits
    report = check_dataset_root("toy", root, [splits / "labeled.txt"])
    assert report.ok and report.checked == 4, report.format()
    from harness.data.readers import SegmentationSource

    mask = SegmentationSource(root, entries, 3, "toy").read_mask(0)
    assert mask[0, 0] == 2 and mask[0, 9] == 255 and mask[3, 3] == 0  # its void value 9 became 255
    assert tuple(palette("toy")[1]) == (0, 250, 0)
    # the second plugin's duplicate is reported, the first registration stays
    assert get_dataset("voc").class_names[0] == "background"
    dup = [f for f in with_plugins.failures if "toy_duplicate" in f.entry_point]
    assert len(dup) == 1 and "dataset 'voc' is registered twice" in dup[0].error


def test_unknown_dataset_names_protocol_and_registered(tmp_path):
    write_split_file(tmp_path / "labeled.txt", [("a.jpg", "a.png")])
    write_split_file(tmp_path / "val.txt", [("b.jpg", "b.png")])
    protocol = make_protocol(tmp_path, unlabeled=None, dataset="ade21k", protocol_id="mine-1")
    with pytest.raises(ConfigError, match=r"unknown dataset 'ade21k' \(protocol 'mine-1'.*key 'dataset'\); registered "
                                          r"datasets: voc, cityscapes, ade20k, coco, synthetic"):
        prepare_data(protocol, str(tmp_path), str(tmp_path))


def test_dataset_spec_is_validated():
    with pytest.raises(ConfigError, match="lowercase"):
        Dataset(name="My Set", layout=object, class_names=("a", "b"))
    with pytest.raises(ConfigError, match="at least two class names"):
        Dataset(name="one", layout=object, class_names=("a",))


def test_list_datasets_names_each_with_its_provider(capsys, with_plugins):
    from harness.cli import main

    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr()
    lines = {line.split()[0]: line for line in out.out.splitlines()[2:]}
    assert list(lines) == ["voc", "cityscapes", "ade20k", "coco", "synthetic", "toy"]
    assert "tests.data.toy_dataset" in lines["toy"] and " 3 " in lines["toy"] and "HARNESS_DATA_TOY" in lines["toy"]
    assert "150" in lines["ade20k"] and "HARNESS_DATA_ADE20K" in lines["ade20k"]
    assert "toy_duplicate" in out.err and "registered twice" in out.err  # plugin failures come first, on stderr
