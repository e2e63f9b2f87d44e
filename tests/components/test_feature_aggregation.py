"""Feature aggregation (s4mim spec §3.4, W3; combined spec §8 L_fa^h)."""

import math

import pytest
import torch

from methods.components.feature_aggregation import (
    feature_aggregation_losses,
    pool_to_grid,
    prototype_alignment_per_sample,
)
from methods.components.masking import class_partition, expand_cell_mask
from methods.components.mim import SampleLosses, mean_over_used

L0 = 1 - 1 / math.sqrt(5)  # 0.5527864
L1 = 1 - 1.5 / math.sqrt(2.5)  # 0.0513167


def w1_w3():
    pseudo = torch.tensor([[0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]])[None]
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, 3, 3] = False
    s = class_partition(pseudo, valid, num_classes=2)
    masks = expand_cell_mask(torch.tensor([[True, False], [False, True]]), 4, 4, 2).expand(2, 4, 4)
    # features N×C×h×w, C = 2, grid 2×2
    f0 = torch.tensor([[[1, 0], [0, 1]], [[1, 1], [2, 2]]], dtype=torch.float32)  # h×w×C
    f1 = torch.tensor([[[3, 3], [1, 0]], [[0, 2], [1, 1]]], dtype=torch.float32)
    feats = torch.stack([f0, f1]).permute(0, 3, 1, 2).contiguous()
    return feats, masks, s


def test_w3_pooled_masks():
    feats, masks, s = w1_w3()
    assert torch.equal(pool_to_grid(masks, (2, 2))[0], torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    rho = pool_to_grid(s.region, (2, 2))
    assert torch.equal(rho[0], torch.tensor([[1.0, 0.25], [0.25, 0.0]]))
    assert torch.equal(rho[1], torch.tensor([[0.0, 0.75], [0.75, 0.75]]))


def test_w3_values_and_min_weight():
    feats, masks, s = w1_w3()
    values, used = prototype_alignment_per_sample(feats, masks, s.region, min_weight=0.5)
    assert used.tolist() == [True, True]
    assert values.tolist() == pytest.approx([L0, L1], abs=1e-6)
    assert values[0].item() == pytest.approx(0.5527864, abs=1e-7)
    assert values[1].item() == pytest.approx(0.0513167, abs=1e-7)
    assert mean_over_used(values, used).item() == pytest.approx(0.3020516, abs=1e-7)
    v4, u4 = prototype_alignment_per_sample(feats, masks, s.region)  # default w_min = 4.0
    assert not u4.any() and mean_over_used(v4, u4).item() == 0
    # Σ(1−m)ρ of class 0 is exactly 0.5: the threshold is inclusive, just above it fails
    _, u = prototype_alignment_per_sample(feats, masks, s.region, min_weight=0.5001)
    assert u.tolist() == [False, True]


def test_w3_options():
    feats, masks, s = w1_w3()
    l2, _ = prototype_alignment_per_sample(feats, masks, s.region, min_weight=0.5, distance="l2norm")
    assert l2.tolist() == pytest.approx([2 * L0, 2 * L1], abs=1e-6)
    pix, _ = prototype_alignment_per_sample(feats, masks, s.region, min_weight=0.5, level="pixel")
    # class 0: only cell (0,0) has mρ > 0 -> same as prototype; class 1: only cell (1,1) with F = [1, 1]
    assert pix.tolist() == pytest.approx([L0, L1], abs=1e-6)


def test_stop_gradient_on_visible_prototype():
    feats, masks, s = w1_w3()
    m = pool_to_grid(masks, (2, 2)).bool()
    for sg in (True, False):
        f = feats.clone().requires_grad_(True)
        v, u = prototype_alignment_per_sample(f, masks, s.region, min_weight=0.5, stop_grad_visible=sg)
        v.sum().backward()
        g_vis = f.grad.permute(0, 2, 3, 1)[~m]
        g_mask = f.grad.permute(0, 2, 3, 1)[m]
        assert g_mask.abs().sum() > 0
        assert (g_vis.abs().sum() == 0) == sg


def test_unused_samples_give_zero_and_finite_gradient():
    feats, masks, s = w1_w3()
    f = torch.zeros_like(feats).requires_grad_(True)
    for level in ("prototype", "pixel"):
        v, u = prototype_alignment_per_sample(f, torch.ones_like(masks), s.region, min_weight=0.0, level=level)
        assert not u.any() and torch.equal(v, torch.zeros(2))
        mean_over_used(v, u).backward()
        assert torch.isfinite(f.grad).all() and f.grad.abs().sum() == 0


def test_modes_and_combined_weighting():
    feats, masks, s = w1_w3()
    out = feature_aggregation_losses("classwise", feats, s, masks, min_weight=0.5)
    assert out.values.tolist() == pytest.approx([L0, L1], abs=1e-6)
    # shared: one feature map per image; same features for both classes
    shared = feature_aggregation_losses("shared", feats[:1], s, masks[:1], min_weight=0.5)
    assert shared.values.shape == (2,) and shared.batch_index.tolist() == [0, 0]
    # combined spec §8: image 1 has a class-sample that is not used (fully masked)
    values = torch.cat([out.values, torch.zeros(1)])
    used = torch.cat([out.used, torch.tensor([False])])
    extra, extra_used = prototype_alignment_per_sample(
        torch.randn(1, 2, 2, 2), torch.ones(1, 4, 4, dtype=torch.bool), torch.ones(1, 4, 4, dtype=torch.bool), min_weight=0.5
    )
    assert not extra_used.any()
    res = SampleLosses(torch.cat([out.values, extra]), torch.cat([out.used, extra_used]), torch.tensor([0, 0, 1]))
    assert res.weighted_mean(torch.tensor([0.5, 0.8])).item() == pytest.approx(0.1510258, abs=1e-7)
    assert res.mean().item() == pytest.approx(0.3020516, abs=1e-7)
    assert mean_over_used(values, used).item() == pytest.approx(0.3020516, abs=1e-7)
