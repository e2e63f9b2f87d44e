"""Write harness/resources/reported/unimatch_v2_logs.csv from UniMatch V2's released training logs.

    python scripts/reported_unimatch_v2.py GIT_DIR [--out harness/resources/reported/unimatch_v2_logs.csv]

GIT_DIR is a clone (bare or not) of github.com/LiheYoung/UniMatch-V2; the logs are read at COMMIT with
``git show``, so the rows name the exact file and commit they come from. Read: the main-table logs
(``table01``–``table04``: labeled-only and UniMatch V2 on DINOv2-S/B) and ``table05`` (FixMatch and UniMatch V1
on DINOv2-B). Each log gives two rows: the best evaluation (UniMatch V2's own selection, on the validation set) and
the final one (the harness's headline rule), of the EMA model where the method has one (UniMatch V2's README
reports the EMA model's best). A log that stops before its configured last epoch gives no final row.
The whole file is generated; edit this script, not the CSV.
"""

from __future__ import annotations

import argparse
import ast
import csv
import re
import subprocess
import sys
from pathlib import Path

COMMIT = "f6afb4dfca2d9dcbcee2307e97717954ca75c0ba"
COLUMNS = ["dataset", "family", "labeled", "method", "miou", "backbone", "crop", "os", "eval_mode", "selection",
           "source_type", "source", "note"]

# label key of a log name → labeled count, per dataset; "all" is the whole training list
COUNTS = {
    "pascal": {"92": 92, "183": 183, "366": 366, "732": 732, "1464": 1464, "all_": 10582},
    "cityscapes": {"1_16": 186, "1_8": 372, "1_4": 744, "1_2": 1488, "all_": 2975},
    "ade20k": {"1_64": 316, "1_32": 631, "1_16": 1263, "1_8": 2526, "1_4": 5052, "1_2": 10105, "all_": 20210},
    "coco": {"1_512": 232, "1_256": 463, "1_128": 925, "1_64": 1849, "1_32": 3697, "all_": 118287},
}
DATASET = {"pascal": "voc", "cityscapes": "cityscapes", "ade20k": "ade20k", "coco": "coco"}
METHOD = {"labeled_only": "SupBaseline", "unimatch_v2": "UniMatch V2", "fixmatch": "FixMatch",
          "unimatch_v1": "UniMatch"}
_NAME = re.compile(r"^table0([1-5])-(?:(fixmatch|unimatch_v1)_)?(pascal|cityscapes|ade20k|coco)_"
                   r"(?:(labeled_only|unimatch_v2)_)?(.+?)labels_(dinov2_(?:small|base))\.log$")
_EVAL = re.compile(r"Evaluation (\w+) \*+ >>>> MeanIoU: ([0-9.]+)(?:, EMA: ([0-9.]+))?")


def family(dataset: str, labeled: int) -> str:
    if dataset == "pascal":
        return "voc-classic" if labeled <= 1464 else "voc-blended"
    return {"cityscapes": "cityscapes", "ade20k": "ade20k", "coco": "coco-unimatch"}[dataset]


def eval_mode(mode: str, crop: int) -> str:
    # 'original': the whole image, resized to the nearest multiple of 14 (DINOv2's patch) and the logits resized
    # back; 'sliding_window': windows of the crop size, stride 2/3 of it, kept inside the image (the harness's
    # `slide` mode, named slide<window>).
    return {"original": "whole_resize14", "sliding_window": f"slide{crop}"}[mode]


def parse_log(text: str) -> tuple[dict, list[tuple[str, float, float | None]]]:
    start = text.index("{")
    depth = 0
    for end, ch in enumerate(text[start:], start):  # the printed config dict nests dicts: match the braces
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            break
    cfg = ast.literal_eval(text[start:end + 1])
    evals = [(m.group(1), float(m.group(2)), float(m.group(3)) if m.group(3) else None)
             for m in _EVAL.finditer(text)]
    return cfg, evals


def rows_for(name: str, text: str) -> list[dict]:
    m = _NAME.match(name)
    if m is None:
        return []
    _, v1_method, ds, v2_method, key, backbone = m.groups()
    method = METHOD[v1_method or v2_method]
    labeled = COUNTS[ds]["all_" if key == "all_" else key]
    cfg, evals = parse_log(text)
    if not evals:
        return []
    ema = evals[0][2] is not None
    scores = [e[2] if ema else e[1] for e in evals]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))  # first epoch reaching the best
    who = " (EMA)" if ema else ""
    batch = f"{cfg['batch_size']}" if method == "SupBaseline" else f"{cfg['batch_size']} + {cfg['batch_size']}"
    setting = (f"DPT head; {cfg['epochs']} epochs; {batch} images per GPU on "
               f"{cfg.get('ngpus', 4)} GPUs; AdamW lr {cfg['lr']:g} (head x{cfg.get('lr_multi', 40.0):g}); backbone "
               f"{'frozen' if cfg.get('lock_backbone') else 'fine-tuned'}; labeled list {cfg['labeled_id_path']}")
    common = dict(dataset=DATASET[ds], family=family(ds, labeled), labeled=labeled, method=method, backbone=backbone,
                  crop=cfg["crop_size"], os="", eval_mode=eval_mode(evals[0][0], cfg["crop_size"]), source_type="log",
                  source="UniMatch V2 released logs")
    where = f"training-logs/{name} at LiheYoung/UniMatch-V2@{COMMIT[:8]}"
    ends = "" if len(evals) == cfg["epochs"] else f" (the log ends there, of {cfg['epochs']} configured)"
    out = [dict(common, miou=f"{scores[best]:.2f}", selection=f"best-epoch{who}",
                note=f"{where}; best at epoch {best} (0-based) of {len(evals)} evaluated{ends}; {setting}")]
    if len(evals) == cfg["epochs"]:
        out.append(dict(common, miou=f"{scores[-1]:.2f}", selection=f"final{who}",
                        note=f"{where}; last epoch ({len(evals) - 1}); {setting}"))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("git_dir", type=Path)
    ap.add_argument("--out", type=Path, default=Path("harness/resources/reported/unimatch_v2_logs.csv"))
    args = ap.parse_args(argv)

    def git(*cmd: str) -> str:
        return subprocess.run(["git", "--git-dir", str(args.git_dir), *cmd], check=True, capture_output=True,
                              text=True).stdout

    names = [p.split("/", 1)[1] for p in git("ls-tree", "--name-only", "-r", COMMIT, "training-logs").split()]
    rows = []
    for name in sorted(names):
        if _NAME.match(name):
            rows += rows_for(name, git("show", f"{COMMIT}:training-logs/{name}"))
    rows.sort(key=lambda r: (list(DATASET.values()).index(r["dataset"]), r["method"], r["backbone"], r["labeled"],
                             r["selection"]))
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} rows from {len(set(r['note'].split(';')[0] for r in rows))} logs → {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
