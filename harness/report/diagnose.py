"""Why a semi-supervised method does or does not beat supervised, per class: ``harness diagnose``.

Thresholded self-training reinforces what the reference network (the same-encoder supervised run) already
predicts with confidence. Per ground-truth class, this module puts side by side how many of the class's
unlabeled pixels that network keeps at τ with the right label and with a wrong one (and which wrong label), and
each method's IoU change on the class against the reference (mean over seeds). Where kept-wrong is close to or
above kept-right, the unsupervised loss trains the student on the error, and the method tends to lose the class.

The reference's confident predictions come from evaluating its checkpoint on the protocol's unlabeled list
(whose masks the built-in data has); the result is cached in the run folder as
``diagnostics/unlabeled-tau<τ>.json`` so that it can be committed with the records and read again without the
checkpoint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import HarnessError
from ..evaluation.metrics import pseudo_label_quality

__all__ = ["class_diagnostics", "reference_quality", "diagnose", "render_diagnosis"]


def class_diagnostics(full: np.ndarray, confident: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Per ground-truth class (rows of the K×K matrices, columns = prediction): percent of its pixels kept at τ
    with the right label (``kept_right``) and with a wrong one (``kept_wrong``), the most frequent wrong kept
    label (``main_wrong``, None if nothing wrong was kept) and ``ratio`` = kept_right / kept_wrong (inf when
    nothing wrong was kept, NaN for a class without pixels)."""
    q = pseudo_label_quality(full, confident)
    conf = np.asarray(confident, dtype=np.float64)
    out = []
    for c, name in enumerate(class_names):
        right, wrong = 100 * float(q["recall"][c]), 100 * float(q["wrong"][c])
        off = conf[c].copy()
        off[c] = 0
        main = class_names[int(off.argmax())] if off.sum() > 0 else None
        ratio = math.nan if math.isnan(right) else (math.inf if wrong == 0 else right / wrong)
        out.append({"class": name, "kept_right": right, "kept_wrong": wrong, "main_wrong": main, "ratio": ratio})
    return out


def _cache_path(run_dir: Path, tau: float) -> Path:
    return run_dir / "diagnostics" / f"unlabeled-tau{tau:g}.json"


def reference_quality(run_dir: str | Path, tau: float, data_root: str | None = None,
                      splits_dir: str | None = None, device: str = "cpu") -> dict[str, Any]:
    """The run's confident predictions on its protocol's unlabeled list: the cached JSON, else evaluated from
    the run's checkpoint (then cached)."""
    run_dir = Path(run_dir)
    cache = _cache_path(run_dir, tau)
    if cache.is_file():
        return json.loads(cache.read_text())
    if not (run_dir / "latest.pt").is_file():
        raise HarnessError(f"{run_dir}: no {cache.relative_to(run_dir)} and no checkpoint (latest.pt) to compute it "
                           f"from; run `harness diagnose` where the grid ran, before its checkpoints are removed")
    from ..evaluation.checkpoint_eval import evaluate_checkpoint

    res = evaluate_checkpoint(str(run_dir), data_root=data_root, splits_dir=splits_dir, device=device,
                              split="unlabeled", confidence=tau)
    doc = {"run_dir": run_dir.name, "tau": tau, "split": "unlabeled", "num_images": res["num_images"],
           "class_names": list(res["class_names"]), "miou": res["miou"], "summary": res["summary"],
           "confusion_matrix": np.asarray(res["confusion_matrix"]).tolist(),
           "confident_matrix": np.asarray(res["confident_matrix"]).tolist()}
    cache.parent.mkdir(exist_ok=True)
    tmp = cache.with_suffix(".json.partial")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(cache)
    return doc


def diagnose(runs: pd.DataFrame, protocol: str, reference: str = "supervised", seed: int = 0, tau: float = 0.95,
             methods: Sequence[str] | None = None, **eval_kwargs) -> dict[str, Any]:
    """Rows per class: the reference's kept-right / kept-wrong at τ (its ``seed`` run) and each method's IoU Δ
    against the reference (mean over seeds, final checkpoints); plus each method's mIoU Δ."""
    from .results import per_class

    table, classes = per_class(runs, protocol)
    if methods:
        table = table[table["method"].isin([reference, *methods])]
    hashes = table.groupby("method")["settings_hash"].nunique()
    if (hashes > 1).any():
        many = ", ".join(hashes[hashes > 1].index)
        raise HarnessError(f"{protocol}: several settings of {many} in these results; pass the folder or manifest "
                           f"of one grid")
    ref = table[table["method"] == reference]
    if ref.empty:
        raise HarnessError(f"no finished '{reference}' run of {protocol} in these results (the reference row)")
    sub = runs[(runs["protocol"] == protocol) & (runs["method"] == reference) & (runs["seed"] == seed)]
    if sub.empty:
        raise HarnessError(f"no finished '{reference}' run of {protocol} with seed {seed}; choose --seed")
    q = reference_quality(sub.iloc[0]["run_dir"], tau, **eval_kwargs)
    rows = class_diagnostics(np.array(q["confusion_matrix"]), np.array(q["confident_matrix"]), q["class_names"])
    ref_row = ref.iloc[0]
    others = [r for _, r in table.iterrows() if r["method"] != reference]
    for row in rows:
        c = row["class"]
        row["reference_iou"] = float(ref_row[c]) if c in ref_row else math.nan
        row["delta"] = {r["method"]: float(r[c] - ref_row[c]) if c in r else math.nan for r in others}
    rows.sort(key=lambda r: -r["ratio"] if not math.isnan(r["ratio"]) else math.inf)
    return {"protocol": protocol, "reference": reference, "seed": seed, "tau": tau, "classes": rows,
            "reference_miou": float(ref_row["mIoU"]), "reference_n": int(ref_row["n"]),
            "miou_delta": {r["method"]: float(r["mIoU"] - ref_row["mIoU"]) for r in others},
            "n": {r["method"]: int(r["n"]) for r in others}, "pixels": q["summary"]}


def _fmt(x: float, signed: bool = False) -> str:
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞"
    return f"{x:+.1f}" if signed else f"{x:.1f}"


def render_diagnosis(d: dict[str, Any], fmt: str = "markdown") -> str:
    """A markdown (or CSV) table: one row per class, sorted by the reference's right-to-wrong ratio."""
    methods = list(d["miou_delta"])
    ref = d["reference"]
    head = ["class", f"{ref} kept right %", "kept wrong %", "right:wrong", "main wrong label", f"{ref} IoU",
            *[f"{m} − {ref}" for m in methods]]
    body = [[r["class"], _fmt(r["kept_right"]), _fmt(r["kept_wrong"]), _fmt(r["ratio"]), r["main_wrong"] or "—",
             _fmt(r["reference_iou"]), *[_fmt(r["delta"][m], signed=True) for m in methods]] for r in d["classes"]]
    body.append(["mIoU", "", "", "", "", _fmt(d["reference_miou"]), *[_fmt(d["miou_delta"][m], True) for m in methods]])
    if fmt == "csv":
        return pd.DataFrame(body, columns=head).to_csv(index=False)
    seeds = ", ".join(f"{m} {n}" for m, n in d["n"].items())
    deltas = (f"; IoU Δ against {ref} (seeds: {ref} {d['reference_n']}, {seeds}) as the difference of means over "
              f"seeds, final checkpoints" if methods else "")
    lines = [f"Protocol {d['protocol']}: pixels of each class that the {ref} run (seed {d['seed']}) predicts on the "
             f"unlabeled images with confidence ≥ {d['tau']:g}, kept with the right or a wrong label{deltas}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in body]
    return "\n".join(lines) + "\n"
