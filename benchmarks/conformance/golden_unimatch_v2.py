"""Golden outputs of the official UniMatch V2 step (LiheYoung/UniMatch-V2) for ``tests/conformance``.

    python benchmarks/conformance/golden_unimatch_v2.py /path/to/UniMatch-V2 [--out FILE]

Runs, on the inputs of ``tests/conformance/cases_unimatch_v2.py``, the statements of the official
``unimatch_v2.py`` and ``fixmatch.py`` (UniMatch V2's FixMatch, the harness's ``fixmatch_v2``): the AdamW construction (two groups: backbone lr, the rest at ``lr × lr_multi``, weight decay
0.01), one training step (from the teacher's no-grad pass to ``optimizer.step()``), the mask ratio, and the EMA
update of the teacher at step ``iters``, on the harness's tiny networks (a DeepLabV3+ with BatchNorm and the
tiny ViT with UniMatch V2's DPT head; the official model needs DINOv2 weights and sizes no CPU test can afford, and
the networks are compared on their own in the other golden files). Writes
``tests/conformance/golden/unimatch_v2_step.json`` and prints the differences to the harness measured here.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

import official  # benchmarks/conformance/official.py (puts the repository root on sys.path)
from tests.conformance import cases_unimatch_v2 as cases

REPO = "LiheYoung/UniMatch-V2"


MASK_RATIO = ("mask_ratio = ((conf_u_w >= cfg['conf_thresh']) & (ignore_mask != 255)).sum().item() / "
              "(ignore_mask != 255).sum()")


def script_blocks(script) -> dict:
    """The AdamW construction, the step, the mask ratio and the EMA update of one official training script."""
    return {
        "optimizer": official.official_block(script, "optimizer = AdamW(", ")", after="model.lock_backbone()"),
        "step": official.official_block(script, "with torch.no_grad():", "optimizer.step()",
                                        after="for i, ((img_x, mask_x),"),
        "mask_ratio": official.official_block(script, MASK_RATIO, MASK_RATIO),
        "ema": official.official_block(script, "ema_ratio = min(1 - 1 / (iters + 1), 0.996)",
                                       "buffer_ema.copy_(buffer_ema * ema_ratio + buffer.detach() * (1 - ema_ratio))"),
    }


def load(path: str) -> tuple:
    root = official.checkout(path, "unimatch_v2.py")
    official.cpu_shims()
    torch.distributed.barrier = lambda *a, **k: None  # fixmatch.py synchronises its processes; one process here
    return root, {"unimatch_v2": script_blocks(root / "unimatch_v2.py"),
                  "fixmatch": script_blocks(root / "fixmatch.py")}


def official_step(blocks: dict, case: dict) -> dict:
    inp = cases.step_inputs(case)
    if case.get("fixmatch"):  # fixmatch.py's loader gives one strong view and one box
        inp = {"img_u_s": inp.pop("img_u_s1"), "cutmix_box": inp.pop("cutmix_box1"), **inp}
    model, model_ema = cases.model_pair(case)
    fp = cases.fingerprint(inp, model.state_dict(), model_ema.state_dict())
    ns = {"torch": torch, "nn": nn, "AdamW": torch.optim.AdamW, "model": model, "model_ema": model_ema,
          "cfg": {"conf_thresh": case["tau"], "lr": cases.LR, "lr_multi": cases.LR_MULTI},
          "criterion_l": nn.CrossEntropyLoss(ignore_index=255), "criterion_u": nn.CrossEntropyLoss(reduction="none"),
          "iters": case["iters"], **{k: v.clone() for k, v in inp.items()}}
    blocks["optimizer"].run(ns)
    student_before, teacher_before = cases.snapshot(model), cases.snapshot(model_ema)
    # the step ends with zero_grad, backward and the optimizer step: the gradients are read before the step by
    # wrapping it
    grads = {}
    step = ns["optimizer"].step

    def step_and_record(*a, **k):
        grads.update({n: cases.summary(p.grad, 4) for n, p in model.named_parameters() if p.grad is not None})
        return step(*a, **k)

    ns["optimizer"].step = step_and_record
    torch.manual_seed(case["dropout_seed"])
    blocks["step"].run(ns)
    blocks["mask_ratio"].run(ns)
    with torch.no_grad():
        blocks["ema"].run(ns)
    losses = {"inputs_fingerprint": fp, "loss": float(ns["loss"].detach()), "loss_x": float(ns["loss_x"].detach()),
              "loss_s": float(ns["loss_u_s"].detach()), "mask_ratio": float(ns["mask_ratio"])}
    if not case.get("fixmatch"):
        losses.update(loss_s1=float(ns["loss_u_s1"].detach()), loss_s2=float(ns["loss_u_s2"].detach()))
    return cases.outputs(losses, grads, model, student_before, model_ema, teacher_before)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", help="path of a checkout of https://github.com/LiheYoung/UniMatch-V2")
    ap.add_argument("--out", default=str(cases.GOLDEN_DIR / "unimatch_v2_step.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    root, blocks = load(args.checkout)
    t0 = time.time()
    where = {f"{script}.{k}": b.where(root) for script, bs in blocks.items() for k, b in bs.items()}
    golden = {"about": official.about(REPO, root, where, "golden_unimatch_v2.py <UniMatch-V2 checkout>")}
    measured = {}
    for key, script, case_list in (("step", "unimatch_v2", cases.STEP_CASES),
                                   ("fixmatch_step", "fixmatch", cases.FIXMATCH_CASES)):
        golden[key], measured[key] = {}, {}
        for case in case_list:
            golden[key][case["name"]] = official_step(copy.deepcopy(blocks[script]), case)
            measured[key][case["name"]] = official.max_differences(golden[key][case["name"]],
                                                                   cases.harness_step(case))
    official.finish(args.out, golden, measured, t0)


if __name__ == "__main__":
    main()
