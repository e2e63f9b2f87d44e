"""DINOv2 ViTs built with timm, exposing the intermediate layers UniMatch V2's DPT head reads.

The network is timm's ``VisionTransformer`` configured as DINOv2 (patch 14, 518-pixel position grid of 37×37,
LayerScale, LayerNorm ε = 1e-6, class token, no register tokens); nothing of the transformer is written here. Two
things follow the official DINOv2 code that UniMatch V2 runs instead of timm's defaults, because they change the
numbers:

* the position embedding of another grid size is the 37×37 one resized bicubically by the *scale factor*
  ``(h + 0.1) / 37`` (DINOv2's ``interpolate_offset``), without antialiasing (timm resizes to the target size
  with antialiasing);
* :meth:`DINOv2ViT.intermediate_layers` returns the chosen blocks' outputs after the final LayerNorm, without
  the class token (DINOv2's ``get_intermediate_layers(x, idx, norm=True)``).

Parameter names are timm's, which are DINOv2's (``blocks.N.attn.qkv``, ``blocks.N.ls1.gamma``, …) but for the
mask token, which a segmentation model never uses (:mod:`harness.models.vit_weights` converts the other formats).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

__all__ = ["ViTConfig", "VIT_CONFIGS", "DINOv2ViT", "build_vit", "grid_multiple"]


@dataclass(frozen=True)
class ViTConfig:
    """One ViT size and the DPT head UniMatch V2 pairs with it (``model_configs`` of its training scripts)."""

    embed_dim: int
    depth: int
    num_heads: int
    layers: tuple[int, int, int, int]
    """blocks whose outputs feed the DPT head (UniMatch V2's ``intermediate_layer_idx``)"""
    dpt_features: int
    dpt_channels: tuple[int, int, int, int]
    patch_size: int = 14
    img_size: int = 518
    """the position grid is img_size / patch_size on a side (DINOv2: 37)"""


VIT_CONFIGS: dict[str, ViTConfig] = {
    "dinov2_small": ViTConfig(384, 12, 6, (2, 5, 8, 11), 64, (48, 96, 192, 384)),
    "dinov2_base": ViTConfig(768, 12, 12, (2, 5, 8, 11), 128, (96, 192, 384, 768)),
    "dinov2_large": ViTConfig(1024, 24, 16, (4, 11, 17, 23), 256, (256, 512, 1024, 1024)),
    # CPU tests and the synthetic data: 4 blocks of width 64, patch 8 (a 64-pixel crop is an 8×8 grid).
    "vit_tiny": ViTConfig(64, 4, 2, (0, 1, 2, 3), 32, (16, 32, 64, 64), patch_size=8, img_size=64),
}

INTERPOLATE_OFFSET = 0.1


class DINOv2ViT(VisionTransformer):
    """timm's ViT with DINOv2's position-embedding resize and intermediate-layer read-out."""

    def __init__(self, cfg: ViTConfig):
        super().__init__(img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
                         num_heads=cfg.num_heads, mlp_ratio=4.0, qkv_bias=True, init_values=1.0, num_classes=0,
                         norm_layer=partial(nn.LayerNorm, eps=1e-6))
        self.vit_config = cfg
        self.patch = cfg.patch_size
        self.grid = cfg.img_size // cfg.patch_size

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """The position embedding (class token first) for an h×w patch grid, as DINOv2 computes it."""
        pos = self.pos_embed
        if h == w == self.grid:
            return pos
        dtype = pos.dtype
        pos = pos.float()
        cls, patches = pos[:, :1], pos[:, 1:]
        n = self.grid
        scale = ((h + INTERPOLATE_OFFSET) / n, (w + INTERPOLATE_OFFSET) / n)
        patches = F.interpolate(patches.reshape(1, n, n, -1).permute(0, 3, 1, 2), scale_factor=scale,
                                mode="bicubic", antialias=False)
        if patches.shape[-2:] != (h, w):  # the offset guarantees floor(n·scale) = h; fail loudly if it did not
            raise RuntimeError(f"position embedding resized to {tuple(patches.shape[-2:])}, expected {(h, w)}")
        patches = patches.permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return torch.cat((cls, patches), dim=1).to(dtype)

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Patch tokens with the class token and position embedding: (B×(1+h·w)×C, h, w)."""
        if x.shape[-2] % self.patch or x.shape[-1] % self.patch:
            raise ValueError(f"input {tuple(x.shape[-2:])} is not a multiple of the patch size {self.patch}")
        # The patch embedding's convolution directly: timm's PatchEmbed checks the input against img_size unless the
        # model is built with dynamic_img_size, which older timm versions do not have.
        t = self.patch_embed.proj(x)
        b, c, h, w = t.shape
        t = self.patch_embed.norm(t.flatten(2).transpose(1, 2))
        t = torch.cat((self.cls_token.expand(b, -1, -1), t), dim=1)
        t = t + self.position_embedding(h, w)
        return self.norm_pre(self.pos_drop(t)), h, w

    def intermediate_layers(self, x: torch.Tensor, indices=None) -> tuple[list[torch.Tensor], int, int]:
        """The outputs of blocks ``indices`` (default: the config's ``layers``) after the final norm, class token
        removed (B×h·w×C each), and the grid size h, w."""
        indices = tuple(self.vit_config.layers if indices is None else indices)
        t, h, w = self.tokens(x)
        out = []
        last = max(indices)
        for i, block in enumerate(self.blocks):
            t = block(t)
            if i in indices:
                out.append(self.norm(t)[:, 1:])
            if i == last:
                break
        return out, h, w


def build_vit(name: str) -> DINOv2ViT:
    try:
        cfg = VIT_CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown ViT {name!r}; expected one of {sorted(VIT_CONFIGS)}") from None
    return DINOv2ViT(cfg)


def grid_multiple(size: int, patch: int) -> int:
    """The side UniMatch V2's evaluation resizes an image side to: the nearest multiple of the patch size."""
    return max(patch, int(size / patch + 0.5) * patch)

