"""Results discovery and aggregation: run directories → one pandas frame → mean ± std over seeds.

A finished run directory ``<root>/<protocol>/<method>/<settings_hash>/seed<k>/`` holds ``record.json``
(written by ``harness.train.run.build_record``). ``load_results(roots)`` finds every ``record.json`` under the
given roots (or the roots named by a grid manifest), reads them with a thread pool, and returns a
:class:`ResultSet` with

- ``runs``: one row per finished run (no per-record DataFrame is built; rows are plain dicts),
- ``incomplete``: run directories without a ``record.json`` (running, failed, stopped),
- ``warnings``: one line per skipped file (corrupt JSON, missing keys, duplicate run), each naming the file.

``aggregate(runs, metric)`` groups by (protocol, method, settings_hash) and gives mean, sample standard
deviation (n − 1), n and the seeds. Nothing here imports torch (except expanding a grid YAML file,
which uses ``harness.launch``).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ..errors import HarnessError
from ..regimes import regime_of
from ..train.runlock import owner_alive

RECORD = "record.json"
STATUS = "status.json"
CONFIG = "config.json"
METRICS = "metrics.jsonl"

# Protocol sections a ``--set`` override may change (mirrors harness.protocols.OVERRIDABLE_SECTIONS; kept
# here so that reading results never imports the training stack).
PROTOCOL_SECTIONS = ("budget", "model", "eval", "supervised_loss")

REQUIRED_KEYS = ("method", "protocol", "dataset", "family", "labeled", "seed", "eval_mode", "backbone",
                 "crop_size")

# What a run spent (``record.json``'s ``compute``; see harness/train/compute.py). ``process_hours``: training wall time ×
# processes, from ``compute.device_hours``, or from ``wall_time_s`` and ``world_size`` for records written before
# ``compute`` existed; ``device_type`` cpu or cuda. Counts are NaN where the record has no ``compute``.
COMPUTE_COLUMNS = ["device_type", "process_hours", "images_labeled", "images_unlabeled", "passes_with_grad",
                   "passes_forward_only", "peak_memory_gib"]

RUN_COLUMNS = ["protocol", "method", "settings_hash", "seed", "dataset", "family", "labeled", "eval_mode",
               "backbone", "crop_size", "overrides", "overrides_key", "protocol_overrides_key", "final_miou",
               "final_step", "best_miou", "best_step", "selected_miou", "selected_step", "split_of", "split_seed",
               "total_steps", "wall_time_s", "finished_at", "iou",
               "secondary", "pretrained_source", "regime", "evaluated", "run_dir", "record_path", *COMPUTE_COLUMNS]


class ResultsWarning(UserWarning):
    """A record was skipped or is suspicious; the message names the file."""


@dataclass
class ResultSet:
    runs: pd.DataFrame
    incomplete: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    roots: list[Path] = field(default_factory=list)
    expected: list[dict[str, Any]] | None = None  # runs a grid manifest asks for, if given one

    def __len__(self) -> int:
        return len(self.runs)


# --------------------------------------------------------------------------- discovery


def _is_run_dir(filenames: Iterable[str]) -> bool:
    names = set(filenames)
    return RECORD in names or STATUS in names or CONFIG in names


def discover(roots: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """(record files, unfinished run directories) under the roots. A run directory is not descended into;
    hidden folders and ``__pycache__`` are skipped; unreadable folders are ignored."""
    records: list[Path] = []
    unfinished: list[Path] = []
    seen: set[str] = set()
    for root in roots:
        root = Path(root)
        if root.is_file() and root.name == RECORD:
            records.append(root)
            continue
        for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None, followlinks=False):
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames[:] = []
                continue
            seen.add(real)
            if _is_run_dir(filenames):
                dirnames[:] = []
                if RECORD in filenames:
                    records.append(Path(dirpath) / RECORD)
                elif Path(dirpath).name.startswith("seed"):
                    unfinished.append(Path(dirpath))
                continue
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
    return records, unfinished


# --------------------------------------------------------------------------- reading


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def reference_hash(hashes: Iterable[str]) -> str:
    """Which of a protocol's supervised settings folders (with the same protocol-level settings) a row is compared
    with, in the Δ and compute views alike: ``default`` if present, else the first in sorted order."""
    return min(hashes, key=lambda h: (h != "default", h))


def protocol_overrides(overrides: dict[str, Any], settings_hash: str = "") -> dict[str, Any]:
    """The protocol-level part of a run's overrides (what decides which supervised row it is compared with). A run
    in the ``default`` settings folder has none: its overrides only restate defaults (e.g. a run made while the
    protocol's default was another value, pinned with ``--set``, and moved there after the default changed)."""
    if settings_hash == "default":
        return {}
    return {k: v for k, v in (overrides or {}).items() if k.split(".")[0] in PROTOCOL_SECTIONS}


def _num(x: Any) -> float:
    if x is None or isinstance(x, bool):
        return math.nan
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def parse_record(path: Path, doc: Any) -> dict[str, Any]:
    """One flat row from a record document; raises ValueError naming what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("status", "finished") != "finished":
        raise ValueError(f"status is '{doc.get('status')}', not 'finished'")
    missing = [k for k in REQUIRED_KEYS if k not in doc]
    final = doc.get("final")
    if not isinstance(final, dict) or "miou" not in final:
        missing.append("final.miou")
    if missing:
        raise ValueError(f"missing key(s) {', '.join(missing)}")
    miou = _num(final["miou"])
    if not math.isfinite(miou):
        raise ValueError(f"final.miou is not a number ({final['miou']!r})")
    try:
        seed = int(doc["seed"])
        labeled = int(doc["labeled"])
    except (TypeError, ValueError):
        raise ValueError(f"seed/labeled are not integers ({doc['seed']!r}, {doc['labeled']!r})") from None
    overrides = doc.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ValueError("overrides is not a mapping")
    best = doc.get("best_on_val") if isinstance(doc.get("best_on_val"), dict) else {}
    # records of harness versions before the selection split have no "selected": NaN, left out of that metric
    selected = doc.get("selected") if isinstance(doc.get("selected"), dict) else {}
    split_seed = doc.get("split_seed")
    iou = final.get("iou")
    if isinstance(iou, list):  # tolerate a list (no class names)
        iou = {f"class {i}": v for i, v in enumerate(iou)}
    if not isinstance(iou, dict):
        iou = {}
    return {
        "protocol": str(doc["protocol"]),
        "method": str(doc["method"]),
        "settings_hash": str(doc.get("settings_hash") or "default"),
        "seed": seed,
        "dataset": str(doc["dataset"]),
        "family": str(doc["family"]),
        "labeled": labeled,
        "eval_mode": str(doc["eval_mode"]),
        "backbone": str(doc["backbone"]),
        "crop_size": int(doc["crop_size"]) if str(doc["crop_size"]).isdigit() else doc["crop_size"],
        "overrides": overrides,
        "overrides_key": canonical(overrides),
        "protocol_overrides_key": canonical(protocol_overrides(overrides, str(doc.get("settings_hash") or "default"))),
        "final_miou": miou,
        "final_step": final.get("step"),
        "best_miou": _num(best.get("miou")),
        "best_step": best.get("step"),
        "selected_miou": _num(selected.get("miou")),
        "selected_step": selected.get("step"),
        # split seeds: the protocol this run's labeled list is a draw of (its own id for any other protocol)
        "split_of": str(doc.get("split_of") or doc["protocol"]),
        "split_seed": int(split_seed) if isinstance(split_seed, int) and not isinstance(split_seed, bool) else None,
        "total_steps": doc.get("total_steps"),
        "wall_time_s": _num(doc.get("wall_time_s")),
        "finished_at": str(doc.get("finished_at") or ""),
        "iou": {str(k): _num(v) for k, v in iou.items()},
        "secondary": {k: _num(v) for k, v in final.items() if k.endswith("_miou")},
        "pretrained_source": str(doc.get("pretrained_source") or ""),
        "regime": str(doc.get("regime") or regime_of(doc.get("pretrained_source"))),
        "evaluated": str(doc.get("evaluated") or ""),  # "" in records made before it was recorded
        "run_dir": str(path.parent),
        "record_path": str(path),
        **_compute_fields(doc),
    }


def _compute_fields(doc: dict[str, Any]) -> dict[str, Any]:
    compute = doc.get("compute") if isinstance(doc.get("compute"), dict) else {}
    seen = compute.get("images_seen") if isinstance(compute.get("images_seen"), dict) else {}
    passes = compute.get("image_passes") if isinstance(compute.get("image_passes"), dict) else {}
    hours = _num(compute.get("device_hours"))
    if not math.isfinite(hours):
        world = _num(doc.get("world_size"))
        hours = _num(doc.get("wall_time_s")) / 3600.0 * (world if math.isfinite(world) and world >= 1 else 1)
    device = str(compute.get("device") or doc.get("device") or "").split(":")[0]
    return {"device_type": device, "process_hours": hours, "images_labeled": _num(seen.get("labeled")),
            "images_unlabeled": _num(seen.get("unlabeled")), "passes_with_grad": _num(passes.get("with_grad")),
            "passes_forward_only": _num(passes.get("forward_only")),
            "peak_memory_gib": _num(compute.get("peak_memory_gib"))}


def _read_one(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"skipped {path}: unreadable or corrupt JSON ({type(exc).__name__}: {exc})"
    try:
        return parse_record(path, doc), None
    except (ValueError, TypeError) as exc:
        return None, f"skipped {path}: {exc}"


def _read_unfinished(run: Path) -> dict[str, Any]:
    parts = run.parts
    info: dict[str, Any] = {"run_dir": str(run), "state": "unknown"}
    if len(parts) >= 4:
        info.update(protocol=parts[-4], method=parts[-3], settings_hash=parts[-2])
        try:
            info["seed"] = int(parts[-1][4:])
        except ValueError:
            info["seed"] = parts[-1]
    try:
        st = json.loads((run / STATUS).read_text())
        if isinstance(st, dict):
            info["state"] = str(st.get("state", "unknown"))
            if info["state"] == "running" and owner_alive(run) is False:
                info["state"] = "interrupted"  # status.json says running, but no process holds the run
            info["step"] = st.get("step")
            info["total_steps"] = st.get("total_steps")
            if st.get("error"):
                info["error"] = str(st["error"])[:200]
    except (OSError, ValueError):
        pass
    return info


def read_manifest(path: Path) -> tuple[list[Path], list[dict[str, Any]] | None]:
    """Roots (and expected runs, if listed) from a grid manifest (JSON or YAML).

    Understood keys: ``out`` / ``root`` / ``results_root`` / ``output`` (a folder or list of folders, relative to
    the manifest's folder when not absolute) and ``runs`` / ``jobs`` (a list of mappings with ``run_dir`` or
    ``method`` + ``protocol`` [+ ``seed``, ``settings_hash`` or ``overrides``, ``out``])."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise HarnessError(f"grid manifest {path} could not be read: {exc}") from None
    if not isinstance(doc, dict):
        raise HarnessError(f"grid manifest {path}: expected a mapping (with 'out' and/or 'runs'), "
                           f"got {type(doc).__name__}")
    base = path.parent

    def rel(p: Any) -> Path:
        q = Path(str(p)).expanduser()
        if q.is_absolute():
            return q
        return base / q if (base / q).exists() or not q.exists() else q

    if isinstance(doc.get("methods"), list) and isinstance(doc.get("protocols"), list):
        return _grid_file_runs(path)
    if isinstance(doc.get("submissions"), list):  # harness.launch manifest: header + submissions
        runs = []
        for sub in doc["submissions"]:
            if isinstance(sub, dict):
                runs += [e for k in ("runs", "skipped") for e in sub.get(k, []) or [] if isinstance(e, dict)]
        doc = {"out": doc.get("out"), "runs": runs}
    roots: list[Path] = []
    for key in ("out", "root", "results_root", "output", "roots"):
        v = doc.get(key)
        if isinstance(v, (str, Path)):
            roots.append(rel(v))
        elif isinstance(v, list):
            roots += [rel(x) for x in v if isinstance(x, (str, Path))]
    expected: list[dict[str, Any]] | None = None
    runs = doc.get("runs", doc.get("jobs"))
    if isinstance(runs, list):
        expected = []
        for r in runs:
            if not isinstance(r, dict):
                continue
            e: dict[str, Any] = {}
            rd = r.get("run_dir")
            if rd:
                p = rel(rd)
                parts = p.parts
                if len(parts) >= 4:
                    e = {"protocol": parts[-4], "method": parts[-3], "settings_hash": parts[-2],
                         "seed": int(parts[-1][4:]) if parts[-1][4:].isdigit() else parts[-1]}
                roots.append(p)
            if "method" in r and "protocol" in r:
                e.update(method=str(r["method"]), protocol=str(r["protocol"]))
                if "seed" in r:
                    e["seed"] = int(r["seed"])
                if "settings_hash" in r:
                    e["settings_hash"] = str(r["settings_hash"])
                elif isinstance(r.get("overrides"), dict):
                    e["settings_hash"] = settings_hash(e["method"], e["protocol"], r["overrides"])
                if r.get("out"):
                    roots.append(rel(r["out"]))
            if e.get("method") and e.get("protocol"):
                e.setdefault("settings_hash", "default")
                expected.append(e)
    if not roots:
        raise HarnessError(f"grid manifest {path} names no results folder (expected a key 'out', 'root', "
                           f"'results_root' or 'runs' entries with 'run_dir')")
    uniq: list[Path] = []
    for r in roots:
        if r not in uniq and not any(r.is_relative_to(u) for u in uniq if u.is_dir()):
            uniq.append(r)
    return uniq, expected


def _grid_file_runs(path: Path) -> tuple[list[Path], list[dict[str, Any]]]:
    """Roots and expected runs of a grid file (``benchmarks/grids/*.yaml``), expanded as ``harness grid`` does."""
    from ..launch.grid_file import expand, load_grid

    planned = expand(load_grid(path))
    expected = [{"protocol": r.spec.protocol, "method": r.spec.method, "settings_hash": Path(r.run_dir).parent.name,
                 "seed": r.spec.seed} for r in planned]
    roots = sorted({Path(r.spec.out) for r in planned})
    return roots, expected


def settings_hash(method: str, protocol: str, overrides: dict[str, Any]) -> str:
    """The settings folder ``harness run`` uses for these overrides (``harness.train.run.run_dir``: the resolved
    settings that differ from the defaults). Imported here, not at the top: it loads the plugins and torch, which
    only manifests that list runs by their overrides need."""
    from ..train.run import RunSpec, run_dir

    return run_dir(RunSpec(method=method, protocol=protocol, overrides=overrides)).parent.name


def load_results(sources: Iterable[str | Path], workers: int | None = None,
                 warn: bool = True) -> ResultSet:
    """Read every finished run under the sources (result folders or grid manifests)."""
    roots: list[Path] = []
    expected: list[dict[str, Any]] | None = None
    for s in sources:
        p = Path(s)
        if not p.exists():
            from ..resources import shipped_grid  # a shipped grid by name, e.g. ``harness table voc-classic``

            p = shipped_grid(str(s)) or p
        if p.is_file() and p.name != RECORD:
            r, e = read_manifest(p)
            roots += r
            if e is not None:
                expected = (expected or []) + e
        elif p.exists():
            roots.append(p)
        else:
            raise HarnessError(f"results source {p} does not exist (expected a results folder or a grid manifest)")
    paths, unfinished = discover(roots)
    msgs: list[str] = []
    rows: list[dict[str, Any]] = []
    if len(paths) > 64:
        with ThreadPoolExecutor(max_workers=workers or min(16, (os.cpu_count() or 2) * 4)) as pool:
            results = list(pool.map(_read_one, paths, chunksize=64))
    else:
        results = [_read_one(p) for p in paths]
    for row, msg in results:
        if msg:
            msgs.append(msg)
        if row is not None:
            rows.append(row)
    # one run = (protocol, method, settings_hash, seed); the same run found twice (copied roots) counts once
    by_key: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = (row["protocol"], row["method"], row["settings_hash"], row["seed"])
        old = by_key.get(key)
        if old is None:
            by_key[key] = row
            continue
        keep, drop = (row, old) if row["finished_at"] > old["finished_at"] else (old, row)
        by_key[key] = keep
        msgs.append(f"skipped {drop['record_path']}: duplicate of run {'/'.join(map(str, key))} "
                    f"(using the newer {keep['record_path']})")
    if expected is not None:  # a grid's table holds the grid's runs only
        wanted = {(e["protocol"], e["method"], e["settings_hash"], e.get("seed")) for e in expected}
        by_key = {k: v for k, v in by_key.items() if k in wanted}
    runs = pd.DataFrame(list(by_key.values()), columns=RUN_COLUMNS)
    finished = set(by_key)
    incomplete = []
    for d in unfinished:
        info = _read_unfinished(d)
        if (info.get("protocol"), info.get("method"), info.get("settings_hash"), info.get("seed")) not in finished:
            incomplete.append(info)
    if warn:
        for m in msgs:
            warnings.warn(m, ResultsWarning, stacklevel=2)
    return ResultSet(runs=runs, incomplete=incomplete, warnings=msgs, roots=roots, expected=expected)


def filter_runs(runs: pd.DataFrame, methods: list[str] | None = None,
                protocols: list[str] | None = None) -> pd.DataFrame:
    """Keep the given methods / protocols (shell-style patterns allowed, e.g. ``voc-*``)."""
    from fnmatch import fnmatchcase

    out = runs
    if methods:
        out = out[out["method"].map(lambda m: any(fnmatchcase(m, p) for p in methods))]
    if protocols:
        out = out[out["protocol"].map(lambda m: any(fnmatchcase(m, p) for p in protocols))]
    return out


# --------------------------------------------------------------------------- aggregation

METRIC_COLUMNS = {"final": "final_miou", "best": "best_miou", "selected": "selected_miou"}
METRIC_STEPS = {"best": "best_step", "selected": "selected_step"}


def aggregate(runs: pd.DataFrame, metric: str = "final") -> pd.DataFrame:
    """One row per (protocol, method, settings_hash): mean, sample std (n − 1; NaN for n = 1), n, seeds."""
    if metric not in METRIC_COLUMNS:
        raise HarnessError(f"unknown metric '{metric}'; expected one of {', '.join(METRIC_COLUMNS)}")
    col = METRIC_COLUMNS[metric]
    keys = ["protocol", "method", "settings_hash"]
    cols = ["mean", "std", "n", "seeds", "dataset", "family", "labeled", "eval_mode", "backbone", "crop_size",
            "overrides", "protocol_overrides_key"]
    if runs.empty:
        return pd.DataFrame(columns=keys + cols)
    valid = runs[runs[col].notna()]
    g = valid.groupby(keys, sort=False)
    stats = g[col].agg(["mean", "std", "count"]).rename(columns={"count": "n"})
    seeds = g["seed"].agg(lambda s: tuple(sorted(s)))
    first = g[["dataset", "family", "labeled", "eval_mode", "backbone", "crop_size", "overrides",
               "protocol_overrides_key"]].first()
    out = stats.join(seeds.rename("seeds")).join(first).reset_index()
    out["n"] = out["n"].astype(int)
    return out[keys + cols]


def per_class(runs: pd.DataFrame, protocol: str, metric: str = "final") -> tuple[pd.DataFrame, list[str]]:
    """Per-class IoU (%) over seeds for one protocol: rows (method, settings_hash), columns class names, plus
    ``mIoU`` and ``n``. Absent classes (null IoU) are NaN; a class NaN in every seed stays NaN."""
    sub = runs[runs["protocol"] == protocol]
    if sub.empty:
        raise HarnessError(f"no finished run of protocol '{protocol}' in these results")
    sub = sub[sub[METRIC_COLUMNS[metric]].notna()]  # runs whose record lacks this metric are not counted
    if sub.empty:
        raise HarnessError(f"no finished run of protocol '{protocol}' has a {metric} value (records of older "
                           f"harness versions, or a protocol without a selection split, have no 'selected')")
    classes: list[str] = []
    for d in sub["iou"]:
        for c in d:
            if c not in classes:
                classes.append(c)
    recs = []
    for row in sub.itertuples(index=False):
        if metric in METRIC_STEPS:
            iou = _iou_at_step(Path(row.run_dir), getattr(row, METRIC_STEPS[metric]), classes, metric)
            miou = getattr(row, METRIC_COLUMNS[metric])
        else:
            iou, miou = row.iou, row.final_miou
        vals = [_num(iou.get(c)) if iou else math.nan for c in classes]
        scale = _iou_scale(vals, miou)
        recs.append({"method": row.method, "settings_hash": row.settings_hash, "seed": row.seed,
                     "overrides": row.overrides, "mIoU": miou,
                     **{c: v * scale for c, v in zip(classes, vals)}})
    df = pd.DataFrame(recs)
    g = df.groupby(["method", "settings_hash"], sort=False)
    mean = g[classes + ["mIoU"]].mean()  # pandas mean skips NaN; all-NaN stays NaN
    std = g[classes + ["mIoU"]].std()
    n = g["seed"].count().rename("n")
    over = g["overrides"].first()
    return mean.join(n).join(over).join(std.add_suffix(" std")).reset_index(), classes


def _iou_scale(vals: list[float], miou: float) -> float:
    """Record IoUs are fractions while mIoU is in %; detect rather than assume."""
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return 100.0
    m = sum(finite) / len(finite)
    if math.isfinite(miou) and abs(m - miou) < abs(m * 100 - miou):
        return 1.0
    return 100.0


def _iou_at_step(run_dir: Path, step: Any, classes: list[str], metric: str = "best") -> dict[str, float]:
    if step is None:  # a record without this metric (older harness, or no selection split): no per-class values
        return {}
    for e in read_metrics(run_dir):
        if e.get("step") == step and isinstance(e.get("iou"), list):
            return dict(zip(classes, e["iou"]))
    raise HarnessError(f"{run_dir / METRICS} has no evaluation at the {metric} step {step}; per-class "
                       f"{metric} numbers need the metrics log")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The evaluation log of a run; corrupt lines are skipped with a warning naming the file and line."""
    path = Path(run_dir) / METRICS
    out = []
    try:
        text = path.read_text()
    except OSError:
        return out
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            warnings.warn(f"skipped line {i} of {path}: corrupt JSON", ResultsWarning, stacklevel=2)
            continue
        if isinstance(e, dict) and "step" in e:
            out.append(e)
    return out


def curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Long frame of every evaluation of the given runs: run keys, step, and one column per signal
    (``miou``, ``*_miou``, ``train.<key>``, ``method.<key>``)."""
    recs = []
    for row in runs.itertuples(index=False):
        for e in read_metrics(row.run_dir):
            r = {"protocol": row.protocol, "method": row.method, "settings_hash": row.settings_hash,
                 "seed": row.seed, "step": e.get("step"), "miou": _num(e.get("miou"))}
            for k, v in e.items():
                if k.endswith("_miou"):
                    r[k] = _num(v)
            for sec in ("train", "method"):
                if isinstance(e.get(sec), dict):
                    for k, v in e[sec].items():
                        if isinstance(v, (int, float)) and not isinstance(v, bool):
                            r[f"{sec}.{k}"] = float(v)
            recs.append(r)
    return pd.DataFrame(recs)
