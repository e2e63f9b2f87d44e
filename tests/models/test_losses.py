"""Supervised losses: CE with ignore and OHEM per group (benchmarks spec §5)."""

import math

import pytest
import torch
import torch.nn.functional as F

from harness.train.losses import build_supervised_loss, cross_entropy, ohem_cross_entropy
from harness.protocols import SupervisedLoss


def two_class_logits(p_gt, target):
    """1×2×1×N logits whose softmax gives probability p_gt[i] to class target[i]."""
    p = torch.tensor(p_gt, dtype=torch.float64)
    t = torch.tensor(target)
    p0 = torch.where(t == 1, 1 - p, p)
    logits = torch.stack([p0.log(), (1 - p0).log()]).reshape(1, 2, 1, -1)
    return logits, t.reshape(1, 1, -1)


def test_ce_mean_over_valid_pixels():
    logits, target = two_class_logits([0.9, 0.6, 0.3, 0.8, 0.5], [0, 1, 0, 1, 0])
    target[0, 0, 4] = 255
    expected = -(math.log(0.9) + math.log(0.6) + math.log(0.3) + math.log(0.8)) / 4
    assert cross_entropy(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert build_supervised_loss(SupervisedLoss(type="ce"))(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_ce_all_ignored_is_zero_with_graph():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = cross_entropy(logits, torch.full((1, 2, 2), 255))
    assert loss.item() == 0.0
    loss.backward()


P = [0.9, 0.6, 0.3, 0.8, 0.5]  # last pixel ignored -> valid probs 0.9, 0.6, 0.3, 0.8


def ohem(min_kept, thresh=0.7):
    logits, target = two_class_logits(P, [0, 1, 1, 0, 0])
    target[0, 0, 4] = 255
    return ohem_cross_entropy(logits, target, thresh=thresh, min_kept=min_kept, group=2).item()


def nll(*ps):
    return -sum(math.log(p) for p in ps) / len(ps)


def test_ohem_threshold_is_thresh_when_kth_is_lower():
    # 2nd smallest = 0.6 < 0.7 -> threshold 0.7 -> keep 0.6, 0.3
    assert ohem(2) == pytest.approx(nll(0.6, 0.3), rel=1e-6)


def test_ohem_threshold_is_kth_prob_inclusive():
    # 3rd smallest = 0.8 > 0.7 -> threshold 0.8, kept "at or below": 0.3, 0.6, 0.8
    assert ohem(3) == pytest.approx(nll(0.3, 0.6, 0.8), rel=1e-6)
    assert ohem(4) == pytest.approx(nll(0.3, 0.6, 0.8, 0.9), rel=1e-6)


def test_ohem_too_few_valid_keeps_all_valid():
    assert ohem(5) == pytest.approx(nll(0.9, 0.6, 0.3, 0.8), rel=1e-6)  # 4 valid < 5
    assert ohem(5, thresh=0.0) == pytest.approx(nll(0.9, 0.6, 0.3, 0.8), rel=1e-6)


def test_ohem_per_group_average():
    # image A: probs 0.9, 0.2 ; image B: probs 0.5, 0.5, 0.95 ... as 1×3 rows (A's 3rd pixel ignored)
    la, ta = two_class_logits([0.9, 0.2, 0.5], [0, 0, 0])
    ta[0, 0, 2] = 255
    lb, tb = two_class_logits([0.5, 0.4, 0.95], [1, 1, 1])
    logits, target = torch.cat([la, lb]), torch.cat([ta, tb])
    # min_kept 1, thresh 0.7: keep probs <= 0.7 in each group
    per_image = ohem_cross_entropy(logits, target, thresh=0.7, min_kept=1, group=1).item()
    assert per_image == pytest.approx((nll(0.2) + nll(0.5, 0.4)) / 2, rel=1e-6)
    pooled = ohem_cross_entropy(logits, target, thresh=0.7, min_kept=1, group=2).item()
    assert pooled == pytest.approx(nll(0.2, 0.5, 0.4), rel=1e-6)
    # the protocol's loss object groups by spec.group
    spec_loss = build_supervised_loss(SupervisedLoss(type="ohem", thresh=0.7, min_kept=1, group=1))
    assert spec_loss(logits, target).item() == pytest.approx(per_image, rel=1e-6)


def _reference_ohem(pred, target, thresh, min_kept, ignore_index=255):
    """The reference ProbOhemCrossEntropy2d logic (one device batch)."""
    b, c, h, w = pred.size()
    target = target.view(-1)
    valid_mask = target.ne(ignore_index)
    target = target * valid_mask.long()
    num_valid = valid_mask.sum()
    prob = F.softmax(pred, dim=1).transpose(0, 1).reshape(c, -1)
    if min_kept > num_valid:
        pass
    elif num_valid > 0:
        prob = prob.masked_fill_(~valid_mask, 1)
        mask_prob = prob[target, torch.arange(len(target), dtype=torch.long)]
        threshold = thresh
        if min_kept > 0:
            _, index = mask_prob.sort()
            threshold_index = index[min(len(index), min_kept) - 1]
            if mask_prob[threshold_index] > thresh:
                threshold = mask_prob[threshold_index]
            kept_mask = mask_prob.le(threshold)
            target = target * kept_mask.long()
            valid_mask = valid_mask * kept_mask
    target = target.masked_fill_(~valid_mask, ignore_index).view(b, h, w)
    return F.cross_entropy(pred, target, ignore_index=ignore_index)


@pytest.mark.parametrize("min_kept", [0, 50, 300, 2000])
def test_ohem_matches_reference_per_group(min_kept):
    g = torch.Generator().manual_seed(min_kept)
    logits = torch.randn(4, 6, 16, 16, generator=g) * 3
    target = torch.randint(0, 6, (4, 16, 16), generator=g)
    target[torch.rand(4, 16, 16, generator=g) < 0.2] = 255
    ours = ohem_cross_entropy(logits, target, thresh=0.7, min_kept=min_kept, group=2)
    ref = (_reference_ohem(logits[:2], target[:2].clone(), 0.7, min_kept)
           + _reference_ohem(logits[2:], target[2:].clone(), 0.7, min_kept)) / 2
    torch.testing.assert_close(ours, ref)


def test_ohem_backward():
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    loss = build_supervised_loss(SupervisedLoss(type="ohem", min_kept=10))(logits, torch.randint(0, 3, (2, 8, 8)))
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
