"""Feature aggregation (FA): pull masked-part features of a class towards its visible-part features.

Specification: the s4mim spec §3.4 and the combined spec §4.

Status: the abstract only says FA "minimizes the distances between features corresponding to the
masked and visible parts within the same class". **Everything concrete here is the harness's
interpretation [interp]**: the features (decoder ``fuse`` of the masked forward, or ``c4``), the
pooling of the pixel masks to the feature grid by adaptive average pooling (soft weights), the
weighted prototypes

    μ^m = Σ m·ρ·F / Σ m·ρ        μ^v = Σ (1 − m)·ρ·F / Σ (1 − m)·ρ

with ``m = pool(M)``, ``ρ = pool(R)``, the usage rule ``Σ m·ρ ≥ w_min`` and ``Σ (1 − m)·ρ ≥ w_min``
(default 4 feature cells), the distance ``ℓ_fa = 1 − cos(μ^m, sg(μ^v))`` and the options
``level`` (prototype | pixel), ``distance`` (cosine | l2norm = 2 − 2cos) and ``stop_grad_visible``.
Returning per-sample values with a ``used`` flag (0 where unused) so that each plugin applies its
own reduction is a harness decision [harness]. Computation is in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from methods.components.masking import ClassSamples
from methods.components.mim import MODES, SampleLosses

__all__ = ["prototype_alignment_per_sample", "feature_aggregation_losses", "pool_to_grid"]

_EPS = 1e-8


def pool_to_grid(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Soft weights of a pixel mask (N×H×W) on an h×w grid by adaptive average pooling, float N×h×w."""
    return F.adaptive_avg_pool2d(mask.float().unsqueeze(1), tuple(size)).squeeze(1)


def _unit(a: torch.Tensor, dim: int) -> torch.Tensor:
    """ℓ2-normalised ``a`` along ``dim``; a (near-)zero vector maps to 0 with zero gradient (no 1/eps blow-up)."""
    norm = torch.linalg.vector_norm(a, dim=dim, keepdim=True)
    return torch.where(norm > _EPS, a / norm.clamp(min=_EPS), torch.zeros_like(a))


def _distance(a: torch.Tensor, b: torch.Tensor, distance: str, dim: int) -> torch.Tensor:
    na = _unit(a, dim)
    nb = _unit(b, dim)
    if distance == "cosine":
        return 1.0 - (na * nb).sum(dim)
    return ((na - nb) ** 2).sum(dim)  # l2norm: ‖n(a) − n(b)‖² = 2 − 2cos


def prototype_alignment_per_sample(
    features: torch.Tensor,
    mask: torch.Tensor,
    region: torch.Tensor,
    min_weight: float = 4.0,
    level: str = "prototype",
    distance: str = "cosine",
    stop_grad_visible: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class-sample FA loss [interp, s4mim spec §3.4].

    ``features`` N×C×h×w (the features of each class-sample's forward), ``mask``/``region`` bool
    N×H×W at input resolution (pooled here to h×w). ``level='prototype'``: ``d(μ^m, sg μ^v)``;
    ``'pixel'``: ``Σ_i m_i ρ_i d(F_i, sg μ^v) / Σ_i m_i ρ_i``. ``distance``: ``cosine`` (1 − cos) or
    ``l2norm`` (squared distance of ℓ2-normalised vectors). ``stop_grad_visible=False`` lets the
    gradient reach the visible prototype too.
    Returns ``(values (N,), used (N,) bool)``; used iff both weight sums are ≥ ``min_weight`` (and
    > 0); unused values are 0 and get no gradient.
    """
    if level not in ("prototype", "pixel"):
        raise ValueError(f"fa.level must be 'prototype' or 'pixel', got {level!r}")
    if distance not in ("cosine", "l2norm"):
        raise ValueError(f"fa.distance must be 'cosine' or 'l2norm', got {distance!r}")
    N, C, h, w = features.shape
    feats = features.float()
    m = pool_to_grid(mask, (h, w))
    rho = pool_to_grid(region, (h, w))
    wm = (m * rho).unsqueeze(1)  # N×1×h×w
    wv = ((1.0 - m) * rho).unsqueeze(1)
    sm = wm.flatten(1).sum(1)
    sv = wv.flatten(1).sum(1)
    used = (sm >= min_weight) & (sv >= min_weight) & (sm > 0) & (sv > 0)

    vis_feats = feats.detach() if stop_grad_visible else feats
    mu_v = (wv * vis_feats).flatten(2).sum(2) / sv.clamp(min=_EPS).unsqueeze(1)  # N×C
    # Unused samples get a harmless constant so that neither the value nor the gradient can be NaN.
    ones = torch.ones_like(mu_v)
    mu_v = torch.where(used.unsqueeze(1), mu_v, ones)

    if level == "prototype":
        mu_m = (wm * feats).flatten(2).sum(2) / sm.clamp(min=_EPS).unsqueeze(1)
        mu_m = torch.where(used.unsqueeze(1), mu_m, ones)
        values = _distance(mu_m, mu_v, distance, dim=1)
    else:
        d = _distance(feats, mu_v.view(N, C, 1, 1).expand_as(feats), distance, dim=1)  # N×h×w
        values = (wm.squeeze(1) * d).flatten(1).sum(1) / sm.clamp(min=_EPS)
    values = torch.where(used, values, torch.zeros_like(values))
    return values, used


def feature_aggregation_losses(
    mode: str,
    features: torch.Tensor,
    samples: ClassSamples,
    masks: torch.Tensor,
    **options,
) -> SampleLosses:
    """Per-class-sample FA losses for a CMIM mode (``options`` as :func:`prototype_alignment_per_sample`).

    ``classwise``: ``features`` N×C×h×w and ``masks`` N×H×W from the class-wise forward.
    ``shared``/``plain``: ``features`` B×C×h×w and ``masks`` B×H×W from the shared forward; each
    class-sample uses its image's features and mask with its own region.
    """
    if mode not in MODES:
        raise ValueError(f"unknown CMIM mode {mode!r}; expected one of {MODES}")
    bi = samples.batch_index
    if mode != "classwise":
        features, masks = features[bi], masks[bi]
    values, used = prototype_alignment_per_sample(features, masks, samples.region, **options)
    return SampleLosses(values, used, bi)
