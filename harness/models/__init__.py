"""Segmentation models: DeepLabV3+ on dilated ResNets (deep stem) or a small CPU backbone."""

from __future__ import annotations

from ..protocols import ModelSpec
from .deeplab import ASPP, DeepLabV3Plus, aspp_dilations, aux_logits_of, reduce_channels
from .builtin_weights import BUILTIN_WEIGHTS, load_builtin
from .pretrained import load_pretrained
from .resnet import ResNetBackbone, SmallBackbone, build_backbone

SegmentationModel = DeepLabV3Plus

__all__ = ["build_model", "SegmentationModel", "DeepLabV3Plus", "ASPP", "ResNetBackbone", "SmallBackbone",
           "build_backbone", "load_pretrained", "aspp_dilations", "reduce_channels", "aux_logits_of"]


def build_model(spec: ModelSpec, num_classes: int) -> DeepLabV3Plus:
    """DeepLabV3+ for ``spec``; its backbone's pretrained weights are the built-in ones ``spec.weights`` names
    (``builtin_weights.py``) or ImageNet weights from local files (``pretrained.py``).

    The returned model records what was loaded in ``model.pretrained_source``.
    """
    deep_stem = spec.deep_stem and spec.backbone != "small"
    backbone = build_backbone(spec.backbone, spec.output_stride, deep_stem, spec.width, spec.blocks, spec.multi_grid)
    if spec.pretrained and spec.weights in BUILTIN_WEIGHTS:
        source = load_builtin(backbone, spec.weights, spec.backbone, spec.width)
    else:
        source = load_pretrained(backbone, spec.backbone, deep_stem, spec.width, enabled=spec.pretrained)
    model = DeepLabV3Plus(backbone, num_classes, spec.decoder_channels, spec.output_stride, spec.decoder_init,
                          spec.aux_head)
    model.pretrained_source = source
    return model
