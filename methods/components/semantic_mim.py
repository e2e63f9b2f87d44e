"""Masked image modeling in semantic space (semantic MIM).

Specification: the s4mim spec §3.5 and the combined spec §3–§4.

Status: the abstract only says MIM is explored "in semantic space ... to enhance regularization".
**The reading implemented here is the harness's interpretation [interp]** (as in MIC / MaskMatch):
the network predicts, on a patch-masked weak view ``x̄_b = x_b ⊙ (1 − M'_b)``, the pseudo-labels of
the unmasked view; the loss is UniMatch's thresholded CE with the all-valid-pixel normaliser,

    L_sem = Σ_pixels [c ≥ τ]·[V]·CE(z(x̄), ŷ) / Σ_pixels [V]

over all pixels (masked and visible). The per-pixel CE sums come from the shared
``methods.components.losses.masked_ce_sums`` (one implementation for L_s, L_fp and L_sem); this
module returns per-image numerators and valid counts so that ``s4mim`` reduces with
``Σ num / Σ count`` and ``combined`` with ``Σ h_b·num_b / Σ count`` (no renormalisation by Σh)
[harness]. The option ``sem.color_jitter`` is applied by the caller to the image before
:func:`semantic_mim_inputs`.
"""

from __future__ import annotations

import torch

from methods.components.losses import masked_ce_sums
from methods.components.mim import masked_inputs

__all__ = ["semantic_mim_inputs", "semantic_mim_loss_terms", "reduce_semantic_mim"]


def semantic_mim_inputs(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x ⊙ (1 − M')`` per image: ``x`` B×3×H×W, ``mask`` bool B×H×W (one patch mask per image)."""
    if mask.shape[0] != x.shape[0] or mask.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} must be B×H×W for images {tuple(x.shape)}")
    return masked_inputs(x, mask)


def semantic_mim_loss_terms(
    logits: torch.Tensor,
    pseudo: torch.Tensor,
    conf: torch.Tensor,
    valid: torch.Tensor,
    tau: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image ``(Σ_i [c ≥ τ]·[V]·CE(z, ŷ) (B,), |V_b| (B,))`` of the masked view's logits.

    ``logits`` B×K×H×W (from the masked input), ``pseudo`` long B×H×W, ``conf`` B×H×W, ``valid`` bool
    B×H×W, ``τ`` inclusive (``c ≥ τ``). Delegates to ``losses.masked_ce_sums``.
    """
    return masked_ce_sums(logits, pseudo, conf, valid, tau)


def reduce_semantic_mim(
    numerators: torch.Tensor, counts: torch.Tensor, image_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``Σ_b w_b·num_b / Σ_b count_b`` (w ≡ 1 if None: the ``s4mim`` reduction); 0 if no valid pixel."""
    num = numerators if image_weights is None else numerators * image_weights.detach().to(numerators.dtype)
    return num.sum() / counts.sum().clamp(min=1).to(num.dtype)
