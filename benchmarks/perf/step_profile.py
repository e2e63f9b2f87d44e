"""Where a training step's time goes on the CPU: views, forwards, losses, backward, optimizer, evaluation.

Run: ``python benchmarks/perf/step_profile.py --protocol synthetic-pt-100 [--methods unimatch supervised]
[--steps 20] [--warmup 3] [--threads 1] [--channels-last] [--out FILE.json]``.

Each method trains ``--steps`` steps (after ``--warmup`` untimed ones) on batches of the real loader, prefetched
before timing, with the engine's optimizer and the method's own step, backward, SGD update and ``after_step``.
Phases are timed by wrapping the functions that do them; a phase's time excludes the phases nested in it:

* ``views``: the method's strong views and CutMix (UniMatch ``make_views``; FixMatch's, mean teacher's and
  iMAS's strong-view and CutMix functions);
* ``forward (train)``, ``forward (no grad)``: the model's forward passes with gradient and without (UniMatch's
  CutMix-source pass, teachers);
* ``losses, pseudo-labels, rest``: what remains of ``training_step`` (softmax, argmax, losses, concatenations);
* ``backward``, ``optimizer``, ``after_step``;
* ``normalise weak views``: ``harness.train.engine.to_batch``.

``evaluation``: one evaluation of the protocol's validation set (its ``eval`` settings), and per step its
amortised cost (``num_evals`` evaluations over ``iterations`` steps). ``loader``: the training loader alone,
per step (0 workers, two crops per unlabeled image). Prints a table per method and writes JSON (machine, command, settings, phases).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager

import torch

from machine import machine_info, write_report


class Phases:
    """Exclusive wall time per phase: nested phases are subtracted from the phase around them."""

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)
        self._stack: list[list] = []

    @contextmanager
    def phase(self, name: str):
        t0 = time.perf_counter()
        self._stack.append([name, 0.0])
        try:
            yield
        finally:
            _, nested = self._stack.pop()
            dt = time.perf_counter() - t0
            self.totals[name] += dt - nested
            if self._stack:
                self._stack[-1][1] += dt

    def wrap(self, owner, attr: str, name: str) -> None:
        """Time every call of ``owner.attr`` (a module function or a class method) as phase ``name``."""
        fn = getattr(owner, attr)

        def timed(*args, **kwargs):
            with self.phase(name):
                return fn(*args, **kwargs)

        setattr(owner, attr, timed)


VIEW_FUNCTIONS = [  # (module, attribute): the strong views and CutMix of the built-in methods
    ("methods.unimatch", "UniMatch.make_views"),
    ("methods.fixmatch", "_strong"), ("methods.fixmatch", "unimatch_cutmix_box_coords"),
    ("methods.fixmatch", "paste_boxes"),
    ("methods.mean_teacher", "unimatch_strong"), ("methods.mean_teacher", "unimatch_cutmix_boxes"),
    ("methods.imas", "imas_strong"), ("methods.imas", "imas_cutmix"), ("methods.imas", "blend"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", default="synthetic-pt-100")
    ap.add_argument("--methods", nargs="*", default=["unimatch", "supervised"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--channels-last", action="store_true", help="model and inputs in channels_last")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import importlib

    from harness.data import build_train_loader, build_val_dataset
    from harness.data.roots import prepare_data
    from harness.data.transforms import normalize
    from harness.train.engine import build_context, build_optimizer, to_batch
    from harness.evaluation.inference import evaluate
    from harness.models import build_model
    from harness.plugins import get_plugin_manager
    from harness.train.run import build_method_config

    pm = get_plugin_manager()
    p = pm.protocols.get(args.protocol)
    root, split_root = prepare_data(p, None, None)
    n = args.warmup + args.steps
    loader = iter(build_train_loader(p, root, split_root, seed=0, crops_unlabeled=2))
    t0 = time.perf_counter()
    batches = [next(loader) for _ in range(n)]
    loader_s = (time.perf_counter() - t0) / n  # per step, the loader built (split checks) before the clock
    cpu = torch.device("cpu")
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format

    ph = Phases()
    for mod, attr in VIEW_FUNCTIONS:
        owner = importlib.import_module(mod)
        if "." in attr:
            cls, attr = attr.split(".")
            owner = getattr(owner, cls)
        if hasattr(owner, attr):  # versions of the methods differ in their helpers
            ph.wrap(owner, attr, "views")
    import harness.train.engine as engine_module
    ph.wrap(engine_module, "to_batch", "normalise weak views")
    to_batch = engine_module.to_batch

    report = {}
    for name in args.methods:
        info = next(i for i in pm.methods if i.name == name)
        torch.manual_seed(0)
        model = build_model(p.model, p.num_classes).to(memory_format=fmt)
        ctx = build_context(p, cpu, p.total_iterations)
        method = info.cls(model, build_method_config(info, p, {}), ctx)
        b = p.budget
        optim = build_optimizer(model, method, b.lr, b.head_lr_mult, b.momentum, b.weight_decay)
        forward = model.forward

        def timed_forward(*a, _fwd=forward, _model=model, **k):
            with ph.phase("forward (train)" if _model.training and torch.is_grad_enabled() else "forward (no grad)"):
                return _fwd(*a, **k)

        model.forward = timed_forward  # instance attribute: copies of the model (teachers) keep it
        step_times = []
        ph.totals.clear()
        for i in range(n):
            if i == args.warmup:
                ph.totals.clear()
            lab, unl = batches[i]
            if not info.cls.uses_unlabeled:
                unl = None
            elif info.cls.crops_needed(method.config) == 1 and unl is not None:
                unl = {k: v for k, v in unl.items() if not k.endswith("2")}
            s0 = time.perf_counter()
            lb, ub = to_batch(lab, cpu, normalize), to_batch(unl, cpu, normalize)
            model.train()
            with ph.phase("losses, pseudo-labels, rest"):
                out = method.training_step(lb, ub, i)
            with ph.phase("backward"):
                optim.zero_grad(set_to_none=True)
                out.loss.backward()
            with ph.phase("optimizer"):
                optim.step()
            with ph.phase("after_step"):
                method.after_step(i)
            if i >= args.warmup:
                step_times.append(time.perf_counter() - s0)
        phases = {k: v / args.steps for k, v in ph.totals.items()}
        entry = {"step_s_median": statistics.median(step_times), "step_s_mean": statistics.mean(step_times),
                 "phases_s_per_step": phases}
        if not args.skip_eval and name == args.methods[0]:
            val = build_val_dataset(p, root, split_root)
            e0 = time.perf_counter()
            evaluate(method.eval_model(), val, p.eval, p.num_classes, cpu)
            eval_s = time.perf_counter() - e0
            report["evaluation"] = {"seconds": eval_s, "images": len(val),
                                    "per_step_s": eval_s * b.num_evals / p.total_iterations}
        report[name] = entry
        mean = entry["step_s_mean"]
        print(f"\n{name}: {mean * 1e3:.1f} ms/step (mean; median {entry['step_s_median'] * 1e3:.1f}) over "
              f"{args.steps} steps")
        for k, v in sorted(phases.items(), key=lambda kv: -kv[1]):
            print(f"  {k:32s} {v * 1e3:8.1f} ms  {100 * v / mean:5.1f} %")
    report["loader_s_per_step"] = loader_s
    print(f"\nloader (0 workers): {loader_s * 1e3:.1f} ms/step")
    if "evaluation" in report:
        e = report["evaluation"]
        print(f"evaluation: {e['seconds']:.2f} s for {e['images']} images; {p.budget.num_evals} of them over "
              f"{p.total_iterations} steps = {e['per_step_s'] * 1e3:.1f} ms/step")
    if args.out:
        write_report(args.out, "step_profile", machine_info(cpu),
                     settings={"protocol": p.id, "steps": args.steps, "warmup": args.warmup,
                               "threads": torch.get_num_threads(), "channels_last": args.channels_last,
                               "crop": p.crop_size, "batch": [p.budget.batch_labeled, p.budget.batch_unlabeled]},
                     results=report)


if __name__ == "__main__":
    main()
