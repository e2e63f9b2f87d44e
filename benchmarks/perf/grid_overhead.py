"""Grid overhead: how long the harness itself takes to submit, track and aggregate a grid of N runs.

Run: ``python benchmarks/perf/grid_overhead.py [--runs 100] [--executor slurm|local] [--out FILE.json]``

The runs are minimal on purpose (a generated 48-image synthetic set, 1 training step, 1 evaluation), so what is
measured is the harness around training: ``harness grid`` (validate N runs, write the task files, one sbatch per
array), ``harness status`` (manifest, N run folders, one squeue) while the grid runs and after it ended, and
reading the N records into pandas and aggregating them. ``slurm`` needs a cluster
(``scripts/slurm/setup_cluster.sh`` starts a one-node one as root); ``local`` runs the tasks here, 2 at a time,
and its "submit" time includes running them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_info, write_report


def _timed(cmd: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--executor", choices=["slurm", "local"], default="slurm")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the grid to end")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from harness.data.synthetic import generate, small_protocols_yaml

    work = Path(tempfile.mkdtemp(prefix="grid-overhead-"))
    root = generate(work / "data", num_train=48, num_val=8, labeled_counts=(8,))
    (work / "protocols").mkdir()
    (work / "protocols" / "perf.yaml").write_text(small_protocols_yaml(root, "perf", {
        "iterations": 1, "batch_labeled": 4, "batch_unlabeled": 4, "lr": 0.01, "head_lr_mult": 10,
        "weight_decay": 1.0e-4, "num_evals": 1}))
    grid = work / "grid.yaml"
    grid.write_text(f"name: perf\nout: {work / 'runs'}\nmethods: [supervised]\nprotocols: [perf-8]\n"
                    f"seeds: {list(range(args.runs))}\nslurm: {{time: 10, cpus_per_task: 1}}\n"
                    f"local: {{max_parallel: 2}}\n")
    env = {**os.environ, "HARNESS_PROTOCOLS": str(work / "protocols"), "OMP_NUM_THREADS": "1"}
    harness = [sys.executable, "-m", "harness.cli"]

    submit_s, proc = _timed([*harness, "grid", str(grid), "--executor", args.executor,
                             "--data-root", str(root)], env)
    if proc.returncode != 0:
        sys.exit(f"harness grid failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    status_running_s, _ = _timed([*harness, "status", str(grid)], env)
    t0 = time.perf_counter()
    records = []
    while time.perf_counter() - t0 < args.timeout:
        records = list((work / "runs").rglob("record.json"))
        if len(records) == args.runs:
            break
        time.sleep(2)
    grid_wall_s = submit_s + time.perf_counter() - t0
    if len(records) != args.runs:
        sys.exit(f"only {len(records)} of {args.runs} runs ended within {args.timeout:g} s; see {work}")
    status_done_s, _ = _timed([*harness, "status", str(grid)], env)

    t_import = time.perf_counter()
    from harness.report.results import aggregate, load_results
    import_s = time.perf_counter() - t_import
    t_agg = time.perf_counter()
    rs = load_results([work / "runs"], warn=False)
    agg = aggregate(rs.runs)
    aggregate_s = time.perf_counter() - t_agg
    assert int(agg["n"].sum()) == args.runs

    rows = [("harness grid (" + ("submit" if args.executor == "slurm" else "run every task") + ")", submit_s),
            ("every run ended (from the start of harness grid)", grid_wall_s),
            ("harness status while the grid ran", status_running_s),
            ("harness status after it ended", status_done_s),
            ("import harness.report.results (pandas)", import_s),
            (f"read {args.runs} records and aggregate", aggregate_s)]
    print(f"{args.runs} runs, executor {args.executor}")
    for name, s in rows:
        print(f"  {name:<52s} {s:8.2f} s")
    if args.out:
        write_report(args.out, "grid_overhead", machine_info(), runs=args.runs, executor=args.executor,
                     seconds={name: round(s, 3) for name, s in rows})


if __name__ == "__main__":
    main()
