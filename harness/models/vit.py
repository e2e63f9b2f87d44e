"""The ViT family's segmentation model: a DINOv2 ViT (timm) with UniMatch V2's DPT head.

``forward`` follows UniMatch V2's ``DPT.forward``: the four intermediate layers of the encoder
(:meth:`~harness.models.dinov2_vit.DINOv2ViT.intermediate_layers`), the DPT head on the h×w patch grid, and the
logits resized bilinearly (align_corners=True) to ``patch·h × patch·w``. ``comp_drop`` multiplies every layer by
the same complementary channel masks (:mod:`harness.models.comp_drop`) before the head, as the official model does.

Inputs whose sides are not multiples of the patch size (UniMatch V2 trains on 518 = 37·14 crops, so its training
never meets one) are resized bilinearly (align_corners=True) to the nearest multiples and the logits back to the
input's size, the rule of UniMatch V2's whole-image evaluation (``multiplier=14``); every method thus gets logits
at its input's size, as from DeepLabV3+.

The interface is :mod:`harness.models.base`. ``encode`` returns the four layers as B×C×h×w maps; ``decode``'s
``fuse`` is the head's last fused map (``dpt_features`` channels, 8× the patch grid) resized bilinearly to stride 4,
the stride of every model's ``fuse``. ``need_fp`` (UniMatch's feature perturbation) drops channels of each layer
with ``Dropout2d(0.5)``, each layer its own draw, as DeepLabV3+ drops c1 and c4.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import FEATURE_STRIDE, SegmentationModel
from .comp_drop import apply_channel_masks, complementary_masks
from .dinov2_vit import DINOv2ViT, grid_multiple
from .dpt import DPTHead

__all__ = ["ViTSegmentationModel"]


class ViTSegmentationModel(SegmentationModel):
    def __init__(self, backbone: DINOv2ViT, num_classes: int):
        super().__init__()
        cfg = backbone.vit_config
        self.backbone = backbone
        self.num_classes = num_classes
        self.patch = cfg.patch_size
        self.head = DPTHead(num_classes, cfg.embed_dim, cfg.dpt_features, cfg.dpt_channels)
        self.feature_channels = cfg.dpt_features
        self.semantic_channels = cfg.embed_dim

    def _grid_input(self, x: torch.Tensor) -> torch.Tensor:
        h, w = (grid_multiple(s, self.patch) for s in x.shape[-2:])
        if (h, w) == tuple(x.shape[-2:]):
            return x
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=True)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        layers, h, w = self.backbone.intermediate_layers(self._grid_input(x))
        return tuple(t.transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w) for t in layers)

    def decode(self, *features: torch.Tensor, size=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits at ``size`` (default: the patch grid × patch size) and ``fuse`` at stride 4 of that size."""
        h, w = features[0].shape[-2:]
        logits, fused = self.head(features)
        grid = (h * self.patch, w * self.patch)
        logits = F.interpolate(logits, size=grid, mode="bilinear", align_corners=True)
        if size is not None and tuple(size) != grid:
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=True)
        out = tuple(size) if size is not None else grid
        stride4 = (math.ceil(out[0] / FEATURE_STRIDE), math.ceil(out[1] / FEATURE_STRIDE))
        fuse = F.interpolate(fused, size=stride4, mode="bilinear", align_corners=True)
        return logits, fuse

    def forward(self, x: torch.Tensor, need_fp: bool = False, comp_drop: bool = False):
        if need_fp and comp_drop:
            raise ValueError("forward: need_fp and comp_drop are two different perturbations; ask for one")
        size = x.shape[-2:]
        feats = self.encode(x)
        if need_fp:
            feats = tuple(torch.cat([f, F.dropout2d(f, 0.5, training=True)]) for f in feats)
        elif comp_drop:
            feats = apply_channel_masks(feats, complementary_masks(len(x), feats[0].shape[1]))
        h, w = feats[0].shape[-2:]
        logits = self.head(feats)[0]
        logits = F.interpolate(logits, size=(h * self.patch, w * self.patch), mode="bilinear", align_corners=True)
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=True)
        if need_fp:
            return logits.chunk(2)
        return logits
