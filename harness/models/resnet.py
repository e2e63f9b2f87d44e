"""Backbones returning ``(c1, c4)``: stride-4 low-level features and the dilated last stage.

* ``resnet50`` / ``resnet101``: torchvision ResNets (bottleneck layers [3, 4, 6|23, 3]). With
  ``deep_stem`` the 7×7 stem is replaced by the three 3×3 convolutions of the s4mim spec §2.1. The parameter
  names follow the UniMatch/iMAS layout (``conv1.{0,1,3,4,6}``, ``bn1``, ``layer1..4``), so their
  ImageNet files load as they are; the standard stem keeps torchvision's names (``conv1``, ``bn1``).
* ``small``: a narrow ResNet-like network of BasicBlocks for CPU runs (see ``SmallBackbone``).

Output stride 16: layer4 stride → dilation 2 (its first block dilation 1). Output stride 8: layer3 stride →
dilation 2 and layer4 stride → dilation 4 (first blocks keep the previous dilation, torchvision's rule).
``multi_grid`` multiplies layer4's block dilations by ``MULTI_GRID`` = (2, 2, 4) as the official iMAS ResNet does
(first block: previous dilation × 2, block i: layer dilation × grid[i]): 2, 4, 8 at output stride 16 and 4, 8, 16
at output stride 8. Only the dilation (and padding) of each block's 3×3 convolution changes, so ImageNet weights
load the same way.

``stages(x)`` returns ``(c1, c3, c4)``; ``c3`` (layer3) feeds the auxiliary head of ``DeepLabV3Plus``.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

__all__ = ["ResNetBackbone", "SmallBackbone", "build_backbone", "DEEP_STEM_CHANNELS", "MULTI_GRID"]

DEEP_STEM_CHANNELS = 128
MULTI_GRID = (2, 2, 4)


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _init_conv_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _set_dilation(conv: nn.Conv2d, dilation: int) -> None:
    conv.dilation = (dilation, dilation)
    conv.padding = (dilation, dilation)


def apply_multi_grid(layer4: nn.Sequential, output_stride: int) -> list[int]:
    """Set the official iMAS multi-grid dilations on layer4's 3×3 convolutions (``conv2`` of a Bottleneck,
    ``conv1``/``conv2`` of a BasicBlock); return them. At most ``len(MULTI_GRID)`` blocks."""
    if len(layer4) > len(MULTI_GRID):
        raise ValueError(f"multi_grid needs at most {len(MULTI_GRID)} blocks in layer4, got {len(layer4)}")
    base = 2 if output_stride == 16 else 4  # layer4's dilation
    previous = base // 2  # the dilation of the layer before (its first block's, torchvision's rule)
    dilations = [previous * MULTI_GRID[0]] + [base * g for g in MULTI_GRID[1:len(layer4)]]
    for block, d in zip(layer4, dilations):
        if hasattr(block, "conv3"):  # Bottleneck: the 3×3 convolution is conv2
            _set_dilation(block.conv2, d)
        else:  # BasicBlock: both 3×3 convolutions (the first keeps its stride)
            _set_dilation(block.conv1, d)
            _set_dilation(block.conv2, d)
    return dilations


def _dilation_flags(output_stride: int) -> list[bool]:
    if output_stride == 16:
        return [False, False, True]
    if output_stride == 8:
        return [False, True, True]
    raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")


class ResNetBackbone(nn.Module):
    """torchvision ResNet-50/101 without avgpool/fc; ``forward`` returns ``(c1, c4)``."""

    def __init__(self, arch: str = "resnet101", output_stride: int = 16, deep_stem: bool = True,
                 multi_grid: bool = False):
        super().__init__()
        if arch not in ("resnet50", "resnet101"):
            raise ValueError(f"unknown ResNet '{arch}'; expected resnet50 or resnet101")
        net = getattr(torchvision.models, arch)(
            weights=None, replace_stride_with_dilation=_dilation_flags(output_stride))
        self.arch = arch
        self.deep_stem = deep_stem
        self.output_stride = output_stride
        if deep_stem:
            # conv 3×3 (3→64, s2)–BN–ReLU–conv 3×3 (64→64)–BN–ReLU–conv 3×3 (64→128); bn1 + relu follow.
            self.conv1 = nn.Sequential(
                _conv3x3(3, 64, stride=2), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                _conv3x3(64, 64), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                _conv3x3(64, DEEP_STEM_CHANNELS))
            self.bn1 = nn.BatchNorm2d(DEEP_STEM_CHANNELS)
            _init_conv_bn(self.conv1)
            _init_conv_bn(self.bn1)
            # layer1's first bottleneck takes 128 input channels (main path and shortcut).
            block = net.layer1[0]
            block.conv1 = nn.Conv2d(DEEP_STEM_CHANNELS, block.conv1.out_channels, 1, bias=False)
            block.downsample[0] = nn.Conv2d(DEEP_STEM_CHANNELS, block.downsample[0].out_channels, 1, bias=False)
            _init_conv_bn(block.conv1)
            _init_conv_bn(block.downsample[0])
        else:
            self.conv1 = net.conv1
            self.bn1 = net.bn1
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if multi_grid:
            apply_multi_grid(self.layer4, output_stride)
        self.c1_channels = 256
        self.c3_channels = 1024
        self.c4_channels = 2048

    def stages(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c3 = self.layer3(self.layer2(c1))
        return c1, c3, self.layer4(c3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c1, _, c4 = self.stages(x)
        return c1, c4


class _BasicBlock(nn.Module):
    """Two 3×3 conv–BN (ReLU) with a projection shortcut when the shape changes; supports dilation."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1, first_dilation: int | None = None):
        super().__init__()
        d0 = dilation if first_dilation is None else first_dilation
        self.conv1 = _conv3x3(cin, cout, stride, d0)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout, 1, dilation)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class SmallBackbone(nn.Module):
    """Narrow ResNet-like backbone for CPU runs: one BasicBlock per stage, widths w (layer1), 2w, 4w, 4w.

    Stem: 3×3 conv (3→w, s2)–BN–ReLU–max-pool (stride 4). ``c1`` = layer1 (w channels, stride 4), ``c4`` =
    layer4 (4w channels, stride 16 or 8, dilated like the ResNets). layer4 keeps 4w rather than 8w channels:
    at stride 16 with dilation it would otherwise cost as much as the rest of the network together.
    No ImageNet weights exist for it (``small_w<width>.pth`` in ``HARNESS_PRETRAINED_DIR`` is looked for).
    """

    def __init__(self, width: int = 32, output_stride: int = 16, blocks: int = 1, multi_grid: bool = False):
        super().__init__()
        flags = _dilation_flags(output_stride)
        self.arch = "small"
        self.deep_stem = False
        self.output_stride = output_stride
        w = width
        self.conv1 = nn.Sequential(_conv3x3(3, w, stride=2), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = nn.Sequential(*[_BasicBlock(w, w) for _ in range(blocks)])
        dilation = 1
        layers = []
        cin = w
        for cout, dilate in zip((2 * w, 4 * w, 4 * w), flags):
            prev = dilation
            stride = 2
            if dilate:
                dilation *= 2
                stride = 1
            layers.append(nn.Sequential(
                _BasicBlock(cin, cout, stride=stride, dilation=dilation, first_dilation=prev),
                *[_BasicBlock(cout, cout, dilation=dilation) for _ in range(blocks - 1)]))
            cin = cout
        self.layer2, self.layer3, self.layer4 = layers
        if multi_grid:
            apply_multi_grid(self.layer4, output_stride)
        self.c1_channels = w
        self.c3_channels = 4 * w
        self.c4_channels = 4 * w
        _init_conv_bn(self)

    def stages(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c1 = self.layer1(self.maxpool(self.conv1(x)))
        c3 = self.layer3(self.layer2(c1))
        return c1, c3, self.layer4(c3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c1, _, c4 = self.stages(x)
        return c1, c4


def build_backbone(backbone: str, output_stride: int = 16, deep_stem: bool = True, width: int = 32,
                   blocks: int = 1, multi_grid: bool = False) -> nn.Module:
    if backbone == "small":
        return SmallBackbone(width=width, output_stride=output_stride, blocks=blocks, multi_grid=multi_grid)
    return ResNetBackbone(backbone, output_stride=output_stride, deep_stem=deep_stem, multi_grid=multi_grid)
