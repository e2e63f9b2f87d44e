"""Split variance against seed variance: a two-level nested analysis of variance over split seeds and training seeds.

A result depends on which images were labeled (the split) and on the training seed (data order, augmentations,
initialisation). Runs of one method on several split seeds of one label count (protocols with ``split_of`` and
``split_seed``, see :mod:`harness.data.split_seeds`), each with several training seeds, give both. The model is the
one-way random-effects model with training seeds nested in splits, y_ij = μ + a_i + e_ij, a_i ~ (0, σ²_split),
e_ij ~ (0, σ²_seed), with k splits, n_i runs on split i and N = Σ n_i:

- MS_between = Σ n_i (ȳ_i − ȳ)² / (k − 1), MS_within = Σ_i Σ_j (y_ij − ȳ_i)² / (N − k);
- σ²_seed = MS_within; σ²_split = (MS_between − MS_within) / n0 with n0 = (N − Σ n_i² / N) / (k − 1)
  (n0 = n when every split has n runs), truncated at 0 (a negative estimate means no split variance is detectable);
- F = MS_between / MS_within with (k − 1, N − k) degrees of freedom tests σ²_split = 0.

``harness table ... --variance`` shows one row per method and label count (:func:`build_variance_table`). Nothing
here imports torch.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping, Sequence

import pandas as pd
from scipy import stats as _st

from ..errors import HarnessError
from .results import METRIC_COLUMNS, ResultSet, filter_runs

__all__ = ["VarianceComponents", "variance_components", "build_variance_table", "render_variance"]


@dataclass(frozen=True)
class VarianceComponents:
    splits: int         # k
    runs: int           # N
    mean: float         # grand mean over runs
    ms_between: float
    ms_within: float
    df_between: int
    df_within: int
    n0: float           # effective runs per split
    split_var: float    # σ²_split, truncated at 0; NaN when it cannot be estimated
    seed_var: float     # σ²_seed; NaN without a split of two runs
    f: float
    p_value: float

    @property
    def split_share(self) -> float:
        """σ²_split / (σ²_split + σ²_seed): the part of a single run's variance that comes from the split."""
        total = self.split_var + self.seed_var
        return self.split_var / total if math.isfinite(total) and total > 0 else math.nan


def variance_components(groups: Mapping[object, Sequence[float]]) -> VarianceComponents:
    """The nested ANOVA of ``{split: [value of each training seed]}`` (see the module docstring)."""
    data = {k: [float(v) for v in vals] for k, vals in groups.items() if len(vals)}
    if not data:
        raise ValueError("variance_components needs at least one split with a run")
    k = len(data)
    n_i = [len(v) for v in data.values()]
    big_n = sum(n_i)
    grand = sum(sum(v) for v in data.values()) / big_n
    means = {s: sum(v) / len(v) for s, v in data.items()}
    ss_between = sum(len(v) * (means[s] - grand) ** 2 for s, v in data.items())
    ss_within = sum((x - means[s]) ** 2 for s, v in data.items() for x in v)
    df_b, df_w = k - 1, big_n - k
    ms_b = ss_between / df_b if df_b > 0 else math.nan
    ms_w = ss_within / df_w if df_w > 0 else math.nan
    n0 = (big_n - sum(n * n for n in n_i) / big_n) / df_b if df_b > 0 else math.nan
    split_var = max(0.0, (ms_b - ms_w) / n0) if df_b > 0 and df_w > 0 else math.nan
    if df_b > 0 and df_w > 0 and ms_w > 0:
        f = ms_b / ms_w
        p = float(_st.f.sf(f, df_b, df_w))
    else:  # one split, no replicate, or identical replicates: no test
        f, p = math.nan, math.nan
    return VarianceComponents(k, big_n, grand, ms_b, ms_w, df_b, df_w, n0, split_var, ms_w, f, p)


# --------------------------------------------------------------------------- table

HEADERS = ["labeled", "split seeds", "runs", "seeds per split", "mean", "SD between splits", "SD between seeds",
           "split share", "F", "p"]


@dataclass
class VarianceRow:
    method: str
    settings_hash: str
    protocol: str       # the standard protocol the split seeds are draws of
    labeled: int
    seeds_per_split: str
    components: VarianceComponents
    label: str = ""     # the method and its settings, as the main table names the row


@dataclass
class VarianceTable:
    rows: list[VarianceRow]
    metric: str
    caption: str
    notes: list[str]


def build_variance_table(rs: ResultSet, metric: str = "final", methods: list[str] | None = None,
                         protocols: list[str] | None = None) -> VarianceTable:
    """One row per (method, settings, standard protocol) with runs on at least one split seed: the variance
    components of the metric over its split seeds and training seeds. Runs on the standard list itself (no
    ``split_seed``) are not one of the draws and are left out (named in a note)."""
    from .tables import method_label, method_order, metric_title, variant_labels

    runs = filter_runs(rs.runs, methods, None)
    if protocols:  # the standard protocol ids the split seeds are draws of, or the split-seed ids themselves
        from fnmatch import fnmatchcase

        runs = runs[[any(fnmatchcase(p, pat) or fnmatchcase(s, pat) for pat in protocols)
                     for p, s in zip(runs["protocol"], runs["split_of"])]]
    col = METRIC_COLUMNS[metric]
    drawn = runs[runs["split_seed"].notna() & runs[col].notna()]
    if drawn.empty:
        raise HarnessError(f"no finished run on a split-seed protocol (split_seed in its record) with a {metric} "
                           f"value under {', '.join(map(str, rs.roots)) or 'the given sources'}; run a grid with "
                           f"split_seeds (e.g. benchmarks/grids/synthetic-split-seeds.yaml)")
    labels, _ = variant_labels(drawn)
    notes = []
    standard = runs[runs["split_seed"].isna() & runs["protocol"].isin(set(drawn["split_of"]))]
    if len(standard):
        notes.append(f"{len(standard)} run(s) on the standard lists ({', '.join(sorted(set(standard['protocol'])))}) "
                     f"are not one of the split seeds and are left out.")
    rows = []
    for (method, settings, base), sub in drawn.groupby(["method", "settings_hash", "split_of"], sort=False):
        groups: dict[int, list[float]] = defaultdict(list)
        for seed, value in zip(sub["split_seed"], sub[col]):
            groups[int(seed)].append(float(value))
        comp = variance_components(groups)
        counts = sorted({len(v) for v in groups.values()})
        per = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        rows.append(VarianceRow(method, settings, str(base), int(sub["labeled"].iloc[0]), per, comp,
                                labels[(method, settings)]))
        if comp.splits < 2 or comp.df_within == 0:
            notes.append(f"{method_label(method)} on {base}: {comp.splits} split seed(s), {comp.runs} run(s); the two "
                         f"components need at least two split seeds and two training seeds on one of them.")
    rows.sort(key=lambda r: (r.protocol, r.labeled, method_order(r.method), r.settings_hash))
    caption = (f"Split variance against seed variance of mIoU (%), {metric_title(metric)}: for each method and "
               f"label count, runs on independently drawn labeled lists of that size (split seeds) × training seeds; "
               f"two-level nested ANOVA (training seeds within splits). SD between splits = √σ²_split "
               f"(truncated at 0), SD between seeds = √MS_within, split share = σ²_split / "
               f"(σ²_split + σ²_seed); F and p test "
               f"σ²_split = 0 with (splits − 1, runs − splits) degrees of freedom.")
    return VarianceTable(rows, metric, caption, notes)


def _f(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if math.isfinite(x) else "—"


def _cells(r: VarianceRow) -> list[str]:
    c = r.components
    p = "—" if not math.isfinite(c.p_value) else ("< 0.001" if c.p_value < 0.001 else f"{c.p_value:.3f}")
    return [str(r.labeled), str(c.splits), str(c.runs), r.seeds_per_split, _f(c.mean), _f(math.sqrt(c.split_var))
            if math.isfinite(c.split_var) else "—", _f(math.sqrt(c.seed_var)) if math.isfinite(c.seed_var) else "—",
            _f(100 * c.split_share, 0) + " %" if math.isfinite(c.split_share) else "—", _f(c.f), p]


def _label(r: VarianceRow) -> str:
    return f"{r.label} — {r.protocol}"


def render_variance(t: VarianceTable, fmt: str = "markdown") -> str:
    if fmt == "markdown":
        out = ["**Table: split variance vs seed variance.** " + t.caption, "",
               "| method — split seeds of | " + " | ".join(HEADERS) + " |",
               "|:---|" + "|".join(["---:"] * len(HEADERS)) + "|"]
        out += ["| " + " | ".join([_label(r).replace("|", "\\|")] + _cells(r)) + " |" for r in t.rows]
        if t.notes:
            out += ["", "Notes:", ""] + [f"- {n}" for n in t.notes]
        return "\n".join(out) + "\n"
    if fmt == "latex":
        from .table_latex import tex_escape

        out = ["% requires \\usepackage{booktabs}", "\\begin{table}[t]", "\\centering", "\\small",
               "\\caption{" + tex_escape("Split variance vs seed variance. " + t.caption) + "}",
               "\\begin{tabular}{l" + "r" * len(HEADERS) + "}", "\\toprule",
               " & ".join(tex_escape(h) for h in ["method — split seeds of"] + HEADERS) + " \\\\", "\\midrule"]
        out += [" & ".join(tex_escape(x) for x in [_label(r)] + _cells(r)) + " \\\\" for r in t.rows]
        out += ["\\bottomrule", "\\end{tabular}"] + [tex_escape(n) + "\\par" for n in t.notes] + ["\\end{table}"]
        return "\n".join(out) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["method", "settings_hash", "split_of", "labeled", "metric", "splits", "runs", "mean",
                    "ms_between", "ms_within", "df_between", "df_within", "n0", "var_split", "var_seed",
                    "split_share", "f", "p_value"])
        for r in t.rows:
            c = r.components
            w.writerow([r.method, r.settings_hash, r.protocol, r.labeled, t.metric, c.splits, c.runs] +
                       [_num(x) for x in (c.mean, c.ms_between, c.ms_within)] + [c.df_between, c.df_within] +
                       [_num(x) for x in (c.n0, c.split_var, c.seed_var, c.split_share, c.f, c.p_value)])
        return buf.getvalue()
    raise HarnessError(f"unknown table format '{fmt}'; expected markdown, latex or csv")


def _num(x: float) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.6g}"


def frame(t: VarianceTable) -> pd.DataFrame:
    """The table's numbers as a frame (one row per table row), for scripts."""
    return pd.DataFrame([{"method": r.method, "settings_hash": r.settings_hash, "split_of": r.protocol,
                          "labeled": r.labeled, **{k: getattr(r.components, k) for k in
                                                   ("splits", "runs", "mean", "split_var", "seed_var", "f",
                                                    "p_value")}, "split_share": r.components.split_share}
                         for r in t.rows])
