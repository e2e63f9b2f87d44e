"""Train the built-in pretrained encoder (``shapes-v1``) on the built-in pretraining task.

``python -m harness.train.pretraining --out DIR`` (or ``harness data weights --rebuild DIR``) renders the task's
training and held-out images (:mod:`harness.data.pretraining`), trains the ``small`` backbone with a linear
multi-label head, and writes ``DIR/small-w32-shapes-v1.pth`` (the backbone's state dict only) and a JSON with
the task's held-out accuracy, the cost and the exact command. Everything is seeded and run with deterministic
algorithms on a fixed number of CPU threads, so the same command on the same CPU type gives the same file,
byte for byte (``tests/models/test_builtin_weights.py``, marked slow, rebuilds it and compares).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import pretraining as task
from ..data.transforms import normalize
from ..models.builtin_weights import builtin_weights
from ..records import sha256_file
from ..models.resnet import SmallBackbone

# The recipe of shapes-v1. Changing any of these makes other weights: give them a new name.
RECIPE = {
    "weights": "shapes-v1",
    "task_version": task.PRETRAIN_VERSION,
    "train_images": 40_000,
    "heldout_images": 2_000,
    "epochs": 6,
    "batch": 128,
    "lr": 2e-3,
    "weight_decay": 0.05,
    "warmup_steps": 100,
    "seed": 0,
    "threads": 2,
    "width": 32,
    "output_stride": 16,
}


def _render_range(args: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    return task.render_many(*args)


def render_images(start: int, count: int, workers: int, chunk: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``start .. start+count-1`` as (uint8 N×3×64×64, float N×L); identical for any ``workers``."""
    ranges = [(s, min(chunk, start + count - s)) for s in range(start, start + count, chunk)]
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_render_range, ranges)
    else:
        parts = [_render_range(r) for r in ranges]
    x = torch.from_numpy(np.concatenate([p[0] for p in parts])).permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(np.concatenate([p[1] for p in parts]))


class Classifier(nn.Module):
    """The backbone, global average pooling of its last stage, and a linear layer to the task's labels."""

    def __init__(self, width: int, output_stride: int, num_labels: int):
        super().__init__()
        self.backbone = SmallBackbone(width=width, output_stride=output_stride)
        self.head = nn.Linear(self.backbone.c4_channels, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[1].mean(dim=(2, 3)))


@torch.no_grad()
def evaluate(model: Classifier, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> dict:
    """Held-out label accuracy, exact-match accuracy and mean average precision over the labels."""
    model.eval()
    logits = torch.cat([model(normalize(x[i:i + batch])) for i in range(0, len(x), batch)])
    model.train()
    pred = (logits > 0).float()
    from sklearn.metrics import average_precision_score

    ap = [average_precision_score(y[:, k].numpy(), logits[:, k].numpy()) for k in range(y.shape[1])]
    return {"label_accuracy": float((pred == y).float().mean()),
            "exact_match": float((pred == y).all(dim=1).float().mean()),
            "mean_ap": float(np.mean(ap)),
            "ap_per_label": {name: round(float(a), 4) for name, a in zip(task.LABEL_NAMES, ap)}}


def train(out: Path, workers: int = 2, log=print, recipe: dict | None = None) -> dict:
    """Train and write the weights and their JSON into ``out``; ``recipe`` overrides RECIPE entries (tests)."""
    r = {**RECIPE, **(recipe or {})}
    torch.set_num_threads(r["threads"])
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(r["seed"])
    t0 = time.time()
    x, y = render_images(0, r["train_images"], workers)
    xv, yv = render_images(r["train_images"], r["heldout_images"], workers)  # indices after the training ones
    t_render = time.time() - t0
    log(f"rendered {len(x)} + {len(xv)} images in {t_render:.0f} s")
    model = Classifier(r["width"], r["output_stride"], task.NUM_LABELS)
    opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
    steps_per_epoch = len(x) // r["batch"]
    total = steps_per_epoch * r["epochs"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / r["warmup_steps"])
                                              * 0.5 * (1 + np.cos(np.pi * s / total)))
    gen = torch.Generator().manual_seed(r["seed"])
    t1 = time.time()
    step = 0
    for epoch in range(r["epochs"]):
        order = torch.randperm(len(x), generator=gen)
        flips = torch.rand(len(x), generator=gen) < 0.5
        for i in range(steps_per_epoch):
            idx = order[i * r["batch"]:(i + 1) * r["batch"]]
            xb = x[idx]
            xb = torch.where(flips[idx].view(-1, 1, 1, 1), xb.flip(-1), xb)
            loss = F.binary_cross_entropy_with_logits(model(normalize(xb)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 200 == 0:
                log(f"step {step}/{total} loss {loss.item():.4f} ({time.time() - t1:.0f} s)")
        log(f"epoch {epoch + 1}: held-out {evaluate(model, xv, yv)['label_accuracy']:.4f} label accuracy")
    t_train = time.time() - t1
    metrics = evaluate(model, xv, yv)
    w = builtin_weights(r["weights"])
    out.mkdir(parents=True, exist_ok=True)
    path = out / w.file
    torch.save(model.backbone.state_dict(), path)
    info = {
        "weights": w.name,
        "sha256": sha256_file(path),
        "recipe": r,
        "task": {"labels": list(task.LABEL_NAMES), "seed_base": task.SEED_BASE,
                 "train_indices": [0, r["train_images"]],
                 "heldout_indices": [r["train_images"], r["train_images"] + r["heldout_images"]]},
        "heldout": metrics,
        "heldout_label_frequency": [round(float(v), 4) for v in yv.mean(0)],
        "cost": {"render_s": round(t_render, 1), "train_s": round(t_train, 1), "threads": r["threads"],
                 "render_workers": workers, "images_seen": steps_per_epoch * r["batch"] * r["epochs"]},
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "numpy": np.__version__, "python": platform.python_version()},
        "command": f"python -m harness.train.pretraining --out {out}",
    }
    path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.train.pretraining", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the weights file and its JSON")
    ap.add_argument("--workers", type=int, default=2, help="processes rendering the images (any number gives the "
                                                           "same images)")
    args = ap.parse_args(argv)
    info = train(args.out, args.workers)
    print(json.dumps({k: info[k] for k in ("weights", "sha256", "cost")}, indent=2))
    print(f"held-out label accuracy {info['heldout']['label_accuracy']:.4f}, mAP {info['heldout']['mean_ap']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
