"""Class-wise masked image modeling (CMIM): inputs, reconstruction head and per-sample loss.

Specification: the s4mim spec §3.3 (CMIM) and the combined spec §4.

Status: **everything in this module is the harness's interpretation [interp] of the S4MIM abstract**
(no official code exists). The abstract fixes only that the target is pixels and that each class
region is reconstructed independently; the following are harness choices:

* input of class-sample (b, k): ``x̃_bk = x_b ⊙ R_bk ⊙ (1 − M_bk)`` (0 = ImageNet mean colour);
* reconstruction head: 1×1 conv (C → 3·s², with bias) → PixelShuffle(s), cropped to the top-left
  H×W (bilinear resize of a dimension that is too small) [interp];
* loss on masked pixels of the class only, ``Σ M·R·‖x̂ − x‖₁ / (3·Σ M·R)`` (``l2``: squared error,
  same normalisation) [interp]; option ``loss_conf_threshold`` removes low-confidence pixels from
  the loss region (``loss_keep``);
* the ablation modes ``shared`` and ``plain`` [interp, ablation];
* per-sample outputs with a ``used`` flag and value 0 for unused samples, so that ``s4mim`` reduces
  with a plain mean over used samples and ``combined`` with an easiness-weighted mean that is not
  renormalised by Σh [harness]. Losses are computed in float32.

Modes (``cmim.mode``):

* ``classwise`` (default): one input per class-sample, ``x_b ⊙ R_bk ⊙ (1 − M_bk)`` (N inputs,
  masks N×H×W); one loss per class-sample on ``M_bk ∧ R_bk``.
* ``shared``: one input per image, ``x_b ⊙ (1 − M_b)`` (B inputs, masks B×H×W); the per-class losses
  of the class-samples on that image's reconstruction, on ``M_b ∧ R_bk``. Cross-class context leaks in.
* ``plain`` (basic MIM): same input as ``shared``; one loss per image over masked valid pixels,
  ``Σ M·V·‖x̂ − x‖₁ / (3·Σ M·V)``.

Use :func:`build_mim_inputs` to make the network input of a mode and :func:`mim_reconstruction_losses`
to get its per-sample losses (:class:`SampleLosses`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from methods.components.masking import ClassSamples

__all__ = [
    "MODES",
    "SampleLosses",
    "masked_inputs",
    "cmim_inputs",
    "ReconstructionHead",
    "fit_to_size",
    "reconstruction_loss_per_sample",
    "build_mim_inputs",
    "mim_reconstruction_losses",
    "mean_over_used",
]

MODES = ("classwise", "shared", "plain")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown CMIM mode {mode!r}; expected one of {MODES}")


class SampleLosses(NamedTuple):
    """Per-sample loss values.

    ``values`` float (S,): the loss of each sample (0 where unused, finite, differentiable);
    ``used`` bool (S,): whether the sample enters the mean (e.g. ``Σ M·R > 0``);
    ``batch_index`` long (S,): the image of each sample (to look up per-image weights such as iMAS
    easiness). S = N class-samples (classwise/shared) or B images (plain).
    """

    values: torch.Tensor
    used: torch.Tensor
    batch_index: torch.Tensor

    def mean(self) -> torch.Tensor:
        """Plain mean over used samples (the ``s4mim`` reduction); 0 if none is used."""
        return mean_over_used(self.values, self.used)

    def weighted_mean(self, image_weights: torch.Tensor) -> torch.Tensor:
        """``(1/N_used) Σ_used h_b·value`` (the ``combined`` reduction, no renormalisation by Σh)."""
        return mean_over_used(self.values, self.used, image_weights.detach()[self.batch_index])


def mean_over_used(values: torch.Tensor, used: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``Σ_used w_s·v_s / #used`` (w ≡ 1 if None); a differentiable 0 when nothing is used."""
    v = torch.where(used, values, torch.zeros_like(values))
    if weights is not None:
        v = v * weights.to(v.dtype)
    return v.sum() / used.sum().clamp(min=1).to(v.dtype)


def masked_inputs(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x ⊙ (1 − M)``: masked pixels set to 0. ``x`` B×C×H×W, ``mask`` bool B×H×W."""
    return x * (~mask.to(torch.bool)).unsqueeze(1).to(x.dtype)


def cmim_inputs(x: torch.Tensor, samples: ClassSamples, masks: torch.Tensor) -> torch.Tensor:
    """Class-wise inputs ``x_b ⊙ R_bk ⊙ (1 − M_bk)``, N×3×H×W. ``masks`` bool N×H×W (one per class-sample)."""
    if masks.shape != samples.region.shape:
        raise ValueError(f"masks {tuple(masks.shape)} must match the regions {tuple(samples.region.shape)}")
    keep = samples.region & ~masks.to(torch.bool)
    return x[samples.batch_index] * keep.unsqueeze(1).to(x.dtype)


def fit_to_size(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop ``y`` (…×h×w) to the top-left ``size``; a dimension that is too small is resized bilinearly."""
    H, W = size
    y = y[..., :H, :W]
    if y.shape[-2:] != (H, W):
        y = F.interpolate(y, size=(H, W), mode="bilinear", align_corners=False)
    return y


class ReconstructionHead(nn.Module):
    """Pixel reconstruction head ``g`` [interp]: 1×1 conv (in → out·s², bias) → PixelShuffle(s).

    ``forward(features, size)`` returns out×H×W images (top-left crop of the s×-upsampled output, see
    :func:`fit_to_size`). A separate trainable module (``extra_modules``), not used at inference.
    """

    def __init__(self, in_channels: int, scale: int = 4, out_channels: int = 3):
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(in_channels, out_channels * scale * scale, kernel_size=1, bias=True)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, features: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        y = self.shuffle(self.conv(features))
        return y if size is None else fit_to_size(y, tuple(size))


def reconstruction_loss_per_sample(
    x_hat: torch.Tensor,
    target: torch.Tensor,
    region: torch.Tensor,
    mask: torch.Tensor,
    loss: str = "l1",
    batch_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``ℓ_rec = Σ_i M_i·R_i·‖x̂_i − x_i‖₁ / (3·Σ_i M_i·R_i)`` per sample [interp, s4mim spec §3.3].

    ``x_hat`` N×3×H×W, ``region``/``mask`` bool N×H×W, ``target`` N×3×H×W — or B×3×H×W together with
    ``batch_index`` (N,), then ``target[batch_index]`` is used. ``loss='l2'``: squared error, same
    normalisation. The channel count is read from ``x_hat`` (3 for RGB).
    Returns ``(values (N,), used (N,) bool)``; ``used = Σ M·R > 0``; unused values are 0.
    The gradient of a sample reaches ``x_hat`` only on its ``M ∧ R`` pixels.
    """
    if loss not in ("l1", "l2"):
        raise ValueError(f"rec_loss must be 'l1' or 'l2', got {loss!r}")
    if batch_index is not None:
        target = target[batch_index]
    target = target.detach()
    w = (mask.to(torch.bool) & region.to(torch.bool)).unsqueeze(1)  # N×1×H×W
    diff = x_hat.float() - target.float()
    err = diff.abs() if loss == "l1" else diff * diff
    err = torch.where(w, err, torch.zeros_like(err))
    num = err.flatten(1).sum(1)
    count = w.flatten(1).sum(1)
    used = count > 0
    den = (count * x_hat.shape[1]).clamp(min=1).to(num.dtype)
    return num / den, used


def build_mim_inputs(
    mode: str,
    x: torch.Tensor,
    samples: ClassSamples | None,
    masks: torch.Tensor,
) -> torch.Tensor:
    """Network input of a CMIM mode.

    ``classwise``: ``masks`` N×H×W → N×3×H×W class-wise inputs (needs ``samples``).
    ``shared`` / ``plain``: ``masks`` B×H×W → B×3×H×W inputs ``x ⊙ (1 − M)`` (``samples`` unused).
    """
    _check_mode(mode)
    if mode == "classwise":
        if samples is None:
            raise ValueError("classwise mode needs the class-samples")
        return cmim_inputs(x, samples, masks)
    if masks.shape[0] != x.shape[0]:
        raise ValueError(f"{mode} mode needs one mask per image, got {masks.shape[0]} for {x.shape[0]} images")
    return masked_inputs(x, masks)


def mim_reconstruction_losses(
    mode: str,
    x_hat: torch.Tensor,
    x: torch.Tensor,
    samples: ClassSamples | None,
    masks: torch.Tensor,
    valid: torch.Tensor | None = None,
    loss: str = "l1",
    loss_keep: torch.Tensor | None = None,
) -> SampleLosses:
    """Per-sample reconstruction losses of a CMIM mode.

    ``x_hat``: the reconstruction of the inputs of :func:`build_mim_inputs` (same count, 3×H×W);
    ``x``: the targets, B×3×H×W; ``masks``: the masks given to :func:`build_mim_inputs`;
    ``valid``: B×H×W (needed by ``plain``); ``loss_keep``: optional bool B×H×W, pixels allowed in
    the loss (``c ≥ loss_conf_threshold``), removed from the loss region only, not from the partition.

    ``classwise``: per class-sample, on ``M_bk ∧ R_bk``; ``shared``: per class-sample, on
    ``M_b ∧ R_bk`` of image b's reconstruction; ``plain``: per image, on ``M_b ∧ V_b``.
    """
    _check_mode(mode)
    if mode == "plain":
        if valid is None:
            raise ValueError("plain mode needs the valid-pixel mask")
        region = valid.to(torch.bool)
        if loss_keep is not None:
            region = region & loss_keep.to(torch.bool)
        values, used = reconstruction_loss_per_sample(x_hat, x, region, masks, loss)
        return SampleLosses(values, used, torch.arange(x.shape[0], device=x.device))
    if samples is None:
        raise ValueError(f"{mode} mode needs the class-samples")
    bi = samples.batch_index
    region = samples.region
    if loss_keep is not None:
        region = region & loss_keep.to(torch.bool)[bi]
    if mode == "shared":
        x_hat, masks = x_hat[bi], masks[bi]
    values, used = reconstruction_loss_per_sample(x_hat, x, region, masks, loss, batch_index=bi)
    return SampleLosses(values, used, bi)
