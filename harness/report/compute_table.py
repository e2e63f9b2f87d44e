"""The compute view of a table (``harness table --compute``): what each row's runs spent, beside their mIoU.

Every result cell gets the mean over its seeds of the training time per run (wall time × processes, evaluations
included: a record's ``compute.device_hours``, or its ``wall_time_s`` for records from before that field), and of
the network image-passes where the records count them; a compute column after the column groups gives each
harness row's mean time per run over all its cells, and that time relative to the supervised row:

    ratio = Σ over the row's columns of its mean time  /  Σ over the same columns of supervised's mean time,

the supervised row being the one of the same protocol-level settings, as in the Δ view. Summing over the same
columns keeps a row with fewer cells from being compared with a different mix of protocols. Times are GPU-hours
for runs on a GPU and hours of one CPU training process otherwise; a table that mixes the two says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from .results import canonical, protocol_overrides, reference_hash
from .tables import Cell, Column, Table

SUPERVISED = "supervised"


@dataclass
class CellCompute:
    hours: float              # mean over seeds of the time per run
    hours_std: float
    n: int
    passes: float = math.nan  # mean image-passes with gradient + without (NaN where a record does not count them)
    peak_memory_gib: float = math.nan
    ratio: float = math.nan   # hours / supervised's hours on the same column
    passes_ratio: float = math.nan


def unit(runs: pd.DataFrame) -> tuple[str, str]:
    """(short unit for headers, its meaning for the note) from the devices the runs trained on."""
    devices = set(runs["device_type"]) - {""}
    if devices == {"cuda"}:
        return "GPU-h", "GPU time: training wall time × GPUs, evaluations included"
    if devices <= {"cpu"}:
        return "CPU-h", ("CPU time: training wall time × processes, each a CPU process, evaluations included; each "
                         "run's thread count is in its configuration")
    return "device-h", ("training wall time × processes, evaluations included, on GPUs for some runs and CPUs for "
                        "others (" + ", ".join(sorted(devices)) + "): the two are not comparable")


def _cell_stats(runs: pd.DataFrame) -> dict[tuple[str, str, str], CellCompute]:
    out = {}
    for (method, settings, protocol), g in runs.groupby(["method", "settings_hash", "protocol"], sort=False):
        hours = g["process_hours"].dropna()
        passes = (g["passes_with_grad"] + g["passes_forward_only"]).dropna()
        out[(method, settings, protocol)] = CellCompute(
            float(hours.mean()) if len(hours) else math.nan,
            float(hours.std()) if len(hours) > 1 else math.nan, int(len(hours)),
            float(passes.mean()) if len(passes) == len(g) else math.nan,
            float(g["peak_memory_gib"].mean()) if g["peak_memory_gib"].notna().all() else math.nan)
    return out


def _supervised_of(row_overrides: dict, row_hash: str, col: str, stats, runs: pd.DataFrame) -> CellCompute | None:
    """The supervised cell a row is compared with: same protocol, same protocol-level settings (default settings
    preferred), as in the Δ view."""
    pkey = canonical(protocol_overrides(row_overrides, row_hash))
    sup = runs[(runs["method"] == SUPERVISED) & (runs["protocol"] == col) & (runs["protocol_overrides_key"] == pkey)]
    if sup.empty:
        return None
    return stats.get((SUPERVISED, reference_hash(set(sup["settings_hash"])), col))


def add_compute(table: Table, runs: pd.DataFrame) -> None:
    """Attach ``CellCompute`` to every harness result cell of ``table`` (``Cell.compute``) and add the compute
    column; ``runs`` are the table's runs (``ResultSet.runs`` filtered as for the table)."""
    stats = _cell_stats(runs)
    short, meaning = unit(runs)
    result_cols = [c for c in table.columns if c.kind == "result"]
    row_totals: dict[str, tuple[float, float, list[float], int]] = {}
    for row in table.rows:
        if row.kind != "harness":
            continue
        own_sum = sup_sum = 0.0
        hours: list[float] = []
        for col in result_cols:
            cell = table.cells.get((row.key, col.id))
            st = stats.get((row.method, row.settings_hash, col.id))
            if cell is None or st is None or cell.state not in ("ok", "baseline", "partial"):
                continue
            if not math.isfinite(st.hours):  # records without a wall time: nothing to add up
                continue
            sup = _supervised_of(row.overrides, row.settings_hash, col.id, stats, runs)
            if sup is not None and math.isfinite(sup.hours) and sup.hours > 0:
                st.ratio = st.hours / sup.hours
                if cell.state != "partial":
                    own_sum += st.hours
                    sup_sum += sup.hours
            if sup is not None and math.isfinite(st.passes) and math.isfinite(sup.passes) and sup.passes > 0:
                st.passes_ratio = st.passes / sup.passes
            cell.compute = st
            if cell.state != "partial":
                hours += [st.hours] * st.n
        row_totals[row.key] = (own_sum, sup_sum, hours, len(hours))
    scale, label = _scale([h for _, _, hs, _ in row_totals.values() for h in hs], short)
    col = Column("compute", header=f"{label} per run (× supervised)", kind="compute")
    table.columns.append(col)
    for row in table.rows:
        if row.key not in row_totals:
            continue
        own_sum, sup_sum, hours, n = row_totals[row.key]
        if not hours:
            table.cells[(row.key, col.id)] = Cell(text="—", state="missing")
            continue
        mean = sum(hours) / n
        ratio = own_sum / sup_sum if sup_sum > 0 else math.nan
        text = f"{mean * scale:.{_digits(mean * scale)}f}" + (f" ({ratio:.1f}×)" if math.isfinite(ratio) else "")
        cell = Cell(text=text, state="compute", mean=mean, n=n, value=math.nan)
        cell.compute = CellCompute(mean, math.nan, n, ratio=ratio)
        table.cells[(row.key, col.id)] = cell
    unit_text = "minutes" if scale == 60 else "hours"
    table.caption.append(f"Last column: {label} per run, and relative to supervised.")
    table.details.append(
        f"Compute column: mean {unit_text} per run over the row's finished runs ({meaning}); in parentheses the "
        f"row's time relative to supervised: the sum over the row's columns of its mean time per run divided by the "
        f"same sum for the supervised row of the same protocol-level settings. Wall time depends on the machine and "
        f"on what else ran on it.")


def _scale(hours: list[float], short: str) -> tuple[float, str]:
    """Minutes when every row's runs take under an hour (two decimals of an hour would hide the differences)."""
    finite = [h for h in hours if math.isfinite(h)]
    if finite and max(finite) < 1.0:
        return 60.0, short.replace("-h", "-min")
    return 1.0, short


def _digits(x: float) -> int:
    return 2 if abs(x) < 10 else 1 if abs(x) < 100 else 0
