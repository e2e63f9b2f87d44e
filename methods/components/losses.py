"""Pseudo-label and consistency losses shared by the method plugins.

- iMAS (imas spec §3.1): per-image thresholded CE normalised by all H·W pixels, weighted by easiness h.
- UniMatch / FixMatch / S4MIM (s4mim spec §2.4): Σ [c ≥ τ]·[V]·CE / Σ [V] over the batch.
- Mean teacher (baselines spec §2): squared distance of softmax vectors over valid pixels, sigmoid ramp-up.

Pseudo-labels, confidences, validity masks and h are treated as constants (detached). ``≥ τ`` is inclusive.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

__all__ = [
    "NORMALIZATIONS",
    "pixel_ce",
    "confident_mask",
    "reduce_ce_per_image",
    "reduce_ce_pooled",
    "thresholded_ce_per_image",
    "thresholded_ce_batch",
    "easiness_weighted_mean",
    "imas_unsup_loss",
    "masked_ce_sums",
    "unimatch_unsup_loss",
    "softmax_consistency",
    "sigmoid_rampup",
]

NORMALIZATIONS = ("all_pixels", "valid_pixels", "confident_pixels")


def max_argmax(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Pseudo-labels and their confidence from detached logits: (ŷ = argmax, c = max softmax), softmax in float32."""
    conf, pseudo = logits.detach().float().softmax(dim=1).max(dim=1)
    return pseudo, conf


def pixel_ce(logits: Tensor, target: Tensor, ignore_index: int = 255) -> Tensor:
    """Per-pixel cross-entropy B×H×W (0 where target == ignore_index)."""
    return F.cross_entropy(logits, target.detach().long(), ignore_index=ignore_index, reduction="none")


def confident_mask(conf: Tensor, tau: float, valid: Tensor | None = None) -> Tensor:
    """[c ≥ τ] (∧ valid), bool B×H×W."""
    keep = conf.detach() >= tau
    if valid is not None:
        keep = keep & valid.bool()
    return keep


def _check_norm(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def _parts(ce: Tensor, keep: Tensor, valid: Tensor | None, normalization: str) -> tuple[Tensor, Tensor]:
    """Per-image numerator Σ keep·CE and denominator for the normalisation (both (B,), float)."""
    _check_norm(normalization)
    num = (ce * keep.to(ce.dtype)).flatten(1).sum(dim=1)
    B = ce.shape[0]
    hw = ce[0].numel()
    if normalization == "all_pixels":
        den = torch.full((B,), float(hw), dtype=ce.dtype, device=ce.device)
    elif normalization == "valid_pixels":
        if valid is None:
            den = torch.full((B,), float(hw), dtype=ce.dtype, device=ce.device)
        else:
            den = valid.bool().flatten(1).sum(dim=1).to(ce.dtype)
    else:
        den = keep.flatten(1).sum(dim=1).to(ce.dtype)
    return num, den


def reduce_ce_per_image(
    ce: Tensor, keep: Tensor, normalization: str = "all_pixels", valid: Tensor | None = None
) -> Tensor:
    """Per-image loss (B,) from a per-pixel CE map and a keep mask (already including ``valid``):
    Σ keep·CE / (H·W | #valid | #kept); 0 for an image whose denominator is 0."""
    num, den = _parts(ce, keep, valid, normalization)
    return torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num))


def reduce_ce_pooled(
    ce: Tensor, keep: Tensor, normalization: str = "valid_pixels", valid: Tensor | None = None
) -> Tensor:
    """Batch-pooled loss: Σ_i numerator_i / Σ_i denominator_i (0 if the denominator is 0)."""
    num, den = _parts(ce, keep, valid, normalization)
    n, d = num.sum(), den.sum()
    return torch.where(d > 0, n / d.clamp(min=1), n * 0)


def thresholded_ce_per_image(
    logits: Tensor,
    pseudo: Tensor,
    conf: Tensor,
    tau: float,
    normalization: str = "all_pixels",
    valid: Tensor | None = None,
    ignore_index: int = 255,
) -> Tensor:
    """(B,) per-image Σ_j [c ≥ τ](∧ V)·CE_j / denominator (imas spec §3.1; default: all H·W pixels)."""
    _check_norm(normalization)
    ce = pixel_ce(logits, pseudo, ignore_index)
    return reduce_ce_per_image(ce, confident_mask(conf, tau, valid), normalization, valid)


def thresholded_ce_batch(
    logits: Tensor,
    pseudo: Tensor,
    conf: Tensor,
    tau: float,
    normalization: str = "valid_pixels",
    valid: Tensor | None = None,
    ignore_index: int = 255,
) -> Tensor:
    """Scalar batch-pooled thresholded CE (numerators and denominators summed over the batch)."""
    _check_norm(normalization)
    ce = pixel_ce(logits, pseudo, ignore_index)
    return reduce_ce_pooled(ce, confident_mask(conf, tau, valid), normalization, valid)


def easiness_weighted_mean(per_image: Tensor, h: Tensor | None) -> Tensor:
    """(1/B) Σ_i h_i·L_i (h detached); plain mean when h is None."""
    if h is None:
        return per_image.mean()
    h = torch.as_tensor(h, device=per_image.device).detach().to(per_image.dtype).reshape(-1)
    return (h * per_image).mean()


def imas_unsup_loss(
    logits: Tensor,
    pseudo: Tensor,
    conf: Tensor,
    h: Tensor | None,
    tau: float,
    normalization: str = "all_pixels",
    valid: Tensor | None = None,
) -> Tensor:
    """iMAS L(z, ŷ, c, h) = (1/B) Σ_i h_i·(1/(H·W)) Σ_j [c ≥ τ]·CE (imas spec §3.1)."""
    return easiness_weighted_mean(
        thresholded_ce_per_image(logits, pseudo, conf, tau, normalization, valid), h
    )


def masked_ce_sums(
    logits: Tensor, pseudo: Tensor, conf: Tensor, valid: Tensor | None, tau: float
) -> tuple[Tensor, Tensor]:
    """Per image: (Σ [c ≥ τ]·[V]·CE, Σ [V]) — numerators (B,) and valid-pixel counts (B,), float."""
    ce = pixel_ce(logits, pseudo)
    keep = confident_mask(conf, tau, valid)
    num = (ce * keep.to(ce.dtype)).flatten(1).sum(dim=1)
    if valid is None:
        counts = torch.full((ce.shape[0],), float(ce[0].numel()), dtype=ce.dtype, device=ce.device)
    else:
        counts = valid.bool().flatten(1).sum(dim=1).to(ce.dtype)
    return num, counts


def unimatch_unsup_loss(
    logits: Tensor, pseudo: Tensor, conf: Tensor, valid: Tensor | None, tau: float
) -> Tensor:
    """UniMatch unsupervised loss: Σ numerators / Σ valid pixels over the batch (0 if no valid pixel)."""
    num, counts = masked_ce_sums(logits, pseudo, conf, valid, tau)
    n, d = num.sum(), counts.sum()
    return torch.where(d > 0, n / d.clamp(min=1), n * 0)


def softmax_consistency(p_s: Tensor, p_t: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean over valid pixels of Σ_c (p_s,c − p_t,c)² (B×K×H×W probabilities; p_t is a constant)."""
    d = ((p_s - p_t.detach()) ** 2).sum(dim=1)
    if valid is None:
        return d.mean()
    v = valid.bool().to(d.dtype)
    n = v.sum()
    return torch.where(n > 0, (d * v).sum() / n.clamp(min=1), d.sum() * 0)


def sigmoid_rampup(it: float, total: float, rampup_fraction: float = 0.1, scale: float = 1.0) -> float:
    """w = scale·exp(−5·(1 − t)²), t = min(1, it / (rampup_fraction·total)); 1·scale without ramp."""
    length = rampup_fraction * total
    t = 1.0 if length <= 0 else min(1.0, max(0.0, it / length))
    return scale * math.exp(-5.0 * (1.0 - t) ** 2)
