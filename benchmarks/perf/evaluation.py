"""Evaluation speed: batched whole-image inference, batched sliding windows, and the confusion-matrix update.

Run: ``python benchmarks/perf/evaluation.py [--device cpu|cuda] [--backbone small [resnet101]]
[--image-size 1024 2048] [--whole-size 375 500] [--images 32] [--repeats 3] [--threads N] [--out FILE.json]``
(smoke check: ``python benchmarks/perf/evaluation.py --quick``).

Everything goes through the harness's own code (``harness.evaluation.inference.evaluate``, ``harness.evaluation.metrics``), on
random uint8 images and random masks (content does not change the cost), with the model in eval mode and
the engine's autocast (``harness.train.engine.autocast_for``) at ``--precision`` (fp32 by default, as a run):

* **(a) whole image**: ``evaluate`` over ``--images`` val-like images of one size (``--whole-size``,
  default 375×500, a VOC image; 21 classes) with ``EvalSpec(mode="whole", batch_images=1)`` against
  ``--batch-images`` (default 16, what the synthetic protocols use); seconds per image and the speedup.
* **(b) sliding window**: ``evaluate`` on one Cityscapes-sized image (``--image-size``, default
  1024×2048; 19 classes) with ``EvalSpec(mode="slide", window=801, stride=534)`` as
  ``benchmarks/protocols/cityscapes.yaml``, ``batch_windows=1`` (one window at a time) against
  ``batch_windows=8``; seconds per image and the speedup. With a smaller ``--image-size`` the window and
  stride are scaled by the same factor (so the image still has the same 2×4 windows) unless ``--window``
  / ``--stride`` are given.
* **(c) confusion matrix**: ``ConfusionMatrix(19).update(pred, gt)`` for one 1024×2048 int64 prediction
  (ground truth with about 5 % ignore pixels) on the CPU and, when available, CUDA: updates/s, Mpixels/s.

Models are built with ``harness.models.build_model``: ``small`` is the synthetic protocols' model
(``benchmarks/protocols/synthetic.yaml``), ``resnet101`` the VOC/Cityscapes one (DeepLabV3+ deep stem,
OS16), without loading pretrained weights. Each timing is the median of ``--repeats`` runs after one
warm-up run. Prints a table and writes JSON (machine, torch version, device, date, command line, results).
On a CPU that other processes keep busy, pass ``--threads`` no larger than the idle cores: OpenMP threads
competing for busy cores make a forward tens of times slower (``--quick`` uses one thread unless told).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from machine import machine_info, write_report

CITYSCAPES_SIZE = (1024, 2048)
CITYSCAPES_WINDOW, CITYSCAPES_STRIDE = 801, 534


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones (device synchronised)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def fake_items(n: int, h: int, w: int, num_classes: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` val-like dataset items ``(uint8 3×h×w image, int64 h×w mask with ~5 % 255)`` on the CPU."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(n):
        img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        mask = torch.randint(0, num_classes, (h, w), dtype=torch.int64, generator=g)
        mask[torch.rand(h, w, generator=g) < 0.05] = 255
        items.append((img, mask))
    return items


def model_spec(backbone: str):
    """The model of the protocols that use ``backbone``, without pretrained weights."""
    from harness.protocols import default_protocol_dirs, load_protocol_file

    name = "synthetic.yaml" if backbone == "small" else "cityscapes.yaml"
    proto = load_protocol_file(default_protocol_dirs()[0] / name)[0]
    spec = proto.model
    if spec.backbone != backbone:
        spec = spec.model_copy(update={"backbone": backbone})
    return spec.model_copy(update={"pretrained": False})


def _print_speedup(title: str, one: str, many: str, rows: list[dict]) -> None:
    """One table of s/image: one-at-a-time column, batched column, speed-up."""
    print(f"{title}: s/image")
    print(f"    {'backbone':10s} {one:>15s} {many:>16s} {'speedup':>8s}")
    for r in rows:
        print(f"    {r['backbone']:10s} {r[one]['seconds_per_image']:15.4f} {r[many]['seconds_per_image']:16.4f} "
              f"{r['speedup']:7.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backbone", nargs="+", choices=("small", "resnet101"), default=["small"])
    ap.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=list(CITYSCAPES_SIZE),
                    help="sliding-window image (default Cityscapes 1024 2048)")
    ap.add_argument("--window", type=int, default=None, help="default 801, scaled with a smaller --image-size")
    ap.add_argument("--stride", type=int, default=None, help="default 534, scaled with a smaller --image-size")
    ap.add_argument("--whole-size", type=int, nargs=2, metavar=("H", "W"), default=[375, 500],
                    help="size of the whole-image val images (default a VOC image, 375 500)")
    ap.add_argument("--images", type=int, default=32, help="images per whole-image evaluation")
    ap.add_argument("--batch-windows", type=int, default=8)
    ap.add_argument("--batch-images", type=int, default=16, help="whole-image batch compared with batch 1")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cm-updates", type=int, default=30, help="timed confusion-matrix updates per device")
    ap.add_argument("--skip", nargs="*", choices=("whole", "slide", "cm"), default=[])
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="as `harness run --precision`")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true", help="tiny sizes for a smoke check (a few seconds)")
    args = ap.parse_args()
    if args.quick:
        args.image_size, args.whole_size = [128, 256], [64, 64]
        args.images, args.repeats, args.cm_updates = min(args.images, 8), 1, min(args.cm_updates, 3)
        # One thread unless told: OpenMP threads on cores that other processes keep busy run many times slower.
        args.threads = args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available here")
    machine = machine_info(device)

    from harness.train.engine import autocast_for
    from harness.evaluation.inference import evaluate, windows
    from harness.evaluation.metrics import ConfusionMatrix
    from harness.models import build_model
    from harness.protocols import EvalSpec

    autocast = autocast_for(device, args.precision)
    default_batch_images = args.batch_images
    h, w = args.image_size
    scale = min(h / CITYSCAPES_SIZE[0], w / CITYSCAPES_SIZE[1])
    window = args.window or max(1, round(CITYSCAPES_WINDOW * scale))
    stride = args.stride or max(1, round(CITYSCAPES_STRIDE * scale))
    n_windows = len(windows(h, w, window, stride))
    results: dict = {"whole": [], "slide": [], "confusion_matrix": []}

    for backbone in args.backbone:
        torch.manual_seed(0)
        if "whole" not in args.skip:
            model = build_model(model_spec(backbone), 21).to(device).eval()
            wh, ww = args.whole_size
            items = fake_items(args.images, wh, ww, 21)
            row = {"backbone": backbone, "images": args.images, "size_hw": [wh, ww]}
            for key, bi in (("batch_images=1", 1), (f"batch_images={default_batch_images}", default_batch_images)):
                spec = EvalSpec(mode="whole", batch_images=bi)
                # Warm-up: one forward at this batch size (not the whole set: resnet101 on a CPU is slow).
                evaluate(model, items[:min(len(items), bi)], spec, 21, device, autocast)
                ts = timed(lambda spec=spec: evaluate(model, items, spec, 21, device, autocast), device,
                           args.repeats, warmup=0)
                row[key] = {"batch_images": bi, "seconds_per_image": statistics.median(ts) / args.images,
                            "runs_s": ts}
            row["speedup"] = row["batch_images=1"]["seconds_per_image"] / row[key]["seconds_per_image"]
            results["whole"].append(row)
            print(f"  whole {backbone}: {row['speedup']:.2f}x", flush=True)
            del model
        if "slide" not in args.skip:
            model = build_model(model_spec(backbone), 19).to(device).eval()
            items = fake_items(1, h, w, 19)
            row = {"backbone": backbone, "size_hw": [h, w], "window": window, "stride": stride, "windows": n_windows}
            for bw in (1, args.batch_windows):
                spec = EvalSpec(mode="slide", window=window, stride=stride, batch_windows=bw)
                ts = timed(lambda spec=spec: evaluate(model, items, spec, 19, device, autocast), device, args.repeats)
                row[f"batch_windows={bw}"] = {"batch_windows": bw, "seconds_per_image": statistics.median(ts),
                                              "runs_s": ts}
            row["speedup"] = (row["batch_windows=1"]["seconds_per_image"]
                              / row[f"batch_windows={args.batch_windows}"]["seconds_per_image"])
            results["slide"].append(row)
            print(f"  slide {backbone}: {row['speedup']:.2f}x", flush=True)
            del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    if "cm" not in args.skip:
        ch, cw = CITYSCAPES_SIZE
        cm_devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
        for dev in cm_devices:
            g = torch.Generator().manual_seed(0)
            pred = torch.randint(0, 19, (ch, cw), dtype=torch.int64, generator=g).to(dev)
            gt = torch.randint(0, 19, (ch, cw), dtype=torch.int64, generator=g)
            gt[torch.rand(ch, cw, generator=g) < 0.05] = 255
            gt = gt.to(dev)
            cm = ConfusionMatrix(19, device=dev)
            ts = timed(lambda: cm.update(pred, gt), dev, args.cm_updates, warmup=2)
            sec = statistics.median(ts)
            results["confusion_matrix"].append({"device": str(dev), "size_hw": [ch, cw], "classes": 19,
                                                "updates": args.cm_updates, "seconds_per_update": sec,
                                                "updates_per_s": 1 / sec, "mpixels_per_s": ch * cw / sec / 1e6})

    print()
    print(f"device {device} ({machine.get('gpu', machine['cpu'])}), threads {torch.get_num_threads()}, "
          f"median of {args.repeats} run(s) after a warm-up")
    if results["whole"]:
        _print_speedup(f"(a) whole image, {args.images} images {args.whole_size[0]}×{args.whole_size[1]}, 21 classes",
                       "batch_images=1", f"batch_images={default_batch_images}", results["whole"])
    if results["slide"]:
        _print_speedup(f"(b) sliding window, one {h}×{w} image, window {window} stride {stride} ({n_windows} windows), "
                       "19 classes", "batch_windows=1", f"batch_windows={args.batch_windows}", results["slide"])
    if results["confusion_matrix"]:
        print(f"(c) ConfusionMatrix.update, {CITYSCAPES_SIZE[0]}×{CITYSCAPES_SIZE[1]} prediction, 19 classes, "
              f"median of {args.cm_updates}")
        print(f"    {'device':10s} {'ms/update':>10s} {'updates/s':>10s} {'Mpixel/s':>10s}")
        for r in results["confusion_matrix"]:
            print(f"    {r['device']:10s} {r['seconds_per_update'] * 1e3:10.2f} {r['updates_per_s']:10.1f} "
                  f"{r['mpixels_per_s']:10.1f}")
    if args.out:
        write_report(args.out, "evaluation", machine,
                     settings={"device": str(device), "backbones": args.backbone, "image_size": [h, w],
                              "window": window, "stride": stride, "batch_windows": args.batch_windows,
                              "whole_size": args.whole_size, "images": args.images, "repeats": args.repeats,
                              "default_batch_images": default_batch_images, "cm_updates": args.cm_updates,
                              "precision": args.precision, "quick": args.quick},
                     results=results)


if __name__ == "__main__":
    main()
