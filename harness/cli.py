"""The ``harness`` command: run, eval, list, data (grid, status, table and plot live beside them)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import typing
from pathlib import Path

from .errors import ConfigError, HarnessError


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="dataset root (default: $HARNESS_DATA_<DATASET>, e.g. $HARNESS_DATA_VOC, "
                                       "$HARNESS_DATA_ADE20K; `harness list datasets` names each variable; the "
                                       "synthetic set is generated in $HARNESS_CACHE)")
    p.add_argument("--splits-dir", help="folder with the split lists (default: $HARNESS_SPLITS, else fetched once "
                                        "from the dataset's public repository, UniMatch or UniMatch V2, and verified)")


def run_spec_from_args(args):
    """The RunSpec of ``harness run``: ``--config`` file ← command line (flags and each ``--set`` win)."""
    from .train.run_file import RunFile, read_run_file
    from .train.run import RunSpec, parse_set

    file = read_run_file(args.config) if args.config else RunFile(Path())
    where = f"--config {args.config}"
    overrides = dict(file.settings)
    origins = {key: where for key in overrides}
    for key, value in parse_set(args.set).items():  # the command line wins over the file
        overrides[key], origins[key] = value, "--set"
    if args.precision is not None:  # fp32, the default, names the default run folder (normalised settings)
        overrides["run.precision"], origins["run.precision"] = args.precision, "--precision"
    method, protocol = args.method or file.method, args.protocol or file.protocol
    for flag, value in (("--method", method), ("--protocol", protocol)):
        if not value:
            raise ConfigError(f"harness run needs {flag} (on the command line or as '{flag[2:]}:' in a --config file)")
    seed = args.seed if args.seed is not None else (file.seed if file.seed is not None else 0)
    return RunSpec(method=method, protocol=protocol, seed=seed, overrides=overrides, origins=origins,
                   out=args.out, data_root=args.data_root, splits_dir=args.splits_dir, device=args.device,
                   workers=args.workers, force=args.force, stop_after=args.stop_after,
                   progress=not args.no_progress, checkpoint_every=args.checkpoint_every,
                   loggers=tuple(args.logger), log_every=args.log_every)


def cmd_run(args) -> int:
    from .train.engine import StopRequested
    from .train.run import execute

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be at least 1 (torch's CPU threads for this run), got {args.threads}; "
                              f"leave it out for torch's default, or use 1 per run when several share a machine")
        import torch

        torch.set_num_threads(args.threads)
    spec = run_spec_from_args(args)
    try:
        record = execute(spec)
    except StopRequested as stop:
        why = f" on {stop.reason}" if stop.reason else ""
        if os.environ.get("RANK", "0") == "0":
            print(f"stopped{why} after step {stop.step} with its checkpoint written; rerun the same command to "
                  f"resume", file=sys.stderr)
        return 128 + int(getattr(signal, stop.reason)) if stop.reason else 0
    if os.environ.get("RANK", "0") != "0":  # one summary per multi-process run
        return 0
    sec = "".join(f"  {k.replace('_miou', '')} {v:.2f}" for k, v in record["final"].items() if k.endswith("_miou"))
    print(f"{record['method']} on {record['protocol']} seed {record['seed']}: final mIoU {record['final']['miou']:.2f}"
          f"{sec}  (best-on-val {record['best_on_val']['miou']:.2f} at step {record['best_on_val']['step']}; "
          f"{record['total_steps']} steps in {record['wall_time_s'] / 60:.1f} min on {record['device']})  "
          f"-> {record['run_dir']}")
    return 0


def cmd_eval(args) -> int:
    from .evaluation.checkpoint_eval import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, protocol_id=args.protocol, data_root=args.data_root,
                                 splits_dir=args.splits_dir, device=args.device, split=args.split,
                                 confidence=args.confidence, bootstrap=args.bootstrap)
    if args.json:  # before printing, so that a closed pipe (`| head`) cannot lose it
        from .records import write_json
        write_json(Path(args.json), {k: v for k, v in result.items() if k != "summary"})
    print(result["summary"])
    if args.per_class or args.confidence is not None:
        print(_per_class_table(result))
    if args.confusion:
        print(_confusion_table(result["confusion_matrix"], result["class_names"]))
    if args.json:
        print(f"wrote {args.json}")
    return 0


def _probability(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return v


def _resamples(text: str) -> int:
    """--bootstrap: 0 (off) or a number of resamples >= 2 (one resample has no spread)."""
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v != 0 and v < 2:
        raise argparse.ArgumentTypeError(f"expected 0 (off) or a number of resamples >= 2, got {text!r}")
    return v


def _pct(v: float) -> str:
    return "—" if v != v else f"{100 * v:.1f}"


def _per_class_table(result: dict) -> str:
    """Per-class IoU, and with ``--confidence`` what the thresholded predictions would give as pseudo-labels."""
    from tabulate import tabulate

    names = result["class_names"]
    if "pseudo_labels" not in result:
        return tabulate([(n, _pct(v)) for n, v in zip(names, result["iou"])], headers=["class", "IoU"])
    q = result["pseudo_labels"]
    conf = result["confident_matrix"]
    rows = []
    for c, name in enumerate(names):
        wrong = conf[c].copy()
        wrong[c] = 0
        worst = f"{names[int(wrong.argmax())]} ({_pct(wrong.max() / max(conf[c].sum(), 1))})" if wrong.any() else "—"
        rows.append((name, _pct(result["iou"][c]), _pct(q["precision"][c]), _pct(q["share"][c]),
                     _pct(q["recall"][c]), _pct(q["wrong"][c]), worst))
    head = (f"pseudo-labels at confidence >= {result['confidence']}: {_pct(q['coverage'])}% of the pixels kept, "
            f"{_pct(q['accuracy'])}% of them correct (all pixels: {_pct(q['accuracy_all'])}% correct)\n")
    # precision and share are per predicted class (the pseudo-label), the rest per ground-truth class
    return head + tabulate(rows, headers=["class", "IoU", "kept precision", "share of kept", "% kept right",
                                          "% kept wrong", "main wrong label (% of its kept)"])


def _confusion_table(matrix, names) -> str:
    """Row-normalised confusion matrix in percent (rows ground truth, columns prediction)."""
    from tabulate import tabulate

    rows = []
    for c, name in enumerate(names):
        total = matrix[c].sum()
        rows.append([name, *(_pct(v / total) if total else "—" for v in matrix[c])])
    return "confusion, % of each ground-truth class (rows) predicted as (columns):\n" + tabulate(
        rows, headers=["gt \\ pred", *names])


def cmd_show(args) -> int:
    from .report.pictures import show_run

    out = show_run(args.run, args.out, split=args.split, images=args.images, confidence=args.confidence,
                   device=args.device, data_root=args.data_root, splits_dir=args.splits_dir)
    print(f"wrote {out}")
    return 0


def cmd_list(args) -> int:
    from tabulate import tabulate

    from .plugins import get_plugin_manager

    pm = get_plugin_manager()
    for f in pm.failures:  # first, so that a long table cannot hide them
        print(f"warning: {f.describe()}", file=sys.stderr)
    if args.what == "settings":
        print(_settings_table(pm, args.name, args.protocol))
        return 0
    if args.name or args.protocol:
        raise HarnessError(f"'harness list {args.what}' takes no name or --protocol (they are for 'list settings')")
    if args.what == "methods":
        rows = [(m.name, f"{m.distribution} {m.version}".strip(), m.description) for m in pm.methods]
        print(tabulate(rows, headers=["method", "provided by", "description"], tablefmt="simple"))
    elif args.what == "encoders":
        rows = [(e.name, pm.encoders.owner(e.name), e.family, e.description) for e in pm.encoders]
        print(tabulate(rows, headers=["encoder", "registered by", "decoder", "description"], tablefmt="simple"))
    elif args.what == "datasets":
        rows = [(d.name, pm.datasets.owner(d.name), d.num_classes, d.root_env, d.description) for d in pm.datasets]
        print(tabulate(rows, headers=["dataset", "registered by", "classes", "root variable", "description"],
                       tablefmt="simple"))
    else:
        rows = [(p.id, p.dataset, p.family, p.labeled_count, p.unlabeled_count or "—", p.crop_size, p.eval.name,
                 p.total_iterations) for p in pm.protocols]
        print(tabulate(rows, headers=["protocol", "dataset", "family", "labeled", "unlabeled", "crop", "eval",
                                      "iterations"], tablefmt="simple"))
    return 0


def _setting_rows(model_cls, defaults: dict, resolved: dict | None, prefix: str = "") -> list[tuple]:
    """One row per leaf setting of a pydantic config class: key, type, default, resolved value, description."""
    import pydantic

    rows = []
    for name, field in model_cls.model_fields.items():
        key = prefix + name
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, pydantic.BaseModel):
            rows += _setting_rows(ann, defaults.get(name, {}), None if resolved is None else resolved.get(name, {}),
                                  key + ".")
            continue
        if typing.get_origin(ann) is typing.Literal:
            type_name = " | ".join(str(a) for a in typing.get_args(ann))
        else:
            type_name = str(ann).replace("typing.", "") if typing.get_args(ann) else getattr(ann, "__name__", ann)
        row = [key, type_name, defaults.get(name)]
        if resolved is not None:
            value = resolved.get(name)
            row.append(f"{value} *" if value != defaults.get(name) else value)
        rows.append((*row, field.description or ""))
    return rows


def _settings_table(pm, method: str | None, protocol_id: str | None) -> str:
    from tabulate import tabulate

    from .train.run import build_method_config

    if not method:
        raise HarnessError("'harness list settings' needs a method name, e.g. 'harness list settings unimatch'; "
                           f"methods: {', '.join(pm.methods.names())}")
    info = pm.methods.get(method)
    defaults = info.cls.Config().model_dump(mode="json")
    resolved = None
    headers = ["key", "type", "default"]
    if protocol_id:
        resolved = build_method_config(info, pm.protocols.get(protocol_id), {}).model_dump(mode="json")
        headers.append(f"{protocol_id} (* = set by the protocol)")
    rows = _setting_rows(info.cls.Config, defaults, resolved)
    note = (f"settings of method '{method}' ({info.distribution} {info.version}); change one with "
            f"--set KEY=VALUE" + ("" if protocol_id else "; add --protocol P to see a protocol's values"))
    return tabulate(rows, headers=headers + ["description"], tablefmt="simple") + "\n" + note


def _data_weights(args) -> int:
    """``harness data weights``: verify the shipped built-in weights, or retrain them into a folder."""
    from .models import builtin_weights as bw

    if args.rebuild:
        from .train.pretraining import train

        info = train(Path(args.rebuild), workers=args.workers)
        shipped = bw.builtin_weights(info["weights"]).sha256
        same = "identical to" if info["sha256"] == shipped else "DIFFERENT from"
        print(f"{info['weights']}: {Path(args.rebuild) / bw.builtin_weights(info['weights']).file} sha256 "
              f"{info['sha256']}, {same} the shipped file ({shipped})")
        return 0 if info["sha256"] == shipped else 1
    for name in sorted(bw.BUILTIN_WEIGHTS):
        path = bw.verify(name)
        meta = bw.metadata(name)
        h = meta["heldout"]
        print(f"{name}: {path} sha256 {bw.builtin_weights(name).sha256} OK; pretraining task held-out mAP "
              f"{h['mean_ap']:.4f}, label accuracy {h['label_accuracy']:.4f}; built in "
              f"{meta['cost']['train_s'] / 60:.1f} min on {meta['cost']['threads']} threads")
    return 0


def cmd_data(args) -> int:
    if args.action == "synthetic":
        from .data.synthetic import ensure_synthetic

        root = ensure_synthetic(Path(args.root) if args.root else None)
        print(f"synthetic dataset ready at {root}")
        return 0
    if args.action == "weights":
        return _data_weights(args)
    if args.action == "splits":
        from .data.roots import fetch_all_splits

        folders = fetch_all_splits(args.dest, args.splits_dir)
        print(f"split lists verified in {', '.join(map(str, folders)) or '(no protocol has fetched lists)'}")
        return 0
    if args.action == "check":
        from .data.roots import check_root

        ok, text = check_root(args.protocol, args.data_root, args.splits_dir)
        print(text)
        return 0 if ok else 1
    if args.action == "draw-splits":
        from .data.draw_splits import PRESETS, draw_splits
        from .data.splits import resolve_split_root
        from .plugins import get_plugin_manager

        preset = PRESETS[args.preset]
        for pid in preset.protocols + ((preset.labeled_pool,) if preset.labeled_pool else ()):
            # the same folder for every protocol; each call fetches that protocol's published lists into the cache
            root = resolve_split_root(get_plugin_manager().protocols.get(pid), args.splits_dir)
        path, ids = draw_splits(args.preset, root, args.seeds, args.selection, args.out)
        print(f"drew {len(ids)} protocols ({ids[0]} … {ids[-1]}; NOT the published splits) into {root}/drawn; "
              f"protocol file {path}. Use them with HARNESS_PROTOCOLS={path.parent}" +
              (f" and --splits-dir {root}" if args.splits_dir else ""))
        return 0
    if args.action == "prepare-cityscapes":
        from .data.cityscapes import prepare_cityscapes_trainids

        n = prepare_cityscapes_trainids(Path(args.data_root))
        print(f"wrote {n} *_gtFine_labelTrainIds.png files under {args.data_root}")
        return 0
    raise AssertionError(args.action)


def _load_results(sources):
    from .report.results import load_results

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
    from .report.tables import build_per_class, build_table, load_reported, render

    rs = _load_results(args.sources)
    if args.variance:
        from .report.variance import build_variance_table, render_variance

        vt = build_variance_table(rs, metric=args.metric, methods=args.methods, protocols=args.protocols)
        _emit(render_variance(vt, args.format), args.out)
        return 0
    if args.per_class:
        if args.compute:
            raise HarnessError("--compute adds a column to the methods × protocols table; it does not apply to "
                               "--per-class")
        table = build_per_class(rs, args.per_class, metric=args.metric, methods=args.methods)
    else:
        reported = load_reported(args.reported_dir) if args.reported else None
        table = build_table(rs, metric=args.metric, delta=args.delta, reported=reported, methods=args.methods,
                            interval="ci" if args.ci else "std",
                            protocols=args.protocols, show_partial=args.partial, all_reported=args.all_reported,
                            compute=args.compute)
    _emit(render(table, args.format), args.out)
    return 0


def cmd_diagnose(args) -> int:
    from .report.diagnose import diagnose, render_diagnosis

    rs = _load_results(args.sources)
    d = diagnose(rs.runs, args.protocol, reference=args.reference, seed=args.seed, tau=args.tau,
                 methods=args.methods, data_root=args.data_root, splits_dir=args.splits_dir, device=args.device)
    _emit(render_diagnosis(d, args.format), args.out)
    return 0


def cmd_plot(args) -> int:
    from .report.plots import plot

    rs = _load_results(args.sources)
    path = plot(rs, args.kind, args.out, protocol=args.protocol, methods=args.method, protocols=args.protocols,
                metric=args.metric, per_run=args.per_run)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_grid(args) -> int:
    import shlex

    from .launch.grid_file import parse_sbatch_items
    from .launch.submit import launch

    slurm = {"partition": args.partition, "account": args.account, "qos": args.qos, "time": args.time,
             "gpus_per_task": args.gpus_per_task, "cpus_per_task": args.cpus_per_task, "mem_gb": args.mem_gb,
             "array_parallelism": args.array_parallelism, "max_array_size": args.max_array_size,
             "nproc": args.nproc, "sbatch": parse_sbatch_items(args.sbatch) if args.sbatch else None,
             "setup": args.setup or None}
    local = {"max_parallel": args.max_parallel, "nproc": args.nproc, "threads": args.threads}
    return launch(args.grid, executor=args.executor, out=args.out, set_items=args.set, data_root=args.data_root,
                  splits_dir=args.splits_dir, device=args.device, slurm_overrides=slurm, local_overrides=local,
                  retry_failed=args.retry_failed, dry_run=args.dry_run, skip_invalid=args.skip_invalid,
                  order=args.order, command=shlex.join(["harness", *getattr(args, "argv", [])]))


def cmd_status(args) -> int:
    from .launch.submit import show_status

    return show_status(args.target, out=args.out, lines=args.lines, as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="train one method on one protocol (resumes an unfinished run)")
    p.add_argument("--method", help="method name (`harness list methods`); required here or in --config")
    p.add_argument("--protocol", help="protocol id (`harness list protocols`); required here or in --config")
    p.add_argument("--seed", type=int, default=None, help="training seed (default: --config's seed, else 0)")
    p.add_argument("--config", metavar="RUN.yaml",
                   help="a run described in YAML: method, protocol, seed and settings (the keys --set takes, "
                        "nested or dotted); the command line wins over the file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="method setting (e.g. tau=0.9, cmim.enabled=false) or protocol setting "
                        "(budget.*, model.*, eval.*, supervised_loss.*); changes the run's settings hash")
    _add_data_args(p)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                   help="arithmetic of the forward passes (default fp32, as the official code; bf16 autocasts "
                        "them); part of the run's settings (same as --set run.precision=...)")
    p.add_argument("--out", default="runs", help="results root (default: ./runs)")
    p.add_argument("--workers", type=int, default=None, help="data loader workers (default: 0 on CPU, 8 on GPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice; use 1 per run when several share a machine)")
    p.add_argument("--force", action="store_true", help="retrain a finished run from scratch")
    p.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="checkpoint and stop after N steps of this session (rerun to continue)")
    p.add_argument("--logger", action="append", default=[], metavar="NAME",
                   help="record the run with this logger plugin too (e.g. tensorboard; repeatable)")
    p.add_argument("--log-every", type=int, default=50, metavar="N",
                   help="steps between training-log events (and plain log lines when stderr is not a terminal)")
    p.add_argument("--checkpoint-every", default=None, metavar="N|Tm",
                   help="checkpoint also every N steps and/or every T minutes of training (e.g. 500, 30m, 500,30m; "
                        "'off': only at evaluations); default 30m. Not a setting of the run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("eval", help="evaluate a run's checkpoint (its evaluated network) on a protocol")
    p.add_argument("checkpoint", help="a run directory or its latest.pt")
    p.add_argument("--protocol", help="protocol to evaluate on (default: the run's own)")
    _add_data_args(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--per-class", action="store_true")
    p.add_argument("--split", choices=["val", "labeled", "unlabeled", "selection"], default="val",
                   help="list to evaluate on (default val); selection: the protocol's held-out selection split; "
                        "labeled/unlabeled for diagnostics, their masks must exist")
    p.add_argument("--confidence", type=_probability, default=None, metavar="TAU",
                   help="also report the pixels predicted with probability >= TAU: how many, how many correct, "
                        "per class (the quality of thresholded pseudo-labels of this network)")
    p.add_argument("--bootstrap", type=_resamples, default=0, metavar="B",
                   help="also estimate the evaluation noise of the mIoU: B resamples of the images with replacement "
                        "(e.g. 1000); prints its std and 95 %% interval")
    p.add_argument("--confusion", action="store_true", help="print the row-normalised confusion matrix")
    p.add_argument("--json", metavar="PATH", help="write the result (with the confusion matrices) to PATH")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("show", help="picture of a run's predictions: image, ground truth, prediction, pseudo-label")
    p.add_argument("run", help="a run directory or its latest.pt")
    p.add_argument("--out", required=True, help="output image, e.g. predictions.png")
    p.add_argument("--split", choices=["val", "labeled", "unlabeled", "selection"], default="val")
    p.add_argument("--images", type=int, default=6, help="images (rows), spread evenly over the list (default 6)")
    p.add_argument("--confidence", type=_probability, default=None, metavar="TAU",
                   help="threshold of the pseudo-label column (default: the method's tau, else 0.95)")
    p.add_argument("--device", default="auto")
    _add_data_args(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("list", help="list methods, datasets, encoders, protocols, or a method's settings")
    p.add_argument("what", choices=["methods", "datasets", "encoders", "protocols", "settings"])
    p.add_argument("name", nargs="?", help="settings: the method whose settings to list")
    p.add_argument("--protocol", help="settings: also show this protocol's values (its method_settings)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("data", help="prepare and check datasets and split lists")
    dsub = p.add_subparsers(dest="action", required=True)
    d = dsub.add_parser("synthetic", help="generate the built-in synthetic dataset (deterministic, cached)")
    d.add_argument("--root", help="where to write it (default: $HARNESS_CACHE/synthetic/v<version>)")
    d = dsub.add_parser("weights", help="verify the built-in pretrained weights (SHA-256), or rebuild them")
    d.add_argument("--rebuild", metavar="DIR", help="retrain them into DIR (deterministic: same file on the same CPU "
                                                    "type and thread count) and compare with the shipped file")
    d.add_argument("--workers", type=int, default=2, help="--rebuild: processes rendering the images")
    d = dsub.add_parser("splits", help="fetch the standard split lists once and verify their checksums")
    d.add_argument("--dest", help="cache folder (default: $HARNESS_CACHE/splits/<commit>)")
    d.add_argument("--splits-dir", help="verify a local folder instead of fetching")
    d = dsub.add_parser("check", help="check a dataset root against a protocol's split lists")
    d.add_argument("--protocol", required=True)
    _add_data_args(d)
    d = dsub.add_parser("draw-splits", help="draw split seeds and a selection split of VOC or Cityscapes from the "
                                            "public train lists (documented, seeded; NOT the published splits)")
    d.add_argument("--preset", required=True, choices=["voc-classic", "voc-blended", "cityscapes"],
                   help="which published protocols' label counts to draw again (harness/data/draw_splits.py)")
    d.add_argument("--seeds", type=int, nargs="+", required=True, metavar="K", help="split seeds to draw (>= 1)")
    d.add_argument("--selection", type=int, default=200, help="images in the selection split (default 200)")
    d.add_argument("--splits-dir", help="split root holding the published lists, where the draws are written "
                                        "(default: $HARNESS_SPLITS, else the cache, fetched once)")
    d.add_argument("--out", help="folder of the protocol file (default: <split root>/drawn/protocols)")
    d = dsub.add_parser("prepare-cityscapes", help="write *_labelTrainIds.png from the official *_labelIds.png")
    d.add_argument("--data-root", required=True)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("table", help="paper-style table of finished runs (mean ± std over seeds, reported rows)")
    p.add_argument("sources", nargs="+", metavar="ROOT_OR_MANIFEST",
                   help="results folder(s) searched for record.json, or a grid manifest")
    p.add_argument("--metric", choices=["final", "best", "selected"], default="final",
                   help="final checkpoint (default), best-on-val (selected on the evaluation set), or selected: val "
                        "mIoU at the evaluation that is best on the protocol's held-out selection split")
    p.add_argument("--format", choices=["markdown", "latex", "csv"], default="markdown")
    p.add_argument("--delta", action="store_true",
                   help="show Δ vs the supervised row of the same protocol, with its 95%% interval and p-value")
    p.add_argument("--ci", action="store_true",
                   help="± is the half-width of the 95%% confidence interval of the mean (t over seeds), not the std")
    p.add_argument("--per-class", metavar="PROTOCOL", help="per-class IoU table of one protocol instead")
    p.add_argument("--variance", action="store_true",
                   help="split variance vs seed variance instead: per method and label count, the variance between "
                        "split seeds and between training seeds (nested ANOVA over runs on split-seed protocols)")
    p.add_argument("--compute", action="store_true",
                   help="add a compute column: time per run (GPU- or CPU-hours, mean over seeds) and relative to "
                        "supervised")
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

    p = sub.add_parser("diagnose", help="per class: what the supervised run keeps at τ on unlabeled images (right "
                                        "or wrong) beside each method's IoU change against it")
    p.add_argument("sources", nargs="+", metavar="ROOT_OR_MANIFEST")
    p.add_argument("--protocol", required=True)
    p.add_argument("--reference", default="supervised", help="the same-encoder reference method (default supervised)")
    p.add_argument("--seed", type=int, default=0, help="seed of the reference run whose checkpoint is evaluated")
    p.add_argument("--tau", type=_probability, default=0.95, help="confidence threshold of the pseudo-labels (default 0.95)")
    p.add_argument("--methods", nargs="+", metavar="M", help="only these methods")
    p.add_argument("--format", choices=["markdown", "csv"], default="markdown")
    p.add_argument("--out", help="write to this file instead of stdout")
    _add_data_args(p)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("plot", help="plots of finished runs (PNG; needs matplotlib, the 'plot' extra)")
    p.add_argument("sources", nargs="+", metavar="ROOT_OR_MANIFEST")
    p.add_argument("--kind", required=True, choices=["miou-vs-labels", "miou-vs-compute", "curves", "per-class"])
    p.add_argument("--protocol", help="protocol (curves, per-class; required when several are present)")
    p.add_argument("--protocols", nargs="+", metavar="P", help="miou-vs-labels, miou-vs-compute: only these protocols")
    p.add_argument("--method", action="append", metavar="M",
                   help="only this method (repeatable)")
    p.add_argument("--metric", choices=["final", "best", "selected"], default="final",
                   help="final checkpoint, best-on-val, or selected on the held-out selection split")
    p.add_argument("--per-run", action="store_true", help="curves: one line per seed instead of mean ± std band")
    p.add_argument("--out", required=True, help="output image, e.g. plot.png")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("grid", help="expand a grid file and run it: SLURM job arrays, local processes or in-process",
                       description="Expand GRID.yaml (methods x protocols x variants x seeds), skip finished and "
                                   "queued runs, submit the rest; see docs/launching.md.")
    p.add_argument("grid", help="grid file (benchmarks/grids/*.yaml); with --retry-failed also a manifest.json")
    p.add_argument("--executor", choices=["slurm", "local", "debug"],
                   help="slurm: job arrays; local: subprocesses on this machine; debug: in this process, one after "
                        "the other (default: the grid file's, else slurm)")
    p.add_argument("--out", help="results root (default: the grid file's 'out', else ./runs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override for every run (after the grid file's; changes the settings hash)")
    _add_data_args(p)
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the grid file's, else auto)")
    p.add_argument("--retry-failed", action="store_true",
                   help="resubmit only the runs that failed or were stopped (they resume from their checkpoint)")
    p.add_argument("--skip-invalid", action="store_true",
                   help="submit the valid runs when some fail validation (they are recorded as failed)")
    p.add_argument("--dry-run", action="store_true", help="show what would be submitted; submit nothing")
    p.add_argument("--order", choices=("protocol", "seed"),  # grid_file.ORDERS; the parser stays pydantic-free
                   help="submission order: protocol -> method -> variant -> seed, or every run's first seed before "
                        "any second one, for a grid run over several sittings (default: the grid file's, else "
                        "protocol)")
    p.add_argument("--nproc", type=int,
                   help="processes per run (local: torchrun-style spawning; slurm: tasks per node; default 1, or "
                        "--gpus-per-task)")
    g = p.add_argument_group("SLURM (override the grid file's 'slurm' section)")
    g.add_argument("--partition")
    g.add_argument("--account")
    g.add_argument("--qos")
    g.add_argument("--time", help="time limit per task: minutes, 4h or [D-]HH:MM[:SS] (default 60)")
    g.add_argument("--gpus-per-task", type=int, help="GPUs per run; N > 1 runs one training over N processes")
    g.add_argument("--cpus-per-task", type=int, help="CPUs per process (default 1); also its torch threads")
    g.add_argument("--mem-gb", type=float, help="memory per task (default: the cluster's DefMemPerCPU)")
    g.add_argument("--array-parallelism", type=int, help="running tasks per array (default 32)")
    g.add_argument("--max-array-size", type=int,
                   help="tasks per array (default: the cluster's MaxArraySize); more runs -> several arrays")
    g.add_argument("--sbatch", action="append", metavar="KEY[=VALUE]",
                   help="extra sbatch option, e.g. --sbatch exclude=node3 --sbatch mail-type=END")
    g.add_argument("--setup", action="append", metavar="LINE", help="shell line run before each task")
    g = p.add_argument_group("local")
    g.add_argument("--max-parallel", type=int, help="runs at a time (default: one per GPU, 1 on CPU)")
    g.add_argument("--threads", type=int, help="torch threads per process (default: cores // parallel)")
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("status", help="state of every run of a grid: pending/running/finished/failed, step, mIoU",
                       description="Reads the grid manifest, the run records and squeue (no SLURM accounting "
                                   "needed). Exit status 1 when a run failed or was stopped.")
    p.add_argument("target", help="grid file or its manifest.json (<out>/grids/<grid>/manifest.json)")
    p.add_argument("--out", help="results root, when it differs from the grid file's 'out'")
    p.add_argument("--lines", type=int, default=5, help="log lines shown per failed run (default 5)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; an unfinished run resumes from its last checkpoint when rerun", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which exited: not an error of the command
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
