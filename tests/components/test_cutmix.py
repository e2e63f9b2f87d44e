"""Tests of methods/components/cutmix.py (imas spec §3.3, §9, E8, E9)."""

import pytest
import torch

from methods.components.cutmix import (
    boxes_to_mask,
    cutmix_trigger,
    easy_hard_cutmix,
    easy_hard_partners,
    group_partners,
    imas_box_from_draws,
    imas_boxes,
    imas_cutmix,
)


def test_e8_pairing():
    assert easy_hard_partners(torch.tensor([0.9, 0.2, 0.5, 0.7])).tolist() == [1, 0, 3, 2]
    assert easy_hard_partners(torch.tensor([0.3, 0.8, 0.5])).tolist() == [1, 0, 2]
    assert easy_hard_partners(torch.tensor([0.6, 0.6, 0.1, 0.9])).tolist() == [1, 0, 3, 2]
    assert easy_hard_partners(torch.tensor([0.4, 0.1])).tolist() == [1, 0]
    assert easy_hard_partners(torch.tensor([0.4])).tolist() == [0]


def test_e8_trigger_probability():
    for h, p in [([0.9, 0.2, 0.5, 0.7], 0.575), ([0.3, 0.8, 0.5], 1.6 / 3), ([0.6, 0.6, 0.1, 0.9], 0.55)]:
        g = torch.Generator().manual_seed(0)
        fires = sum(bool(cutmix_trigger(torch.tensor(h), g)[0]) for _ in range(4000))
        assert abs(fires / 4000 - p) < 0.03
    assert not cutmix_trigger(torch.zeros(4)).any()
    assert cutmix_trigger(torch.ones(8), group_size=4).tolist() == [True, True]
    assert cutmix_trigger(torch.zeros(8), group_size=4, prob=1.0).tolist() == [True, True]
    # trigger rule: fires iff u < mean(h)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    u = torch.rand(2, generator=g1, dtype=torch.float64)
    h = torch.tensor([0.2, 0.4, 0.6, 0.8, 0.1, 0.1, 0.9, 0.9])
    assert cutmix_trigger(h, g2, group_size=4).tolist() == (u < torch.tensor([0.5, 0.5])).tolist()


def test_pairing_is_involution():
    g = torch.Generator().manual_seed(0)
    for B in (1, 2, 3, 4, 7, 16):
        h = torch.rand(B, generator=g).round(decimals=1)  # with ties
        p = easy_hard_partners(h)
        assert torch.equal(p[p], torch.arange(B))
        p = group_partners(torch.rand(16, generator=g), group_size=4, pairing="random", generator=g)
        assert torch.equal(p[p], torch.arange(16))


def test_group_partners_within_groups():
    h = torch.tensor([0.9, 0.2, 0.5, 0.7, 0.3, 0.8, 0.1, 0.4])
    p = group_partners(h, group_size=4)
    assert p.tolist() == [1, 0, 3, 2, 7, 6, 5, 4]
    assert group_partners(h).tolist() == easy_hard_partners(h).tolist()
    with pytest.raises(ValueError):
        group_partners(h, group_size=3)


def test_e9_box():
    assert imas_box_from_draws(513, 513, 0.5, 450, 100) == (322, 513, 0, 228)
    r0, r1, c0, c1 = imas_box_from_draws(513, 513, 0.5, 450, 100)
    assert (r1 - r0, c1 - c0) == (191, 228)
    assert imas_box_from_draws(513, 513, 0.5, 200, 300) == (72, 328, 172, 428)  # unclipped: 2·⌊256/2⌋


def test_imas_boxes_sampling():
    H, W, B = 64, 48, 16
    boxes = imas_boxes(H, W, B, generator=torch.Generator().manual_seed(0), group_size=4)
    assert boxes.shape == (B, 4) and boxes.dtype == torch.long
    # replay the draw order: v (G), r (B), q (B)
    g = torch.Generator().manual_seed(0)
    v = 0.1 + 0.8 * torch.rand(4, generator=g, dtype=torch.float64)
    r = torch.randint(H // 16, H, (B,), generator=g)
    q = torch.randint(W // 16, W, (B,), generator=g)
    for i in range(B):
        assert tuple(boxes[i].tolist()) == imas_box_from_draws(H, W, float(v[i // 4]), int(r[i]), int(q[i]))
    # statistics of the centres over many draws
    many = imas_boxes(H, W, 512, generator=torch.Generator().manual_seed(1), group_size=4)
    assert (many[:, 0] >= 0).all() and (many[:, 1] <= H).all() and (many[:, 1] > many[:, 0]).all()
    g = torch.Generator().manual_seed(1)
    v = 0.1 + 0.8 * torch.rand(128, generator=g, dtype=torch.float64)
    assert v.min() >= 0.1 and v.max() <= 0.9


def test_boxes_to_mask():
    m = boxes_to_mask(torch.tensor([[1, 3, 0, 2], [0, 0, 0, 0]]), 4, 4)
    assert m[0].sum() == 4 and m[0, 1:3, 0:2].all() and not m[1].any()


def test_easy_hard_cutmix_uses_original_content():
    B, H, W = 4, 6, 6
    x = torch.arange(B, dtype=torch.float32).view(B, 1, 1, 1).expand(B, 3, H, W).clone()
    y = torch.arange(B).view(B, 1, 1).expand(B, H, W).clone()
    c = (torch.arange(B, dtype=torch.float32) / 10).view(B, 1, 1).expand(B, H, W).clone()
    h = torch.tensor([0.9, 0.2, 0.5, 0.7])  # partners [1, 0, 3, 2]
    boxes = torch.tensor([[0, 2, 0, 2], [0, 6, 0, 6], [4, 6, 4, 6], [1, 2, 1, 2]])
    x0, y0, c0 = x.clone(), y.clone(), c.clone()
    xm, ym, cm = easy_hard_cutmix(x, y, c, h, boxes)
    assert torch.equal(x, x0) and torch.equal(y, y0) and torch.equal(c, c0)  # inputs not mutated
    # image 1's box covers everything; image 0 still gets the ORIGINAL image 1 (value 1) in its box
    assert (xm[1] == 0).all() and (ym[1] == 0).all() and torch.allclose(cm[1], torch.zeros(H, W))
    assert (xm[0, :, :2, :2] == 1).all() and (xm[0, :, 2:, :] == 0).all() and (ym[0, :2, :2] == 1).all()
    assert (ym[2, 4:, 4:] == 3).all() and ym[2].eq(3).sum() == 4
    assert ym[3, 1, 1] == 2 and ym[3].eq(2).sum() == 1
    assert torch.allclose(cm[3, 1, 1], torch.tensor(0.2))
    # odd group: the median image is its own partner, so it is unchanged
    xm3, ym3, _ = easy_hard_cutmix(x[:3], y[:3], c[:3], torch.tensor([0.3, 0.8, 0.5]), boxes[:3])
    assert torch.equal(ym3[2], y[2])


def test_imas_cutmix_groups():
    B, H, W = 8, 16, 16
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, 3, H, W, generator=g)
    y = torch.randint(0, 5, (B, H, W), generator=g)
    c = torch.rand(B, H, W, generator=g)
    h = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])  # group 0 always fires, group 1 never
    valid = torch.ones(B, H, W, dtype=torch.bool)
    valid[:, :, -3:] = False
    res = imas_cutmix(x, y, c, h, group_size=4, generator=torch.Generator().manual_seed(5), extra=(valid,))
    assert res.fired.tolist() == [True, False]
    assert res.fired_images.tolist() == [True] * 4 + [False] * 4
    assert torch.equal(res.image[4:], x[4:]) and torch.equal(res.label[4:], y[4:])
    assert (res.partners[:4] < 4).all() and (res.partners[4:] >= 4).all()
    xm, ym, cm = easy_hard_cutmix(x[:4], y[:4], c[:4], None, res.boxes[:4], res.partners[:4])
    assert torch.equal(res.image[:4], xm) and torch.equal(res.label[:4], ym) and torch.equal(res.conf[:4], cm)
    assert res.extra[0].shape == valid.shape
    # one v per group: unclipped box heights are equal within a group
    res2 = imas_cutmix(x, y, c, torch.ones(B), group_size=4, generator=torch.Generator().manual_seed(5))
    assert res2.fired.all()
    # reproducible
    res3 = imas_cutmix(x, y, c, torch.ones(B), group_size=4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(res2.image, res3.image) and torch.equal(res2.boxes, res3.boxes)


def test_one_side_ratio_per_group():
    H = W = 200
    boxes = imas_boxes(H, W, 64, generator=torch.Generator().manual_seed(3), group_size=4)
    for gi in range(16):
        b = boxes[4 * gi : 4 * gi + 4]
        unclipped = (b[:, 0] > 0) & (b[:, 1] < H)
        sides = (b[unclipped, 1] - b[unclipped, 0]).unique()
        assert len(sides) <= 1
