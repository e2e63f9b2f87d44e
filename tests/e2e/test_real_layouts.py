"""Training and evaluation through the real VOC and Cityscapes readers, on trees written in the public layouts."""

import shutil

import pytest

from harness.cli import main
from harness.evaluation.checkpoint_eval import evaluate_checkpoint
from harness.plugins import get_plugin_manager
from harness.train.run import RunSpec, execute, run_dir
from tests.data.layouts import make_protocol, voc_ids, write_cityscapes_tree, write_split_file, write_voc_tree


def _register(protocol):
    registry = get_plugin_manager().protocols
    if protocol.id not in registry.names():
        registry.add(protocol)
    return protocol


@pytest.fixture
def voc(tmp_path):
    root, splits = tmp_path / "VOC2012", tmp_path / "splits"
    sizes = {i: (40 + 4 * k, 56 - 2 * k) for k, i in enumerate(voc_ids(16))}
    entries = write_voc_tree(root, voc_ids(16), sizes=sizes)
    write_split_file(splits / "labeled.txt", entries[:4], final_newline=False)
    write_split_file(splits / "unlabeled.txt", entries[4:12])
    write_split_file(splits / "val.txt", entries[12:])
    proto = _register(make_protocol(splits, protocol_id="e2e-voc", iterations=4, batch_labeled=2, batch_unlabeled=2,
                                    crop_size=32, budget={"iterations": 4, "batch_labeled": 2, "batch_unlabeled": 2,
                                                          "lr": 0.01, "head_lr_mult": 10, "weight_decay": 1e-4,
                                                          "eval_every": 2},
                                    model={"backbone": "small", "width": 8, "decoder_channels": 16,
                                           "pretrained": False, "deep_stem": False}))
    return proto, root, splits


def test_voc_run_and_harness_eval_agree(voc, tmp_path, capsys):
    proto, root, splits = voc
    spec = RunSpec(method="supervised", protocol=proto.id, out=str(tmp_path / "runs"), data_root=str(root),
                   splits_dir=str(splits), progress=False)
    record = execute(spec)
    assert record["num_evals"] == 2 and record["final"]["miou"] >= 0
    again = evaluate_checkpoint(str(run_dir(spec)), splits_dir=str(splits))
    assert again["miou"] == pytest.approx(record["final"]["miou"], abs=1e-9)
    assert main(["eval", str(run_dir(spec)), "--splits-dir", str(splits), "--per-class"]) == 0
    assert "aeroplane" in capsys.readouterr().out


def test_pseudo_label_diagnostics_on_the_unlabeled_list(voc, tmp_path, capsys):
    """``harness eval --split unlabeled --confidence τ``: the unlabeled images' own masks score the network's
    thresholded predictions; a missing mask is an error naming the file."""
    import json

    import numpy as np
    from PIL import Image

    proto, root, splits = voc
    spec = RunSpec(method="supervised", protocol=proto.id, out=str(tmp_path / "runs"), data_root=str(root),
                   splits_dir=str(splits), progress=False)
    execute(spec)
    out = tmp_path / "pl.json"
    args = ["eval", str(run_dir(spec)), "--splits-dir", str(splits), "--split", "unlabeled", "--confidence", "0.1",
            "--confusion", "--json", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "unlabeled list" in text and "8 images" in text and "% kept wrong" in text and "gt \\ pred" in text
    doc = json.loads(out.read_text())
    masks = [root / line.split()[1] for line in (splits / "unlabeled.txt").read_text().split("\n") if line]
    labeled_pixels = sum(int((np.array(Image.open(m)) != 255).sum()) for m in masks)
    full, kept = np.array(doc["confusion_matrix"]), np.array(doc["confident_matrix"])
    assert full.sum() == labeled_pixels and (kept <= full).all() and doc["split"] == "unlabeled"
    assert doc["pseudo_labels"]["coverage"] == pytest.approx(kept.sum() / full.sum())
    with pytest.raises(SystemExit):  # argparse: a threshold that is not a probability
        main(args[:6] + ["--confidence", "1.5"])
    assert "expected a probability in [0, 1], got '1.5'" in capsys.readouterr().err
    masks[3].unlink()
    assert main(args) == 2
    assert masks[3].name in capsys.readouterr().err


def test_cityscapes_run_with_ohem_and_sliding_window(tmp_path):
    root, splits = tmp_path / "cityscapes", tmp_path / "splits"
    train = write_cityscapes_tree(root, "train", n=8, size=(32, 64), train_ids=False)  # labelIds only: converted
    val = write_cityscapes_tree(root, "val", names=["frankfurt_000000_000019", "lindau_000000_000019"],
                                size=(32, 64))
    write_split_file(splits / "labeled.txt", train[:3])
    write_split_file(splits / "unlabeled.txt", train[3:])
    write_split_file(splits / "val.txt", val, final_newline=False)
    proto = _register(make_protocol(splits, dataset="cityscapes", protocol_id="e2e-cityscapes", crop_size=32,
                                    iterations=2, eval={"mode": "slide", "window": 32, "stride": 21},
                                    supervised_loss={"type": "ohem", "thresh": 0.7, "min_kept": 500, "group": 2},
                                    model={"backbone": "small", "width": 8, "decoder_channels": 16,
                                           "pretrained": False, "deep_stem": False}))
    record = execute(RunSpec(method="supervised", protocol=proto.id, out=str(tmp_path / "runs"),
                             data_root=str(root), splits_dir=str(splits), progress=False))
    assert record["eval_mode"] == "slide32" and len(record["final"]["iou"]) == 19


def test_data_check_reports_a_corrupt_image(voc, tmp_path, capsys):
    proto, root, splits = voc
    assert main(["data", "check", "--protocol", proto.id, "--data-root", str(root), "--splits-dir", str(splits)]) == 0
    bad = root / "JPEGImages" / f"{voc_ids(16)[13]}.jpg"
    bad.write_bytes(b"not a jpeg")
    capsys.readouterr()
    assert main(["data", "check", "--protocol", proto.id, "--data-root", str(root), "--splits-dir", str(splits)]) == 1
    assert str(bad) in capsys.readouterr().out


def test_missing_data_root_is_a_clear_error(voc, tmp_path, capsys):
    proto, root, splits = voc
    code = main(["run", "--method", "supervised", "--protocol", proto.id, "--data-root", str(tmp_path / "nope"),
                 "--splits-dir", str(splits), "--out", str(tmp_path / "runs")])
    assert code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nope") in err and "--data-root" in err
    assert not (tmp_path / "runs").exists()


def test_data_splits_verifies_a_folder_and_fetches_from_a_url(tmp_path, capsys, monkeypatch, request):
    from tests.data.conftest import shared_splits_dir

    shared = shared_splits_dir()
    if shared is None:
        pytest.skip("shared split files not found")
    get_plugin_manager.cache_clear()  # only the shipped protocols: other tests register ones of their own
    request.addfinalizer(get_plugin_manager.cache_clear)
    # the shared copy, like the repository snapshot it came from, lacks COCO's largest lists (pinned by git blob):
    # a folder without them is refused, naming one; the test then verifies every other shipped protocol
    assert main(["data", "splits", "--splits-dir", str(shared)]) == 2
    assert "coco/" in capsys.readouterr().err
    protocols = get_plugin_manager().protocols._protocols
    for pid in [p for p, proto in protocols.items()
                if any(s is not None and s.git_blob for s in (proto.splits.labeled, proto.splits.unlabeled))]:
        monkeypatch.delitem(protocols, pid)
    assert main(["data", "splits", "--splits-dir", str(shared)]) == 0
    monkeypatch.setenv("HARNESS_SPLITS_URL", shared.as_uri())
    assert main(["data", "splits", "--dest", str(tmp_path / "cache")]) == 0
    assert (tmp_path / "cache" / "pascal" / "732" / "labeled.txt").read_bytes() == \
        (shared / "pascal" / "732" / "labeled.txt").read_bytes()
    tampered = tmp_path / "copy"
    shutil.copytree(shared, tampered)
    (tampered / "pascal" / "92" / "labeled.txt").write_text("JPEGImages/x.jpg SegmentationClass/x.png\n")
    assert main(["data", "splits", "--splits-dir", str(tampered)]) == 2
    assert "pascal/92/labeled.txt" in capsys.readouterr().err
