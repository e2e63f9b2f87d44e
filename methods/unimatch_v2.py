"""UniMatch V2 (Yang et al., TPAMI 2025, github.com/LiheYoung/UniMatch-V2): an EMA teacher, two CutMix'd strong
views and complementary channel dropout between them.

One training step (``unimatch_v2.py`` of the official repository):

1. Teacher pseudo-labels: the EMA teacher (eval mode, no grad) on the weak view ``x_w`` → ``ŷ = argmax``,
   ``c = max softmax``.
2. Two strong views ``x_s1``, ``x_s2`` of the weak crop (``harness.augment.unimatch_strong``, as UniMatch), each
   with its own CutMix box (``unimatch_cutmix_boxes``, p = ``cutmix_p``). The CutMix source is the **batch in
   reverse order** (``flip(0)``): image b receives the box region of image B−1−b's strong view of the same index,
   and the pseudo-labels, confidences and validity mask inside the box are those of image B−1−b. No extra crop and
   no extra forward (UniMatch V1 runs a second crop through the network for its source).
3. Student, train mode: a forward on ``x_l`` → ``z_l``; a forward on ``concat(x_s1, x_s2)`` with complementary
   dropout (``model(x, comp_drop=True)``, ``harness.models.comp_drop``): the two views of an image get
   complementary channel masks of the encoder features (half of the pairs are left unperturbed) → ``z_s1, z_s2``.
4. ``L = (w_x·L_x + w_u·(L_s1 + L_s2)/2) / 2`` (defaults 1, 1), with ``L_sj = Σ [c ≥ τ]·[V]·CE / Σ [V]``
   (``methods.components.losses.unimatch_unsup_loss``: normalised by the non-padded pixels).
5. After the optimizer step the teacher moves towards the student, θ_T ← α·θ_T + (1 − α)·θ_S with
   α = min(1 − 1/(i + 1), ``ema_decay``) (0.996; ``methods.components.ema``).

Evaluated network: the **teacher**, as the official logs report it ("EMA"); the student is logged as
``student``.

Random draws (torch's global RNG, in this order): the strong-view parameters of ``x_s1``, ``x_s2``; the boxes of
view 1 and view 2; the complementary masks inside the model's forward.

Differences from the official code, by design of the harness: with one process the reversed-batch pairing and the
complementary pairs span the whole batch, while upstream's span each GPU's share (4 per GPU); with as many
processes as upstream's GPUs (``--nproc 4``) both are per share, as upstream. The teacher's integer buffers are
copied, not averaged (``EMATeacher``; DINOv2 and the DPT head have none). The strong views are the harness's
batched tensor reimplementation of the torchvision PIL transforms (see ``benchmarks/conformance/README.md``).

The module also registers ``fixmatch_v2``, FixMatch as the same repository runs it (``fixmatch.py``, the baseline
of its tables): the same teacher, CutMix source and EMA, one strong view, no complementary dropout, one joint
forward of labeled and strong images, ``L = (L_x + L_s)/2``.

Cost per step (B_l = B_u = B; ``supervised`` = 1 pass on B images with gradient): the teacher's no-grad pass on
B images, the student's pass on B labeled and 2B strong images, i.e. 4× the supervised image-passes, 3× of them
with gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import pydantic
import torch

from harness.augment import normalize, unimatch_cutmix_boxes, unimatch_strong
from harness.hookspecs import hookimpl
from harness.method import Batch, Method, MethodConfig, StepOutput
from methods.components.ema import EMATeacher, TeacherEvaluated, mean_teacher_decay
from methods.components.losses import max_argmax, unimatch_unsup_loss

__all__ = ["EMATeacherPseudoLabels", "UniMatchV2", "UniMatchV2Config", "UniMatchV2Views", "FixMatchV2",
           "FixMatchV2Config", "reversed_partner", "combine_losses"]


class UniMatchV2Config(MethodConfig):
    tau: float = pydantic.Field(0.95, ge=0.0, le=1.0, description="confidence threshold (0.95 on every dataset)")
    cutmix_p: float = pydantic.Field(0.5, ge=0.0, le=1.0, description="probability of a CutMix box per strong view")
    comp_drop: bool = pydantic.Field(True, description="complementary channel dropout between the two strong views "
                                                       "(false: a plain forward, for ablations)")
    ema_decay: float = pydantic.Field(0.996, ge=0.0, le=1.0, description="cap of the teacher's EMA decay")
    weight_x: float = pydantic.Field(1.0, ge=0.0, description="weight of L_x inside (…)/2")
    weight_u: float = pydantic.Field(1.0, ge=0.0, description="weight of (L_s1 + L_s2)/2 inside (…)/2 (the released "
                                                              "logs' lossu_weight ablation sweeps 0.5 to 4)")


@dataclass
class UniMatchV2Views:
    """The randomly built inputs of one step: the strong views after pasting and their boxes (bool B×H×W)."""

    x_s1: torch.Tensor
    x_s2: torch.Tensor
    box1: torch.Tensor
    box2: torch.Tensor


def reversed_partner(own: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """``own`` with the region ``box`` (B×H×W) taken from the batch in reverse order (image B−1−b for image b), for
    images (B×C×H×W) and per-pixel maps (B×H×W) alike: UniMatch V2's CutMix source."""
    mask = box if own.dim() == box.dim() else box.unsqueeze(1)
    return torch.where(mask, own.flip(0), own)


def combine_losses(loss_x: torch.Tensor, loss_s1: torch.Tensor, loss_s2: torch.Tensor,
                   config: UniMatchV2Config) -> torch.Tensor:
    """``(w_x·L_x + w_u·(L_s1 + L_s2)/2) / 2``."""
    return (config.weight_x * loss_x + config.weight_u * (loss_s1 + loss_s2) / 2) / 2


class EMATeacherPseudoLabels(TeacherEvaluated, Method):
    """What UniMatch V2 and its repository's FixMatch share: an EMA teacher (evaluated in the student's place) whose
    weak-view predictions are the pseudo-labels, and its EMA schedule. Config needs ``tau`` and ``ema_decay``."""

    def __init__(self, model, config, context):
        super().__init__(model, config, context)
        self.teacher = EMATeacher(model)

    def teacher_targets(self, unlabeled: Batch | None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ŷ, c, valid, mask ratio) of the teacher on the weak view (step 1): the mask ratio is the share of valid
        pixels with c ≥ τ."""
        if unlabeled is None:
            raise ValueError(f"{self.name} needs an unlabeled batch")
        pseudo, conf = max_argmax(self.teacher(unlabeled.image))
        valid = unlabeled.valid.bool()
        mask_ratio = ((conf >= self.config.tau) & valid).sum() / valid.sum().clamp(min=1)
        return pseudo, conf, valid, mask_ratio

    def ema_alpha(self, step: int) -> float:
        return mean_teacher_decay(step, self.config.ema_decay)


class UniMatchV2(EMATeacherPseudoLabels):
    """UniMatch V2: EMA-teacher pseudo-labels on the weak view, two strong views with reversed-batch CutMix and
    complementary dropout, ``L = (L_x + (L_s1 + L_s2)/2)/2``; see the module docstring."""

    name = "unimatch_v2"
    display_name = "UniMatch V2"
    table_order = 35
    description = ("UniMatch V2 (Yang et al., TPAMI 2025): EMA teacher, two CutMix'd strong views with complementary "
                   "dropout, L = (L_x + (L_s1 + L_s2)/2)/2")
    Config = UniMatchV2Config

    def make_views(self, unlabeled: Batch) -> UniMatchV2Views:
        """Draw the two strong views and their boxes and paste the reversed batch into them (step 2)."""
        B, _, H, W = unlabeled.image.shape
        dev = unlabeled.image.device
        x_s1 = normalize(unimatch_strong(unlabeled.raw))
        x_s2 = normalize(unimatch_strong(unlabeled.raw))
        box1 = unimatch_cutmix_boxes(B, (H, W), self.config.cutmix_p, device=dev)
        box2 = unimatch_cutmix_boxes(B, (H, W), self.config.cutmix_p, device=dev)
        return self.paste(x_s1, x_s2, box1, box2)

    @staticmethod
    def paste(x_s1: torch.Tensor, x_s2: torch.Tensor, box1: torch.Tensor, box2: torch.Tensor) -> UniMatchV2Views:
        """The views of a step from drawn strong views and boxes: each box filled from the reversed batch."""
        return UniMatchV2Views(reversed_partner(x_s1, box1), reversed_partner(x_s2, box2), box1, box2)

    def step_from_views(self, labeled: Batch, unlabeled: Batch, views: UniMatchV2Views) -> StepOutput:
        """Steps 1, 3 and 4 on given views (the conformance tests substitute the official strong views)."""
        cfg = self.config
        pseudo, conf, valid, mask_ratio = self.teacher_targets(unlabeled)

        z_l = self.model(labeled.image)
        strong = torch.cat([views.x_s1, views.x_s2])
        z_s1, z_s2 = (self.model(strong, comp_drop=True) if cfg.comp_drop else self.model(strong)).chunk(2)

        loss_x = self.context.supervised_loss(z_l, labeled.label)
        terms = []
        for z, box in ((z_s1, views.box1), (z_s2, views.box2)):
            terms.append(unimatch_unsup_loss(z, reversed_partner(pseudo, box), reversed_partner(conf, box),
                                             reversed_partner(valid, box), cfg.tau))
        loss = combine_losses(loss_x, terms[0], terms[1], cfg)
        return StepOutput(loss, {"loss_x": loss_x.detach(), "loss_s": ((terms[0] + terms[1]) / 2).detach(),
                                 "loss_s1": terms[0].detach(), "loss_s2": terms[1].detach(),
                                 "mask_ratio": mask_ratio})

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> StepOutput:
        if unlabeled is None:
            raise ValueError(f"{self.name} needs an unlabeled batch")
        return self.step_from_views(labeled, unlabeled, self.make_views(unlabeled))


class FixMatchV2Config(MethodConfig):
    tau: float = pydantic.Field(0.95, ge=0.0, le=1.0, description="confidence threshold (0.95 on every dataset)")
    cutmix_p: float = pydantic.Field(0.5, ge=0.0, le=1.0, description="probability of a CutMix box")
    ema_decay: float = pydantic.Field(0.996, ge=0.0, le=1.0, description="cap of the teacher's EMA decay")
    weight_x: float = pydantic.Field(1.0, ge=0.0, description="weight of L_x inside (…)/2")
    weight_u: float = pydantic.Field(1.0, ge=0.0, description="weight of L_s inside (…)/2")


class FixMatchV2(EMATeacherPseudoLabels):
    """FixMatch as the UniMatch V2 repository runs it (``fixmatch.py``, its Table 5 baseline): UniMatch V2's EMA
    teacher, reversed-batch CutMix and EMA update, with one strong view, no complementary dropout, and one joint
    forward of ``concat(x_l, x_s)``; ``L = (w_x·L_x + w_u·L_s) / 2``. Random draws: the strong view, its box.
    (``fixmatch`` is the UniMatch repository's FixMatch: no teacher, a second crop as the CutMix source.)"""

    name = "fixmatch_v2"
    display_name = "FixMatch (UniMatch V2 code)"
    table_order = 21
    description = ("FixMatch as in the UniMatch V2 repository: EMA-teacher pseudo-labels, one strong view with "
                   "reversed-batch CutMix, L = (L_x + L_s)/2")
    Config = FixMatchV2Config

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> StepOutput:
        if unlabeled is None:
            raise ValueError(f"{self.name} needs an unlabeled batch")
        B, _, H, W = unlabeled.image.shape
        x_s = normalize(unimatch_strong(unlabeled.raw))
        box = unimatch_cutmix_boxes(B, (H, W), self.config.cutmix_p, device=unlabeled.image.device)
        return self.step_from_view(labeled, unlabeled, reversed_partner(x_s, box), box)

    def step_from_view(self, labeled: Batch, unlabeled: Batch, x_s: torch.Tensor, box: torch.Tensor) -> StepOutput:
        """The step on a given pasted strong view and its box (the conformance tests substitute the official ones)."""
        cfg = self.config
        pseudo, conf, valid, mask_ratio = self.teacher_targets(unlabeled)
        z_l, z_s = self.model(torch.cat([labeled.image, x_s])).split([len(labeled), len(unlabeled)])
        loss_x = self.context.supervised_loss(z_l, labeled.label)
        loss_s = unimatch_unsup_loss(z_s, reversed_partner(pseudo, box), reversed_partner(conf, box),
                                     reversed_partner(valid, box), cfg.tau)
        loss = (cfg.weight_x * loss_x + cfg.weight_u * loss_s) / 2
        return StepOutput(loss, {"loss_x": loss_x.detach(), "loss_s": loss_s.detach(), "mask_ratio": mask_ratio})


@hookimpl
def harness_register_methods(registry):
    registry.add(UniMatchV2)
    registry.add(FixMatchV2)
