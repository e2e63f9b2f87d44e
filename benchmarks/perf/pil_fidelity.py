"""How far the harness's tensor augmentations are from PIL, the reference implementation of the official code.

Run: ``python benchmarks/perf/pil_fidelity.py [--sigmas 0.1 0.3 0.5 1.0 1.9] [--size 256] [--out FILE.json]``.

* **Gaussian blur** (iMAS op 5 and UniMatch's blur): ``harness.augment.gaussian_blur`` (a true Gaussian kernel,
  σ = PIL "radius", truncated at ⌈3σ⌉, replicated borders) against ``PIL.ImageFilter.GaussianBlur(radius=σ)``
  (PIL approximates the Gaussian by three box blurs), on a white-noise RGB image and on a smooth one (a sum of a
  few low-frequency waves, closer to a photograph). Per σ: the largest and mean per-pixel difference in levels,
  and, on white noise (which has energy at every frequency), the **high-frequency energy kept**: the spectral
  energy of the output above half the Nyquist frequency (|f| > 1/4 cycle per pixel along either axis), as a
  fraction of the input's, for the harness, for PIL, and for the continuous Gaussian's frequency response.
* **HSV** (iMAS op 12 and UniMatch's hue jitter): ``harness.augment.rgb_to_hsv8`` against PIL's
  ``convert("HSV")`` on all 2^24 RGB colours (the share of colours whose H, S or V differs, and by how much);
  ``hsv8_to_rgb`` against PIL's HSV → RGB on all 2^24 HSV triples; and the whole hue op
  (``harness.augment.hue``) against PIL's convert → shift H mod 256 → convert back, for a few shifts.

Everything runs on the CPU; results are printed and, with ``--out``, written as JSON with the machine and versions.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, write_report  # noqa: E402

from harness.augment import gaussian_blur, hsv8_to_rgb, hue, rgb_to_hsv8  # noqa: E402


def _images(size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size] / size
    smooth = np.zeros((size, size, 3))
    for c in range(3):
        for _ in range(6):
            fy, fx, ph = rng.uniform(0.5, 12, 2).tolist() + [rng.uniform(0, 2 * math.pi)]
            smooth[..., c] += np.sin(2 * math.pi * (fy * yy + fx * xx) + ph)
    smooth = (127.5 + 127.5 * smooth / np.abs(smooth).max()).round().clip(0, 255).astype(np.uint8)
    return {"white noise": noise, "smooth": smooth}


def _hf_energy(img: np.ndarray) -> float:
    """Spectral energy above half the Nyquist frequency along either axis (mean removed), summed over channels."""
    f = np.fft.fft2(img.astype(np.float64) - img.mean(axis=(0, 1)), axes=(0, 1))
    fy = np.abs(np.fft.fftfreq(img.shape[0]))[:, None]
    fx = np.abs(np.fft.fftfreq(img.shape[1]))[None, :]
    band = (fy > 0.25) | (fx > 0.25)
    return float((np.abs(f) ** 2)[band].sum())


def _ideal_kept(img: np.ndarray, sigma: float) -> float:
    """HF energy kept by the continuous Gaussian (frequency response exp(−2π²σ²f²) per axis)."""
    f = np.fft.fft2(img.astype(np.float64) - img.mean(axis=(0, 1)), axes=(0, 1))
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.fftfreq(img.shape[1])[None, :]
    resp = np.exp(-2 * math.pi**2 * sigma**2 * (fy**2 + fx**2))[..., None]
    band = (np.abs(fy) > 0.25) | (np.abs(fx) > 0.25)
    return float((np.abs(f * resp) ** 2)[band].sum()) / _hf_energy(img)


def blur_report(sigmas: list[float], size: int) -> list[dict]:
    rows = []
    for name, img in _images(size).items():
        t = torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0).contiguous()
        base = _hf_energy(img)
        for s in sigmas:
            ours = gaussian_blur(t, s)[0].permute(1, 2, 0).numpy()
            pil = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius=s)))
            d = np.abs(ours.astype(np.int64) - pil.astype(np.int64))
            row = {"image": name, "sigma": s, "max_diff_levels": int(d.max()), "mean_diff_levels": float(d.mean()),
                   "share_pixels_differing": float((d > 0).mean())}
            if name == "white noise":
                row.update(hf_kept_harness=_hf_energy(ours) / base, hf_kept_pil=_hf_energy(pil) / base,
                           hf_kept_ideal=_ideal_kept(img, s))
            rows.append(row)
    return rows


def _all_colours() -> np.ndarray:
    v = np.arange(1 << 24, dtype=np.uint32)
    return np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], axis=-1).astype(np.uint8).reshape(4096, 4096, 3)


def hsv_report(shifts: list[int]) -> dict:
    rgb = _all_colours()
    t = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).contiguous()
    out: dict = {"colours": int(rgb.shape[0] * rgb.shape[1])}
    pil_hsv = np.asarray(Image.fromarray(rgb).convert("HSV")).astype(np.int64)
    ours_hsv = torch.stack(rgb_to_hsv8(t), dim=-1)[0].numpy()
    for i, ch in enumerate("HSV"):
        d = ours_hsv[..., i] - pil_hsv[..., i]
        d = np.minimum(np.abs(d), 256 - np.abs(d)) if ch == "H" else np.abs(d)  # hue is circular
        out[f"rgb_to_hsv_{ch}"] = {"share_differing": float((d > 0).mean()), "max_diff_levels": int(d.max())}
    # HSV -> RGB over every HSV triple (the same 2^24 byte triples read as H, S, V)
    hsv = rgb
    pil_rgb = np.asarray(Image.fromarray(hsv, mode="HSV").convert("RGB")).astype(np.int64)
    h = torch.from_numpy(hsv[..., 0].astype(np.int64))[None]
    s = torch.from_numpy(hsv[..., 1].astype(np.int64))[None]
    v = torch.from_numpy(hsv[..., 2].astype(np.int64))[None]
    ours_rgb = hsv8_to_rgb(h, s, v)[0].permute(1, 2, 0).numpy().astype(np.int64)
    d = np.abs(ours_rgb - pil_rgb)
    out["hsv_to_rgb"] = {"share_differing": float((d.max(axis=-1) > 0).mean()), "max_diff_levels": int(d.max())}
    # the hue op end to end
    out["hue_op"] = []
    for sh in shifts:
        hsv_img = np.asarray(Image.fromarray(rgb).convert("HSV")).copy()
        hsv_img[..., 0] = ((hsv_img[..., 0].astype(np.int64) + sh) % 256).astype(np.uint8)
        ref = np.asarray(Image.fromarray(hsv_img, mode="HSV").convert("RGB")).astype(np.int64)
        ours = hue(t, sh)[0].permute(1, 2, 0).numpy().astype(np.int64)
        d = np.abs(ours - ref)
        out["hue_op"].append({"shift": sh, "share_differing": float((d.max(axis=-1) > 0).mean()),
                              "max_diff_levels": int(d.max())})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.1, 0.3, 0.5, 1.0, 1.9])
    ap.add_argument("--size", type=int, default=256, help="side of the blur test images")
    ap.add_argument("--shifts", type=int, nargs="+", default=[-127, -40, 1, 64, 127])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    blur = blur_report(args.sigmas, args.size)
    print("Gaussian blur: harness (true Gaussian) vs PIL GaussianBlur (box approximation)")
    print(f"{'image':12} {'sigma':>5} {'max diff':>8} {'mean diff':>9} {'HF kept: harness':>17} {'PIL':>6} "
          f"{'ideal':>6}")
    for r in blur:
        hf = (f"{r['hf_kept_harness']:17.3f} {r['hf_kept_pil']:6.3f} {r['hf_kept_ideal']:6.3f}"
              if "hf_kept_pil" in r else "")
        print(f"{r['image']:12} {r['sigma']:5.2f} {r['max_diff_levels']:8d} {r['mean_diff_levels']:9.3f} {hf}")
    hsv = hsv_report(args.shifts)
    print(f"\nHSV over all {hsv['colours']:,} colours (share of colours differing from PIL, largest difference):")
    for ch in "HSV":
        r = hsv[f"rgb_to_hsv_{ch}"]
        print(f"  RGB->HSV {ch}: {100 * r['share_differing']:.3f} %, max {r['max_diff_levels']} level(s)")
    r = hsv["hsv_to_rgb"]
    print(f"  HSV->RGB:   {100 * r['share_differing']:.3f} %, max {r['max_diff_levels']} level(s)")
    for r in hsv["hue_op"]:
        print(f"  hue op, shift {r['shift']:4d}: {100 * r['share_differing']:.3f} % of colours, "
              f"max {r['max_diff_levels']} level(s)")
    if args.out:
        write_report(args.out, "pil_fidelity", machine_info("cpu"), pillow=PIL.__version__, blur=blur, hsv=hsv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
