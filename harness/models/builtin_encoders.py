"""The built-in encoders, registered through ``harness_register_encoders`` like a plugin's.

* ``resnet50``, ``resnet101``, ``small``: DeepLabV3+ (:mod:`harness.models.deeplab`) on torchvision's ResNets or
  the small CPU backbone; weights: ImageNet files (:mod:`harness.models.pretrained`) or built-in ones
  (:mod:`harness.models.builtin_weights`, ``model.weights: shapes-v1``).
* ``dinov2_small``, ``dinov2_base``, ``dinov2_large``: DINOv2 ViT-S/14, B/14, L/14 (timm) with UniMatch V2's
  DPT head (:mod:`harness.models.vit`); weights: a DINOv2 file (:mod:`harness.models.vit_weights`).
* ``vit_tiny``: a ViT of width 64, 4 blocks, patch 8, with a DPT head, randomly initialised: the ViT family on a
  CPU (tests, the synthetic data). It has no published weights: ``model.pretrained: true`` looks for
  ``vit_tiny.pth`` / ``vit_tiny.safetensors`` or the file ``model.weights`` names.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..hookspecs import hookimpl
from .encoders import Encoder

RESNET_LABELS = {"resnet50": "ResNet-50", "resnet101": "ResNet-101", "small": "small CPU backbone"}
VIT_LABELS = {"dinov2_small": "DINOv2-S", "dinov2_base": "DINOv2-B", "dinov2_large": "DINOv2-L",
              "vit_tiny": "tiny ViT"}


def build_deeplab(spec, num_classes: int):
    """DeepLabV3+ for ``spec``; its backbone's pretrained weights are the built-in ones ``spec.weights`` names or
    ImageNet weights from local files."""
    from .builtin_weights import BUILTIN_WEIGHTS, load_builtin
    from .deeplab import DeepLabV3Plus
    from .pretrained import load_pretrained
    from .resnet import build_backbone

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


def check_deeplab_weights(spec, protocol_id: str) -> None:
    from .builtin_weights import BUILTIN_WEIGHTS, builtin_weights, verify
    from .pretrained import require_pretrained

    if spec.weights in BUILTIN_WEIGHTS:
        w = builtin_weights(spec.weights)
        if (spec.backbone, spec.width) != (w.backbone, w.width):
            raise ConfigError(f"protocol {protocol_id}: built-in weights {spec.weights!r} are for the {w.backbone} "
                              f"backbone of width {w.width}, not {spec.backbone} of width {spec.width}")
        verify(spec.weights)
    elif spec.weights != "imagenet":
        raise ConfigError(f"protocol {protocol_id}: model.weights {spec.weights!r} is neither 'imagenet' nor a "
                          f"built-in name ({', '.join(sorted(BUILTIN_WEIGHTS))})")
    else:
        require_pretrained(spec.backbone, spec.deep_stem, spec.width, protocol_id)


def _check_vit_spec(spec, where: str) -> None:
    if spec.aux_head:
        raise ConfigError(f"{where}model.aux_head is an option of the DeepLabV3+ encoders (a head on ResNet layer3); "
                          f"encoder {spec.backbone} has none")


def build_vit_model(spec, num_classes: int):
    """A DINOv2-configured timm ViT with UniMatch V2's DPT head; the encoder's weights from a local file when
    ``spec.pretrained``."""
    from .dinov2_vit import build_vit
    from .vit import ViTSegmentationModel
    from .vit_weights import load_vit_weights

    _check_vit_spec(spec, "")
    backbone = build_vit(spec.backbone)
    source = (load_vit_weights(backbone, spec.backbone, spec.weights) if spec.pretrained
              else "random (pretrained disabled)")
    model = ViTSegmentationModel(backbone, num_classes)
    model.pretrained_source = source
    return model


def check_vit_weights(spec, protocol_id: str) -> None:
    from .vit_weights import is_weight_path, require_vit_weights

    _check_vit_spec(spec, f"protocol {protocol_id}: ")
    if spec.weights != "imagenet" and not is_weight_path(spec.weights):
        raise ConfigError(f"protocol {protocol_id}: model.weights {spec.weights!r} of encoder {spec.backbone} is "
                          f"neither 'imagenet' (the encoder's published pretraining, looked up in "
                          f"HARNESS_PRETRAINED_DIR) nor the path of a weights file")
    require_vit_weights(spec.backbone, spec.weights, protocol_id)


@hookimpl
def harness_register_encoders(registry) -> None:
    for name in ("resnet50", "resnet101"):
        registry.add(Encoder(name, build_deeplab, f"DeepLabV3+ on torchvision's {RESNET_LABELS[name]} (dilated, "
                                                  f"deep stem by default); ImageNet weights from local files",
                             label=RESNET_LABELS[name], family="deeplabv3+", check_weights=check_deeplab_weights))
    registry.add(Encoder("small", build_deeplab, "DeepLabV3+ on a narrow ResNet-like CPU backbone (model.width, "
                                                 "model.blocks); built-in weights shapes-v1",
                         label=RESNET_LABELS["small"], family="deeplabv3+", check_weights=check_deeplab_weights))
    sizes = {"dinov2_small": "ViT-S/14", "dinov2_base": "ViT-B/14", "dinov2_large": "ViT-L/14"}
    for name, vit in sizes.items():
        registry.add(Encoder(name, build_vit_model, f"DINOv2 {vit} (timm) with UniMatch V2's DPT head; DINOv2 "
                                                    f"weights from a local file (official .pth, timm or Hugging "
                                                    f"Face safetensors)",
                             label=VIT_LABELS[name], family="dpt", check_weights=check_vit_weights))
    registry.add(Encoder("vit_tiny", build_vit_model, "a ViT of width 64, 4 blocks, patch 8 (timm) with a DPT head, "
                                                      "randomly initialised: the ViT family on a CPU",
                         label=VIT_LABELS["vit_tiny"], family="dpt", check_weights=check_vit_weights))
