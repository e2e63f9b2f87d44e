"""The ``harness`` command: run, eval, list, data (grid, status, table and plot live beside them)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import HarnessError


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="dataset root (default: $HARNESS_DATA_VOC / $HARNESS_DATA_CITYSCAPES; "
                                       "the synthetic set is generated in $HARNESS_CACHE)")
    p.add_argument("--splits-dir", help="folder with the split lists (default: $HARNESS_SPLITS, else fetched once "
                                        "from the public UniMatch repository and verified)")


def cmd_run(args) -> int:
    from .engine import StopRequested
    from .runner import RunSpec, execute, parse_set

    spec = RunSpec(method=args.method, protocol=args.protocol, seed=args.seed, overrides=parse_set(args.set),
                   out=args.out, data_root=args.data_root, splits_dir=args.splits_dir, device=args.device,
                   workers=args.workers, force=args.force, stop_after=args.stop_after,
                   progress=not args.no_progress)
    try:
        record = execute(spec)
    except StopRequested as stop:
        print(f"stopped after step {stop.step}; rerun the same command to resume", file=sys.stderr)
        return 0
    if os.environ.get("RANK", "0") != "0":  # one summary per multi-process run
        return 0
    sec = "".join(f"  {k.replace('_miou', '')} {v:.2f}" for k, v in record["final"].items() if k.endswith("_miou"))
    print(f"{record['method']} on {record['protocol']} seed {record['seed']}: final mIoU {record['final']['miou']:.2f}"
          f"{sec}  (best-on-val {record['best_on_val']['miou']:.2f} at step {record['best_on_val']['step']}; "
          f"{record['total_steps']} steps in {record['wall_time_s'] / 60:.1f} min on {record['device']})  "
          f"-> {record['run_dir']}")
    return 0


def cmd_eval(args) -> int:
    from .evaluation_cli import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, protocol_id=args.protocol, data_root=args.data_root,
                                 splits_dir=args.splits_dir, device=args.device)
    print(result["summary"])
    if args.per_class:
        for name, v in zip(result["class_names"], result["iou"]):
            print(f"  {name:>16s}  {'—' if v != v else f'{100 * v:.2f}'}")
    return 0


def cmd_list(args) -> int:
    from tabulate import tabulate

    from .plugins import get_plugin_manager

    pm = get_plugin_manager()
    if args.what == "methods":
        rows = [(m.name, f"{m.distribution} {m.version}".strip(), m.description) for m in pm.methods]
        print(tabulate(rows, headers=["method", "provided by", "description"], tablefmt="simple"))
    else:
        rows = [(p.id, p.dataset, p.family, p.labeled_count, p.unlabeled_count or "—", p.crop_size, p.eval.name,
                 p.total_iterations) for p in pm.protocols]
        print(tabulate(rows, headers=["protocol", "dataset", "family", "labeled", "unlabeled", "crop", "eval",
                                      "iterations"], tablefmt="simple"))
    for f in pm.failures:
        print(f"warning: plugin '{f.entry_point}' from {f.distribution} failed to load: {f.error}", file=sys.stderr)
    return 0


def cmd_data(args) -> int:
    if args.action == "synthetic":
        from .data.synthetic import ensure_synthetic

        root = ensure_synthetic(Path(args.root) if args.root else None)
        print(f"synthetic dataset ready at {root}")
        return 0
    if args.action == "splits":
        from .data.roots import fetch_all_splits

        dest = fetch_all_splits(args.dest, args.splits_dir)
        print(f"split lists verified in {dest}")
        return 0
    if args.action == "check":
        from .data.roots import check_root

        ok, text = check_root(args.protocol, args.data_root, args.splits_dir)
        print(text)
        return 0 if ok else 1
    if args.action == "prepare-cityscapes":
        from .data.cityscapes import prepare_cityscapes_trainids

        n = prepare_cityscapes_trainids(Path(args.data_root))
        print(f"wrote {n} *_gtFine_labelTrainIds.png files under {args.data_root}")
        return 0
    raise AssertionError(args.action)


def _load_results(sources):
    from .results import load_results

    rs = load_results(sources, warn=False)
    for w in rs.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return rs


def _emit(text: str, out: str | None) -> None:
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def cmd_table(args) -> int:
    from .tables import build_per_class, build_table, load_reported, render

    rs = _load_results(args.sources)
    if args.per_class:
        table = build_per_class(rs, args.per_class, metric=args.metric, methods=args.methods)
    else:
        reported = load_reported(args.reported_dir) if args.reported else None
        table = build_table(rs, metric=args.metric, delta=args.delta, reported=reported, methods=args.methods,
                            protocols=args.protocols, show_partial=args.partial, all_reported=args.all_reported)
    _emit(render(table, args.format), args.out)
    return 0


def cmd_plot(args) -> int:
    from .plots import plot

    rs = _load_results(args.sources)
    path = plot(rs, args.kind, args.out, protocol=args.protocol, methods=args.method, protocols=args.protocols,
                metric=args.metric, per_run=args.per_run)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="train one method on one protocol (resumes an unfinished run)")
    p.add_argument("--method", required=True)
    p.add_argument("--protocol", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="method setting (e.g. tau=0.9, cmim.enabled=false) or protocol setting "
                        "(budget.*, model.*, eval.*, supervised_loss.*); changes the run's settings hash")
    _add_data_args(p)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--out", default="runs", help="results root (default: ./runs)")
    p.add_argument("--workers", type=int, default=None, help="data loader workers (default: 0 on CPU, 8 on GPU)")
    p.add_argument("--force", action="store_true", help="retrain a finished run from scratch")
    p.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="checkpoint and stop after N steps of this session (rerun to continue)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("eval", help="evaluate a run's checkpoint (its evaluated network) on a protocol")
    p.add_argument("checkpoint", help="a run directory or its latest.pt")
    p.add_argument("--protocol", help="protocol to evaluate on (default: the run's own)")
    _add_data_args(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--per-class", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("list", help="list methods or protocols")
    p.add_argument("what", choices=["methods", "protocols"])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("data", help="prepare and check datasets and split lists")
    dsub = p.add_subparsers(dest="action", required=True)
    d = dsub.add_parser("synthetic", help="generate the built-in synthetic dataset (deterministic, cached)")
    d.add_argument("--root", help="where to write it (default: $HARNESS_CACHE/synthetic/v<version>)")
    d = dsub.add_parser("splits", help="fetch the standard split lists once and verify their checksums")
    d.add_argument("--dest", help="cache folder (default: $HARNESS_CACHE/splits/<commit>)")
    d.add_argument("--splits-dir", help="verify a local folder instead of fetching")
    d = dsub.add_parser("check", help="check a dataset root against a protocol's split lists")
    d.add_argument("--protocol", required=True)
    _add_data_args(d)
    d = dsub.add_parser("prepare-cityscapes", help="write *_labelTrainIds.png from the official *_labelIds.png")
    d.add_argument("--data-root", required=True)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("table", help="paper-style table of finished runs (mean ± std over seeds, reported rows)")
    p.add_argument("sources", nargs="+", metavar="ROOT_OR_MANIFEST",
                   help="results folder(s) searched for record.json, or a grid manifest")
    p.add_argument("--metric", choices=["final", "best"], default="final",
                   help="final checkpoint (default) or best-on-val (selected on the evaluation set)")
    p.add_argument("--format", choices=["markdown", "latex", "csv"], default="markdown")
    p.add_argument("--delta", action="store_true", help="show Δ vs the supervised row of the same protocol")
    p.add_argument("--per-class", metavar="PROTOCOL", help="per-class IoU table of one protocol instead")
    p.add_argument("--reported", action=argparse.BooleanOptionalAction, default=True,
                   help="add matching reported reference rows from benchmarks/reported (default: on)")
    p.add_argument("--reported-dir", help="folder of reported-number CSVs (default: benchmarks/reported)")
    p.add_argument("--all-reported", action="store_true",
                   help="also show reported log rows with non-default hyper-parameters")
    p.add_argument("--partial", action="store_true",
                   help="show cells with fewer seeds than usual (marked †) instead of —")
    p.add_argument("--methods", nargs="+", metavar="M", help="only these methods (shell patterns allowed)")
    p.add_argument("--protocols", nargs="+", metavar="P", help="only these protocols (shell patterns allowed)")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("plot", help="plots of finished runs (PNG; needs matplotlib, the 'plot' extra)")
    p.add_argument("sources", nargs="+", metavar="ROOT_OR_MANIFEST")
    p.add_argument("--kind", required=True, choices=["miou-vs-labels", "curves", "per-class"])
    p.add_argument("--protocol", help="protocol (curves, per-class; required when several are present)")
    p.add_argument("--protocols", nargs="+", metavar="P", help="miou-vs-labels: only these protocols")
    p.add_argument("--method", action="append", metavar="M",
                   help="only this method (repeatable; curves take one)")
    p.add_argument("--metric", choices=["final", "best"], default="final")
    p.add_argument("--per-run", action="store_true", help="curves: one line per seed instead of mean ± std band")
    p.add_argument("--out", required=True, help="output image, e.g. plot.png")
    p.set_defaults(func=cmd_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; an unfinished run resumes from its last checkpoint when rerun", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
