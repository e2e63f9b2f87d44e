"""iMAS: instance-specific and model-adaptive supervision (Zhao et al., CVPR 2023), as the official code behaves.

Spec: the imas spec. The building blocks (easiness, EMA teacher, intensity ops and blend, easy↔hard CutMix,
easiness-weighted CE) live in ``methods.components`` and ``harness.augment``; this module only wires them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pydantic
import torch
from torch import nn

from harness.augment import blend, blend_bernoulli, imas_strong, normalize
from harness.errors import ConfigError
from harness.hookspecs import hookimpl
from harness.method import Batch, Method, MethodConfig, StepOutput
from methods.components.cutmix import CutMixResult, imas_cutmix, imas_cutmix_across_ranks
from methods.components.easiness import EasinessTerms, easiness_terms, max_and_argmax
from methods.components.ema import EMATeacher, imas_decay
from methods.components.losses import imas_unsup_loss

Tensor = torch.Tensor


@dataclass
class PseudoLabels:
    """What iMAS knows about the unlabeled batch before the training forward (imas spec §10, "no grad")."""

    x_w: Tensor  # normalised weak view, B×3×H×W
    valid: Tensor  # bool B×H×W, False on crop padding
    pseudo: Tensor  # teacher argmax ŷ, long B×H×W
    conf: Tensor  # teacher max probability c, B×H×W
    h: Tensor  # easiness (B,), float32, a constant
    terms: EasinessTerms  # ρ_s, ρ_t, wIoU_t, wIoU_s, all_class0
    student_pred: Tensor  # student eval-mode argmax P_s, long B×H×W
    student_conf: Tensor  # student eval-mode max probability m_s


@dataclass
class ImasStepState:
    """Everything one iMAS step built, handed to ``extra_losses``."""

    step: int
    pl: PseudoLabels
    x_s: Tensor  # blended strong view h·x_str + (1 − h)·x_w
    cutmix: CutMixResult | None  # None when the branch is disabled
    z_l: Tensor  # student logits (train mode) on x_l
    z_s: Tensor  # … on x_s
    z_cm: Tensor | None  # … on the CutMix images of fired groups (None if none fired)
    loss_x: Tensor
    loss_u: Tensor
    extra: dict = field(default_factory=dict)


class Imas(Method):
    """iMAS (imas spec §10): L = L_sup + λ_u·L_u, easiness-weighted, easiness-adaptive augmentation, EMA teacher.

    One step: student (**eval** mode) and teacher (eval) on the weak view x_w, no grad → easiness h per image
    (§2) and teacher pseudo-labels ŷ = argmax p_t, c = max p_t. Strong view x_str = 2 of the 12 intensity ops
    on ``unlabeled.raw`` (§4), normalised, blended x_s = h·x_str + (1 − h)·x_w (§3.2). Per group of
    ``group_size`` (§9): CutMix fires iff u < mean h, pairing easy↔hard, built from the **weak** views with
    ŷ, c (§3.3). One student train-mode forward on concat(x_l, x_w, x_cm of fired groups, x_s); the x_w
    prediction is discarded (it only shapes BatchNorm batch statistics). L_u = mean_g of L(z_s) or
    ½(L(z_s) + L(z_cm)) for fired groups, L = (1/B)Σ h_i·(1/(H·W))Σ_j [c ≥ τ]·CE. L_sup = the protocol's
    supervised loss. EMA after every step with α = 0 during epoch 0, then min(1 − 1/(i + 1), ema_decay),
    L = ``context.iters_per_epoch``.

    Evaluated network: the **teacher** (``eval_network: student`` to report the student); the other network is
    logged as a secondary number. ``eval_logs()``: mean h, ρ_t, ρ_s and CutMix fire rate (fired groups / groups)
    since the previous call.

    Cost per step (B_l = B_u = B): forward/backward with grad on 3B images, or 4B when CutMix fires in every group
    (supervised: B); plus two no-grad eval-mode forwards on B images (student and teacher).
    Measured step times: ``benchmarks/perf/README.md``; run wall times: the records in ``results/``.

    Spec decisions (imas spec §5, §12), each behind the config key named:
    - [quirk, kept] per-image CE normalised by all H·W pixels, not confident ones (``loss_normalization``).
    - [quirk, kept] α = 0 during the whole first epoch (``ema_zero_first_epoch``).
    - [quirk, kept] class 0 dropped from the wIoU weights (also road on Cityscapes); h = 0 whenever either map is
      all class 0 (``ignore_class0``, ``all_class0_easiness``).
    - [quirk, kept] student easiness forward in eval mode; teacher pseudo-labels.
    - [quirk, kept] discarded student forward on x_w inside the training batch (``student_forward_weak``).
    - [quirk, kept] CutMix from weak views; padding not masked (``exclude_padding``); ops drawn with replacement.
    - [defect, fixed] teacher = deep copy (parameters and buffers), not aliased storage; integer buffers copied,
      not averaged (EMATeacher); hue shift with modular integer arithmetic (harness.augment); shared
      pseudo-label tensors never mutated (CutMix builds new tensors); one optimizer, every val image once,
      labeled stream cycling over all images (engine/core).
    - [harness] groups of ``group_size`` make the per-device upstream semantics device-count independent. On
      several processes a group lies in one process or spans consecutive ones (trigger, box size and pairing
      then agree across them, ``imas_cutmix_across_ranks``); ``check_run`` rejects sizes that fit neither way
      when the run is resolved.
      ``loss_normalization: valid_pixels`` also drops padded pixels from the numerator. The §5 generalisation
      ``sup_only_epochs`` (unused by every released config) is not exposed.
    State: the EMA teacher and the ``eval_logs`` accumulators are in ``state_dict``, so a resumed run is exact.

    Extension points (used by ``combined``, which subclasses this class):
    - ``pseudo_labels(unlabeled) -> PseudoLabels``: the no-grad part (x_w, valid, ŷ, c, h, easiness terms,
      the student's eval-mode argmax/max).
    - ``extra_losses(unlabeled, state: ImasStepState) -> dict[str, Tensor]``: called after L_sup and L_u are
      computed; every value is added to the loss **as is** (already weighted) and logged under its key.
      Empty here.
    - ``ema_alpha(step)``, ``eval_network``; ``state_dict``/``load_state_dict`` call ``super()`` (extra_modules,
      e.g. a reconstruction head, are checkpointed by the base class).
    """

    name = "imas"
    display_name = "iMAS"
    table_order = 40
    evaluates = "teacher"  # eval_network: student reports the student (recorded per run)
    description = "iMAS: easiness-weighted consistency, easiness-adaptive intensity blend and CutMix, EMA teacher"

    class Config(MethodConfig):
        tau: float = pydantic.Field(default=0.95, ge=0, le=1, description="confidence threshold (0.7 Cityscapes)")
        lambda_u: float = pydantic.Field(default=3.0, ge=0, description="unsupervised loss weight")
        ema_decay: float = pydantic.Field(default=0.996, ge=0, le=1, description="EMA decay cap")
        ema_zero_first_epoch: bool = pydantic.Field(default=True, description="α = 0 during epoch 0 [quirk, kept]")
        ignore_class0: bool = pydantic.Field(default=True, description="drop class 0 from the wIoU weights")
        weighted_iou: bool = pydantic.Field(default=True, description="false: plain mean IoU (ablation)")
        all_class0_easiness: float | None = pydantic.Field(
            default=None, ge=0, le=1, description="h for images whose two maps are all class 0 (null: 0, ablation)")
        weight_loss_by_easiness: bool = pydantic.Field(default=True, description="multiply per-image loss by h")
        blend_mode: Literal["mix", "bernoulli"] = pydantic.Field(default="mix", description="strong/weak blend")
        strong_num_ops: int = pydantic.Field(default=2, ge=0, description="intensity ops per strong view")
        cutmix: bool = pydantic.Field(default=True, description="enable the CutMix branch")
        cutmix_trigger: Literal["easiness"] | float = pydantic.Field(
            default="easiness", description="'easiness' (p = mean h per group) or a fixed probability")
        cutmix_side_range: tuple[float, float] = pydantic.Field(default=(0.1, 0.9), description="box side ratio")
        cutmix_pairing: Literal["easy_hard", "random"] = pydantic.Field(default="easy_hard")
        group_size: int = pydantic.Field(
            default=4, gt=0, description="images per CutMix group; must divide the unlabeled batch and be a divisor "
                                         "or a multiple of each process's share of it (§9)")
        student_forward_weak: bool = pydantic.Field(default=True, description="x_w in the training forward")
        exclude_padding: bool = pydantic.Field(default=False, description="mask padded pixels [quirk: false]")
        loss_normalization: Literal["all_pixels", "valid_pixels", "confident_pixels"] = pydantic.Field(
            default="all_pixels", description="per-image CE denominator [quirk, kept: all H·W pixels]")
        eval_network: Literal["teacher", "student"] = pydantic.Field(default="teacher")

        @pydantic.field_validator("cutmix_trigger")
        @classmethod
        def _prob(cls, v):
            if not isinstance(v, str) and not 0.0 <= v <= 1.0:
                raise ValueError("a fixed cutmix_trigger must be a probability in [0, 1]")
            return v

    def __init__(self, model, config, context):
        super().__init__(model, config, context)
        self.teacher = EMATeacher(model)
        self._reset_accumulators()

    # -- extension points -------------------------------------------------------------------------------
    @torch.no_grad()
    def pseudo_labels(self, unlabeled: Batch) -> PseudoLabels:
        c = self.config
        x_w = unlabeled.image
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()  # [quirk, kept] BN running statistics for the student's easiness forward
        try:
            p_s = self.model(x_w).float().softmax(dim=1)
        finally:
            for m, training in modes:  # restore every module's own mode (e.g. BN frozen by a subclass)
                m.training = training
        p_t = self.teacher(x_w).float().softmax(dim=1)
        P_s, m_s = max_and_argmax(p_s)
        P_t, m_t = max_and_argmax(p_t)
        terms = easiness_terms((P_s, m_s), (P_t, m_t), c.tau, self.context.num_classes, c.ignore_class0,
                               c.all_class0_easiness, unlabeled.valid if c.exclude_padding else None, c.weighted_iou)
        return PseudoLabels(x_w=x_w, valid=unlabeled.valid, pseudo=P_t, conf=m_t, h=terms.h.to(x_w.device),
                            terms=terms, student_pred=P_s, student_conf=m_s)

    def extra_losses(self, unlabeled: Batch, state: ImasStepState) -> dict[str, Tensor]:
        return {}

    def ema_alpha(self, step: int) -> float:
        c = self.config
        return imas_decay(step, self.context.iters_per_epoch, c.ema_decay, c.ema_zero_first_epoch)

    # -- one iteration ----------------------------------------------------------------------------------
    def _unsup(self, logits: Tensor, pseudo: Tensor, conf: Tensor, h: Tensor, valid: Tensor) -> Tensor:
        c = self.config
        use_valid = c.exclude_padding or c.loss_normalization == "valid_pixels"
        return imas_unsup_loss(logits, pseudo, conf, h if c.weight_loss_by_easiness else None, c.tau,
                               c.loss_normalization, valid if use_valid else None)

    @classmethod
    def check_run(cls, protocol, config, world_size):
        """Groups (§9) must tile the global unlabeled batch and each process's share of it: every group lies in
        one process (the share is a multiple of ``group_size``) or spans whole shares (``group_size`` is a
        multiple of the share)."""
        batch, gs = protocol.budget.batch_unlabeled, config.group_size
        share = batch // world_size
        if batch % gs or (share % gs and gs % share):
            raise ConfigError(
                f"{cls.name}: group_size {gs} does not fit protocol '{protocol.id}' on {world_size} process(es): the "
                f"unlabeled batch {batch} is {share} per process, and group_size must divide {batch} and be a "
                f"divisor or a multiple of the per-process batch {share}; change the number of processes or set "
                f"--set group_size={share} (one group per process, as the official code's device batches)")

    def training_step(self, labeled, unlabeled, step):
        c = self.config
        pl = self.pseudo_labels(unlabeled)
        B, gs = len(unlabeled), c.group_size
        across = gs > B and self.context.world_size > 1  # a group spans several processes (§9)
        if across:
            gs = B  # this process's share of its group, handled as one (partial) group here
        elif B % gs:
            raise ValueError(f"imas: group_size {gs} must divide the unlabeled batch size {B}")

        x_str = normalize(imas_strong(unlabeled.raw, c.strong_num_ops))
        x_s = blend(x_str, pl.x_w, pl.h) if c.blend_mode == "mix" else blend_bernoulli(x_str, pl.x_w, pl.h)
        cm = None
        if c.cutmix and across:
            cm = imas_cutmix_across_ranks(pl.x_w, pl.pseudo, pl.conf, pl.h, c.group_size, self.context.rank,
                                          self.context.world_size, tuple(c.cutmix_side_range), c.cutmix_trigger,
                                          c.cutmix_pairing, extra=(pl.valid,))
        elif c.cutmix:
            cm = imas_cutmix(pl.x_w, pl.pseudo, pl.conf, pl.h, gs, tuple(c.cutmix_side_range), c.cutmix_trigger,
                             c.cutmix_pairing, extra=(pl.valid,))
        fired = cm.fired.tolist() if cm is not None else [False] * (B // gs)  # per group, on the CPU
        fired_groups = [g for g, f in enumerate(fired) if f]
        x_cm = torch.cat([cm.image[g * gs:(g + 1) * gs] for g in fired_groups]) if fired_groups else pl.x_w[:0]

        parts = [labeled.image, *([pl.x_w] if c.student_forward_weak else []), x_cm, x_s]
        z = self.model(torch.cat(parts)).split([len(p) for p in parts])
        z_l, z_cm, z_s = z[0], z[-2], z[-1]

        loss_x = self.context.supervised_loss(z_l, labeled.label)
        # L_u = mean over groups; a fired group averages its blended-view and CutMix terms (§3.1, §9)
        group_losses = []
        for g in range(B // gs):
            sl = slice(g * gs, (g + 1) * gs)
            l_g = self._unsup(z_s[sl], pl.pseudo[sl], pl.conf[sl], pl.h[sl], pl.valid[sl])
            if fired[g]:
                k = fired_groups.index(g)
                l_cm = self._unsup(z_cm[k * gs:(k + 1) * gs], cm.label[sl], cm.conf[sl], pl.h[sl], cm.extra[0][sl])
                l_g = 0.5 * (l_g + l_cm)
            group_losses.append(l_g)
        loss_u = torch.stack(group_losses).mean()

        state = ImasStepState(step, pl, x_s, cm, z_l, z_s, z_cm if len(z_cm) else None, loss_x, loss_u)
        state.extra = self.extra_losses(unlabeled, state)
        loss = loss_x + c.lambda_u * loss_u
        for v in state.extra.values():
            loss = loss + v

        fire_rate = sum(fired) / len(fired)
        self._accumulate(pl, fired)
        logs = {"loss_x": loss_x.detach(), "loss_u": loss_u.detach(), "h_mean": pl.h.mean(),
                "rho_t": pl.terms.rho_t.mean(), "cutmix_fired": fire_rate,
                **{k: v.detach() for k, v in state.extra.items()}}
        return StepOutput(loss, logs)

    def after_step(self, step):
        self.teacher.update(self.model, self.ema_alpha(step))

    # -- evaluation and signals -------------------------------------------------------------------------
    def eval_model(self) -> nn.Module:
        return self.teacher.eval_model() if self.config.eval_network == "teacher" else self.model

    def secondary_eval_models(self):
        if self.config.eval_network == "teacher":
            return {"student": self.model}
        return {"teacher": self.teacher.eval_model()}

    def _reset_accumulators(self) -> None:
        # running sums are tensors on the data device, so accumulating does not synchronise a GPU every step
        self._acc = {"h": 0.0, "rho_t": 0.0, "rho_s": 0.0, "images": 0, "fired": 0, "groups": 0}

    def _accumulate(self, pl: PseudoLabels, fired: list[bool]) -> None:
        a = self._acc
        a["h"] = a["h"] + pl.h.detach().double().sum()
        a["rho_t"] = a["rho_t"] + pl.terms.rho_t.double().sum()
        a["rho_s"] = a["rho_s"] + pl.terms.rho_s.double().sum()
        a["images"] += pl.h.numel()
        a["fired"] += sum(fired)
        a["groups"] += len(fired)

    def eval_logs(self) -> dict[str, float]:
        a = self._acc
        if a["images"] == 0:
            return {}
        n, g = a["images"], max(a["groups"], 1)
        out = {"h_mean": float(a["h"]) / n, "rho_t": float(a["rho_t"]) / n, "rho_s": float(a["rho_s"]) / n,
               "cutmix_rate": float(a["fired"]) / g}
        self._reset_accumulators()
        return out

    # -- checkpoint -------------------------------------------------------------------------------------
    def state_dict(self):
        acc = {k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in self._acc.items()}
        return {**super().state_dict(), "teacher": self.teacher.state_dict(), "signals": acc}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.teacher.load_state_dict(state["teacher"])
        self._reset_accumulators()
        self._acc.update(state.get("signals", {}))


@hookimpl
def harness_register_methods(registry):
    registry.add(Imas)
