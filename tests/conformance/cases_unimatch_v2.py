"""The UniMatch V2 step cases: seeded inputs, and the harness's side of the comparison with the official code.

``benchmarks/conformance/golden_unimatch_v2.py`` runs the official ``unimatch_v2.py`` statements on these inputs
and writes ``golden/unimatch_v2_step.json``; ``test_unimatch_v2_official.py`` runs the harness on the same inputs
and compares. The official step runs on the harness's network (as the UniMatch V1 step does, see
``benchmarks/conformance/README.md``): the networks themselves are compared elsewhere (the DeepLabV3+ in
``golden/unimatch.json``, UniMatch V2's DPT in ``golden/unimatch_v2_model.json``). One step is:

teacher pseudo-labels on the weak view → the strong views pasted from the reversed batch → the student's two
forwards (the second with complementary dropout) → the loss → backward → one AdamW step with UniMatch V2's two
groups (backbone lr, everything else at 40 × lr, weight decay 0.01) → the EMA update of the teacher at step
``iters``. Compared: the loss terms and mask ratio, every parameter's gradient, the student's parameters after the
AdamW step and the teacher's after the EMA update.
"""

from __future__ import annotations

import torch

from harness.train.engine import build_optimizer
from harness.method import Batch
from harness.models import build_model
from harness.protocols import ModelSpec
from methods.unimatch_v2 import FixMatchV2, UniMatchV2, reversed_partner
from harness.augment import normalize, unimatch_cutmix_boxes
from tests.conformance.cases import (GOLDEN_DIR, STEP_CLASSES, STEP_SIZE, TINY, context, fingerprint, gen,  # noqa: F401
                                     raw_images, seeded_state, summary)

Tensor = torch.Tensor

LR, LR_MULTI, WEIGHT_DECAY = 5e-6, 40.0, 0.01  # configs/*.yaml and the AdamW call of unimatch_v2.py

MODELS = {
    "deeplab_tiny": TINY.model_dump(),  # BatchNorm: the separate labeled forward matters for the running statistics
    "vit_tiny": {"backbone": "vit_tiny", "pretrained": False},
}


# fixmatch.py (UniMatch V2's FixMatch): the first strong view and its box, on both networks
FIXMATCH_CASES = [
    {"name": "fixmatch_deeplab_tau_0.5", "model": "deeplab_tiny", "seed": 41, "tau": 0.5, "n_u": 3, "iters": 5,
     "dropout_seed": 5, "fixmatch": True},
    # iters 0 (the teacher becomes the student): at α = 2/3 the ViT's LayerNorm weights (≈ 1) move by ~1e-5, and
    # the two float32 orders of α·T + (1 − α)·S differ there by one rounding step, 1e-2 of that change
    {"name": "fixmatch_vit_tau_0.295", "model": "vit_tiny", "seed": 42, "tau": 0.295, "n_u": 4, "iters": 0,
     "dropout_seed": 6, "fixmatch": True},
]


def model_spec(case: dict) -> ModelSpec:
    return ModelSpec(**MODELS[case["model"]])

# iters: the step index of the EMA update (α = min(1 − 1/(iters + 1), 0.996)); n_u: unlabeled images (an odd
# batch pairs its middle image with itself in the reversed-batch CutMix)
STEP_CASES = [
    {"name": "deeplab_tau_0.5", "model": "deeplab_tiny", "seed": 31, "tau": 0.5, "n_u": 4, "iters": 7,
     "dropout_seed": 1},
    {"name": "deeplab_tau_0_odd", "model": "deeplab_tiny", "seed": 32, "tau": 0.0, "n_u": 3, "iters": 0,
     "dropout_seed": 2},
    # the random ViT's confidences lie in 0.255-0.27 (4 classes): τ = 0.262 keeps about half of the pixels
    {"name": "vit_tau_0.262", "model": "vit_tiny", "seed": 33, "tau": 0.262, "n_u": 4, "iters": 300,
     "dropout_seed": 3},
    {"name": "vit_tau_0", "model": "vit_tiny", "seed": 34, "tau": 0.0, "n_u": 2, "iters": 3, "dropout_seed": 4},
]


def model_pair(case: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(student, teacher) with seeded weights that differ, as after some training: ``seeded_state`` for the
    DeepLabV3+; the ViT's own initialisation under a seed (Kaiming-uniform everywhere, ``seeded_state``'s
    choice for ResNets, gives it logits in the hundreds)."""
    spec = model_spec(case)
    models = []
    for seed in (case["seed"], case["seed"] + 500):
        torch.manual_seed(seed)
        model = build_model(spec, STEP_CLASSES)
        if case["model"] == "deeplab_tiny":
            model.load_state_dict(seeded_state(model, seed))
        models.append(model)
    return models[0].train(), models[1].eval()


def step_inputs(case: dict) -> dict[str, Tensor]:
    """Tensors as the official loader delivers them: 2 labeled and ``n_u`` unlabeled 32×32 crops.

    ``mask_x``: labels, 255 on padding (rows ≥ 26 of labeled image 1); ``ignore_mask``: 255 on padding (rows ≥ 24
    of unlabeled image 0, columns ≥ 20 of the last one); ``cutmix_box*``: float 0/1 boxes, box 2 of image 1 empty."""
    S, K, n, seed = STEP_SIZE, STEP_CLASSES, case["n_u"], case["seed"]
    raw_x = raw_images(2, (S, S), seed)
    mask_x = torch.randint(0, K, (2, S, S), generator=gen(seed + 1))
    mask_x[1, 26:] = 255
    raw_x[1, :, 26:] = 0
    raw_w = raw_images(n, (S, S), seed + 2)
    ignore = torch.zeros(n, S, S, dtype=torch.long)
    ignore[0, 24:] = 255
    raw_w[0, :, 24:] = 0
    ignore[n - 1, :, 20:] = 255
    raw_w[n - 1, :, :, 20:] = 0
    box1 = unimatch_cutmix_boxes(n, (S, S), 1.0, gen(seed + 4)).float()
    box2 = unimatch_cutmix_boxes(n, (S, S), 1.0, gen(seed + 5)).float()
    box2[1] = 0
    return {"img_x": normalize(raw_x), "mask_x": mask_x, "img_u_w": normalize(raw_w),
            "img_u_s1": normalize(raw_images(n, (S, S), seed + 6)),
            "img_u_s2": normalize(raw_images(n, (S, S), seed + 7)),
            "ignore_mask": ignore, "cutmix_box1": box1, "cutmix_box2": box2}


def snapshot(model: torch.nn.Module) -> dict[str, Tensor]:
    """Every parameter and floating-point buffer, copied (the state before an update)."""
    return {n: t.detach().clone() for n, t in model.state_dict().items() if t.is_floating_point()}


def outputs(losses: dict, grads: dict, student: torch.nn.Module, student_before: dict, teacher: torch.nn.Module,
            teacher_before: dict) -> dict:
    """The compared quantities: losses, gradient summaries, and the changes of the student (AdamW step, BatchNorm
    statistics of the forwards) and of the teacher (EMA update). Changes, not values: a first AdamW step moves a
    weight by about lr, far below a tolerance relative to the weight itself."""
    def changes(model, before):
        return {n: summary(t.detach() - before[n], 4) for n, t in model.state_dict().items() if n in before}

    return {**losses, "grads": grads, "student_change": changes(student, student_before),
            "teacher_change": changes(teacher, teacher_before)}


def harness_step(case: dict) -> dict:
    """``UniMatchV2.step_from_views`` on the case's strong views and boxes (pasted by ``UniMatchV2.paste``), or
    ``FixMatchV2.step_from_view`` on the first of them, backward, the harness's AdamW (``build_optimizer``, kind
    'adamw') and ``after_step(iters)``."""
    inp = step_inputs(case)
    student, teacher = model_pair(case)
    fp = fingerprint(inp, student.state_dict(), teacher.state_dict())
    cls = FixMatchV2 if case.get("fixmatch") else UniMatchV2
    method = cls(student, cls.Config(tau=case["tau"]), context(STEP_CLASSES, STEP_SIZE, spec=model_spec(case)))
    method.teacher.module.load_state_dict(teacher.state_dict())
    n = case["n_u"]
    raw = torch.zeros(n, 3, STEP_SIZE, STEP_SIZE, dtype=torch.uint8)  # never read: the strong views are given
    labeled = Batch(raw=raw[:2], image=inp["img_x"], valid=inp["mask_x"] != 255, label=inp["mask_x"])
    unlabeled = Batch(raw=raw, image=inp["img_u_w"], valid=inp["ignore_mask"] != 255)
    box1, box2 = inp["cutmix_box1"].bool(), inp["cutmix_box2"].bool()
    optimizer = build_optimizer(student, method, LR, LR_MULTI, 0.9, WEIGHT_DECAY, kind="adamw")
    student_before, teacher_before = snapshot(student), snapshot(method.teacher.module)
    torch.manual_seed(case["dropout_seed"])
    if case.get("fixmatch"):
        out = method.step_from_view(labeled, unlabeled, reversed_partner(inp["img_u_s1"], box1), box1)
    else:
        out = method.step_from_views(labeled, unlabeled, method.paste(inp["img_u_s1"], inp["img_u_s2"], box1, box2))
    optimizer.zero_grad()
    out.loss.backward()
    grads = {n: summary(p.grad, 4) for n, p in student.named_parameters() if p.grad is not None}
    optimizer.step()
    method.after_step(case["iters"])
    logs = out.logs
    losses = {"inputs_fingerprint": fp, "loss": float(out.loss.detach()), "loss_x": float(logs["loss_x"]),
              "loss_s": float(logs["loss_s"]), "mask_ratio": float(logs["mask_ratio"])}
    if not case.get("fixmatch"):
        losses.update(loss_s1=float(logs["loss_s1"]), loss_s2=float(logs["loss_s2"]))
    return outputs(losses, grads, student, student_before, method.teacher.module, teacher_before)
