"""Mean teacher (Tarvainen & Valpola, 2017) for segmentation, as defined by the harness (baselines spec §2)."""

from __future__ import annotations

import pydantic
import torch

from harness.augment import normalize, unimatch_cutmix_boxes, unimatch_strong
from harness.hookspecs import hookimpl
from harness.method import Method, MethodConfig, StepOutput
from methods.components.ema import EMATeacher, TeacherEvaluated, mean_teacher_decay
from methods.components.losses import sigmoid_rampup, softmax_consistency


class MeanTeacher(TeacherEvaluated, Method):
    """L = L_x + w(t)·L_cons with an EMA teacher (baselines spec §2).

    One step: teacher (eval mode, no grad) on the weak crop x_w → p_t (no threshold); student (train mode)
    on concat(x_l, x_str) where x_str is the UniMatch photometric strong view of the same crop;
    L_cons = mean over valid (non-padded) pixels of Σ_c (p_s,c − p_t,c)²; w(t) = λ_c·exp(−5(1 − t)²),
    t = min(1, step / (0.1·T)). After every optimizer step the teacher is updated with
    α_i = min(1 − 1/(i + 1), ema_decay) (α_0 = 0: the teacher equals the student after step 0).
    ``cutmix: true`` pastes one UniMatch box per image (p = ``cutmix_prob``) from a random permutation of
    the batch into x_str, into p_t and into the valid mask (no extra forward: the partner's p_t is reused).

    Evaluated network: the **teacher**; the student is logged as ``student``.

    Cost per step (B_l = B_u = B): one forward/backward with grad on 2B images (supervised: B), plus one
    no-grad eval-mode teacher forward on B images, i.e. ≈ 2× the supervised images with grad + B without.
    Measured step times: ``benchmarks/perf/README.md``; run wall times: the records in ``results/``.

    Harness decisions: teacher = deep copy of the student (parameters and buffers); integer buffers are
    copied, not averaged (EMATeacher); the CutMix source is a shuffled copy of the batch.
    """

    name = "mean_teacher"
    display_name = "Mean Teacher"
    table_order = 10
    description = "Mean teacher: EMA teacher targets, softmax-MSE consistency on a strong view, sigmoid ramp-up"

    class Config(MethodConfig):
        lambda_c: float = pydantic.Field(default=1.0, ge=0, description="consistency weight λ_c (sweep 1, 10, 30)")
        rampup_fraction: float = pydantic.Field(default=0.1, ge=0, le=1,
                                                description="sigmoid ramp-up over this fraction of T")
        ema_decay: float = pydantic.Field(default=0.99, ge=0, le=1, description="EMA decay cap (option 0.999)")
        cutmix: bool = pydantic.Field(default=False, description="paste a UniMatch box into x_str and p_t")
        cutmix_prob: float = pydantic.Field(default=0.5, ge=0, le=1, description="per-image box probability")

    def __init__(self, model, config, context):
        super().__init__(model, config, context)
        self.teacher = EMATeacher(model)

    def consistency_weight(self, step: int) -> float:
        c = self.config
        return sigmoid_rampup(step, self.context.total_steps, c.rampup_fraction, c.lambda_c)

    def ema_alpha(self, step: int) -> float:
        return mean_teacher_decay(step, self.config.ema_decay)

    def training_step(self, labeled, unlabeled, step):
        x_w, valid = unlabeled.image, unlabeled.valid
        p_t = self.teacher(x_w).float().softmax(dim=1)
        x_str = normalize(unimatch_strong(unlabeled.raw))
        if self.config.cutmix:
            B, _, H, W = x_w.shape
            box = unimatch_cutmix_boxes(B, (H, W), self.config.cutmix_prob, device=x_w.device)
            perm = torch.randperm(B).to(x_w.device)
            x_str = torch.where(box.unsqueeze(1), x_str[perm], x_str)
            p_t = torch.where(box.unsqueeze(1), p_t[perm], p_t)
            valid = torch.where(box, valid[perm], valid)
        z_l, z_s = self.model(torch.cat([labeled.image, x_str])).split([len(labeled), len(unlabeled)])
        loss_x = self.context.supervised_loss(z_l, labeled.label)
        loss_cons = softmax_consistency(z_s.float().softmax(dim=1), p_t, valid)
        w = self.consistency_weight(step)
        return StepOutput(loss_x + w * loss_cons,
                          {"loss_x": loss_x.detach(), "loss_cons": loss_cons.detach(), "w_cons": w})


@hookimpl
def harness_register_methods(registry):
    registry.add(MeanTeacher)
