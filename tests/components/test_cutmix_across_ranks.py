"""iMAS CutMix groups that span several processes (gloo, CPU): each rank's result is what one process holding
the whole group would build from the same draws (the group's first rank's trigger and side ratio, every rank's
own box centres, pairing over the whole group)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from harness.augment import integer_draws, uniform_draws
from methods.components.cutmix import (boxes_to_mask, easy_hard_partners, imas_box_from_draws,
                                       imas_cutmix_across_ranks)

B, H, W, K = 8, 16, 20, 5  # global unlabeled batch, crop, classes
SIDE = (0.1, 0.9)
# (group_size, trigger, pairing) per world size; the per-process batch is B / world
CASES = {2: [(8, "easiness", "easy_hard"), (8, 1.0, "random")],
         4: [(4, "easiness", "easy_hard"), (8, 1.0, "easy_hard"), (4, 1.0, "random")]}


def _data():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(B, 3, H, W, generator=g)
    y = torch.randint(0, K, (B, H, W), generator=g)
    c = torch.rand(B, H, W, generator=g)
    valid = torch.rand(B, H, W, generator=g) > 0.2
    h = torch.rand(B, generator=g) * 0.5 + 0.5  # mostly easy: the easiness trigger fires often
    return x, y, c, valid, h


def _gen(rank, case):
    return torch.Generator().manual_seed(1000 * case + rank)


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    x, y, c, valid, h = _data()
    b = B // world
    sl = slice(rank * b, (rank + 1) * b)
    results = []
    for i, (gs, trigger, pairing) in enumerate(CASES[world]):
        res = imas_cutmix_across_ranks(x[sl], y[sl], c[sl], h[sl], gs, rank, world, SIDE, trigger, pairing,
                                       generator=_gen(rank, i), extra=(valid[sl],))
        results.append({k: getattr(res, k) for k in ("image", "label", "conf", "fired", "mask", "partners")}
                       | {"valid": res.extra[0]})
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _expected(world, i, gs, trigger, pairing):
    """The group-wise CutMix of the whole batch from the draws every rank makes (oracle)."""
    x, y, c, valid, h = _data()
    b, k = B // world, gs // (B // world)
    draws = []
    for rank in range(world):
        g = _gen(rank, i)
        u = uniform_draws(1, g)
        v = SIDE[0] + (SIDE[1] - SIDE[0]) * uniform_draws(1, g)
        r, q = integer_draws(H // 16, H, b, g), integer_draws(W // 16, W, b, g)
        keys = uniform_draws(b, g) if pairing == "random" else None
        draws.append((float(u), float(v), r, q, keys))
    out = {name: t.clone() for name, t in (("image", x), ("label", y), ("conf", c), ("valid", valid))}
    mask = torch.zeros(B, H, W, dtype=torch.bool)
    fired = []
    for g0 in range(0, B, gs):
        lead = g0 // b
        u, v = draws[lead][0], draws[lead][1]
        hg = h[g0:g0 + gs].double()
        p = hg.mean() if trigger == "easiness" else trigger
        fired.append(bool(u < p))
        key = hg if pairing == "easy_hard" else torch.cat([draws[lead + j][4] for j in range(k)])
        partners = easy_hard_partners(key) + g0
        for j in range(gs):
            n = g0 + j
            r, q = draws[n // b][2][n % b], draws[n // b][3][n % b]
            box = imas_box_from_draws(H, W, v, int(r), int(q))
            m = boxes_to_mask(torch.tensor([box]), H, W)[0] & fired[-1]
            mask[n] = m
            for name, t in (("image", x), ("label", y), ("conf", c), ("valid", valid)):
                out[name][n] = torch.where(m, t[partners[j]], t[n])
    return out, mask, fired


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("world", [2, 4])
def test_groups_across_ranks_match_the_whole_group_on_one_process(world, tmp_path):
    mp.spawn(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    got = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    b = B // world
    any_fired = False
    for i, (gs, trigger, pairing) in enumerate(CASES[world]):
        want, mask, fired = _expected(world, i, gs, trigger, pairing)
        any_fired |= any(fired)
        for rank in range(world):
            res, sl = got[rank][i], slice(rank * b, (rank + 1) * b)
            assert res["fired"].tolist() == [fired[rank * b // gs]]
            assert torch.equal(res["mask"], mask[sl])
            for name in ("image", "label", "conf", "valid"):
                assert torch.equal(res[name], want[name][sl]), (world, gs, trigger, pairing, rank, name)
    assert any_fired  # the test exercised pasting across ranks
