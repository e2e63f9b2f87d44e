"""UniMatch V2's complementary channel dropout of encoder features (its ``comp_drop``).

The batch is two halves of equal size (the two strong views of the same unlabeled images). For each image pair
(row i of the first half, row i of the second) a Bernoulli(0.5) mask over the channels is drawn; the first image
keeps the channels the mask selects, the second the complementary ones, both scaled by 2 so that the expected
feature is unchanged. Half of the pairs (``⌊n·(1 − p)⌋`` of ``n``, chosen at random) are left unperturbed.

The masks are drawn as the official code draws them — ``Binomial(probs=0.5).sample((n, C))`` then
``torch.randperm(n)``, both from the global CPU generator — so a seeded run consumes the same random numbers as
the official one; they are then moved to the features' device.
"""

from __future__ import annotations

import torch

__all__ = ["complementary_masks", "apply_channel_masks"]

DROP_PROB = 0.5


def complementary_masks(batch: int, channels, drop_prob: float = DROP_PROB):
    """``batch``×``channels`` multipliers (0, 1 or 2): rows ``i`` and ``i + batch/2`` are complementary.

    ``channels`` a sequence (feature maps of different widths, DeepLabV3+'s c1 and c4): one mask per width, the
    same pairs left unperturbed in all of them (a pair is perturbed or not, as with the ViT's shared mask)."""
    if batch % 2:
        raise ValueError(f"complementary dropout needs an even batch (two halves of paired views), got {batch}")
    widths = [channels] if isinstance(channels, int) else list(channels)
    half = batch // 2
    binomial = torch.distributions.Binomial(probs=torch.tensor(0.5))
    firsts = [binomial.sample((half, c)) * 2.0 for c in widths]
    kept = torch.randperm(half)[:int(half * (1 - drop_prob))]
    masks = []
    for first in firsts:
        second = 2.0 - first
        first[kept, :] = 1.0
        second[kept, :] = 1.0
        masks.append(torch.cat((first, second)))
    return masks[0] if isinstance(channels, int) else masks


def apply_channel_masks(features: tuple[torch.Tensor, ...], masks: torch.Tensor | list[torch.Tensor],
                        ) -> tuple[torch.Tensor, ...]:
    """Multiply B×C×h×w maps by per-image channel masks: one B×C mask shared by every map (the ViT's layers all
    have the encoder's width), or one mask per map (DeepLabV3+'s c1 and c4 differ in width)."""
    if isinstance(masks, torch.Tensor):
        masks = [masks] * len(features)
    return tuple(f * m.to(device=f.device, dtype=f.dtype)[:, :, None, None] for f, m in zip(features, masks))
