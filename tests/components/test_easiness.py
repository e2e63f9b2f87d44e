"""Tests of methods/components/easiness.py (imas spec §2, E1–E5)."""

import pytest
import torch

from methods.components.easiness import (
    confident_ratio,
    confusion_matrices,
    easiness,
    easiness_terms,
    weighted_iou,
)

TAU, K = 0.95, 3


def _t(rows, dtype=torch.long):
    return torch.tensor(rows, dtype=dtype).unsqueeze(0)


E1_PT = _t([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
E1_PS = _t([[0, 0, 0, 0], [0, 1, 2, 0], [0, 1, 2, 0], [0, 0, 0, 0]])


def _e1_conf():
    m_t = torch.full((1, 4, 4), 0.99)
    m_t[0, 0, 0], m_t[0, 3, 3] = 0.90, 0.94
    m_s = torch.full((1, 4, 4), 0.97)
    m_s[0, 1, 1], m_s[0, 1, 2], m_s[0, 2, 1], m_s[0, 2, 2] = 0.60, 0.55, 0.80, 0.90
    return m_s, m_t


def _h(P_s, P_t, m_s, m_t, ignore0=True, **kw):
    return easiness((P_s, m_s), (P_t, m_t), TAU, K, ignore_class0=ignore0, **kw)


def test_e1():
    m_s, m_t = _e1_conf()
    assert confident_ratio(m_t, TAU).item() == pytest.approx(0.875)
    assert confident_ratio(m_s, TAU).item() == pytest.approx(0.75)
    t = easiness_terms((E1_PS, m_s), (E1_PT, m_t), TAU, K)
    assert t.wiou_t.item() == pytest.approx(0.5) and t.wiou_s.item() == pytest.approx(0.25)
    assert t.h.item() == pytest.approx(0.3125)
    assert weighted_iou(E1_PS, E1_PT, K).item() == pytest.approx(0.5)
    assert weighted_iou(E1_PT, E1_PS, K).item() == pytest.approx(0.25)
    assert weighted_iou(E1_PS, E1_PT, K, ignore_class0=False).item() == pytest.approx(0.875)
    assert weighted_iou(E1_PT, E1_PS, K, ignore_class0=False).item() == pytest.approx(0.8125)
    assert _h(E1_PS, E1_PT, m_s, m_t, False).item() == pytest.approx(0.6875)


def test_e2_all_class0():
    m_s, m_t = _e1_conf()
    z = torch.zeros(1, 4, 4, dtype=torch.long)
    assert _h(z, z, m_s, m_t).item() == 0.0
    assert _h(z, z, m_s, m_t, False).item() == pytest.approx(0.8125)
    assert _h(z, z, m_s, m_t, all_class0_easiness=1.0).item() == 1.0
    # the override only applies when BOTH maps are all class 0 (E3 stays 0)
    P_s = z.clone()
    P_s[0, 0, :2] = 2
    assert _h(P_s, z, m_s, m_t, all_class0_easiness=1.0).item() == 0.0


def test_e3_teacher_all_class0():
    m_s, m_t = _e1_conf()
    P_t = torch.zeros(1, 4, 4, dtype=torch.long)
    P_s = P_t.clone()
    P_s[0, 0, 0] = P_s[0, 0, 1] = 2
    t = easiness_terms((P_s, m_s), (P_t, m_t), TAU, K)
    assert t.wiou_t.item() == 0.0 and t.wiou_s.item() == 0.0 and t.h.item() == 0.0
    t = easiness_terms((P_s, m_s), (P_t, m_t), TAU, K, ignore_class0=False)
    assert t.wiou_t.item() == pytest.approx(0.875)
    assert t.wiou_s.item() == pytest.approx(0.765625)
    assert t.h.item() == pytest.approx(0.669921875)
    # student all class 0 (symmetric case) also gives h = 0
    assert _h(P_t, P_s, m_s, m_t).item() == 0.0


def test_e4_identical_maps():
    m_s, m_t = _e1_conf()
    for flag in (True, False):
        assert _h(E1_PT, E1_PT, m_s, m_t, flag).item() == pytest.approx(0.8125)


def test_e5():
    P_t = _t([[0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [2, 2, 2, 0, 0, 0], [2, 2, 2, 0, 0, 0]])
    P_s = _t([[0, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 0], [2, 2, 0, 0, 0, 0], [2, 2, 2, 2, 0, 0]])
    m_t = torch.full((1, 4, 6), 0.99)
    m_t[0, 0, 0] = m_t[0, 2, 3] = 0.5
    m_s = torch.full((1, 4, 6), 0.99)
    for r, c in [(0, 1), (0, 5), (1, 5), (2, 2)]:
        m_s[0, r, c] = 0.6
    cm = confusion_matrices(P_s, P_t, K)[0]
    assert cm.sum(dim=0).tolist() == [10, 8, 6] and cm.sum(dim=1).tolist() == [11, 7, 6]
    t = easiness_terms((P_s, m_s), (P_t, m_t), TAU, K)
    assert t.rho_t.item() == pytest.approx(22 / 24) and t.rho_s.item() == pytest.approx(20 / 24)
    assert t.wiou_t.item() == pytest.approx(101 / 147)
    assert t.wiou_s.item() == pytest.approx(188 / 273)
    assert t.h.item() == pytest.approx(3067 / 5096)
    t = easiness_terms((P_s, m_s), (P_t, m_t), TAU, K, ignore_class0=False)
    assert t.wiou_t.item() == pytest.approx(2153 / 3276)
    assert t.wiou_s.item() == pytest.approx(1073 / 1638)
    assert t.h.item() == pytest.approx(6449 / 11232)


def test_batch_vectorised_matches_single_images():
    m_s, m_t = _e1_conf()
    P_s = torch.cat([E1_PS, torch.zeros_like(E1_PS), E1_PT])
    P_t = torch.cat([E1_PT, torch.zeros_like(E1_PT), E1_PT])
    h = _h(P_s, P_t, m_s.expand(3, 4, 4), m_t.expand(3, 4, 4))
    assert h.shape == (3,) and h.dtype == torch.float32
    assert h.tolist() == pytest.approx([0.3125, 0.0, 0.8125])


def test_probability_inputs():
    g = torch.Generator().manual_seed(0)
    p_s = torch.softmax(3 * torch.randn(4, 5, 6, 7, generator=g), dim=1)
    p_t = torch.softmax(3 * torch.randn(4, 5, 6, 7, generator=g), dim=1)
    m_s, P_s = p_s.max(dim=1)
    m_t, P_t = p_t.max(dim=1)
    a = easiness(p_s, p_t, 0.7, 5)
    b = easiness((P_s, m_s), (P_t, m_t), 0.7, 5)
    assert torch.equal(a, b)


def test_random_maps_in_unit_interval():
    g = torch.Generator().manual_seed(1)
    for K_ in (2, 5, 21):
        P_s = torch.randint(0, K_, (8, 9, 10), generator=g)
        P_t = torch.randint(0, K_, (8, 9, 10), generator=g)
        m_s, m_t = torch.rand(8, 9, 10, generator=g), torch.rand(8, 9, 10, generator=g)
        for flag in (True, False):
            for w in (True, False):
                h = easiness((P_s, m_s), (P_t, m_t), 0.5, K_, ignore_class0=flag, weighted=w)
                assert ((h >= 0) & (h <= 1)).all()


def test_identical_full_confidence_is_one():
    g = torch.Generator().manual_seed(2)
    P = torch.randint(0, 4, (5, 6, 6), generator=g)
    P[:, 0, 0] = 2  # a non-zero class is present in every image
    ones = torch.ones(5, 6, 6)
    for flag in (True, False):
        assert torch.allclose(easiness((P, ones), (P, ones), 0.95, 4, ignore_class0=flag), torch.ones(5))


def test_confidence_threshold_inclusive():
    m = torch.tensor([[[0.95, 0.9499], [1.0, 0.0]]])
    assert confident_ratio(m, 0.95).item() == pytest.approx(0.5)


def test_valid_mask_excludes_padding():
    m_s, m_t = _e1_conf()
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    assert _h(E1_PS, E1_PT, m_s, m_t, valid=valid).item() == pytest.approx(0.3125)
    # padding the right column (all class 0) out: only changes rho here
    valid[0, :, 3] = False
    t = easiness_terms((E1_PS, m_s), (E1_PT, m_t), TAU, K, valid=valid)
    assert t.rho_t.item() == pytest.approx(11 / 12) and t.rho_s.item() == pytest.approx(8 / 12)
    assert t.wiou_t.item() == pytest.approx(0.5)
    # padding-only image -> 0
    assert _h(E1_PS, E1_PT, m_s, m_t, valid=torch.zeros(1, 4, 4, dtype=torch.bool)).item() == 0.0


def test_unweighted_mean_iou():
    # IoU = [1 (class 0: 12/12), 1/2, 0]; ignore class 0 -> mean(1/2, 0) = 0.25; else (12/12 + 1/2 + 0)/3
    assert weighted_iou(E1_PS, E1_PT, K, weighted=False).item() == pytest.approx(0.25)
    assert weighted_iou(E1_PS, E1_PT, K, ignore_class0=False, weighted=False).item() == pytest.approx(0.5)
