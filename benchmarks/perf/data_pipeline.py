"""Training-loader throughput: the harness's real loader against a plain per-sample PIL pipeline, and a decode floor.

Run: ``python benchmarks/perf/data_pipeline.py [--tree DIR] [--images 200] [--batches 30] [--crops 321 513]
[--workers 0 1 2] [--pil-jitter both|on|off] [--threads N] [--out FILE.json]``
(smoke check: ``python benchmarks/perf/data_pipeline.py --quick``).

What is measured, in samples per second (one labeled sample = image + mask, one unlabeled sample = one
image; a step is 8 labeled + 8 unlabeled samples, the VOC classic batch), at each crop and worker count:

* **harness**: ``harness.data.build_train_loader`` on a generated VOC-sized tree, i.e. the real training
  path: split lists verified by SHA-256, ``SegmentationSource`` reads (PIL decode, mask checks), weak
  augmentation (``harness.data.transforms``: rescale 0.5–2.0 resampling only the crop region, pad, crop,
  flip), ``collate_step``. The protocol is ``voc-92`` from ``benchmarks/protocols/voc-classic.yaml`` with
  its split files replaced by the generated lists (their real SHA-256 and counts) and ``crop_size`` set.
* **PIL**: a straightforward per-sample pipeline written here as the comparison point: PIL decode, random
  rescale 0.5–2.0 of the whole image (bilinear / nearest), pad + random crop, horizontal flip, optionally
  ``torchvision.transforms.ColorJitter(0.5, 0.5, 0.5, 0.25)`` on the PIL image, to tensor (uint8, as the
  harness), through a ``torch.utils.data.DataLoader`` with the same workers, batch composition and
  prefetching. The harness's weak augmentation has *no* photometric jitter (methods jitter batched
  tensors on the device, ``harness.augment``), so ``--pil-jitter both`` (default) also times the PIL
  pipeline without jitter, the like-for-like comparison; ``ratio`` = harness / PIL samples/s.
* **decode floor**: JPEG decode alone in this process, images/s: PIL ``open`` + ``convert("RGB")`` and
  ``torchvision.io.decode_jpeg`` (when available), and the PIL decode of the palette PNG masks.

Each (pipeline, crop, workers) cell builds a fresh loader, discards ``--warmup`` batches (worker start-up,
prefetch fill) and times the next ``--batches``. The tree (default 200 images, about 500×375, a quarter
portrait 375×500, JPEG quality 90, smooth random colour fields plus textured shapes and fine noise so
decode cost is realistic; VOC-palette PNG masks with 255 void borders; ``JPEGImages/``,
``SegmentationClass/``, split lists ``JPEGImages/x.jpg SegmentationClass/x.png`` under ``splits/``: the last
tenth of the images, at most 50, for validation, the others halved into labeled and unlabeled) is
written once into ``--tree DIR`` and reused on later runs (default: a temporary folder, removed at the end).
Prints a table and writes JSON (machine, torch version, date, command line, settings, results).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from machine import machine_info as shared_machine_info, write_report

TREE_VERSION = 2  # 2: the validation list has its own images (the loader refuses lists that share images)
TREE_MARKER = "bench_tree.json"
SPLIT_DIR = "pascal/bench"


# ----------------------------------------------------------------------------------------------- machine

def machine_info(device: str = "cpu") -> dict:
    info = shared_machine_info(device)
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except Exception:  # noqa: BLE001 - a broken torchvision only removes the jitter/decode_jpeg variants
        info["torchvision"] = None
    import PIL
    info["pillow"] = PIL.__version__
    return info


# ------------------------------------------------------------------------------------------ the VOC tree

def _smooth_field(rng: np.random.Generator, h: int, w: int, octaves=((3, 1.0), (8, 0.5), (24, 0.25), (72, 0.12)),
                  channels: int = 3) -> np.ndarray:
    """Multi-octave smooth random field in [0, 1], h×w×channels float32 (bicubic upsampled noise grids)."""
    out = np.zeros((h, w, channels), dtype=np.float32)
    for cells, amp in octaves:
        gh, gw = max(2, round(cells * h / max(h, w))), max(2, round(cells * w / max(h, w)))
        grid = rng.random((gh, gw, channels), dtype=np.float32)
        for c in range(channels):
            band = Image.fromarray(np.ascontiguousarray(grid[..., c]))  # float32 → mode "F"
            out[..., c] += amp * np.asarray(band.resize((w, h), Image.BICUBIC))
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def _voc_like_sample(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image (h×w×3 uint8) and its class-index mask (0 background, 1–20 objects, 255 void borders)."""
    base = rng.uniform(40, 200, size=3).astype(np.float32)
    contrast = rng.uniform(40, 100, size=3).astype(np.float32)
    img = base + contrast * (_smooth_field(rng, h, w) - 0.5) * 2
    # Fine texture, one field per image (background and each object take their own gain); mostly luminance
    # (shared by the channels), which JPEG keeps at full resolution, like the detail of photos.
    fine = ((40, 1.0), (120, 0.7), (250, 0.5))
    texture = (0.75 * _smooth_field(rng, h, w, fine, channels=1) + 0.25 * _smooth_field(rng, h, w, fine) - 0.5) * 2
    img += rng.uniform(30, 60, size=3).astype(np.float32) * texture
    mask_im = Image.new("L", (w, h), 0)
    mdraw = ImageDraw.Draw(mask_im)
    for _ in range(int(rng.integers(2, 7))):
        cls = int(rng.integers(1, 21))
        shape = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(shape)
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
        rx, ry = rng.uniform(0.08, 0.35) * w, rng.uniform(0.08, 0.35) * h
        kind = int(rng.integers(0, 3))
        # The mask gets the class inside and a VOC-style void band (255, 5 px) along the outline.
        if kind < 2:
            box = (cx - rx, cy - ry, cx + rx, cy + ry)
            fn = "ellipse" if kind == 0 else "rectangle"
            getattr(draw, fn)(box, fill=255)
            getattr(mdraw, fn)(box, fill=cls, outline=255, width=5)
        else:
            n = int(rng.integers(3, 8))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = rng.uniform(0.5, 1.0, n)
            pts = [(float(cx + rx * r * np.cos(a)), float(cy + ry * r * np.sin(a))) for a, r in zip(ang, rad)]
            draw.polygon(pts, fill=255)
            mdraw.polygon(pts, fill=cls)
            mdraw.line(pts + pts[:1], fill=255, width=5, joint="curve")
        inside = np.asarray(shape) > 0
        colour = rng.uniform(30, 225, size=3).astype(np.float32)
        gain = rng.uniform(25, 70, size=3).astype(np.float32)
        img[inside] = colour + gain * texture[inside]
    mask = np.array(mask_im, dtype=np.uint8)
    img += rng.normal(0, 10, size=(h, w, 1)).astype(np.float32)  # sensor-like noise: realistic JPEG entropy
    return np.clip(img, 0, 255).astype(np.uint8), mask


def ensure_tree(root: Path, n: int, seed: int = 0, log=print) -> dict:
    """Write (or reuse) the VOC-layout tree with ``n`` images under ``root``; returns its description."""
    from harness.data.voc import voc_palette_flat

    params = {"version": TREE_VERSION, "images": n, "seed": seed}
    marker = root / TREE_MARKER
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("params") == params:
            log(f"tree: reusing {root}")
            return info
        log(f"tree: {root} was generated with {info.get('params')}, regenerating with {params}")
    elif root.exists() and any(root.iterdir()):
        raise SystemExit(f"--tree {root} exists, is not empty and is not a tree written by this script "
                         f"(no {TREE_MARKER}); give an empty or new folder")
    t0 = time.perf_counter()
    marker.unlink(missing_ok=True)  # an interrupted write must not look like a finished tree
    for sub in ("JPEGImages", "SegmentationClass", "splits"):
        shutil.rmtree(root / sub, ignore_errors=True)
        (root / sub).mkdir(parents=True)
    palette = voc_palette_flat()
    entries, jpg_bytes, png_bytes, portrait = [], [], [], 0
    for k in range(n):
        rng = np.random.default_rng([seed, k])
        name = f"2007_{k:06d}"
        h, w = (500, 375) if k % 4 == 3 else (375, 500)
        portrait += h > w
        img, mask = _voc_like_sample(rng, h, w)
        jp = root / "JPEGImages" / f"{name}.jpg"
        Image.fromarray(img).save(jp, format="JPEG", quality=90)
        pm = Image.frombytes("P", (w, h), mask.tobytes())
        pm.putpalette(palette)
        mp = root / "SegmentationClass" / f"{name}.png"
        pm.save(mp, format="PNG")
        jpg_bytes.append(jp.stat().st_size)
        png_bytes.append(mp.stat().st_size)
        entries.append(f"JPEGImages/{name}.jpg SegmentationClass/{name}.png")
    n_val = max(1, min(50, n // 10))  # the last images; the training lists must not hold an evaluated image
    train = entries[:n - n_val]
    half = max(1, len(train) // 2)
    lists = {"labeled": train[:half], "unlabeled": train[half:], "val": entries[n - n_val:]}
    (root / "splits" / SPLIT_DIR).mkdir(parents=True)
    for key, lines in lists.items():
        (root / "splits" / SPLIT_DIR / f"{key}.txt").write_text("\n".join(lines) + "\n")
    info = {"params": params, "root": str(root), "images": n, "portrait": portrait,
            "sizes_hw": [[375, 500], [500, 375]], "jpeg_quality": 90,
            "jpeg_kb_mean": round(statistics.mean(jpg_bytes) / 1024, 1),
            "png_kb_mean": round(statistics.mean(png_bytes) / 1024, 1),
            "labeled": len(lists["labeled"]), "unlabeled": len(lists["unlabeled"]),
            "generate_s": round(time.perf_counter() - t0, 2)}
    marker.write_text(json.dumps(info, indent=1))
    log(f"tree: wrote {n} images to {root} in {info['generate_s']} s")
    return info


def bench_protocol(root: Path, crop: int):
    """voc-92's settings (voc-classic.yaml) with the generated split lists (real SHA-256, counts) and ``crop``."""
    from harness.protocols import Protocol, default_protocol_dirs, load_protocol_file

    base = next(p for p in load_protocol_file(default_protocol_dirs()[0] / "voc-classic.yaml") if p.id == "voc-92")
    split_root = root / "splits"
    splits = {}
    for key in ("labeled", "unlabeled", "val"):
        rel = f"{SPLIT_DIR}/{key}.txt"
        data = (split_root / rel).read_bytes()
        splits[key] = {"path": rel, "sha256": hashlib.sha256(data).hexdigest(),
                       "count": sum(1 for line in data.decode().split("\n") if line.strip())}
    data = base.model_dump()
    data.update(id=f"bench-voc-{crop}", description=f"data-pipeline benchmark: voc-92 settings, crop {crop}",
                splits=splits, crop_size=crop, source="")
    return Protocol.model_validate(data), split_root


# ------------------------------------------------------------------------------- PIL comparison pipeline

class PILSamples(torch.utils.data.Dataset):
    """Per-sample PIL pipeline: decode, rescale 0.5–2.0, pad + random crop, flip, [ColorJitter], to tensor."""

    def __init__(self, root: Path, labeled: list, unlabeled: list, crop: int, jitter: bool, seed: int = 0,
                 scale_range: tuple[float, float] = (0.5, 2.0)):
        self.root, self.labeled, self.unlabeled = root, labeled, unlabeled
        self.crop, self.seed, self.scale_range = crop, seed, scale_range
        self.jitter = None
        if jitter:
            from torchvision.transforms import ColorJitter
            self.jitter = ColorJitter(0.5, 0.5, 0.5, 0.25)

    def __len__(self) -> int:
        return len(self.labeled) + len(self.unlabeled)

    def __getitem__(self, key):
        import random

        from PIL import ImageOps
        from torchvision.transforms.functional import pil_to_tensor

        stream, index, position = key
        rnd = random.Random(hash((self.seed, stream, position)))
        img_rel, mask_rel = (self.labeled if stream == 0 else self.unlabeled)[index]
        img = Image.open(self.root / img_rel).convert("RGB")
        mask = Image.open(self.root / mask_rel) if stream == 0 else None
        w, h = img.size
        long_side = rnd.randint(int(max(h, w) * self.scale_range[0]), int(max(h, w) * self.scale_range[1]))
        if h > w:
            oh, ow = long_side, int(w * long_side / h + 0.5)
        else:
            ow, oh = long_side, int(h * long_side / w + 0.5)
        img = img.resize((ow, oh), Image.BILINEAR)
        if mask is not None:
            mask = mask.resize((ow, oh), Image.NEAREST)
        c = self.crop
        if ow < c or oh < c:
            border = (0, 0, max(c - ow, 0), max(c - oh, 0))
            img = ImageOps.expand(img, border=border, fill=0)
            if mask is not None:
                mask = ImageOps.expand(mask, border=border, fill=255)
        w, h = img.size
        x, y = rnd.randint(0, w - c), rnd.randint(0, h - c)
        img = img.crop((x, y, x + c, y + c))
        if mask is not None:
            mask = mask.crop((x, y, x + c, y + c))
        if rnd.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
            if mask is not None:
                mask = mask.transpose(Image.FLIP_LEFT_RIGHT)
        if self.jitter is not None:
            img = self.jitter(img)
        out = {"stream": stream, "raw": pil_to_tensor(img)}
        if mask is not None:
            out["label"] = torch.from_numpy(np.array(mask, dtype=np.int64))
        return out


class RandomSteps(torch.utils.data.Sampler):
    """``steps`` lists of keys ``(stream, index, position)``: ``b_l`` random labeled + ``b_u`` random unlabeled."""

    def __init__(self, n_l: int, n_u: int, b_l: int, b_u: int, steps: int, seed: int = 0):
        self.n_l, self.n_u, self.b_l, self.b_u, self.steps, self.seed = n_l, n_u, b_l, b_u, steps, seed

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        for s in range(self.steps):
            lab = [(0, int(i), s * self.b_l + j) for j, i in enumerate(rng.integers(0, self.n_l, self.b_l))]
            unl = [(1, int(i), s * self.b_u + j) for j, i in enumerate(rng.integers(0, self.n_u, self.b_u))]
            yield lab + unl

    def __len__(self) -> int:
        return self.steps


def collate_pil(samples):
    lab = [s for s in samples if s["stream"] == 0]
    unl = [s for s in samples if s["stream"] == 1]
    labeled = {"raw": torch.stack([s["raw"] for s in lab]), "label": torch.stack([s["label"] for s in lab])}
    unlabeled = {"raw": torch.stack([s["raw"] for s in unl])} if unl else None
    return labeled, unlabeled


def pil_loader(root: Path, protocol, split_root: Path, workers: int, steps: int, jitter: bool):
    from harness.data.splits import read_split_file

    s = protocol.splits
    labeled = read_split_file(split_root / s.labeled.path)
    unlabeled = read_split_file(split_root / s.unlabeled.path)
    ds = PILSamples(root, labeled, unlabeled, protocol.crop_size, jitter, scale_range=tuple(protocol.scale_range))
    b = protocol.budget
    kwargs = {"persistent_workers": True, "prefetch_factor": 2} if workers > 0 else {}
    return torch.utils.data.DataLoader(ds, batch_sampler=RandomSteps(len(labeled), len(unlabeled), b.batch_labeled,
                                                                     b.batch_unlabeled, steps),
                                       num_workers=workers, collate_fn=collate_pil, **kwargs)


# ------------------------------------------------------------------------------------------------ timing

def time_loader(loader, warmup: int, batches: int) -> tuple[float, int, int]:
    """Seconds for ``batches`` batches after ``warmup`` discarded ones; labeled and unlabeled samples seen."""
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    n_l = n_u = 0
    t0 = time.perf_counter()
    for _ in range(batches):
        lab, unl = next(it)
        n_l += lab["raw"].shape[0]
        n_u += unl["raw"].shape[0] if unl is not None else 0  # a second crop ("raw2") is not another sample
    dt = time.perf_counter() - t0
    del it
    return dt, n_l, n_u


def decode_floor(root: Path, limit: int, min_seconds: float) -> dict:
    """Images per second of JPEG decode alone (and PNG mask decode) in this process."""
    jpgs = sorted((root / "JPEGImages").glob("*.jpg"))[:limit]
    pngs = sorted((root / "SegmentationClass").glob("*.png"))[:limit]

    def rate(fn, files) -> float:
        for f in files[:2]:
            fn(f)  # warm the page cache and the decoder
        n, t0 = 0, time.perf_counter()
        while True:
            for f in files:
                fn(f)
            n += len(files)
            dt = time.perf_counter() - t0
            if dt >= min_seconds:
                return n / dt

    def pil_rgb(p):
        with Image.open(p) as im:
            im.convert("RGB")

    def pil_png(p):
        with Image.open(p) as im:
            im.load()

    out = {"PIL open+convert RGB (JPEG)": rate(pil_rgb, jpgs)}
    try:
        from torchvision.io import decode_jpeg, read_file
    except Exception:  # noqa: BLE001 - torchvision without its image extension
        decode_jpeg = None
    if decode_jpeg is not None:
        out["torchvision.io.decode_jpeg (JPEG)"] = rate(lambda p: decode_jpeg(read_file(str(p))), jpgs)
    out["PIL open+load (PNG mask)"] = rate(pil_png, pngs)
    return out


# -------------------------------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", default=None, help="folder for the generated VOC tree (reused when present)")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--batches", type=int, default=30, help="timed batches (steps) per cell")
    ap.add_argument("--warmup", type=int, default=3, help="discarded batches per cell (worker start-up)")
    ap.add_argument("--crops", type=int, nargs="+", default=[321, 513])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--crops-unlabeled", type=int, choices=(1, 2), default=1,
                    help="weak crops per unlabeled image in the harness loader (2 for UniMatch-style methods)")
    ap.add_argument("--pil-jitter", choices=("both", "on", "off"), default="both",
                    help="PIL comparison with ColorJitter, without, or both (the harness loader has none)")
    ap.add_argument("--decode-seconds", type=float, default=2.0, help="minimum time per decode-floor measurement")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the main process")
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true", help="tiny sizes for a smoke check (a few seconds)")
    args = ap.parse_args()
    if args.quick:
        args.images, args.batches, args.warmup = min(args.images, 16), min(args.batches, 2), min(args.warmup, 1)
        args.workers = [w for w in args.workers if w <= 1] or [0]
        args.decode_seconds = min(args.decode_seconds, 0.2)
        # One thread unless told: OpenMP threads on cores that other processes keep busy run many times slower.
        args.threads = args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info("cpu")
    if args.images < 3:
        ap.error("--images must be at least 3 (labeled, unlabeled and validation images)")

    from harness.data import build_train_loader

    tmp = None
    if args.tree:
        root = Path(args.tree).expanduser().resolve()
    else:
        tmp = tempfile.mkdtemp(prefix="harness-bench-voc-")
        root = Path(tmp)
    try:
        tree = ensure_tree(root, args.images)
        variants = {"both": [True, False], "on": [True], "off": [False]}[args.pil_jitter]
        results = []
        for crop in args.crops:
            protocol, split_root = bench_protocol(root, crop)
            b = protocol.budget
            if protocol.unlabeled_count < b.batch_unlabeled:
                raise SystemExit(f"--images {args.images}: the unlabeled half holds fewer than one batch "
                                 f"({b.batch_unlabeled}); use --images ≥ {2 * b.batch_unlabeled}")
            for workers in args.workers:
                steps = args.warmup + args.batches
                cells = [("harness", lambda: build_train_loader(protocol, root, split_root, seed=0,
                                                                crops_unlabeled=args.crops_unlabeled,
                                                                num_workers=workers, stop_step=steps))]
                for jit in variants:
                    cells.append(("PIL+jitter" if jit else "PIL",
                                  lambda jit=jit: pil_loader(root, protocol, split_root, workers, steps, jit)))
                for name, make in cells:
                    loader = make()
                    dt, n_l, n_u = time_loader(loader, args.warmup, args.batches)
                    del loader
                    results.append({"pipeline": name, "crop": crop, "workers": workers, "batches": args.batches,
                                    "seconds": dt, "labeled": n_l, "unlabeled": n_u,
                                    "samples_per_s": (n_l + n_u) / dt, "labeled_per_s": n_l / dt,
                                    "unlabeled_per_s": n_u / dt})
                    print(f"  crop {crop} workers {workers} {name:10s} {(n_l + n_u) / dt:8.1f} samples/s", flush=True)
        decode = decode_floor(root, limit=min(args.images, 100), min_seconds=args.decode_seconds)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    names = ["harness"] + [("PIL+jitter" if j else "PIL") for j in variants]
    rate = {(r["pipeline"], r["crop"], r["workers"]): r["samples_per_s"] for r in results}
    for r in results:
        if r["pipeline"] == "harness":
            r["ratio_vs"] = {n: r["samples_per_s"] / rate[(n, r["crop"], r["workers"])] for n in names[1:]}
    print()
    print(f"tree {tree['images']} images 500×375 ({tree['portrait']} portrait), JPEG q{tree['jpeg_quality']} "
          f"mean {tree['jpeg_kb_mean']} KB, PNG mean {tree['png_kb_mean']} KB; batch {b.batch_labeled} labeled + "
          f"{b.batch_unlabeled} unlabeled (harness: {args.crops_unlabeled} crop(s) per unlabeled image); "
          f"{args.warmup} warm-up + {args.batches} timed batches; main-process threads {torch.get_num_threads()}")
    print("samples/s (labeled = image+mask, unlabeled = image); ratio = harness / comparison")
    head = f"{'crop':>5s} {'workers':>7s} " + " ".join(f"{n:>11s}" for n in names)
    head += "".join(f" {'ratio/' + n:>17s}" for n in names[1:])
    print(head)
    for crop in args.crops:
        for w in args.workers:
            line = f"{crop:5d} {w:7d} " + " ".join(f"{rate[(n, crop, w)]:11.1f}" for n in names)
            line += "".join(f" {rate[('harness', crop, w)] / rate[(n, crop, w)]:16.2f}x" for n in names[1:])
            print(line)
    print("decode floor, one process:")
    for k, v in decode.items():
        print(f"  {k:36s} {v:8.1f} images/s")
    if args.out:
        write_report(args.out, "data_pipeline", machine,
                     settings={"images": args.images, "batches": args.batches, "warmup": args.warmup,
                              "crops": args.crops, "workers": args.workers, "crops_unlabeled": args.crops_unlabeled,
                              "pil_jitter": args.pil_jitter, "batch_labeled": b.batch_labeled,
                              "batch_unlabeled": b.batch_unlabeled, "quick": args.quick,
                              "protocol_base": "voc-92 (benchmarks/protocols/voc-classic.yaml)"},
                     tree={k: v for k, v in tree.items() if k != "params"} | {"root": str(root) if tmp is None else None},
                     results=results, decode_images_per_s=decode)


if __name__ == "__main__":
    main()
