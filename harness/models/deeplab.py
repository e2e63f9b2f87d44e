"""DeepLabV3+ exactly as the s4mim spec §2.1 (the UniMatch model), with a feature-perturbation path and an
optional auxiliary head (the official iMAS Cityscapes recipe).

Module names follow UniMatch (``backbone``, ``head`` = ASPP, ``reduce``, ``fuse``, ``classifier``), so its
checkpoints map one to one. Channel width ``D = spec.decoder_channels`` (256 for the ResNets): the ASPP
branches, the projection and ``fuse`` have D channels; the low-level reduction has ``round(48·D/256)``
channels (48 at D = 256, 12 at D = 64, the ``small`` protocol's width).

Initialisation of the decoder convolutions (``decoder_init``): ``pytorch`` leaves PyTorch's default (as the
official UniMatch and iMAS models do); ``kaiming`` re-initialises the ASPP, ``reduce`` and ``fuse`` convolutions
and the aux head's 3×3 one with Kaiming normal (fan-out), the harness's earlier default, which the committed
synthetic benchmark was trained with. The classifiers keep PyTorch's default either way.

Auxiliary head (``aux_head``, iMAS's ``Aux_Module``): layer3 features → 3×3 conv (D channels) → BN → ReLU → 1×1
conv to the classes. It runs only in training mode, on the clean images of ``forward``; the returned logits then
carry the aux logits (at layer3 resolution) for :func:`aux_logits_of`, which the supervised loss reads for the
labeled rows it is given (``harness.train.losses``). Evaluation, ``encode``/``decode``/``features`` and eval-mode
forwards never compute it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import SegmentationModel
from .comp_drop import apply_channel_masks, complementary_masks

__all__ = ["ASPP", "DeepLabV3Plus", "aspp_dilations", "reduce_channels", "aux_logits_of"]

_AUX_ATTR = "_harness_aux_logits"


def aux_logits_of(logits: torch.Tensor) -> torch.Tensor | None:
    """The aux-head logits of the rows of ``logits``, or None.

    ``logits`` is the output of a training-mode ``forward`` with the aux head on, or a view of it taken along
    the batch dimension (``out[:n]``, ``out.split(...)``, ``out.chunk(...)``), as methods slice the labeled rows
    out of a joint forward. Anything else (a copy, a cast, an eval-mode output) has no aux logits."""
    base = logits if logits._base is None else logits._base
    aux = getattr(base, _AUX_ATTR, None)
    if aux is None:
        return None
    row = base.stride(0)
    offset = logits.storage_offset() - base.storage_offset()
    if (logits.shape[1:] != base.shape[1:] or logits.stride() != base.stride() or row == 0 or offset % row):
        return None
    start = offset // row
    if start + logits.shape[0] > aux.shape[0]:
        return None  # rows without aux logits (e.g. the feature-perturbation half)
    return aux[start:start + logits.shape[0]]


def aspp_dilations(output_stride: int) -> tuple[int, int, int]:
    """6/12/18 at output stride 16, doubled at output stride 8."""
    return (6, 12, 18) if output_stride == 16 else (12, 24, 36)


def reduce_channels(decoder_channels: int) -> int:
    """Channels of the c1 reduction: 48 for the 256-channel decoder, scaled proportionally otherwise."""
    return max(1, round(48 * decoder_channels / 256))


def _cbr(cin: int, cout: int, k: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = 0 if k == 1 else dilation
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _ASPPPooling(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.gap(x), size=x.shape[-2:], mode="bilinear", align_corners=True)


class ASPP(nn.Module):
    """Five branches (1×1; 3×3 at three dilations; image pooling), concatenated → 1×1 projection."""

    def __init__(self, cin: int, cout: int, dilations: tuple[int, int, int]):
        super().__init__()
        r1, r2, r3 = dilations
        self.b0 = _cbr(cin, cout, 1)
        self.b1 = _cbr(cin, cout, 3, r1)
        self.b2 = _cbr(cin, cout, 3, r2)
        self.b3 = _cbr(cin, cout, 3, r3)
        self.b4 = _ASPPPooling(cin, cout)
        self.project = _cbr(5 * cout, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.b0(x), self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)
        return self.project(y)


class AuxHead(nn.Sequential):
    """iMAS's auxiliary head: 3×3 conv (``cin`` → ``mid``) – BN – ReLU – 1×1 conv to ``num_classes`` (with bias)."""

    def __init__(self, cin: int, mid: int, num_classes: int):
        super().__init__(nn.Conv2d(cin, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                         nn.Conv2d(mid, num_classes, 1, bias=True))


class DeepLabV3Plus(SegmentationModel):
    """The ResNet family's segmentation model (the interface is :mod:`harness.models.base`).

    ``forward(x, need_fp=False, comp_drop=False)`` → logits B×K×H×W (input size), or ``(logits, logits_fp)`` with
    need_fp. ``encode(x)`` → ``(c1, c4)``; ``decode(c1, c4, size)`` → ``(logits, fuse)``; ``features(x)`` →
    ``(logits, fuse)`` with ``fuse`` the D-channel stride-4 decoder feature (``feature_channels`` = D).
    ``comp_drop`` gives c1 and c4 complementary channel masks of their own widths, the same pairs left unperturbed
    in both (:mod:`harness.models.comp_drop`).
    With ``aux_head``, a training-mode ``forward`` also computes the aux logits (see :func:`aux_logits_of`).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, decoder_channels: int = 256, output_stride: int = 16,
                 decoder_init: str = "pytorch", aux_head: bool = False):
        super().__init__()
        d = decoder_channels
        r = reduce_channels(d)
        self.backbone = backbone
        self.num_classes = num_classes
        self.feature_channels = d
        self.semantic_channels = backbone.c4_channels
        self.head = ASPP(backbone.c4_channels, d, aspp_dilations(output_stride))
        self.reduce = _cbr(backbone.c1_channels, r, 1)
        self.fuse = nn.Sequential(*_cbr(d + r, d, 3), *_cbr(d, d, 3))  # flat, as UniMatch (fuse.0 … fuse.5)
        self.classifier = nn.Conv2d(d, num_classes, 1, bias=True)
        self.pretrained_source = "random (not loaded through build_model)"
        if decoder_init not in ("pytorch", "kaiming"):
            raise ValueError(f"decoder_init must be 'pytorch' or 'kaiming', got {decoder_init!r}")
        # Created after the rest, so a model without it draws the same random numbers as before it existed.
        self.aux = AuxHead(backbone.c3_channels, d, num_classes) if aux_head else None
        if decoder_init == "kaiming":
            for m in (self.head, self.reduce, self.fuse, *([self.aux[0]] if self.aux is not None else [])):
                for mod in m.modules():
                    if isinstance(mod, nn.Conv2d):
                        nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    # --- parts -------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.backbone(x)

    def decode(self, c1: torch.Tensor, c4: torch.Tensor, size=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (upsampled to ``size`` if given, else at c1 resolution) and the ``fuse`` feature."""
        c4 = self.head(c4)
        c4 = F.interpolate(c4, size=c1.shape[-2:], mode="bilinear", align_corners=True)
        fuse = self.fuse(torch.cat([self.reduce(c1), c4], dim=1))
        logits = self.classifier(fuse)
        if size is not None:
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=True)
        return logits, fuse

    # --- entry points ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, need_fp: bool = False, comp_drop: bool = False):
        if need_fp and comp_drop:
            raise ValueError("forward: need_fp and comp_drop are two different perturbations; ask for one")
        size = x.shape[-2:]
        with_aux = self.aux is not None and self.training
        if with_aux:
            c1, c3, c4 = self.backbone.stages(x)
        else:
            c1, c4 = self.encode(x)
        if need_fp:
            # Encoder once; decoder on clean + channel-dropped features (dropout always active here).
            c1 = torch.cat([c1, F.dropout2d(c1, 0.5, training=True)])
            c4 = torch.cat([c4, F.dropout2d(c4, 0.5, training=True)])
        elif comp_drop:
            c1, c4 = apply_channel_masks((c1, c4), complementary_masks(len(x), (c1.shape[1], c4.shape[1])))
        logits = self.decode(c1, c4, size)[0]
        if with_aux:  # rows 0..len(x)-1 (the clean images) get aux logits
            setattr(logits, _AUX_ATTR, self.aux(c3))
        if need_fp:
            out, out_fp = logits.chunk(2)
            return out, out_fp
        return logits
