"""The inputs of one UniMatch step on the CPU, strong views included: the harness against the official code.

Run: ``python benchmarks/perf/strong_views.py --official PATH [--tree DIR] [--images 200] [--crops 321 513]
[--steps 4] [--reps 7] [--threads 1] [--out FILE.json]`` (smoke check: ``--quick``). ``PATH`` is a checkout of
https://github.com/LiheYoung/UniMatch (its ``dataset/semi.py`` and ``unimatch.py`` are read from there; nothing
of it is copied into this project).

One step's inputs, 0 workers, in this process, everything on the CPU:

* **harness**: ``harness.data.build_train_loader`` with two weak crops per unlabeled image (UniMatch's
  ``crops_needed``), ``harness.train.engine.to_batch`` (normalisation of the weak views), and
  ``UniMatch.make_views``: the two strong views of the batch, the CutMix source's two strong views, the two box
  sets and the pasting. The loader yields 8 labeled and 8 unlabeled images, each unlabeled one cropped twice.
* **official**: UniMatch's ``SemiDataset`` through ``torch.utils.data.DataLoader`` (batch 8, shuffled, 0
  workers), as ``unimatch.py`` iterates it: one batch of the labeled set (``train_l``) and two of the unlabeled
  set (``train_u``: weak view, two strong views with PIL ``ColorJitter``, ``RandomGrayscale`` and
  ``GaussianBlur``, the ignore mask and two CutMix boxes per image; the second batch is the CutMix source), then
  the four lines of ``unimatch.py`` that paste the source's strong views into the boxes, read from the checkout
  and executed on the CPU tensors.

Both sides make the same things: 8 labeled images and masks, 8 unlabeled weak views, four strong views of 8
(two per unlabeled batch), two box sets, pasted. The strong views have the same distributions on both sides
(the harness's ops reproduce PIL's integer formulas; see ``harness/augment.py`` and
``benchmarks/perf/pil_fidelity.py`` for the blur and the 8-bit hue).

Images: a generated VOC-sized tree (``data_pipeline.ensure_tree``: 500×375 JPEGs with palette masks), written
once into ``--tree`` and reused. Timing: per crop size, both pipelines are built, warmed up, then timed in turn,
``--reps`` repetitions of ``--steps`` steps each, alternating which goes first; the table gives the median
seconds per step of each and the median of the per-repetition ratios official / harness (> 1: the harness is
faster). Prints a table and writes JSON (machine, command, settings, every repetition).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from data_pipeline import bench_protocol, ensure_tree, machine_info
from machine import write_report

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "benchmarks" / "conformance"))

from official import checkout, commit_of, official_block  # noqa: E402

PASTE_FIRST = "img_u_s1[cutmix_box1.unsqueeze(1).expand(img_u_s1.shape) == 1] = \\"
PASTE_LAST = "img_u_s2_mix[cutmix_box2.unsqueeze(1).expand(img_u_s2.shape) == 1]"


def harness_steps(protocol, root: Path, split_root: Path, steps: int):
    """An iterator over the harness's step inputs: (labeled Batch, unlabeled Batch, UniMatchViews)."""
    from harness.data import build_train_loader, normalize
    from harness.train.engine import to_batch
    from methods.unimatch import UniMatch

    # make_views reads only the method's config: no model or run context is needed to build the views
    method = UniMatch(torch.nn.Identity(), UniMatch.Config(), None)
    loader = build_train_loader(protocol, root, split_root, seed=0, crops_unlabeled=2, num_workers=0,
                                stop_step=steps)
    cpu = torch.device("cpu")
    for labeled, unlabeled in loader:
        lb, ub = to_batch(labeled, cpu, normalize), to_batch(unlabeled, cpu, normalize)
        yield lb, ub, method.make_views(ub)


def official_steps(official_root: Path, protocol, root: Path, split_root: Path, steps: int):
    """An iterator over the official step inputs, as ``unimatch.py`` builds them (CPU tensors)."""
    from dataset.semi import SemiDataset  # the checkout is on sys.path

    paste = official_block(official_root / "unimatch.py", PASTE_FIRST, PASTE_LAST)
    s = protocol.splits
    b = protocol.budget
    crop = protocol.crop_size
    train_u = SemiDataset("pascal", str(root), "train_u", crop, str(split_root / s.unlabeled.path))
    train_l = SemiDataset("pascal", str(root), "train_l", crop, str(split_root / s.labeled.path),
                          nsample=len(train_u.ids))
    g = torch.Generator().manual_seed(0)

    def epochs(ds, batch):
        """Batches over epochs, as the official training loop's epoch loop draws them."""
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0, drop_last=True,
                                             generator=g)
        while True:
            yield from loader

    it_l = epochs(train_l, b.batch_labeled)
    it_u, it_mix = epochs(train_u, b.batch_unlabeled), epochs(train_u, b.batch_unlabeled)
    for _ in range(steps):
        img_x, mask_x = next(it_l)
        img_u_w, img_u_s1, img_u_s2, ignore_mask, cutmix_box1, cutmix_box2 = next(it_u)
        img_u_w_mix, img_u_s1_mix, img_u_s2_mix, ignore_mask_mix, _, _ = next(it_mix)
        ns = {"img_u_s1": img_u_s1, "img_u_s2": img_u_s2, "img_u_s1_mix": img_u_s1_mix,
              "img_u_s2_mix": img_u_s2_mix, "cutmix_box1": cutmix_box1, "cutmix_box2": cutmix_box2}
        paste.run(ns)
        yield img_x, mask_x, img_u_w, ns["img_u_s1"], ns["img_u_s2"], ignore_mask, img_u_w_mix, ignore_mask_mix


def time_steps(it, steps: int) -> tuple[float, float]:
    """Wall and process CPU seconds per step over ``steps`` steps of ``it``."""
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        next(it)
    return (time.perf_counter() - w0) / steps, (time.process_time() - c0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, help="checkout of github.com/LiheYoung/UniMatch")
    ap.add_argument("--tree", default=None, help="folder for the generated VOC tree (reused when present)")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--crops", type=int, nargs="+", default=[321, 513])
    ap.add_argument("--steps", type=int, default=4, help="steps per timed repetition")
    ap.add_argument("--reps", type=int, default=7, help="timed repetitions per pipeline and crop")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per pipeline before timing")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (PIL is single-threaded)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true", help="tiny sizes for a smoke check")
    args = ap.parse_args()
    if args.quick:
        args.images, args.steps, args.reps, args.warmup = min(args.images, 40), 1, 2, 1
    if args.images < 32:
        ap.error("--images must be at least 32 (each half must hold two batches of 8)")
    torch.set_num_threads(args.threads)
    official_root = checkout(args.official, "dataset/semi.py")
    machine = machine_info("cpu")
    import PIL
    import torchvision

    tmp = None
    if args.tree:
        root = Path(args.tree).expanduser().resolve()
    else:
        tmp = tempfile.mkdtemp(prefix="harness-bench-voc-")
        root = Path(tmp)
    results = []
    try:
        tree = ensure_tree(root, args.images)
        for crop in args.crops:
            protocol, split_root = bench_protocol(root, crop)
            total = args.warmup + args.reps * args.steps
            its = {"harness": harness_steps(protocol, root, split_root, total),
                   "official": official_steps(official_root, protocol, root, split_root, total)}
            for it in its.values():
                for _ in range(args.warmup):
                    next(it)
            for rep in range(args.reps):
                order = ["harness", "official"] if rep % 2 == 0 else ["official", "harness"]
                row = {"crop": crop, "rep": rep, "first": order[0]}
                for name in order:
                    wall, cpu = time_steps(its[name], args.steps)
                    row[f"{name}_s_per_step"], row[f"{name}_cpu_s_per_step"] = wall, cpu
                row["ratio"] = row["official_s_per_step"] / row["harness_s_per_step"]
                results.append(row)
                print(f"  crop {crop} rep {rep}: harness {row['harness_s_per_step']:.3f} s/step, official "
                      f"{row['official_s_per_step']:.3f} s/step, official/harness {row['ratio']:.2f}", flush=True)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    summary = []
    print(f"\none UniMatch step's inputs (8 labeled, 8 unlabeled, 8 CutMix-source images, four strong views), "
          f"0 workers, {torch.get_num_threads()} torch thread(s); median of {args.reps} × {args.steps} steps")
    print(f"{'crop':>5s} {'harness s/step':>15s} {'official s/step':>16s} {'official/harness':>17s} "
          f"{'(CPU time)':>11s}")
    for crop in args.crops:
        rows = [r for r in results if r["crop"] == crop]
        med = {k: statistics.median(r[k] for r in rows) for k in
               ("harness_s_per_step", "official_s_per_step", "ratio", "harness_cpu_s_per_step",
                "official_cpu_s_per_step")}
        cpu_ratio = statistics.median(r["official_cpu_s_per_step"] / r["harness_cpu_s_per_step"] for r in rows)
        summary.append({"crop": crop, **{f"median_{k}": v for k, v in med.items()}, "median_cpu_ratio": cpu_ratio,
                        "min_ratio": min(r["ratio"] for r in rows), "max_ratio": max(r["ratio"] for r in rows)})
        print(f"{crop:5d} {med['harness_s_per_step']:15.3f} {med['official_s_per_step']:16.3f} "
              f"{med['ratio']:16.2f}x {cpu_ratio:10.2f}x")
    if args.out:
        write_report(args.out, "strong_views", machine | {"pillow": PIL.__version__,
                                                          "torchvision": torchvision.__version__},
                     official={"repository": "https://github.com/LiheYoung/UniMatch", "commit": commit_of(official_root)},
                     settings={"images": args.images, "crops": args.crops, "steps": args.steps, "reps": args.reps,
                               "warmup": args.warmup, "threads": args.threads, "workers": 0, "quick": args.quick},
                     tree={k: v for k, v in tree.items() if k not in ("params", "root")},
                     summary=summary, results=results)


if __name__ == "__main__":
    main()
