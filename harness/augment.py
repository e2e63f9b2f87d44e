"""Batched photometric augmentations that methods build strong views from.

All ops work on B×3×H×W RGB tensors holding 8-bit values: ``uint8`` or a floating tensor with values in
[0, 255] (treated as 8-bit: rounded and clipped on entry). Every op returns the dtype it was given and keeps
8-bit semantics (each op's result is an integer image, as with PIL), so ops can be chained exactly like the
PIL pipelines of the official implementations.

Per-sample magnitudes are tensors of shape (B,) (or Python scalars, broadcast to the batch). The samplers
(``sample_imas_params``, ``sample_unimatch_params``, the CutMix box samplers) draw every random number
from ``generator`` when one is given, else from torch's global **CPU** RNG, always on the generator's /
the CPU device, and move the few per-sample values to the data's device. Draws never depend on the data
device, so a seed reproduces the same augmentation on CPU and GPU, and the engine's RNG checkpointing (which
saves the global RNG state) makes runs reproducible.

Definitions follow the imas spec §4 (iMAS ops) and the s4mim spec §2.2 (UniMatch strong view and
CutMix box). Where PIL is the reference implementation, its integer semantics are reproduced: ITU-R 601-2
luma with PIL's fixed-point rounding, ``Image.blend`` truncation for the enhance ops, PIL equalize. Two ops
differ from PIL, as the spec allows (measured by ``benchmarks/perf/pil_fidelity.py``, numbers in
``benchmarks/perf/results/pil_fidelity_cpu.json``):

- Gaussian blur samples the Gaussian density (σ = PIL "radius", truncated at ⌈3σ⌉, replicated borders);
  PIL approximates the blur with three box filters. Below σ ≈ 0.5 the sampled kernel is close to the
  identity and blurs much less than PIL; from there on the two blur about equally.
- 8-bit HSV: ``rgb_to_hsv8`` computes PIL's ``convert("HSV")`` in exact integer arithmetic, while PIL rounds
  in floating point, so H is one step off on a small share of colours (S and V never); ``hsv8_to_rgb`` equals
  PIL's HSV→RGB on every triple.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

__all__ = [
    "IMAS_MODIFIER",
    "IMAS_OP_NAMES",
    "IMAS_OPS",
    "IntensityOp",
    "ImasParams",
    "UniMatchParams",
    "Box",
    "identity",
    "autocontrast",
    "equalize",
    "invert",
    "gaussian_blur",
    "contrast",
    "brightness",
    "color",
    "sharpness",
    "posterize",
    "solarize",
    "hue",
    "grayscale",
    "luma",
    "rgb_to_hsv8",
    "hsv8_to_rgb",
    "imas_magnitude",
    "sample_imas_params",
    "apply_imas_params",
    "imas_strong",
    "sample_unimatch_params",
    "apply_unimatch_params",
    "unimatch_strong",
    "box_from_draws",
    "unimatch_cutmix_box",
    "unimatch_cutmix_boxes",
    "unimatch_cutmix_box_coords",
    "box_masks",
    "boxed_rows",
    "paste_boxes",
    "blend",
    "blend_bernoulli",
    "normalize",
]


# ----------------------------------------------------------------------------------------------------
# RNG helpers (also used by methods.components.cutmix): all draws on the generator's device, i.e. from
# torch's global CPU RNG when no generator is given, so the engine's RNG checkpoint covers them.


def _rng_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def uniform_draws(shape: Sequence[int] | int, generator: torch.Generator | None = None, dtype=torch.float64) -> Tensor:
    if isinstance(shape, int):
        shape = (shape,)
    return torch.rand(tuple(shape), generator=generator, device=_rng_device(generator), dtype=dtype)


def integer_draws(low: int, high: int, shape: Sequence[int] | int, generator: torch.Generator | None = None) -> Tensor:
    """Uniform integers in [low, high) (``high`` exclusive)."""
    if isinstance(shape, int):
        shape = (shape,)
    return torch.randint(low, high, tuple(shape), generator=generator, device=_rng_device(generator))


# ----------------------------------------------------------------------------------------------------
# 8-bit helpers


def _f(x: Tensor) -> Tensor:
    """A float32 copy of an 8-bit image tensor (uint8, or float 0–255 rounded and clipped)."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a B×3×H×W RGB tensor, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.to(torch.float32)
    if not x.is_floating_point():
        return x.to(torch.float32).clamp(0, 255)
    return x.to(torch.float32).round().clamp(0, 255)


def _finish(y: Tensor, like: Tensor) -> Tensor:
    """Clip to [0, 255] and return in the dtype of ``like`` (values of ``y`` are already integral)."""
    y = y.clamp(0, 255)
    if like.dtype == torch.uint8:
        return y.to(torch.uint8)
    return y.to(like.dtype)


def _per_sample(value, batch: int, device, dtype=torch.float32) -> Tensor:
    """A (B,) tensor of a per-sample magnitude (a scalar is broadcast)."""
    t = torch.as_tensor(value, dtype=dtype, device=device)
    if t.dim() == 0:
        t = t.expand(batch)
    t = t.reshape(-1)
    if t.numel() != batch:
        raise ValueError(f"expected {batch} per-sample values, got {t.numel()}")
    return t


def luma(x: Tensor) -> Tensor:
    """ITU-R 601-2 luma as PIL's ``convert("L")`` computes it (fixed point, rounded): B×H×W, float."""
    return _luma_f(_f(x))


# ----------------------------------------------------------------------------------------------------
# In-place kernels on float32 tensors holding 8-bit values (…×3×H×W, integral, in [0, 255]): one image's
# own tensor or a batch. The public ops and the strong views are built from them. Their arithmetic is exact
# (every intermediate value an integer below 2^24, or a float quotient floored where the gap to the next
# integer exceeds float32's rounding), so they give the same values as PIL's integer formulas.


def _luma_f(x: Tensor) -> Tensor:
    """Luma of a float32 8-bit image, …×H×W: (19595 R + 38470 G + 7471 B + 2^15) >> 16, each partial sum an
    integer below 2^24 (exact in float32) and the shift an exact scaling by 2^-16 and a floor."""
    r, g, b = x.unbind(-3)
    y = r * 19595.0
    y.add_(g, alpha=38470.0).add_(b, alpha=7471.0).add_(32768.0)
    return y.mul_(1.0 / 65536.0).floor_()


def _blend_(x: Tensor, degenerate, factor) -> Tensor:
    """In place: PIL ``Image.blend(degenerate, x, factor)`` = degenerate + f·(x − degenerate), clipped to
    [0, 255] and truncated (PIL's enhance ops)."""
    return x.sub_(degenerate).mul_(factor).add_(degenerate).clamp_(0, 255).floor_()


def _brightness_(x: Tensor, factor) -> Tensor:
    """In place: blend with black, i.e. floor(clip(f·x)) (0 + f·(x − 0) is f·x exactly)."""
    return x.mul_(factor).clamp_(0, 255).floor_()


def _contrast_(x: Tensor, factor) -> Tensor:
    """In place: blend with the image's mean luma, rounded half up to an integer (per image of a batch)."""
    H, W = x.shape[-2:]
    total = _luma_f(x).sum(dim=(-2, -1), dtype=torch.float64).to(torch.int64)  # exact: integers below 2^53
    mean = ((2 * total + H * W) // (2 * H * W)).to(torch.float32)
    return _blend_(x, mean.view(*mean.shape, 1, 1, 1), factor)


def _saturation_(x: Tensor, factor) -> Tensor:
    """In place: blend with the grey image (PIL ``ImageEnhance.Color``)."""
    return _blend_(x, _luma_f(x).unsqueeze(-3), factor)


def _grayscale_(x: Tensor) -> Tensor:
    """In place: PIL ``convert("L")`` replicated to the 3 channels."""
    return x.copy_(_luma_f(x).unsqueeze(-3).expand_as(x))


def _floor_div(a: Tensor, b) -> Tensor:
    """⌊a / b⌋ for integral float32 a ≥ 0 and b ≥ 1 (in place on a): exact whenever a + b < 2^24 (the float
    quotient rounds to the true one's integer part, since the gap to the next integer, ≥ 1/b, exceeds half a
    float32 step there)."""
    return a.div_(b).floor_()


def _rgb_to_hsv_f(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`rgb_to_hsv8` of a float32 8-bit image in exact float32 arithmetic: (H, S, V) float32 …×H×W."""
    r, g, b = x.unbind(-3)
    v = torch.maximum(r, torch.maximum(g, b))
    cr = v - torch.minimum(r, torch.minimum(g, b))
    crs = cr.clamp(min=1)  # keeps the divisions finite; an achromatic pixel takes the r branch below: n = 0, h = 0
    six_cr = crs * 6.0
    # hue as n / (6·cr) of the circle, with PIL's branch order (r, then g, then b); n in [0, 6·cr)
    n = torch.where(r == v, g - b, torch.where(g == v, b - r + 2.0 * crs, r - g + 4.0 * crs))
    n = torch.where(n < 0, n + six_cr, n)
    h = _floor_div(n.mul_(255.0), six_cr)  # 255·n < 390,150
    s = _floor_div(cr.mul_(255.0), v.clamp(min=1))  # 255·cr ≤ 65,025
    return h, s, v


def _hsv_to_rgb_f_(x: Tensor, h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """In place on ``x`` (…×3×H×W): :func:`hsv8_to_rgb` of float32 8-bit planes in exact float32 arithmetic
    (``h`` is used as scratch)."""
    i = _floor_div(h * 6.0, 255.0)  # 0..6
    rem = h.mul_(6.0).sub_(i * 255.0)  # 0..254
    # p = ⌊(2v(255 − s) + 255) / 510⌋; q, t = ⌊(2v·m + 255²) / (2·255²)⌋ with m = 255² − s·rem (q) or
    # 255² − s·(255 − rem) (t), written as ⌊(v·m + 32512) / 255²⌋ (the same: the numerator 2v·m + 255² is odd, the
    # divisor even) so that every numerator stays below 2^24 (v·m + 32512 ≤ 16,613,887).
    p = _floor_div((255.0 - s).mul_(v).mul_(2.0).add_(255.0), 510.0)
    sr = s * rem
    q = _floor_div((65025.0 - sr).mul_(v).add_(32512.0), 65025.0)
    t = _floor_div(sr.sub_(s * 255.0).add_(65025.0).mul_(v).add_(32512.0), 65025.0)
    # (R, G, B) per sector i (6 is sector 0): one gather from (v, p, q, t)
    channels = _hue_sector_channels(x.device)[i.to(torch.int64)].movedim(-1, -3)
    return torch.gather(torch.stack([v, p, q, t], dim=-3), -3, channels, out=x)


def _hue_(x: Tensor, shift) -> Tensor:
    """In place: PIL's 8-bit RGB→HSV, H ← (H + shift) mod 256, HSV→RGB (the formulas of :func:`rgb_to_hsv8` and
    :func:`hsv8_to_rgb`) in exact float32 arithmetic; ``shift`` an integer, or a tensor broadcasting against
    the …×H×W planes (B×1×1 for a batch)."""
    h, s, v = _rgb_to_hsv_f(x)
    h = h.add_(shift).remainder_(256.0)  # exact: integers, and a division by a power of two
    return _hsv_to_rgb_f_(x, h, s, v)


@functools.lru_cache(maxsize=None)
def _hue_sector_channels(device: torch.device) -> Tensor:
    """Which of (v, p, q, t) R, G and B take in each HSV sector 0–5, and for i = 6 (sector 0 again):
    (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q) (v,t,p). Made once per device."""
    return torch.tensor([[0, 3, 1], [2, 0, 1], [1, 0, 3], [1, 2, 0], [3, 1, 0], [0, 1, 2], [0, 3, 1]], device=device)


def _blur_f(x: Tensor, sigma: Tensor) -> Tensor:
    """Gaussian blur of a float32 8-bit batch B×C×H×W with per-sample σ (float64 (B,) on the CPU), rounded to
    integers (not clipped): a new tensor. See :func:`gaussian_blur`."""
    B, C, H, W = x.shape
    s = sigma
    own = torch.ceil(3.0 * s).clamp(min=1)  # per-sample truncation radius
    radius = max(6, int(own.max()))
    k = torch.arange(-radius, radius + 1, dtype=torch.float64).unsqueeze(0)
    w = torch.exp(-(k**2) / (2.0 * s.unsqueeze(1) ** 2)) * (k.abs() <= own.unsqueeze(1))
    w = (w / w.sum(dim=1, keepdim=True)).to(device=x.device, dtype=torch.float32)  # B×K
    w = w.repeat_interleave(C, dim=0)  # (B·C)×K
    y = x.reshape(1, B * C, H, W)
    y = F.pad(y, (radius, radius, 0, 0), mode="replicate")
    y = F.conv2d(y, w.view(B * C, 1, 1, -1), groups=B * C)
    y = F.pad(y, (0, 0, radius, radius), mode="replicate")
    y = F.conv2d(y, w.view(B * C, 1, -1, 1), groups=B * C)
    return y.reshape(B, C, H, W).add_(0.5).floor_()


# ----------------------------------------------------------------------------------------------------
# The 12 iMAS ops (imas spec §4) + grayscale and HSV helpers


def identity(x: Tensor, _=None) -> Tensor:
    return x.clone()


def autocontrast(x: Tensor, _=None) -> Tensor:
    """Per image and channel, stretch [min, max] linearly to [0, 255] (no cutoff); unchanged if min = max."""
    xf = _f(x)
    lo = xf.amin(dim=(2, 3), keepdim=True)
    hi = xf.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    # floor((x − lo)·255 / span): exact in float32 (integer numerator ≤ 65025, quotient gaps ≥ 1/255)
    out = torch.where(span > 0, torch.floor((xf - lo) * 255.0 / span.clamp(min=1)), xf)
    return _finish(out, x)


def equalize(x: Tensor, _=None) -> Tensor:
    """Per image and channel histogram equalisation with PIL's ``ImageOps.equalize`` LUT."""
    xi = _f(x).to(torch.int64)
    B, C, H, W = xi.shape
    n, N = B * C, H * W
    flat = xi.reshape(n, N)
    offsets = torch.arange(n, device=xi.device).unsqueeze(1) * 256
    hist = torch.bincount((flat + offsets).reshape(-1), minlength=n * 256).reshape(n, 256)
    top = flat.amax(dim=1, keepdim=True)
    last = hist.gather(1, top).squeeze(1)  # count of the highest value present (PIL's histo[-1])
    step = (N - last) // 255
    distinct = (hist > 0).sum(dim=1)
    ok = (distinct > 1) & (step > 0)
    safe = torch.where(ok, step, torch.ones_like(step)).unsqueeze(1)
    before = torch.cumsum(hist, dim=1) - hist  # pixels strictly below each value
    lut = ((safe // 2 + before) // safe).clamp(max=255)
    lut = torch.where(ok.unsqueeze(1), lut, torch.arange(256, device=xi.device).expand(n, 256))
    out = lut.gather(1, flat).reshape(B, C, H, W)
    return _finish(out.to(torch.float32), x)


def invert(x: Tensor, _=None) -> Tensor:
    return _finish(255.0 - _f(x), x)


def gaussian_blur(x: Tensor, sigma) -> Tensor:
    """Gaussian filter with per-sample standard deviation σ (PIL "radius"), replicated borders, rounded.

    Not PIL's box approximation; below σ ≈ 0.5 it blurs much less (see the module docstring).
    Each sample's kernel is its normalised Gaussian truncated at radius ⌈3σ⌉. The kernels are zero-padded
    to a common length of at least 13 taps (σ ≤ 2), so a sample's result does not depend on the other
    samples of the batch.
    """
    xf = _f(x)
    B = xf.shape[0]
    if B == 0:
        return x.clone()
    s = _per_sample(sigma, B, "cpu", torch.float64)
    if (s <= 0).any():
        raise ValueError("gaussian_blur: sigma must be positive")
    return _finish(_blur_f(xf, s), x)


def contrast(x: Tensor, factor) -> Tensor:
    """Blend with the image's mean grey level, rounded to an integer (PIL ``ImageEnhance.Contrast``)."""
    xf = _f(x)
    return _finish(_contrast_(xf, _per_sample(factor, xf.shape[0], xf.device).view(-1, 1, 1, 1)), x)


def brightness(x: Tensor, factor) -> Tensor:
    """factor·x, i.e. blend with black (PIL ``ImageEnhance.Brightness``)."""
    xf = _f(x)
    return _finish(_brightness_(xf, _per_sample(factor, xf.shape[0], xf.device).view(-1, 1, 1, 1)), x)


def color(x: Tensor, factor) -> Tensor:
    """Saturation: blend with the grey image (PIL ``ImageEnhance.Color``)."""
    xf = _f(x)
    return _finish(_saturation_(xf, _per_sample(factor, xf.shape[0], xf.device).view(-1, 1, 1, 1)), x)


_SMOOTH = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0


def sharpness(x: Tensor, factor) -> Tensor:
    """Blend with PIL's SMOOTH filter (3×3 [1 1 1; 1 5 1; 1 1 1]/13, rounded); border pixels unchanged."""
    xf = _f(x)
    B, C, H, W = xf.shape
    deg = xf.clone()
    if H >= 3 and W >= 3:
        k = _SMOOTH.to(device=xf.device, dtype=torch.float32).view(1, 1, 3, 3).repeat(C, 1, 1, 1)
        sm = F.conv2d(xf, k, groups=C)
        deg[:, :, 1:-1, 1:-1] = torch.floor(sm + 0.5).clamp(0, 255)
    return _finish(_blend_(xf, deg, _per_sample(factor, B, xf.device).view(-1, 1, 1, 1)), x)


def posterize(x: Tensor, bits) -> Tensor:
    """Keep the top ``bits`` bits of each 8-bit value (per-sample ``bits`` in 1..8)."""
    xf = _f(x)
    b = _per_sample(bits, xf.shape[0], xf.device, torch.int64)
    if ((b < 0) | (b > 8)).any():
        raise ValueError("posterize: bits must be in [0, 8]")
    q = (2.0 ** (8 - b).to(torch.float32)).view(-1, 1, 1, 1)
    return _finish(torch.floor(xf / q) * q, x)


def solarize(x: Tensor, threshold) -> Tensor:
    """255 − x where x ≥ threshold (per sample; threshold 256 = no change)."""
    xf = _f(x)
    t = _per_sample(threshold, xf.shape[0], xf.device).view(-1, 1, 1, 1)
    return _finish(torch.where(xf >= t, 255.0 - xf, xf), x)


def grayscale(x: Tensor, _=None) -> Tensor:
    """PIL ``convert("L")`` replicated to 3 channels."""
    return _finish(_grayscale_(_f(x)), x)


def rgb_to_hsv8(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """PIL's 8-bit RGB→HSV (``convert("HSV")``) in exact integer arithmetic: (H, S, V) int64 B×H×W. PIL rounds
    in floating point, so H differs from PIL's by one step on a few colours (S and V never; the share is in
    ``benchmarks/perf/results/pil_fidelity_cpu.json``)."""
    xi = _f(x).to(torch.int64)
    r, g, b = xi.unbind(1)
    maxc = torch.maximum(r, torch.maximum(g, b))
    minc = torch.minimum(r, torch.minimum(g, b))
    cr = maxc - minc
    crs = cr.clamp(min=1)
    # hue as a fraction n / (6·cr) of the circle, with PIL's branch order (r, then g, then b)
    n = torch.where(
        r == maxc,
        torch.remainder(g - b, 6 * crs),
        torch.where(g == maxc, 2 * crs + b - r, 4 * crs + r - g),
    )
    h = torch.where(cr > 0, (255 * n) // (6 * crs), torch.zeros_like(n))
    s = torch.where(cr > 0, (255 * cr) // maxc.clamp(min=1), torch.zeros_like(cr))
    return h, s, maxc


def hsv8_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """PIL's 8-bit HSV→RGB, exact integer arithmetic with round-half-up: float32 B×3×H×W."""
    h, s, v = h.to(torch.int64), s.to(torch.int64), v.to(torch.int64)
    i = (6 * h) // 255  # 0..6
    rem = 6 * h - 255 * i  # f = rem / 255
    d2 = 255 * 255
    p = (2 * v * (255 - s) + 255) // 510
    q = (2 * v * (d2 - s * rem) + d2) // (2 * d2)
    t = (2 * v * (d2 - s * (255 - rem)) + d2) // (2 * d2)
    sector = torch.remainder(i, 6)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = [torch.zeros_like(v) for _ in range(3)]
    for k, rgb in enumerate(table):
        sel = sector == k
        for ch in range(3):
            out[ch] = torch.where(sel, rgb[ch], out[ch])
    return torch.stack(out, dim=1).to(torch.float32)


def hue(x: Tensor, shift) -> Tensor:
    """In 8-bit HSV, H ← (H + shift) mod 256 (per-sample integer ``shift``), back to RGB."""
    xf = _f(x)
    sh = _per_sample(shift, xf.shape[0], xf.device, torch.int64).to(torch.float32).view(-1, 1, 1)
    return _finish(_hue_(xf, sh), x)


# ----------------------------------------------------------------------------------------------------
# iMAS strong view (imas spec §4)

IMAS_MODIFIER = 0.999


def _trunc_int(v: Tensor) -> Tensor:
    return torch.trunc(v).to(torch.int64)


def _m_none(u: Tensor, sign: Tensor):
    return None


def _m_blur(u: Tensor, sign: Tensor) -> Tensor:
    return 0.1 + 1.9 * u * IMAS_MODIFIER


def _m_factor(u: Tensor, sign: Tensor) -> Tensor:
    return 0.95 - 0.85 * u * IMAS_MODIFIER


def _m_posterize(u: Tensor, sign: Tensor) -> Tensor:
    return 8 - torch.clamp(torch.ceil(4 * u * IMAS_MODIFIER), min=1).to(torch.int64)


def _m_solarize(u: Tensor, sign: Tensor) -> Tensor:
    return torch.clamp(256 - torch.ceil(255 * u * IMAS_MODIFIER).to(torch.int64), 1, 256)


def _m_hue(u: Tensor, sign: Tensor) -> Tensor:
    return _trunc_int(255 * (sign * 0.5 * u * IMAS_MODIFIER))


@dataclass(frozen=True)
class IntensityOp:
    """One iMAS op: ``apply(x, magnitude)`` and ``magnitude(u, sign)`` mapping U ~ U(0,1) (and a ±1 sign,
    used by hue only) per sample to the op's parameter (None for parameter-free ops)."""

    name: str
    apply: Callable[[Tensor, object], Tensor]
    magnitude: Callable[[Tensor, Tensor], Tensor | None]
    doc: str


IMAS_OPS: dict[str, IntensityOp] = {
    op.name: op
    for op in [
        IntensityOp("identity", identity, _m_none, "unchanged"),
        IntensityOp("autocontrast", autocontrast, _m_none, "per-channel [min,max] -> [0,255]"),
        IntensityOp("equalize", equalize, _m_none, "per-channel histogram equalisation (PIL)"),
        IntensityOp("invert", invert, _m_none, "255 - x"),
        IntensityOp("blur", gaussian_blur, _m_blur, "sigma = 0.1 + 1.9*U*0.999"),
        IntensityOp("contrast", contrast, _m_factor, "v = 0.95 - 0.85*U*0.999"),
        IntensityOp("brightness", brightness, _m_factor, "v = 0.95 - 0.85*U*0.999"),
        IntensityOp("color", color, _m_factor, "v = 0.95 - 0.85*U*0.999"),
        IntensityOp("sharpness", sharpness, _m_factor, "v = 0.95 - 0.85*U*0.999"),
        IntensityOp("posterize", posterize, _m_posterize, "bits = 8 - max(1, ceil(4*U*0.999))"),
        IntensityOp("solarize", solarize, _m_solarize, "t = clip(256 - ceil(255*U*0.999), 1, 256)"),
        IntensityOp("hue", hue, _m_hue, "shift = trunc(255 * (+-0.5*U*0.999))"),
    ]
}
IMAS_OP_NAMES: tuple[str, ...] = tuple(IMAS_OPS)


def imas_magnitude(name: str, u, sign=1.0):
    """The parameter of op ``name`` for draws ``u`` (and ``sign`` = ±1 for hue); tensors or scalars."""
    u_t = torch.as_tensor(u, dtype=torch.float64)
    s_t = torch.as_tensor(sign, dtype=torch.float64)
    return IMAS_OPS[name].magnitude(u_t, s_t)


class ImasParams(NamedTuple):
    """Per-sample draws of an iMAS strong view: op indices into ``IMAS_OP_NAMES`` (B×n), U (B×n), sign (B×n)."""

    ops: Tensor
    u: Tensor
    sign: Tensor


def sample_imas_params(
    batch_size: int, num_ops: int = 2, generator: torch.Generator | None = None
) -> ImasParams:
    """Draw ``num_ops`` ops per sample uniformly with replacement, each with its own U and sign."""
    ops = integer_draws(0, len(IMAS_OP_NAMES), (batch_size, num_ops), generator).cpu()
    u = uniform_draws((batch_size, num_ops), generator).cpu()
    sign = torch.where(uniform_draws((batch_size, num_ops), generator).cpu() < 0.5, -1.0, 1.0).to(torch.float64)
    return ImasParams(ops, u, sign)


def apply_imas_params(raw: Tensor, params: ImasParams) -> Tensor:
    """Apply the drawn ops in sequence, vectorised by grouping the samples that drew the same op."""
    x = _f(raw).clone()
    B = x.shape[0]
    if params.ops.shape[0] != B:
        raise ValueError("params do not match the batch size")
    for j in range(params.ops.shape[1]):
        col = params.ops[:, j]
        for k, name in enumerate(IMAS_OP_NAMES):
            if name == "identity":
                continue
            idx = torch.nonzero(col == k).flatten()
            if idx.numel() == 0:
                continue
            op = IMAS_OPS[name]
            mag = op.magnitude(params.u[idx, j], params.sign[idx, j])
            dev_idx = idx.to(x.device)
            x[dev_idx] = op.apply(x[dev_idx], mag)
    return _finish(x, raw)


def imas_strong(raw_u8: Tensor, num_ops: int = 2, generator: torch.Generator | None = None) -> Tensor:
    """iMAS strong view: ``num_ops`` random intensity ops per sample (imas spec §4). Same dtype as input."""
    return apply_imas_params(raw_u8, sample_imas_params(raw_u8.shape[0], num_ops, generator))


# ----------------------------------------------------------------------------------------------------
# UniMatch strong view (s4mim spec §2.2)

class UniMatchParams(NamedTuple):
    """Per-sample draws of a UniMatch strong view (all (B,), ``order`` B×4 with indices into
    (brightness, contrast, saturation, hue))."""

    jitter: Tensor
    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    hue: Tensor
    order: Tensor
    gray: Tensor
    blur: Tensor
    sigma: Tensor


def sample_unimatch_params(
    batch_size: int,
    generator: torch.Generator | None = None,
    *,
    brightness: float = 0.5,
    contrast: float = 0.5,
    saturation: float = 0.5,
    hue: float = 0.25,
    p_jitter: float = 0.8,
    p_gray: float = 0.2,
    p_blur: float = 0.5,
    sigma_range: tuple[float, float] = (0.1, 2.0),
) -> UniMatchParams:
    B = batch_size

    def uni(lo: float, hi: float) -> Tensor:
        return (lo + (hi - lo) * uniform_draws(B, generator)).cpu()

    jitter = (uniform_draws(B, generator) < p_jitter).cpu()
    b = uni(max(0.0, 1 - brightness), 1 + brightness)
    c = uni(max(0.0, 1 - contrast), 1 + contrast)
    s = uni(max(0.0, 1 - saturation), 1 + saturation)
    h = uni(-hue, hue)
    order = torch.argsort(uniform_draws((B, 4), generator).cpu(), dim=1)  # a uniform random permutation per sample
    gray = (uniform_draws(B, generator) < p_gray).cpu()
    blur = (uniform_draws(B, generator) < p_blur).cpu()
    sigma = uni(*sigma_range)
    return UniMatchParams(jitter, b, c, s, h, order, gray, blur, sigma)


def apply_unimatch_params(raw: Tensor, params: UniMatchParams, *, normalized: bool = False,
                          images: Sequence[int] | Tensor | None = None) -> Tensor:
    """The strong views of ``raw`` (B×3×H×W, 8-bit values) for drawn ``params``: per image, its jitter ops in its
    drawn order, then grey-scale, then blur.

    Returns the dtype of ``raw``, or with ``normalized`` the ImageNet-normalised float32 views
    (:func:`normalize` of them, the same values). With ``images`` only those rows are computed; the others are
    left uninitialised, for callers that read the listed rows alone (the CutMix source, whose view is used only
    where a box was drawn). Each image's colour ops work in place on its own row of one float32 batch (the
    output, when that is float32), so nothing is gathered, stacked or copied per op; the blur then runs once
    over the rows that drew it."""
    if raw.dim() != 4 or raw.shape[1] != 3:
        raise ValueError(f"expected a B×3×H×W RGB tensor, got shape {tuple(raw.shape)}")
    B = raw.shape[0]
    if params.jitter.shape[0] != B:
        raise ValueError(f"params drawn for {params.jitter.shape[0]} images do not match the batch size {B}")
    rows = list(range(B)) if images is None else [int(i) for i in images]
    # Float32 rows worked on in place: the output itself when it is float32, else one float32 batch
    x = torch.empty(raw.shape, dtype=torch.float32, device=raw.device)
    # Per-image values as Python numbers, read once: factors rounded to float32 as the batched ops use them,
    # torchvision's PIL adjust_hue shift np.int8(hue_factor·255) (added to the 8-bit H with wrap-around).
    jitter, order, gray, blur = (t.tolist() for t in (params.jitter, params.order, params.gray, params.blur))
    factor = [t.to(torch.float32).tolist() for t in (params.brightness, params.contrast, params.saturation)]
    shift = _trunc_int(params.hue * 255).tolist()
    for i in rows:
        xi = x[i]
        xi.copy_(raw[i])
        if raw.is_floating_point():  # as _f: 8-bit values rounded and clipped on entry
            xi.round_().clamp_(0, 255)
        elif raw.dtype != torch.uint8:
            xi.clamp_(0, 255)
        if jitter[i]:
            for k in order[i]:
                if k == 3:
                    _hue_(xi, shift[i])
                else:
                    (_brightness_, _contrast_, _saturation_)[k](xi, factor[k][i])
        if gray[i]:
            _grayscale_(xi)
    # The blur, last, in one call for the images that drew it (a sample's result does not depend on the others)
    blurred = [i for i in rows if blur[i]]
    if blurred:
        idx = torch.tensor(blurred)
        d = idx.to(x.device)
        x.index_copy_(0, d, _blur_f(x.index_select(0, d), params.sigma.to(torch.float64).cpu()[idx]).clamp_(0, 255))
    whole = len(rows) == B
    if normalized:  # (x/255 − mean)/std, the operations of harness.data.transforms.normalize
        from harness.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # lazy: avoids importing the data layer

        mean = torch.tensor(IMAGENET_MEAN, device=raw.device, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=raw.device, dtype=torch.float32).view(3, 1, 1)
        for xi in [x] if whole else [x[i] for i in rows]:
            xi.div_(255.0).sub_(mean).div_(std)
        return x
    if raw.dtype == torch.float32:
        return x
    if whole:
        return x.to(raw.dtype)
    out = torch.empty_like(raw)
    for i in rows:
        out[i].copy_(x[i])
    return out


def unimatch_strong(raw_u8: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """UniMatch strong view: ColorJitter(0.5, 0.5, 0.5, 0.25) p 0.8 (random order per sample),
    RandomGrayscale p 0.2, Gaussian blur σ ~ U(0.1, 2.0) p 0.5. Same dtype as input."""
    return apply_unimatch_params(raw_u8, sample_unimatch_params(raw_u8.shape[0], generator))


# ----------------------------------------------------------------------------------------------------
# UniMatch CutMix box (s4mim spec §2.2)


class Box(NamedTuple):
    """Rows [top, top + height), columns [left, left + width)."""

    top: int
    left: int
    height: int
    width: int


def _hw(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def box_from_draws(size, area_frac: float, ratio: float, x: int, y: int) -> Box | None:
    """One rejection-sampling round of UniMatch's box: area a = area_frac·H·W, w = ⌊√(a/r)⌋,
    h = ⌊√(a·r)⌋, top-left (row y, column x). Returns the box if it fits, else None (rejected)."""
    H, W = _hw(size)
    a = area_frac * H * W
    w = int(math.sqrt(a / ratio))
    h = int(math.sqrt(a * ratio))
    if x + w <= W and y + h <= H:
        return Box(int(y), int(x), h, w)
    return None


def unimatch_cutmix_box_coords(
    batch_size: int,
    size,
    p: float = 0.5,
    generator: torch.Generator | None = None,
    *,
    area_range: tuple[float, float] = (0.02, 0.4),
    ratio_range: tuple[float, float] = (0.3, 1 / 0.3),
) -> Tensor:
    """B×4 int64 CPU boxes (top, left, height, width), each sample its own, drawn with probability p; a sample
    without a box has height = width = 0.

    Draw order: apply flags (B), area fractions (B), then rounds of (ratio, x, y) for the samples still
    pending, until every applied sample's box fits."""
    H, W = _hw(size)
    B = batch_size
    apply = (uniform_draws(B, generator) < p).tolist()
    frac = (area_range[0] + (area_range[1] - area_range[0]) * uniform_draws(B, generator)).tolist()
    area = [f * (H * W) for f in frac]
    boxes = [[0, 0, 0, 0] for _ in range(B)]
    pending = [b for b in range(B) if apply[b]]
    # Rejection rounds: the draws are torch's (n values per round, as always); the few per-box operations are
    # the same float64 operations in Python (IEEE division and square root), cheaper than tensor calls.
    lo, span = ratio_range[0], ratio_range[1] - ratio_range[0]
    while pending:
        n = len(pending)
        r = (lo + span * uniform_draws(n, generator)).tolist()
        xs = integer_draws(0, W, n, generator).tolist()
        ys = integer_draws(0, H, n, generator).tolist()
        still = []
        for b, ratio, x, y in zip(pending, r, xs, ys):
            w = math.floor(math.sqrt(area[b] / ratio))
            h = math.floor(math.sqrt(area[b] * ratio))
            if x + w <= W and y + h <= H:
                boxes[b] = [y, x, h, w]
            else:
                still.append(b)
        pending = still
    return torch.tensor(boxes, dtype=torch.int64).view(B, 4)


def box_masks(boxes: Tensor, size, device=None) -> Tensor:
    """B×H×W bool masks of boxes given as (top, left, height, width) rows."""
    H, W = _hw(size)
    b = torch.as_tensor(boxes).view(-1, 4, 1, 1)
    if device is not None:
        b = b.to(device)
    rows = torch.arange(H, device=b.device).view(1, H, 1)
    cols = torch.arange(W, device=b.device).view(1, 1, W)
    top, left, h, w = b.unbind(1)
    return (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)


def boxed_rows(boxes: Tensor) -> list[int]:
    """Indices of the (top, left, height, width) rows that hold a non-empty box."""
    return torch.nonzero(boxes[:, 2] * boxes[:, 3] > 0).flatten().tolist()


def paste_boxes(dst: Tensor, src: Tensor, boxes: Tensor) -> Tensor:
    """In place: inside image b's box (a (top, left, height, width) row of ``boxes``), ``dst[b]`` takes
    ``src[b]``; elsewhere ``dst`` is unchanged. The same values as ``torch.where(box_masks(boxes), src, dst)``
    without a mask or a new batch; ``src`` is read only inside the boxes. ``dst``, ``src``: B×…×H×W, and
    ``src`` must not share memory with ``dst`` (a permutation of the batch is pasted from a copy)."""
    if dst.shape != src.shape:
        raise ValueError(f"paste_boxes: dst {tuple(dst.shape)} and src {tuple(src.shape)} differ in shape")
    boxes = torch.as_tensor(boxes)
    if boxes.shape != (dst.shape[0], 4):
        raise ValueError(f"paste_boxes: expected {dst.shape[0]}×4 boxes, got {tuple(boxes.shape)}")
    for b, (top, left, h, w) in enumerate(boxes.tolist()):
        if h > 0 and w > 0:
            dst[b, ..., top : top + h, left : left + w] = src[b, ..., top : top + h, left : left + w]
    return dst


def unimatch_cutmix_boxes(
    batch_size: int,
    size,
    p: float = 0.5,
    generator: torch.Generator | None = None,
    *,
    area_range: tuple[float, float] = (0.02, 0.4),
    ratio_range: tuple[float, float] = (0.3, 1 / 0.3),
    device=None,
) -> Tensor:
    """B×H×W bool masks, each sample its own box (applied with probability p; else all False): the masks of
    :func:`unimatch_cutmix_box_coords`, from the same draws."""
    boxes = unimatch_cutmix_box_coords(batch_size, size, p, generator, area_range=area_range,
                                       ratio_range=ratio_range)
    return box_masks(boxes, size, device)


def unimatch_cutmix_box(
    size,
    p: float = 0.5,
    generator: torch.Generator | None = None,
    *,
    area_range: tuple[float, float] = (0.02, 0.4),
    ratio_range: tuple[float, float] = (0.3, 1 / 0.3),
    device=None,
) -> Tensor:
    """One H×W bool CutMix mask (UniMatch ``obtain_cutmix_box``), all False with probability 1 − p."""
    return unimatch_cutmix_boxes(
        1, size, p, generator, area_range=area_range, ratio_range=ratio_range, device=device
    )[0]


# ----------------------------------------------------------------------------------------------------
# Blend of strong and weak views (imas spec §3.2) and normalisation


def _per_image(h, like: Tensor) -> Tensor:
    t = torch.as_tensor(h, dtype=like.dtype if like.is_floating_point() else torch.float32, device=like.device)
    if t.dim() == 0:
        t = t.expand(like.shape[0])
    return t.reshape(-1, *([1] * (like.dim() - 1)))


def blend(x_str: Tensor, x_w: Tensor, h) -> Tensor:
    """x_s,i = h_i·x_str,i + (1 − h_i)·x_w,i per image (on normalised tensors); ``h`` (B,) or scalar."""
    hh = _per_image(h, x_w).detach()
    return hh * x_str + (1 - hh) * x_w


def blend_bernoulli(x_str: Tensor, x_w: Tensor, h, generator: torch.Generator | None = None) -> Tensor:
    """Per image: x_str with probability h_i, else x_w (the unused upstream variant, ``blend_mode: bernoulli``)."""
    hh = torch.as_tensor(h, dtype=torch.float64).detach().cpu().reshape(-1)
    if hh.numel() == 1:
        hh = hh.expand(x_w.shape[0])
    pick = (uniform_draws(x_w.shape[0], generator).cpu() < hh).to(x_w.device)
    return torch.where(pick.view(-1, *([1] * (x_w.dim() - 1))), x_str, x_w)


def normalize(raw: Tensor) -> Tensor:
    """ImageNet normalisation of an 8-bit …×3×H×W tensor: ``harness.data.transforms.normalize``
    (re-exported here so methods build strong views and normalise them from one module)."""
    from harness.data.transforms import normalize as _normalize  # lazy: avoids importing the data layer

    return _normalize(raw)
