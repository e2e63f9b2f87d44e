"""Encoders as plugins: what the core needs to know about an encoder, and the registry that holds them.

An encoder is registered through the hook ``harness_register_encoders(registry)`` with an :class:`Encoder`: its
name (what ``model.backbone`` of a protocol says), a function that builds the whole segmentation model for a
:class:`~harness.protocols.ModelSpec` (a :class:`~harness.models.base.SegmentationModel`, its pretrained weights
loaded), and a function that checks, when a run is resolved and before any training, that the weights the spec
asks for exist. The built-in ones (``resnet50``, ``resnet101``, ``small``, ``dinov2_small``, ``dinov2_base``,
``dinov2_large``, ``vit_tiny``) are registered by :mod:`harness.models.builtin_encoders` through the same hook.
:func:`harness.models.build_model` and the run's resolution ask :func:`get_encoder`; nothing else in the core
names an encoder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..errors import ConfigError
from ..named_registry import NamedRegistry

if TYPE_CHECKING:
    from ..protocols import ModelSpec
    from .base import SegmentationModel

__all__ = ["Encoder", "EncoderRegistry", "registry", "get_encoder"]


@dataclass(frozen=True)
class Encoder:
    """One encoder as the core sees it. ``name`` and ``build`` are required."""

    name: str
    build: "Callable[[ModelSpec, int], SegmentationModel]"
    """``build(spec, num_classes)``: the segmentation model, with the weights ``spec`` asks for loaded and
    ``pretrained_source`` set (``spec.freeze_backbone`` is applied by the core afterwards)."""
    description: str = ""
    label: str = ""
    """how tables name it (default: the name)"""
    family: str = ""
    """the decoder family, shown by ``harness list encoders`` (``deeplabv3+``, ``dpt``, …)"""
    check_weights: "Callable[[ModelSpec, str], None] | None" = None
    """``check_weights(spec, protocol_id)`` raises ConfigError when ``spec.pretrained`` asks for weights that are
    not there; called when a run is resolved, so a missing file stops it before any training. None: nothing to
    check (``build`` reports a missing file itself)."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", self.name or ""):
            raise ConfigError(f"encoder name {self.name!r} must be a lowercase word (letters, digits, '_', '-', '.')")
        if not callable(self.build):
            raise ConfigError(f"encoder '{self.name}': build must be a function (spec, num_classes) -> model, got "
                              f"{type(self.build).__name__}")

    @property
    def display(self) -> str:
        return self.label or self.name


class EncoderRegistry(NamedRegistry[Encoder]):
    """Passed to ``harness_register_encoders``; remembers which plugin registered each encoder."""

    kind, entry_type, protocol_key = "encoder", Encoder, "model.backbone"
    unnamed_where = " (model.backbone)"


def registry() -> EncoderRegistry:
    """The encoders of every loaded plugin (built-ins included)."""
    from ..plugins import get_plugin_manager

    return get_plugin_manager().encoders


def get_encoder(name: str, protocol=None) -> Encoder:
    return registry().get(name, protocol=protocol)
