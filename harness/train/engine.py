"""The training loop: optimizer, poly LR, AMP, evaluation cadence, checkpoints and resume.

Determinism contract (CPU, fixed seed): the loader's batches are a function of (seed, step) only,
every random draw of a method comes from torch's global RNG, and a checkpoint stores that RNG's
state together with the step. A run stopped after any step and resumed therefore continues with the
same batches and draws as an uninterrupted one, and ends with the same final metrics.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from .. import records
from . import distributed
from .compute import ComputeCounter, peak_memory
from .distributed import DistInfo
from ..errors import CheckpointError, HarnessError, NonFiniteLossError
from ..method import Batch, Method, MethodContext


DISTRIBUTED_SUPPORTED = True
CHECKPOINT_KEYS = ("step", "model", "method", "optimizer", "rng", "history", "elapsed")


class StopRequested(Exception):
    """Training stopped early on request (``stop_after`` or a signal); ``latest.pt`` holds the state.
    ``reason``: the signal's name (``SIGTERM``, ``SIGINT``) when a signal asked for it, else None."""

    def __init__(self, step: int, reason: str | None = None):
        super().__init__(f"stopped after step {step}; the run resumes from its checkpoint")
        self.step = step
        self.reason = reason


@dataclass
class TrainState:
    step: int = 0                       # next step to run
    history: list[dict] = field(default_factory=list)
    elapsed: float = 0.0                # training wall time of earlier sessions
    log_sums: dict[str, Any] = field(default_factory=dict)  # training logs summed since the last evaluation
    log_count: int = 0                                       # ... over this many steps
    compute: dict[str, Any] = field(default_factory=dict)    # what the run spent (harness.train.compute), at the end


def parse_checkpoint_every(text: str | None) -> tuple[int | None, float | None]:
    """``--checkpoint-every``: ``"500"`` (steps), ``"30m"`` / ``"2h"`` / ``"90s"`` (training time), both as
    ``"500,30m"``, or ``"off"`` (only at evaluations). Returns (steps, seconds); ValueError names what is wrong."""
    steps = seconds = None
    for part in str(text).replace(" ", "").lower().split(","):
        if part in ("off", "0", "none"):
            continue
        unit = {"s": 1, "m": 60, "min": 60, "h": 3600}
        num, suffix = part.rstrip("minsh"), part[len(part.rstrip("minsh")):]
        try:
            value = float(num)
        except ValueError:
            value = -1.0
        if suffix and suffix in unit and value > 0:
            seconds = value * unit[suffix]
        elif not suffix and value >= 1 and value == int(value):
            steps = int(value)
        else:
            raise ValueError(f"--checkpoint-every expects N (steps), N followed by s, m or h (training time), both "
                             f"separated by a comma (500,30m), or off; got {text!r}")
    return steps, seconds


DEFAULT_CHECKPOINT_EVERY = "30m"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_checkpoint(path: Path, device: torch.device, consequence: str, fix: str) -> dict[str, Any]:
    """A run's ``latest.pt``; an empty, truncated or foreign file is a :class:`CheckpointError` saying so, then
    ``consequence`` and ``fix``."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, UnpicklingError, ...
        size = path.stat().st_size if path.exists() else 0
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0][:160]
        what = "is empty (0 bytes)" if size == 0 else (
            f"cannot be read ({size} bytes; truncated, or not a torch checkpoint: {detail})")
        raise CheckpointError(f"checkpoint {path} {what}, so {consequence}. {fix}") from None
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt] if isinstance(ckpt, dict) else list(CHECKPOINT_KEYS)
    if missing:
        raise CheckpointError(f"{path} is not a checkpoint of a harness run (no {', '.join(missing)}), so "
                              f"{consequence}. {fix}")
    return ckpt


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def poly_factor(step: int, total: int, power: float) -> float:
    """Step k (0-based) uses lr·(1 − k/T)^power."""
    return (1.0 - step / total) ** power


PRECISIONS = ("fp32", "bf16")


def autocast_for(device: torch.device, precision: str = "fp32") -> Callable[[], Any]:
    """A context-manager factory for the forward passes of a run.

    ``fp32`` (the default, as the official UniMatch and iMAS code) runs everything in float32; ``bf16``
    runs the forwards under bf16 autocast on the run's device. Methods and the evaluator take
    confidences, argmax, thresholds and the confusion matrix from logits cast back to float32, so the
    precision changes the network's arithmetic only, never a decision rule.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def build_context(protocol, device: torch.device, total_steps: int, precision: str = "fp32",
                  dist: DistInfo = DistInfo()) -> MethodContext:
    """The facts of a run a method may use (shared by training, ``harness eval`` and the benchmarks)."""
    from .losses import build_supervised_loss
    from ..models import build_model

    p = protocol
    return MethodContext(
        device=device, num_classes=p.num_classes, total_steps=total_steps, iters_per_epoch=p.iters_per_epoch,
        crop_size=p.crop_size, dataset=p.dataset, supervised_loss=build_supervised_loss(
            p.supervised_loss, p.model.aux_weight if p.model.aux_head else None),
        model_factory=lambda: build_model(p.model, p.num_classes).to(device), autocast=autocast_for(device, precision),
        rank=dist.rank, world_size=dist.world)


def build_optimizer(model, method: Method, lr: float, head_lr_mult: float, momentum: float, weight_decay: float,
                    kind: str = "sgd", betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """Two parameter groups, the backbone at ``lr`` and the head (with the method's extra modules) at
    ``lr × head_lr_mult``, under SGD with ``momentum`` (``kind='sgd'``) or AdamW with ``betas``
    (``kind='adamw'``, UniMatch V2's optimizer); decoupled or L2 ``weight_decay`` as each optimizer defines it."""
    head = list(model.head_parameters()) + list(method.extra_modules.parameters())
    groups = [{"params": list(model.backbone_parameters()), "lr": lr, "base_lr": lr, "name": "backbone"},
              {"params": head, "lr": lr * head_lr_mult, "base_lr": lr * head_lr_mult, "name": "head"}]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {kind!r}; expected 'sgd' or 'adamw'")


def optimizer_for(model, method: Method, budget) -> torch.optim.Optimizer:
    """The optimizer a protocol's ``budget`` asks for."""
    return build_optimizer(model, method, budget.lr, budget.head_lr_mult, budget.momentum, budget.weight_decay,
                           budget.optimizer, budget.betas)


def to_batch(data: dict | None, device: torch.device, normalize, suffix: str = "") -> Batch | None:
    if data is None:
        return None
    raw = data["raw" + suffix].to(device, non_blocking=True)
    batch = Batch(raw=raw, image=normalize(raw), valid=data["valid" + suffix].to(device, non_blocking=True),
                  label=data["label"].to(device, non_blocking=True) if "label" in data and not suffix else None,
                  index=data.get("index"))
    if not suffix and "raw2" in data:
        batch.second = to_batch(data, device, normalize, suffix="2")
    return batch


def _mean_logs(sums: dict[str, torch.Tensor | float], count: int) -> dict[str, float]:
    out = {}
    for k, v in sums.items():
        v = float(v.item() if isinstance(v, torch.Tensor) else v)
        out[k] = v / max(count, 1)
    return out


@dataclass
class Engine:
    """Trains ``method`` on ``protocol`` and writes the run directory. Built by ``harness.train.run``."""

    run_dir: Path
    protocol: Any
    method_cls: type[Method]
    method_config: Any
    seed: int
    data_root: Path
    split_root: Path
    device: torch.device
    total_steps: int
    workers: int = 0
    stop_after: int | None = None
    should_stop: Callable[[], bool] | None = None
    checkpoint_every: str | None = DEFAULT_CHECKPOINT_EVERY  # besides every evaluation; not a setting of the run
    progress: bool = True
    log_every: int = 50  # steps between "train" events (and plain log lines when stderr is not a terminal)
    channels_last: bool = False
    precision: str = "fp32"
    dist: DistInfo = DistInfo()
    emit: Callable[[str, dict], None] = lambda event, payload: None

    def __post_init__(self) -> None:
        from ..data import build_train_loader, build_val_dataset, normalize
        from ..evaluation.inference import evaluate
        from ..models import build_model

        p = self.protocol
        self._evaluate = evaluate
        self._normalize = normalize
        seed_everything(self.seed)
        self.model = build_model(p.model, p.num_classes).to(self.device)
        self.compute = ComputeCounter()
        self.compute.attach(self.model)  # before the method exists, so that copies of the model (teachers) count
        if self.dist.enabled:
            if self.device.type == "cuda":  # batch statistics over the global batch, as the reference code
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            distributed.broadcast_module(self.model)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.context = build_context(p, self.device, self.total_steps, self.precision, self.dist)
        self.autocast = self.context.autocast
        self.method = self.method_cls(self.model, self.method_config, self.context)
        self.method.extra_modules.to(self.device)
        if self.dist.enabled:
            distributed.broadcast_module(self.method.extra_modules)
            # Each rank draws its own augmentations (the model initialisation above is shared).
            torch.manual_seed(self.seed * 1009 + self.dist.rank)
        self.optimizer = optimizer_for(self.model, self.method, p.budget)
        self.val_dataset = build_val_dataset(p, self.data_root, self.split_root)
        self.selection_dataset = (build_val_dataset(p, self.data_root, self.split_root, split="selection")
                                  if p.splits.selection is not None else None)
        self._build_train_loader = build_train_loader
        self.eval_every = min(p.eval_every, self.total_steps)
        self.checkpoint_step: int | None = None  # the step of the checkpoint on disk, once read or written
        self.checkpoint_steps, self.checkpoint_seconds = parse_checkpoint_every(
            DEFAULT_CHECKPOINT_EVERY if self.checkpoint_every is None else self.checkpoint_every)

    # -- helpers ---------------------------------------------------------------------------------
    @property
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / records.CHECKPOINT

    def save_checkpoint(self, state: TrainState) -> None:
        rng = distributed.gather(rng_state(), self.dist.world) if self.dist.enabled else [rng_state()]
        if not self.dist.is_main:
            return
        records.atomic_torch_save({
            "step": state.step,
            "model": self.model.state_dict(),
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng,  # one state per rank
            "history": state.history,
            "elapsed": state.elapsed,
            "logs": {"sums": {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v
                              for k, v in state.log_sums.items()}, "count": state.log_count},
            "run": {"method": self.method_cls.name, "protocol": self.protocol.id, "seed": self.seed},
            "compute": self._compute_so_far(),
        }, self.checkpoint_path)
        self.checkpoint_step = state.step
        self.emit("checkpoint", {"run_dir": str(self.run_dir), "step": state.step})

    def load_checkpoint(self) -> TrainState:
        """The state of ``latest.pt``; a checkpoint that cannot be read or belongs to another run is a
        :class:`CheckpointError` saying what it is and how to go on."""
        path, name = self.checkpoint_path, self.method_cls.name
        fix = (f"Pass --force to start the run again from step 0 (this deletes {path}), or put a good copy of the "
               f"checkpoint back")
        # Loaded to the CPU: RNG states must stay CPU byte tensors (a CUDA run's would otherwise land on the GPU
        # and torch.set_rng_state refuses them); load_state_dict copies everything else to the right device.
        ckpt = read_checkpoint(path, torch.device("cpu"), "the run cannot resume", fix)
        owner = ckpt.get("run") or {}
        if owner and (owner.get("method"), owner.get("protocol"), owner.get("seed")) != (
                name, self.protocol.id, self.seed):
            raise CheckpointError(f"checkpoint {path} was written by a {owner.get('method')} run on "
                                  f"{owner.get('protocol')} seed {owner.get('seed')}, not by this {name} run on "
                                  f"{self.protocol.id} seed {self.seed}: it was copied or moved here. {fix}")
        try:
            self.model.load_state_dict(ckpt["model"])
            self.method.load_state_dict(ckpt["method"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise CheckpointError(f"checkpoint {path} does not fit this {name} run on {self.protocol.id} "
                                  f"({type(exc).__name__}: {detail[:300]}); it was written by another method or "
                                  f"with other settings. {fix}") from None
        self.checkpoint_step = ckpt["step"]
        if len(ckpt["rng"]) != self.dist.world:
            raise HarnessError(f"{self.checkpoint_path} was written by {len(ckpt['rng'])} process(es); resume it "
                               f"with the same number of processes (now {self.dist.world})")
        set_rng_state(ckpt["rng"][self.dist.rank])
        if "compute" in ckpt:  # checkpoints of older versions have none: their runs' counts start here
            self.compute.load_state_dict(ckpt["compute"])
        logs = ckpt.get("logs") or {"sums": {}, "count": 0}
        sums = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in logs["sums"].items()}
        return TrainState(step=ckpt["step"], history=ckpt["history"], elapsed=ckpt["elapsed"], log_sums=sums,
                          log_count=logs["count"])

    def run_evaluation(self, step: int, train_logs: dict[str, float]) -> dict:
        p = self.protocol
        t0 = time.perf_counter()
        kw = dict(autocast=self.autocast, rank=self.dist.rank, world=self.dist.world)
        self.compute.counting = False  # evaluation is the protocol's cost, the same for every method
        try:
            result = self._evaluate(self.method.eval_model(), self.val_dataset, p.eval, p.num_classes, self.device,
                                    **kw)
            entry = {"step": step, "miou": result["miou"], "iou": [float(x) for x in result["iou"]],
                     "train": train_logs, "method": self.method.eval_logs()}
            for name, model in self.method.secondary_eval_models().items():
                entry[f"{name}_miou"] = self._evaluate(model, self.val_dataset, p.eval, p.num_classes, self.device,
                                                       **kw)["miou"]
            if self.selection_dataset is not None:  # the same network on held-out training images
                entry["selection"] = {"miou": self._evaluate(self.method.eval_model(), self.selection_dataset, p.eval,
                                                             p.num_classes, self.device, **kw)["miou"]}
        finally:
            self.compute.counting = True
        entry["eval_seconds"] = time.perf_counter() - t0
        return entry

    # -- the loop --------------------------------------------------------------------------------
    def initial_state(self) -> TrainState:
        """The checkpointed state (model, method, optimizer and RNG restored), or a fresh one."""
        return self.load_checkpoint() if self.checkpoint_path.exists() else TrainState()

    def fit(self, state: TrainState | None = None) -> TrainState:
        T = self.total_steps
        state = self.initial_state() if state is None else state
        if state.step >= T:
            return state
        b = self.protocol.budget
        loader = self._build_train_loader(
            self.protocol, self.data_root, self.split_root, seed=self.seed, start_step=state.step,
            crops_unlabeled=self.method_cls.crops_needed(self.method_config), num_workers=self.workers,
            include_unlabeled=self.method_cls.uses_unlabeled, rank=self.dist.rank, world=self.dist.world)
        batches = iter(loader)
        check_every = 1 if self.device.type == "cpu" else 25  # a finiteness check syncs the GPU
        bad = torch.zeros((), dtype=torch.bool, device=self.device)
        log_sums: dict[str, Any] = dict(state.log_sums)  # resumed between two evaluations: the sums so far
        log_count = state.log_count
        session_start, session_steps = time.perf_counter(), 0
        throughput_t0 = last_checkpoint = session_start
        # A terminal gets a progress bar; a log file (a SLURM job's) gets one plain line every log_every steps.
        tty = sys.stderr.isatty()
        bar = tqdm(total=T, initial=state.step, disable=not (self.progress and self.dist.is_main and tty),
                   dynamic_ncols=True, mininterval=1.0, desc=f"{self.method_cls.name}")
        win_sums: dict[str, Any] = {}
        win_count, win_t0 = 0, time.perf_counter()
        lr_now = b.lr
        try:
            for step in range(state.step, T):
                factor = poly_factor(step, T, b.poly_power)
                for group in self.optimizer.param_groups:
                    group["lr"] = group["base_lr"] * factor
                lr_now = self.optimizer.param_groups[0]["lr"]
                labeled, unlabeled = next(batches)
                labeled = to_batch(labeled, self.device, self._normalize)
                unlabeled = to_batch(unlabeled, self.device, self._normalize)
                self.compute.labeled += len(labeled)
                self.compute.unlabeled += len(unlabeled) if unlabeled is not None else 0
                self.model.train()
                with self.autocast():
                    out = self.method.training_step(labeled, unlabeled, step)
                self.optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                if self.dist.enabled:
                    distributed.average_gradients(self.trainable_parameters, self.dist.world)
                self.optimizer.step()
                if self.dist.enabled and self.device.type != "cuda":
                    # No SyncBatchNorm off GPU: keep the ranks' running statistics identical instead.
                    distributed.average_buffers(self.model, self.dist.world)
                self.method.after_step(step)

                loss = out.loss.detach()
                bad |= ~torch.isfinite(loss)
                for k, v in {"loss": loss, **out.logs}.items():
                    v = v.detach().float() if isinstance(v, torch.Tensor) else float(v)
                    log_sums[k] = log_sums.get(k, 0.0) + v
                    win_sums[k] = win_sums.get(k, 0.0) + v
                log_count += 1
                win_count += 1
                session_steps += 1
                done = step + 1
                if done % check_every == 0 or done % self.eval_every == 0 or done == T:
                    if (distributed.any_true(bad, self.device) if self.dist.enabled else bool(bad)):
                        raise NonFiniteLossError(self._nonfinite_message(step, out, state))
                if self.progress and done % 10 == 0:
                    bar.set_postfix(loss=f"{float(log_sums['loss']) / log_count:.3f}", lr=f"{lr_now:.2e}", refresh=False)
                bar.update(1)
                if self.log_every and (done % self.log_every == 0 or done == T) and self.dist.is_main:
                    now = time.perf_counter()
                    self._log_window(done, lr_now, _mean_logs(win_sums, win_count), win_count / max(now - win_t0, 1e-9),
                                     plain=self.progress and not tty)
                    win_sums, win_count, win_t0 = {}, 0, now

                evaluated = done % self.eval_every == 0 or done == T
                if evaluated:
                    train_logs = _mean_logs(log_sums, log_count)
                    train_logs["lr"] = lr_now
                    log_sums, log_count = {}, 0
                    entry = self.run_evaluation(done, train_logs)
                    state.history.append(entry)
                    state.step, state.log_sums, state.log_count = done, {}, 0
                    state.elapsed += time.perf_counter() - session_start
                    session_start = last_checkpoint = time.perf_counter()
                    self.save_checkpoint(state)
                    if self.dist.is_main:
                        records.rewrite_metrics(self.run_dir / records.METRICS, state.history)
                        records.write_status(self.run_dir, "running", step=done, total_steps=T,
                                             last_miou=entry["miou"], world_size=self.dist.world,
                                             it_per_s=session_steps / max(time.perf_counter() - throughput_t0, 1e-9))
                        self.emit("eval", {"run_dir": str(self.run_dir), **entry})
                        bar.write(f"[{self.method_cls.name}] step {done}/{T}  mIoU {entry['miou']:.2f}")
                    if done == T:
                        break
                stop = (self.stop_after is not None and session_steps >= self.stop_after) or (
                    self.should_stop is not None and self.should_stop())
                due = not evaluated and self._checkpoint_due(done, last_checkpoint)
                if self.dist.enabled:  # every rank must take the same branch (collectives follow; clocks differ)
                    stop, due = distributed.any_true_each([stop, due], self.device)
                if (stop or due) and not evaluated:
                    if (distributed.any_true(bad, self.device) if self.dist.enabled else bool(bad)):
                        raise NonFiniteLossError(self._nonfinite_message(step, out, state))  # never checkpoint NaN
                    state.step, state.log_sums, state.log_count = done, log_sums, log_count
                    state.elapsed += time.perf_counter() - session_start
                    session_start = last_checkpoint = time.perf_counter()
                    self.save_checkpoint(state)
                    if self.dist.is_main and not stop:
                        records.write_status(self.run_dir, "running", step=done, total_steps=T,
                                             last_miou=state.history[-1]["miou"] if state.history else None,
                                             world_size=self.dist.world, checkpoint_step=done)
                if stop:
                    if self.dist.is_main:
                        records.write_status(self.run_dir, "stopped", step=done, total_steps=T)
                    raise StopRequested(done)
        finally:
            bar.close()
        state.step = T
        state.compute = self._compute_so_far()
        return state

    def _compute_so_far(self) -> dict[str, Any]:
        """The counters of this process (peak memory updated), for the checkpoint and the record."""
        gib, _ = peak_memory(self.device)
        self.compute.peak_memory_gib = max(self.compute.peak_memory_gib, gib)
        return self.compute.state_dict()

    def _checkpoint_due(self, done: int, last_checkpoint: float) -> bool:
        """The checkpoint cadence between evaluations (``checkpoint_every``: steps and/or training time)."""
        if self.checkpoint_steps is not None and done % self.checkpoint_steps == 0:
            return True
        return self.checkpoint_seconds is not None and time.perf_counter() - last_checkpoint >= self.checkpoint_seconds

    def _log_window(self, step: int, lr: float, logs: dict[str, float], it_per_s: float, plain: bool) -> None:
        """The "train" event (losses and signals averaged over the last ``log_every`` steps) and, for a log that
        is not a terminal, the same as one plain line."""
        self.emit("train", {"run_dir": str(self.run_dir), "step": step, "total_steps": self.total_steps, "lr": lr,
                            "it_per_s": it_per_s, "logs": logs})
        if plain:
            eta = (self.total_steps - step) / max(it_per_s, 1e-9)
            terms = "  ".join(f"{k} {v:.4g}" for k, v in logs.items())
            print(f"[{self.method_cls.name}] step {step}/{self.total_steps}  {terms}  lr {lr:.2e}  "
                  f"{it_per_s:.2f} it/s  ETA {int(eta // 3600)}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d}",
                  file=sys.stderr, flush=True)

    def _nonfinite_message(self, step: int, out, state: TrainState) -> str:
        bad_terms = [k for k, v in out.logs.items()
                     if isinstance(v, (torch.Tensor, float)) and not math.isfinite(float(v))]
        where = f" (non-finite terms at step {step}: {', '.join(bad_terms)})" if bad_terms else ""
        if self.checkpoint_path.exists():
            kept = f"the last good checkpoint (step {state.step}) is kept in {self.checkpoint_path}"
            then = ("Rerunning the same command resumes from that checkpoint (and meets the same loss unless the "
                    "cause was transient); lower the learning rate or check the method's settings (a new run "
                    "folder), or pass --force to start again from step 0.")
        else:
            kept = "no checkpoint had been written yet"
            then = ("Lower the learning rate or check the method's settings; rerunning the same command starts the "
                    "run again from step 0.")
        return (f"training produced a non-finite loss by step {step + 1} of {self.total_steps}{where}; the run "
                f"stopped and {kept}. {then}")

