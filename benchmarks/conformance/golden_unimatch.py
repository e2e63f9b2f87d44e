"""Golden outputs of the official UniMatch code (LiheYoung/UniMatch) for ``tests/conformance``.

    python benchmarks/conformance/golden_unimatch.py /path/to/UniMatch [--out FILE]

Runs, on the inputs of ``tests/conformance/cases.py``: the official ``DeepLabV3Plus`` (ResNet-50 and -101, deep
stem, random weights shared with the harness model), the official training step (``unimatch.py``, the lines from
the no-grad CutMix-source pass to ``loss = (…) / 2.0``, executed on the harness's tiny DeepLabV3+), the official
``obtain_cutmix_box`` fed the harness's draws, and ``ProbOhemCrossEntropy2d``. Writes
``tests/conformance/golden/unimatch.json`` and prints the differences to the harness measured on this machine.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import official  # benchmarks/conformance/official.py (puts the repository root on sys.path)
from tests.conformance import cases

REPO = "LiheYoung/UniMatch"


def load(path: str):
    root = official.checkout(path, "unimatch.py")
    official.cpu_shims()
    import dataset.transform as transform
    import model.backbone.resnet as resnet
    import model.semseg.deeplabv3plus as deeplab
    import util.ohem as ohem

    for arch in ("resnet50", "resnet101"):  # no ImageNet file: the constructor is called with pretrained=False
        build = getattr(resnet, arch)
        setattr(resnet, arch, lambda pretrained=False, _build=build, **kw: _build(False, **kw))
    step = official.official_block(
        root / "unimatch.py", "with torch.no_grad():",
        "loss = (loss_x + loss_u_s1 * 0.25 + loss_u_s2 * 0.25 + loss_u_w_fp * 0.5) / 2.0",
        after="for i, ((img_x, mask_x),")
    first = "mask_ratio = ((conf_u_w >= cfg['conf_thresh']) & (ignore_mask != 255)).sum().item() / \\"
    ratio = official.official_block(root / "unimatch.py", first, "(ignore_mask != 255).sum()")
    return root, {"transform": transform, "deeplab": deeplab, "ohem": ohem, "step": step, "ratio": ratio}


# ----------------------------------------------------------------------------------------------------


def model_forward(off) -> tuple[dict, dict]:
    x = cases.model_input()
    golden, harness = {}, {}
    for case in cases.MODEL_CASES:
        cfg = {"backbone": case["arch"], "replace_stride_with_dilation": [False, False, True],
               "dilations": [6, 12, 18], "nclass": cases.MODEL_CLASSES}
        model = off["deeplab"].DeepLabV3Plus(cfg)
        harness[case["name"]] = cases.harness_model_forward(case)
        state = cases.seeded_state(model, case["seed"])  # drawn by entry name: the harness model's keys are the same
        if list(state) != list(cases.harness_deeplab(case["arch"], case["seed"]).state_dict()):
            raise SystemExit(f"{case['arch']}: the official and harness state dicts have different keys")
        model.load_state_dict(state)
        fp = cases.fingerprint(x, model.state_dict())
        golden[case["name"]] = {"inputs_fingerprint": fp, "state_entries": len(state),
                                **{k: cases.outputs_json(v) for k, v in cases.forward_outputs(model, x).items()}}
    return golden, harness


def official_step(off, case: dict) -> dict:
    inp = cases.unimatch_step_inputs(case["seed"])
    model = cases.tiny_model(case["seed"])
    fp = cases.fingerprint(inp, model.state_dict())
    ns = {"torch": torch, "nn": nn, "model": model, "cfg": {"conf_thresh": case["tau"]},
          "criterion_l": nn.CrossEntropyLoss(ignore_index=255), "criterion_u": nn.CrossEntropyLoss(reduction="none"),
          **inp}
    torch.manual_seed(case["dropout_seed"])
    off["step"].run(ns)
    ns["loss"].backward()
    off["ratio"].run(ns)
    return {"inputs_fingerprint": fp, "loss": float(ns["loss"].detach()), "loss_x": float(ns["loss_x"]),
            "loss_s1": float(ns["loss_u_s1"]), "loss_s2": float(ns["loss_u_s2"]), "loss_fp": float(ns["loss_u_w_fp"]),
            "mask_ratio": float(ns["mask_ratio"]), **cases.grads_and_buffers(model)}


def steps(off) -> tuple[dict, dict]:
    golden, harness = {}, {}
    for case in cases.UNIMATCH_STEP_CASES:
        golden[case["name"]] = official_step(off, case)
        harness[case["name"]] = cases.harness_unimatch_step(case)
    return golden, harness


def cutmix_boxes(off) -> tuple[dict, dict]:
    c = cases.UNIMATCH_BOX
    golden, harness = {}, {}
    for seed in c["seeds"]:
        with official.DrawFeed(cases.gen(seed)):
            mask = off["transform"].obtain_cutmix_box(c["size"], p=c["p"])
        golden[str(seed)] = cases.bbox(mask.bool())
        harness[str(seed)] = cases.harness_unimatch_box(seed)
    return golden, harness


def ohem(off) -> tuple[dict, dict]:
    return official.ohem_golden(lambda case: off["ohem"].ProbOhemCrossEntropy2d(
        ignore_index=255, thresh=case["thresh"], min_kept=case["min_kept"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", help="path of a checkout of https://github.com/LiheYoung/UniMatch")
    ap.add_argument("--out", default=str(cases.GOLDEN_DIR / "unimatch.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    root, off = load(args.checkout)
    t0 = time.time()
    blocks = {"step": off["step"].where(root), "mask_ratio": off["ratio"].where(root)}
    golden = {"about": official.about(REPO, root, blocks, "golden_unimatch.py <UniMatch checkout>")}
    measured = {}
    for name, fn in [("model_forward", model_forward), ("step", steps), ("cutmix_box", cutmix_boxes), ("ohem", ohem)]:
        res = fn(off)
        golden[name] = res[0]
        if name == "cutmix_box":
            measured[name] = {"boxes": len(res[0]), "applied": sum(b is not None for b in res[0].values()),
                              "equal": sum(res[0][k] == res[1][k] for k in res[0])}
        else:
            measured[name] = {k: official.max_differences(res[0][k], res[1][k]) for k in res[0]}
    official.finish(args.out, golden, measured, t0)


if __name__ == "__main__":
    main()
