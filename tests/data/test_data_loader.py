"""Training streams (determinism, resume, coverage) and the validation dataset."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from harness.data import TrainStreams, build_train_loader, build_val_dataset, shard, val_loader
from harness.errors import DataError
from tests.data.layouts import make_protocol, voc_ids, write_cityscapes_tree, write_split_file, write_voc_tree

N_LAB, N_UNL, N_VAL = 6, 10, 5


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    """A VOC tree with 6 labeled, 10 unlabeled (no masks on disk) and 5 val images of mixed sizes."""
    base = tmp_path_factory.mktemp("voc")
    root, splits = base / "VOC2012", base / "splits"
    ids = voc_ids(N_LAB + N_UNL + N_VAL)
    sizes = {i: ((30, 44) if k % 2 else (44, 30)) for k, i in enumerate(ids)}
    entries = write_voc_tree(root, ids, sizes=sizes)
    for e in entries[N_LAB:N_LAB + N_UNL]:
        (root / e[1]).unlink()  # unlabeled masks must never be read
    write_split_file(splits / "labeled.txt", entries[:N_LAB], final_newline=False)
    write_split_file(splits / "unlabeled.txt", entries[N_LAB:N_LAB + N_UNL])
    write_split_file(splits / "val.txt", entries[N_LAB + N_UNL:])
    proto = make_protocol(splits, crop_size=24, batch_labeled=4, batch_unlabeled=4)
    return root, splits, proto


def _take(loader, n):
    return list(itertools.islice(iter(loader), n))


def _assert_same(a, b):
    assert len(a) == len(b)
    for (la, ua), (lb, ub) in zip(a, b):
        for k in la:
            assert torch.equal(la[k], lb[k]), k
        assert (ua is None) == (ub is None)
        if ua is not None:
            assert ua.keys() == ub.keys()
            for k in ua:
                assert torch.equal(ua[k], ub[k]), k


def test_batch_format(voc):
    root, splits, proto = voc
    lab, unl = _take(build_train_loader(proto, root, splits, seed=0, crops_unlabeled=2), 1)[0]
    assert lab["raw"].shape == (4, 3, 24, 24) and lab["raw"].dtype == torch.uint8
    assert lab["label"].shape == (4, 24, 24) and lab["label"].dtype == torch.long
    assert lab["valid"].dtype == torch.bool and lab["index"].dtype == torch.long and lab["index"].shape == (4,)
    assert set(unl) == {"raw", "valid", "index", "raw2", "valid2"}
    assert unl["raw2"].shape == (4, 3, 24, 24) and not torch.equal(unl["raw"], unl["raw2"])
    assert ((lab["label"] < 21) | (lab["label"] == 255)).all()
    assert (lab["label"][~lab["valid"]] == 255).all()
    lab1, unl1 = _take(build_train_loader(proto, root, splits, seed=0), 1)[0]
    assert set(unl1) == {"raw", "valid", "index"} and torch.equal(unl1["raw"], unl["raw"])  # crop 0 is the same


def test_same_batches_for_0_and_2_workers(voc):
    root, splits, proto = voc
    a = _take(build_train_loader(proto, root, splits, seed=3, crops_unlabeled=2, num_workers=0), 5)
    b = _take(build_train_loader(proto, root, splits, seed=3, crops_unlabeled=2, num_workers=2), 5)
    _assert_same(a, b)
    c = _take(build_train_loader(proto, root, splits, seed=4, crops_unlabeled=2), 5)
    assert not torch.equal(a[0][0]["raw"], c[0][0]["raw"])


def test_start_at_step_k_equals_skipping_k(voc):
    root, splits, proto = voc
    fresh = _take(build_train_loader(proto, root, splits, seed=1, cache=True), 7)
    resumed = _take(build_train_loader(proto, root, splits, seed=1, start_step=4), 3)
    _assert_same(fresh[4:], resumed)
    stopped = build_train_loader(proto, root, splits, seed=1, start_step=4, stop_step=6)
    assert len(stopped) == 2
    _assert_same(fresh[4:6], list(stopped))


def test_labeled_stream_covers_every_image_each_pass():
    s = TrainStreams(seed=5, n_labeled=7, batch_labeled=3, n_unlabeled=10, batch_unlabeled=4)
    order = [i for step in range(70) for i, _ in s.labeled(step)]  # 210 positions = 30 passes
    passes = [order[k:k + 7] for k in range(0, len(order), 7)]
    assert all(sorted(p) == list(range(7)) for p in passes)
    assert len({tuple(p) for p in passes}) > 1  # reshuffled each pass
    assert [p for _, p in s.labeled(9)] == [27, 28, 29]
    # unlabeled: ⌊10/4⌋ = 2 steps per epoch, distinct images within an epoch, last partial batch dropped
    for epoch in range(5):
        seen = [i for step in (2 * epoch, 2 * epoch + 1) for i, _ in s.unlabeled(step)]
        assert len(seen) == 8 and len(set(seen)) == 8
    # the labeled stream never truncates even with more labeled than unlabeled images (Cityscapes 1_2)
    big = TrainStreams(seed=0, n_labeled=12, batch_labeled=4, n_unlabeled=9, batch_unlabeled=4)
    assert sorted(i for step in range(3) for i, _ in big.labeled(step)) == list(range(12))


def test_loader_labeled_indices_cover_each_pass(voc):
    root, splits, proto = voc
    idx = torch.cat([lab["index"] for lab, _ in _take(build_train_loader(proto, root, splits, seed=2), 3)]).tolist()
    assert sorted(idx[:N_LAB]) == list(range(N_LAB)) and sorted(idx[N_LAB:]) == list(range(N_LAB))


def test_fully_supervised_protocol(voc):
    root, splits, _ = voc
    proto = make_protocol(splits, unlabeled=None, crop_size=24, batch_labeled=4)
    lab, unl = _take(build_train_loader(proto, root, splits, seed=0), 1)[0]
    assert unl is None and lab["raw"].shape[0] == 4


def test_overlapping_protocol_is_refused(voc, tmp_path):
    root, splits, _ = voc
    lab = (splits / "labeled.txt").read_text().splitlines()
    unl = (splits / "unlabeled.txt").read_text().splitlines()
    (tmp_path / "unlabeled.txt").write_text("\n".join(unl + lab[:1]) + "\n")
    (tmp_path / "labeled.txt").write_text("\n".join(lab))
    (tmp_path / "val.txt").write_bytes((splits / "val.txt").read_bytes())
    proto = make_protocol(tmp_path)
    with pytest.raises(DataError, match="overlap in 1 image"):
        build_train_loader(proto, root, tmp_path, seed=0)


def test_val_dataset_and_shards(voc):
    root, splits, proto = voc
    ds = build_val_dataset(proto, root, splits)
    assert len(ds) == N_VAL
    raw, label, name = ds[0]
    assert raw.dtype == torch.uint8 and raw.shape[0] == 3 and label.shape == raw.shape[1:]
    assert label.dtype == torch.long and name == voc_ids(N_LAB + N_UNL + N_VAL)[N_LAB + N_UNL]
    assert {tuple(ds[k][0].shape[1:]) for k in range(N_VAL)} == {(44, 30), (30, 44)}  # original sizes
    assert [shard(N_VAL, r, 2) for r in range(2)] == [[0, 2, 4], [1, 3]]
    assert sorted(sum((shard(N_VAL, r, 4) for r in range(4)), [])) == list(range(N_VAL))
    names = [n for r in range(3) for _, _, (n,) in val_loader(ds, rank=r, world=3)]
    assert sorted(names) == sorted(ds[k][2] for k in range(N_VAL))
    raw1, label1, _ = next(iter(val_loader(ds)))
    assert raw1.shape[0] == 1 and label1.shape[0] == 1


def test_cityscapes_stream(tmp_path):
    root, splits = tmp_path / "cs", tmp_path / "splits"
    train = write_cityscapes_tree(root, "train", n=6, size=(20, 40), train_ids=False)
    val = write_cityscapes_tree(root, "val", n=2, size=(20, 40))
    write_split_file(splits / "labeled.txt", train[:2])
    write_split_file(splits / "unlabeled.txt", train[2:], final_newline=False)
    write_split_file(splits / "val.txt", val)
    proto = make_protocol(splits, dataset="cityscapes", crop_size=16, batch_labeled=2, batch_unlabeled=2)
    lab, unl = _take(build_train_loader(proto, root, splits, seed=0), 1)[0]
    assert ((lab["label"] < 19) | (lab["label"] == 255)).all() and unl["raw"].shape == (2, 3, 16, 16)
    assert build_val_dataset(proto, root, splits)[1][2] == "jena_000001_000019"


def test_streams_are_pure_functions_of_the_step():
    a = TrainStreams(seed=11, n_labeled=5, batch_labeled=2, n_unlabeled=9, batch_unlabeled=3)
    b = TrainStreams(seed=11, n_labeled=5, batch_labeled=2, n_unlabeled=9, batch_unlabeled=3)
    forward = [a.keys(s) for s in range(20)]
    backward = [b.keys(s) for s in reversed(range(20))][::-1]
    assert forward == backward
    assert np.unique([p for k in forward for st, _, p in k if st == 1]).size == 60  # positions s·B + j


def test_include_unlabeled_false_keeps_labeled_batches(voc):
    root, splits, proto = voc
    full = _take(build_train_loader(proto, root, splits, seed=6), 3)
    sup = _take(build_train_loader(proto, root, splits, seed=6, include_unlabeled=False), 3)
    assert all(u is None for _, u in sup)
    for (la, _), (lb, _) in zip(full, sup):
        assert all(torch.equal(la[k], lb[k]) for k in la)


def test_unlabeled_pool_trains_on_a_prefix_of_the_verified_list(voc):
    from harness.errors import ConfigError

    root, splits, proto = voc
    small = proto.with_overrides({"budget.unlabeled_pool": 4})
    assert small.unlabeled_count == 4 and proto.unlabeled_count == N_UNL
    seen = {int(i) for _, u in _take(build_train_loader(small, root, splits, seed=0), 6) for i in u["index"]}
    assert seen == set(range(4))  # 6 steps x 4 images over a pool of 4: every one, nothing beyond it
    with pytest.raises(ConfigError, match="unlabeled_pool 11 needs at least that many unlabeled images; the "
                                          "protocol has 10"):
        proto.with_overrides({"budget.unlabeled_pool": N_UNL + 1})
