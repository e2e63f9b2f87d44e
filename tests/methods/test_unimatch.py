"""Tests of the UniMatch plugin (methods/unimatch.py, s4mim spec §2.3–2.4).

Also holds the small fixtures the S4MIM and combined tests import (tiny model, 2 labeled + 4 unlabeled 32×32 crops).
"""

import copy

import pydantic
import pytest
import torch
import torch.nn.functional as F

from harness.augment import normalize, unimatch_cutmix_boxes, unimatch_strong
from harness.models import build_model
from methods.unimatch import UniMatch
from tests.methods import helpers
from tests.methods.helpers import S, SPEC

K = 4


def make_context(crop_size=S, iters_per_epoch=10):
    return helpers.make_context(K, iters_per_epoch=iters_per_epoch, crop_size=crop_size)


def make_batch(n, labeled, seed, pad_rows=20, second=False):
    return helpers.make_batch(n, labeled, seed, K, pad_rows=pad_rows, second=second)


def make_model(seed=0):
    torch.manual_seed(seed)
    return build_model(SPEC, K).train()


def batches(seed=0):
    return make_batch(2, True, 100 + seed), make_batch(4, False, 200 + seed, second=True)


def unimatch_sums(logits, pseudo, conf, valid, tau):
    """By hand: Σ [c ≥ τ]·[V]·CE / Σ [V]."""
    ce = F.cross_entropy(logits, pseudo, reduction="none")
    keep = (conf >= tau) & valid
    return (ce * keep).sum() / valid.sum()


def test_config_and_crops():
    assert UniMatch.Config().tau == 0.95
    assert UniMatch.crops_needed(UniMatch.Config()) == 2
    assert UniMatch.crops_needed(UniMatch.Config(cutmix_source="shuffled")) == 1
    with pytest.raises(pydantic.ValidationError, match="not supported yet"):
        UniMatch.Config(cutmix_source="second_batch")
    with pytest.raises(pydantic.ValidationError):
        UniMatch.Config(taus=0.5)


def test_loss_composition_by_hand():
    labeled, unlabeled = batches()
    tau = 0.4
    model = make_model()
    ref = copy.deepcopy(model)
    method = UniMatch(model, UniMatch.Config(tau=tau), make_context())
    torch.manual_seed(123)
    out = method.training_step(labeled, unlabeled, 0)
    assert model.training

    # the same pipeline, written out (documented draw order: x_s1, x_s2, box1, box2, x_s1', x_s2', FP dropout)
    torch.manual_seed(123)
    src = unlabeled.second
    x_s1, x_s2 = normalize(unimatch_strong(unlabeled.raw)), normalize(unimatch_strong(unlabeled.raw))
    box1 = unimatch_cutmix_boxes(4, (S, S), 0.5)
    box2 = unimatch_cutmix_boxes(4, (S, S), 0.5)
    assert box1.any() and box2.any()
    src_s1, src_s2 = normalize(unimatch_strong(src.raw)), normalize(unimatch_strong(src.raw))
    x_s1 = torch.where(box1[:, None], src_s1, x_s1)
    x_s2 = torch.where(box2[:, None], src_s2, x_s2)
    ref.eval()
    with torch.no_grad():
        c_src, y_src = ref(src.image).softmax(1).max(1)
    ref.train()
    logits, logits_fp = ref(torch.cat([labeled.image, unlabeled.image]), need_fp=True)
    z_l, z_w, z_fp = logits[:2], logits[2:], logits_fp[2:]
    z_s1, z_s2 = ref(torch.cat([x_s1, x_s2])).chunk(2)
    c_w, y_w = z_w.detach().softmax(1).max(1)
    V, V_src = unlabeled.valid, src.valid

    L_x = F.cross_entropy(z_l, labeled.label, ignore_index=255)
    L_s1 = unimatch_sums(z_s1, torch.where(box1, y_src, y_w), torch.where(box1, c_src, c_w),
                         torch.where(box1, V_src, V), tau)
    L_s2 = unimatch_sums(z_s2, torch.where(box2, y_src, y_w), torch.where(box2, c_src, c_w),
                         torch.where(box2, V_src, V), tau)
    L_fp = unimatch_sums(z_fp, y_w, c_w, V, tau)
    expected = (L_x + 0.25 * L_s1 + 0.25 * L_s2 + 0.5 * L_fp) / 2
    assert 0 < float(out.logs["mask_ratio"]) < 1
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    for name, value in {"loss_x": L_x, "loss_s1": L_s1, "loss_s2": L_s2, "loss_fp": L_fp}.items():
        torch.testing.assert_close(out.logs[name], value.detach(), rtol=1e-5, atol=1e-6)


def test_pseudo_labels_in_box_come_from_source():
    labeled, unlabeled = batches(1)
    model = make_model()
    ref = copy.deepcopy(model).eval()
    method = UniMatch(model, UniMatch.Config(tau=0.4, cutmix_p=1.0), make_context())
    torch.manual_seed(5)
    st = method.unimatch_step(labeled, unlabeled)
    with torch.no_grad():
        c_src, y_src = ref(unlabeled.second.image).softmax(1).max(1)
    torch.testing.assert_close(st.src_pseudo, y_src)
    torch.testing.assert_close(st.src_conf, c_src)
    assert (st.pseudo != st.src_pseudo).any()
    for box, p, c, v in ((st.views.box1, st.pseudo_s1, st.conf_s1, st.valid_s1),
                         (st.views.box2, st.pseudo_s2, st.conf_s2, st.valid_s2)):
        assert box.any() and (~box).any()
        assert torch.equal(p[box], st.src_pseudo[box]) and torch.equal(p[~box], st.pseudo[~box])
        assert torch.equal(c[box], st.src_conf[box]) and torch.equal(c[~box], st.conf[~box])
        assert torch.equal(v[box], unlabeled.second.valid[box]) and torch.equal(v[~box], unlabeled.valid[~box])


def test_normaliser_is_non_padded_pixels():
    labeled, unlabeled = batches(2)
    method = UniMatch(make_model(), UniMatch.Config(tau=0.0), make_context())
    torch.manual_seed(7)
    st = method.unimatch_step(labeled, unlabeled)
    V = st.valid
    assert (~V).any()
    ce_fp = F.cross_entropy(st.z_fp, st.pseudo, reduction="none")
    # τ = 0: every valid pixel counts; padding is excluded from numerator and denominator
    torch.testing.assert_close(st.terms["loss_fp"], ce_fp[V].mean())
    assert not torch.allclose(st.terms["loss_fp"], ce_fp.mean())
    ce_s1 = F.cross_entropy(st.z_s1, st.pseudo_s1, reduction="none")
    torch.testing.assert_close(st.terms["loss_s1"], ce_s1[st.valid_s1].mean())
    # τ > 0: the denominator stays the number of valid pixels, not of confident ones
    method.config.tau = 0.4
    st = method.unimatch_step(labeled, unlabeled)
    keep = (st.conf >= 0.4) & st.valid
    assert 0 < keep.sum() < st.valid.sum()
    ce_fp = F.cross_entropy(st.z_fp, st.pseudo, reduction="none")
    torch.testing.assert_close(st.terms["loss_fp"], ce_fp[keep].sum() / st.valid.sum())


def test_shuffled_source_and_no_fp():
    labeled, unlabeled = make_batch(2, True, 1), make_batch(4, False, 2)  # one crop only
    method = UniMatch(make_model(), UniMatch.Config(tau=0.4, cutmix_source="shuffled", fp=False, cutmix_p=1.0),
                      make_context())
    torch.manual_seed(3)
    st = method.unimatch_step(labeled, unlabeled)
    perm = st.views.source.perm
    assert sorted(perm.tolist()) == [0, 1, 2, 3]
    assert torch.equal(st.views.source.valid, unlabeled.valid[perm])
    assert st.z_fp is None and "loss_fp" not in st.terms
    t = st.terms
    torch.testing.assert_close(st.loss, (t["loss_x"] + 0.25 * t["loss_s1"] + 0.25 * t["loss_s2"]) / 2)
    with pytest.raises(RuntimeError, match="second"):
        UniMatch(make_model(), UniMatch.Config(), make_context()).training_step(labeled, unlabeled, 0)
