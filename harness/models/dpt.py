"""UniMatch V2's DPT head: four ViT layers → a four-level pyramid → RefineNet-style fusion → class logits.

As in UniMatch V2 (``model/semseg/dpt.py``, its ``DPTHead`` without BatchNorm): each layer's tokens, as an h×w
map, go through a 1×1 projection to ``channels[i]`` and a resize to strides ¼, ½, 1 and 2 of the patch grid
(4×4 and 2×2 transposed convolutions, identity, a 3×3 stride-2 convolution); a 3×3 convolution (no bias) brings
each level to ``features`` channels; fusion blocks, coarsest first, add the next finer level (after a residual
unit), apply a second residual unit, upsample bilinearly (align_corners=True) to the next level's size (the finest
by 2×) and project with a 1×1 convolution; ``output_conv`` (3×3 conv, ReLU, 1×1 conv to the classes) gives the
logits at twice the finest level's resolution (8× the patch grid).

Module names are the official ones (``projects``, ``resize_layers``, ``scratch.layerN_rn``,
``scratch.refinenetN.resConfUnit{1,2}.conv{1,2}``, ``scratch.refinenetN.out_conv``, ``scratch.output_conv``), so
UniMatch V2 checkpoints load as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DPTHead"]


class _ResidualConvUnit(nn.Module):
    """ReLU → 3×3 conv → ReLU → 3×3 conv, plus the input."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Not in place: the input is also the skip connection.
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class _FusionBlock(nn.Module):
    """``out_conv(upsample(resConfUnit2(x + resConfUnit1(skip))))``; without ``skip`` the sum is ``x``."""

    def __init__(self, features: int):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1, bias=True)
        self.resConfUnit1 = _ResidualConvUnit(features)
        self.resConfUnit2 = _ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size=None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTHead(nn.Module):
    """``forward(maps)`` with four B×C×h×w maps → ``(logits at 8h×8w, fused feature at 8h×8w)``."""

    def __init__(self, num_classes: int, in_channels: int, features: int, channels: tuple[int, int, int, int]):
        super().__init__()
        c = channels
        self.projects = nn.ModuleList([nn.Conv2d(in_channels, ch, 1) for ch in c])
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(c[0], c[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(c[1], c[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(c[3], c[3], kernel_size=3, stride=2, padding=1),
        ])
        self.scratch = nn.Module()
        for i, ch in enumerate(c, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(ch, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", _FusionBlock(features))
        self.scratch.output_conv = nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.ReLU(True),
                                                 nn.Conv2d(features, num_classes, 1))
        self.features = features

    def forward(self, maps: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.scratch
        levels = [getattr(s, f"layer{i + 1}_rn")(resize(project(m)))
                  for i, (m, project, resize) in enumerate(zip(maps, self.projects, self.resize_layers))]
        l1, l2, l3, l4 = levels
        path = s.refinenet4(l4, size=l3.shape[-2:])
        path = s.refinenet3(path, l3, size=l2.shape[-2:])
        path = s.refinenet2(path, l2, size=l1.shape[-2:])
        path = s.refinenet1(path, l1)
        return s.output_conv(path), path
