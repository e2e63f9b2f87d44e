"""UniMatch V2 (methods/unimatch_v2.py): the official unimatch_v2.py step written out by hand, its pieces, the
teacher and the registration. The step against the official code itself: tests/conformance/test_unimatch_v2_official.py.
"""

import copy

import pydantic
import pytest
import torch
import torch.nn.functional as F

from harness.augment import normalize, unimatch_cutmix_boxes, unimatch_strong
from methods.components.ema import mean_teacher_decay
from methods.unimatch_v2 import FixMatchV2, UniMatchV2, UniMatchV2Config, combine_losses, reversed_partner
from tests.methods.helpers import S
from tests.methods.test_unimatch import batches, make_context, make_model, unimatch_sums


def test_config_defaults_are_the_official_ones():
    c = UniMatchV2.Config()
    assert (c.tau, c.cutmix_p, c.ema_decay, c.comp_drop, c.weight_x, c.weight_u) == (0.95, 0.5, 0.996, True, 1.0, 1.0)
    assert UniMatchV2.crops_needed(c) == 1  # the CutMix source is the batch itself, reversed
    with pytest.raises(pydantic.ValidationError):
        UniMatchV2.Config(fp=True)
    with pytest.raises(pydantic.ValidationError):
        UniMatchV2.Config(ema_decay=1.5)


def test_reversed_partner_pastes_image_b_from_image_b_reversed():
    B, H, W = 3, 4, 5
    img = torch.arange(B * 2 * H * W, dtype=torch.float32).reshape(B, 2, H, W)
    lab = torch.arange(B * H * W).reshape(B, H, W)
    box = torch.zeros(B, H, W, dtype=torch.bool)
    box[0, 1:3, 2:4] = True
    box[1, 0, 0] = True           # the middle image of an odd batch is its own partner
    out_img, out_lab = reversed_partner(img, box), reversed_partner(lab, box)
    for b in range(B):
        for t, o in ((img, out_img), (lab, out_lab)):
            m = box[b] if t.dim() == 3 else box[b].expand_as(t[b])
            assert torch.equal(o[b][m], t[B - 1 - b][m]) and torch.equal(o[b][~m], t[b][~m])


def test_loss_weighting():
    lx, l1, l2 = torch.tensor(0.8), torch.tensor(0.3), torch.tensor(0.5)
    assert float(combine_losses(lx, l1, l2, UniMatchV2Config())) == pytest.approx((0.8 + (0.3 + 0.5) / 2) / 2)
    cfg = UniMatchV2Config(weight_x=0.5, weight_u=2.0)
    assert float(combine_losses(lx, l1, l2, cfg)) == pytest.approx((0.5 * 0.8 + 2.0 * 0.4) / 2)


@pytest.mark.parametrize("comp_drop", [False, True])
def test_step_equals_the_official_step_by_hand(comp_drop):
    """unimatch_v2.py: teacher (eval, no grad) on x_w; strong views pasted from the reversed batch; z_l from its own
    forward; z_s1, z_s2 from one forward with complementary dropout; L = (L_x + (L_s1 + L_s2)/2)/2."""
    labeled, unlabeled = batches()
    tau = 0.4
    model = make_model()
    teacher = make_model(seed=1).eval()  # a teacher that differs from the student
    ref = copy.deepcopy(model)
    method = UniMatchV2(model, UniMatchV2.Config(tau=tau, comp_drop=comp_drop), make_context())
    method.teacher.module.load_state_dict(teacher.state_dict())
    torch.manual_seed(7)
    out = method.training_step(labeled, unlabeled, 0)

    # documented draw order: x_s1, x_s2, box 1, box 2, then the complementary masks in the forward
    torch.manual_seed(7)
    x_s1 = normalize(unimatch_strong(unlabeled.raw))
    x_s2 = normalize(unimatch_strong(unlabeled.raw))
    box1 = unimatch_cutmix_boxes(4, (S, S), 0.5)
    box2 = unimatch_cutmix_boxes(4, (S, S), 0.5)
    assert box1.any() and box2.any()
    x_s1 = torch.where(box1[:, None], x_s1.flip(0), x_s1)
    x_s2 = torch.where(box2[:, None], x_s2.flip(0), x_s2)
    with torch.no_grad():
        c_w, y_w = teacher(unlabeled.image).softmax(1).max(1)
    z_l = ref(labeled.image)
    strong = torch.cat([x_s1, x_s2])
    z_s1, z_s2 = (ref(strong, comp_drop=True) if comp_drop else ref(strong)).chunk(2)
    L_x = F.cross_entropy(z_l, labeled.label, ignore_index=255)
    v = unlabeled.valid

    def mixed(t, box):
        return torch.where(box, t.flip(0), t)

    L_1 = unimatch_sums(z_s1, mixed(y_w, box1), mixed(c_w, box1), mixed(v, box1), tau)
    L_2 = unimatch_sums(z_s2, mixed(y_w, box2), mixed(c_w, box2), mixed(v, box2), tau)
    torch.testing.assert_close(out.loss, (L_x + (L_1 + L_2) / 2) / 2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.logs["loss_s1"], L_1.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.logs["loss_s2"], L_2.detach(), rtol=1e-5, atol=1e-6)
    assert float(out.logs["mask_ratio"]) == pytest.approx(float(((c_w >= tau) & v).sum() / v.sum()))
    assert 0 < float(out.logs["mask_ratio"]) < 1
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert all(p.grad is None for p in method.teacher.module.parameters())


def test_complementary_dropout_changes_the_strong_logits_only():
    """With comp_drop the strong views' logits differ from a plain forward's; L_x does not."""
    labeled, unlabeled = batches()
    outs = {}
    for comp in (False, True):
        method = UniMatchV2(make_model(), UniMatchV2.Config(tau=0.0, comp_drop=comp), make_context())
        torch.manual_seed(3)
        outs[comp] = method.training_step(labeled, unlabeled, 0).logs
    assert float(outs[True]["loss_x"]) == pytest.approx(float(outs[False]["loss_x"]), rel=1e-6)
    assert float(outs[True]["loss_s1"]) != pytest.approx(float(outs[False]["loss_s1"]), rel=1e-4)


def test_teacher_follows_the_capped_ema_and_is_evaluated():
    model = make_model()
    method = UniMatchV2(model, UniMatchV2.Config(), make_context())
    assert method.eval_model() is method.teacher.module and method.secondary_eval_models() == {"student": model}
    assert [method.ema_alpha(i) for i in (0, 1, 9, 10_000)] == [mean_teacher_decay(i, 0.996) for i in (0, 1, 9, 10_000)]
    assert method.ema_alpha(0) == 0.0 and method.ema_alpha(10_000) == 0.996
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    method.after_step(0)  # α = 0: the teacher becomes the student
    for (n, t), s in zip(method.teacher.module.named_parameters(), model.parameters()):
        assert torch.equal(t, s), n
    before = {n: t.clone() for n, t in method.teacher.module.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    method.after_step(4)  # α = 1 − 1/5
    for (n, t), s in zip(method.teacher.module.named_parameters(), model.parameters()):
        torch.testing.assert_close(t, 0.8 * before[n] + 0.2 * s, msg=n)
    state = method.state_dict()
    other = UniMatchV2(make_model(seed=5), UniMatchV2.Config(), make_context())
    other.load_state_dict(state)
    for (n, a), b in zip(other.teacher.module.state_dict().items(), method.teacher.module.state_dict().values()):
        assert torch.equal(a, b), n


def test_registered_through_the_hook():
    from harness.plugins import MethodRegistry
    import methods.unimatch_v2 as plugin

    registry = MethodRegistry()
    plugin.harness_register_methods(registry=registry)
    assert registry.get("unimatch_v2").cls is UniMatchV2 and registry.get("fixmatch_v2").cls is FixMatchV2


def test_fixmatch_v2_step_by_hand():
    """UniMatch V2's fixmatch.py: teacher on x_w; one strong view pasted from the reversed batch; one joint forward
    of concat(x_l, x_s); L = (L_x + L_s)/2; the teacher follows the same EMA."""
    labeled, unlabeled = batches()
    tau = 0.4
    model = make_model()
    teacher = make_model(seed=1).eval()
    ref = copy.deepcopy(model)
    method = FixMatchV2(model, FixMatchV2.Config(tau=tau), make_context())
    assert not hasattr(method.config, "comp_drop") and method.ema_alpha(3) == mean_teacher_decay(3, 0.996)
    method.teacher.module.load_state_dict(teacher.state_dict())
    torch.manual_seed(11)
    out = method.training_step(labeled, unlabeled, 0)

    torch.manual_seed(11)  # documented draw order: the strong view, its box
    x_s = normalize(unimatch_strong(unlabeled.raw))
    box = unimatch_cutmix_boxes(4, (S, S), 0.5)
    assert box.any()
    x_s = torch.where(box[:, None], x_s.flip(0), x_s)
    with torch.no_grad():
        c_w, y_w = teacher(unlabeled.image).softmax(1).max(1)
    z_l, z_s = ref(torch.cat([labeled.image, x_s])).split([2, 4])
    L_x = F.cross_entropy(z_l, labeled.label, ignore_index=255)

    def mixed(t):
        return torch.where(box, t.flip(0), t)

    L_s = unimatch_sums(z_s, mixed(y_w), mixed(c_w), mixed(unlabeled.valid), tau)
    torch.testing.assert_close(out.loss, (L_x + L_s) / 2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.logs["loss_s"], L_s.detach(), rtol=1e-5, atol=1e-6)
    assert method.eval_model() is method.teacher.module


def test_complementary_pairs_are_the_two_views_of_one_image(monkeypatch):
    """The comp_drop forward gets concat(x_s1, x_s2), so the model's complementary rows i and i + B are the two strong
    views of image i; with the model's masks, the features of those two rows are scaled by complementary masks
    (m_i + m_{i+B} = 2 per channel: one view keeps what the other drops, or both keep all)."""
    import harness.models.deeplab as deeplab
    from harness.models import comp_drop

    labeled, unlabeled = batches()
    model = make_model()
    method = UniMatchV2(model, UniMatchV2.Config(), make_context())
    calls, masks = [], []
    forward = model.forward
    draw = comp_drop.complementary_masks

    def spy_forward(x, **kw):
        calls.append((x.detach().clone(), kw))
        return forward(x, **kw)

    def spy_masks(*a, **kw):
        out = draw(*a, **kw)  # one mask, or one per feature width (DeepLabV3+'s c1 and c4)
        masks.extend([out] if isinstance(out, torch.Tensor) else out)
        return out

    monkeypatch.setattr(model, "forward", spy_forward)
    monkeypatch.setattr(deeplab, "complementary_masks", spy_masks)
    torch.manual_seed(5)
    views = method.make_views(unlabeled)
    torch.manual_seed(5)
    method.training_step(labeled, unlabeled, 0)
    (strong, kw), = [(x, kw) for x, kw in calls if kw.get("comp_drop")]
    assert torch.equal(strong, torch.cat([views.x_s1, views.x_s2]))
    B = len(unlabeled)
    assert masks and all(m.shape[0] == 2 * B for m in masks)
    for m in masks:
        assert torch.equal(m[:B] + m[B:], torch.full_like(m[:B], 2.0))
        assert set(m.unique().tolist()) <= {0.0, 1.0, 2.0}
