"""Two gloo ranks on CPU: summed confusion matrix = one process, every image once (odd count)."""

import os
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from harness.evaluation.inference import evaluate
from harness.protocols import EvalSpec

K = 3
N_IMAGES = 5


def _data():
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(N_IMAGES):
        h, w = 12 + i, 15 + 2 * i
        img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        mask = torch.randint(0, K, (h, w), generator=g)
        mask[0, 0] = 255
        out.append((img, mask))
    return out


def _model():
    torch.manual_seed(0)
    return nn.Conv2d(3, K, 3, padding=1)


def _worker(rank, world, port, out_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        res = evaluate(_model(), _data(), EvalSpec(mode="slide", window=10, stride=7), K, "cpu",
                       rank=rank, world=world)
        np.save(os.path.join(out_dir, f"cm{rank}.npy"), res["confusion_matrix"])
        np.save(os.path.join(out_dir, f"n{rank}.npy"), np.array(res["num_images"]))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_sum_to_single_process(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    single = evaluate(_model(), _data(), EvalSpec(mode="slide", window=10, stride=7), K, "cpu")
    for r in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f"cm{r}.npy"), single["confusion_matrix"])
        assert int(np.load(tmp_path / f"n{r}.npy")) == N_IMAGES
    # no duplicates: total counted pixels = labelled pixels of the 5 images
    assert single["confusion_matrix"].sum() == sum(int((m != 255).sum()) for _, m in _data())
