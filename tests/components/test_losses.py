"""Tests of methods/components/losses.py (imas spec E6, s4mim spec W5, baselines spec §2)."""

import math

import pytest
import torch

from methods.components.losses import (
    confident_mask,
    imas_unsup_loss,
    masked_ce_sums,
    pixel_ce,
    reduce_ce_per_image,
    reduce_ce_pooled,
    sigmoid_rampup,
    softmax_consistency,
    thresholded_ce_batch,
    thresholded_ce_per_image,
    unimatch_unsup_loss,
)


def _logits_for_ce(ce):
    """Two-class logits whose CE against class 0 equals ``ce`` (B×H×W > 0)."""
    ce = torch.as_tensor(ce, dtype=torch.float64)
    return torch.stack([torch.zeros_like(ce), torch.log(torch.expm1(ce))], dim=1)


E6_CE = torch.tensor([[[0.2, 0.4], [1.0, 2.0]], [[0.1, 0.1], [0.1, 0.1]]], dtype=torch.float64)
E6_CONF = torch.tensor([[[0.99, 0.99], [0.5, 0.5]], [[0.99, 0.99], [0.99, 0.99]]])
E6_H = torch.tensor([0.5, 0.8])


def test_pixel_ce():
    logits = _logits_for_ce(E6_CE)
    target = torch.zeros(2, 2, 2, dtype=torch.long)
    assert torch.allclose(pixel_ce(logits, target), E6_CE)
    target[0, 0, 0] = 255
    ce = pixel_ce(logits, target)
    assert ce[0, 0, 0] == 0 and torch.allclose(ce[0, 0, 1], E6_CE[0, 0, 1])


def test_e6_imas_normalisation():
    keep = confident_mask(E6_CONF, 0.95)
    per_image = reduce_ce_per_image(E6_CE, keep, "all_pixels")
    assert per_image.tolist() == pytest.approx([0.15, 0.1])
    loss = (E6_H.double() * per_image).mean()
    assert loss.item() == pytest.approx(0.0775)
    assert 3 * loss.item() == pytest.approx(0.2325)
    # through logits
    logits = _logits_for_ce(E6_CE)
    pseudo = torch.zeros(2, 2, 2, dtype=torch.long)
    assert thresholded_ce_per_image(logits, pseudo, E6_CONF, 0.95).tolist() == pytest.approx([0.15, 0.1])
    assert imas_unsup_loss(logits, pseudo, E6_CONF, E6_H, 0.95).item() == pytest.approx(0.0775)
    assert imas_unsup_loss(logits, pseudo, E6_CONF, None, 0.95).item() == pytest.approx(0.125)


def test_e6_contrasts():
    keep = confident_mask(E6_CONF, 0.95)
    assert reduce_ce_pooled(E6_CE, keep, "valid_pixels").item() == pytest.approx(0.125)
    assert reduce_ce_pooled(E6_CE, keep, "confident_pixels").item() == pytest.approx(1.0 / 6)
    logits, pseudo = _logits_for_ce(E6_CE), torch.zeros(2, 2, 2, dtype=torch.long)
    assert thresholded_ce_batch(logits, pseudo, E6_CONF, 0.95, "valid_pixels").item() == pytest.approx(0.125)
    assert thresholded_ce_batch(logits, pseudo, E6_CONF, 0.95, "confident_pixels").item() == pytest.approx(
        1.0 / 6
    )
    # per-image variants
    assert reduce_ce_per_image(E6_CE, keep, "valid_pixels").mean().item() == pytest.approx(0.125)
    assert reduce_ce_per_image(E6_CE, keep, "confident_pixels").tolist() == pytest.approx([0.3, 0.1])
    with pytest.raises(ValueError):
        reduce_ce_per_image(E6_CE, keep, "bogus")


def test_exclude_padding_keeps_hw_denominator():
    valid = torch.ones(2, 2, 2, dtype=torch.bool)
    valid[0, 0, 1] = False
    logits, pseudo = _logits_for_ce(E6_CE), torch.zeros(2, 2, 2, dtype=torch.long)
    out = thresholded_ce_per_image(logits, pseudo, E6_CONF, 0.95, "all_pixels", valid)
    assert out.tolist() == pytest.approx([0.2 / 4, 0.1])
    out = thresholded_ce_per_image(logits, pseudo, E6_CONF, 0.95, "valid_pixels", valid)
    assert out.tolist() == pytest.approx([0.2 / 3, 0.1])


W5_CE = torch.tensor([[[0.3, 0.7], [0.1, 0.9]]], dtype=torch.float64)
W5_CONF = torch.tensor([[[0.99, 0.50], [0.97, 0.99]]])
W5_VALID = torch.tensor([[[True, True], [True, False]]])


def test_w5_unimatch_normaliser():
    logits, pseudo = _logits_for_ce(W5_CE), torch.zeros(1, 2, 2, dtype=torch.long)
    num, counts = masked_ce_sums(logits, pseudo, W5_CONF, W5_VALID, 0.95)
    assert num.tolist() == pytest.approx([0.4]) and counts.tolist() == [3.0]
    assert unimatch_unsup_loss(logits, pseudo, W5_CONF, W5_VALID, 0.95).item() == pytest.approx(0.4 / 3)
    assert unimatch_unsup_loss(logits, pseudo, W5_CONF, W5_VALID, 0.0).item() == pytest.approx(1.1 / 3)
    # batch: Σ numerators / Σ valid counts (combined spec worked example, unweighted: 1.2/7)
    ce2 = torch.cat([W5_CE, torch.full((1, 2, 2), 0.2, dtype=torch.float64)])
    conf2 = torch.cat([W5_CONF, torch.ones(1, 2, 2)])
    valid2 = torch.cat([W5_VALID, torch.ones(1, 2, 2, dtype=torch.bool)])
    loss = unimatch_unsup_loss(_logits_for_ce(ce2), torch.zeros(2, 2, 2, dtype=torch.long), conf2, valid2, 0.95)
    assert loss.item() == pytest.approx(1.2 / 7)
    num, counts = masked_ce_sums(_logits_for_ce(ce2), torch.zeros(2, 2, 2, dtype=torch.long), conf2, valid2, 0.95)
    assert ((torch.tensor([0.5, 0.8], dtype=torch.float64) * num).sum() / counts.sum()).item() == pytest.approx(0.12)


def test_losses_have_gradient_only_through_logits():
    logits = _logits_for_ce(E6_CE).float().requires_grad_(True)
    conf = E6_CONF.clone().requires_grad_(True)
    loss = imas_unsup_loss(logits, torch.zeros(2, 2, 2, dtype=torch.long), conf, E6_H, 0.95)
    loss.backward()
    assert logits.grad is not None and conf.grad is None
    assert logits.grad[0, :, 1, 0].abs().sum() == 0  # unconfident pixel: no gradient


def test_softmax_consistency():
    p_s = torch.tensor([0.7, 0.2, 0.1]).view(1, 3, 1, 1)
    p_t = torch.tensor([0.5, 0.5, 0.0]).view(1, 3, 1, 1)
    assert softmax_consistency(p_s, p_t).item() == pytest.approx(0.14)
    # a second, padded pixel with a large difference is ignored
    p_s2 = torch.cat([p_s, torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)], dim=3)
    p_t2 = torch.cat([p_t, torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)], dim=3)
    valid = torch.tensor([[[True, False]]])
    assert softmax_consistency(p_s2, p_t2, valid).item() == pytest.approx(0.14)
    assert softmax_consistency(p_s2, p_t2).item() == pytest.approx((0.14 + 2.0) / 2)
    assert softmax_consistency(p_s2, p_t2, torch.zeros(1, 1, 2, dtype=torch.bool)).item() == 0.0


def test_sigmoid_rampup():
    T = 1000
    assert sigmoid_rampup(0, T) == pytest.approx(0.006738, abs=1e-6)
    assert sigmoid_rampup(0, T) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(50, T) == pytest.approx(0.286505, abs=1e-6)
    assert sigmoid_rampup(100, T) == 1.0 and sigmoid_rampup(5000, T) == 1.0
    assert sigmoid_rampup(50, T, scale=10.0) == pytest.approx(2.86505, abs=1e-5)
    assert sigmoid_rampup(0, 0) == 1.0
