"""UniMatch (Yang et al., CVPR 2023) — the s4mim spec §2, exact.

One training step (§2.3):

1. CutMix source pseudo-labels: the model in **eval** mode, no grad, on the source weak view ``x_w'``
   → ``ŷ' = argmax``, ``c' = max softmax``.
2. Two strong views ``x_s1``, ``x_s2`` of the weak crop (``harness.augment.apply_unimatch_params``, the
   ``unimatch_strong`` view), each with its own CutMix box (``unimatch_cutmix_box_coords``, p = ``cutmix_p``)
   into which the source's strong views ``x_s1'``, ``x_s2'`` are pasted (same coordinates).
3. Train mode. Forward A on ``concat(x_l, x_w)`` with feature perturbation → ``z_l, z_w, z_fp``;
   forward B on ``concat(x_s1, x_s2)`` → ``z_s1, z_s2`` (this grouping defines the BN batch statistics).
4. Pseudo-labels from forward A, detached: ``ŷ = argmax z_w``, ``c = max softmax z_w``; inside box_j they are
   replaced by the source's ``ŷ', c', V'``.
5. ``L = (w_x·L_x + w_s1·L_s1 + w_s2·L_s2 + w_fp·L_fp) / 2`` (defaults 1, ¼, ¼, ½), where the unsupervised
   terms are ``Σ [c ≥ τ]·[V]·CE / Σ [V]`` over the unlabeled batch — normalised by the number of
   **non-padded** pixels, not by the confident ones (``methods.components.losses.unimatch_unsup_loss``).

CutMix source (``cutmix_source``, §2.2):

* ``second_crop`` (default, the official behaviour): a second, independently augmented crop of the same
  images, delivered by the loader as ``unlabeled.second`` (so ``crops_needed = 2``). Its strong views are drawn
  independently of the current batch's.
* ``shuffled``: a random permutation of the current batch (``crops_needed = 1``); the source's weak view,
  strong views, validity mask and eval-mode pseudo-labels are those of the permuted images (an image may be
  paired with itself).
* ``second_batch`` (an independently sampled unlabeled batch): **not supported yet** — the harness loader
  provides a second crop of the same images (which is what the official code effectively uses, see §2.2), not a
  second independent batch. Selecting it is a configuration error.

Random draws (torch's global RNG, in this order): the permutation (``shuffled`` only); the strong-view
parameters of ``x_s1``, ``x_s2``; the boxes of view 1 and view 2; the source's strong views ``x_s1'``, ``x_s2'``
(``second_crop`` only); the Dropout2d masks of forward A's FP stream.

``fp: false`` drops the feature-perturbation stream and its term (forward A without FP); the other weights are
unchanged. τ comes from the protocol's ``method_settings`` (0.95 VOC, 0 Cityscapes); default 0.95.

Cost per step (B_l = B_u = B; ``supervised`` = 1 pass on B images with gradient): 3 network passes — the no-grad
eval pass on the source (B), forward A (2B, decoder run twice for FP) and forward B (2B) — i.e. 5× the supervised
image-passes, 4× of them with gradient; the strong-view augmentation adds to that on a CPU. Measured step times:
``benchmarks/perf/README.md``; run wall times: the records in ``results/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pydantic
import torch

from harness.augment import (apply_unimatch_params, box_masks, boxed_rows, paste_boxes, sample_unimatch_params,
                             unimatch_cutmix_box_coords)
from harness.hookspecs import hookimpl
from harness.method import Batch, Method, MethodConfig, StepOutput
from methods.components.losses import max_argmax, unimatch_unsup_loss

__all__ = ["UniMatch", "UniMatchConfig", "UniMatchViews", "UniMatchState", "CutMixSource"]

@dataclass
class CutMixSource:
    """What the CutMix source provides (§2.2): weak view ``image``, 8-bit ``raw``, validity ``valid``,
    and (filled in by the step) its eval-mode pseudo-labels and confidences."""

    image: torch.Tensor
    raw: torch.Tensor
    valid: torch.Tensor
    perm: torch.Tensor | None = None   # shuffled: source b = current batch image perm[b]


@dataclass
class UniMatchViews:
    """The randomly built inputs of one step: strong views after pasting, boxes, and the source."""

    x_s1: torch.Tensor
    x_s2: torch.Tensor
    box1: torch.Tensor      # bool B×H×W
    box2: torch.Tensor
    source: CutMixSource


@dataclass
class UniMatchState:
    """Everything one UniMatch step computed; subclasses (S4MIM) add terms from it."""

    views: UniMatchViews
    z_l: torch.Tensor
    z_w: torch.Tensor
    z_fp: torch.Tensor | None
    z_s1: torch.Tensor
    z_s2: torch.Tensor
    pseudo: torch.Tensor        # ŷ (forward A, detached), B×H×W
    conf: torch.Tensor          # c
    valid: torch.Tensor         # V
    src_pseudo: torch.Tensor    # ŷ' (source, eval mode)
    src_conf: torch.Tensor
    pseudo_s1: torch.Tensor     # ŷ_1 = ŷ with box1 from the source
    conf_s1: torch.Tensor
    valid_s1: torch.Tensor
    pseudo_s2: torch.Tensor
    conf_s2: torch.Tensor
    valid_s2: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)   # loss_x, loss_s1, loss_s2, loss_fp
    loss: torch.Tensor | None = None


class UniMatchConfig(MethodConfig):
    tau: float = pydantic.Field(0.95, ge=0.0, le=1.0, description="confidence threshold (0.95 VOC, 0 Cityscapes)")
    fp: bool = pydantic.Field(True, description="feature-perturbation stream (Dropout2d 0.5 on c1 and c4)")
    cutmix_source: Literal["second_crop", "shuffled", "second_batch"] = pydantic.Field(
        "second_crop", description="second_crop (official): second crop of the same images; shuffled: a "
        "permutation of the batch; second_batch: not supported yet")
    cutmix_p: float = pydantic.Field(0.5, ge=0.0, le=1.0, description="probability of a CutMix box per strong view")
    weight_x: float = pydantic.Field(1.0, ge=0.0, description="weight of L_x inside (…)/2")
    weight_s1: float = pydantic.Field(0.25, ge=0.0, description="weight of L_s1 inside (…)/2")
    weight_s2: float = pydantic.Field(0.25, ge=0.0, description="weight of L_s2 inside (…)/2")
    weight_fp: float = pydantic.Field(0.5, ge=0.0, description="weight of L_fp inside (…)/2")

    @pydantic.field_validator("cutmix_source")
    @classmethod
    def _supported_source(cls, v: str) -> str:
        if v == "second_batch":
            raise ValueError("cutmix_source 'second_batch' (an independently sampled second unlabeled batch) is not "
                             "supported yet: the harness loader provides a second crop of the same images, which is "
                             "what the official code effectively uses; choose 'second_crop' (default) or 'shuffled'")
        return v


def _strong(raw: torch.Tensor, params, images: list[int] | None = None) -> torch.Tensor:
    """Normalised UniMatch strong views of an 8-bit batch for drawn ``params`` (only the rows ``images`` when
    given; the others are left uninitialised)."""
    return apply_unimatch_params(raw, params, normalized=True, images=images)


class UniMatch(Method):
    """UniMatch (CVPR 2023), exact (s4mim spec §2): weak-to-strong consistency with two CutMix'd strong views and
    a feature-perturbation stream. ``L = (L_x + ¼L_s1 + ¼L_s2 + ½L_fp)/2``; see the module docstring."""

    name = "unimatch"
    display_name = "UniMatch"
    table_order = 30
    description = ("UniMatch (Yang et al., CVPR 2023): two strong views with CutMix + feature perturbation, "
                   "L = (L_x + 0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp)/2")
    Config = UniMatchConfig

    @classmethod
    def crops_needed(cls, config: UniMatchConfig) -> int:
        return 2 if config.cutmix_source == "second_crop" else 1

    # -- the step, in parts a subclass can reuse ---------------------------------------------------
    def cutmix_source(self, unlabeled: Batch) -> CutMixSource:
        mode = self.config.cutmix_source
        if mode == "second_crop":
            src = unlabeled.second
            if src is None:
                raise RuntimeError("cutmix_source 'second_crop' needs the loader's second unlabeled crop "
                                   "(unlabeled.second); the engine provides it when crops_needed() == 2")
            return CutMixSource(image=src.image, raw=src.raw, valid=src.valid.bool())
        if mode == "shuffled":
            perm = torch.randperm(len(unlabeled)).to(unlabeled.image.device)
            return CutMixSource(image=unlabeled.image[perm], raw=unlabeled.raw[perm],
                                valid=unlabeled.valid.bool()[perm], perm=perm)
        raise ValueError(f"unsupported cutmix_source {mode!r}")

    def make_views(self, unlabeled: Batch) -> UniMatchViews:
        """Draw the source, the two strong views and their CutMix boxes, and paste (§2.3 step 2).

        Every draw is made first, in the documented order; then the views are built. The source's strong view of
        an image is used only inside its box, so it is computed only for the images that drew a box and pasted
        into the view in place (the same values as ``torch.where(box, source view, view)``)."""
        source = self.cutmix_source(unlabeled)
        B, _, H, W = unlabeled.image.shape
        dev = unlabeled.image.device
        params1, params2 = sample_unimatch_params(B), sample_unimatch_params(B)
        boxes1 = unimatch_cutmix_box_coords(B, (H, W), self.config.cutmix_p)
        boxes2 = unimatch_cutmix_box_coords(B, (H, W), self.config.cutmix_p)
        x_s1, x_s2 = _strong(unlabeled.raw, params1), _strong(unlabeled.raw, params2)
        if source.perm is not None:   # shuffled: the source's strong views are the permuted ones of this batch
            src_s1, src_s2 = x_s1[source.perm], x_s2[source.perm]
        else:
            src_params1, src_params2 = sample_unimatch_params(B), sample_unimatch_params(B)
            src_s1 = _strong(source.raw, src_params1, boxed_rows(boxes1))
            src_s2 = _strong(source.raw, src_params2, boxed_rows(boxes2))
        paste_boxes(x_s1, src_s1, boxes1)
        paste_boxes(x_s2, src_s2, boxes2)
        return UniMatchViews(x_s1, x_s2, box_masks(boxes1, (H, W), dev), box_masks(boxes2, (H, W), dev), source)

    @torch.no_grad()
    def source_pseudo_labels(self, source: CutMixSource) -> tuple[torch.Tensor, torch.Tensor]:
        """§2.3 step 1: eval mode, no grad, on the source weak view; the model's mode is restored."""
        was_training = self.model.training
        self.model.eval()
        try:
            logits = self.model(source.image)
        finally:
            self.model.train(was_training)
        return max_argmax(logits)

    def unimatch_step(self, labeled: Batch, unlabeled: Batch) -> UniMatchState:
        cfg = self.config
        views = self.make_views(unlabeled)
        src_pseudo, src_conf = self.source_pseudo_labels(views.source)

        x_l, x_w = labeled.image, unlabeled.image
        B_l = x_l.shape[0]
        if cfg.fp:
            logits, logits_fp = self.model(torch.cat([x_l, x_w]), need_fp=True)
            z_fp = logits_fp[B_l:]
        else:
            logits, z_fp = self.model(torch.cat([x_l, x_w])), None
        z_l, z_w = logits[:B_l], logits[B_l:]
        z_s1, z_s2 = self.model(torch.cat([views.x_s1, views.x_s2])).chunk(2)

        pseudo, conf = max_argmax(z_w)
        valid = unlabeled.valid.bool()
        src_valid = views.source.valid

        def mixed(box):
            return (torch.where(box, src_pseudo, pseudo), torch.where(box, src_conf, conf),
                    torch.where(box, src_valid, valid))

        p1, c1, v1 = mixed(views.box1)
        p2, c2, v2 = mixed(views.box2)
        st = UniMatchState(views, z_l, z_w, z_fp, z_s1, z_s2, pseudo, conf, valid, src_pseudo, src_conf,
                           p1, c1, v1, p2, c2, v2)

        tau = cfg.tau
        st.terms["loss_x"] = self.context.supervised_loss(z_l, labeled.label)
        st.terms["loss_s1"] = unimatch_unsup_loss(z_s1, p1, c1, v1, tau)
        st.terms["loss_s2"] = unimatch_unsup_loss(z_s2, p2, c2, v2, tau)
        weights = {"loss_x": cfg.weight_x, "loss_s1": cfg.weight_s1, "loss_s2": cfg.weight_s2}
        if z_fp is not None:
            st.terms["loss_fp"] = unimatch_unsup_loss(z_fp, pseudo, conf, valid, tau)
            weights["loss_fp"] = cfg.weight_fp
        st.loss = sum(weights[k] * st.terms[k] for k in weights) / 2
        return st

    def unimatch_logs(self, st: UniMatchState) -> dict[str, torch.Tensor]:
        logs = {k: v.detach() for k, v in st.terms.items()}
        n_valid = st.valid.sum().clamp(min=1)
        logs["mask_ratio"] = ((st.conf >= self.config.tau) & st.valid).sum() / n_valid
        return logs

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> StepOutput:
        if unlabeled is None:
            raise ValueError(f"{self.name} needs an unlabeled batch")
        st = self.unimatch_step(labeled, unlabeled)
        return StepOutput(st.loss, self.unimatch_logs(st))


@hookimpl
def harness_register_methods(registry):
    registry.add(UniMatch)
