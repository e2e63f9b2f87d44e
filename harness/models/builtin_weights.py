"""Built-in pretrained weights: the ``small`` backbone trained on the built-in pretraining task.

``shapes-v1`` is the stand-in for ImageNet weights in the synthetic benchmark's pretrained regime: a
``small`` width-32 backbone trained by :mod:`harness.train.pretraining` on multi-label recognition of procedurally
drawn shapes and textures (:mod:`harness.data.pretraining`: its own images, no segmentation labels). The file
ships in the package (``harness/resources/weights``); its SHA-256 is fixed here, checked before every load and
recorded in every run (``pretrained_source``). ``harness data weights`` verifies it; ``harness data weights
--rebuild DIR`` retrains it bit for bit (same CPU type, same thread count, see the JSON next to the file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from ..records import sha256_file

__all__ = ["BuiltinWeights", "BUILTIN_WEIGHTS", "builtin_weights", "weights_path", "verify", "load_builtin"]


@dataclass(frozen=True)
class BuiltinWeights:
    name: str
    file: str
    sha256: str
    backbone: str
    width: int
    description: str


BUILTIN_WEIGHTS: dict[str, BuiltinWeights] = {w.name: w for w in (
    BuiltinWeights("shapes-v1", "small-w32-shapes-v1.pth",
                   "8c0670580afc4c78d2e680c20c95e2828a8f80ceb258f59f9d1aef85152ee2eb", "small", 32,
                   "small backbone (width 32) pretrained on the built-in shapes-and-textures task, version 1"),
)}


def builtin_weights(name: str) -> BuiltinWeights:
    if name not in BUILTIN_WEIGHTS:
        raise ConfigError(f"unknown built-in weights {name!r}; expected one of {sorted(BUILTIN_WEIGHTS)}")
    return BUILTIN_WEIGHTS[name]


def weights_path(name: str) -> Path:
    return Path(str(resources.files("harness") / "resources" / "weights" / builtin_weights(name).file))


def verify(name: str) -> Path:
    """The path of the shipped file, after checking it exists and has its SHA-256."""
    w = builtin_weights(name)
    path = weights_path(name)
    if not path.is_file():
        raise ConfigError(f"built-in weights {name!r}: {path} is missing from the installed package; reinstall "
                          f"ssseg-harness or rebuild them with `harness data weights --rebuild DIR`")
    got = sha256_file(path)
    if got != w.sha256:
        raise ConfigError(f"built-in weights {name!r}: {path} has SHA-256 {got}, expected {w.sha256}; the file "
                          f"was changed or truncated: reinstall ssseg-harness")
    return path


def metadata(name: str) -> dict:
    """The JSON written next to the weights when they were built (task, accuracy, cost, machine, command)."""
    path = weights_path(name).with_suffix(".json")
    return json.loads(path.read_text())


def load_builtin(backbone: nn.Module, name: str, arch: str, width: int) -> str:
    """Load built-in weights ``name`` into ``backbone``; return the ``pretrained_source`` (with the full SHA-256)."""
    w = builtin_weights(name)
    if (arch, width) != (w.backbone, w.width):
        raise ConfigError(f"built-in weights {name!r} are for the {w.backbone} backbone of width {w.width}, "
                          f"but the model is {arch} of width {width}")
    path = verify(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    result = backbone.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ConfigError(f"built-in weights {name!r} ({path}) do not fit the backbone: missing "
                          f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    return f"builtin {name}: sha256 {w.sha256}"
