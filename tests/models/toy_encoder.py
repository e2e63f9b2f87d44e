"""An encoder plugin as a third party would write one (docs/extending.md, Encoders), used by
tests/models/test_encoders.py.

``toy_convnet``: two strided 3×3 convolutions (stride 4, ``model.width`` channels) and a 1×1 classifier, with both
perturbations of the model interface (toy_encoder_duplicate.py registers a name the harness already has).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.hookspecs import hookimpl
from harness.models.base import SegmentationModel
from harness.models.comp_drop import apply_channel_masks, complementary_masks
from harness.models.encoders import Encoder


class ToyConvNet(SegmentationModel):
    def __init__(self, num_classes: int, width: int):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(width, num_classes, 1)
        self.num_classes = num_classes
        self.feature_channels = self.semantic_channels = width

    def encode(self, x):
        return (self.backbone(x),)

    def decode(self, c4, size=None):
        logits = self.classifier(c4)
        if size is not None:
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=True)
        return logits, c4  # c4 is at stride 4: it is also the ``fuse`` feature

    def forward(self, x, need_fp=False, comp_drop=False):
        (c4,) = self.encode(x)
        if need_fp:
            c4 = torch.cat([c4, F.dropout2d(c4, 0.5, training=True)])
        elif comp_drop:
            (c4,) = apply_channel_masks((c4,), complementary_masks(len(x), c4.shape[1]))
        logits = self.decode(c4, size=x.shape[-2:])[0]
        return logits.chunk(2) if need_fp else logits


def build_toy(spec, num_classes: int) -> ToyConvNet:
    model = ToyConvNet(num_classes, spec.width)
    model.pretrained_source = "random (toy_convnet has no weights)"
    return model


@hookimpl
def harness_register_encoders(registry):
    registry.add(Encoder("toy_convnet", build_toy, "two strided convolutions and a 1x1 classifier",
                         label="Toy ConvNet", family="plain"))
