"""``harness show``: a picture of what a trained network predicts, for a person to read at a glance.

One row per image, four columns: the image, its ground truth, the prediction of the evaluated network, and the
confident pseudo-label (pixels whose predicted-class probability is ≥ τ; the others in the void colour), each
titled with what it says about that image (pixel accuracy of the prediction; how many pixels the pseudo-label
keeps and how many of those are right). Masks use the registered dataset's palette (the official trainId
colours for Cityscapes, VOC's colour map for the others); a legend names the classes that appear.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import HarnessError

VOID = 255


def palette(dataset: str) -> np.ndarray:
    """256×3 uint8 colours of a registered dataset (its ``palette``, else VOC's colour map), index 255 = void."""
    from ..data.registry import get_dataset

    return get_dataset(dataset).colours()


def pick(n_items: int, count: int) -> list[int]:
    """``count`` indices spread evenly over the list (deterministic, first and last included)."""
    if count >= n_items:
        return list(range(n_items))
    return sorted({round(i * (n_items - 1) / max(count - 1, 1)) for i in range(count)})


def predict(method, item, protocol) -> dict:
    """Prediction, confidence and ground truth of one dataset item, as the evaluator sees them."""
    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize
    from ..evaluation.inference import center_crop_pair, predict_scores

    image, mask = item[0], item[1]
    dev = method.context.device
    x = normalize(image.to(dev)).unsqueeze(0)
    mask = mask.to(dev, dtype=torch.int64)
    if protocol.eval.mode == "center_crop":
        x, mask = center_crop_pair(x, mask, protocol.eval.crop)
    model = method.eval_model()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            scores = predict_scores(model, x, protocol.eval, protocol.num_classes, method.context.autocast)
    finally:
        model.train(was_training)
    prob = scores / scores.sum(dim=0, keepdim=True) if protocol.eval.mode.startswith("slide") else scores.softmax(0)
    conf, pred = prob.max(dim=0)
    raw = (x[0].cpu() * torch.tensor(IMAGENET_STD).view(3, 1, 1)
           + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)).clamp(0, 1)  # the (cropped) network input, shown
    return {"image": raw.permute(1, 2, 0).numpy(), "gt": mask.cpu().numpy(), "pred": pred.cpu().numpy(),
            "conf": conf.float().cpu().numpy()}


def render(rows: list[dict], class_names: list[str], dataset: str, tau: float, title: str, out: str | Path) -> Path:
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        raise HarnessError("pictures need matplotlib: pip install 'ssseg-harness[plot]'") from None
    pal = palette(dataset)
    n = len(rows)
    h, w = rows[0]["gt"].shape
    cell = 2.4 if max(h, w) <= 128 else 3.2
    aspect = h / w
    fig = Figure(figsize=(4 * cell, n * cell * aspect + 1.4), layout="constrained")
    axes = fig.subplots(n, 4, squeeze=False)
    present: set[int] = set()
    for r, row in enumerate(rows):
        gt, pred = row["gt"], row["pred"]
        valid = gt != VOID
        keep = row["conf"] >= tau
        pseudo = np.where(keep, pred, VOID)
        acc = float((pred[valid] == gt[valid]).mean()) if valid.any() else float("nan")
        kept = float(keep.mean())
        right = float((pred[keep & valid] == gt[keep & valid]).mean()) if (keep & valid).any() else float("nan")
        present |= set(np.unique(gt[valid]).tolist()) | set(np.unique(pred).tolist())
        panels = [(row["image"], f"{row['name']}\n"), (pal[gt], "ground truth\n"),
                  (pal[pred], f"prediction\n{acc:.0%} of pixels right"),
                  (pal[pseudo], f"pseudo-label (p ≥ {tau:g})\nkeeps {kept:.0%} of pixels, {right:.0%} right")]
        for c, (img, label) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(img, interpolation="nearest")
            ax.set_title(label, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [Patch(facecolor=pal[k] / 255.0, edgecolor="0.4", label=class_names[k])
               for k in sorted(present) if k < len(class_names)]
    handles.append(Patch(facecolor=pal[VOID] / 255.0, edgecolor="0.4", label="void / not kept"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=9)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def show_run(path: str, out: str, split: str = "val", images: int = 6, confidence: float | None = None,
             device: str = "auto", data_root: str | None = None, splits_dir: str | None = None) -> Path:
    """Write the picture of run ``path`` (a run directory or its ``latest.pt``) to ``out``."""
    from ..evaluation.checkpoint_eval import load_trained

    if images < 1:
        raise HarnessError(f"--images must be at least 1, got {images}")
    run = load_trained(path, None, data_root, splits_dir, device, split)
    method, protocol, dataset = run["method"], run["protocol"], run["dataset"]
    tau = confidence if confidence is not None else float(run["doc"]["method"]["config"].get("tau", 0.95))
    indices = pick(len(dataset), images)
    rows = []
    for i in indices:
        row = predict(method, dataset[i], protocol)
        row["name"] = f"{split} #{i}"
        rows.append(row)
    if len({r["gt"].shape for r in rows}) > 1:  # VOC images vary in size: pad to the largest with void
        H = max(r["gt"].shape[0] for r in rows)
        W = max(r["gt"].shape[1] for r in rows)
        for r in rows:
            ph, pw = H - r["gt"].shape[0], W - r["gt"].shape[1]
            r["image"] = np.pad(r["image"], ((0, ph), (0, pw), (0, 0)), constant_values=1.0)
            for k, v in (("gt", VOID), ("pred", VOID), ("conf", 0.0)):
                r[k] = np.pad(r[k], ((0, ph), (0, pw)), constant_values=v)
    doc = run["doc"]
    title = (f"{run['info'].name} on {protocol.id}, seed {doc['seed']}, step {run['step']} of {doc['total_steps']}: "
             f"{split} images")
    return render(rows, protocol.class_names, protocol.dataset, tau, title, out)
