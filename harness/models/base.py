"""What every segmentation model of the harness offers its methods, whichever encoder family it is built on.

Two families implement it: DeepLabV3+ on ResNets and the small CPU backbone (:mod:`harness.models.deeplab`) and
UniMatch V2's DPT head on DINOv2 ViTs (:mod:`harness.models.vit`). A method written against this interface runs on
either; an encoder registered by a plugin (:mod:`harness.models.encoders`) builds a model that implements it.

``forward(x, need_fp=False, comp_drop=False)``
    logits B×K×H×W at the input's size. ``need_fp``: UniMatch's feature perturbation: the encoder runs once, the
    decoder on the clean features and on a channel-dropped copy (``Dropout2d(0.5)``, always active); returns
    ``(logits, logits_fp)``. ``comp_drop``: UniMatch V2's complementary channel dropout
    (:mod:`harness.models.comp_drop`): the two halves of the batch get complementary channel masks of the
    encoder features; returns logits only. At most one of the two per call.
``encode(x)``
    the encoder's features, a tuple of B×C×h×w maps whose last element is the deepest (``c4`` in the methods'
    words; ``semantic_channels`` channels). DeepLabV3+: ``(c1, c4)``; DPT: the four intermediate layers.
``decode(*features, size=None)``
    ``(logits, fuse)`` from ``encode``'s tuple: logits resized to ``size`` when given, and ``fuse`` the decoder's
    last feature map with ``feature_channels`` channels at stride 4 (⌈H/4⌉×⌈W/4⌉), which methods feed to their
    own heads (the MIM reconstruction head, feature aggregation).
``features(x)``
    ``decode(*encode(x), size=x.shape[-2:])``.
``backbone_parameters()`` / ``head_parameters()``
    the optimiser's two groups (backbone LR; head LR × multiplier). A frozen encoder
    (``model.freeze_backbone``) has ``requires_grad`` off and is left out of both.
``pretrained_source``
    what the encoder was initialised from, recorded in every run.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SegmentationModel", "FEATURE_STRIDE"]

FEATURE_STRIDE = 4
"""The stride of the ``fuse`` feature every model returns from ``decode``."""


class SegmentationModel(nn.Module):
    """Base class of the harness's segmentation models: the optimiser groups and the frozen-encoder option.

    Subclasses set ``backbone`` (the encoder module), ``num_classes``, ``feature_channels`` and
    ``semantic_channels`` and implement ``forward``, ``encode`` and ``decode`` as the module docstring says.
    """

    backbone: nn.Module
    num_classes: int
    feature_channels: int
    semantic_channels: int
    pretrained_source: str = "random (not loaded through build_model)"
    backbone_frozen: bool = False

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def decode(self, *features: torch.Tensor, size=None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(*self.encode(x), size=x.shape[-2:])

    def freeze_backbone(self) -> None:
        """Stop training the encoder (upstream's ``lock_backbone``, for small GPUs): no gradients, no optimiser
        group. Its normalisation layers keep their running statistics (:meth:`train` leaves it in eval mode)."""
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.backbone_frozen = True
        self.backbone.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.backbone_frozen:  # BatchNorm statistics of a frozen ResNet must not drift either
            self.backbone.eval()
        return self

    def backbone_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        ids = {id(p) for p in self.backbone.parameters()}
        return [p for p in self.parameters() if id(p) not in ids and p.requires_grad]
