"""Segmentation models: DeepLabV3+ on dilated ResNets (deep stem) or a small CPU backbone, and UniMatch V2's DPT
head on DINOv2 ViTs (timm). Every one implements :mod:`harness.models.base`; encoders are registered through
``harness_register_encoders`` (:mod:`harness.models.encoders`, the built-ins in ``builtin_encoders.py``)."""

from __future__ import annotations

from ..protocols import ModelSpec
from .base import SegmentationModel
from .deeplab import ASPP, DeepLabV3Plus, aspp_dilations, aux_logits_of, reduce_channels
from .encoders import Encoder, get_encoder
from .pretrained import load_pretrained
from .resnet import ResNetBackbone, SmallBackbone, build_backbone

__all__ = ["build_model", "SegmentationModel", "DeepLabV3Plus", "ASPP", "ResNetBackbone", "SmallBackbone",
           "build_backbone", "load_pretrained", "aspp_dilations", "reduce_channels", "aux_logits_of", "Encoder",
           "get_encoder"]


def build_model(spec: ModelSpec, num_classes: int) -> SegmentationModel:
    """The segmentation model of encoder ``spec.backbone`` (a registered :class:`Encoder`), with the pretrained
    weights the spec asks for and, with ``spec.freeze_backbone``, its encoder frozen.

    The returned model records what was loaded in ``model.pretrained_source``.
    """
    model = get_encoder(spec.backbone).build(spec, num_classes)
    if not isinstance(model, SegmentationModel):
        raise TypeError(f"encoder '{spec.backbone}' built a {type(model).__name__}, not a "
                        f"harness.models.base.SegmentationModel")
    if spec.freeze_backbone:
        model.freeze_backbone()
    return model
