"""One run, end to end: resolve the spec, prepare the run directory, train (or resume), write the record.

``execute(spec)`` is what the CLI, the local executor and every SLURM task call.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pydantic
import torch
import yaml

from .. import records
from ..errors import ConfigError, HarnessError, WriteError
from .interrupts import stop_on_signals
from ..method import MethodConfig
from ..plugins import MethodInfo, get_plugin_manager
from ..regimes import regime_of
from ..protocols import OVERRIDABLE_SECTIONS, Protocol, _format_validation
from .resume import check_resume, config_with_start
from .runlock import LOCK, RunLock

RUN_OPTION_DEFAULTS = {"channels_last": False, "precision": "fp32"}
RUN_OPTIONS = tuple(RUN_OPTION_DEFAULTS)


@dataclass(frozen=True)
class RunSpec:
    """What a user asks for. ``overrides`` are ``--set`` values: keys under ``budget.``, ``model.``,
    ``eval.``, ``supervised_loss.`` change the protocol (and the settings hash); ``run.channels_last``
    and ``run.precision`` (``fp32``/``bf16``) are execution options; every other key is a method-config key (dotted for nested sections)."""

    method: str
    protocol: str
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    out: str = "runs"
    data_root: str | None = None
    splits_dir: str | None = None
    device: str = "auto"
    workers: int | None = None
    force: bool = False
    stop_after: int | None = None
    progress: bool = True
    checkpoint_every: str | None = None  # None: the engine's default (every 30 minutes of training)
    loggers: tuple[str, ...] = ()        # observer plugins asked to record this run (e.g. "tensorboard")
    log_every: int = 50                  # steps between "train" events; not a setting of the run
    # Where each override came from ("--set", "--config run.yaml", a grid's variant): for error messages only.
    origins: dict[str, str] = field(default_factory=dict)


def parse_set(items: list[str]) -> dict[str, Any]:
    """``['tau=0.9', 'cmim.enabled=false']`` → ``{'tau': 0.9, 'cmim.enabled': False}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set expects key=value, got '{item}' (empty key)")
        try:
            out[key] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            out[key] = value
    return out


def _hash(doc: dict[str, Any]) -> str:
    if not doc:
        return "default"
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:10]


def literal_settings_hash(overrides: dict[str, Any]) -> str:
    """The hash of the ``--set`` text as given: the folder of a run whose settings cannot be resolved (an
    invalid run of a grid, which records its failure there), and the folder name of harness versions before
    the settings were normalised."""
    return _hash(overrides)


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _differences(default: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any]:
    a, b = _flatten(default), _flatten(actual)
    return {k: b[k] for k in sorted(b) if k not in a or a[k] != b[k]}


def normalised_settings(r: "ResolvedRun") -> dict[str, Any]:
    """What a run's settings change from the defaults, after validation: ``{"protocol": {"budget.iterations":
    60}, "method": {"tau": 0.9}, "run": {"precision": "bf16"}}`` (empty sections left out).

    The defaults are the protocol's own values and the method's config built from the protocol's
    ``method_settings``; values are compared as the pydantic models hold them, so ``budget.iterations=60`` and
    ``=60.0`` are one setting, and ``tau=0.95`` where 0.95 is the default is no setting at all. Execution facts
    that do not change what is computed in expectation (threads, workers, device, checkpoint cadence) are not
    settings; they are recorded in ``config.json`` and checked on resume."""
    doc: dict[str, Any] = {}
    base, new = r.base_protocol.model_dump(mode="json"), r.protocol.model_dump(mode="json")
    proto = _differences({k: base[k] for k in OVERRIDABLE_SECTIONS}, {k: new[k] for k in OVERRIDABLE_SECTIONS})
    method = _differences(r.base_config.model_dump(mode="json"), r.config.model_dump(mode="json"))
    run = {k: v for k, v in sorted(r.options.items()) if v != RUN_OPTION_DEFAULTS[k]}
    for name, section in (("protocol", proto), ("method", method), ("run", run)):
        if section:
            doc[name] = section
    return doc


def settings_hash(r: "ResolvedRun") -> str:
    """Folder name of a settings variant: ``default``, or a short hash of :func:`normalised_settings`."""
    return _hash(normalised_settings(r))


def run_dir(spec: RunSpec, resolved: "ResolvedRun | None" = None) -> Path:
    """``<out>/<protocol>/<method>/<settings hash>/seed<k>``; a spec that cannot be resolved (unknown
    method, invalid value) is placed by the hash of its literal overrides."""
    try:
        folder = settings_hash(resolved or resolve(spec))
    except HarnessError:
        folder = literal_settings_hash(spec.overrides)
    return Path(spec.out) / spec.protocol / spec.method / folder / f"seed{spec.seed}"


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set key '{key}' conflicts with another --set of '{p}'")
        node[parts[-1]] = value
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def default_method_config(info: MethodInfo, protocol: Protocol) -> MethodConfig:
    """Method defaults ← the protocol's per-method settings."""
    try:  # the plugin's own defaults, validated explicitly (pydantic does not validate defaults by default)
        info.cls.Config.model_validate(info.cls.Config().model_dump())
    except pydantic.ValidationError as exc:
        raise ConfigError(f"method '{info.name}' ({info.distribution} {info.version}, {info.cls.__module__}) "
                          f"has invalid default settings: {_format_validation(exc)}; this is a bug of the "
                          f"plugin, not of the command") from None
    fixed = protocol.method_settings.get(info.name, {})
    try:
        return info.cls.Config.model_validate(fixed)
    except pydantic.ValidationError as exc:
        raise ConfigError(f"protocol {protocol.id} ({protocol.source}): method_settings for '{info.name}' are "
                          f"invalid: {_format_validation(exc)}") from None


def origin_of(keys: list[str], origins: dict[str, str]) -> str:
    """Where the settings ``keys`` came from, in words: ``--set``, ``--config run.yaml``, …"""
    found: list[str] = []
    for key in keys:
        src = next((o for k, o in origins.items() if k == key or k.startswith(key + ".") or key.startswith(k + ".")),
                   "--set")
        if src not in found:
            found.append(src)
    return " / ".join(found) or "--set"


def build_method_config(info: MethodInfo, protocol: Protocol, method_overrides: dict[str, Any],
                        origins: dict[str, str] | None = None) -> MethodConfig:
    """Method defaults ← the protocol's per-method settings ← the user's overrides; unknown keys are errors.
    ``origins`` (override key → where it was given) lets the error name the source of a bad value."""
    base = default_method_config(info, protocol)
    data = _merge(base.model_dump(), _nest(method_overrides))
    try:
        return info.cls.Config.model_validate(data)
    except pydantic.ValidationError as exc:
        fields = ", ".join(sorted(info.cls.Config.model_fields)) or "(none)"
        bad = [".".join(str(x) for x in e["loc"]) for e in exc.errors()]
        raise ConfigError(f"invalid {origin_of(bad, origins or {})} for method '{info.name}': "
                          f"{_format_validation(exc)}. Keys of this "
                          f"method: {fields}; protocol sections: {', '.join(s + '.*' for s in OVERRIDABLE_SECTIONS)}"
                          ) from None


@dataclass
class ResolvedRun:
    spec: RunSpec
    method: MethodInfo
    protocol: Protocol
    config: MethodConfig
    total_steps: int
    options: dict[str, Any]
    base_protocol: Protocol          # the protocol as registered, before ``--set``
    base_config: MethodConfig        # the method's defaults on this protocol, before ``--set``


def check_spec(spec: RunSpec) -> None:
    """The spec's own values (the rest is checked by resolving it); ConfigError naming the option."""
    from .engine import parse_checkpoint_every

    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not whole(spec.seed) or spec.seed < 0:
        raise ConfigError(f"--seed must be a whole number >= 0 (it seeds the data order, the augmentations and the "
                          f"initialisation), got {spec.seed!r}; use e.g. --seed 0")
    if spec.workers is not None and (not whole(spec.workers) or spec.workers < 0):
        raise ConfigError(f"--workers must be a whole number >= 0 (0 loads the data in the training process), got "
                          f"{spec.workers!r}; leave it out for the default (0 on CPU, up to 8 on a GPU)")
    if spec.stop_after is not None and (not whole(spec.stop_after) or spec.stop_after < 1):
        raise ConfigError(f"--stop-after must be a number of steps >= 1, got {spec.stop_after!r}; leave it out to "
                          f"train to the end")
    if spec.checkpoint_every is not None:
        try:
            parse_checkpoint_every(spec.checkpoint_every)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if not whole(spec.log_every) or spec.log_every < 0:
        raise ConfigError(f"--log-every must be a number of steps >= 0 (0: no periodic training log), got "
                          f"{spec.log_every!r}")
    if spec.loggers:
        from ..plugins import get_plugin_manager

        known = get_plugin_manager().observers()
        unknown = [name for name in spec.loggers if name not in known]
        if unknown:
            raise ConfigError(f"unknown --logger {', '.join(unknown)}; installed loggers (plugins implementing "
                              f"harness_run_event): {', '.join(sorted(known)) or '(none)'}")


def resolve(spec: RunSpec, world_size: int | None = None) -> ResolvedRun:
    """Method, protocol (with overrides), method config and step count of a run, checked before any training.
    ``world_size``: the processes the run will train on (default: ``WORLD_SIZE`` of the environment, else 1)."""
    check_spec(spec)
    pm = get_plugin_manager()
    info = pm.methods.get(spec.method)
    protocol = pm.protocols.get(spec.protocol)
    proto_over = {k: v for k, v in spec.overrides.items() if k.split(".")[0] in OVERRIDABLE_SECTIONS}
    options = {k.split(".", 1)[1]: v for k, v in spec.overrides.items() if k.startswith("run.")}
    for key in options:
        if key not in RUN_OPTIONS:
            raise ConfigError(f"unknown run option 'run.{key}'; valid: {', '.join('run.' + o for o in RUN_OPTIONS)}")
    from .engine import PRECISIONS
    if options.get("precision", "fp32") not in PRECISIONS:
        raise ConfigError(f"run.precision (--precision) must be one of {', '.join(PRECISIONS)}, got "
                          f"{options['precision']!r}")
    if not isinstance(options.get("channels_last", False), bool):
        raise ConfigError(f"run.channels_last must be true or false, got {options['channels_last']!r}")
    method_over = {k: v for k, v in spec.overrides.items() if k not in proto_over and not k.startswith("run.")}
    base_protocol = protocol
    if proto_over:
        try:
            protocol = protocol.with_overrides(proto_over)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (given by {origin_of(list(proto_over), spec.origins)})") from None
    config = build_method_config(info, protocol, method_over, spec.origins)
    if info.cls.uses_unlabeled and protocol.splits.unlabeled is None:
        raise ConfigError(f"method '{info.name}' trains on unlabeled images, but protocol '{protocol.id}' has no "
                          f"unlabeled split (it is fully supervised); use a protocol with an unlabeled split or "
                          f"the 'supervised' method")
    from ..models.encoders import get_encoder

    encoder = get_encoder(protocol.model.backbone, protocol=protocol)
    if protocol.model.pretrained and encoder.check_weights is not None:
        encoder.check_weights(protocol.model, protocol.id)  # before any training: a missing file is an error
    world = world_size or max(1, int(os.environ.get("WORLD_SIZE") or 1))
    b = protocol.budget
    for what, n in (("batch_labeled", b.batch_labeled),
                    ("batch_unlabeled", b.batch_unlabeled if info.cls.uses_unlabeled else 0)):
        if n % world:
            raise ConfigError(f"budget.{what} {n} of protocol '{protocol.id}' does not split evenly over {world} "
                              f"processes; use a number of processes that divides it")
    info.cls.check_run(protocol, config, world)
    total = info.cls.total_steps(protocol, config) if hasattr(info.cls, "total_steps") else protocol.total_iterations
    return ResolvedRun(spec, info, protocol, config, total, options, base_protocol,
                       default_method_config(info, protocol))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} was requested but CUDA is not available on this machine")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"--device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got '{name}'")
    return torch.device(name)


def _config_document(r: ResolvedRun, device: torch.device, data_root: Path, split_root: Path,
                     pretrained_source: str, world_size: int = 1) -> dict[str, Any]:
    p = r.protocol
    origin = records.harness_origin()
    return {
        "method": {"name": r.method.name, "distribution": r.method.distribution, "version": r.method.version,
                   "config": r.config.model_dump(mode="json")},
        "protocol": p.model_dump(mode="json"),
        "seed": r.spec.seed,
        "overrides": r.spec.overrides,
        "settings": normalised_settings(r),
        "settings_hash": settings_hash(r),
        "total_steps": r.total_steps,
        "iters_per_epoch": p.iters_per_epoch,
        "world_size": world_size,
        "global_batch": {"labeled": p.budget.batch_labeled,
                         "unlabeled": p.budget.batch_unlabeled if r.method.cls.uses_unlabeled else 0},
        "lr_scaled": False,
        "split_checksums": {s.path: s.pin for s in (p.splits.labeled, p.splits.unlabeled, p.splits.val,
                                                       p.splits.selection) if s},
        "data_root": str(data_root),
        "split_root": str(split_root),
        **_data_fingerprint(p, data_root),
        "device": str(device),
        "device_name": records.device_name(device),
        # The intra-op thread count changes the order of float reductions, so runs are bit-identical
        # only at the same count (and CPU model); a different count gives another, equally valid sample.
        "torch_threads": torch.get_num_threads(),
        "pretrained_source": pretrained_source,
        "options": r.options,
        "precision": r.options.get("precision", "fp32"),
        "command": shlex.join(sys.argv),  # as this process was started (a grid task: its task command)
        "harness": origin,  # folder, installed distribution (name, version) or None, checkout revision or None
        "versions": records.package_versions(),
        "git_revision": origin["git_revision"],  # only a git checkout of the harness itself; else None
    }


def _data_fingerprint(protocol, root: Path) -> dict:
    """``{"data_fingerprint": ...}`` for a dataset that fingerprints its roots (generated data), else ``{}``."""
    from ..data.registry import get_dataset

    fingerprint = get_dataset(protocol).fingerprint
    return {"data_fingerprint": fingerprint(root)} if fingerprint is not None else {}


def default_workers(device: torch.device) -> int:
    return 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)


def execute(spec: RunSpec, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Train (or resume) one run and return its record. A finished run is returned as is unless ``force``.

    The trainer (rank 0) holds the run directory's lock (:mod:`harness.train.runlock`) from before it changes anything
    in the folder until it returns: a second trainer of the same run, or ``--force`` on a run being trained, is
    refused with an error naming the owner. In the main thread, SIGTERM and Ctrl-C stop the run at the next step
    boundary with a checkpoint (:mod:`harness.train.interrupts`)."""
    from . import distributed
    from ..data.roots import prepare_data
    from .engine import StopRequested

    r = resolve(spec)
    out_dir = run_dir(spec, r)
    if (out_dir / records.RECORD).exists() and not spec.force:
        raise HarnessError(f"run {out_dir} is already finished (record.json exists); pass --force to train it "
                           f"again from scratch (its files are replaced)")
    dist, device = distributed.setup(resolve_device(spec.device))
    data = prepare_data(r.protocol, spec.data_root, spec.splits_dir)  # before the run directory is made
    lock = RunLock(out_dir) if dist.is_main else None
    if lock is not None:
        _make_run_dir(out_dir, spec.out)
        lock.acquire(force=spec.force)
    try:
        if lock is not None and (out_dir / records.RECORD).exists() and not spec.force:  # finished while we waited
            raise HarnessError(f"run {out_dir} is already finished (record.json exists); pass --force to train it "
                               f"again from scratch (its files are replaced)")
        if lock is not None:
            if spec.force:
                _clear_run_dir(out_dir)
            _remove_orphans(out_dir)
        with stop_on_signals(should_stop) as (stop_check, flag):
            try:
                return _train(spec, r, out_dir, dist, device, data, stop_check)
            except StopRequested as stop:
                stop.reason = flag.reason
                raise
    finally:
        if lock is not None:
            lock.release()


def _make_run_dir(out_dir: Path, out: str) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        err = records.write_error(out_dir, exc)
        if err is None:
            raise
        reason = str(err).rsplit(": ", 1)[-1]
        raise WriteError(f"cannot create the run directory {out_dir} under --out {out}: {reason}. Pass --out "
                         f"pointing at a folder this user can write to (default: ./runs)", str(out_dir),
                         exc.errno) from None
    if not os.access(out_dir, os.W_OK):
        raise WriteError(f"cannot write in the run directory {out_dir} under --out {out}: permission denied. Pass "
                         f"--out pointing at a folder this user can write to (default: ./runs)", str(out_dir))


def _clear_run_dir(out_dir: Path) -> None:
    """``--force``: everything but the lock this process holds."""
    for p in out_dir.iterdir():
        if p.name == LOCK:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _remove_orphans(out_dir: Path) -> None:
    """Temporary files of atomic writes (``.latest.pt.*.tmp``, ...) left by a trainer that was killed mid-write;
    with the lock held, no live process is writing them."""
    for p in out_dir.glob(".*.tmp"):
        try:
            p.unlink()
        except OSError:
            pass


def _train(spec: RunSpec, r: ResolvedRun, out_dir: Path, dist, device: torch.device, data: tuple[Path, Path],
           should_stop: Callable[[], bool] | None) -> dict[str, Any]:
    from . import distributed
    from .engine import Engine, StopRequested

    record_path = out_dir / records.RECORD
    data_root, split_root = data
    distributed.barrier()
    out_dir.mkdir(parents=True, exist_ok=True)
    pm = get_plugin_manager()
    engine = Engine(run_dir=out_dir, protocol=r.protocol, method_cls=r.method.cls, method_config=r.config,
                    seed=spec.seed, data_root=data_root, split_root=split_root, device=device,
                    total_steps=r.total_steps,
                    workers=default_workers(device) if spec.workers is None else spec.workers,
                    stop_after=spec.stop_after, should_stop=should_stop, progress=spec.progress,
                    checkpoint_every=spec.checkpoint_every, log_every=spec.log_every,
                    channels_last=bool(r.options.get("channels_last", False)),
                    precision=r.options.get("precision", "fp32"), dist=dist, emit=pm.emit)
    doc = _config_document(r, device, data_root, split_root, getattr(engine.model, "pretrained_source", "unknown"),
                           dist.world)
    config_path = out_dir / records.CONFIG
    doc = json.loads(records.dumps(doc))  # as config.json holds it
    old = records.read_json(config_path) if config_path.exists() else None
    if old is not None and (out_dir / records.CHECKPOINT).exists():
        check_resume(old, doc, out_dir)
    state = engine.initial_state()  # the checkpoint is read once, here
    try:
        if dist.is_main:
            records.write_json(config_path, config_with_start(old, doc, state.step))
            records.write_status(out_dir, "running", step=state.step, total_steps=r.total_steps)
            pm.emit("start", {"run_dir": str(out_dir), "method": spec.method, "protocol": spec.protocol,
                              "seed": spec.seed, "step": state.step, "loggers": list(spec.loggers), "config": doc})
        state = engine.fit(state)
        evaluated = "student" if engine.method.eval_model() is engine.method.model else "teacher"
        record = build_record(r, state, out_dir, device, doc, evaluated)
        if dist.is_main:
            records.write_json(record_path, record)
            records.write_status(out_dir, "finished", step=r.total_steps, total_steps=r.total_steps,
                                 last_miou=record["final"]["miou"])
    except StopRequested:
        raise
    except KeyboardInterrupt:  # a second Ctrl-C: no checkpoint of this step, the previous one stands
        if dist.is_main:
            _status_quietly(out_dir, "stopped", step=engine.checkpoint_step or 0, total_steps=r.total_steps,
                            note="aborted during a step; resumes from the last checkpoint")
        raise
    except Exception as exc:
        if isinstance(exc, WriteError):
            exc = _write_failure(exc, engine)
        if dist.is_main:
            _status_quietly(out_dir, "failed", error=f"{type(exc).__name__}: {exc}",
                            traceback=traceback.format_exc()[-4000:], step=engine.checkpoint_step,
                            total_steps=r.total_steps)
            pm.emit("fail", {"run_dir": str(out_dir), "error": str(exc)})
        if isinstance(exc, WriteError):
            raise exc from None
        raise
    if dist.is_main:
        pm.emit("finish", {"run_dir": str(out_dir), **record})
    distributed.barrier()
    return record


def _status_quietly(out_dir: Path, state: str, **fields: Any) -> None:
    """status.json on the way out of a failure: if even that cannot be written (full disk), the file keeps
    saying ``running`` and readers, finding no process that holds the run, call it interrupted."""
    try:
        records.write_status(out_dir, state, **fields)
    except (OSError, WriteError):
        pass


def _write_failure(exc: WriteError, engine) -> WriteError:
    """A file-system error while training, with what was kept and how to go on."""
    import errno

    ckpt = engine.checkpoint_path
    if engine.checkpoint_step is not None and ckpt.exists():
        kept, then = f"its checkpoint of step {engine.checkpoint_step} ({ckpt}) was kept", "to resume from it"
    else:
        kept, then = "no checkpoint had been written yet", "to start it again"
    fix = {errno.ENOSPC: "Free space on that file system", errno.EDQUOT: "Free space within your quota",
           errno.EIO: "Check that disk"}.get(exc.errno, "Make that folder writable")
    return WriteError(f"{exc}. The run stopped; {kept}. {fix}, then rerun the same command {then} (or pass --out "
                      f"on another file system to train the run there from step 0)", exc.path, exc.errno)


def compute_record(counts: dict[str, Any], world: int, device: torch.device, hours: float) -> dict[str, Any]:
    """The record's ``compute``: totals over all processes (each process counts its own shard)."""
    if not counts:
        return {}
    from .compute import peak_memory

    return {"images_seen": {"labeled": counts["labeled"] * world, "unlabeled": counts["unlabeled"] * world},
            "image_passes": {"with_grad": counts["with_grad"] * world, "forward_only": counts["forward_only"] * world},
            "peak_memory_gib": round(counts["peak_memory_gib"], 3), "peak_memory_of": peak_memory(device)[1],
            "device_hours": hours * world, "device": device.type}


SELECTED_NOTE = "val mIoU at the evaluation that is best on the selection split (held-out training images)"


def selected_checkpoint(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The record's ``selected``: val mIoU at the evaluation whose selection-split mIoU is highest (the first of
    equal ones, as best-on-val), or None when an evaluation has no selection score (a protocol without a selection
    split, or a run resumed from a checkpoint of a harness that did not evaluate one: choosing among only some of
    the evaluations would be another rule)."""
    if not history or any(not isinstance(e.get("selection"), dict) for e in history):
        return None
    chosen = max(history, key=lambda e: e["selection"]["miou"])
    return {"miou": chosen["miou"], "step": chosen["step"], "selection_miou": chosen["selection"]["miou"],
            "note": SELECTED_NOTE}


def build_record(r: ResolvedRun, state, out_dir: Path, device: torch.device, doc: dict,
                 evaluated: str = "student") -> dict[str, Any]:
    """record.json of a finished run; ``evaluated``: the network its numbers are of ("student" or "teacher")."""
    final = state.history[-1]
    best = max(state.history, key=lambda e: e["miou"])
    secondary = {k: v for k, v in final.items() if k.endswith("_miou")}
    hours = state.elapsed / 3600.0
    return {
        "status": "finished",
        "method": r.method.name,
        "protocol": r.protocol.id,
        "dataset": r.protocol.dataset,
        "family": r.protocol.family,
        "labeled": r.protocol.labeled_count,
        "seed": r.spec.seed,
        "settings_hash": settings_hash(r),
        "overrides": r.spec.overrides,
        "eval_mode": r.protocol.eval.name,
        "backbone": r.protocol.model.backbone,
        "regime": regime_of(doc["pretrained_source"]),
        "crop_size": r.protocol.crop_size,
        "total_steps": r.total_steps,
        "final": {"miou": final["miou"], "step": final["step"],
                  "iou": dict(zip(r.protocol.class_names, final["iou"])), **secondary},
        "best_on_val": {"miou": best["miou"], "step": best["step"],
                        "note": "selected on the evaluation set; optimistic"},
        "selected": selected_checkpoint(state.history),
        "split_of": r.protocol.split_of,
        "split_seed": r.protocol.split_seed,
        "num_evals": len(state.history),
        "evaluated": evaluated,
        "wall_time_s": state.elapsed,
        "world_size": doc["world_size"],
        "device": str(device),
        "precision": doc["precision"],
        "device_hours": hours * (1 if device.type == "cuda" else 0),
        "compute": compute_record(state.compute, doc["world_size"], device, hours),
        "pretrained_source": doc["pretrained_source"],
        "git_revision": doc["git_revision"],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_dir": str(out_dir),
    }
