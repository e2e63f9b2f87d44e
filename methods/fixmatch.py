"""FixMatch (Sohn et al., NeurIPS 2020) for segmentation, as the UniMatch repository runs it (``fixmatch.py``).

The standard weak-to-strong baseline of both UniMatch papers: UniMatch with one strong view and no
feature-perturbation stream. One step:

1. CutMix source pseudo-labels: the model in eval mode, no grad, on the source weak view (as UniMatch).
2. One strong view ``x_s`` of the weak crop (``harness.augment.unimatch_strong``: colour jitter, grey-scale,
   blur) with one CutMix box (p = ``cutmix_p``) into which the source's strong view is pasted.
3. Train mode: a forward on ``concat(x_l, x_w)`` → ``z_l, z_w``; a forward on ``x_s`` → ``z_s``.
4. Pseudo-labels ``ŷ = argmax z_w``, ``c = max softmax z_w`` (detached), replaced inside the box by the source's.
5. ``L = (w_x·L_x + w_s·L_s) / 2`` (defaults 1, 1), with ``L_s = Σ [c ≥ τ]·[V]·CE / Σ [V]``, as the official
   ``(loss_x + loss_u_s) / 2.0``.

Random draws (torch's global RNG, in this order): the permutation (``shuffled`` only), the strong-view
parameters of ``x_s``, its box, the source's strong view (``second_crop`` only).
"""

from __future__ import annotations

from typing import Literal

import pydantic
import torch

from harness.augment import box_masks, boxed_rows, paste_boxes, sample_unimatch_params, unimatch_cutmix_box_coords
from harness.hookspecs import hookimpl
from harness.method import MethodConfig, StepOutput
from methods.components.losses import max_argmax, unimatch_unsup_loss
from methods.unimatch import UniMatch, _strong


class FixMatchConfig(MethodConfig):
    tau: float = pydantic.Field(0.95, ge=0.0, le=1.0, description="confidence threshold (0.95 VOC, 0 Cityscapes)")
    cutmix_source: Literal["second_crop", "shuffled"] = pydantic.Field(
        "second_crop", description="second_crop (official): second crop of the same images; shuffled: a "
        "permutation of the batch")
    cutmix_p: float = pydantic.Field(0.5, ge=0.0, le=1.0, description="probability of a CutMix box")
    weight_x: float = pydantic.Field(1.0, ge=0.0, description="weight of L_x inside (…)/2")
    weight_s: float = pydantic.Field(1.0, ge=0.0, description="weight of L_s inside (…)/2")


class FixMatch(UniMatch):
    """FixMatch as in the UniMatch repository: UniMatch's source, strong view and loss, one view, no FP."""

    name = "fixmatch"
    display_name = "FixMatch"
    table_order = 20
    description = ("FixMatch (Sohn et al., NeurIPS 2020) as in the UniMatch repository: one strong view with "
                   "CutMix, L = (L_x + L_s)/2")
    Config = FixMatchConfig

    def training_step(self, labeled, unlabeled, step):
        if unlabeled is None:
            raise ValueError(f"{self.name} needs an unlabeled batch")
        cfg = self.config
        source = self.cutmix_source(unlabeled)
        B, _, H, W = unlabeled.image.shape
        params = sample_unimatch_params(B)
        boxes = unimatch_cutmix_box_coords(B, (H, W), cfg.cutmix_p)
        x_s = _strong(unlabeled.raw, params)
        # the source's view is used only inside the boxes: computed for the images with one, pasted in place
        src_s = x_s[source.perm] if source.perm is not None else _strong(
            source.raw, sample_unimatch_params(B), boxed_rows(boxes))
        paste_boxes(x_s, src_s, boxes)
        box = box_masks(boxes, (H, W), unlabeled.image.device)
        src_pseudo, src_conf = self.source_pseudo_labels(source)

        B_l = labeled.image.shape[0]
        logits = self.model(torch.cat([labeled.image, unlabeled.image]))
        z_l, z_w = logits[:B_l], logits[B_l:]
        z_s = self.model(x_s)

        pseudo, conf = max_argmax(z_w)
        valid = unlabeled.valid.bool()
        p = torch.where(box, src_pseudo, pseudo)
        c = torch.where(box, src_conf, conf)
        v = torch.where(box, source.valid, valid)
        loss_x = self.context.supervised_loss(z_l, labeled.label)
        loss_s = unimatch_unsup_loss(z_s, p, c, v, cfg.tau)
        loss = (cfg.weight_x * loss_x + cfg.weight_s * loss_s) / 2
        mask_ratio = ((conf >= cfg.tau) & valid).sum() / valid.sum().clamp(min=1)
        return StepOutput(loss, {"loss_x": loss_x.detach(), "loss_s": loss_s.detach(), "mask_ratio": mask_ratio})


@hookimpl
def harness_register_methods(registry):
    registry.add(FixMatch)
