"""Training-step throughput of the real protocols' model on a GPU: fp32 against bf16 (+ channels_last).

Run: ``python benchmarks/perf/gpu_step.py [--protocol voc-blended-1323] [--methods floor supervised unimatch imas]
[--modes fp32 bf16 bf16+cl] [--steps 15] [--out FILE.json]`` (rehearsal on a CPU: ``--quick``).

For each method and arithmetic mode, the protocol's model (DeepLabV3+ ResNet-101, deep stem, OS16, random
init: the weights do not change the cost), crop and batch (``voc-blended-1323``: crop 513, 8 labeled + 8
unlabeled) train on random uint8 batches through the engine's own pieces (``build_context``,
``build_optimizer``, ``to_batch``, the method's ``training_step`` / ``after_step``). Batches are made on the
device before timing, so the figures are the step alone; the loader is measured by ``data_pipeline.py``.

* ``floor``: forward + backward + SGD step of the bare model on the labeled batch (the supervised minimum).
* images/s: labeled + unlabeled images per second (a floor step counts its labeled images only).
* FLOP/s: FLOPs of one step counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and
  matrix products, forward and backward, mean of the counted steps) over the median step time, and that as a
  share of the matrix peak measured here (an 8192³ bf16 product on random data, as ``--peak-size``).
* peak memory: ``torch.cuda.max_memory_allocated`` over the timed steps (after the warm-up, whose cuDNN
  algorithm search can take far more workspace than a step).
* strong views: the method's photometric strong views and CutMix alone (UniMatch: ``make_views``, four strong
  views and two box sets; iMAS: ``imas_strong`` + the easiness blend + ``imas_cutmix``), timed the same way,
  as a share of the method's step.

Modes: ``fp32`` is PyTorch's default arithmetic (cuDNN may use TF32 for convolutions, as
``torch.backends.cudnn.allow_tf32`` is true by default; the official UniMatch and iMAS code run this way),
``fp32-strict`` turns TF32 off, ``bf16`` runs the forwards under bf16 autocast (``--precision bf16``) and
``bf16+cl`` adds channels_last (``--set run.channels_last=true``). ``torch.backends.cudnn.benchmark`` is on
(``--no-cudnn-benchmark`` turns it off). Prints a table and writes JSON (machine, command line, results).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from machine import machine_info, write_report

MODES = ("fp32", "fp32-strict", "bf16", "bf16+cl")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peak(device: torch.device, size: int, repeats: int = 10) -> dict:
    """Dense bf16 matrix-product rate on random data: the ceiling the step's FLOP/s are compared with."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    dt = (time.perf_counter() - t0) / repeats
    return {"size": size, "dtype": str(dtype), "seconds": dt, "tflops": 2 * size ** 3 / dt / 1e12}


def random_batches(n: int, p, device: torch.device, second: bool, seed: int = 0) -> list[tuple[dict, dict]]:
    """``n`` (labeled, unlabeled) loader-shaped dicts of random content at the protocol's crop and batch."""
    g = torch.Generator().manual_seed(seed)
    c, K = p.crop_size, p.num_classes
    out = []
    for _ in range(n):
        def images(b):
            return torch.randint(0, 256, (b, 3, c, c), dtype=torch.uint8, generator=g)

        label = torch.randint(0, K, (p.budget.batch_labeled, c, c), generator=g)
        label[torch.rand(label.shape, generator=g) < 0.05] = 255
        valid = torch.ones(p.budget.batch_labeled, c, c, dtype=torch.bool)
        lab = {"raw": images(p.budget.batch_labeled), "label": label, "valid": valid}
        unl = {"raw": images(p.budget.batch_unlabeled), "valid": torch.ones(p.budget.batch_unlabeled, c, c,
                                                                             dtype=torch.bool)}
        if second:
            unl.update(raw2=images(p.budget.batch_unlabeled), valid2=unl["valid"].clone())
        out.append(tuple({k: v.to(device) for k, v in d.items()} for d in (lab, unl)))
    return out


def set_mode(mode: str) -> None:
    torch.backends.cudnn.allow_tf32 = mode != "fp32-strict"
    torch.backends.cuda.matmul.allow_tf32 = False  # PyTorch's default for matrix products


def timed(fn, n: int, warmup: int, device: torch.device) -> list[float]:
    times = []
    for i in range(warmup + n):
        _sync(device)
        t0 = time.perf_counter()
        fn(i)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def count_flops(fn, steps: list[int]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    totals = []
    for i in steps:
        with FlopCounterMode(display=False) as counter:
            fn(i)
        totals.append(counter.get_total_flops())
    return statistics.mean(totals)


def bench_case(name: str, mode: str, p, device: torch.device, args, pm) -> dict:
    from harness.augment import blend, imas_strong, normalize
    from harness.train.engine import build_context, build_optimizer, to_batch
    from harness.models import build_model
    from harness.train.run import build_method_config

    set_mode(mode)
    precision = "bf16" if mode.startswith("bf16") else "fp32"
    torch.manual_seed(0)
    model = build_model(p.model.model_copy(update={"pretrained": False}), p.num_classes).to(device)
    if mode.endswith("+cl"):
        model = model.to(memory_format=torch.channels_last)
    ctx = build_context(p, device, p.total_iterations, precision)
    info = pm.methods.get(name) if name != "floor" else None
    n = args.warmup + args.steps
    method = None
    if info is not None:
        method = info.cls(model, build_method_config(info, p, {}), ctx)
        method.extra_modules.to(device)
        optim = build_optimizer(model, method, 1e-3, 10, 0.9, 1e-4)
        second = info.cls.crops_needed(method.config) == 2
    else:
        optim = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        second = False
    data = random_batches(n, p, device, second)
    uses_unlabeled = info is not None and info.cls.uses_unlabeled
    batches = [(to_batch(lab, device, normalize), to_batch(unl, device, normalize) if uses_unlabeled else None)
               for lab, unl in data]
    loss_fn = ctx.supervised_loss

    def step(i):
        lb, ub = batches[i % len(batches)]
        model.train()
        with ctx.autocast():
            if method is None:
                loss = loss_fn(model(lb.image), lb.label)
            else:
                loss = method.training_step(lb, ub, i).loss
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        if method is not None:
            method.after_step(i)

    for i in range(args.warmup):  # cuDNN's algorithm search and the allocator's growth happen here
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = timed(step, args.steps, 0, device)
    peak_mem = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    flops = count_flops(step, list(range(min(args.flop_steps, n))))
    sec = statistics.median(times)
    images = p.budget.batch_labeled + (p.budget.batch_unlabeled if uses_unlabeled else 0)
    row = {"method": name, "mode": mode, "precision": precision, "channels_last": mode.endswith("+cl"),
           "seconds_per_step": sec, "step_times_s": times, "images_per_step": images, "images_per_s": images / sec,
           "flops_per_step": flops, "tflops_per_s": flops / sec / 1e12, "peak_memory_gib":
           None if peak_mem is None else peak_mem / 2 ** 30}

    # Strong views and CutMix alone, on the same batches.
    views = None
    if name == "unimatch":
        def views(i):
            method.make_views(batches[i % len(batches)][1])
    elif name == "imas":
        with torch.no_grad(), ctx.autocast():
            pls = [method.pseudo_labels(ub) for _, ub in batches[:2]]
        from methods.components.cutmix import imas_cutmix
        c = method.config

        def views(i):
            ub, pl = batches[i % 2][1], pls[i % 2]
            x_s = blend(normalize(imas_strong(ub.raw, c.strong_num_ops)), pl.x_w, pl.h)
            imas_cutmix(pl.x_w, pl.pseudo, pl.conf, pl.h, c.group_size, tuple(c.cutmix_side_range),
                        c.cutmix_trigger, c.cutmix_pairing, extra=(pl.valid,))
            return x_s
    if views is not None:
        vt = statistics.median(timed(views, args.steps, args.warmup, device))
        row["strong_views_seconds"] = vt
        row["strong_views_share_of_step"] = vt / sec
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", default="voc-blended-1323", help="crop, batch and model of this protocol")
    ap.add_argument("--methods", nargs="+", default=["floor", "supervised", "unimatch", "imas"])
    ap.add_argument("--modes", nargs="+", choices=MODES, default=["fp32", "bf16", "bf16+cl"])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per case")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--flop-steps", type=int, default=1, help="steps counted by the FLOP counter")
    ap.add_argument("--peak-size", type=int, default=8192)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-cudnn-benchmark", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="protocol overrides (budget.*, model.*), e.g. budget.batch_labeled=2")
    ap.add_argument("--crop", type=int, default=None, help="override the protocol's crop")
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true", help="CPU rehearsal: the small model, crop 65, batch 2 + 2")
    args = ap.parse_args()

    from harness.plugins import get_plugin_manager
    from harness.train.run import parse_set

    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    overrides = {"model.pretrained": False, **parse_set(args.set)}
    if args.quick:
        overrides.update({"model.backbone": "small", "model.deep_stem": False, "budget.batch_labeled": 2,
                          "budget.batch_unlabeled": 4})
        args.crop = args.crop or 65
        args.steps, args.warmup, args.flop_steps, args.peak_size = 2, 1, 1, 512
    pm = get_plugin_manager()
    p = pm.protocols.get(args.protocol).with_overrides(overrides)
    if args.crop:
        p = p.model_copy(update={"crop_size": args.crop})
    machine = machine_info(device)
    peak = measure_peak(device, args.peak_size)
    print(f"matrix peak: {peak['tflops']:.1f} TFLOP/s ({peak['dtype']}, {peak['size']}³)", flush=True)
    rows = []
    for name in args.methods:
        for mode in args.modes:
            try:
                row = bench_case(name, mode, p, device, args, pm)
            except torch.OutOfMemoryError as exc:
                row = {"method": name, "mode": mode, "error": f"out of memory: {str(exc).splitlines()[0]}"}
            if device.type == "cuda":  # the case's tensors died with it: hand their memory back before the next
                torch.cuda.empty_cache()
            rows.append(row)
            if "error" in row:
                print(f"  {name:10s} {mode:11s} {row['error']}", flush=True)
                save(args, machine, p, peak, rows)
                continue
            row["share_of_peak"] = row["tflops_per_s"] / peak["tflops"]
            views = (f"  views {row['strong_views_share_of_step']:.1%}" if "strong_views_share_of_step" in row
                     else "")
            mem = f"{row['peak_memory_gib']:6.1f} GiB" if row["peak_memory_gib"] is not None else ""
            print(f"  {name:10s} {mode:11s} {row['seconds_per_step'] * 1e3:8.1f} ms/step "
                  f"{row['images_per_s']:8.1f} img/s {row['tflops_per_s']:7.1f} TFLOP/s "
                  f"({row['share_of_peak']:.1%} of peak) {mem}{views}", flush=True)
            save(args, machine, p, peak, rows)


def speedups_vs_fp32(rows: list[dict]) -> dict[str, float]:
    by = {(r["method"], r["mode"]): r for r in rows if "error" not in r}
    return {f"{name} {mode}": by[(name, "fp32")]["seconds_per_step"] / r["seconds_per_step"]
            for (name, mode), r in by.items() if mode != "fp32" and (name, "fp32") in by}


def save(args, machine, p, peak, rows) -> None:
    """Print the speed-ups so far and rewrite the JSON (after every case: a run cut short keeps its rows)."""
    speedups = speedups_vs_fp32(rows)
    if speedups:
        print("  speed-ups vs fp32: " + ", ".join(f"{k} {v:.2f}x" for k, v in speedups.items()), flush=True)
    if args.out:
        write_report(args.out, "gpu_step", machine, settings={
            "protocol": p.id, "crop": p.crop_size, "batch_labeled": p.budget.batch_labeled,
            "batch_unlabeled": p.budget.batch_unlabeled, "model": p.model.model_dump(mode="json"),
            "steps": args.steps, "warmup": args.warmup, "flop_steps": args.flop_steps,
            "cudnn_benchmark": torch.backends.cudnn.benchmark, "quick": args.quick},
            matrix_peak=peak, results=rows, speedup_vs_fp32=speedups)

if __name__ == "__main__":
    main()
