"""iMAS easiness h (imas spec §2): confident ratios, class-weighted IoU, h per image.

Everything is vectorised over the batch: one bincount builds the K×K confusion matrix of every image.
Inputs are argmax maps ``P`` (long B×H×W) and max-probability maps ``m`` (float B×H×W), or probability
tensors B×K×H×W from which they are taken. Computation is in float64; results are float32 (B,).

``valid`` (bool B×H×W, optional) implements ``exclude_padding: true``: padded pixels are left out of the
confusion matrices and of ρ (ρ = #{valid ∧ m ≥ τ} / #valid; 0 for an image without valid pixels).
Labels outside [0, K) are left out of the confusion matrices.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import torch

Tensor = torch.Tensor
MapInput = Union[Tensor, tuple[Tensor, Tensor]]

__all__ = [
    "EasinessTerms",
    "confident_ratio",
    "confusion_matrices",
    "weighted_iou",
    "easiness_terms",
    "easiness",
    "max_and_argmax",
]


def max_and_argmax(probs: Tensor) -> tuple[Tensor, Tensor]:
    """(P, m) = (argmax, max) over the class dimension of B×K×H×W probabilities."""
    m, p = probs.max(dim=1)
    return p, m


def _as_map(x: MapInput) -> tuple[Tensor, Tensor]:
    if isinstance(x, (tuple, list)):
        p, m = x
        return p, m
    if x.dim() != 4:
        raise ValueError("expected B×K×H×W probabilities or a (argmax, max) tuple")
    return max_and_argmax(x)


def _batched(t: Tensor) -> Tensor:
    return t.unsqueeze(0) if t.dim() == 2 else t


def confident_ratio(conf: Tensor, tau: float, valid: Tensor | None = None) -> Tensor:
    """ρ per image: fraction of pixels with conf ≥ τ (inclusive); over valid pixels when ``valid`` is given."""
    conf = _batched(conf)
    keep = conf >= tau
    if valid is None:
        return keep.flatten(1).to(torch.float64).mean(dim=1).to(torch.float32)
    valid = _batched(valid).bool()
    num = (keep & valid).flatten(1).sum(dim=1).to(torch.float64)
    den = valid.flatten(1).sum(dim=1).to(torch.float64)
    return torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num)).to(torch.float32)


def confusion_matrices(a: Tensor, g: Tensor, num_classes: int, valid: Tensor | None = None) -> Tensor:
    """Per-image confusion counts, int64 B×K×K with ``cm[b, i, j] = #{A = i ∧ G = j}``."""
    a, g = _batched(a).long(), _batched(g).long()
    if a.shape != g.shape:
        raise ValueError(f"map shapes differ: {tuple(a.shape)} vs {tuple(g.shape)}")
    B, K = a.shape[0], num_classes
    ok = (a >= 0) & (a < K) & (g >= 0) & (g < K)
    if valid is not None:
        ok &= _batched(valid).bool()
    base = torch.arange(B, device=a.device).view(B, *([1] * (a.dim() - 1))) * (K * K)
    idx = base + a.clamp(0, K - 1) * K + g.clamp(0, K - 1)
    idx = torch.where(ok, idx, torch.full_like(idx, B * K * K))  # a dummy bin for excluded pixels
    counts = torch.bincount(idx.reshape(-1), minlength=B * K * K + 1)[: B * K * K]
    return counts.view(B, K, K)


def _iou(cm: Tensor) -> tuple[Tensor, Tensor]:
    """Per-class IoU (B×K, float64, 0 where undefined) and a mask of classes where it is defined."""
    cm = cm.to(torch.float64)
    inter = torch.diagonal(cm, dim1=1, dim2=2)
    union = cm.sum(dim=2) + cm.sum(dim=1) - inter
    defined = union > 0
    return torch.where(defined, inter / union.clamp(min=1), torch.zeros_like(inter)), defined


def _wiou_from_cm(cm: Tensor, ref_dim: int, ignore_class0: bool, weighted: bool) -> Tensor:
    """wIoU(A → G) from cm[b, A, G]; the reference map's class counts are summed over the other axis."""
    iou, defined = _iou(cm)
    if not weighted:
        # plain NaN-ignoring mean IoU over the classes present in either map (class 0 dropped if ignored)
        if ignore_class0:
            defined = defined.clone()
            defined[:, 0] = False
        n = defined.sum(dim=1)
        s = (iou * defined).sum(dim=1)
        return torch.where(n > 0, s / n.clamp(min=1), torch.zeros_like(s))
    n_ref = cm.to(torch.float64).sum(dim=1 if ref_dim == 2 else 2)  # |G = c| for ref_dim = 2
    if ignore_class0:
        n_ref = n_ref.clone()
        n_ref[:, 0] = 0
    total = n_ref.sum(dim=1)
    s = (n_ref * iou).sum(dim=1)
    return torch.where(total > 0, s / total.clamp(min=1), torch.zeros_like(s))


def weighted_iou(
    a: Tensor,
    g: Tensor,
    num_classes: int,
    ignore_class0: bool = True,
    weighted: bool = True,
    valid: Tensor | None = None,
) -> Tensor:
    """wIoU(A → G) per image (B,): Σ_c w_c·IoU_c with w_c = n_c/Σn, n_c = |G = c| (n_0 := 0 if
    ``ignore_class0``); 0 when Σn = 0. ``weighted=False``: mean IoU over classes present in A or G."""
    cm = confusion_matrices(a, g, num_classes, valid)
    return _wiou_from_cm(cm, 2, ignore_class0, weighted).to(torch.float32)


class EasinessTerms(NamedTuple):
    h: Tensor  # (B,) easiness
    rho_s: Tensor  # student confident ratio
    rho_t: Tensor  # teacher confident ratio
    wiou_t: Tensor  # wIoU(P_s → P_t), teacher weights
    wiou_s: Tensor  # wIoU(P_t → P_s), student weights
    all_class0: Tensor  # bool: both maps are all class 0


def easiness_terms(
    student: MapInput,
    teacher: MapInput,
    tau: float,
    num_classes: int,
    ignore_class0: bool = True,
    all_class0_easiness: float | None = None,
    valid: Tensor | None = None,
    weighted: bool = True,
) -> EasinessTerms:
    """h = (wIoU_t·ρ_t + wIoU_s·ρ_s)/2 per image with all intermediate terms (imas spec §2.2–2.5)."""
    P_s, m_s = _as_map(student)
    P_t, m_t = _as_map(teacher)
    P_s, m_s, P_t, m_t = map(_batched, (P_s, m_s, P_t, m_t))
    rho_s = confident_ratio(m_s, tau, valid).to(torch.float64)
    rho_t = confident_ratio(m_t, tau, valid).to(torch.float64)
    cm = confusion_matrices(P_s, P_t, num_classes, valid)  # cm[b, s, t]
    wiou_t = _wiou_from_cm(cm, 2, ignore_class0, weighted)  # reference P_t
    wiou_s = _wiou_from_cm(cm, 1, ignore_class0, weighted)  # reference P_s
    h = (wiou_t * rho_t + wiou_s * rho_s) / 2
    zero = (P_s == 0) & (P_t == 0)
    if valid is not None:
        zero |= ~_batched(valid).bool()
    all0 = zero.flatten(1).all(dim=1)
    if all_class0_easiness is not None:
        h = torch.where(all0, torch.full_like(h, float(all_class0_easiness)), h)
    f = torch.float32
    return EasinessTerms(h.to(f), rho_s.to(f), rho_t.to(f), wiou_t.to(f), wiou_s.to(f), all0)


def easiness(
    student: MapInput,
    teacher: MapInput,
    tau: float,
    num_classes: int,
    ignore_class0: bool = True,
    all_class0_easiness: float | None = None,
    valid: Tensor | None = None,
    weighted: bool = True,
) -> Tensor:
    """Easiness h ∈ [0, 1] per image (B,), float32. ``student``/``teacher``: B×K×H×W probabilities or
    (argmax B×H×W, max B×H×W) tuples."""
    return easiness_terms(
        student, teacher, tau, num_classes, ignore_class0, all_class0_easiness, valid, weighted
    ).h
