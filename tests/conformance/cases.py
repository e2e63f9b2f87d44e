"""The conformance cases: seeded inputs, and the harness's side of each comparison with the official code.

Both sides build their inputs here. ``benchmarks/conformance/golden_{unimatch,imas}.py`` feed them to a checkout
of the official repository and write its outputs to ``golden/*.json``; the tests in this folder feed the same
inputs to the harness and compare. Every input (images, labels, logits, network weights) comes from a seeded CPU
``torch.Generator``, never from the global RNG, and each golden file records a fingerprint of its inputs so that
a change of torch's generators is reported as such rather than as a disagreement.

Where a comparison needs random draws inside the code under test (CutMix boxes, the iMAS trigger, the dropout of
UniMatch's feature perturbation), both sides take them from the same torch stream: the harness draws it itself,
and the official ``random`` / ``numpy.random`` calls are answered from it in their call order
(``benchmarks/conformance/official.py``).
"""

from __future__ import annotations

import contextlib
import json
import zlib
from pathlib import Path
from unittest import mock

import torch

from harness.augment import normalize, unimatch_cutmix_boxes
from harness.train.losses import cross_entropy, ohem_cross_entropy
from harness.method import Batch, MethodContext
from harness.models import build_model
from harness.protocols import ModelSpec
from methods import imas as imas_module
from methods import unimatch as unimatch_module
from methods.components.cutmix import easy_hard_partners, group_partners, imas_cutmix
from methods.components.easiness import easiness_terms
from methods.components.ema import imas_decay
from methods.components.losses import imas_unsup_loss

Tensor = torch.Tensor

GOLDEN_DIR = Path(__file__).parent / "golden"

# ----------------------------------------------------------------------------------------------------
# helpers shared by every case


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def uniform(shape, seed: int, lo: float = 0.0, hi: float = 1.0) -> Tensor:
    """float32 U[lo, hi) from a seeded generator."""
    return lo + (hi - lo) * torch.rand(tuple(shape), generator=gen(seed))


def raw_images(n: int, size: tuple[int, int], seed: int) -> Tensor:
    return torch.randint(0, 256, (n, 3, *size), dtype=torch.uint8, generator=gen(seed))


def seeded_state(module: torch.nn.Module, seed: int) -> dict[str, Tensor]:
    """A state dict for ``module`` drawn from seeded generators (one per entry, keyed by its name).

    Weights ≥ 2-D: Kaiming-uniform (bound √(6 / fan_in)); 1-D weights (BatchNorm γ) U[0.5, 1.5), except the last
    BatchNorm of each bottleneck (``bn3``): U[0.05, 0.25), so that eval-mode activations stay of order one through
    the residual blocks; biases and running means U[−0.2, 0.2); running variances U[0.5, 1.5); integer buffers
    unchanged."""
    out = {}
    for name, t in module.state_dict().items():
        if not t.is_floating_point():
            out[name] = t.clone()
            continue
        s = (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63)
        if name.endswith("running_var"):
            v = uniform(t.shape, s, 0.5, 1.5)
        elif name.endswith("running_mean") or name.endswith("bias"):
            v = uniform(t.shape, s, -0.2, 0.2)
        elif name.endswith("bn3.weight"):
            v = uniform(t.shape, s, 0.05, 0.25)
        elif t.dim() == 1:
            v = uniform(t.shape, s, 0.5, 1.5)
        else:
            bound = (6.0 / t[0].numel()) ** 0.5
            v = uniform(t.shape, s, -bound, bound)
        out[name] = v.to(t.dtype)
    return out


def fingerprint(*tensors) -> float:
    """Σ |x| over the inputs (float64): recorded in the golden files to detect a change of the generators."""
    total = 0.0
    for t in tensors:
        if isinstance(t, dict):
            total += fingerprint(*t.values())
        elif isinstance(t, (list, tuple)):
            total += fingerprint(*t)
        elif isinstance(t, Tensor):
            total += float(t.detach().double().abs().sum())
    return total


def r7(x: float) -> float:
    """A float rounded to 7 significant digits (float32 precision) for the JSON files."""
    return float(f"{float(x):.7g}")


def summary(t: Tensor, n_values: int = 16) -> dict:
    """Shape, Σx, Σ|x|, √Σx² (float64) and ``n_values`` entries at evenly spaced flat positions."""
    t = t.detach().double()
    flat = t.reshape(-1)
    idx = torch.linspace(0, flat.numel() - 1, min(n_values, flat.numel())).round().long()
    return {"shape": list(t.shape), "sum": float(flat.sum()), "abs_sum": float(flat.abs().sum()),
            "l2": float(flat.norm()), "values": [r7(v) for v in flat[idx].tolist()]}


def grid_values(t: Tensor, step: int = 8) -> list:
    """Every ``step``-th row and column of a B×C×H×W tensor, as nested lists of 7-digit floats."""
    sub = t.detach()[:, :, ::step, ::step]
    return [[[[r7(v) for v in row] for row in ch] for ch in img] for img in sub.tolist()]


def label_string(t: Tensor) -> list[str]:
    """Label maps (B×H×W, values < 36) as one base-36 character per pixel, row-major, one string per image."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    return ["".join(digits[v] for v in img.reshape(-1).tolist()) for img in t]


def bbox(mask: Tensor) -> list[int] | None:
    """[row0, row1, col0, col1) of a rectangular H×W mask, or None if it is empty."""
    if not bool(mask.any()):
        return None
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return [int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1]


def box_coords(masks: Tensor) -> Tensor:
    """B×4 (top, left, height, width) of rectangular B×H×W masks (0 × 0 where a mask is empty)."""
    rows = []
    for m in masks.bool():
        b = bbox(m)
        rows.append([0, 0, 0, 0] if b is None else [b[0], b[2], b[1] - b[0], b[3] - b[2]])
    return torch.tensor(rows, dtype=torch.int64)


def load_golden(name: str) -> dict:
    return json.loads((GOLDEN_DIR / f"{name}.json").read_text())


def context(num_classes: int, crop_size: int, iters_per_epoch: int = 10, supervised_loss=cross_entropy,
            spec: ModelSpec | None = None) -> MethodContext:
    return MethodContext(device=torch.device("cpu"), num_classes=num_classes, total_steps=100,
                         iters_per_epoch=iters_per_epoch, crop_size=crop_size, dataset="synthetic",
                         supervised_loss=supervised_loss, model_factory=lambda: build_model(spec or TINY, num_classes),
                         autocast=contextlib.nullcontext)


def grads_and_buffers(model: torch.nn.Module) -> dict:
    """Summaries (4 values each) of every parameter's gradient and every floating-point buffer."""
    return {"grads": {n: summary(p.grad, 4) for n, p in model.named_parameters() if p.grad is not None},
            "buffers": {n: summary(b, 4) for n, b in model.named_buffers() if b.is_floating_point()}}


# ----------------------------------------------------------------------------------------------------
# DeepLabV3+ forward on shared weights (UniMatch's model)

MODEL_CLASSES = 5
MODEL_CASES = [{"name": "resnet50", "arch": "resnet50", "seed": 11},
               {"name": "resnet101", "arch": "resnet101", "seed": 12}]
MODEL_INPUT = {"shape": (2, 3, 64, 64), "seed": 13}
MODEL_FP_SEED = 14  # torch.manual_seed before the need_fp forward (Dropout2d masks)


def model_spec(arch: str) -> ModelSpec:
    return ModelSpec(backbone=arch, output_stride=16, deep_stem=True, pretrained=False)


def harness_deeplab(arch: str, seed: int) -> torch.nn.Module:
    model = build_model(model_spec(arch), MODEL_CLASSES)
    model.load_state_dict(seeded_state(model, seed))
    return model


def model_input() -> Tensor:
    return uniform(MODEL_INPUT["shape"], MODEL_INPUT["seed"], -2.0, 2.0)


def harness_model_forward(case: dict) -> dict:
    model = harness_deeplab(case["arch"], case["seed"])
    x = model_input()
    fp = fingerprint(x, model.state_dict())
    return {"inputs_fingerprint": fp, "state_entries": len(model.state_dict()),
            **{k: outputs_json(v) for k, v in forward_outputs(model, x).items()}}


def outputs_json(t: Tensor) -> dict:
    return {"grid": grid_values(t), "summary": summary(t)}


@torch.no_grad()
def forward_outputs(model, x: Tensor) -> dict[str, Tensor]:
    """The same calls on either model: eval forward, train-mode forward (batch statistics), and the train-mode
    forward with feature perturbation after ``torch.manual_seed(MODEL_FP_SEED)``."""
    model.eval()
    out = {"eval": model(x)}
    model.train()
    out["train"] = model(x)
    torch.manual_seed(MODEL_FP_SEED)
    out["fp_clean"], out["fp_perturbed"] = model(x, True)
    return out


# ----------------------------------------------------------------------------------------------------
# tiny model shared by the step cases

TINY = ModelSpec(backbone="small", width=8, decoder_channels=16, pretrained=False, deep_stem=False)
STEP_CLASSES = 4
STEP_SIZE = 32


def tiny_model(seed: int) -> torch.nn.Module:
    model = build_model(TINY, STEP_CLASSES)
    model.load_state_dict(seeded_state(model, seed))
    return model.train()


# ----------------------------------------------------------------------------------------------------
# UniMatch step

UNIMATCH_STEP_CASES = [
    {"name": "tau_0.5", "seed": 21, "tau": 0.5, "dropout_seed": 1},
    {"name": "tau_0", "seed": 22, "tau": 0.0, "dropout_seed": 2},
]


def unimatch_step_inputs(seed: int) -> dict[str, Tensor]:
    """Tensors as the official loader delivers them (2 labeled + 2 unlabeled 32×32 crops).

    ``ignore_mask*``: long, 255 on padding (rows ≥ 24 of unlabeled image 0; columns ≥ 20 of image 1 of the CutMix
    source); ``cutmix_box*``: float 0/1 boxes (box 2 of image 1 is empty); ``mask_x``: labels with 255 on padding."""
    S, K = STEP_SIZE, STEP_CLASSES
    norm = lambda raw: normalize(raw)  # noqa: E731
    raw_x = raw_images(2, (S, S), seed)
    mask_x = torch.randint(0, K, (2, S, S), generator=gen(seed + 1))
    mask_x[1, 26:] = 255
    raw_x[1, :, 26:] = 0
    raw_w, raw_w_mix = raw_images(2, (S, S), seed + 2), raw_images(2, (S, S), seed + 3)
    ignore = torch.zeros(2, S, S, dtype=torch.long)
    ignore[0, 24:] = 255
    raw_w[0, :, 24:] = 0
    ignore_mix = torch.zeros(2, S, S, dtype=torch.long)
    ignore_mix[1, :, 20:] = 255
    raw_w_mix[1, :, :, 20:] = 0
    box1 = unimatch_cutmix_boxes(2, (S, S), 1.0, gen(seed + 4)).float()
    box2 = unimatch_cutmix_boxes(2, (S, S), 1.0, gen(seed + 5)).float()
    box2[1] = 0
    return {
        "img_x": norm(raw_x), "mask_x": mask_x, "img_u_w": norm(raw_w),
        "img_u_s1": norm(raw_images(2, (S, S), seed + 6)), "img_u_s2": norm(raw_images(2, (S, S), seed + 7)),
        "ignore_mask": ignore, "cutmix_box1": box1, "cutmix_box2": box2, "img_u_w_mix": norm(raw_w_mix),
        "img_u_s1_mix": norm(raw_images(2, (S, S), seed + 8)), "img_u_s2_mix": norm(raw_images(2, (S, S), seed + 9)),
        "ignore_mask_mix": ignore_mix,
    }


def harness_unimatch_step(case: dict) -> dict:
    """One ``UniMatch.training_step`` on the case's inputs, its strong views and boxes substituted for the
    harness's own draws (``_strong`` and ``unimatch_cutmix_box_coords`` answer them in draw order, and no strong-view
    parameters are drawn, so that the global RNG reaches the Dropout2d masks as in the official step), then
    backward."""
    inp = unimatch_step_inputs(case["seed"])
    model = tiny_model(case["seed"])
    fp = fingerprint(inp, model.state_dict())
    method = unimatch_module.UniMatch(model, unimatch_module.UniMatch.Config(tau=case["tau"]),
                                      context(STEP_CLASSES, STEP_SIZE))
    raw = torch.zeros(2, 3, STEP_SIZE, STEP_SIZE, dtype=torch.uint8)  # never read: the strong views are given
    labeled = Batch(raw=raw, image=inp["img_x"], valid=inp["mask_x"] != 255, label=inp["mask_x"])
    second = Batch(raw=raw, image=inp["img_u_w_mix"], valid=inp["ignore_mask_mix"] != 255)
    unlabeled = Batch(raw=raw, image=inp["img_u_w"], valid=inp["ignore_mask"] != 255, second=second)
    views = iter([inp["img_u_s1"], inp["img_u_s2"], inp["img_u_s1_mix"], inp["img_u_s2_mix"]])
    boxes = iter([box_coords(inp["cutmix_box1"]), box_coords(inp["cutmix_box2"])])
    with mock.patch.object(unimatch_module, "sample_unimatch_params", lambda *a, **k: None), \
            mock.patch.object(unimatch_module, "_strong", lambda raw, params, images=None: next(views)), \
            mock.patch.object(unimatch_module, "unimatch_cutmix_box_coords", lambda *a, **k: next(boxes)):
        torch.manual_seed(case["dropout_seed"])
        out = method.training_step(labeled, unlabeled, 0)
    out.loss.backward()
    logs = out.logs
    return {"inputs_fingerprint": fp, "loss": float(out.loss.detach()), "loss_x": float(logs["loss_x"]),
            "loss_s1": float(logs["loss_s1"]), "loss_s2": float(logs["loss_s2"]), "loss_fp": float(logs["loss_fp"]),
            "mask_ratio": float(logs["mask_ratio"]), **grads_and_buffers(model)}


# ----------------------------------------------------------------------------------------------------
# UniMatch CutMix boxes (obtain_cutmix_box) from the same draws

UNIMATCH_BOX = {"size": 32, "p": 0.5, "seeds": list(range(300))}


def harness_unimatch_box(seed: int) -> list[int] | None:
    S = UNIMATCH_BOX["size"]
    return bbox(unimatch_cutmix_boxes(1, (S, S), UNIMATCH_BOX["p"], gen(seed))[0])


# ----------------------------------------------------------------------------------------------------
# OHEM (UniMatch ProbOhemCrossEntropy2d, iMAS OhemCrossEntropy2dTensor)

OHEM_CASES = [  # the branch each group takes: threshold = thresh, = the min_kept-th p_gt, or all valid pixels kept
    {"name": "kth_below_thresh", "seed": 31, "batch": 2, "group": 2, "thresh": 0.7, "min_kept": 100,
     "branches": ["thresh"]},
    {"name": "kth_above_thresh", "seed": 32, "batch": 2, "group": 2, "thresh": 0.7, "min_kept": 1000,
     "branches": ["kth"]},
    {"name": "min_kept_above_valid", "seed": 33, "batch": 2, "group": 2, "thresh": 0.7, "min_kept": 5000,
     "branches": ["all"]},
    {"name": "min_kept_0", "seed": 34, "batch": 2, "group": 2, "thresh": 0.7, "min_kept": 0, "branches": ["all"]},
    {"name": "two_groups", "seed": 35, "batch": 4, "group": 2, "thresh": 0.6, "min_kept": 1040,
     "branches": ["kth", "all"]},
]
OHEM_CLASSES = 5


def ohem_inputs(case: dict) -> tuple[Tensor, Tensor]:
    """Logits B×5×24×24 in [−4, 4) and targets with about 10% ignored (255) pixels."""
    B, s = case["batch"], case["seed"]
    logits = uniform((B, OHEM_CLASSES, 24, 24), s, -4.0, 4.0)
    target = torch.randint(0, OHEM_CLASSES, (B, 24, 24), generator=gen(s + 1))
    target[uniform((B, 24, 24), s + 2) < 0.1] = 255
    return logits, target


def ohem_branches(case: dict) -> list[str]:
    """Which branch of OHEM each group of the case's inputs takes (computed here, independently of both codes)."""
    logits, target = ohem_inputs(case)
    out = []
    for i in range(0, case["batch"], case["group"]):
        t = target[i:i + case["group"]]
        valid = t != 255
        p_gt = logits[i:i + case["group"]].softmax(dim=1).gather(1, t.clamp(max=OHEM_CLASSES - 1)[:, None])[:, 0]
        k = case["min_kept"]
        if k == 0 or k > int(valid.sum()):
            out.append("all")
        else:
            out.append("kth" if float(p_gt[valid].sort().values[k - 1]) > case["thresh"] else "thresh")
    return out


def harness_ohem(case: dict) -> dict:
    logits, target = ohem_inputs(case)
    fp = fingerprint(logits, target)
    logits.requires_grad_(True)
    loss = ohem_cross_entropy(logits, target, thresh=case["thresh"], min_kept=case["min_kept"], group=case["group"])
    loss.backward()
    return {"inputs_fingerprint": fp, "loss": float(loss.detach()), "grad": summary(logits.grad, 32)}


# ----------------------------------------------------------------------------------------------------
# iMAS easiness

EASINESS_CLASSES = 5
EASINESS_TAU = 0.7
EASINESS_FLAGS = [
    {"name": "weighted_ignore_bg", "weighted": True, "ignore_bg": True},
    {"name": "weighted_with_bg", "weighted": True, "ignore_bg": False},
    {"name": "unweighted_ignore_bg", "weighted": False, "ignore_bg": True},
    {"name": "unweighted_with_bg", "weighted": False, "ignore_bg": False},
]
EASINESS_SEED = 41


def easiness_inputs() -> tuple[Tensor, Tensor]:
    """Student and teacher logits, 8×5×16×16. Image 0: teacher all class 0; 1: both all class 0; 2: student all
    class 0; 3: teacher ≈ student; 4: class 4 absent from both maps; 5–7: independent random maps."""
    s = EASINESS_SEED
    shape = (8, EASINESS_CLASSES, 16, 16)
    stu = uniform(shape, s, -3.0, 3.0)
    tea = uniform(shape, s + 1, -3.0, 3.0)
    tea[0, 0] += 8.0
    stu[1, 0] += 8.0
    tea[1, 0] += 8.0
    stu[2, 0] += 8.0
    tea[3] = stu[3] + uniform(shape[1:], s + 2, -0.5, 0.5)
    stu[4, 4] -= 8.0
    tea[4, 4] -= 8.0
    return stu, tea


def harness_easiness(flags: dict) -> dict:
    stu, tea = easiness_inputs()
    t = easiness_terms(stu.softmax(dim=1), tea.softmax(dim=1), EASINESS_TAU, EASINESS_CLASSES,
                       ignore_class0=flags["ignore_bg"], weighted=flags["weighted"])
    return {"inputs_fingerprint": fingerprint(stu, tea), "h": t.h.tolist(), "wiou_t": t.wiou_t.tolist(),
            "wiou_s": t.wiou_s.tolist(), "rho_s": t.rho_s.tolist()}


# ----------------------------------------------------------------------------------------------------
# iMAS unsupervised loss

UNSUP_CASES = [
    {"name": "easiness_weighted", "seed": 51, "tau": 0.6, "weighted": True},
    {"name": "unweighted", "seed": 52, "tau": 0.6, "weighted": False},
]


def unsup_inputs(case: dict) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Student logits 4×5×16×16, teacher pseudo-labels and confidences, easiness h (4,)."""
    s = case["seed"]
    logits = uniform((4, 5, 16, 16), s, -3.0, 3.0)
    conf, pseudo = uniform((4, 5, 16, 16), s + 1, -3.0, 3.0).softmax(dim=1).max(dim=1)
    h = uniform((4,), s + 2)
    return logits, pseudo, conf, h


def harness_unsup(case: dict) -> dict:
    logits, pseudo, conf, h = unsup_inputs(case)
    fp = fingerprint(logits, pseudo, conf, h)
    logits.requires_grad_(True)
    loss = imas_unsup_loss(logits, pseudo, conf, h if case["weighted"] else None, case["tau"])
    loss.backward()
    return {"inputs_fingerprint": fp, "loss": float(loss.detach()), "grad": summary(logits.grad, 32)}


# ----------------------------------------------------------------------------------------------------
# iMAS easy↔hard pairing (no ties: the official np.argsort is not a stable sort)

PAIRING_CASES = [{"name": f"B{b}_seed{s}", "batch": b, "seed": s, "group": g}
                 for b, s, g in [(2, 61, None), (3, 62, None), (4, 63, None), (5, 64, None), (8, 65, None),
                                 (8, 66, 4), (12, 67, 4)]]


def pairing_h(case: dict) -> Tensor:
    h = uniform((case["batch"],), case["seed"])
    if len(set(h.tolist())) != h.numel():
        raise ValueError(f"pairing case {case['name']} has ties")
    return h


def harness_pairing(case: dict) -> dict:
    h = pairing_h(case)
    partners = easy_hard_partners(h) if case["group"] is None else group_partners(h, case["group"])
    return {"h": h.tolist(), "partners": partners.tolist()}


# ----------------------------------------------------------------------------------------------------
# iMAS CutMix branch (trigger, box, pairing, paste) from the same draws

IMAS_CUTMIX = {"batch": 4, "size": (20, 28), "classes": 5, "range": (0.1, 0.9), "seeds": list(range(100, 140))}


def imas_cutmix_inputs(seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Weak views 4×3×20×28, pseudo-labels, confidences, and easiness h without ties (mean h from 0.1 to 0.9)."""
    B, (H, W), K = IMAS_CUTMIX["batch"], IMAS_CUTMIX["size"], IMAS_CUTMIX["classes"]
    x = uniform((B, 3, H, W), seed, -2.0, 2.0)
    y = torch.randint(0, K, (B, H, W), generator=gen(seed + 1000))
    c = uniform((B, H, W), seed + 2000)
    level = 0.1 + 0.8 * (seed % 9) / 8
    h = (level + uniform((B,), seed + 3000, -0.1, 0.1)).clamp(0.0, 1.0)
    if len(set(h.tolist())) != B:
        raise ValueError(f"CutMix case {seed} has ties in h")
    return x, y, c, h


def harness_imas_cutmix(seed: int) -> dict:
    x, y, c, h = imas_cutmix_inputs(seed)
    res = imas_cutmix(x, y, c, h, group_size=IMAS_CUTMIX["batch"], side_range=IMAS_CUTMIX["range"],
                      trigger="easiness", pairing="easy_hard", generator=gen(seed))
    out = {"inputs_fingerprint": fingerprint(x, y, c, h), "fired": bool(res.fired[0])}
    if out["fired"]:
        out.update(cutmix_outputs(res.image, res.label, res.conf))
    return out


def cutmix_outputs(image: Tensor, label: Tensor, conf: Tensor) -> dict:
    return {"label": label_string(label), "image": summary(image, 8), "conf": summary(conf, 8),
            "image_sums": [float(v) for v in image.double().sum(dim=(1, 2, 3))],
            "conf_sums": [float(v) for v in conf.double().sum(dim=(1, 2))]}


# ----------------------------------------------------------------------------------------------------
# iMAS EMA schedule

EMA_SCHEDULE = {"cap": 0.996, "cases": [{"iters_per_epoch": L, "sup_only_epochs": s, "steps": list(range(0, 4 * L + 3))}
                                        for L, s in [(5, 0), (5, 1), (7, 2)]]
                + [{"iters_per_epoch": 100, "sup_only_epochs": 0, "steps": [0, 99, 100, 101, 150, 248, 249, 250, 251,
                                                                            400, 1000]}]}


def harness_ema_schedule(case: dict) -> dict:
    return {**case, "alpha": [imas_decay(i, case["iters_per_epoch"], EMA_SCHEDULE["cap"], True, case["sup_only_epochs"])
                              for i in case["steps"]]}


# ----------------------------------------------------------------------------------------------------
# iMAS step (easiness, blend, trigger, CutMix, one student forward, losses, gradients, EMA update)

IMAS_STEP_CASES = [
    {"name": "cutmix_fired", "seed": 75, "tau": 0.9, "step": 7, "iters_per_epoch": 5, "rng_seed": 1},
    {"name": "cutmix_not_fired", "seed": 89, "tau": 0.9, "step": 7, "iters_per_epoch": 5, "rng_seed": 5},
]
IMAS_LAMBDA_U = 3.0
IMAS_EMA_CAP = 0.996


def imas_step_inputs(seed: int) -> dict[str, Tensor]:
    """2 labeled and 4 unlabeled 32×32 crops (8-bit weak and strong views), labels with 255 on padding."""
    S, K = STEP_SIZE, STEP_CLASSES
    raw_l = raw_images(2, (S, S), seed)
    label = torch.randint(0, K, (2, S, S), generator=gen(seed + 1))
    label[0, 28:] = 255
    raw_l[0, :, 28:] = 0
    return {"raw_l": raw_l, "label_l": label, "raw_u": raw_images(4, (S, S), seed + 2),
            "raw_u_strong": raw_images(4, (S, S), seed + 3)}


def imas_models(seed: int) -> tuple[torch.nn.Module, dict[str, Tensor]]:
    """The student, and a teacher state 0.9·student + 0.1·(another draw) so that the two partly disagree."""
    student = tiny_model(seed)
    other = seeded_state(student, seed + 500)
    teacher = {k: (0.9 * v + 0.1 * other[k]) if v.is_floating_point() else v.clone()
               for k, v in student.state_dict().items()}
    return student, teacher


def harness_imas_step(case: dict) -> dict:
    """``Imas.training_step`` (strong view substituted for ``imas_strong``), backward, ``after_step``."""
    inp = imas_step_inputs(case["seed"])
    student, teacher_state = imas_models(case["seed"])
    fp = fingerprint(inp, student.state_dict(), teacher_state)
    cfg = imas_module.Imas.Config(tau=case["tau"], lambda_u=IMAS_LAMBDA_U, ema_decay=IMAS_EMA_CAP, group_size=4)
    method = imas_module.Imas(student, cfg, context(STEP_CLASSES, STEP_SIZE, case["iters_per_epoch"]))
    method.teacher.load_state_dict(teacher_state)
    S = STEP_SIZE
    labeled = Batch(raw=inp["raw_l"], image=normalize(inp["raw_l"]), valid=inp["label_l"] != 255,
                    label=inp["label_l"])
    unlabeled = Batch(raw=inp["raw_u"], image=normalize(inp["raw_u"]), valid=torch.ones(4, S, S, dtype=torch.bool))
    h = method.pseudo_labels(unlabeled).h  # no grad, eval mode, no random draw: what the step computes first
    with mock.patch.object(imas_module, "imas_strong", lambda raw, num_ops: inp["raw_u_strong"]):
        torch.manual_seed(case["rng_seed"])
        out = method.training_step(labeled, unlabeled, case["step"])
    out.loss.backward()
    res = {"inputs_fingerprint": fp, "loss": float(out.loss.detach()), "loss_x": float(out.logs["loss_x"]),
           "loss_u": float(out.logs["loss_u"]), "fired": bool(out.logs["cutmix_fired"]), "h": h.tolist(),
           **grads_and_buffers(student)}
    method.after_step(case["step"])
    t = method.teacher.module
    res["teacher"] = {n: summary(v, 4) for n, v in t.state_dict().items() if v.is_floating_point()}
    res["teacher_num_batches_tracked"] = {n: float(v) for n, v in t.state_dict().items()
                                          if n.endswith("num_batches_tracked")}
    return res

