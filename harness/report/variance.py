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

``harness table ... --variance`` shows one row per method and label count (:func:`build_variance_table`), and for
every method other than supervised its Δ against supervised **over splits**: the mean of the per-split differences
of the two rows' split means, with its t interval and the paired t-test over the common split seeds (k − 1
degrees of freedom; :func:`harness.report.stats.compare` with split seeds as the pairing key). That treats the
split as the unit of replication, which the Δ view (paired over training seeds within one list) cannot. Nothing
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
from .compute_table import SUPERVISED
from .results import METRIC_COLUMNS, ResultSet, filter_runs, reference_hash
from .stats import Comparison, compare

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
           "split share", "F", "p", "Δ vs supervised over splits"]


@dataclass
class VarianceRow:
    method: str
    settings_hash: str
    protocol: str       # the standard protocol the split seeds are draws of
    labeled: int
    seeds_per_split: str
    components: VarianceComponents
    label: str = ""     # the method and its settings, as the main table names the row
    vs_supervised: Comparison | None = None  # Δ over the split seeds both rows ran (None: supervised, or no reference)


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
    split_means: dict[tuple[str, str, str], dict[int, float]] = {}
    protocol_key: dict[tuple[str, str, str], str] = {}
    for (method, settings, base), sub in drawn.groupby(["method", "settings_hash", "split_of"], sort=False):
        groups: dict[int, list[float]] = defaultdict(list)
        for seed, value in zip(sub["split_seed"], sub[col]):
            groups[int(seed)].append(float(value))
        comp = variance_components(groups)
        counts = sorted({len(v) for v in groups.values()})
        per = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        rows.append(VarianceRow(method, settings, str(base), int(sub["labeled"].iloc[0]), per, comp,
                                labels[(method, settings)]))
        split_means[(method, settings, str(base))] = {s: sum(v) / len(v) for s, v in groups.items()}
        protocol_key[(method, settings, str(base))] = str(sub["protocol_overrides_key"].iloc[0])
        if comp.splits < 2 or comp.df_within == 0:
            notes.append(f"{method_label(method)} on {base}: {comp.splits} split seed(s), {comp.runs} run(s); the two "
                         f"components need at least two split seeds and two training seeds on one of them.")
    # Δ over splits against the supervised row with the same protocol-level settings (the Δ view's rule)
    for r in rows:
        if r.method == SUPERVISED:
            continue
        key = protocol_key[(r.method, r.settings_hash, r.protocol)]
        refs = [h for (m, h, b), k in protocol_key.items() if m == SUPERVISED and b == r.protocol and k == key]
        if not refs:
            notes.append(f"{r.label} on {r.protocol}: no supervised runs on its split seeds with the same "
                         f"protocol-level settings; no Δ over splits.")
            continue
        ref = split_means[(SUPERVISED, reference_hash(refs), r.protocol)]
        own = split_means[(r.method, r.settings_hash, r.protocol)]
        common = sorted(set(ref) & set(own))
        if not common:
            notes.append(f"{r.label} on {r.protocol}: no split seed in common with supervised; no Δ over splits.")
            continue
        r.vs_supervised = compare({s: ref[s] for s in common}, {s: own[s] for s in common})
    rows.sort(key=lambda r: (r.protocol, r.labeled, method_order(r.method), r.settings_hash))
    caption = (f"Split variance against seed variance of mIoU (%), {metric_title(metric)}: for each method and "
               f"label count, runs on independently drawn labeled lists of that size (split seeds) × training seeds; "
               f"two-level nested ANOVA (training seeds within splits). SD between splits = √σ²_split "
               f"(truncated at 0), SD between seeds = √MS_within, split share = σ²_split / "
               f"(σ²_split + σ²_seed); F and p test "
               f"σ²_split = 0 with (splits − 1, runs − splits) degrees of freedom. Δ vs supervised over splits: the mean "
               f"over the split seeds both rows ran of (method's split mean − supervised's split mean), ± the "
               f"half-width of its 95 % t interval, and the two-sided p-value of the paired t-test over those "
               f"splits; n.s. = not significant at 0.05; a count in parentheses when fewer splits are common.")
    return VarianceTable(rows, metric, caption, notes)


def _f(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if math.isfinite(x) else "—"


def _cells(r: VarianceRow) -> list[str]:
    from .tables import fmt_delta

    c = r.components
    p = "—" if not math.isfinite(c.p_value) else ("< 0.001" if c.p_value < 0.001 else f"{c.p_value:.3f}")
    delta = "" if r.method == SUPERVISED else ("—" if r.vs_supervised is None
                                                else fmt_delta(r.vs_supervised, usual_n=c.splits))
    return [str(r.labeled), str(c.splits), str(c.runs), r.seeds_per_split, _f(c.mean), _f(math.sqrt(c.split_var))
            if math.isfinite(c.split_var) else "—", _f(math.sqrt(c.seed_var)) if math.isfinite(c.seed_var) else "—",
            _f(100 * c.split_share, 0) + " %" if math.isfinite(c.split_share) else "—", _f(c.f), p, delta]


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
                    "split_share", "f", "p_value", "delta_over_splits", "delta_halfwidth", "delta_p_value",
                    "delta_splits"])
        for r in t.rows:
            c = r.components
            d = r.vs_supervised
            w.writerow([r.method, r.settings_hash, r.protocol, r.labeled, t.metric, c.splits, c.runs] +
                       [_num(x) for x in (c.mean, c.ms_between, c.ms_within)] + [c.df_between, c.df_within] +
                       [_num(x) for x in (c.n0, c.split_var, c.seed_var, c.split_share, c.f, c.p_value)] +
                       ([_num(d.delta), _num(d.halfwidth), _num(d.p_value), d.n] if d else ["", "", "", ""]))
        return buf.getvalue()
    raise HarnessError(f"unknown table format '{fmt}'; expected markdown, latex or csv")


def _num(x: float) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.6g}"


def frame(t: VarianceTable) -> pd.DataFrame:
    """The table's numbers as a frame (one row per table row), for scripts."""
    return pd.DataFrame([{"method": r.method, "settings_hash": r.settings_hash, "split_of": r.protocol,
                          "labeled": r.labeled, **{k: getattr(r.components, k) for k in
                                                   ("splits", "runs", "mean", "split_var", "seed_var", "f",
                                                    "p_value")}, "split_share": r.components.split_share,
                          **({"delta_over_splits": r.vs_supervised.delta, "delta_halfwidth": r.vs_supervised.halfwidth,
                              "delta_p_value": r.vs_supervised.p_value, "delta_splits": r.vs_supervised.n}
                             if r.vs_supervised else {})}
                         for r in t.rows])
