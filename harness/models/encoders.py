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


class EncoderRegistry:
    """Passed to ``harness_register_encoders``; remembers which plugin registered each encoder."""

    def __init__(self) -> None:
        self._encoders: dict[str, Encoder] = {}
        self._owner: dict[str, str] = {}
        self.current_plugin = "unknown"  # set by the plugin manager around each plugin's hook call
        self.failures: list = []  # plugin failures (set by the plugin manager), named in "unknown encoder" errors

    def add(self, encoder: Encoder) -> None:
        if not isinstance(encoder, Encoder):
            raise ConfigError(f"registry.add expects a harness.models.encoders.Encoder, got {type(encoder).__name__}")
        if encoder.name in self._encoders:
            raise ConfigError(f"encoder '{encoder.name}' is registered twice: by {self._owner[encoder.name]} and by "
                              f"{self.current_plugin}")
        self._encoders[encoder.name] = encoder
        self._owner[encoder.name] = self.current_plugin

    def get(self, name: str, protocol=None) -> Encoder:
        """The encoder; an unknown name is a ConfigError listing the registered ones (and naming the protocol)."""
        try:
            return self._encoders[name]
        except KeyError:
            pass
        where = (f" (protocol '{protocol.id}', file {protocol.source or '?'}, key 'model.backbone')"
                 if protocol is not None else " (model.backbone)")
        msg = f"unknown encoder '{name}'{where}; registered encoders: {', '.join(self.names()) or '(none)'}"
        if self.failures:
            msg += (". Plugins that failed to load (one may provide it): "
                    + "; ".join(f.describe() for f in self.failures))
        raise ConfigError(msg)

    def owner(self, name: str) -> str:
        return self._owner.get(name, "")

    def names(self) -> list[str]:
        return sorted(self._encoders)

    def __contains__(self, name: str) -> bool:
        return name in self._encoders

    def __iter__(self):
        return iter(self._encoders[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._encoders)


def registry() -> EncoderRegistry:
    """The encoders of every loaded plugin (built-ins included)."""
    from ..plugins import get_plugin_manager

    return get_plugin_manager().encoders


def get_encoder(name: str, protocol=None) -> Encoder:
    return registry().get(name, protocol=protocol)
