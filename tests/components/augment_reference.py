"""The strong-view code as it was before the in-place rewrite (harness/augment.py and UniMatch.make_views at
commit 4408205), kept only as the reference the rewrite must reproduce bit for bit
(tests/components/test_views_identity.py). Not used by the harness."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.augment import _hw, integer_draws, sample_unimatch_params, uniform_draws
from harness.data.transforms import normalize

Tensor = torch.Tensor


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


def _enhance_blend(degenerate: Tensor, x: Tensor, factor: Tensor) -> Tensor:
    """PIL ``Image.blend(degenerate, x, factor)``: degenerate + f·(x − degenerate), clipped, truncated."""
    f = factor.to(torch.float32).view(-1, 1, 1, 1)
    return torch.floor((degenerate + f * (x - degenerate)).clamp(0, 255))


def luma(x: Tensor) -> Tensor:
    """ITU-R 601-2 luma as PIL's ``convert("L")`` computes it (fixed point, rounded): B×H×W, float."""
    xi = _f(x).to(torch.int64)
    r, g, b = xi.unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.float32)


def gaussian_blur(x: Tensor, sigma) -> Tensor:
    """Gaussian filter with per-sample standard deviation σ (PIL "radius"), replicated borders, rounded.

    Not PIL's box approximation; below σ ≈ 0.5 it blurs much less (see the module docstring).
    Each sample's kernel is its normalised Gaussian truncated at radius ⌈3σ⌉. The kernels are zero-padded
    to a common length of at least 13 taps (σ ≤ 2), so a sample's result does not depend on the other
    samples of the batch.
    """
    xf = _f(x)
    B, C, H, W = xf.shape
    if B == 0:
        return x.clone()
    s = _per_sample(sigma, B, "cpu", torch.float64)
    if (s <= 0).any():
        raise ValueError("gaussian_blur: sigma must be positive")
    own = torch.ceil(3.0 * s).clamp(min=1)  # per-sample truncation radius
    radius = max(6, int(own.max()))
    k = torch.arange(-radius, radius + 1, dtype=torch.float64).unsqueeze(0)
    w = torch.exp(-(k**2) / (2.0 * s.unsqueeze(1) ** 2)) * (k.abs() <= own.unsqueeze(1))
    w = (w / w.sum(dim=1, keepdim=True)).to(device=xf.device, dtype=torch.float32)  # B×K
    w = w.repeat_interleave(C, dim=0)  # (B·C)×K
    y = xf.reshape(1, B * C, H, W)
    y = F.pad(y, (radius, radius, 0, 0), mode="replicate")
    y = F.conv2d(y, w.view(B * C, 1, 1, -1), groups=B * C)
    y = F.pad(y, (0, 0, radius, radius), mode="replicate")
    y = F.conv2d(y, w.view(B * C, 1, -1, 1), groups=B * C)
    return _finish(torch.floor(y.reshape(B, C, H, W) + 0.5), x)


def contrast(x: Tensor, factor) -> Tensor:
    """Blend with the image's mean grey level, rounded to an integer (PIL ``ImageEnhance.Contrast``)."""
    xf = _f(x)
    B, _, H, W = xf.shape
    g = luma(xf).to(torch.int64).sum(dim=(1, 2))
    mean = (2 * g + H * W) // (2 * H * W)  # int(mean + 0.5)
    deg = mean.to(torch.float32).view(B, 1, 1, 1).expand_as(xf)
    return _finish(_enhance_blend(deg, xf, _per_sample(factor, B, xf.device)), x)


def brightness(x: Tensor, factor) -> Tensor:
    """factor·x, i.e. blend with black (PIL ``ImageEnhance.Brightness``)."""
    xf = _f(x)
    return _finish(_enhance_blend(torch.zeros_like(xf), xf, _per_sample(factor, xf.shape[0], xf.device)), x)


def color(x: Tensor, factor) -> Tensor:
    """Saturation: blend with the grey image (PIL ``ImageEnhance.Color``)."""
    xf = _f(x)
    deg = luma(xf).unsqueeze(1).expand_as(xf)
    return _finish(_enhance_blend(deg, xf, _per_sample(factor, xf.shape[0], xf.device)), x)


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
    return _finish(_enhance_blend(deg, xf, _per_sample(factor, B, xf.device)), x)


def grayscale(x: Tensor, _=None) -> Tensor:
    """PIL ``convert("L")`` replicated to 3 channels."""
    xf = _f(x)
    return _finish(luma(xf).unsqueeze(1).expand_as(xf).clone(), x)


def rgb_to_hsv8(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """PIL's 8-bit RGB→HSV (``convert("HSV")``) in exact integer arithmetic: (H, S, V) int64 B×H×W. PIL rounds
    in floating point, so H differs from PIL's by one step on 0.28 % of the 2^24 colours (S and V never)."""
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
    sh = _per_sample(shift, xf.shape[0], xf.device, torch.int64).view(-1, 1, 1)
    hh, ss, vv = rgb_to_hsv8(xf)
    hh = torch.remainder(hh + sh, 256)
    return _finish(hsv8_to_rgb(hh, ss, vv), x)


def _trunc_int(v: Tensor) -> Tensor:
    return torch.trunc(v).to(torch.int64)


_JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


def apply_unimatch_params(raw: Tensor, params: UniMatchParams) -> Tensor:
    x = _f(raw).clone()
    fns = {
        "brightness": (brightness, params.brightness),
        "contrast": (contrast, params.contrast),
        "saturation": (color, params.saturation),
        # torchvision's PIL adjust_hue: np.int8(hue_factor * 255) added to the 8-bit H channel with wrap-around
        "hue": (hue, _trunc_int(params.hue * 255)),
    }
    for slot in range(4):
        for k, name in enumerate(_JITTER_OPS):
            idx = torch.nonzero(params.jitter & (params.order[:, slot] == k)).flatten()
            if idx.numel() == 0:
                continue
            fn, mag = fns[name]
            d = idx.to(x.device)
            x[d] = fn(x[d], mag[idx])
    idx = torch.nonzero(params.gray).flatten()
    if idx.numel():
        d = idx.to(x.device)
        x[d] = grayscale(x[d])
    idx = torch.nonzero(params.blur).flatten()
    if idx.numel():
        d = idx.to(x.device)
        x[d] = gaussian_blur(x[d], params.sigma[idx])
    return _finish(x, raw)


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
    """B×H×W bool masks, each sample its own box (applied with probability p; else all False).

    Draw order: apply flags (B), area fractions (B), then rounds of (ratio, x, y) for the samples still
    pending, until every applied sample's box fits."""
    H, W = _hw(size)
    B = batch_size
    apply = (uniform_draws(B, generator) < p).cpu()
    frac = (area_range[0] + (area_range[1] - area_range[0]) * uniform_draws(B, generator)).cpu()
    area = frac * (H * W)
    top = torch.zeros(B, dtype=torch.int64)
    left = torch.zeros(B, dtype=torch.int64)
    hh = torch.zeros(B, dtype=torch.int64)
    ww = torch.zeros(B, dtype=torch.int64)
    pending = apply.clone()
    while bool(pending.any()):
        idx = torch.nonzero(pending).flatten()
        n = idx.numel()
        r = (ratio_range[0] + (ratio_range[1] - ratio_range[0]) * uniform_draws(n, generator)).cpu()
        xs = integer_draws(0, W, n, generator).cpu()
        ys = integer_draws(0, H, n, generator).cpu()
        w = torch.floor(torch.sqrt(area[idx] / r)).to(torch.int64)
        h = torch.floor(torch.sqrt(area[idx] * r)).to(torch.int64)
        ok = (xs + w <= W) & (ys + h <= H)
        acc = idx[ok]
        top[acc], left[acc], hh[acc], ww[acc] = ys[ok], xs[ok], h[ok], w[ok]
        pending[acc] = False
    rows = torch.arange(H).view(1, H, 1)
    cols = torch.arange(W).view(1, 1, W)
    t, l = top.view(B, 1, 1), left.view(B, 1, 1)
    mask = (rows >= t) & (rows < t + hh.view(B, 1, 1)) & (cols >= l) & (cols < l + ww.view(B, 1, 1))
    mask &= apply.view(B, 1, 1)
    return mask.to(device) if device is not None else mask


def make_views(method, unlabeled):
    """``UniMatch.make_views`` before the rewrite: (x_s1, x_s2, box1, box2)."""
    source = method.cutmix_source(unlabeled)
    B, _, H, W = unlabeled.image.shape
    dev = unlabeled.image.device

    def strong(raw):
        return normalize(apply_unimatch_params(raw, sample_unimatch_params(B)))

    x_s1 = strong(unlabeled.raw)
    x_s2 = strong(unlabeled.raw)
    box1 = unimatch_cutmix_boxes(B, (H, W), method.config.cutmix_p, device=dev)
    box2 = unimatch_cutmix_boxes(B, (H, W), method.config.cutmix_p, device=dev)
    if source.perm is not None:
        src_s1, src_s2 = x_s1[source.perm], x_s2[source.perm]
    else:
        src_s1 = strong(source.raw)
        src_s2 = strong(source.raw)
    x_s1 = torch.where(box1.unsqueeze(1), src_s1, x_s1)
    x_s2 = torch.where(box2.unsqueeze(1), src_s2, x_s2)
    return x_s1, x_s2, box1, box2
