"""Tests of the iMAS plugin (methods/imas.py, imas spec §10, §13, §14)."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import methods.imas as imas_module
from harness.augment import imas_strong, normalize
from harness.train.losses import cross_entropy
from harness.models import build_model
from methods.imas import Imas
from tests.methods.helpers import SPEC, make_batch, make_context, params_and_buffers, sgd_step

K = 3
B_L, B_U = 2, 4


def _context(iters_per_epoch=100, total_steps=1000):
    return make_context(K, total_steps=total_steps, iters_per_epoch=iters_per_epoch)


def _batch(n, labeled, seed):
    return make_batch(n, labeled, seed, K)


def _method(iters_per_epoch=100, perturb_teacher=True, model=None, **cfg):
    torch.manual_seed(0)
    model = model if model is not None else build_model(SPEC, K)
    model.train()
    cfg = {"tau": 0.4, "group_size": 2, **cfg}
    m = Imas(model, Imas.Config(**cfg), _context(iters_per_epoch))
    if perturb_teacher:  # a teacher that differs from the student gives h spread over (0, 1)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in m.teacher.module.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return m


def _capture(method):
    """Record every ImasStepState passed to the ``extra_losses`` extension point."""
    states = []
    orig = method.extra_losses

    def spy(unlabeled, state):
        states.append(state)
        return orig(unlabeled, state)

    method.extra_losses = spy
    return states


def _record_forwards(model):
    """Record (training flag, input, output) of every forward of ``model``."""
    calls = []
    model.register_forward_hook(lambda mod, inp, out: calls.append((mod.training, inp[0], out)))
    return calls


def _force_h(monkeypatch, h):
    """Replace the easiness block's h (monkeypatching methods.imas.easiness_terms)."""
    real = imas_module.easiness_terms

    def fake(*args, **kwargs):
        t = real(*args, **kwargs)
        return t._replace(h=torch.as_tensor(h, dtype=torch.float32).expand_as(t.h).clone())

    monkeypatch.setattr(imas_module, "easiness_terms", fake)


def _sgd_step(method, opt, step, seed=0):
    return sgd_step(method, opt, step, _batch(B_L, True, 100 + seed), _batch(B_U, False, 200 + seed))


# ----------------------------------------------------------------------------------------------------


def test_config_defaults_and_registration():
    c = Imas.Config()
    assert (c.tau, c.lambda_u, c.ema_decay, c.ema_zero_first_epoch) == (0.95, 3.0, 0.996, True)
    assert (c.ignore_class0, c.weighted_iou, c.all_class0_easiness, c.weight_loss_by_easiness) == (
        True, True, None, True)
    assert (c.blend_mode, c.strong_num_ops, c.cutmix, c.cutmix_trigger) == ("mix", 2, True, "easiness")
    assert (tuple(c.cutmix_side_range), c.cutmix_pairing, c.group_size) == ((0.1, 0.9), "easy_hard", 4)
    assert (c.student_forward_weak, c.exclude_padding, c.loss_normalization, c.eval_network) == (
        True, False, "all_pixels", "teacher")
    assert Imas.Config(cutmix_trigger=0.5).cutmix_trigger == 0.5
    with pytest.raises(Exception):
        Imas.Config(cutmix_trigger=1.5)
    from harness.plugins import get_plugin_manager

    assert get_plugin_manager().methods.get("imas").cls is Imas


def test_lambda_zero_gives_the_supervised_loss():
    # BatchNorm in train mode normalises with the statistics of the whole training forward
    # concat(x_l, x_w, x_cm, x_s), so z_l is not model(x_l) alone. With BN layers in eval mode (running
    # statistics) the batch composition does not matter and the loss is exactly the supervised loss.
    lab, unl = _batch(B_L, True, 1), _batch(B_U, False, 2)
    m = _method(lambda_u=0.0)
    calls = _record_forwards(m.model)
    out = m.training_step(lab, unl, 0)
    train_fwd = [c for c in calls if c[0]]
    assert len(train_fwd) == 1 and len(train_fwd[0][1]) >= B_L + 2 * B_U  # one training forward
    torch.testing.assert_close(out.loss, cross_entropy(train_fwd[0][2][:B_L], lab.label))
    assert not torch.allclose(out.loss, cross_entropy(m.model(lab.image), lab.label))  # BN batch statistics

    m = _method(lambda_u=0.0)
    bns = [mod for mod in m.model.modules() if isinstance(mod, nn.BatchNorm2d)]
    for bn in bns:
        bn.eval()
    out = m.training_step(lab, unl, 0)
    assert m.model.training and not any(bn.training for bn in bns)  # per-module modes restored after easiness
    torch.testing.assert_close(out.loss, cross_entropy(m.model(lab.image), lab.label), rtol=1e-5, atol=1e-5)


def test_ema_decay_schedule_e10():
    m = _method(iters_per_epoch=3)
    assert [m.ema_alpha(i) for i in range(4)] == [0.0, 0.0, 0.0, pytest.approx(0.75)]
    assert m.ema_alpha(10_000) == pytest.approx(0.996)
    e93 = _method(iters_per_epoch=93, perturb_teacher=False)
    assert e93.ema_alpha(92) == 0.0
    assert [e93.ema_alpha(i) for i in (93, 200, 248, 249)] == pytest.approx(
        [1 - 1 / 94, 0.9950249, 1 - 1 / 249, 0.996], abs=1e-7)
    e570 = _method(iters_per_epoch=570, perturb_teacher=False)
    assert e570.ema_alpha(569) == 0.0 and e570.ema_alpha(570) == pytest.approx(0.996)
    assert _method(iters_per_epoch=3, ema_zero_first_epoch=False).ema_alpha(1) == pytest.approx(0.5)

    # through the method: the teacher is the student after every step of epoch 0, then averages
    opt = torch.optim.SGD(m.model.parameters(), lr=0.1)
    for i in range(3):
        _sgd_step(m, opt, i, seed=i)
        s, t = params_and_buffers(m.model), params_and_buffers(m.teacher.module)
        assert all(torch.equal(s[k], t[k]) for k in s)
    prev = {k: v.clone() for k, v in params_and_buffers(m.teacher.module).items()}
    _sgd_step(m, opt, 3, seed=3)
    s, t = params_and_buffers(m.model), params_and_buffers(m.teacher.module)
    for k, v in s.items():
        if v.is_floating_point():
            torch.testing.assert_close(t[k], 0.75 * prev[k] + 0.25 * v)
        else:
            assert torch.equal(t[k], v)
    assert all(p.grad is None and not p.requires_grad for p in m.teacher.module.parameters())


@pytest.mark.parametrize("cfg, expected", [({}, 0.0), ({"ignore_class0": False}, 1.0),
                                           ({"all_class0_easiness": 0.7}, 0.7)])
def test_all_class0_maps_give_h_zero(cfg, expected):
    model = build_model(SPEC, K)
    with torch.no_grad():
        model.classifier.bias[0] = 50.0  # every pixel class 0 with confidence 1, student and teacher alike
    m = _method(model=model, perturb_teacher=False, tau=0.95, **cfg)
    states = _capture(m)
    unl = _batch(B_U, False, 2)
    out = m.training_step(_batch(B_L, True, 1), unl, 0)
    pl = states[0].pl
    assert (pl.pseudo == 0).all() and (pl.student_pred == 0).all() and pl.terms.all_class0.all()
    assert torch.equal(pl.terms.rho_t, torch.ones(B_U))  # confident everywhere, yet …
    assert torch.allclose(pl.h, torch.full((B_U,), expected))  # … h = 0 by the edge case [quirk, kept]
    if expected == 0.0:
        assert out.logs["loss_u"] == 0 and out.logs["cutmix_fired"] == 0
        torch.testing.assert_close(states[0].x_s, unl.image)  # the "strong" view is the weak view


def test_cutmix_fires_with_probability_mean_h(monkeypatch):
    def fire_pattern(h, steps):
        _force_h(monkeypatch, h)
        m = _method()
        calls = _record_forwards(m.model)
        states = _capture(m)
        torch.manual_seed(5)
        for i in range(steps):
            m.training_step(_batch(B_L, True, i), _batch(B_U, False, i), i)
        sizes = [len(c[1]) for c in calls if c[0]]
        fired = torch.stack([s.cutmix.fired for s in states])
        # the training forward holds x_cm of the fired groups only (group_size 2)
        assert sizes == [B_L + 2 * B_U + 2 * int(f.sum()) for f in fired]
        return fired

    assert not fire_pattern(0.0, 5).any()
    assert fire_pattern(1.0, 5).all()
    assert fire_pattern([0.0, 0.0, 1.0, 1.0], 5).tolist() == [[False, True]] * 5  # per group
    rate = fire_pattern(0.5, 20).float().mean().item()
    assert 0.25 < rate < 0.75


@pytest.mark.parametrize("trigger", ["easiness", 1.0, 0.0])
def test_loss_recomputed_by_hand(trigger):
    m = _method(cutmix_trigger=trigger, lambda_u=2.0, group_size=2)
    states = _capture(m)
    calls = _record_forwards(m.model)
    lab, unl = _batch(B_L, True, 1), _batch(B_U, False, 2)
    torch.manual_seed(11)
    out = m.training_step(lab, unl, 0)
    st = states[0]
    pl, cm = st.pl, st.cutmix
    tau, gs, (H, W) = 0.4, 2, unl.valid.shape[-2:]

    # pseudo-labels from the teacher, easiness from the two eval-mode maps
    with torch.no_grad():
        p_t = torch.softmax(m.teacher.module(unl.image), dim=1)
    torch.testing.assert_close(pl.conf, p_t.max(dim=1).values)
    assert torch.equal(pl.pseudo, p_t.argmax(dim=1))
    assert 0 < pl.h.min() < pl.h.max() < 1

    # strong view: replay the RNG; blend per image
    torch.manual_seed(11)
    x_str = normalize(imas_strong(unl.raw, 2))
    h4 = pl.h.view(-1, 1, 1, 1)
    torch.testing.assert_close(st.x_s, h4 * x_str + (1 - h4) * unl.image)

    # CutMix by hand from the weak views, boxes and partners
    fired = cm.fired.tolist()
    if trigger != "easiness":
        assert fired == [bool(trigger)] * 2
    for g in range(2):
        i, j = 2 * g, 2 * g + 1  # B = 2 per group: the two images are partners
        assert cm.partners[i] == j and cm.partners[j] == i
    box = torch.zeros(B_U, H, W, dtype=torch.bool)
    for i, (r0, r1, c0, c1) in enumerate(cm.boxes.tolist()):
        box[i, r0:r1, c0:c1] = fired[i // gs]
    y_cm = torch.where(box, pl.pseudo[cm.partners], pl.pseudo)
    c_cm = torch.where(box, pl.conf[cm.partners], pl.conf)
    x_cm = torch.where(box[:, None], unl.image[cm.partners], unl.image)
    fired_img = torch.tensor([fired[i // gs] for i in range(B_U)])
    train_in = [c for c in calls if c[0]][0][1]
    torch.testing.assert_close(train_in, torch.cat([lab.image, unl.image, x_cm[fired_img], st.x_s]))

    def per_image(z, y, c):  # h_i · (1/(H·W)) Σ_j [c ≥ τ]·CE
        ce = F.cross_entropy(z, y, reduction="none")
        return (ce * (c >= tau)).sum(dim=(1, 2)) / (H * W)

    l_s = pl.h * per_image(st.z_s, pl.pseudo, pl.conf)
    groups = []
    k = 0
    for g in range(2):
        lg = l_s[2 * g:2 * g + 2].mean()
        if fired[g]:
            z_cm = st.z_cm[2 * k:2 * k + 2]
            lg = 0.5 * (lg + (pl.h[2 * g:2 * g + 2] * per_image(z_cm, y_cm[2 * g:2 * g + 2],
                                                                   c_cm[2 * g:2 * g + 2])).mean())
            k += 1
        groups.append(lg)
    loss_u = torch.stack(groups).mean()
    loss_x = cross_entropy(st.z_l, lab.label)
    assert loss_u > 0
    torch.testing.assert_close(out.logs["loss_u"], loss_u.detach())
    torch.testing.assert_close(out.loss, loss_x + 2.0 * loss_u)
    assert out.logs["cutmix_fired"] == sum(fired) / 2
    torch.testing.assert_close(out.logs["h_mean"], pl.h.mean())


def test_eval_logs_accumulate_and_reset():
    m = _method()
    states = _capture(m)
    outs = [m.training_step(_batch(B_L, True, i), _batch(B_U, False, i), i) for i in range(3)]
    logs = m.eval_logs()
    assert logs["h_mean"] == pytest.approx(sum(float(o.logs["h_mean"]) for o in outs) / 3, rel=1e-6)
    assert logs["rho_t"] == pytest.approx(sum(float(o.logs["rho_t"]) for o in outs) / 3, rel=1e-6)
    assert logs["rho_s"] == pytest.approx(sum(float(s.pl.terms.rho_s.mean()) for s in states) / 3, rel=1e-6)
    assert logs["cutmix_rate"] == pytest.approx(sum(o.logs["cutmix_fired"] for o in outs) / 3)
    assert m.eval_logs() == {}  # reset
    out = m.training_step(_batch(B_L, True, 7), _batch(B_U, False, 7), 3)
    assert m.eval_logs()["h_mean"] == pytest.approx(float(out.logs["h_mean"]), rel=1e-6)


def test_eval_networks():
    m = _method()
    assert m.eval_model() is m.teacher.module and not m.eval_model().training
    assert m.secondary_eval_models() == {"student": m.model}
    s = _method(eval_network="student")
    assert s.eval_model() is s.model and s.secondary_eval_models() == {"teacher": s.teacher.module}


def test_group_size_must_divide_batch():
    with pytest.raises(ValueError, match="group_size"):
        _method(group_size=3).training_step(_batch(B_L, True, 0), _batch(B_U, False, 0), 0)


def test_state_dict_round_trip_reproduces_next_step():
    def make():
        m = _method(iters_per_epoch=1)  # α > 0 from step 1: the teacher state matters
        return m, torch.optim.SGD(m.model.parameters(), lr=0.05, momentum=0.9)

    m, opt = make()
    for i in range(2):
        _sgd_step(m, opt, i, seed=i)
    buf = io.BytesIO()
    torch.save({"model": m.model.state_dict(), "method": m.state_dict(), "opt": opt.state_dict(),
                "rng": torch.get_rng_state()}, buf)
    a = _sgd_step(m, opt, 2, seed=2).loss.detach()
    a_teacher = copy.deepcopy(m.teacher.module.state_dict())
    a_logs = m.eval_logs()

    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    r, ropt = make()
    torch.manual_seed(123)  # a different start, overwritten by the checkpoint
    r.model.load_state_dict(ckpt["model"])
    r.load_state_dict(ckpt["method"])
    ropt.load_state_dict(ckpt["opt"])
    torch.set_rng_state(ckpt["rng"])
    b = _sgd_step(r, ropt, 2, seed=2).loss.detach()
    assert torch.equal(a, b)
    assert all(torch.equal(v, r.teacher.module.state_dict()[k]) for k, v in a_teacher.items())
    assert r.eval_logs() == pytest.approx(a_logs)  # signals since the last evaluation survive a resume
