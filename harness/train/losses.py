"""Supervised (labeled-batch) losses of the protocols: CE and OHEM (the benchmarks spec §5).

Both take logits B×K×H×W and a long target B×H×W with 255 = ignore, and compute in float32.
With an auxiliary head (``model.aux_head``), the protocol's loss becomes ``L(z) + aux_weight·L(aux)`` on the same
labeled images, as the official iMAS criterion: the aux logits are read from the logits passed in
(``harness.models.aux_logits_of``) or given as ``aux=``, and upsampled (bilinear, aligned corners) to the target size.

Harness rule for empty selections: a batch (CE) or group (OHEM) without a valid pixel contributes a zero loss
(with a graph, so backward works) instead of the NaN of ``F.cross_entropy``; OHEM averages over the groups that
have kept pixels.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import HarnessError
from ..protocols import SupervisedLoss

__all__ = ["IGNORE_INDEX", "cross_entropy", "ohem_cross_entropy", "build_supervised_loss"]

IGNORE_INDEX = 255


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean cross-entropy over pixels whose target is not ``ignore_index``."""
    losses = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
    valid = (target != ignore_index).sum()
    return losses.sum() / valid.clamp(min=1)


def _ohem_group(logits: torch.Tensor, target: torch.Tensor, thresh: float, min_kept: int,
                ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed CE over the kept pixels of one group and their number."""
    logits = logits.float()
    valid = target != ignore_index
    num_valid = int(valid.sum())
    losses = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    keep = valid
    if 0 < min_kept <= num_valid:  # min_kept = 0 keeps every valid pixel, as the reference code does
        with torch.no_grad():
            prob = logits.softmax(dim=1)
            safe_target = torch.where(valid, target, torch.zeros_like(target))
            gt_prob = prob.gather(1, safe_target.unsqueeze(1)).squeeze(1)
            kth = torch.kthvalue(gt_prob[valid], min_kept).values
            threshold = torch.clamp(kth, min=thresh)
            keep = valid & (gt_prob <= threshold)
    kept = keep.sum()
    return (losses * keep).sum(), kept


def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, thresh: float = 0.7, min_kept: int = 200_000,
                       group: int = 2, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """OHEM per group of ``group`` consecutive crops, averaged over groups.

    Within a group: if the number of valid pixels is ≥ ``min_kept``, the threshold is
    ``max(thresh, min_kept-th smallest ground-truth-class probability)`` and valid pixels with probability at or
    below it are kept; otherwise (or with ``min_kept`` = 0, as in the reference code) all valid pixels are kept.
    Loss = mean CE over the kept pixels.
    """
    group_losses = []
    for start in range(0, logits.shape[0], group):
        total, kept = _ohem_group(logits[start:start + group], target[start:start + group], thresh, min_kept,
                                  ignore_index)
        if int(kept) > 0:
            group_losses.append(total / kept)
    if not group_losses:
        return logits.float().sum() * 0.0
    return torch.stack(group_losses).mean()


def build_supervised_loss(spec: SupervisedLoss, aux_weight: float | None = None
                          ) -> Callable[..., torch.Tensor]:
    """The protocol's labeled loss as ``loss(logits, target) -> scalar``.

    ``aux_weight`` (the model has an aux head): ``loss(logits, target, aux=None)`` adds ``aux_weight`` × the
    same loss on the aux logits of those rows; it is an error if there are none (see the module docstring)."""
    if spec.type == "ce":
        base = cross_entropy
    elif spec.type == "ohem":
        thresh, min_kept, group = spec.thresh, spec.min_kept, spec.group

        def base(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return ohem_cross_entropy(logits, target, thresh=thresh, min_kept=min_kept, group=group)
    else:
        raise ValueError(f"unknown supervised loss type '{spec.type}'")
    if aux_weight is None:
        return base
    return _with_aux(base, aux_weight)


def _with_aux(base: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], weight: float) -> Callable[..., torch.Tensor]:
    from ..models import aux_logits_of

    def loss(logits: torch.Tensor, target: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        if aux is None:
            aux = aux_logits_of(logits)
        if aux is None:
            raise HarnessError(
                "the protocol's model has an auxiliary head (model.aux_head: true), but the logits given to the "
                "supervised loss carry no aux logits: pass the training-mode output of the model, or rows of it "
                "sliced along the batch dimension (out[:n], out.split(...)), or give aux= explicitly; "
                "--set model.aux_head=false trains without the head")
        aux = F.interpolate(aux, size=target.shape[-2:], mode="bilinear", align_corners=True)
        return base(logits, target) + weight * base(aux, target)

    return loss
