"""FixMatch (methods/fixmatch.py): the official UniMatch repository's fixmatch.py step, written out by hand."""

import copy

import pydantic
import pytest
import torch
import torch.nn.functional as F

from harness.augment import normalize, unimatch_cutmix_boxes, unimatch_strong
from methods.fixmatch import FixMatch
from tests.methods.helpers import S
from tests.methods.test_unimatch import batches, make_context, make_model, unimatch_sums


def test_config_and_crops():
    assert FixMatch.Config().tau == 0.95 and FixMatch.crops_needed(FixMatch.Config()) == 2
    assert FixMatch.crops_needed(FixMatch.Config(cutmix_source="shuffled")) == 1
    with pytest.raises(pydantic.ValidationError):
        FixMatch.Config(fp=True)  # FixMatch has no feature-perturbation stream


def test_step_equals_the_official_loss_by_hand():
    labeled, unlabeled = batches()
    tau = 0.4
    model = make_model()
    ref = copy.deepcopy(model)
    method = FixMatch(model, FixMatch.Config(tau=tau), make_context())
    torch.manual_seed(7)
    out = method.training_step(labeled, unlabeled, 0)

    # documented draw order: x_s, its box, the source's strong view
    torch.manual_seed(7)
    src = unlabeled.second
    x_s = normalize(unimatch_strong(unlabeled.raw))
    box = unimatch_cutmix_boxes(4, (S, S), 0.5)
    assert box.any()
    x_s = torch.where(box[:, None], normalize(unimatch_strong(src.raw)), x_s)
    ref.eval()
    with torch.no_grad():
        c_src, y_src = ref(src.image).softmax(1).max(1)
    ref.train()
    logits = ref(torch.cat([labeled.image, unlabeled.image]))
    z_l, z_w = logits[:2], logits[2:]
    z_s = ref(x_s)
    c_w, y_w = z_w.detach().softmax(1).max(1)
    L_x = F.cross_entropy(z_l, labeled.label, ignore_index=255)
    L_s = unimatch_sums(z_s, torch.where(box, y_src, y_w), torch.where(box, c_src, c_w),
                        torch.where(box, src.valid, unlabeled.valid), tau)
    torch.testing.assert_close(out.loss, (L_x + L_s) / 2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.logs["loss_s"], L_s.detach(), rtol=1e-5, atol=1e-6)
    assert 0 < float(out.logs["mask_ratio"]) < 1
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
