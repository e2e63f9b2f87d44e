"""The S4MIM loss terms as one block, shared by the ``s4mim`` and ``combined`` plugins.

Specification: the s4mim spec §3 and the combined spec §3–§5.

**Status: harness interpretation [interp].** Only the S4MIM abstract is available (no official code): it fixes
that the MIM target is pixels, that class-wise MIM reconstructs each class region independently, that feature
aggregation pulls masked-part features of a class towards its visible-part features, and that a third MIM term
acts in "semantic space". Everything concrete here (partition from an argmax, patch masks and their sizes,
reconstruction head, loss forms, BN freezing, weights, presets) is this project's interpretation, documented in
the s4mim spec.

What this module holds:

* :class:`MIMSettings` — the configuration keys of §3.8 (nested sections ``cmim``, ``fa``, ``sem``; ``lambda_*``,
  ``mim_rampup_epochs``, ``freeze_bn_stats_for_masked``, ``preset``), mixed into both plugins' ``Config``;
* :func:`resolve_mim` — presets, explicit keys and crop-size defaults → a concrete :class:`ResolvedMIM`;
* :func:`compute_mim_terms` — given the student model, the weak images, pseudo-labels, confidences and valid mask,
  run the masked forwards and return **per-class-sample and per-image** values and counts (:class:`MIMTerms`);
* :meth:`MIMTerms.reduce` — plain means (``s4mim``) or easiness-weighted means without renormalisation by Σh
  (``combined``), and :class:`MIMTermsMixin`, the glue both plugins use (head in ``extra_modules``, λ and ramp-up).

It composes the component blocks (``masking``, ``mim``, ``feature_aggregation``, ``semantic_mim``, ``batchnorm``);
it re-implements none of them.

Preset precedence [harness]: every switch/mode key defaults to ``null`` = "as the preset says". An explicit value
(``--set cmim.enabled=false``, or in the protocol's ``method_settings``) always wins over the preset; the preset
(default ``s4mim``: all terms on, ``cmim.mode = classwise``) fills in the rest. Presets: ``unimatch`` (all MIM off),
``plain_mim`` (cmim on with mode plain; FA and semantic off), ``cmim`` (classwise CMIM only), ``cmim_fa`` (CMIM +
FA), ``sem_only`` (semantic MIM only), ``s4mim`` (all on).

Crop-size defaults (§3.2) for ``cmim.patch_size/mask_ratio`` and ``sem.patch_size/mask_ratio`` when not set:
crop ≤ 321 → (32, 0.5) / (32, 0.5); crop ≤ 513 → (32, 0.5) / (64, 0.7); larger → (64, 0.5) / (64, 0.7). For crops
smaller than 321 (synthetic, tests) the patch side is scaled with the crop, ``P = max(4, 2^round(log2(P₃₂₁·crop/321)))``
[harness].

Engineering decisions [harness]:

* A term is computed iff its switch is on **and** its λ is > 0 (λ = 0 costs nothing and draws no random numbers).
  The masked CMIM/FA forward runs iff CMIM or FA is computed.
* Batches of one image/class-sample: BatchNorm in train mode cannot normalise a single 1×1 map (the ASPP
  image-pooling branch), so a batch of size 1 is run as ``[x, x]`` and the first output kept. The batch statistics of
  ``[x, x]`` are exactly those of ``x`` alone, so this *is* the single-sample train-mode forward (the pooling
  branch outputs its BN shift) and the loss counts the sample once. N = 0: the forward is skipped; the term is 0.
* With ``cmim.apply_to_labeled`` the labeled images (ground-truth partition, 255 excluded, confidence 1) are
  appended to the CMIM/FA batch; in the easiness-weighted reduction they get weight 1.
* Random draws (global RNG, in this order): K_max class sampling (only when an image has more than K_max eligible
  classes) and the ``max_class_samples`` cap, the CMIM/FA patch masks, the semantic-MIM strong view (only with
  ``sem.color_jitter``), the semantic-MIM masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import pydantic
import torch
from torch import nn

from harness.augment import normalize, unimatch_strong
from harness.method import MethodConfig
from methods.components.batchnorm import frozen_bn_stats
from methods.components.feature_aggregation import feature_aggregation_losses
from methods.components.masking import ClassSamples, class_partition, class_sample_masks, patch_mask
from methods.components.mim import ReconstructionHead, SampleLosses, build_mim_inputs, mim_reconstruction_losses
from methods.components.semantic_mim import reduce_semantic_mim, semantic_mim_inputs, semantic_mim_loss_terms

__all__ = [
    "PRESETS",
    "CMIMSettings",
    "FASettings",
    "SemSettings",
    "MIMSettings",
    "ResolvedMIM",
    "MIMTerms",
    "MIMTermsMixin",
    "MIMLosses",
    "default_mask_settings",
    "resolve_mim",
    "compute_mim_terms",
]

Preset = Literal["unimatch", "plain_mim", "cmim", "cmim_fa", "sem_only", "s4mim"]

#: preset → (cmim.enabled, fa.enabled, sem.enabled, cmim.mode)
PRESETS: dict[str, tuple[bool, bool, bool, str]] = {
    "unimatch": (False, False, False, "classwise"),
    "plain_mim": (True, False, False, "plain"),
    "cmim": (True, False, False, "classwise"),
    "cmim_fa": (True, True, False, "classwise"),
    "sem_only": (False, False, True, "classwise"),
    "s4mim": (True, True, True, "classwise"),
}


# ---------------------------------------------------------------------------------------------------
# Configuration (s4mim spec §3.8)


class CMIMSettings(MethodConfig):
    enabled: bool | None = pydantic.Field(None, description="class-wise MIM reconstruction term (null: from preset)")
    mode: Literal["classwise", "shared", "plain"] | None = pydantic.Field(
        None, description="classwise / shared / plain (null: from preset, classwise except plain_mim)")
    patch_size: int | None = pydantic.Field(None, ge=1, description="mask cell side P (null: by crop, §3.2)")
    mask_ratio: float | None = pydantic.Field(None, ge=0.0, le=1.0, description="mask ratio r (null: by crop)")
    k_max: int = pydantic.Field(3, ge=1, description="classes per image")
    min_class_fraction: float = pydantic.Field(0.01, ge=0.0, le=1.0, description="eligibility, of valid pixels")
    mask_per_class_sample: bool = pydantic.Field(True, description="false: one mask per image")
    rec_loss: Literal["l1", "l2"] = "l1"
    loss_conf_threshold: float | None = pydantic.Field(
        None, ge=0.0, le=1.0, description="drop pixels with c < threshold from the reconstruction loss")
    apply_to_labeled: bool = pydantic.Field(False, description="also labeled images, ground-truth partition")
    max_class_samples: int | None = pydantic.Field(None, ge=0, description="hard cap on N (null: k_max·B)")


class FASettings(MethodConfig):
    enabled: bool | None = pydantic.Field(None, description="feature aggregation term (null: from preset)")
    level: Literal["prototype", "pixel"] = "prototype"
    distance: Literal["cosine", "l2norm"] = "cosine"
    stop_grad_visible: bool = True
    feature: Literal["fuse", "c4"] = "fuse"
    min_weight: float = pydantic.Field(4.0, ge=0.0, description="w_min, in feature cells")


class SemSettings(MethodConfig):
    enabled: bool | None = pydantic.Field(None, description="semantic-space MIM term (null: from preset)")
    patch_size: int | None = pydantic.Field(None, ge=1, description="mask cell side P' (null: by crop, §3.2)")
    mask_ratio: float | None = pydantic.Field(None, ge=0.0, le=1.0, description="mask ratio r' (null: by crop)")
    color_jitter: bool = pydantic.Field(False, description="UniMatch strong view before masking")


class MIMSettings(MethodConfig):
    """The MIM keys shared by ``s4mim`` and ``combined`` (the λ defaults differ: 0.5 here, 1.0 in combined)."""

    preset: Preset = pydantic.Field("s4mim", description="sets the term switches; explicit keys win")
    cmim: CMIMSettings = pydantic.Field(default_factory=CMIMSettings)
    fa: FASettings = pydantic.Field(default_factory=FASettings)
    sem: SemSettings = pydantic.Field(default_factory=SemSettings)
    lambda_rec: float = pydantic.Field(0.5, ge=0.0)
    lambda_fa: float = pydantic.Field(0.5, ge=0.0)
    lambda_sem: float = pydantic.Field(0.5, ge=0.0)
    mim_rampup_epochs: float = pydantic.Field(0.0, ge=0.0, description="linear ramp-up of λ_rec and λ_fa")
    freeze_bn_stats_for_masked: bool = True


@dataclass(frozen=True)
class ResolvedMIM:
    """Concrete MIM settings of a run (presets and crop defaults applied; ``rec``/``fa``/``sem`` = computed)."""

    rec: bool
    fa: bool
    sem: bool
    mode: str
    patch_size: int
    mask_ratio: float
    sem_patch_size: int
    sem_mask_ratio: float
    cmim: CMIMSettings
    fa_settings: FASettings
    sem_color_jitter: bool
    lambda_rec: float
    lambda_fa: float
    lambda_sem: float
    rampup_steps: float
    freeze_bn: bool

    @property
    def masked_forward(self) -> bool:
        return self.rec or self.fa

    def ramp(self, step: int) -> float:
        """Linear ramp-up factor of λ_rec and λ_fa at ``step`` (1 without ramp-up)."""
        return 1.0 if self.rampup_steps <= 0 else min(1.0, step / self.rampup_steps)


def default_mask_settings(crop_size: int) -> tuple[tuple[int, float], tuple[int, float]]:
    """((P, r) of CMIM, (P', r') of semantic MIM) for a crop size (s4mim spec §3.2; small crops scaled [harness])."""
    if crop_size > 513:
        return (64, 0.5), (64, 0.7)
    if crop_size > 321:
        return (32, 0.5), (64, 0.7)
    if crop_size == 321:
        return (32, 0.5), (32, 0.5)
    p = max(4, 2 ** round(math.log2(max(32 * crop_size / 321, 1e-9))))
    return (p, 0.5), (p, 0.5)


def resolve_mim(settings: MIMSettings, crop_size: int, iters_per_epoch: int) -> ResolvedMIM:
    """Apply the preset to the switches left ``null``, and the crop defaults to unset mask sizes."""
    p_cmim, p_fa, p_sem, p_mode = PRESETS[settings.preset]
    cm, fa, sem = settings.cmim, settings.fa, settings.sem
    (P, r), (Ps, rs) = default_mask_settings(crop_size)

    def pick(value, default):
        return default if value is None else value

    return ResolvedMIM(
        rec=pick(cm.enabled, p_cmim) and settings.lambda_rec > 0,
        fa=pick(fa.enabled, p_fa) and settings.lambda_fa > 0,
        sem=pick(sem.enabled, p_sem) and settings.lambda_sem > 0,
        mode=pick(cm.mode, p_mode),
        patch_size=pick(cm.patch_size, P),
        mask_ratio=pick(cm.mask_ratio, r),
        sem_patch_size=pick(sem.patch_size, Ps),
        sem_mask_ratio=pick(sem.mask_ratio, rs),
        cmim=cm,
        fa_settings=fa,
        sem_color_jitter=sem.color_jitter,
        lambda_rec=settings.lambda_rec,
        lambda_fa=settings.lambda_fa,
        lambda_sem=settings.lambda_sem,
        rampup_steps=settings.mim_rampup_epochs * iters_per_epoch,
        freeze_bn=settings.freeze_bn_stats_for_masked,
    )


# ---------------------------------------------------------------------------------------------------
# The terms


@dataclass
class MIMTerms:
    """Unreduced MIM terms of one batch.

    ``rec``/``fa``: per-sample losses (:class:`SampleLosses`, per class-sample; per image in ``plain`` mode) or
    None when not computed; ``sem_num``/``sem_count``: per-image ``Σ [c ≥ τ]·[V]·CE`` and ``|V_b|`` or None.
    ``num_unlabeled``: B (images 0..B−1 of the sample indices are the unlabeled ones; labeled images, with
    ``apply_to_labeled``, follow). ``samples``/``masks``/``sem_masks``: for diagnostics and tests.
    """

    num_unlabeled: int
    num_images: int = 0
    rec: SampleLosses | None = None
    fa: SampleLosses | None = None
    sem_num: torch.Tensor | None = None
    sem_count: torch.Tensor | None = None
    samples: ClassSamples | None = None
    masks: torch.Tensor | None = None
    sem_masks: torch.Tensor | None = None
    inputs: torch.Tensor | None = None
    logs: dict[str, float] = field(default_factory=dict)

    def _weights(self, image_weights: torch.Tensor | None) -> torch.Tensor | None:
        """Per-image weights over all images of the CMIM batch (labeled ones, if any, get 1)."""
        if image_weights is None:
            return None
        w = image_weights.detach().float().reshape(-1)
        extra = self.num_images - w.numel()
        return torch.cat([w, w.new_ones(extra)]) if extra > 0 else w

    def reduce(self, image_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``{"loss_rec", "loss_fa", "loss_sem"}`` (only the computed terms).

        ``image_weights`` None: plain means (``s4mim``): mean over used samples, ``Σ num / Σ |V|``. Given (B,):
        ``(1/N_used) Σ h_b·ℓ`` and ``Σ h_b·num_b / Σ |V_b|`` (``combined``, no renormalisation by Σh).
        """
        w = self._weights(image_weights)
        out = {}
        for name, part in (("loss_rec", self.rec), ("loss_fa", self.fa)):
            if part is not None:
                out[name] = part.mean() if w is None else part.weighted_mean(w.to(part.values.device))
        if self.sem_num is not None:
            ws = None if image_weights is None else image_weights.reshape(-1)
            out["loss_sem"] = reduce_semantic_mim(self.sem_num, self.sem_count, ws)
        return out


def _forward_masked(model: nn.Module, inputs: torch.Tensor, freeze_bn: bool, fn) -> tuple:
    """``fn(model, inputs)`` under frozen BN running statistics; a batch of 1 runs as [x, x] (see module doc)."""
    n = inputs.shape[0]
    if n == 1:
        inputs = torch.cat([inputs, inputs])
    with frozen_bn_stats(model, freeze_bn):
        outs = fn(model, inputs)
    return tuple(o[:n] for o in outs)


def _features(need_fuse: bool, need_c4: bool):
    def fn(model, x):
        if not need_c4:
            return (model.features(x)[1],)
        feats = model.encode(x)  # the deepest encoder feature ("c4") is the last, on either model family
        fuse = model.decode(*feats, size=x.shape[-2:])[1] if need_fuse else feats[-1]
        return fuse, feats[-1]
    return fn


def _empty_losses(device) -> SampleLosses:
    return SampleLosses(torch.zeros(0, device=device), torch.zeros(0, dtype=torch.bool, device=device),
                        torch.zeros(0, dtype=torch.long, device=device))


def compute_mim_terms(
    model: nn.Module,
    head: nn.Module | None,
    cfg: ResolvedMIM,
    x: torch.Tensor,
    pseudo: torch.Tensor,
    conf: torch.Tensor,
    valid: torch.Tensor,
    tau: float,
    num_classes: int,
    raw: torch.Tensor | None = None,
    labeled: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> MIMTerms:
    """The S4MIM terms of one unlabeled batch (s4mim spec §3.1–§3.6), unreduced.

    ``model``: the student (train mode); ``head``: the reconstruction head (needed iff ``cfg.rec``);
    ``x`` B×3×H×W normalised weak images; ``pseudo``/``conf`` B×H×W the pseudo-labels (argmax, no threshold, for
    the partition and the semantic target) and their confidences; ``valid`` bool B×H×W; ``tau`` the semantic-MIM
    threshold; ``raw`` the 8-bit weak images (only for ``sem.color_jitter``); ``labeled`` ``(x_l, y_l, valid_l)``
    (only for ``cmim.apply_to_labeled``).
    """
    B, _, H, W = x.shape
    valid = valid.bool()
    pseudo = pseudo.detach().long()
    conf = conf.detach()
    terms = MIMTerms(num_unlabeled=B, num_images=B)

    if cfg.masked_forward:
        cm = cfg.cmim
        x_all, part, part_valid = x, pseudo, valid
        keep = None if cm.loss_conf_threshold is None else conf >= cm.loss_conf_threshold
        if cm.apply_to_labeled and labeled is not None:
            x_l, y_l, v_l = labeled
            lab_valid = (y_l != 255) & v_l.bool()
            x_all = torch.cat([x, x_l])
            part = torch.cat([pseudo, torch.where(lab_valid, y_l, torch.zeros_like(y_l)).long()])
            part_valid = torch.cat([valid, lab_valid])
            if keep is not None:
                keep = torch.cat([keep, torch.ones_like(lab_valid)])
        n_img = x_all.shape[0]
        terms.num_images = n_img
        need_samples = cfg.mode != "plain" or cfg.fa
        samples = None
        if need_samples:
            cap = cm.max_class_samples if cm.max_class_samples is not None else cm.k_max * n_img
            samples = class_partition(part, part_valid, num_classes, cm.k_max, cm.min_class_fraction, cap)
        if cfg.mode == "classwise":
            masks = class_sample_masks(samples, H, W, cfg.patch_size, cfg.mask_ratio, cm.mask_per_class_sample,
                                       num_images=n_img)
        else:
            masks = patch_mask(n_img, H, W, cfg.patch_size, cfg.mask_ratio, device=x.device)
        inputs = build_mim_inputs(cfg.mode, x_all, samples, masks)
        terms.samples, terms.masks, terms.inputs = samples, masks, inputs
        terms.logs["mim_class_samples"] = float(len(samples)) if samples is not None else 0.0
        fa_opts = cfg.fa_settings
        if inputs.shape[0] == 0:
            terms.rec = _empty_losses(x.device) if cfg.rec else None
            terms.fa = _empty_losses(x.device) if cfg.fa else None
        else:
            need_c4 = cfg.fa and fa_opts.feature == "c4"
            outs = _forward_masked(model, inputs, cfg.freeze_bn, _features(cfg.rec or not need_c4, need_c4))
            fuse, fa_feats = outs[0], outs[-1]
            if cfg.rec:
                x_hat = head(fuse, (H, W))
                terms.rec = mim_reconstruction_losses(cfg.mode, x_hat, x_all, samples, masks, part_valid,
                                                      cm.rec_loss, keep)
            if cfg.fa:
                terms.fa = feature_aggregation_losses(
                    cfg.mode, fa_feats, samples, masks, min_weight=fa_opts.min_weight, level=fa_opts.level,
                    distance=fa_opts.distance, stop_grad_visible=fa_opts.stop_grad_visible)

    if cfg.sem:
        x_sem = x
        if cfg.sem_color_jitter:
            if raw is None:
                raise ValueError("sem.color_jitter needs the 8-bit weak images (raw)")
            x_sem = normalize(unimatch_strong(raw))
        terms.sem_masks = patch_mask(B, H, W, cfg.sem_patch_size, cfg.sem_mask_ratio, device=x.device)
        inp = semantic_mim_inputs(x_sem, terms.sem_masks)
        (logits,) = _forward_masked(model, inp, cfg.freeze_bn, lambda m, t: (m(t),))
        terms.sem_num, terms.sem_count = semantic_mim_loss_terms(logits, pseudo, conf, valid, tau)
    return terms


class MIMLosses(NamedTuple):
    """Result of :meth:`MIMTermsMixin.mim_losses`.

    ``weighted``: ``{"loss_rec": λ_rec·ramp·L_rec, "loss_fa": λ_fa·ramp·L_fa, "loss_sem": λ_sem·L_sem}`` (computed
    terms only; add them to the loss); ``reduced``: the same terms before λ; ``logs``: diagnostics (detached);
    ``terms``: the unreduced :class:`MIMTerms`.
    """

    weighted: dict[str, torch.Tensor]
    reduced: dict[str, torch.Tensor]
    logs: dict[str, float]
    terms: MIMTerms

    def total(self, like: torch.Tensor) -> torch.Tensor:
        return sum(self.weighted.values(), like.new_zeros(()))


class MIMTermsMixin:
    """Glue for a method whose ``Config`` includes :class:`MIMSettings` (``s4mim``, ``combined``).

    ``init_mim_terms()`` resolves the settings and puts the reconstruction head in ``self.extra_modules``
    (``recon_head``; the engine optimises it with the head LR and checkpoints it; it is not part of any EMA).
    ``mim_losses(...)`` computes the terms, reduces them (plain means, or weighted by ``image_weights``) and applies
    λ and the ramp-up (:class:`MIMLosses`).
    """

    def init_mim_terms(self) -> None:
        ctx = self.context
        self.mim = resolve_mim(self.config, ctx.crop_size, ctx.iters_per_epoch)
        if self.mim.rec:
            self.extra_modules["recon_head"] = ReconstructionHead(self.model.feature_channels, scale=4)

    @property
    def mim_active(self) -> bool:
        return self.mim.masked_forward or self.mim.sem

    def mim_losses(self, step: int, x, pseudo, conf, valid, tau: float, raw=None, labeled=None,
                   image_weights: torch.Tensor | None = None) -> MIMLosses:
        head = self.extra_modules["recon_head"] if self.mim.rec else None
        terms = compute_mim_terms(self.model, head, self.mim, x, pseudo, conf, valid, tau,
                                  self.context.num_classes, raw=raw, labeled=labeled)
        reduced = terms.reduce(image_weights)
        ramp = self.mim.ramp(step)
        lambdas = {"loss_rec": self.mim.lambda_rec * ramp, "loss_fa": self.mim.lambda_fa * ramp,
                   "loss_sem": self.mim.lambda_sem}
        weighted = {k: lambdas[k] * v for k, v in reduced.items()}
        return MIMLosses(weighted, reduced, dict(terms.logs), terms)
