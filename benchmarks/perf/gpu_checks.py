"""The GPU checks of the harness, one script under one deadline (``benchmarks/perf/gpu_check.sh`` calls it).

Run: ``python benchmarks/perf/gpu_checks.py --out DIR [--deadline 450] [--quick --device cpu]``.

Each check runs under its own time limit and writes what it has when the limit comes; the JSON summary
(``DIR/gpu_check.json``) is rewritten after every check, so a run cut short still reports the finished ones.

* **cuda_paths** (check 1): every installed method trains ``--c1-steps`` steps of ``synthetic-100`` in fp32
  and in bf16 through ``harness run`` (parallel processes, one GPU): exit status, finite losses, final mIoU.
  Resume: supervised, UniMatch and iMAS in fp32 are run a second time uninterrupted and a third time stopped
  at half the steps (``--stop-after``) and resumed; the per-evaluation losses and mIoU of the three are
  compared (bit-identical or not, largest difference). Evaluation modes: the supervised checkpoint is scored
  with whole-image batch 1 and 16, a sliding window that covers the image, a centre crop of the full image,
  and on the CPU; these must give the same mIoU.
* **bf16_vs_fp32** (check 2): full-budget ``synthetic-100`` runs of ``--c2-methods`` × fp32/bf16 ×
  ``--c2-seeds`` as parallel processes on the one GPU, started in the background before check 1; when the
  deadline for it comes, unfinished runs are stopped and their last evaluation is reported with its step.
* **throughput** (check 3, alone on the GPU): ``gpu_step.py`` (ResNet-101 step, fp32 against bf16 and
  bf16 + channels_last, FLOP/s, memory, strong-view share), ``evaluation.py`` (sliding windows batched
  against one at a time, fp32 and bf16) and ``data_pipeline.py`` (the loader with 16 workers at crop 513).

Run records, metrics and configs (no checkpoints) come back as ``runs.tar.gz``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
T0 = time.monotonic()


def now() -> float:
    return time.monotonic() - T0


def log(msg: str) -> None:
    print(f"[{now():6.1f}s] {msg}", flush=True)


class Procs:
    """Subprocesses with their logs; every one is ended (SIGTERM, then SIGKILL) at its deadline."""

    def __init__(self, logdir: Path, env: dict):
        self.logdir, self.env, self.items = logdir, env, []
        logdir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, cmd: list[str], deadline: float) -> dict:
        f = open(self.logdir / f"{name}.log", "w")
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        item = {"name": name, "cmd": cmd, "proc": proc, "file": f, "deadline": deadline, "t0": now(), "rc": None}
        self.items.append(item)
        return item

    def poll(self, items=None) -> bool:
        """Reap finished processes and end overdue ones; True while any of ``items`` runs."""
        running = False
        for it in items if items is not None else self.items:
            if it["rc"] is not None:
                continue
            rc = it["proc"].poll()
            if rc is None and now() > it["deadline"]:
                self.kill(it)
                rc = it["proc"].wait()
                it["timed_out"] = True
            if rc is None:
                running = True
                continue
            it["rc"], it["wall_s"] = rc, now() - it["t0"]
            it["file"].close()
        return running

    def kill(self, it: dict) -> None:
        try:
            os.killpg(it["proc"].pid, signal.SIGTERM)
            it["proc"].wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(it["proc"].pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, items, poll: float = 1.0) -> None:
        while self.poll(items):
            time.sleep(poll)

    def tail(self, it: dict, lines: int = 15) -> str:
        try:
            return "\n".join((self.logdir / f"{it['name']}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def harness_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def run_args(method: str, precision: str, steps: int, out: Path, device: str, seed: int = 0,
             extra: tuple[str, ...] = ()) -> list[str]:
    return harness_cmd("run", "--method", method, "--protocol", "synthetic-100", "--seed", str(seed),
                       "--set", f"budget.iterations={steps}", "--precision", precision, "--device", device,
                       "--out", str(out), "--threads", "1", "--workers", "0", "--no-progress", *extra)


def run_folder(out: Path, method: str, seed: int = 0) -> Path | None:
    found = sorted((out / "synthetic-100" / method).glob(f"*/seed{seed}"))
    return found[0] if found else None


def read_run(folder: Path | None) -> dict:
    """Final record (or the last evaluation of an unfinished run) and whether every logged loss is finite."""
    if folder is None:
        return {"state": "missing"}
    hist = []
    mpath = folder / "metrics.jsonl"
    if mpath.exists():
        hist = [json.loads(line) for line in mpath.read_text().splitlines() if line.strip()]
    out = {"run_dir": str(folder), "evals": len(hist)}
    if (folder / "record.json").exists():
        rec = json.loads((folder / "record.json").read_text())
        out.update(state="finished", miou=rec["final"]["miou"], step=rec["final"]["step"],
                   wall_time_s=rec["wall_time_s"], precision=rec.get("precision"))
    elif hist:
        out.update(state="unfinished", miou=hist[-1]["miou"], step=hist[-1]["step"])
    else:
        out["state"] = "no evaluation"
    losses = [v for e in hist for v in e.get("train", {}).values() if isinstance(v, (int, float))]
    out["losses_finite"] = all(math.isfinite(v) for v in losses) if losses else None
    out["history"] = [{"step": e["step"], "miou": e["miou"], "train": e.get("train", {})} for e in hist]
    return out


def compare_histories(a: dict, b: dict) -> dict:
    """Largest absolute difference of mIoU and of every logged training loss over the common evaluations."""
    ha, hb = a.get("history", []), b.get("history", [])
    if not ha or len(ha) != len(hb):
        return {"comparable": False, "evals": [len(ha), len(hb)]}
    d_miou = max(abs(x["miou"] - y["miou"]) for x, y in zip(ha, hb))
    d_loss = 0.0
    for x, y in zip(ha, hb):
        for k, v in x["train"].items():
            if k != "lr" and k in y["train"]:
                d_loss = max(d_loss, abs(v - y["train"][k]))
    identical = all(x["miou"] == y["miou"] and x["train"] == y["train"] for x, y in zip(ha, hb))
    return {"comparable": True, "bit_identical": identical, "max_abs_miou_diff": d_miou,
            "max_abs_loss_diff": d_loss}


def eval_modes(folder: Path, device: str) -> dict:
    """Score one checkpoint with evaluation modes that must agree on 64×64 images."""
    from harness.evaluation.inference import evaluate
    from harness.evaluation.checkpoint_eval import load_trained
    from harness.protocols import EvalSpec

    out = {"run_dir": str(folder), "results": {}}
    for dev_name in dict.fromkeys([device, "cpu"]):
        run = load_trained(str(folder), device=dev_name)  # the run's method and weights, as `harness eval`
        p, method = run["protocol"], run["method"]
        size = p.crop_size
        specs = {"whole, batch 16": EvalSpec(mode="whole", batch_images=16),
                 "whole, batch 1": EvalSpec(mode="whole", batch_images=1),
                 f"slide, window {size} = image": EvalSpec(mode="slide", window=size, stride=size),
                 f"center_crop {size} = image": EvalSpec(mode="center_crop", crop=size, batch_images=16)}
        for name, spec in specs.items():
            if dev_name == "cpu" and device != "cpu" and name != "whole, batch 16":
                continue
            t0 = time.perf_counter()
            r = evaluate(method.eval_model(), run["dataset"], spec, p.num_classes, run["device"],
                         autocast=method.context.autocast)
            out["results"][f"{dev_name}: {name}"] = {"miou": r["miou"], "seconds": time.perf_counter() - t0}
    vals = [r["miou"] for r in out["results"].values()]
    out["max_abs_miou_diff"] = max(vals) - min(vals)
    return out


class Report:
    def __init__(self, path: Path, meta: dict):
        self.path, self.doc = path, {"meta": meta, "checks": {}}
        self.write()

    def set(self, key: str, value) -> None:
        self.doc["checks"][key] = value
        self.write()

    def write(self) -> None:
        self.doc["meta"]["elapsed_s"] = round(now(), 1)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.doc, indent=1, default=str))
        tmp.replace(self.path)


def start_mps(env: dict) -> str:
    """Start NVIDIA's multi-process service so that the parallel runs' small kernels share the GPU instead of
    time-slicing it; keep it only if a CUDA process then starts under it."""
    if not shutil.which("nvidia-cuda-mps-control"):
        return "not available (no nvidia-cuda-mps-control)"
    try:
        subprocess.run(["nvidia-cuda-mps-control", "-d"], check=True, timeout=20, env=env, capture_output=True)
        probe = subprocess.run([sys.executable, "-c", "import torch; print(float(torch.ones(2, device='cuda').sum()))"],
                               timeout=60, env=env, capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "2.0":
            return "on"
        reason = (probe.stderr or probe.stdout).strip().splitlines()[-1:] or ["?"]
    except (subprocess.SubprocessError, OSError) as exc:
        reason = [f"{type(exc).__name__}: {exc}"]
    subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True, timeout=20, env=env, capture_output=True)
    return f"off (probe failed: {reason[0][:200]})"


def machine_facts(device: str) -> dict:
    import torch

    facts = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
             "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
             "cpu_count": os.cpu_count(), "device": device, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if device == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(0)
        facts["gpu_memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2 ** 30
        try:
            facts["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,"
                                                  "power.limit", "--format=csv,noheader"], capture_output=True,
                                                 text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    try:
        from importlib.metadata import version
        facts["harness"] = version("ssseg-harness")
    except Exception:  # noqa: BLE001 — a fact, not a requirement
        pass
    return facts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--work", type=Path, default=Path("/tmp/harness-gpu-check"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--deadline", type=float, default=450, help="seconds for everything")
    ap.add_argument("--throughput-seconds", type=float, default=160, help="reserved for check 3 at the end")
    ap.add_argument("--c1-steps", type=int, default=100)
    ap.add_argument("--c1-seconds", type=float, default=150)
    ap.add_argument("--c2-steps", type=int, default=3000)
    ap.add_argument("--c2-methods", nargs="+", default=["supervised", "unimatch", "imas"])
    ap.add_argument("--c2-seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--skip", nargs="*", default=[], choices=["cuda_paths", "bf16_vs_fp32", "throughput"])
    ap.add_argument("--c1-resume-only", action="store_true", help="check 1: only the resume comparison")
    ap.add_argument("--throughput-jobs", nargs="+", default=["gpu_step", "evaluation_fp32", "evaluation_bf16",
                                                              "data_pipeline"])
    ap.add_argument("--gpu-step-args", default="", help="extra arguments of gpu_step.py (one string)")
    ap.add_argument("--no-mps", action="store_true", help="do not start the CUDA multi-process service")
    ap.add_argument("--quick", action="store_true", help="CPU rehearsal: tiny steps and sizes")
    args = ap.parse_args()
    if args.quick:
        args.c1_steps, args.c2_steps, args.c2_seeds = 4, 20, [0]
        args.c2_methods = args.c2_methods[:2]
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    procs = Procs(args.work / "logs", env)
    mps = start_mps(env) if args.device == "cuda" and not args.no_mps else "not used"
    report = Report(args.out / "gpu_check.json", {"args": {k: str(v) for k, v in vars(args).items()},
                                                   "machine": machine_facts(args.device), "mps": mps})
    log(f"machine: {report.doc['meta']['machine']}; MPS {mps}")
    end = args.deadline
    t3_start = end - (0 if "throughput" in args.skip else args.throughput_seconds)

    # -- set-up: the synthetic data, generated once before any run uses it
    it = procs.start("data", harness_cmd("data", "synthetic"), deadline=60)
    procs.wait([it])
    log(f"synthetic data: rc {it['rc']} in {it.get('wall_s', 0):.1f} s")
    if it["rc"] != 0:
        report.set("setup", {"error": procs.tail(it)})

    # -- check 2 in the background: full-budget fp32 / bf16 runs
    c2_out = args.work / "c2"
    c2 = []
    if "bf16_vs_fp32" not in args.skip:
        for m in args.c2_methods:
            for prec in ("fp32", "bf16"):
                for seed in args.c2_seeds:
                    c2.append(procs.start(f"c2-{m}-{prec}-s{seed}",
                                          run_args(m, prec, args.c2_steps, c2_out / prec, args.device, seed),
                                          deadline=t3_start - 15))
        log(f"check 2: started {len(c2)} full-budget runs ({args.c2_steps} steps)")

    # -- check 1: every method, both precisions, short; resume; evaluation modes
    if "cuda_paths" not in args.skip:
        from harness.plugins import get_plugin_manager

        methods = [m.name for m in get_plugin_manager().methods]
        c1_out = args.work / "c1"
        dl = now() + args.c1_seconds
        first = {(m, prec): procs.start(f"c1-{m}-{prec}", run_args(m, prec, args.c1_steps, c1_out / prec,
                                                                     args.device), dl)
                 for m in methods for prec in ("fp32", "bf16")
                 if not args.c1_resume_only or (prec == "fp32" and m in ("supervised", "unimatch", "imas"))}
        resume_methods = [m for m in ("supervised", "unimatch", "imas") if m in methods]
        again = {m: procs.start(f"c1-{m}-again", run_args(m, "fp32", args.c1_steps, c1_out / "again", args.device),
                                dl) for m in resume_methods}
        half = max(1, args.c1_steps // 2)
        stopped = {m: procs.start(f"c1-{m}-stop", run_args(m, "fp32", args.c1_steps, c1_out / "resumed",
                                                           args.device, extra=("--stop-after", str(half))), dl)
                   for m in resume_methods}
        procs.wait(list(stopped.values()))
        resumed = {m: procs.start(f"c1-{m}-resume", run_args(m, "fp32", args.c1_steps, c1_out / "resumed",
                                                             args.device), dl) for m in resume_methods}
        procs.wait(list(first.values()) + list(again.values()) + list(resumed.values()))
        runs = {}
        for (m, prec), item in first.items():
            r = read_run(run_folder(c1_out / prec, m))
            r.update(rc=item["rc"], wall_s=item.get("wall_s"), timed_out=item.get("timed_out", False))
            if item["rc"] != 0:
                r["log_tail"] = procs.tail(item)
            else:
                r.pop("history", None)  # a finished run's record says enough
            runs[f"{m} {prec}"] = r
        resume = {}
        for m in resume_methods:
            a = read_run(run_folder(c1_out / "fp32", m))
            b = read_run(run_folder(c1_out / "again", m))
            c = read_run(run_folder(c1_out / "resumed", m))
            resume[m] = {"stop_rc": stopped[m]["rc"], "resume_rc": resumed[m]["rc"], "stopped_at": half,
                         "uninterrupted_twice": compare_histories(a, b),
                         "resumed_vs_uninterrupted": compare_histories(a, c),
                         "resumed_vs_second_uninterrupted": compare_histories(b, c)}
            if resumed[m]["rc"] != 0:
                resume[m]["log_tail"] = procs.tail(resumed[m])
        try:
            modes = ({"skipped": "--c1-resume-only"} if args.c1_resume_only else
                     eval_modes(run_folder(c1_out / "fp32", "supervised"), args.device))
        except Exception as exc:  # noqa: BLE001 — reported, the other checks go on
            modes = {"error": f"{type(exc).__name__}: {exc}"}
        ok = sum(1 for r in runs.values() if r.get("rc") == 0 and r.get("losses_finite"))
        report.set("cuda_paths", {"steps": args.c1_steps, "runs": runs, "runs_ok": f"{ok}/{len(runs)}",
                                  "resume": resume, "eval_modes": modes})
        log(f"check 1: {ok}/{len(runs)} runs finished with finite losses; resume {json.dumps(resume)[:600]}")
        log(f"check 1: evaluation modes {json.dumps(modes)[:600]}")

    # -- check 2: wait for it until its deadline (the throughput check needs the GPU alone)
    if c2:
        procs.wait(c2, poll=2.0)
        rows = {}
        for item in c2:
            _, m, prec, s = item["name"].split("-")
            r = read_run(run_folder(c2_out / prec, m, int(s[1:])))
            r.update(rc=item["rc"], wall_s=item.get("wall_s"), timed_out=item.get("timed_out", False))
            if item["rc"] not in (0, None) and not item.get("timed_out"):
                r["log_tail"] = procs.tail(item)
            rows[item["name"]] = r
        report.set("bf16_vs_fp32", {"steps": args.c2_steps, "runs": rows})
        done = sum(r.get("state") == "finished" for r in rows.values())
        log(f"check 2: {done}/{len(rows)} finished; " + "; ".join(
            f"{k}: {v.get('miou', float('nan')):.2f} @ {v.get('step')}" for k, v in rows.items()))

    # -- check 3: throughput, alone on the GPU
    if "throughput" not in args.skip:
        q = ["--quick"] if args.quick else []
        budget = max(30.0, end - now() - 10)
        jobs = [("gpu_step", [sys.executable, str(HERE / "gpu_step.py"), "--device", args.device,
                              "--out", str(args.out / "gpu_step.json"), *q], 0.5),
                ("evaluation_fp32", [sys.executable, str(HERE / "evaluation.py"), "--device", args.device,
                                     "--backbone", "resnet101", "--precision", "fp32", "--skip", "whole",
                                     "--out", str(args.out / "evaluation_fp32.json"), *q], 0.12),
                ("evaluation_bf16", [sys.executable, str(HERE / "evaluation.py"), "--device", args.device,
                                     "--backbone", "resnet101", "--precision", "bf16",
                                     "--out", str(args.out / "evaluation_bf16.json"), *q], 0.18),
                ("data_pipeline", [sys.executable, str(HERE / "data_pipeline.py"), "--crops", "513",
                                   "--workers", *(["1"] if args.quick else ["16", "8"]), "--pil-jitter", "off",
                                   "--images", "160", "--batches", "40", "--tree", str(args.work / "voc_tree"),
                                   "--out", str(args.out / "data_pipeline.json"), *q], 0.2)]
        jobs[0][1].extend(args.gpu_step_args.split())
        jobs = [j for j in jobs if j[0] in args.throughput_jobs]
        total_share = sum(j[2] for j in jobs)
        jobs = [(name, cmd, share / total_share) for name, cmd, share in jobs]
        results = {}
        for name, cmd, share in jobs:
            item = procs.start(f"c3-{name}", cmd, deadline=min(end - 5, now() + budget * share))
            procs.wait([item])
            results[name] = {"rc": item["rc"], "wall_s": item.get("wall_s"), "timed_out": item.get("timed_out", False),
                             "log_tail": procs.tail(item, 40)}
            log(f"check 3 {name}: rc {item['rc']} in {item.get('wall_s', 0):.1f} s\n{procs.tail(item, 40)}")
        report.set("throughput", results)

    # -- what comes back: the run files without checkpoints, and every log
    with tarfile.open(args.out / "runs.tar.gz", "w:gz") as tar:
        for path in sorted(args.work.rglob("*")):
            if path.is_file() and (path.suffix in (".json", ".jsonl", ".log") or path.name == "status.json"):
                tar.add(path, arcname=str(path.relative_to(args.work)))
    report.doc["meta"]["finished"] = True
    report.write()
    if mps == "on":
        try:
            subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True, timeout=20, capture_output=True)
        except subprocess.TimeoutExpired:  # the machine is given back after this; nothing to clean up
            log("MPS did not quit within 20 s")
    log("done")


if __name__ == "__main__":
    main()
