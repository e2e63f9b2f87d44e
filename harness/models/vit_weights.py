"""DINOv2 encoder weights from a local file, in the formats users have (never downloaded).

Formats, told apart by their key names and converted to the timm names of :class:`~harness.models.dinov2_vit.DINOv2ViT`:

* ``official``: facebookresearch/dinov2's ``dinov2_vit{s,b,l}14_pretrain.pth`` (``blocks.N.attn.qkv``,
  ``blocks.N.ls1.gamma``, ``mask_token``; chunked ``blocks.C.N.`` too) and UniMatch V2's
  ``pretrained/dinov2_{small,base,large}.pth`` (the same);
* ``timm``: ``vit_{small,base,large}_patch14_dinov2.lvd142m`` (``model.safetensors`` or ``pytorch_model.bin``):
  the official names without ``mask_token``;
* ``huggingface``: transformers' ``facebook/dinov2-{small,base,large}`` ``model.safetensors``
  (``embeddings.*``, ``encoder.layer.N.attention.attention.{query,key,value}``, ``layer_scale1.lambda1``,
  ``layernorm``; a ``dinov2.`` prefix is removed); query, key and value are concatenated into ``qkv``.

A checkpoint of a whole segmentation model (``{"model": …}`` with ``module.backbone.*`` keys, as UniMatch V2 saves)
gives its encoder. The file is ``model.weights`` when that is a path, else the first of :func:`weight_file_names`
in the folders of ``HARNESS_PRETRAINED_DIR``. A missing file, an unknown format and a file of another size are
errors that name the file, the format found and what was expected, as for the ResNets
(:mod:`harness.models.pretrained`).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import ConfigError
from ..records import sha256_file
from .pretrained import ENV_VAR, _env_dirs

__all__ = ["weight_file_names", "is_weight_path", "find_weight_file", "read_weight_file", "detect_format",
           "to_timm", "load_vit_weights", "require_vit_weights", "FORMATS"]

FORMATS = ("official", "timm", "huggingface")

_SIZE_LETTER = {"dinov2_small": ("s", "small"), "dinov2_base": ("b", "base"), "dinov2_large": ("l", "large")}
_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def weight_file_names(encoder: str) -> list[str]:
    """File names looked for in ``HARNESS_PRETRAINED_DIR``, in order: UniMatch V2's, the official DINOv2 release's,
    timm's model name, then the harness's own name with safetensors."""
    if encoder not in _SIZE_LETTER:
        return [f"{encoder}.pth", f"{encoder}.safetensors"]
    letter, word = _SIZE_LETTER[encoder]
    return [f"{encoder}.pth", f"dinov2_vit{letter}14_pretrain.pth", f"vit_{word}_patch14_dinov2.lvd142m.safetensors",
            f"{encoder}.safetensors"]


def is_weight_path(weights: str) -> bool:
    """Whether ``model.weights`` names a file rather than a kind of weights (``imagenet``, a built-in name)."""
    return "/" in weights or weights.endswith(_SUFFIXES)


def find_weight_file(encoder: str, weights: str) -> tuple[Path | None, list[str]]:
    """The file to load and every place looked at (for the message)."""
    if is_weight_path(weights):
        path = Path(weights).expanduser()
        return (path if path.is_file() else None), [str(path)]
    dirs = _env_dirs()
    looked = [] if dirs else [f"${ENV_VAR} (unset)"]
    for d in dirs:
        for name in weight_file_names(encoder):
            p = d / name
            looked.append(str(p))
            if p.is_file():
                return p, looked
    return None, looked


def read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors or torch file, unwrapped from ``state_dict`` / ``model`` / ``teacher``."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which, not a deep traceback
        raise ConfigError(f"encoder weights file {path} could not be read ({type(exc).__name__}: {exc}); expected a "
                          f"PyTorch state dict (.pth) or a safetensors file in one of the formats "
                          f"{', '.join(FORMATS)}") from None
    for key in ("state_dict", "model", "teacher"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"encoder weights file {path} does not hold a state dict of tensors "
                          f"(got {type(obj).__name__})")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _strip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DDP's ``module.``, a segmentation model's ``backbone.`` (its head dropped) and HF's ``dinov2.``."""
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    for prefix in ("backbone.", "dinov2."):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def detect_format(state: dict[str, torch.Tensor]) -> str | None:
    keys = set(state)
    if any(k.startswith(("embeddings.", "encoder.layer.")) for k in keys):
        return "huggingface"
    if not any(re.match(r"blocks\.\d+\.", k) for k in keys):
        return None
    if "mask_token" in keys or any(re.match(r"blocks\.\d+\.\d+\.", k) for k in keys):
        return "official"
    return "timm"


_HF_RENAMES = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^layernorm\.", "norm."),
    (r"^encoder\.layer\.(\d+)\.norm(\d)\.", r"blocks.\1.norm\2."),
    (r"^encoder\.layer\.(\d+)\.layer_scale(\d)\.lambda1$", r"blocks.\1.ls\2.gamma"),
    (r"^encoder\.layer\.(\d+)\.mlp\.fc(\d)\.", r"blocks.\1.mlp.fc\2."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
]


def _from_huggingface(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for k, v in state.items():
        if k == "embeddings.mask_token" or k.startswith(("pooler.", "classifier.")):
            continue
        m = re.match(r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$", k)
        if m:
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = v
            continue
        for pattern, repl in _HF_RENAMES:
            if re.match(pattern, k):
                out[re.sub(pattern, repl, k)] = v
                break
        else:
            out[k] = v  # left as it is: reported as unexpected when the encoder is loaded
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise ConfigError(f"layer {layer}: attention {kind} has only {sorted(parts)} of query, key and value")
        out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    return out


def to_timm(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str | None]:
    """``state`` in the encoder's (timm's) names, and the format it was found in (None: not recognised)."""
    state = _strip(state)
    fmt = detect_format(state)
    if fmt == "huggingface":
        return _from_huggingface(state), fmt
    if fmt == "official":
        out = {}
        for k, v in state.items():
            if k == "mask_token":
                continue
            out[re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k)] = v
        return out, fmt
    return state, fmt


def _describe(encoder) -> str:
    cfg = encoder.vit_config
    return (f"a ViT of width {cfg.embed_dim}, {cfg.depth} blocks, patch {cfg.patch_size} "
            f"({(cfg.img_size // cfg.patch_size) ** 2 + 1} position embeddings)")


def load_vit_weights(encoder, name: str, weights: str, path: Path | None = None) -> str:
    """Load the weights of encoder ``name`` into ``encoder`` (a DINOv2ViT); return the ``pretrained_source``:
    ``dinov2 (<format> format): <file> (sha256 …)`` for the DINOv2 encoders, ``file (…)`` for others."""
    if path is None:
        path, looked = find_weight_file(name, weights)
        if path is None:
            raise ConfigError(_missing_message(name, weights, looked, None))
    raw = read_weight_file(path)  # its errors name the file
    try:
        state, fmt = to_timm(raw)
    except ConfigError as exc:  # a conversion error names the layer, not the file: say which file it is
        raise ConfigError(f"encoder weights file {path} (for {name}): {exc}") from None
    if fmt is None:
        sample = ", ".join(sorted(state)[:4])
        raise ConfigError(f"encoder weights file {path} is in no known format (keys such as {sample}); expected "
                          f"{name} weights in one of the formats {', '.join(FORMATS)}: the official DINOv2 .pth "
                          f"(blocks.0.attn.qkv.weight, mask_token), timm's (blocks.0.attn.qkv.weight) or Hugging "
                          f"Face transformers' (encoder.layer.0.attention.attention.query.weight)")
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})" for k in own
              if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        detail = "; ".join(part for part in (
            f"missing {missing[:5]}{' …' if len(missing) > 5 else ''}" if missing else "",
            f"unexpected {unexpected[:5]}{' …' if len(unexpected) > 5 else ''}" if unexpected else "",
            f"other shapes: {', '.join(shapes[:3])}{' …' if len(shapes) > 3 else ''}" if shapes else "") if part)
        raise ConfigError(f"encoder weights file {path} ({fmt} format) does not fit encoder {name}, "
                          f"{_describe(encoder)}: {detail}. Is it the file of another model size?")
    encoder.load_state_dict(state, strict=True)
    kind = "dinov2" if name.startswith("dinov2") else "file"  # what harness.regimes.regime_of reads
    return f"{kind} ({fmt} format): {path} (sha256 {sha256_file(path)[:12]})"


def _missing_message(name: str, weights: str, looked: list[str], protocol: str | None) -> str:
    who = f"protocol {protocol} declares" if protocol else "the model asks for"
    if is_weight_path(weights):
        return (f"{who} encoder weights from the file {weights} (model.weights) for encoder {name}, but there is no "
                f"such file. Give the path of an existing .pth or .safetensors file in one of the formats "
                f"{', '.join(FORMATS)}, or train from random initialisation with --set model.pretrained=false")
    return (f"{who} pretrained weights (model.pretrained: true) for encoder {name}, but none were found. Looked for "
            f"{' or '.join(weight_file_names(name))} in ${ENV_VAR}: {'; '.join(looked)}. Put the official DINOv2 "
            f".pth, timm's or Hugging Face's model.safetensors (renamed as above) in a folder named by ${ENV_VAR}, "
            f"set --set model.weights=/path/to/file, or train from random initialisation with "
            f"--set model.pretrained=false (recorded in the run; it gets its own settings folder)")


def require_vit_weights(name: str, weights: str, protocol: str | None = None) -> Path:
    """The weights file of encoder ``name``; ConfigError (naming the places looked at and the opt-outs) if none."""
    path, looked = find_weight_file(name, weights)
    if path is None:
        raise ConfigError(_missing_message(name, weights, looked, protocol))
    return path
