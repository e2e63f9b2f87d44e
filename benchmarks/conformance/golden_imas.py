"""Golden outputs of the official iMAS code (ZhenZHAO/iMAS) for ``tests/conformance``.

    python benchmarks/conformance/golden_imas.py /path/to/iMAS [--out FILE]

Runs, on the inputs of ``tests/conformance/cases.py``: ``compute_ulb_hardness_all`` / ``compute_ulb_hardness_miou``
(easiness), ``compute_unsupervised_loss_by_threshold``, the pairing of ``cut_mix_by_hardness``, the CutMix branch
of ``train_semi.py`` (easiness → blend → trigger → ``cut_mix_by_hardness``) fed the harness's draws, the EMA
schedule and update of ``train_semi.py``, ``OhemCrossEntropy2dTensor``, and one whole training step of
``train_semi.py`` (from the no-grad pseudo-label pass to ``loss = sup_loss + unsup_loss``, then the EMA update)
on the harness's tiny DeepLabV3+. ``train_semi.py`` itself cannot be imported (it imports a module the repository
does not contain, ``imas.dataset.hardness``); its statements are read from the file and executed
(``official.official_block``). Writes ``tests/conformance/golden/imas.json`` and prints the differences to the
harness measured on this machine.
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import official  # benchmarks/conformance/official.py (puts the repository root on sys.path)
from tests.conformance import cases

REPO = "ZhenZHAO/iMAS"
HARDNESS_FLAGS = {  # exps/citys_semi*/config_semi.yaml, the released configuration
    "flag_using_v1": True, "flag_hardness_weighted_loss": True, "flag_cal_iou_weighted": True,
    "flag_cal_iou_ignore_bg": True, "flag_cmix_trigger_by_hard": True, "flag_augs_mixup_by_hard": True,
    "flag_mapping_random": False, "flag_mapping_gaussian": False}


def load(path: str):
    root = official.checkout(path, "train_semi.py")
    official.cpu_shims()
    import imas.dataset.cutmix_tensor as cutmix
    import imas.utils.loss_helper as loss_helper

    script = root / "train_semi.py"
    blocks = {
        "step": official.official_block(
            script, 'p_threshold = cfg["trainer"]["unsupervised"].get("threshold", 0.95)',
            'unsup_loss *= cfg["trainer"]["unsupervised"].get("loss_weight", 1.0)'),
        "total": official.official_block(script, "loss = sup_loss + unsup_loss", "loss = sup_loss + unsup_loss"),
        "branch": official.official_block(script, "if flag_using_v1:",
                                          "# 5. forward concated labeled + unlabeld into student networks",
                                          include_last=False),
        "ema": official.official_block(
            script, 'if epoch > cfg["trainer"].get("sup_only_epoch", 0):',
            "buffer_eval.data = buffer_eval.data * ema_decay + buffer_train.data * (1 - ema_decay)",
            after="# 9. update teacher model with EMA"),
        "ema_schedule": official.official_block(
            script, 'if epoch > cfg["trainer"].get("sup_only_epoch", 0):', "ema_decay = 0.0",
            after="# 9. update teacher model with EMA"),
    }
    return root, {"cutmix": cutmix, "loss": loss_helper, **blocks}


def namespace(off, **kw) -> dict:
    """What the official blocks refer to: the imports of train_semi.py, plus ``kw``."""
    ns = {"np": np, "torch": torch, "F": F, "cut_mix": off["cutmix"].cut_mix,
          "cut_mix_by_hardness": off["cutmix"].cut_mix_by_hardness,
          "cut_mix_using_v": off["cutmix"].cut_mix_using_v,
          "compute_ulb_hardness_all": off["loss"].compute_ulb_hardness_all,
          "compute_unsupervised_loss_by_threshold": off["loss"].compute_unsupervised_loss_by_threshold}
    ns.update(kw)
    return ns


def train_cfg(tau: float) -> dict:
    return {"dataset": {"train": {"strong_aug": {"num_augs": 2}, "hardness_aware": dict(HARDNESS_FLAGS)}},
            "trainer": {"sup_only_epoch": 0, "unsupervised": {
                "flag_ema_pseudo": True, "threshold": tau, "use_cutmix": True, "use_cutmix_beta": False,
                "use_cutmix_range": list(cases.IMAS_CUTMIX["range"]), "use_cutmix_trigger_prob": 0.5,
                "loss_weight": cases.IMAS_LAMBDA_U}},
            "net": {"ema_decay": cases.IMAS_EMA_CAP}}


# ----------------------------------------------------------------------------------------------------


def easiness(off):
    stu, tea = cases.easiness_inputs()
    fp = cases.fingerprint(stu, tea)
    golden, harness = {}, {}
    for flags in cases.EASINESS_FLAGS:
        kw = {"flag_using_cls_weighted_iou": flags["weighted"], "flag_ignoring_background": flags["ignore_bg"]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NaN IoUs of absent classes, as upstream
            v1, _, rho_s = off["loss"].compute_ulb_hardness_all(stu, tea, cases.EASINESS_TAU, **kw)
            wiou_t, wiou_s = off["loss"].compute_ulb_hardness_miou(
                stu.softmax(dim=1).argmax(dim=1), tea.softmax(dim=1).argmax(dim=1), cases.EASINESS_CLASSES,
                flag_using_cls_weighted_iou=flags["weighted"], flag_ignoring_background=flags["ignore_bg"])
        golden[flags["name"]] = {"inputs_fingerprint": fp, "h": v1.tolist(), "wiou_t": wiou_t.tolist(),
                                 "wiou_s": wiou_s.tolist(), "rho_s": rho_s.tolist()}
        harness[flags["name"]] = cases.harness_easiness(flags)
    return golden, harness


def unsup(off):
    golden, harness = {}, {}
    for case in cases.UNSUP_CASES:
        logits, pseudo, conf, h = cases.unsup_inputs(case)
        fp = cases.fingerprint(logits, pseudo, conf, h)
        logits.requires_grad_(True)
        loss = off["loss"].compute_unsupervised_loss_by_threshold(
            logits, pseudo.clone(), conf, thresh=case["tau"], hardness_tensor=h if case["weighted"] else None)
        loss.backward()
        golden[case["name"]] = {"inputs_fingerprint": fp, "loss": float(loss.detach()),
                                "grad": cases.summary(logits.grad, 32)}
        harness[case["name"]] = cases.harness_unsup(case)
    return golden, harness


def pairing(off):
    """Partners read off ``cut_mix_by_hardness`` run on constant images (image i = i) with boxes covering the
    whole image (side ratio 2: the clipped box is the image); one call per group (device batch)."""
    golden, harness = {}, {}
    for case in cases.PAIRING_CASES:
        h = cases.pairing_h(case)
        B = case["batch"]
        g = case["group"] or B
        partners = []
        for start in range(0, B, g):
            x = torch.arange(g, dtype=torch.float32).view(g, 1, 1, 1).expand(g, 1, 8, 8).clone()
            y = torch.zeros(g, 8, 8, dtype=torch.long)
            with official.DrawFeed(cases.gen(case["seed"])):
                mixed, _, _ = off["cutmix"].cut_mix_by_hardness(x, y, y.float(), hardness=h[start:start + g].tolist(),
                                                                scale=[2.0, 2.0])
            partners += [start + int(mixed[i, 0, 0, 0]) for i in range(g)]
        golden[case["name"]] = {"h": h.tolist(), "partners": partners}
        harness[case["name"]] = cases.harness_pairing(case)
    return golden, harness


def cutmix_branch(off):
    golden, harness = {}, {}
    for seed in cases.IMAS_CUTMIX["seeds"]:
        x, y, c, h = cases.imas_cutmix_inputs(seed)
        fp = cases.fingerprint(x, y, c, h)
        ns = namespace(off, cfg=train_cfg(0.95), flag_using_v1=True, hardness_v1=h, hardness_v2=h,
                       flag_using_hardnness=True, flag_augs_mixup_by_hard=True, flag_cmix_trigger_by_hard=True,
                       flag_mapping_random=False, flag_mapping_gaussian=False,
                       image_u_weak=x.clone(), image_u_aug=x.clone(), label_u_aug=y.clone(), logits_u_aug=c.clone())
        with official.DrawFeed(cases.gen(seed)):
            off["branch"].run(ns)
        out = {"inputs_fingerprint": fp, "fired": bool(ns["flag_loss_cutmix_aug"])}
        if out["fired"]:
            out.update(cases.cutmix_outputs(ns["image_u_aug_cm"], ns["label_u_aug_cm"], ns["logits_u_aug_cm"]))
        golden[str(seed)] = out
        harness[str(seed)] = cases.harness_imas_cutmix(seed)
    return golden, harness


def ema_schedule(off):
    golden, harness = {}, {}
    for k, case in enumerate(cases.EMA_SCHEDULE["cases"]):
        L, s = case["iters_per_epoch"], case["sup_only_epochs"]
        alphas = []
        for i in case["steps"]:
            ns = {"epoch": i // L, "i_iter": i, "loader_l": range(L), "cfg": {"trainer": {"sup_only_epoch": s}},
                  "ema_decay_origin": cases.EMA_SCHEDULE["cap"]}
            alphas.append(float(off["ema_schedule"].run(ns)["ema_decay"]))
        golden[str(k)] = {**case, "alpha": alphas}
        harness[str(k)] = cases.harness_ema_schedule(case)
    return golden, harness


def ohem(off):
    return official.ohem_golden(lambda case: off["loss"].OhemCrossEntropy2dTensor(
        ignore_index=255, thresh=case["thresh"], min_kept=case["min_kept"]))


class WithAux(nn.Module):
    """The official models return (prediction, auxiliary prediction); the released VOC recipe has no aux head."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x), None


def official_step(off, case: dict) -> dict:
    inp = cases.imas_step_inputs(case["seed"])
    student, teacher_state = cases.imas_models(case["seed"])
    fp = cases.fingerprint(inp, student.state_dict(), teacher_state)
    teacher = copy.deepcopy(student)
    teacher.load_state_dict(teacher_state)
    model, model_teacher = WithAux(student), WithAux(teacher)
    model.train()
    model_teacher.eval()
    cfg = train_cfg(case["tau"])
    ns = namespace(off, cfg=cfg, model=model, model_teacher=model_teacher,
                   image_l=cases.normalize(inp["raw_l"]), label_l=inp["label_l"].clone(),
                   image_u_weak=cases.normalize(inp["raw_u"]), image_u_aug=cases.normalize(inp["raw_u_strong"]),
                   sup_loss_fn=off["loss"].Criterion(0, ignore_index=255))
    torch.manual_seed(case["rng_seed"])
    with official.DrawFeed(None):
        off["step"].run(ns)
    off["total"].run(ns)
    ns["loss"].backward()
    res = {"inputs_fingerprint": fp, "loss": float(ns["loss"].detach()), "loss_x": float(ns["sup_loss"].detach()),
           "loss_u": float(ns["unsup_loss"].detach()) / cases.IMAS_LAMBDA_U,
           "fired": bool(ns["flag_loss_cutmix_aug"]), "h": [float(v) for v in ns["tensor_hardness"]],
           **cases.grads_and_buffers(student)}
    L, i = case["iters_per_epoch"], case["step"]
    ema = {"epoch": i // L, "i_iter": i, "loader_l": range(L), "cfg": cfg, "ema_decay_origin": cases.IMAS_EMA_CAP,
           "model": model, "model_teacher": model_teacher}
    with torch.no_grad():
        off["ema"].run(ema)
    state = teacher.state_dict()
    res["teacher"] = {n: cases.summary(v, 4) for n, v in state.items() if not n.endswith("num_batches_tracked")}
    res["teacher_num_batches_tracked"] = {n: float(v) for n, v in state.items() if n.endswith("num_batches_tracked")}
    return res


def steps(off):
    golden, harness = {}, {}
    for case in cases.IMAS_STEP_CASES:
        golden[case["name"]] = official_step(off, case)
        harness[case["name"]] = cases.harness_imas_step(case)
    return golden, harness


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", help="path of a checkout of https://github.com/ZhenZHAO/iMAS")
    ap.add_argument("--out", default=str(cases.GOLDEN_DIR / "imas.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    root, off = load(args.checkout)
    t0 = time.time()
    blocks = {k: off[k].where(root) for k in ("step", "total", "branch", "ema", "ema_schedule")}
    golden = {"about": official.about(REPO, root, blocks, "golden_imas.py <iMAS checkout>")}
    measured = {}
    for name, fn in [("easiness", easiness), ("unsup_loss", unsup), ("pairing", pairing),
                     ("cutmix", cutmix_branch), ("ema_schedule", ema_schedule), ("ohem", ohem), ("step", steps)]:
        off_res, h_res = fn(off)
        golden[name] = off_res
        measured[name] = {}
        for k in off_res:
            try:
                if name == "step":  # upstream averages the integer BN counters, the harness copies them (imas.md §12)
                    nbt = "teacher_num_batches_tracked"
                    o, h = dict(off_res[k]), dict(h_res[k])
                    measured[name][k + "_" + nbt] = {"official": sorted(set(o.pop(nbt).values())),
                                                     "harness": sorted(set(h.pop(nbt).values()))}
                    measured[name][k] = official.max_differences(o, h)
                    continue
                measured[name][k] = official.max_differences(off_res[k], h_res[k])
            except AssertionError as exc:  # a disagreement in an exactly compared value
                measured[name][k] = {"mismatch": str(exc)}
    official.finish(args.out, golden, measured, t0)


if __name__ == "__main__":
    main()
