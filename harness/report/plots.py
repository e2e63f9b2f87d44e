"""Plots of a result set (PNG through matplotlib's Agg canvas; matplotlib is the optional ``plot`` extra).

- ``miou_vs_labels``: mIoU against the number of labeled images (log x), one line per method / settings variant,
  error bars = sample std over seeds; one panel per (dataset, split family).
- ``miou_vs_compute``: mIoU against the training time per run (log x), one point per protocol and method / settings
  variant, labelled with its labeled count; error bars = sample std over seeds on both axes.
- ``training_curves``: mIoU over steps, training losses and method signals (e.g. iMAS ``h_mean``, ``rho_t``),
  per run or as the mean over seeds with a ± std band.
- ``per_class_bars``: per-class IoU bars of one protocol, error bars = std over seeds.

No pyplot state is touched: figures are ``matplotlib.figure.Figure`` objects saved directly.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..errors import HarnessError
from .results import ResultSet, aggregate, curves, filter_runs, per_class
from .tables import FAMILY_ORDER, metric_title, _order, dataset_order, family_label, method_order, variant_labels

KINDS = ("miou-vs-labels", "miou-vs-compute", "curves", "per-class")


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.4, 4.2)):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise HarnessError("plots need matplotlib: pip install 'ssseg-harness[plot]'") from None
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, format=out.suffix.lstrip(".") or "png")
    return out


def _one_protocol(runs: pd.DataFrame, protocol: str | None) -> str:
    present = sorted(runs["protocol"].unique())
    if protocol:
        if protocol not in present:
            raise HarnessError(f"no finished run of protocol '{protocol}'; present: {', '.join(present) or 'none'}")
        return protocol
    if len(present) != 1:
        raise HarnessError(f"these results hold several protocols ({', '.join(present)}); choose one with --protocol")
    return present[0]


def miou_vs_labels(rs: ResultSet, out: str | Path, metric: str = "final", methods: list[str] | None = None,
                   protocols: list[str] | None = None) -> Path:
    runs = filter_runs(rs.runs, methods, protocols)
    if runs.empty:
        raise HarnessError("no finished runs to plot")
    agg = aggregate(runs, metric)
    labels, _ = variant_labels(runs)
    datasets = dataset_order()
    groups = sorted({(a.dataset, a.family) for a in agg.itertuples()},
                    key=lambda g: (_order(g[0], datasets), _order(g[1], FAMILY_ORDER)))
    fig, axes = _figure(1, len(groups))
    for ax, (ds, fam) in zip(axes[0], groups):
        sub = agg[(agg["dataset"] == ds) & (agg["family"] == fam)]
        variants = sub.drop_duplicates(["method", "settings_hash"])
        variants = sorted(variants.itertuples(), key=lambda v: (method_order(v.method),
                                                               v.settings_hash != "default"))
        for v in variants:
            pts = sub[(sub["method"] == v.method) & (sub["settings_hash"] == v.settings_hash)]
            pts = pts.groupby("labeled", as_index=False).agg(mean=("mean", "mean"), std=("std", "max"),
                                                             n=("n", "min")).sort_values("labeled")
            err = pts["std"].fillna(0.0)
            ns = sorted(set(pts["n"]))
            nlab = f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}–{ns[-1]}"
            ax.errorbar(pts["labeled"], pts["mean"], yerr=err, marker="o", capsize=3,
                        label=f"{labels[(v.method, v.settings_hash)]} ({nlab})")
        labeled = sorted(set(sub["labeled"]))
        ax.set_xscale("log")
        ax.set_xticks(labeled)
        ax.set_xticklabels([str(x) for x in labeled])
        ax.minorticks_off()
        ax.set_xlabel("labeled images (log scale)")
        ax.set_ylabel("mIoU (%)" + (f" — {metric_title(metric)}" if metric != "final" else ", final checkpoint"))
        fam_name = family_label(fam)
        ax.set_title(ds if fam_name == ds else f"{ds}: {fam_name}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("mIoU vs labeled images (mean ± std over seeds)", fontsize=11)
    return _save(fig, out)


def miou_vs_compute(rs: ResultSet, out: str | Path, metric: str = "final", methods: list[str] | None = None,
                    protocols: list[str] | None = None) -> Path:
    """Where each method's mIoU sits against what its runs cost: a panel per (dataset, split family); x = mean
    training time per run (GPU- or CPU-hours, as the compute column of ``harness table --compute``)."""
    from matplotlib.ticker import ScalarFormatter

    from .compute_table import unit
    from .results import METRIC_COLUMNS

    runs = filter_runs(rs.runs, methods, protocols)
    col = METRIC_COLUMNS.get(metric)
    if col is None:
        raise HarnessError(f"unknown metric '{metric}'; expected one of {', '.join(METRIC_COLUMNS)}")
    runs = runs[runs[col].notna() & runs["process_hours"].notna()]
    if runs.empty:
        raise HarnessError("no finished runs with a training time to plot")
    short, _ = unit(runs)
    minutes = runs["process_hours"].max() < 1.0  # as the table's compute column: minutes when every run is shorter
    if minutes:
        short = short.replace("-h", "-min")
    labels, _ = variant_labels(runs)
    keys = ["dataset", "family", "method", "settings_hash", "protocol", "labeled"]
    pts = runs.groupby(keys, as_index=False).agg(miou=(col, "mean"), miou_std=(col, "std"),
                                                   hours=("process_hours", "mean"), hours_std=("process_hours", "std"),
                                                   n=(col, "count"))
    if minutes:
        pts[["hours", "hours_std"]] *= 60.0
    datasets = dataset_order()
    groups = sorted({(a.dataset, a.family) for a in pts.itertuples()},
                    key=lambda g: (_order(g[0], datasets), _order(g[1], FAMILY_ORDER)))
    fig, axes = _figure(1, len(groups), size=(6.4, 4.6))
    for ax, (ds, fam) in zip(axes[0], groups):
        sub = pts[(pts["dataset"] == ds) & (pts["family"] == fam)]
        variants = sorted(sub.drop_duplicates(["method", "settings_hash"]).itertuples(),
                          key=lambda v: (method_order(v.method), v.settings_hash != "default"))
        for v in variants:
            p = sub[(sub["method"] == v.method) & (sub["settings_hash"] == v.settings_hash)].sort_values("labeled")
            ns = sorted(set(p["n"]))
            nlab = f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}–{ns[-1]}"
            line = ax.errorbar(p["hours"], p["miou"], xerr=p["hours_std"].fillna(0.0),
                               yerr=p["miou_std"].fillna(0.0), marker="o", capsize=2, linestyle="none",
                               label=f"{labels[(v.method, v.settings_hash)]} ({nlab})")
            for r in p.itertuples():
                ax.annotate(str(r.labeled), (r.hours, r.miou), textcoords="offset points", xytext=(4, 3),
                            fontsize=6, color=line[0].get_color())
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel(f"training time per run ({short}, log scale; mean over seeds)")
        ax.set_ylabel("mIoU (%)" + (f" — {metric_title(metric)}" if metric != "final" else ", final checkpoint"))
        fam_name = family_label(fam)
        ax.set_title(ds if fam_name == ds else f"{ds}: {fam_name} (points labelled by labeled images)", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(3, len(names)), fontsize=7, frameon=False)
    fig.suptitle("mIoU vs training time per run (mean ± std over seeds)", fontsize=11)
    return _save(fig, out)


def _signal_panels(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(column, panel title) for every logged signal: mIoU first, then losses, then method signals."""
    def present(c):
        return c in df.columns and df[c].notna().any()

    miou = [c for c in ["miou"] + sorted(c for c in df.columns if c.endswith("_miou")) if present(c)]
    logged = [c for c in df.columns if c.startswith("train.") and c != "train.lr" and present(c)]
    losses = sorted(c for c in logged if "loss" in c)
    losses.sort(key=lambda c: c != "train.loss")  # the total first
    method = [c for c in df.columns if c.startswith("method.") and present(c)]
    # other step logs (e.g. a consistency weight) are signals too, unless a method signal has the same name
    signals = sorted(method + [c for c in logged if "loss" not in c and "method." + c[6:] not in method])
    titles = [(c, "mIoU (%)" if c == "miou" else f"{c[:-5]} mIoU (%)") for c in miou]
    titles += [(c, f"train {c[6:]} (mean per interval)") for c in losses]
    titles += [(c, f"signal: {c.split('.', 1)[1]}") for c in signals]
    return titles


def training_curves(rs: ResultSet, out: str | Path, protocol: str | None = None,
                    methods: list[str] | None = None, per_run: bool = False) -> Path:
    """One small panel per signal (a colour per method and settings variant), one legend below them all: with six
    methods and their many loss terms, a panel per term stays readable where one crowded axes did not."""
    runs = rs.runs
    if methods:
        runs = filter_runs(runs, methods, None)
        if runs.empty:
            raise HarnessError(f"no finished run of method(s) {', '.join(methods)}")
    pid = _one_protocol(runs, protocol)
    runs = runs[runs["protocol"] == pid]
    df = curves(runs)
    if df.empty:
        raise HarnessError(f"no metrics.jsonl evaluations found for {pid} (runs: {len(runs)})")
    panels = _signal_panels(df)
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = _figure(nrows, ncols, size=(3.6, 2.7))
    variants = sorted(df.drop_duplicates(["method", "settings_hash"])[["method", "settings_hash"]].itertuples(
        index=False), key=lambda v: (method_order(v.method), v.settings_hash != "default"))
    labels, _ = variant_labels(runs)
    handles: dict[str, object] = {}
    flat = [ax for row in axes for ax in row]
    for ax, (key, title) in zip(flat, panels):
        for vi, v in enumerate(variants):
            color = f"C{vi % 10}"
            sub = df[(df["method"] == v.method) & (df["settings_hash"] == v.settings_hash)]
            if key not in sub.columns or sub[key].isna().all():
                continue
            name = labels[(v.method, v.settings_hash)]
            seeds = sorted(sub["seed"].unique())
            if per_run or len(seeds) == 1:
                for s in seeds:
                    one = sub[sub["seed"] == s].sort_values("step")
                    (line,) = ax.plot(one["step"], one[key], color=color, alpha=0.9 if len(seeds) == 1 else 0.6,
                                      linewidth=1.2)
            else:
                g = sub.groupby("step")[key].agg(["mean", "std"]).sort_index()
                (line,) = ax.plot(g.index, g["mean"], color=color, linewidth=1.4)
                sd = g["std"].fillna(0.0)
                ax.fill_between(g.index, g["mean"] - sd, g["mean"] + sd, color=color, alpha=0.15, linewidth=0)
            handles.setdefault(name, line)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("step", fontsize=8)
    seeds_note = "one line per seed" if per_run else "mean ± std over seeds"
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
               ncols=min(3, len(handles)), fontsize=8, frameon=False)
    fig.suptitle(f"Training curves — {pid} ({seeds_note})", fontsize=11)
    return _save(fig, out)


def per_class_bars(rs: ResultSet, out: str | Path, protocol: str | None = None, methods: list[str] | None = None,
                   metric: str = "final") -> Path:
    runs = filter_runs(rs.runs, methods, None)
    pid = _one_protocol(runs, protocol)
    df, classes = per_class(runs, pid, metric)
    labels, _ = variant_labels(runs[runs["protocol"] == pid])
    df = df.assign(_o=[method_order(m) for m in df["method"]]).sort_values(["_o", "settings_hash"])
    k = len(df)
    fig, axes = _figure(1, 1, size=(max(6.4, 0.45 * len(classes) * max(1, k) ** 0.5 + 2), 4.4))
    ax = axes[0][0]
    width = 0.8 / max(1, k)
    xs = list(range(len(classes)))
    for i, r in enumerate(df.to_dict("records")):
        vals = [r[c] for c in classes]
        errs = [0.0 if not math.isfinite(r.get(f"{c} std", math.nan)) else r[f"{c} std"] for c in classes]
        pos = [x - 0.4 + width * (i + 0.5) for x in xs]
        ax.bar(pos, [v if math.isfinite(v) else 0.0 for v in vals], width, yerr=errs, capsize=2,
               label=f"{labels[(r['method'], r['settings_hash'])]} "
                     f"(mIoU {r['mIoU']:.2f}, n={r['n']})")
        for p, v in zip(pos, vals):
            if not math.isfinite(v):
                ax.text(p, 1, "—", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(xs)
    ax.set_xticklabels(classes, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    what = metric_title(metric)
    ax.set_title(f"Per-class IoU — {pid} ({what}; mean ± std over seeds; — = class absent)", fontsize=10)
    return _save(fig, out)


def plot(rs: ResultSet, kind: str, out: str | Path, protocol: str | None = None, methods: list[str] | None = None,
         protocols: list[str] | None = None, metric: str = "final", per_run: bool = False) -> Path:
    if kind == "miou-vs-labels":
        return miou_vs_labels(rs, out, metric, methods, protocols or ([protocol] if protocol else None))
    if kind == "miou-vs-compute":
        return miou_vs_compute(rs, out, metric, methods, protocols or ([protocol] if protocol else None))
    if kind == "curves":
        return training_curves(rs, out, protocol, methods, per_run)
    if kind == "per-class":
        return per_class_bars(rs, out, protocol, methods, metric)
    raise HarnessError(f"unknown plot kind '{kind}'; expected one of {', '.join(KINDS)}")
