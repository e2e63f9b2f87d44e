"""Interrupt tiny runs in every way the harness knows, resume them, and compare them with uninterrupted runs.

    python scripts/interruption_campaign.py [--work DIR] [--seed N]

Each case trains one run of a tiny synthetic benchmark (48 train / 8 val images, ``tiny-8``) with real
`harness` processes and real signals, interrupts it at random moments until it finishes, and then compares
its ``record.json`` (final mIoU and per-class IoU) and ``metrics.jsonl`` (every evaluation, training-loss
means included; ``eval_seconds`` left out) with the same run trained without interruption. Interruptions:
SIGTERM and SIGINT to ``harness run``, SIGKILL (resumes from the cadence checkpoint), ``--stop-after``, a
full disk (a small tmpfs filled up mid-run; root only), and SIGHUP / SIGKILL to a local grid launcher. A
second trainer started on a running run must be refused. Prints one line per interruption and a summary;
exit status 1 when a resumed run differs or a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET = {"iterations": 12, "batch_labeled": 4, "batch_unlabeled": 4, "lr": 0.01, "head_lr_mult": 10,
          "weight_decay": 1.0e-4, "eval_every": 4}
STEPS = {"budget.iterations": 200, "budget.eval_every": 50}
EVERY = "9"  # checkpoint cadence (steps) of every run, interrupted or not


def sh(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=600,
                          env=ENV, **kw)


def popen(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def run_args(out: Path, method: str, *extra: str) -> list[str]:
    sets = [x for k, v in STEPS.items() for x in ("--set", f"{k}={v}")]
    return ["run", "--method", method, "--protocol", "tiny-8", "--out", str(out), "--data-root", str(DATA),
            "--threads", "1", "--no-progress", "--checkpoint-every", EVERY, *sets, *extra]


def run_dir(out: Path, method: str) -> Path | None:
    found = list(out.glob(f"tiny-8/{method}/*/seed0"))
    return found[0] if found else None


def status(d: Path | None) -> dict:
    try:
        return json.loads((d / "status.json").read_text())
    except (TypeError, OSError, ValueError):
        return {}


def wait_training(out: Path, method: str, pid: int | None = None, timeout: float = 120) -> Path:
    """The run directory once the process ``pid`` (any, if None) trains it (a killed start leaves 'running')."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = run_dir(out, method)
        st = status(d)
        if d is not None and st.get("state") in ("running", "finished") and pid in (None, st.get("pid")):
            return d  # finished: a resume from a late checkpoint can end before it is seen running
        time.sleep(0.05)
    raise RuntimeError(f"{method} in {out} did not start training")


def comparable(d: Path) -> tuple:
    rec = json.loads((d / "record.json").read_text())
    metrics = [{k: v for k, v in json.loads(line).items() if k != "eval_seconds"}
               for line in (d / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return rec["final"]["miou"], rec["final"]["iou"], metrics


class Campaign:
    def __init__(self, work: Path, rng: random.Random):
        self.work, self.rng = work, rng
        self.log: list[tuple[str, str, str]] = []  # (case, kind, outcome)
        self.failures: list[str] = []

    def note(self, case: str, kind: str, outcome: str) -> None:
        self.log.append((case, kind, outcome))
        print(f"  {case:<22} {kind:<22} {outcome}", flush=True)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)
            print(f"  CHECK FAILED: {what}", flush=True)

    def reference(self, method: str) -> tuple:
        out = self.work / "reference"
        done = sh(*run_args(out, method))
        self.check(done.returncode == 0, f"reference {method}: {done.stderr[-300:]}")
        return comparable(run_dir(out, method))

    def signal_plain(self, case: str, method: str, kinds: list[str]) -> Path:
        """Interrupt `harness run` with each of ``kinds`` in turn, then let it finish."""
        out = self.work / case
        for kind in kinds:
            d = run_dir(out, method)
            if d is not None and (d / "record.json").exists():
                self.note(case, kind, "not sent: the run had finished")
                break
            if kind == "stop-after":
                done = sh(*run_args(out, method, "--stop-after", str(self.rng.randint(3, 25))))
                self.check(done.returncode == 0, f"{case} stop-after: {done.stderr[-300:]}")
                self.note(case, kind, f"stopped at step {status(run_dir(out, method)).get('step')}")
                continue
            proc = popen(*run_args(out, method))
            d = wait_training(out, method, proc.pid)
            if kind == "second trainer":
                other = sh(*run_args(out, method))
                self.check(other.returncode == 2 and f"process {proc.pid}" in other.stderr,
                           f"{case}: second trainer not refused: {other.stderr[-300:]}")
                self.note(case, kind, "refused (names pid and host)")
                proc.send_signal(signal.SIGTERM)
                proc.communicate(timeout=120)
                continue
            time.sleep(self.rng.uniform(0.2, 1.5))
            sig = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT, "SIGKILL": signal.SIGKILL}[kind]
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=120)
            st = status(d)
            if proc.returncode == 0 or st.get("state") == "finished":
                self.note(case, kind, "arrived after the run finished")
                break
            if kind == "SIGKILL":
                self.check(st.get("state") == "running", f"{case} SIGKILL: status {st.get('state')}")
                self.note(case, kind, f"killed; checkpoint at step {st.get('checkpoint_step', 0)} (status says "
                                      f"running, no owner: interrupted)")
            else:
                self.check(proc.returncode == 128 + sig and st.get("state") == "stopped",
                           f"{case} {kind}: rc {proc.returncode}, status {st.get('state')}: {err[-300:]}")
                self.note(case, kind, f"stopped with a checkpoint at step {st.get('step')}")
        if not (run_dir(out, method) / "record.json").exists():
            done = sh(*run_args(out, method))
            self.check(done.returncode == 0, f"{case} final resume: {done.stderr[-300:]}")
        return run_dir(out, method)

    def full_disk(self, case: str, method: str) -> Path | None:
        if os.geteuid() != 0:
            self.note(case, "full disk", "skipped (needs root to mount a tmpfs)")
            return None
        fs = self.work / f"{case}-fs"
        fs.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(fs)], check=True)
        try:
            out = fs / "runs"
            proc = popen(*run_args(out, method))
            d = wait_training(out, method, proc.pid)
            deadline = time.monotonic() + 60
            while not (d / "latest.pt").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            with open(fs / "filler", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            _, err = proc.communicate(timeout=120)
            self.check(proc.returncode == 2 and "no space left on device" in err and "Traceback" not in err,
                       f"{case}: rc {proc.returncode}: {err[-400:]}")
            self.note(case, "full disk", err.strip().splitlines()[-1][:150] if err.strip() else "(no message)")
            (fs / "filler").unlink()
            done = sh(*run_args(out, method))
            self.check(done.returncode == 0, f"{case} resume after full disk: {done.stderr[-300:]}")
            keep = self.work / case
            shutil.copytree(d, keep)
            return keep
        finally:
            subprocess.run(["umount", "-l", str(fs)], capture_output=True)

    def launcher(self, case: str, method: str, sig: signal.Signals) -> Path:
        out = self.work / case
        grid = self.work / f"{case}.yaml"
        grid.write_text(json.dumps({"name": case, "out": str(out), "methods": [method], "protocols": ["tiny-8"],
                                    "seeds": [0], "data_root": str(DATA), "executor": "local",
                                    "checkpoint_every": EVERY, "set": STEPS, "local": {"threads": 1}}))
        proc = subprocess.Popen([sys.executable, "-m", "harness", "grid", str(grid)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=ENV)
        d = wait_training(out, method)
        trainer = status(d)["pid"]
        time.sleep(self.rng.uniform(0.2, 2.0))
        proc.send_signal(sig)
        proc.wait(timeout=120)
        deadline = time.monotonic() + 60
        while Path(f"/proc/{trainer}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        st = status(d)
        self.check(st.get("state") in ("stopped", "finished"), f"{case}: trainer state {st.get('state')}")
        self.note(case, f"launcher {sig.name}", f"trainer ended with it: {st.get('state')} at step {st.get('step')}")
        done = sh("grid", str(grid), "--retry-failed")
        self.check(done.returncode == 0, f"{case} retry: {done.stdout[-300:]} {done.stderr[-300:]}")
        return d


def main() -> int:
    global DATA, ENV
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the interruption times")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="harness-campaign-"))
    sys.path.insert(0, str(REPO))
    from harness.data.synthetic import generate, small_protocols_yaml

    DATA = generate(work / "data", num_train=48, num_val=8, labeled_counts=(8,))
    (work / "protocols").mkdir(exist_ok=True)
    (work / "protocols" / "tiny.yaml").write_text(small_protocols_yaml(DATA, "tiny", BUDGET, with_full=True))
    ENV = dict(os.environ, HARNESS_PROTOCOLS=str(work / "protocols"), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    c = Campaign(work, random.Random(args.seed))
    cases = [
        ("supervised-signals", "supervised", lambda: c.signal_plain(
            "supervised-signals", "supervised", ["SIGTERM", "SIGINT", "SIGKILL", "stop-after", "SIGKILL"])),
        ("mean_teacher-signals", "mean_teacher", lambda: c.signal_plain(
            "mean_teacher-signals", "mean_teacher", ["SIGKILL", "second trainer", "SIGINT", "SIGTERM"])),
        ("imas-signals", "imas", lambda: c.signal_plain(
            "imas-signals", "imas", ["stop-after", "SIGKILL", "SIGTERM", "SIGKILL"])),
        ("unimatch-signals", "unimatch", lambda: c.signal_plain(
            "unimatch-signals", "unimatch", ["SIGINT", "SIGKILL", "stop-after"])),
        ("supervised-full-disk", "supervised", lambda: c.full_disk("supervised-full-disk", "supervised")),
        ("supervised-hup", "supervised", lambda: c.launcher("supervised-hup", "supervised", signal.SIGHUP)),
        ("mean_teacher-kill", "mean_teacher", lambda: c.launcher("mean_teacher-kill", "mean_teacher",
                                                                 signal.SIGKILL)),
    ]
    references: dict[str, tuple] = {}
    identical = compared = 0
    t0 = time.monotonic()
    for case, method, go in cases:
        print(f"{case}:", flush=True)
        if method not in references:
            references[method] = c.reference(method)
        d = go()
        if d is None:
            continue
        compared += 1
        same = comparable(d) == references[method]
        identical += same
        c.check(same, f"{case}: resumed run differs from the uninterrupted one")
        starts = json.loads((d / "config.json").read_text())["starts"]
        print(f"  -> {len(starts)} starts (from steps {[s['from_step'] for s in starts]}); "
              f"{'bit-identical' if same else 'DIFFERENT'} to the uninterrupted run", flush=True)
    kinds: dict[str, int] = {}
    for _, kind, outcome in c.log:
        if not outcome.startswith(("arrived after", "skipped", "not sent")):
            kinds[kind] = kinds.get(kind, 0) + 1
    print(f"\n{sum(kinds.values())} interruptions ({', '.join(f'{n} {k}' for k, n in kinds.items())}); "
          f"{identical} of {compared} resumed runs bit-identical to their uninterrupted reference; "
          f"{len(c.failures)} failed checks; {time.monotonic() - t0:.0f} s; work folder {work}")
    return 1 if c.failures or identical != compared else 0


DATA: Path
ENV: dict[str, str]

if __name__ == "__main__":
    sys.exit(main())
