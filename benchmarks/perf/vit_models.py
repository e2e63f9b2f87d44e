"""The ViT family's models: parameters, and one training forward + backward + SGD step per encoder.

Run: ``python benchmarks/perf/vit_models.py [--device cpu|cuda] [--encoders vit_tiny dinov2_small ...]
[--crop 518] [--batch 2] [--steps 5] [--threads N] [--freeze] [--out FILE.json]``

Per encoder: encoder and decoder parameters (UniMatch V2's logs print them: 22.1M + 2.7M for ViT-S, 86.6M +
10.9M for ViT-B), the median time of a step on ``--batch`` random crops of ``--crop`` pixels (UniMatch V2 trains
on 518 = 37 patches of 14; ``vit_tiny``'s patch is 8), the weak forward UniMatch V2 adds (no gradient) and, on a
GPU, the peak memory of the step. Random weights: speed and memory do not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from machine import machine_info, write_report

K = 21


def measure(name: str, crop: int, batch: int, steps: int, device: torch.device, freeze: bool) -> dict:
    from harness.models import build_model
    from harness.protocols import ModelSpec

    torch.manual_seed(0)
    model = build_model(ModelSpec(backbone=name, pretrained=False, freeze_backbone=freeze), K).to(device)
    enc = sum(p.numel() for p in model.backbone.parameters())
    dec = sum(p.numel() for p in model.parameters()) - enc
    opt = torch.optim.SGD(model.backbone_parameters() + model.head_parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 3, crop, crop, device=device)
    y = torch.randint(0, K, (batch, crop, crop), device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step():
        model.train()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def weak():
        with torch.no_grad():
            model.eval()(x)

    out = {"encoder_params_M": round(enc / 1e6, 2), "decoder_params_M": round(dec / 1e6, 2)}
    for what, fn in (("train_step_s", step), ("no_grad_forward_s", weak)):
        times = []
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for i in range(steps + 1):  # the first is a warm-up
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            if i:
                times.append(time.perf_counter() - t0)
        out[what] = round(statistics.median(times), 4)
        if device.type == "cuda":
            out[what.replace("_s", "_peak_GiB")] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--encoders", nargs="+", default=["vit_tiny", "dinov2_small", "dinov2_base"])
    ap.add_argument("--crop", type=int, default=518)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--freeze", action="store_true", help="model.freeze_backbone: only the decoder trains")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = {}
    print(f"{'encoder':14s} {'enc M':>7s} {'dec M':>7s} {'step s':>8s} {'weak s':>8s}")
    for name in args.encoders:
        r = measure(name, args.crop, args.batch, args.steps, device, args.freeze)
        results[name] = r
        print(f"{name:14s} {r['encoder_params_M']:7.2f} {r['decoder_params_M']:7.2f} {r['train_step_s']:8.3f} "
              f"{r['no_grad_forward_s']:8.3f}" + (f"  peak {r['train_step_peak_GiB']} GiB" if device.type == "cuda"
                                                  else ""))
    if args.out:
        write_report(args.out, "vit_models", machine_info(device), crop=args.crop, batch=args.batch,
                     steps=args.steps, freeze=args.freeze, classes=K, results=results)


if __name__ == "__main__":
    main()
