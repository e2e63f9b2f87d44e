"""Do two checkouts of the harness train the same? Runs the same short run in each and compares the checkpoints.

A table may pool records made at different revisions only if those revisions compute the same training. This
script runs ``harness run --stop-after STEPS`` from each checkout (its own code, its own ``git_revision``) and
compares every tensor of the two checkpoints (model, method state such as an EMA teacher, optimizer, RNG states)
with ``torch.equal``. It prints one JSON document; exit status 1 when any tensor differs.

    python scripts/same_training.py /work/wt-old /work/wt-new --methods mean_teacher unimatch \\
        --protocol synthetic-pt-100-split3 --steps 60 --out /tmp/same-training
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from harness.records import git_revision


def tensors(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a nested checkpoint, keyed by its path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    out: dict[str, torch.Tensor] = {}
    for k, v in items:
        out.update(tensors(v, f"{prefix}/{k}"))
    return out


def train(checkout: Path, method: str, args, out: Path) -> Path:
    """The short run, from inside the checkout so that ``python -m harness`` imports that checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = [sys.executable, "-m", "harness", "run", "--method", method, "--protocol", args.protocol,
           "--seed", str(args.seed), "--threads", str(args.threads), "--stop-after", str(args.steps),
           "--no-progress", "--force", "--out", str(out)]
    subprocess.run(cmd, cwd=checkout, env=env, check=True, stdout=subprocess.DEVNULL)
    found = sorted(out.glob(f"{args.protocol}/{method}/*/seed{args.seed}/latest.pt"))
    if len(found) != 1:
        raise SystemExit(f"expected one checkpoint under {out} for {method}, found {len(found)}")
    return found[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout_a", type=Path)
    ap.add_argument("checkout_b", type=Path)
    ap.add_argument("--methods", nargs="+", required=True)
    ap.add_argument("--protocol", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True, help="scratch folder for the two runs")
    args = ap.parse_args(argv)

    a, b = args.checkout_a.resolve(), args.checkout_b.resolve()
    doc = {"revisions": [git_revision(a), git_revision(b)],  # "+dirty" marks uncommitted changes
           "protocol": args.protocol, "seed": args.seed,
           "steps": args.steps, "torch": torch.__version__, "methods": {}}
    same = True
    for method in args.methods:
        ta = tensors(torch.load(train(a, method, args, args.out / "a"), map_location="cpu", weights_only=False))
        tb = tensors(torch.load(train(b, method, args, args.out / "b"), map_location="cpu", weights_only=False))
        differ = sorted(k for k in set(ta) & set(tb) if ta[k].shape != tb[k].shape or not torch.equal(ta[k], tb[k]))
        only = sorted(set(ta) ^ set(tb))
        doc["methods"][method] = {"tensors_compared": len(set(ta) & set(tb)), "differ": differ, "only_in_one": only}
        same = same and not differ and not only
    doc["identical"] = same
    print(json.dumps(doc, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
