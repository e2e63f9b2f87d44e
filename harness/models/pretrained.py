"""ImageNet backbone weights from local files only (never downloaded).

Looked up, first match wins:

* the folder(s) in ``HARNESS_PRETRAINED_DIR`` (``os.pathsep``-separated):
  deep stem → ``<arch>_deepstem.pth``, then ``<arch>.pth`` if it holds a deep-stem state dict (the file name
  UniMatch/iMAS ship); standard stem → ``<arch>.pth`` if it holds a 7×7-stem state dict;
  ``small`` → ``small_w<width>.pth``;
* standard stem only: the torchvision cache, ``torch.hub.get_dir()/checkpoints/<arch>-*.pth`` (torchvision's
  weights have a 7×7 stem, so they never serve a deep-stem backbone).

A file is accepted when its stem layout matches (``conv1.0.weight`` = deep stem, ``conv1.weight`` with a 7×7
kernel = standard stem); a file with the right layout that does not load (missing keys, wrong shapes) is an
error rather than a silent random start. A model that asks for weights (``model.pretrained: true``) and finds
none is an error too (:func:`require_pretrained` checks this when a run is resolved, before any training); the
opt-out is ``--set model.pretrained=false``, which is recorded and gets its own settings folder. Wrappers ``{"state_dict": ...}`` / ``{"model": ...}`` and the prefixes
``module.`` / ``backbone.`` are removed; ``fc.*`` is dropped.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from ..records import sha256_file

__all__ = ["ENV_VAR", "candidate_files", "read_state_dict", "load_pretrained", "require_pretrained",
           "weight_file_names"]

ENV_VAR = "HARNESS_PRETRAINED_DIR"


def _env_dirs() -> list[Path]:
    raw = os.environ.get(ENV_VAR, "")
    return [Path(p) for p in raw.split(os.pathsep) if p]


def weight_file_names(backbone: str, deep_stem: bool, width: int = 32) -> list[str]:
    """File names looked for in ``HARNESS_PRETRAINED_DIR``, in order."""
    if backbone == "small":
        return [f"small_w{width}.pth"]
    if deep_stem:
        return [f"{backbone}_deepstem.pth", f"{backbone}.pth"]
    return [f"{backbone}.pth"]


def candidate_files(backbone: str, deep_stem: bool, width: int = 32) -> tuple[list[Path], list[str]]:
    """Existing candidate files in search order, and every location looked at (for the message)."""
    looked: list[str] = []
    found: list[Path] = []
    dirs = _env_dirs()
    if not dirs:
        looked.append(f"${ENV_VAR} (unset)")
    for d in dirs:
        for n in weight_file_names(backbone, deep_stem, width):
            p = d / n
            looked.append(str(p))
            if p.is_file():
                found.append(p)
    if backbone != "small" and not deep_stem:
        pattern = os.path.join(torch.hub.get_dir(), "checkpoints", f"{backbone}-*.pth")
        looked.append(pattern)
        found += [Path(p) for p in sorted(glob.glob(pattern))]
    elif backbone != "small":
        looked.append(f"torchvision cache {os.path.join(torch.hub.get_dir(), 'checkpoints')} (not used: torchvision's "
                      f"weights have a 7x7 stem, this backbone a deep stem)")
    return found, looked


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensor state dict of a checkpoint file with wrappers, prefixes and ``fc.*`` removed."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ConfigError(f"pretrained weights file {path} does not hold a state dict (got {type(obj).__name__})")
    out = {}
    for k, v in obj.items():
        for prefix in ("module.", "backbone."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        if k.startswith("fc.") or not isinstance(v, torch.Tensor):
            continue
        out[k] = v
    return out


def _stem_layout(state: dict[str, torch.Tensor]) -> str:
    if "conv1.0.weight" in state:
        return "deep"
    w = state.get("conv1.weight")
    if w is not None and w.dim() == 4 and w.shape[-1] == 7:
        return "standard"
    if w is not None:
        return "other"
    return "unknown"


def _missing_message(name: str, deep_stem: bool, width: int, looked: list[str], skipped: list[str],
                     protocol: str | None) -> str:
    names = " or ".join(weight_file_names(name, deep_stem, width))
    stem = " (deep stem)" if deep_stem and name != "small" else ""
    who = f"protocol {protocol} declares" if protocol else "the model asks for"
    where = "; ".join(looked + [f"skipped {s}" for s in skipped])
    return (f"{who} ImageNet weights (model.pretrained: true) for its {name} backbone{stem}, but none were found. "
            f"Looked for {names} in ${ENV_VAR} and, for a standard stem, in the torchvision cache: {where}. "
            f"Put the file in a folder named by ${ENV_VAR}, or train from random initialisation with "
            f"--set model.pretrained=false (recorded in the run; it gets its own settings folder and tables mark "
            f"its rows as not using the protocol's weights)")


def require_pretrained(name: str, deep_stem: bool, width: int = 32, protocol: str | None = None) -> None:
    """Raise ConfigError (naming the files, the places and the opt-out) if no weight file exists for the model."""
    deep_stem = deep_stem and name != "small"
    files, looked = candidate_files(name, deep_stem, width)
    if not files:
        raise ConfigError(_missing_message(name, deep_stem, width, looked, [], protocol))


def load_pretrained(backbone: nn.Module, name: str, deep_stem: bool, width: int = 32, enabled: bool = True) -> str:
    """Load local ImageNet weights into ``backbone``; return the ``pretrained_source`` string. Without a usable
    file that is an error (``enabled=False`` starts from random weights and says so)."""
    if not enabled:
        return "random (pretrained disabled)"
    files, looked = candidate_files(name, deep_stem, width)
    skipped = []
    want = "deep" if (deep_stem and name != "small") else "standard"
    for path in files:
        state = read_state_dict(path)
        layout = _stem_layout(state)
        if name != "small" and layout != want:
            skipped.append(f"{path} (stem layout '{layout}', need '{want}')")
            continue
        try:
            result = backbone.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise ConfigError(f"pretrained weights file {path} does not fit the {name} backbone "
                              f"(deep_stem={deep_stem}): {exc}") from None
        if result.missing_keys or result.unexpected_keys:
            raise ConfigError(
                f"pretrained weights file {path} does not fit the {name} backbone (deep_stem={deep_stem}): "
                f"missing keys {result.missing_keys[:5]}{'...' if len(result.missing_keys) > 5 else ''}, "
                f"unexpected keys {result.unexpected_keys[:5]}{'...' if len(result.unexpected_keys) > 5 else ''}")
        return f"imagenet: {path} (sha256 {sha256_file(path)[:12]})"
    raise ConfigError(_missing_message(name, deep_stem and name != "small", width, looked, skipped, None))
