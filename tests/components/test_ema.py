"""Tests of methods/components/ema.py (imas spec §5, E10; baselines spec §2)."""

import pytest
import torch
from torch import nn

from methods.components.ema import EMATeacher, imas_decay, mean_teacher_decay


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def _perturb(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    model.train()
    model(torch.randn(2, 3, 5, 5, generator=g))  # updates BN running stats and num_batches_tracked


def test_deep_copy_no_grad_eval():
    s = _net()
    t = EMATeacher(s)
    for (n1, p1), (n2, p2) in zip(s.named_parameters(), t.module.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2) and p1.data_ptr() != p2.data_ptr()
        assert not p2.requires_grad
    for (_, b1), (_, b2) in zip(s.named_buffers(), t.module.named_buffers()):
        assert torch.equal(b1, b2) and b1.data_ptr() != b2.data_ptr()
    assert not t.module.training
    _perturb(s)
    assert not torch.equal(s[0].weight, t.module[0].weight)  # no aliasing


def test_call_is_eval_and_no_grad():
    s = _net()
    t = EMATeacher(s)
    t.module.train()
    x = torch.randn(2, 3, 5, 5)
    before = t.module[1].running_mean.clone()
    out = t(x)
    assert not out.requires_grad and not t.module.training
    assert torch.equal(t.module[1].running_mean, before)


def test_alpha_zero_copies_student():
    s = _net()
    t = EMATeacher(s)
    _perturb(s)
    t.update(s, 0.0)
    for a, b in zip(s.state_dict().values(), t.state_dict().values()):
        assert torch.equal(a, b)


def test_average_and_integer_buffers_copied():
    s = _net()
    t = EMATeacher(s)
    old = {k: v.clone() for k, v in t.state_dict().items()}
    _perturb(s)
    t.update(s, 0.75)
    new_s = s.state_dict()
    for k, v in t.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, 0.75 * old[k] + 0.25 * new_s[k], atol=1e-6), k
        else:
            assert torch.equal(v, new_s[k]), k  # num_batches_tracked copied, not averaged
    assert t.module[1].num_batches_tracked.item() == 1
    t.update(s, 1.0)
    assert torch.allclose(t.module[0].weight, 0.75 * old["0.weight"] + 0.25 * new_s["0.weight"])


def test_state_dict_roundtrip():
    s = _net()
    t = EMATeacher(s)
    _perturb(s)
    t.update(s, 0.5)
    sd = {k: v.clone() for k, v in t.state_dict().items()}
    t2 = EMATeacher(_net())
    t2.load_state_dict(sd)
    for k, v in t2.state_dict().items():
        assert torch.equal(v, sd[k])
    assert not t2.module.training


def test_structure_mismatch_raises():
    t = EMATeacher(_net())
    with pytest.raises(ValueError):
        t.update(nn.Linear(2, 2), 0.5)


def test_imas_decay_e10():
    L = 570
    assert all(imas_decay(i, L) == 0.0 for i in (0, 1, 300, 569))
    assert imas_decay(570, L) == 0.996
    L = 93
    assert imas_decay(92, L) == 0.0
    assert imas_decay(93, L) == pytest.approx(1 - 1 / 94) == pytest.approx(0.9893617, abs=1e-7)
    assert imas_decay(200, L) == pytest.approx(0.9950249, abs=1e-7)
    assert imas_decay(248, L) == pytest.approx(0.9959839, abs=1e-7)
    assert imas_decay(249, L) == 0.996
    assert imas_decay(10_000, L) == 0.996


def test_imas_decay_options():
    assert imas_decay(5, 10, zero_first_epoch=False) == pytest.approx(1 - 1 / 6)
    assert imas_decay(0, 10, zero_first_epoch=False) == 0.0
    # sup_only_epochs = 2, L = 10: zero while epoch <= 2 (i < 30), then 1 - 1/(i - 20 + 1)
    assert imas_decay(29, 10, sup_only_epochs=2) == 0.0
    assert imas_decay(30, 10, sup_only_epochs=2) == pytest.approx(1 - 1 / 11)
    assert imas_decay(19, 10, sup_only_epochs=2, zero_first_epoch=False) == 0.0
    assert imas_decay(21, 10, sup_only_epochs=2, zero_first_epoch=False) == pytest.approx(0.5)
    assert imas_decay(10_000, 10, cap=0.99) == 0.99


def test_mean_teacher_decay():
    assert mean_teacher_decay(0) == 0.0
    assert mean_teacher_decay(1) == pytest.approx(0.5)
    assert mean_teacher_decay(9) == pytest.approx(0.9)
    assert mean_teacher_decay(99) == pytest.approx(0.99)
    assert mean_teacher_decay(5000) == 0.99
    assert mean_teacher_decay(5000, cap=0.999) == 0.999
