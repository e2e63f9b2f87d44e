"""Training-step time of every installed method on a protocol, against the bare model's forward+backward.

Run: ``python benchmarks/perf/step_time.py --protocol synthetic-100 [--steps 30] [--threads N] [--out FILE.json]``

Batches come from the real loader (weak augmentation included) and are prefetched before timing, so the
numbers are the step itself: the method's forward passes, augmentations, losses, backward and SGD update,
and the engine's bookkeeping. "floor" is one forward+backward+step of the model on the labeled batch, the
supervised method's own minimum. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", default="synthetic-100")
    ap.add_argument("--methods", nargs="*", default=None)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from harness.data import build_train_loader
    from harness.data.roots import prepare_data
    from harness.train.engine import build_context, build_optimizer, to_batch
    from harness.data.transforms import normalize
    from harness.train.losses import build_supervised_loss
    from harness.models import build_model
    from harness.plugins import get_plugin_manager
    from harness.train.run import build_method_config

    pm = get_plugin_manager()
    p = pm.protocols.get(args.protocol)
    root, split_root = prepare_data(p, None, None)
    device = torch.device("cpu")
    n = args.warmup + args.steps
    loader = iter(build_train_loader(p, root, split_root, seed=0, crops_unlabeled=2))
    batches = [next(loader) for _ in range(n)]
    results = {}

    def timed(step_fn) -> float:
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            step_fn(i)
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    torch.manual_seed(0)
    model = build_model(p.model, p.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = build_supervised_loss(p.supervised_loss)

    def floor(i):
        lab = batches[i][0]
        loss = loss_fn(model(normalize(lab["raw"])), lab["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    results["floor (model fwd+bwd, labeled batch)"] = timed(floor)
    for info in pm.methods:
        if args.methods and info.name not in args.methods:
            continue
        torch.manual_seed(0)
        model = build_model(p.model, p.num_classes)
        ctx = build_context(p, device, p.total_iterations)
        method = info.cls(model, build_method_config(info, p, {}), ctx)
        optim = build_optimizer(model, method, 1e-3, 10, 0.9, 1e-4)

        def step(i, method=method, optim=optim, model=model, info=info):
            lab, unl = batches[i]
            if not info.cls.uses_unlabeled:
                unl = None
            elif info.cls.crops_needed(method.config) == 1 and unl is not None:
                unl = {k: v for k, v in unl.items() if not k.endswith("2")}
            lb, ub = to_batch(lab, device, normalize), to_batch(unl, device, normalize)
            model.train()
            out = method.training_step(lb, ub, i)
            optim.zero_grad(set_to_none=True)
            out.loss.backward()
            optim.step()
            method.after_step(i)

        results[info.name] = timed(step)

    base = results["floor (model fwd+bwd, labeled batch)"]
    print(f"protocol {p.id}, crop {p.crop_size}, batch {p.budget.batch_labeled}+{p.budget.batch_unlabeled}, "
          f"threads {torch.get_num_threads()}, median of {args.steps} steps")
    print(f"{'':40s} {'s/step':>8s} {'x floor':>8s} {'T steps (min)':>14s}")
    for k, v in results.items():
        print(f"{k:40s} {v:8.4f} {v / base:8.2f} {v * p.total_iterations / 60:14.1f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"protocol": p.id, "threads": torch.get_num_threads(), "machine": platform.processor() or
                       platform.machine(), "steps": args.steps, "seconds_per_step": results,
                       "date": time.strftime("%Y-%m-%d")}, f, indent=1)


if __name__ == "__main__":
    main()
