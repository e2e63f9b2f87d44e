"""Dataset-level confusion matrix and mIoU: the worked example of benchmarks spec §7."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

from harness.errors import DataError
from harness.evaluation.metrics import ConfusionMatrix

GT_A = torch.tensor([[0, 0, 1], [1, 1, 255]])
PRED_A = torch.tensor([[0, 1, 1], [1, 2, 0]])
GT_B = torch.tensor([[2, 2, 0], [0, 0, 1]])
PRED_B = torch.tensor([[2, 0, 0], [0, 0, 1]])


def example(images):
    cm = ConfusionMatrix(4)
    for pred, gt in images:
        cm.update(pred, gt)
    return cm


def test_worked_example():
    cm = example([(PRED_A, GT_A), (PRED_B, GT_B)])
    assert cm.numpy().tolist() == [[4, 1, 0, 0], [0, 3, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    iou = cm.iou()
    np.testing.assert_allclose(iou[:3], [2 / 3, 3 / 5, 1 / 3])
    assert math.isnan(iou[3])
    assert cm.miou() == pytest.approx(53.3333333, abs=1e-6)
    assert round(cm.miou(), 2) == 53.33


def test_wrong_conventions_give_other_numbers():
    cm = example([(PRED_A, GT_A), (PRED_B, GT_B)])
    absent_as_zero = 100 * np.nan_to_num(cm.iou()).mean()
    assert round(absent_as_zero, 2) == 40.00 and round(cm.miou(), 2) != 40.00
    per_image = (example([(PRED_A, GT_A)]).miou() + example([(PRED_B, GT_B)]).miou()) / 2
    assert round(example([(PRED_A, GT_A)]).miou(), 2) == 33.33 and round(example([(PRED_B, GT_B)]).miou(), 2) == 75.00
    assert round(per_image, 2) == 54.17 and round(cm.miou(), 2) != 54.17
    twice = example([(PRED_A, GT_A), (PRED_A, GT_A), (PRED_B, GT_B)])  # sampler padding duplicates A
    np.testing.assert_allclose(twice.iou()[:3], [0.625, 5 / 9, 0.25])
    assert round(twice.miou(), 2) == 47.69


def test_merge_equals_joint_update():
    a, b = example([(PRED_A, GT_A)]), example([(PRED_B, GT_B)])
    joint = example([(PRED_A, GT_A), (PRED_B, GT_B)])
    assert a.merge(b).numpy().tolist() == joint.numpy().tolist()
    assert a.all_reduce() is a  # no process group: no-op


def test_agrees_with_sklearn_random():
    g = torch.Generator().manual_seed(0)
    k = 7
    cm = ConfusionMatrix(k)
    gts, preds = [], []
    for _ in range(5):
        gt = torch.randint(0, k, (13, 17), generator=g)
        gt[torch.rand(13, 17, generator=g) < 0.15] = 255
        pred = torch.randint(0, k, (13, 17), generator=g)
        cm.update(pred, gt)
        gts.append(gt.flatten())
        preds.append(pred.flatten())
    gt, pred = torch.cat(gts), torch.cat(preds)
    m = gt != 255
    ref = confusion_matrix(gt[m].numpy(), pred[m].numpy(), labels=list(range(k)))
    np.testing.assert_array_equal(cm.numpy(), ref)
    assert cm.numpy().sum() == int(m.sum())


def test_bad_ground_truth_values_named():
    cm = ConfusionMatrix(4)
    with pytest.raises(DataError, match=r"\[4, 254\]"):
        cm.update(torch.zeros(2, 3, dtype=torch.long), torch.tensor([[0, 4, 254], [255, 1, 4]]))
    with pytest.raises(ValueError, match="prediction"):
        cm.update(torch.tensor([[5]]), torch.tensor([[0]]))


def test_all_absent_is_nan():
    cm = ConfusionMatrix(3)
    cm.update(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 255))
    assert math.isnan(cm.miou())


def test_pseudo_label_quality_worked_example():
    """The §7 example's matrix as ``full``; a subset of its pixels passes the threshold."""
    from harness.evaluation.metrics import pseudo_label_quality

    full = np.array([[4, 1, 0, 0], [0, 3, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    kept = np.array([[3, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    q = pseudo_label_quality(full, kept)
    assert q["coverage"] == pytest.approx(8 / 11)
    assert q["accuracy"] == pytest.approx(6 / 8)
    assert q["accuracy_all"] == pytest.approx(8 / 11)
    np.testing.assert_allclose(q["precision"], [3 / 4, 2 / 3, 1, np.nan])
    np.testing.assert_allclose(q["share"], [4 / 8, 3 / 8, 1 / 8, 0])
    np.testing.assert_allclose(q["recall"], [3 / 5, 2 / 4, 1 / 2, np.nan])
    np.testing.assert_allclose(q["wrong"], [1 / 5, 0, 1 / 2, np.nan])
    # every pixel kept: precision of the kept pixels is the plain pixel accuracy
    assert pseudo_label_quality(full, full)["accuracy"] == pytest.approx(8 / 11)
    with pytest.raises(ValueError, match="subset"):
        pseudo_label_quality(kept, full)
    with pytest.raises(ValueError, match="K×K"):
        pseudo_label_quality(full, kept[:3, :3])
