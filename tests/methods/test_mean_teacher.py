"""Tests of the mean-teacher plugin (methods/mean_teacher.py, baselines spec §2)."""

import copy
import math

import pytest
import torch

from harness.augment import normalize, unimatch_cutmix_boxes, unimatch_strong
from harness.train.losses import cross_entropy
from harness.models import build_model
from methods.mean_teacher import MeanTeacher
from tests.methods.helpers import SPEC, make_batch, make_context, params_and_buffers, sgd_step

K = 3


def _context(total_steps=100):
    return make_context(K, total_steps=total_steps)


def _batch(n, labeled, seed):
    return make_batch(n, labeled, seed, K)


def _method(total_steps=100, **cfg):
    torch.manual_seed(0)
    model = build_model(SPEC, K).train()
    return MeanTeacher(model, MeanTeacher.Config(**cfg), _context(total_steps))


def _sgd_step(method, opt, step, seed=0):
    return sgd_step(method, opt, step, _batch(2, True, 100 + seed), _batch(4, False, 200 + seed))


def test_config_defaults():
    c = MeanTeacher.Config()
    assert (c.lambda_c, c.rampup_fraction, c.ema_decay, c.cutmix, c.cutmix_prob) == (1.0, 0.1, 0.99, False, 0.5)
    with pytest.raises(Exception):
        MeanTeacher.Config(unknown=1)


def test_rampup_and_alpha_values():
    m = _method(total_steps=100, lambda_c=10.0)  # ramp over the first 10 steps
    assert m.consistency_weight(0) == pytest.approx(10 * math.exp(-5))  # 0.06738
    assert m.consistency_weight(5) == pytest.approx(10 * 0.286505, rel=1e-5)
    assert m.consistency_weight(10) == m.consistency_weight(99) == pytest.approx(10.0)
    assert [m.ema_alpha(i) for i in (0, 1, 9)] == pytest.approx([0.0, 0.5, 0.9])
    assert m.ema_alpha(99) == m.ema_alpha(5000) == pytest.approx(0.99)
    assert _method(ema_decay=0.999).ema_alpha(5000) == pytest.approx(0.999)
    # the weight the step actually uses is logged
    out = m.training_step(_batch(2, True, 1), _batch(4, False, 2), 5)
    assert out.logs["w_cons"] == pytest.approx(10 * math.exp(-1.25))


def test_teacher_copies_student_after_step0_then_lags():
    m = _method()
    opt = torch.optim.SGD(m.model.parameters(), lr=0.1)
    _sgd_step(m, opt, 0)
    s, t = params_and_buffers(m.model), params_and_buffers(m.teacher.module)
    assert all(torch.equal(s[k], t[k]) for k in s)  # α_0 = 0
    prev = {k: v.clone() for k, v in t.items()}
    _sgd_step(m, opt, 1, seed=1)
    s, t = params_and_buffers(m.model), params_and_buffers(m.teacher.module)
    assert not torch.equal(s["classifier.weight"], t["classifier.weight"])  # the teacher lags
    for k, v in s.items():
        if v.is_floating_point():
            torch.testing.assert_close(t[k], 0.5 * prev[k] + 0.5 * v)  # α_1 = 0.5
        else:
            assert torch.equal(t[k], v)  # integer buffers copied


@pytest.mark.parametrize("cutmix", [False, True])
def test_consistency_matches_manual_computation(cutmix):
    m = _method(total_steps=100, cutmix=cutmix, cutmix_prob=1.0)
    lab, unl = _batch(2, True, 1), _batch(4, False, 2)
    torch.manual_seed(7)
    out = m.training_step(lab, unl, 3)

    torch.manual_seed(7)  # replay the draws: strong view, then (cutmix) boxes and the permutation
    x_str = normalize(unimatch_strong(unl.raw))
    with torch.no_grad():
        p_t = torch.softmax(copy.deepcopy(m.teacher.module).eval()(unl.image), dim=1)
    valid = unl.valid
    if cutmix:
        box = unimatch_cutmix_boxes(4, 32, 1.0)
        perm = torch.randperm(4)
        assert box.any(dim=(1, 2)).all()
        x_str = torch.where(box[:, None], x_str[perm], x_str)
        p_t = torch.where(box[:, None], p_t[perm], p_t)
        valid = torch.where(box, valid[perm], valid)
    z = m.model(torch.cat([lab.image, x_str]))
    p_s = torch.softmax(z[2:], dim=1)
    manual = ((p_s - p_t) ** 2).sum(dim=1)[valid].mean()
    loss_x = cross_entropy(z[:2], lab.label)
    w = math.exp(-5 * (1 - 0.3) ** 2)
    torch.testing.assert_close(out.logs["loss_cons"], manual.detach())
    torch.testing.assert_close(out.loss, loss_x + w * manual)


def test_student_gets_gradient_teacher_none():
    m = _method()
    out = m.training_step(_batch(2, True, 1), _batch(4, False, 2), 50)
    out.loss.backward()
    assert all(p.grad is not None for p in m.model.parameters())
    assert all(p.grad is None and not p.requires_grad for p in m.teacher.module.parameters())
    assert m.eval_model() is m.teacher.module and not m.eval_model().training
    assert m.secondary_eval_models() == {"student": m.model}


def test_state_dict_round_trip():
    m = _method()
    opt = torch.optim.SGD(m.model.parameters(), lr=0.1)
    for i in range(2):
        _sgd_step(m, opt, i, seed=i)
    state = copy.deepcopy(m.state_dict())
    fresh = MeanTeacher(copy.deepcopy(m.model), m.config, _context())
    fresh.load_state_dict(state)
    t1, t2 = params_and_buffers(m.teacher.module), params_and_buffers(fresh.teacher.module)
    assert all(torch.equal(t1[k], t2[k]) for k in t1)
    assert not fresh.teacher.module.training
    torch.manual_seed(3)
    a = m.training_step(_batch(2, True, 9), _batch(4, False, 9), 2).loss
    torch.manual_seed(3)
    b = fresh.training_step(_batch(2, True, 9), _batch(4, False, 9), 2).loss
    assert torch.equal(a, b)


def test_registered_as_plugin():
    from harness.plugins import get_plugin_manager

    assert get_plugin_manager().methods.get("mean_teacher").cls is MeanTeacher
