"""Paper-style tables: methods × protocols (grouped by dataset and split family), per-class IoU, Δ vs supervised,
and reported reference rows; rendered as Markdown, LaTeX (booktabs; ``table_latex``) or CSV.

Reporting rules (the benchmarks spec §4, §8; the reported spec):

- one column group per (dataset, split family), named in the caption; columns ordered by labeled count;
- cells are mean ± sample std (n − 1) over seeds, e.g. ``72.31 ± 0.84``; the table's usual n is said once in the
  caption, and a cell with another n shows it, ``72.31 ± 0.84 (2)``; a single run shows no ±;
- the best harness value of a column is bold; a value shared by two cells at the shown precision is bold in neither;
- the headline is the final checkpoint; ``metric="best"`` uses best-on-val and titles every column
  "best-on-val (selected on the evaluation set)"; ``metric="selected"`` uses the val mIoU of the evaluation that is
  best on the protocol's selection split (held-out training images) and titles every column so;
- a row × column without a finished run, or with fewer seeds than the table's usual n, is "—" with a note;
- reported numbers appear only as marked reference rows, only where backbone, crop, split family and evaluation
  mode match the column; never for the synthetic dataset; never an S4MIM row;
- rows of ``s4mim`` / ``combined`` are named as harness interpretations;
- a row with runs that started from random weights where the protocol declares ImageNet weights (record.json
  ``pretrained_source``) is marked ‡ and named in a note: it is not comparable with rows that used them.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import HarnessError
from .results import ResultSet, aggregate, canonical, filter_runs, per_class, protocol_overrides, reference_hash

REPORTED_COLUMNS = ["dataset", "family", "labeled", "method", "miou", "backbone", "crop", "os", "eval_mode",
                    "selection", "source_type", "source", "note"]

FAMILY_ORDER = ["voc-classic", "voc-classic-drawn", "voc-blended", "voc-blended-drawn", "voc-u2pl", "cityscapes",
                "cityscapes-drawn", "cityscapes-st++", "ade20k", "coco-unimatch",
                "synthetic-pt", "synthetic-pt-split-seeds", "synthetic", "synthetic-split-seeds"]
FAMILY_NAMES = {
    "voc-classic": "VOC classic (labeled ⊂ fine 1,464)",
    "voc-blended": "VOC blended, CPS-style lists",
    "voc-u2pl": "VOC blended, U2PL-style lists",
    "cityscapes": "Cityscapes (CPS lists)",
    "cityscapes-st++": "Cityscapes 1/30 (ST++ list)",
    "ade20k": "ADE20K (UniMatch V2 lists)",
    "coco-unimatch": "COCO, 81 classes (UniMatch lists)",
    "synthetic": "synthetic, encoder from scratch",
    "synthetic-pt": "synthetic, pretrained encoder (built-in shapes-v1)",
    "synthetic-split-seeds": "synthetic, encoder from scratch, split seeds (other draws of the labeled lists)",
    "voc-classic-drawn": "VOC classic, DRAWN split seeds (harness data draw-splits; not the published lists)",
    "voc-blended-drawn": "VOC blended, DRAWN split seeds (harness data draw-splits; not the published lists)",
    "cityscapes-drawn": "Cityscapes, DRAWN split seeds (harness data draw-splits; not the published lists)",
    "synthetic-pt-split-seeds": "synthetic, pretrained encoder, split seeds (other draws of the labeled lists)",
}
BEST_TITLE = "best-on-val (selected on the evaluation set)"
SELECTED_TITLE = "selected on the held-out selection split (training images), val mIoU"
METRIC_TITLES = {"best": BEST_TITLE, "selected": SELECTED_TITLE}


def metric_title(metric: str) -> str:
    """How a table or plot names the checkpoint its numbers come from."""
    return METRIC_TITLES.get(metric, "final checkpoint")
SUPERVISED_REPORTED = {"SupBaseline", "SupOnly"}


@functools.lru_cache(maxsize=1)
def _method_meta() -> dict[str, tuple[str, int, str | None]]:
    """name → (row label, order, note) as each installed method plugin declares them (``Method.display_name``,
    ``table_order``, ``table_note``; only a class's own values count, not those it inherits). A method whose
    plugin is not installed here is shown by its name, after the others."""
    from ..plugins import get_plugin_manager

    out = {}
    for info in get_plugin_manager().methods:
        own = vars(info.cls)
        out[info.name] = (own.get("display_name") or info.name, int(own.get("table_order", 1000)),
                          own.get("table_note"))
    return out


@functools.lru_cache(maxsize=1)
def _method_evaluates() -> dict[str, str]:
    """name → the network the method evaluates by default (``Method.evaluates``, inherited values count), for records
    made before runs recorded it."""
    from ..plugins import get_plugin_manager

    return {info.name: str(getattr(info.cls, "evaluates", "student")) for info in get_plugin_manager().methods}


def teacher_evaluated(rows: list[Row], runs: pd.DataFrame) -> list[str]:
    """Display names of the harness rows whose numbers are of an EMA teacher (each run's ``evaluated``, else the
    method's default), in row order; "(some runs)" when a row mixes the two."""
    default = _method_evaluates()
    out: list[str] = []
    for row in rows:
        if row.kind != "harness":
            continue
        sub = runs[(runs["method"] == row.method) & (runs["settings_hash"] == row.settings_hash)]
        nets = {e or default.get(row.method, "student") for e in sub["evaluated"]}
        name = method_label(row.method)
        if nets == {"teacher"} and name not in out:
            out.append(name)
        elif "teacher" in nets and len(nets) > 1:
            out.append(f"{name} (some runs)")
    return out


def _join(names: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def method_label(method: str) -> str:
    return _method_meta().get(method, (method, 0, None))[0]


def method_order(method: str) -> tuple[int, str]:
    """Sort key of a method's rows: the plugin's ``table_order``, then the name."""
    meta = _method_meta().get(method)
    return (meta[1] if meta else 10_000, method)


def method_notes(methods) -> list[str]:
    """The notes of the methods present (e.g. that a row is a harness interpretation), in row order."""
    meta = _method_meta()
    return [meta[m][2] for m in sorted(set(methods), key=method_order) if m in meta and meta[m][2]]


def overrides_label(overrides: dict[str, Any], settings_hash: str) -> str:
    if settings_hash == "default":
        return ""
    if not overrides:
        return f"settings {settings_hash}"
    return ", ".join(f"{k}={v}" for k, v in sorted(overrides.items()))


def _builtin_protocols() -> dict[str, Any]:
    """The YAML protocols (built-in and ``HARNESS_PROTOCOLS``), without importing method plugins."""
    from ..protocols import ProtocolRegistry, default_protocol_dirs

    reg = ProtocolRegistry()
    for d in default_protocol_dirs():
        if d.is_dir():
            try:
                reg.add_dir(d)
            except HarnessError:
                return {}  # a broken protocol folder only costs the folding of default-valued overrides
    return {p.id: p for p in reg}


_MISSING = object()


def _protocol_value(protocol: Any, key: str) -> Any:
    obj = protocol
    for part in key.split("."):
        obj = getattr(obj, part, _MISSING)
        if obj is _MISSING:
            return _MISSING
    return obj


def redundant_overrides(overrides: dict[str, Any], protocol_ids: list[str],
                        protocols: dict[str, Any]) -> set[str]:
    """Override keys that only restate the protocol default (e.g. ``budget.iterations=3000`` where 3,000 is the
    default) of every one of ``protocol_ids``; a grid pins them so that its comparison survives a change of the
    default. Unknown protocols or keys are never redundant."""
    keys = set()
    for k, v in (overrides or {}).items():
        vals = [_protocol_value(protocols[p], k) if p in protocols else _MISSING for p in protocol_ids]
        if protocol_ids and all(x is not _MISSING and x == v for x in vals):
            keys.add(k)
    return keys


def variant_labels(runs: pd.DataFrame) -> tuple[dict[tuple[str, str], str], list[str]]:
    """Display name of every (method, settings_hash) of ``runs`` and the notes that go with them.

    An override that restates the protocol default is left out of the label, unless the same method also has a
    run without it (then the two must stay distinguishable); a note says what was left out."""
    variants = runs.drop_duplicates(["method", "settings_hash"])[["method", "settings_hash", "overrides"]]
    known = _builtin_protocols()
    hashes_of = variants.groupby("method")["settings_hash"].apply(set).to_dict()
    protocols_of = runs.groupby(["method", "settings_hash"])["protocol"].apply(lambda p: sorted(set(p))).to_dict()
    labels: dict[tuple[str, str], str] = {}
    folded: dict[str, list[str]] = {}
    for v in variants.itertuples(index=False):
        shown = v.overrides
        if v.settings_hash == "default" and v.overrides:  # a default folder's overrides only restate defaults
            shown = {}
            text = ", ".join(f"{k}={v.overrides[k]}" for k in sorted(v.overrides))
            folded.setdefault(text, []).append(v.method)
        elif v.settings_hash != "default":
            redundant = redundant_overrides(v.overrides, protocols_of[(v.method, v.settings_hash)], known)
            rest = {k: x for k, x in v.overrides.items() if k not in redundant}
            if redundant and (rest or "default" not in hashes_of[v.method]):
                shown = rest
                text = ", ".join(f"{k}={v.overrides[k]}" for k in sorted(redundant))
                folded.setdefault(text, []).append(v.method)
        extra = overrides_label(shown, "default" if not shown else v.settings_hash)
        labels[(v.method, v.settings_hash)] = method_label(v.method) + (f" [{extra}]" if extra else "")
    notes = []
    for text, methods in folded.items():
        names = ", ".join(method_label(m) for m in sorted(set(methods), key=lambda m: method_order(m)))
        notes.append(f"Runs pinned to the protocol default {text}; not shown in the row labels of: {names}.")
    return labels, notes


WEIGHTS_MARK = "‡"


def runs_without_protocol_weights(runs: pd.DataFrame, protocols: dict[str, Any] | None = None
                                  ) -> dict[tuple[str, str], list[str]]:
    """(method, settings_hash) → protocols on which some of its runs started from random weights although the
    protocol declares pretrained weights (``model.pretrained``: ImageNet, DINOv2 or built-in ones, as
    ``model.weights`` names). Runs of unknown protocols are never counted."""
    known = _builtin_protocols() if protocols is None else protocols
    if "pretrained_source" not in runs.columns:
        return {}
    out: dict[tuple[str, str], list[str]] = {}
    for r in runs.itertuples(index=False):
        p = known.get(r.protocol)
        if p is None or not p.model.pretrained or not str(r.pretrained_source).startswith("random"):
            continue
        prots = out.setdefault((r.method, r.settings_hash), [])
        if r.protocol not in prots:
            prots.append(r.protocol)
    return out


def _mark_rows_without_weights(rows: list[Row], runs: pd.DataFrame, notes: list[str]) -> None:
    marks = runs_without_protocol_weights(runs)
    for row in rows:
        prots = marks.get((row.method, row.settings_hash))
        if prots:
            row.label += f" {WEIGHTS_MARK}"
            notes.append(f"{WEIGHTS_MARK} {row.label[:-2]}: runs on {', '.join(sorted(prots))} started from random "
                         f"weights, not the protocol's pretrained weights; not comparable with rows that "
                         f"used them.")


def family_label(family: str) -> str:
    return FAMILY_NAMES.get(family, family)


def eval_label(mode: str) -> str:
    if mode == "whole":
        return "whole image"
    m = re.fullmatch(r"slide(\d+)(_truncated)?", mode)
    if m:
        return f"sliding window {m.group(1)}" + (" (border windows truncated)" if m.group(2) else "")
    m = re.fullmatch(r"whole_resize(\d+)", mode)
    if m:
        return f"whole image resized to multiples of {m.group(1)}"
    return mode.replace("_", " ")


def backbone_label(b: str) -> str:
    """The encoder's table label (``Encoder.label``); the name itself when no installed plugin registers it."""
    from ..models.encoders import registry

    encoders = registry()
    return encoders.get(b).display if b in encoders else b


def dataset_order() -> list[str]:
    """Column groups' dataset order: the registered datasets' table order (a dataset no installed plugin registers
    comes after them, by name)."""
    from ..data.registry import registry

    return registry().names()


def _published(dataset: str) -> bool:
    """Whether published reference rows may be shown for a dataset (False for the synthetic set); a dataset no
    installed plugin registers gets them only where a reported-numbers file names it."""
    from ..data.registry import registry

    return dataset not in registry() or registry().get(dataset).published


def _order(value: str, order: list[str]) -> tuple[int, str]:
    return (order.index(value), value) if value in order else (len(order), value)


# --------------------------------------------------------------------------- table model


@dataclass
class Column:
    id: str
    dataset: str = ""
    family: str = ""
    labeled: int = 0
    eval_mode: str = ""
    backbone: str = ""
    crop_size: Any = ""
    header: str = ""
    kind: str = "result"  # result | compute (the cost column of --compute, after the column groups)

    @property
    def group(self) -> tuple[str, str]:
        return (self.dataset, self.family)


@dataclass
class Row:
    key: str
    label: str
    kind: str = "harness"  # harness | reference
    method: str = ""
    settings_hash: str = "default"
    overrides: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # reference rows: where the number comes from
    selection: str = ""  # reference rows: the selection rule


@dataclass
class Cell:
    text: str = "—"
    state: str = "ok"  # ok | missing | partial | baseline | empty
    mean: float = math.nan
    std: float = math.nan
    n: int = 0
    value: float = math.nan  # what is compared for the best mark (Δ in the delta view)
    best: bool = False
    note: str = ""
    halfwidth: float = math.nan  # of the 95 % interval: of the mean (--ci) or of Δ (delta view)
    p_value: float = math.nan    # delta view: against the supervised row (paired over seeds when they match)
    paired: bool | None = None
    compute: Any = None  # --compute: what the cell's runs spent (harness.report.compute_table.CellCompute)


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[Row]
    cells: dict[tuple[str, str], Cell]
    caption: list[str]
    notes: list[str]
    metric: str = "final"
    delta: bool = False
    stub_header: str = "method"
    interval: str = "std"  # std | ci: what ± means in the cells
    kind: str = "main"  # main | per-class
    grouped: bool = True
    details: list[str] = field(default_factory=list)  # the caption's longer explanation (a note under the table)
    diagnostics: list[str] = field(default_factory=list)  # for the person running the command: files, options
    seeds: int = 0  # the usual number of seeds, said once in the caption; a cell with another number shows it

    def cell(self, row: Row, col: Column) -> Cell:
        return self.cells.get((row.key, col.id), Cell(text="", state="empty"))

    def groups(self) -> list[tuple[tuple[str, str], list[Column]]]:
        out: list[tuple[tuple[str, str], list[Column]]] = []
        for c in self.columns:
            if out and out[-1][0] == c.group:
                out[-1][1].append(c)
            else:
                out.append((c.group, [c]))
        return out


def fmt_stats(mean: float, std: float, n: int, signed: bool = False, usual_n: int | None = None) -> str:
    """``mean ± std (n)``; the ``(n)`` is left out where ``n`` is the table's usual seed count, which the caption
    says once."""
    m = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    count = "" if n == usual_n else f" ({n})"
    if n <= 1 or not math.isfinite(std):
        return m + count
    return f"{m} ± {std:.2f}{count}"


def fmt_delta(cmp, usual_n: int | None = None) -> str:
    """Δ ± its 95 % half-width, with the p-value; "n.s." when p ≥ 0.05."""
    text = fmt_stats(cmp.delta, cmp.halfwidth, cmp.n, signed=True, usual_n=usual_n)
    if math.isfinite(cmp.p_value):
        p = "p < 0.001" if cmp.p_value < 0.001 else f"p = {cmp.p_value:.3f}"
        text += f", {p}" + ("" if cmp.significant else " n.s.")
    return text


# --------------------------------------------------------------------------- reported rows


def default_reported_dir() -> Path:
    """The published numbers shipped with the package (``harness/resources/reported``)."""
    from ..resources import reported_dir

    return reported_dir()


def load_reported(directory: str | Path | None = None) -> pd.DataFrame:
    """All ``*.csv`` of the reported-numbers folder, validated; a file with other columns is an error."""
    d = Path(directory) if directory else default_reported_dir()
    frames = []
    for path in sorted(d.glob("*.csv")):
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (OSError, pd.errors.ParserError) as exc:
            raise HarnessError(f"reported-numbers file {path} could not be parsed: {exc}") from None
        if list(df.columns) != REPORTED_COLUMNS:
            raise HarnessError(f"reported-numbers file {path}: columns must be {', '.join(REPORTED_COLUMNS)}; "
                               f"got {', '.join(df.columns)}")
        df["file"] = str(path)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=REPORTED_COLUMNS + ["file"])
    df = pd.concat(frames, ignore_index=True)
    df["labeled"] = pd.to_numeric(df["labeled"], errors="coerce")
    df["miou_value"] = pd.to_numeric(df["miou"], errors="coerce")
    bad = df[df["labeled"].isna() | df["miou_value"].isna()]
    if len(bad):
        r = bad.iloc[0]
        raise HarnessError(f"reported-numbers file {r['file']}: a row has a non-numeric labeled or miou "
                           f"({r['method']}, labeled {r['labeled']!r}, miou {r['miou']!r})")
    df["labeled"] = df["labeled"].astype(int)
    return df


_SD = re.compile(r"mean of (\d+) runs; sd ([0-9.]+)")
_SD_NOTE = re.compile(r"mean of \d+ runs; sd [0-9.]+ \(n-1\);?\s*")


def _reported_text(r: pd.Series) -> tuple[str, float, int]:
    m = _SD.search(r["note"])
    if m:
        n, sd = int(m.group(1)), float(m.group(2))
        return f"{r['miou']} ± {sd:.2f} ({n})", sd, n
    return str(r["miou"]), math.nan, 1


def reported_label(r: pd.Series, column_os: int = 16) -> str:
    kind = "released logs" if r["source_type"] == "log" else "reported"
    os_part = f", OS{r['os']}" if str(r["os"]).strip() and str(r["os"]) != str(column_os) else ""
    return f"{r['method']} ({kind}, {r['selection']}{os_part})"


def _mismatch(r: pd.Series, col: Column) -> list[str]:
    why = []
    if r["backbone"] != col.backbone:
        why.append("backbone")
    if not str(r["crop"]).strip():
        why.append("crop not stated")
    elif str(r["crop"]) != str(col.crop_size):
        why.append(f"crop {r['crop']} vs {col.crop_size}")
    if not str(r["eval_mode"]).strip():
        why.append("eval mode not stated")
    elif r["eval_mode"] != col.eval_mode:
        why.append(f"eval {r['eval_mode']} vs {col.eval_mode}")
    return why


def match_reported(reported: pd.DataFrame, col: Column) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Reference rows comparable with a column (same dataset, split family, labeled count, backbone, crop,
    evaluation mode), and (method, reason) for rows of the same split that differ in setting. Never for
    a dataset registered without published numbers (the synthetic set); never an S4MIM row."""
    if reported is None or reported.empty or not _published(col.dataset):
        return reported.iloc[0:0] if reported is not None else pd.DataFrame(columns=REPORTED_COLUMNS), []
    same = reported[(reported["dataset"] == col.dataset) & (reported["family"] == col.family)
                    & (reported["labeled"] == int(col.labeled))]
    same = same[~same["method"].str.lower().str.contains("s4mim")]
    keep, near = [], []
    for idx, r in same.iterrows():
        why = _mismatch(r, col)
        if not why:
            keep.append(idx)
        elif why != ["backbone"] and "backbone" not in why:
            near.append((r["method"], "; ".join(why)))
    return same.loc[keep], near


# --------------------------------------------------------------------------- main table


def _columns(runs: pd.DataFrame, agg: pd.DataFrame) -> tuple[list[Column], list[str]]:
    notes = []
    cols = []
    for pid, sub in runs.groupby("protocol", sort=False):
        if pid not in set(agg["protocol"]):
            continue
        plain = sub[sub["protocol_overrides_key"].map(
            lambda k: not any(key.split(".")[0] in ("model", "eval") for key in _keys(k)))]
        base = plain if len(plain) else sub
        combos = Counter(zip(base["eval_mode"], base["backbone"], base["crop_size"]))
        (ev, bb, crop), _ = combos.most_common(1)[0]
        all_combos = set(zip(sub["eval_mode"], sub["backbone"], sub["crop_size"]))
        if len(all_combos) > 1:
            others = ", ".join(f"{b}/crop {c}/{e}" for e, b, c in sorted(all_combos - {(ev, bb, crop)}, key=str))
            notes.append(f"{pid}: some runs override the protocol's setting ({others}); their rows name the "
                         f"override; the column's setting is {bb}, crop {crop}, {ev}.")
        r0 = base.iloc[0]
        cols.append(Column(pid, str(r0["dataset"]), str(r0["family"]), int(r0["labeled"]), ev, bb, crop, pid))
    datasets = dataset_order()
    cols.sort(key=lambda c: (_order(c.dataset, datasets), _order(c.family, FAMILY_ORDER), c.labeled, c.id))
    return cols, notes


def _keys(k: str) -> list[str]:
    import json

    try:
        return list(json.loads(k))
    except ValueError:
        return []


def build_table(rs: ResultSet, metric: str = "final", delta: bool = False, reported: pd.DataFrame | None = None,
                methods: list[str] | None = None, protocols: list[str] | None = None,
                show_partial: bool = False, all_reported: bool = False, interval: str = "std",
                compute: bool = False) -> Table:
    """The methods × protocols table of a result set (see the module docstring for the rules). ``interval``:
    ``std`` (± sample standard deviation) or ``ci`` (± half-width of the 95 % t interval of the mean).
    ``compute``: add what the runs spent (``harness.report.compute_table``)."""
    from .results import METRIC_COLUMNS
    from .stats import compare, t_halfwidth

    if interval not in ("std", "ci"):
        raise HarnessError(f"interval must be 'std' or 'ci', got {interval!r}")
    runs = filter_runs(rs.runs, methods, protocols)
    if runs.empty:
        what = []
        if methods:
            what.append(f"methods {', '.join(methods)}")
        if protocols:
            what.append(f"protocols {', '.join(protocols)}")
        raise HarnessError("no finished runs" + (f" for {' and '.join(what)}" if what else "") +
                           f" under {', '.join(map(str, rs.roots)) or 'the given sources'}")
    agg = aggregate(runs, metric)
    per_seed: dict[tuple[str, str, str], dict] = defaultdict(dict)  # (method, settings, protocol) → seed → value
    for r in runs[runs[METRIC_COLUMNS[metric]].notna()].itertuples(index=False):
        per_seed[(r.method, r.settings_hash, r.protocol)][r.seed] = float(getattr(r, METRIC_COLUMNS[metric]))
    notes: list[str] = []
    diagnostics: list[str] = []
    if metric in ("best", "selected"):
        key = "best_on_val" if metric == "best" else "selected (no selection split, or an older harness)"
        for r in runs[runs[METRIC_COLUMNS[metric]].isna()].itertuples():
            diagnostics.append(f"{r.record_path}: no {key} value; not counted.")
    columns, col_notes = _columns(runs, agg)
    notes += col_notes

    # rows: one per (method, settings_hash)
    labels, label_notes = variant_labels(runs)
    rows = [Row(f"{v.method}/{v.settings_hash}", labels[(v.method, v.settings_hash)], "harness", v.method,
                v.settings_hash, v.overrides)
            for v in runs.drop_duplicates(["method", "settings_hash"]).itertuples(index=False)]
    notes += label_notes
    rows.sort(key=lambda r: (method_order(r.method), r.settings_hash != "default", r.label))
    _mark_rows_without_weights(rows, runs, notes)

    stats = {(a.method, a.settings_hash, a.protocol): a for a in agg.itertuples(index=False)}
    # expected number of seeds: from a grid manifest if given, else the most common n of the table
    expected_seeds: dict[tuple[str, str, str], set] = defaultdict(set)
    if rs.expected:
        for e in rs.expected:
            expected_seeds[(e["method"], e["settings_hash"], e["protocol"])].add(e.get("seed"))
    ns = Counter(a.n for a in agg.itertuples())
    mode_n = max(ns.items(), key=lambda kv: (kv[1], kv[0]))[0] if ns else 0
    seed_sets = Counter(a.seeds for a in agg.itertuples() if a.n == mode_n)
    usual_seeds = set(seed_sets.most_common(1)[0][0]) if seed_sets else set()
    incomplete = defaultdict(list)
    for i in rs.incomplete:
        incomplete[(i.get("method"), i.get("settings_hash"), i.get("protocol"))].append(i)

    def unfinished_text(key) -> str:
        items = incomplete.get(key, [])
        if not items:
            return ""
        parts = []
        for i in sorted(items, key=lambda x: str(x.get("seed"))):
            s = f"seed {i.get('seed')} {i.get('state', 'unknown')}"
            if i.get("step") is not None and i.get("total_steps"):
                s += f" at step {i['step']}/{i['total_steps']}"
            parts.append(s)
        return " (" + "; ".join(parts) + ")"

    cells: dict[tuple[str, str], Cell] = {}
    missing_by_row: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        for col in columns:
            key = (row.method, row.settings_hash, col.id)
            a = stats.get(key)
            want = expected_seeds.get(key)
            if a is None:
                if rs.expected is not None and want is None:
                    cells[(row.key, col.id)] = Cell(text="", state="empty")
                    continue
                cells[(row.key, col.id)] = Cell(state="missing")
                missing_by_row[row.label].append(col.id + unfinished_text(key))
                continue
            need_n = len(want) if want else mode_n
            have = set(a.seeds)
            lacking = sorted((want - have) if want else (usual_seeds - have), key=str)
            if a.n < need_n or (want and lacking):
                partial = fmt_stats(a.mean, a.std, a.n)
                seeds_txt = f"; missing seed(s) {', '.join(map(str, lacking))}" if lacking else ""
                note = (f"{row.label} on {col.id}: {a.n} of {need_n} seeds finished{seeds_txt}"
                        f"{unfinished_text(key)}; partial mean {partial}")
                if show_partial:
                    cells[(row.key, col.id)] = Cell(fmt_stats(a.mean, a.std, a.n) + "†", "partial", a.mean, a.std,
                                                    a.n, math.nan, note=note)
                else:
                    cells[(row.key, col.id)] = Cell(state="partial", mean=a.mean, std=a.std, n=a.n, note=note)
                notes.append(("† " if show_partial else "— ") + note + ".")
                continue
            if interval == "ci":
                half = t_halfwidth(list(per_seed[key].values()))
                cells[(row.key, col.id)] = Cell(fmt_stats(a.mean, half, a.n, usual_n=mode_n), "ok", a.mean, a.std,
                                                a.n, a.mean, halfwidth=half)
            else:
                cells[(row.key, col.id)] = Cell(fmt_stats(a.mean, a.std, a.n, usual_n=mode_n), "ok", a.mean, a.std,
                                                a.n, a.mean)
    for label, cols_missing in missing_by_row.items():
        notes.append(f"— {label}: no finished run on {', '.join(cols_missing)}.")
    if any(c.state == "empty" for c in cells.values()):
        notes.append("Blank cells are not part of the grid.")

    # Δ vs the supervised row of the same protocol with the same protocol-level settings
    if delta:
        candidates: dict[tuple[str, str], dict[str, Any]] = {}
        for a in agg.itertuples(index=False):
            if a.method == "supervised":
                candidates.setdefault((a.protocol, a.protocol_overrides_key), {})[a.settings_hash] = a
        sup = {k: by_hash[reference_hash(by_hash)] for k, by_hash in candidates.items()}
        no_base = []
        for row in rows:
            if row.method == "supervised":
                for col in columns:
                    c = cells.get((row.key, col.id))
                    if c and c.state == "ok":
                        c.state, c.value = "baseline", math.nan
                continue
            pkey = canonical(protocol_overrides(row.overrides, row.settings_hash))
            for col in columns:
                c = cells.get((row.key, col.id))
                if c is None or c.state not in ("ok", "partial"):
                    continue
                base = sup.get((col.id, pkey))
                if base is None:
                    if c.state == "ok":
                        c.text, c.state, c.value = "—", "missing", math.nan
                        no_base.append(f"{row.label} on {col.id}")
                    continue
                cmp = compare(per_seed[("supervised", base.settings_hash, col.id)],
                              per_seed[(row.method, row.settings_hash, col.id)])
                c.halfwidth, c.p_value, c.paired = cmp.halfwidth, cmp.p_value, cmp.paired
                if c.state == "ok":
                    c.text, c.value = fmt_delta(cmp, mode_n), cmp.delta
                elif show_partial:
                    c.text = fmt_delta(cmp) + "†"
        if no_base:
            notes.append("— no supervised run with the same protocol-level settings for: " + ", ".join(no_base) + ".")

    for col in columns:  # the Δ view bolds the best improvement only, never the least negative Δ
        mark_best([c for r in rows if (c := cells.get((r.key, col.id))) is not None and c.state == "ok"],
                  positive_only=delta)

    # reference rows
    ref_rows: list[Row] = []
    ref_notes: dict[str, list[str]] = defaultdict(list)
    near: dict[str, set] = defaultdict(set)
    hidden_variants = set()
    if reported is not None and not reported.empty:
        labels: dict[tuple[str, str], Row] = {}
        for col in columns:
            matched, miss = match_reported(reported, col)
            for m, why in miss:
                near[why].add(m)
            for _, r in matched.iterrows():
                if "[" in r["method"] and not all_reported:
                    hidden_variants.add(r["method"])
                    continue
                label = reported_label(r)
                key = (label, r["source"])
                if key not in labels:
                    labels[key] = Row(f"ref/{label}/{r['source']}", label, "reference", r["method"],
                                      source=r["source"], selection=r["selection"])
                    ref_rows.append(labels[key])
                row = labels[key]
                text, sd, n = _reported_text(r)
                if (row.key, col.id) in cells:
                    continue
                cells[(row.key, col.id)] = Cell(text, "ok", float(r["miou_value"]), sd, n, float(r["miou_value"]),
                                                note=r["note"])
                detail = _SD_NOTE.sub("", r["note"]).strip("; ")
                ref_notes[row.key].append(f"{col.id}: {detail}" if detail else "")
        # disambiguate equal labels from different sources
        counts = Counter(r.label for r in ref_rows)
        for r in ref_rows:
            if counts[r.label] > 1:
                r.label = f"{r.label} — {r.source}"
        if delta:
            ref_rows = _reported_delta(ref_rows, columns, cells, reported, notes)
    ref_lines = []
    for r in ref_rows:
        src = r.source
        details = [d for d in ref_notes.get(r.key, []) if d]
        common = None
        if details:
            texts = [d.split(": ", 1)[1] for d in details]
            common = texts[0] if len(set(texts)) == 1 and len(details) == sum(
                1 for c in columns if (r.key, c.id) in cells) else None
        body = f"{r.label}: {src}"
        if common:
            body += f"; {common}"
        elif details:
            body += "; " + " | ".join(details)
        ref_lines.append(body + ".")
    if near:
        parts = [f"{', '.join(sorted(ms))} ({why})" for why, ms in sorted(near.items())]
        notes.append("Reported rows not shown because their setting differs from the column's: " +
                     "; ".join(parts) + ".")
    if hidden_variants:
        diagnostics.append(f"{len(hidden_variants)} reported log row(s) with non-default settings not shown "
                           f"(--all-reported shows them).")

    all_rows = rows + ref_rows
    caption, details = _caption(columns, rows, ref_rows, metric, delta, show_partial, interval, mode_n,
                                teacher_evaluated(rows, runs))
    title = (("Δ mIoU vs supervised" if delta else "mIoU")
             + (f" — {metric_title(metric)}" if metric != "final" else ""))
    for c in columns:
        c.header = c.id + (f" — {metric_title(metric)}" if metric != "final" else "")
    interp = method_notes(r.method for r in rows)
    table = Table(title, columns, all_rows, cells, caption, interp + notes + ref_lines, metric, delta,
                  interval=interval, details=details, diagnostics=diagnostics, seeds=mode_n)
    if compute:
        from .compute_table import add_compute

        add_compute(table, runs)
    return table


def mark_best(cells: list[Cell], positive_only: bool = False) -> None:
    """Bold the best value of a column, compared at the shown precision. The one rule for ties, in every format: a
    value shared by two or more cells is not a winner, and none of them is bold. ``positive_only``: only a value
    above zero may be bold (an improvement in the Δ view; an IoU that is not zero)."""
    vals = [(float(f"{c.value:.2f}"), c) for c in cells if math.isfinite(c.value)]
    if not vals:
        return
    top = max(v for v, _ in vals)
    winners = [c for v, c in vals if v == top]
    if len(winners) == 1 and (top > 0 or not positive_only):
        winners[0].best = True


TIE_RULE = "a value shared by two or more cells of a column (at the shown precision) is not bold"


def seeds_phrase(n: int) -> str:
    return f"over {n} seeds" if n > 1 else "one run per cell"


def _reported_delta(ref_rows: list[Row], columns: list[Column], cells, reported: pd.DataFrame,
                    notes: list[str]) -> list[Row]:
    """Δ of reference rows vs the supervised row of the same source and selection rule, where one exists."""
    def src(r: Row) -> str:
        return r.source.split(" (")[0]

    def sel(r: Row) -> str:
        return r.selection.split(" (")[0]

    sup_rows = [r for r in ref_rows if r.method in SUPERVISED_REPORTED]
    out, dropped = [], []
    for r in ref_rows:
        if r.method in SUPERVISED_REPORTED:
            out.append(r)
            for col in columns:
                c = cells.get((r.key, col.id))
                if c:
                    c.state = "baseline"
            continue
        bases = [s for s in sup_rows if src(s) == src(r) and sel(s) == sel(r)]
        any_cell = False
        for col in columns:
            c = cells.get((r.key, col.id))
            if c is None:
                continue
            b = next((cells[(s.key, col.id)] for s in bases if (s.key, col.id) in cells), None)
            if b is None:
                del cells[(r.key, col.id)]
                continue
            d = c.mean - b.mean
            c.text, c.value = f"{d:+.2f}", d
            any_cell = True
        if any_cell:
            out.append(r)
        else:
            dropped.append(r.label)
    if dropped:
        notes.append("Δ view: reported rows without a reported supervised row of the same source and selection "
                     "rule are omitted: " + ", ".join(dropped) + ".")
    return out


def _caption(columns: list[Column], rows: list[Row], ref_rows: list[Row], metric: str, delta: bool,
             show_partial: bool, interval: str, seeds: int, teachers: list[str]) -> tuple[list[str], list[str]]:
    """(short caption, details): the short one says what a cell is, over how many seeds and what bold means; the
    details, in plain words, say how it was computed and what the column groups hold."""
    spread = "95 % confidence half-width" if interval == "ci" else "std"
    what = "mIoU (%) of the final checkpoint" if metric == "final" else f"mIoU (%), {metric_title(metric)}"
    over = seeds_phrase(seeds)
    if delta:
        short = [f"Δ mIoU (points) against supervised on the same protocol, ± its 95 % confidence half-width and "
                 f"the p-value, {over}; the supervised row shows its {what} (mean ± {spread})."]
    else:
        short = [f"{what}, mean ± {spread} {over}." if seeds > 1 else f"{what}, one run per cell."]
    short.append("Best harness value per column in bold" + (" (largest improvement)" if delta else "") + ".")
    details = []
    of_teacher = f" (of the EMA teacher for {_join(teachers)})" if teachers else ""
    details.append((f"Final checkpoint: the last evaluation of each run{of_teacher}, on the validation set.")
                   if metric == "final" else (
        "Best-on-val: the best of the periodic evaluations, chosen on the set it is reported on (optimistic; the "
        "harness headline is the final checkpoint).") if metric == "best" else (
        f"Selected: {SELECTED_TITLE}, at each run's evaluation with the highest mIoU on its protocol's selection "
        f"split, training images held out from the labeled list and from val whose labels only choose the checkpoint "
        f"(no selection on the reported set; the harness headline is the final checkpoint)."))
    spread_long = ("half-width of the 95 % confidence interval of the mean (Student's t over seeds)"
                   if interval == "ci" else "sample standard deviation (n − 1) over seeds")
    details.append(f"± is the {spread_long}; a single run shows no ±; a cell with another number of seeds than "
                   f"{seeds} gives it in parentheses.")
    if delta:
        details.append("Δ view: each cell is the method's mean minus the mean of the supervised row on the same "
                       "protocol with the same protocol-level settings, ± the half-width of its 95 % confidence "
                       "interval, and the two-sided p-value of the t-test (paired over seeds when both rows have "
                       "the same seeds, Welch's otherwise); n.s. = not significant at 0.05.")
    groups: list[tuple[tuple[str, str], list[Column]]] = []
    for c in columns:
        if groups and groups[-1][0] == c.group:
            groups[-1][1].append(c)
        else:
            groups.append((c.group, [c]))
    desc = []
    for (ds, fam), cols in groups:
        settings = sorted({(c.backbone, str(c.crop_size), c.eval_mode) for c in cols})
        st = "; ".join(f"{backbone_label(b)}, crop {cr}, eval {eval_label(e)}" for b, cr, e in settings)
        desc.append(f"{ds} — split family {family_label(fam)} ({', '.join(c.id for c in cols)}; {st})")
    details.append("Column groups (one split family each, ordered by labeled count): " + "; ".join(desc) + ".")
    details.append(f"Bold: {TIE_RULE}. — = no (complete) result, see the notes." +
                   (" † = fewer seeds than the other cells." if show_partial else ""))
    interp = [method_label(m) for m in sorted({r.method for r in rows}, key=method_order)
              if "harness interpretation" in method_label(m)]
    if interp:
        details.append("Rows named \"harness interpretation\" are not the published methods: " + "; ".join(interp) +
                       " (see the notes).")
    if ref_rows:
        details.append("Rows marked \"reported\" / \"released logs\" are published numbers, shown only where "
                       "backbone, crop, split family and evaluation mode match the column; their selection rule is "
                       "named (best-epoch rows are selected on the validation set and optimistic relative to the "
                       "final checkpoint).")
    return short, details


# --------------------------------------------------------------------------- per-class table


def build_per_class(rs: ResultSet, protocol: str, metric: str = "final", methods: list[str] | None = None) -> Table:
    runs = filter_runs(rs.runs, methods, None)
    df, classes = per_class(runs, protocol, metric)
    sub = runs[runs["protocol"] == protocol].iloc[0]
    columns = [Column(c, header=c) for c in classes] + [Column("mIoU", header="mIoU")]
    if metric != "final":
        columns[-1].header = f"mIoU — {metric_title(metric)}"
    rows, cells = [], {}
    df = df.assign(_o=[method_order(m) for m in df["method"]]).sort_values(["_o", "settings_hash"])
    labels, label_notes = variant_labels(runs[runs["protocol"] == protocol])
    ns = {int(n) for n in df["n"]}
    seeds = ns.pop() if len(ns) == 1 else 0  # one count for every row: said once in the caption
    for r in df.to_dict("records"):
        label = labels[(r['method'], r['settings_hash'])] + ("" if seeds else f" ({r['n']})")
        row = Row(f"{r['method']}/{r['settings_hash']}", label, "harness", r["method"], r["settings_hash"],
                  r["overrides"])
        rows.append(row)
        for c in classes + ["mIoU"]:
            v = float(r[c])
            ok = math.isfinite(v)
            cells[(row.key, c)] = Cell(f"{v:.2f}" if ok else "—", "ok" if ok else "missing", v, math.nan,
                                       int(r["n"]), v)
    for col in columns:
        mark_best([cells[(r.key, col.id)] for r in rows], positive_only=True)
    _mark_rows_without_weights(rows, runs[runs["protocol"] == protocol], label_notes)
    what = metric_title(metric)
    over = seeds_phrase(seeds) if seeds else "over seeds, (n) = number of seeds"
    caption = [f"Per-class IoU (%) on {protocol}, {what}, mean {over}.", "Best value per class in bold."]
    details = [f"Dataset {sub['dataset']}, split family {family_label(sub['family'])}, "
               f"{backbone_label(sub['backbone'])}, crop {sub['crop_size']}, eval {eval_label(sub['eval_mode'])}. "
               f"— = class absent from the evaluation set in every seed (IoU undefined). Bold: {TIE_RULE}."]
    interp = method_notes(r.method for r in rows)
    return Table(f"Per-class IoU — {protocol}", columns, rows, cells, caption, interp + label_notes, metric, False,
                 kind="per-class", grouped=False, details=details, seeds=seeds)


# --------------------------------------------------------------------------- rendering


def render(table: Table, fmt: str = "markdown") -> str:
    if fmt == "markdown":
        return render_markdown(table)
    if fmt == "latex":
        from .table_latex import render_latex

        return render_latex(table)
    if fmt == "csv":
        return render_csv(table)
    raise HarnessError(f"unknown table format '{fmt}'; expected markdown, latex or csv")


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def render_markdown(t: Table) -> str:
    out = [f"**Table: {t.title}.** " + " ".join(t.caption + t.details), ""]
    headers = [t.stub_header] + [c.header or c.id for c in t.columns]
    out.append("| " + " | ".join(_md_escape(h) for h in headers) + " |")
    out.append("|" + "|".join([":---"] + ["---:"] * len(t.columns)) + "|")
    for row in t.rows:
        label = f"*{row.label}*" if row.kind == "reference" else row.label
        vals = []
        for col in t.columns:
            c = t.cell(row, col)
            txt = _md_escape(c.text)
            vals.append(f"**{txt}**" if c.best and txt else txt)
        out.append("| " + " | ".join([_md_escape(label)] + vals) + " |")
    if t.notes or t.diagnostics:
        out += ["", "Notes:", ""] + [f"- {n}" for n in t.notes + t.diagnostics]
    return "\n".join(out) + "\n"


def render_csv(t: Table) -> str:
    """Long form: one line per (row, column) cell; ``best`` marks the best harness cell of each column and
    ``cell`` carries a trailing ``*`` there. Caption and notes are not part of the CSV."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if t.kind == "per-class":
        w.writerow(["row", "kind", "method", "settings_hash", "class", "iou", "n", "best", "cell"])
        for row in t.rows:
            for col in t.columns:
                c = t.cell(row, col)
                w.writerow([row.label, row.kind, row.method, row.settings_hash, col.id, _num(c.mean), c.n,
                            c.best, c.text + ("*" if c.best else "")])
        return buf.getvalue()
    compute = any(c.kind == "compute" for c in t.columns)
    w.writerow(["row", "kind", "method", "settings_hash", "overrides", "protocol", "dataset", "family", "labeled",
                "metric", "mean", "std", "n", "delta", "ci95_halfwidth", "p_value", "paired", "best", "state", "cell",
                "note"] + (COMPUTE_CSV if compute else []))
    metric = {"final": "final", "best": "best_on_val (selected on the evaluation set)",
              "selected": "selected (on the held-out selection split; val mIoU)"}[t.metric]
    for row in t.rows:
        for col in t.columns:
            c = t.cell(row, col)
            if c.state == "empty":
                continue
            harness = row.kind == "harness"
            extra = _compute_csv(c.compute) if compute else []
            if col.kind == "compute":  # the row's time per run, over all its cells
                w.writerow([row.label, row.kind, row.method, row.settings_hash, canonical(row.overrides), "compute",
                            "", "", "", "compute", "", "", c.n or "", "", "", "", "", False, c.state, c.text, ""]
                           + extra)
                continue
            d = c.value if (t.delta and c.state == "ok" and row.method not in SUPERVISED_REPORTED
                            and row.method != "supervised") else math.nan
            w.writerow([row.label, row.kind, row.method, row.settings_hash if harness else "",
                        canonical(row.overrides) if harness else "", col.id, col.dataset, col.family,
                        col.labeled, metric if harness else "reported",
                        _num(c.mean), _num(c.std), c.n or "", _num(d), _num(c.halfwidth), _num(c.p_value),
                        "" if c.paired is None else c.paired, c.best,
                        c.state, c.text + ("*" if c.best else ""), c.note] + extra)
    return buf.getvalue()


COMPUTE_CSV = ["hours_per_run", "hours_std", "hours_vs_supervised", "image_passes_per_run",
               "image_passes_vs_supervised", "peak_memory_gib"]


def _compute_csv(cc) -> list[str]:
    if cc is None:
        return [""] * len(COMPUTE_CSV)
    return [_num(cc.hours), _num(cc.hours_std), _num(cc.ratio), _num(cc.passes), _num(cc.passes_ratio),
            _num(cc.peak_memory_gib)]


def _num(x: float) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.4f}".rstrip("0").rstrip(".")
