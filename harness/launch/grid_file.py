"""Grid files: their schema, and their expansion into the runs ``harness grid`` submits.

A *grid file* (``benchmarks/grids/*.yaml``, schema :class:`GridFile`; unknown keys are errors naming
the file) lists methods, protocols, seeds, common ``--set`` overrides, per-method overrides and named
*variants* (each a dict of overrides, optionally restricted to some methods / protocols / seeds), plus
default executor options (:class:`SlurmOptions`, :class:`LocalOptions`). :func:`expand` turns it into
:class:`PlannedRun` objects, one :class:`harness.train.run.RunSpec` each, in the order protocol → method →
variant → seed, or seed first (``order: seed``: every run's seed 0 before any seed 1, so a grid run over several
sittings has a complete one-seed table first). Every run is identified by its run directory
(``<out>/<protocol>/<method>/<settings hash>/seed<k>``). :func:`validate_runs` resolves every run up front
(:func:`harness.train.run.resolve`: unknown method/protocol/key, bad value) without training, and
:func:`split_arrays` cuts the runs into job arrays that fit the cluster's ``MaxArraySize``.

Nothing here submits or runs anything; :mod:`harness.launch` (the ``harness grid`` command) does, through
:mod:`harness.launch.executors`. The harness modules that need torch are imported inside the functions, so that
``harness status`` and ``harness grid --dry-run`` start fast.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence, get_args

import pydantic
import yaml

from ..errors import ConfigError, HarnessError

__all__ = [
    "GridFile", "LocalOptions", "SlurmOptions", "Variant", "PlannedRun",
    "load_grid", "grid_path", "expand", "validate_runs", "split_arrays", "parse_time_minutes",
]


# ============================================================================ grid file schema
class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)


_SCALAR = str | int | float | bool
Order = Literal["protocol", "seed"]
ORDERS: tuple[str, ...] = get_args(Order)  # the submission orders of expand(), also `harness grid --order`


class SlurmOptions(_Strict):
    """SLURM resources of every task of the grid (CLI options override these)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: int | str = pydantic.Field(60, description="time limit: minutes, or [D-]HH:MM[:SS], or 90m / 4h")
    cpus_per_task: int = pydantic.Field(1, ge=1, description="CPUs per process")
    gpus_per_task: int = pydantic.Field(0, ge=0, description="GPUs per run; N > 0 runs one process per GPU")
    nproc: int | None = pydantic.Field(None, ge=1, description="processes per run (default max(1, gpus_per_task))")
    mem_gb: float | None = pydantic.Field(None, gt=0, description="memory per node (default: the cluster's)")
    array_parallelism: int = pydantic.Field(32, ge=1, description="running tasks per array (%N)")
    max_array_size: int | None = pydantic.Field(None, ge=1, description="default: the cluster's MaxArraySize")
    max_num_timeout: int = pydantic.Field(3, ge=0, description="requeues after a time-out before giving up")
    signal_delay_s: int = pydantic.Field(90, ge=0, description="SIGUSR2 this many seconds before the time limit")
    constraint: str | None = None
    job_name: str | None = None
    setup: list[str] = pydantic.Field(default_factory=list, description="shell lines run before the task")
    sbatch: dict[str, _SCALAR] = pydantic.Field(default_factory=dict,
                                                description="extra sbatch options, e.g. {exclude: node3}")

    @pydantic.field_validator("time")
    @classmethod
    def _check_time(cls, v):
        try:
            parse_time_minutes(v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return v


class LocalOptions(_Strict):
    max_parallel: int | None = pydantic.Field(None, ge=1, description="runs at a time (default: GPUs, or 1)")
    nproc: int = pydantic.Field(1, ge=1, description="processes per run (torchrun-style)")
    threads: int | None = pydantic.Field(None, ge=1, description="torch threads per process")


class Variant(_Strict):
    """A named settings variant: ``--set`` overrides, optionally for some methods/protocols/seeds only."""

    name: str = pydantic.Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    overrides: dict[str, Any] = pydantic.Field(default_factory=dict, alias="set")
    methods: list[str] | None = None
    protocols: list[str] | None = None
    seeds: list[int] | None = None


class GridFile(_Strict):
    name: str | None = pydantic.Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$",
                                      description="default: the file name without .yaml")
    description: str | None = None
    out: str = "runs"
    methods: list[str] = pydantic.Field(min_length=1)
    protocols: list[str] = pydantic.Field(min_length=1)
    seeds: list[int] = pydantic.Field(default_factory=lambda: [0], min_length=1)
    split_seeds: list[int] | None = pydantic.Field(
        None, min_length=1, description="run each protocol's split-seed draws (protocols with split_of = it and "
                                        "these split_seed values) instead of the protocol itself, each with every "
                                        "training seed")
    overrides: dict[str, Any] = pydantic.Field(default_factory=dict, alias="set")
    method_set: dict[str, dict[str, Any]] = pydantic.Field(default_factory=dict)
    variants: list[Variant] = pydantic.Field(default_factory=list)
    data_root: str | None = None
    splits_dir: str | None = None
    device: str = "auto"
    workers: int | None = pydantic.Field(None, ge=0)
    checkpoint_every: int | str | None = pydantic.Field(
        None, description="checkpoint cadence besides evaluations, e.g. 500, 30m, 500,30m or off (default 30m)")
    order: Order = pydantic.Field(
        "protocol", description="submission order: protocol → method → variant → seed, or seed first (every "
                                "run's first seed before any second one)")
    executor: Literal["slurm", "local", "debug"] = "slurm"
    slurm: SlurmOptions = pydantic.Field(default_factory=SlurmOptions)
    local: LocalOptions = pydantic.Field(default_factory=LocalOptions)

    @pydantic.model_validator(mode="after")
    def _cross_checks(self):
        for label, values in (("methods", self.methods), ("protocols", self.protocols), ("seeds", self.seeds),
                              ("split_seeds", self.split_seeds or [])):
            dup = [v for v, n in Counter(values).items() if n > 1]
            if dup:
                raise ValueError(f"{label} lists {dup} more than once")
        unknown = sorted(set(self.method_set) - set(self.methods))
        if unknown:
            raise ValueError(f"method_set names {unknown}, which are not in methods {self.methods}")
        names = [v.name for v in self.variants]
        dup = [v for v, n in Counter(names).items() if n > 1]
        if dup:
            raise ValueError(f"variant names {dup} are used more than once")
        for v in self.variants:
            for label, sub, full in (("methods", v.methods, self.methods), ("protocols", v.protocols, self.protocols),
                                     ("seeds", v.seeds, self.seeds)):
                extra = sorted(set(sub or ()) - set(full), key=str)
                if extra:
                    raise ValueError(f"variant '{v.name}': {label} {extra} are not in the grid's {label} {full}")
        return self


def _format_errors(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        got = err.get("input")
        got_s = "" if isinstance(got, (dict, list)) or err["type"] == "missing" else f" (got {got!r})"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"key '{loc}': {msg}{got_s}" if err["type"] != "extra_forbidden"
                     else f"unknown key '{loc}'")
    return "; ".join(parts)


def grid_path(arg: str | Path) -> Path:
    """A grid argument as a file: the path itself if it exists, else the shipped grid of that name
    (``voc-classic``, see ``harness.resources``), else the path as given."""
    from ..resources import shipped_grid

    path = Path(arg)
    if path.is_file():
        return path
    return shipped_grid(str(arg)) or path


def load_grid(path: str | Path) -> GridFile:
    """Read and validate a grid file (a path or a shipped grid's name); every error names the file (and the key)."""
    path = grid_path(path)
    if not path.is_file():
        from ..resources import grids_dir

        names = ", ".join(sorted(p.stem for p in grids_dir().glob("*.yaml")))
        raise ConfigError(f"grid file {path} does not exist (shipped grids, usable by name: {names})")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"grid file {path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"grid file {path} must be a mapping with at least 'methods' and 'protocols'")
    try:
        grid = GridFile.model_validate(doc)
    except pydantic.ValidationError as exc:
        fields = ", ".join(f.alias or k for k, f in GridFile.model_fields.items())
        raise ConfigError(f"grid file {path}: {_format_errors(exc)}. Valid top-level keys: {fields}") from None
    if grid.name is None:
        grid = grid.model_copy(update={"name": re.sub(r"[^A-Za-z0-9_.+-]", "_", path.stem)})
    return grid


_TIME_RE = re.compile(r"^(?:(\d+)-)?(\d+):(\d{1,2})(?::(\d{1,2}))?$")


def parse_time_minutes(value: int | float | str) -> int:
    """``90`` / ``"90"`` / ``"90m"`` / ``"4h"`` / ``"1:30:00"`` / ``"2-00:00:00"`` → whole minutes (≥ 1)."""
    if isinstance(value, bool):
        raise ConfigError(f"time limit must be minutes or [D-]HH:MM[:SS], got {value!r}")
    if isinstance(value, (int, float)):
        minutes = float(value)
    else:
        s = str(value).strip().lower()
        m = _TIME_RE.match(s)
        if m:
            days, a, b, c = m.groups()
            if c is None:  # HH:MM
                minutes = int(a) * 60 + int(b)
            else:  # HH:MM:SS
                minutes = int(a) * 60 + int(b) + int(c) / 60
            minutes += int(days or 0) * 1440
        elif re.fullmatch(r"\d+(\.\d+)?\s*(m|min)?", s):
            minutes = float(re.sub(r"[a-z\s]", "", s))
        elif re.fullmatch(r"\d+(\.\d+)?\s*h", s):
            minutes = float(s[:-1]) * 60
        elif re.fullmatch(r"\d+(\.\d+)?\s*d", s):
            minutes = float(s[:-1]) * 1440
        else:
            raise ConfigError(f"time limit must be minutes (90, 90m), hours (4h) or [D-]HH:MM[:SS], got {value!r}")
    if minutes <= 0:
        raise ConfigError(f"time limit must be positive, got {value!r}")
    return max(1, math.ceil(minutes))


def parse_sbatch_items(items: Sequence[str]) -> dict[str, Any]:
    """``['exclude=node3', 'exclusive']`` → ``{'exclude': 'node3', 'exclusive': True}`` (``--sbatch`` options)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not key:
            raise ConfigError(f"--sbatch expects KEY=VALUE or KEY, got '{item}'")
        out[key] = value if sep else True
    return out


# ============================================================================ expansion
@dataclasses.dataclass(frozen=True)
class PlannedRun:
    spec: Any  # harness.train.run.RunSpec
    variant: str

    @property
    def run_dir(self) -> str:
        from ..train.run import run_dir
        return str(run_dir(self.spec))

    @property
    def label(self) -> str:
        return run_label(self.spec.protocol, self.spec.method, self.variant, self.spec.seed)

    def spec_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.spec)


def run_label(protocol: str, method: str, variant: str, seed: int) -> str:
    return f"{protocol}/{method}/{variant}/seed{seed}"


def spec_from_dict(doc: dict[str, Any]):
    from ..train.run import RunSpec
    known = {f.name for f in dataclasses.fields(RunSpec)}
    return RunSpec(**{k: v for k, v in doc.items() if k in known})


def split_seed_protocols(protocol: str, split_seeds: Sequence[int] | None, grid: str = "") -> list[str]:
    """The protocols a grid runs for ``protocol``: itself without ``split_seeds``, else its split-seed draws (the
    registered protocols with ``split_of == protocol``), in the order of ``split_seeds``; a missing one is a
    ConfigError naming the split seeds that exist."""
    if split_seeds is None:
        return [protocol]
    from ..plugins import get_plugin_manager

    registry = get_plugin_manager().protocols
    draws = {p.split_seed: p.id for p in registry if p.split_of == protocol}
    missing = [k for k in split_seeds if k not in draws]
    if missing:
        have = (f"its split seeds are {', '.join(map(str, sorted(draws)))}" if draws else
                "no protocol is a split-seed draw of it (harness list protocols; for VOC and Cityscapes, draw them "
                "with `harness data draw-splits`)")
        raise ConfigError(f"{f'grid {grid}: ' if grid else ''}key split_seeds: protocol {protocol} has no split seed "
                          f"{', '.join(map(str, missing))}; {have}")
    return [draws[k] for k in split_seeds]


def expand(grid: GridFile, *, out: str | None = None, extra_set: dict[str, Any] | None = None,
           data_root: str | None = None, splits_dir: str | None = None, device: str | None = None,
           workers: int | None = None, order: str | None = None) -> list[PlannedRun]:
    """All runs of the grid: protocol → split seed (with ``split_seeds``, :func:`split_seed_protocols`) → method →
    variant → seed; with ``order="seed"`` (default: the grid's ``order``) the same list stably sorted by seed, in
    the grid's order of seeds. A variant's ``protocols`` name the grid's protocols. Overrides merge as
    grid ``set`` ← ``method_set[method]`` ← variant ``set`` ← ``extra_set`` (the command line).
    Runs that land in the same run directory (identical settings) are listed once."""
    from ..train.run import RunSpec, run_dir

    order = order or grid.order
    if order not in ORDERS:
        raise ConfigError(f"order must be {' or '.join(map(repr, ORDERS))}, got {order!r}")
    out_abs = os.path.abspath(os.path.expanduser(out or grid.out))
    every = None if grid.checkpoint_every is None else str(grid.checkpoint_every)
    variants = grid.variants or [Variant(name="default")]
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    plan = [(protocol, drawn) for protocol in grid.protocols
            for drawn in split_seed_protocols(protocol, grid.split_seeds, grid.name or "")]
    for protocol, drawn in plan:
        for method in grid.methods:
            for v in variants:
                if v.methods is not None and method not in v.methods:
                    continue
                if v.protocols is not None and protocol not in v.protocols:
                    continue
                layers = ((grid.overrides, f"grid {grid.name} (set)"),
                          (grid.method_set.get(method, {}), f"grid {grid.name} (method_set.{method})"),
                          (v.overrides, f"grid {grid.name} (variant {v.name})"), (extra_set or {}, "--set"))
                overrides = {k: val for layer, _ in layers for k, val in layer.items()}
                origins = {k: where for layer, where in layers for k in layer}
                for seed in (v.seeds if v.seeds is not None else grid.seeds):
                    spec = RunSpec(method=method, protocol=drawn, seed=seed, overrides=overrides,
                                   origins=origins, out=out_abs,
                                   data_root=data_root or grid.data_root, splits_dir=splits_dir or grid.splits_dir,
                                   device=device or grid.device, workers=grid.workers if workers is None else workers,
                                   force=False, stop_after=None, progress=False,
                                   checkpoint_every=every)
                    key = str(run_dir(spec))
                    if key in seen:
                        continue
                    seen.add(key)
                    runs.append(PlannedRun(spec, v.name))
    if order == "seed":
        rank = {seed: i for i, seed in enumerate(grid.seeds)}  # the file's order, not the values': [2, 0] stays
        runs.sort(key=lambda r: rank[r.spec.seed])  # stable: protocol → method → variant within a seed
    return runs


def validate_runs(runs: Iterable[PlannedRun], world_size: int = 1) -> list[tuple[PlannedRun, str]]:
    """Resolve every run (method, protocol, keys, values) for ``world_size`` processes per run, without
    training; return the invalid ones."""
    from ..train.run import resolve
    bad = []
    for run in runs:
        try:
            resolve(run.spec, world_size=world_size)
        except HarnessError as exc:
            bad.append((run, str(exc)))
    return bad


def split_arrays(items: Sequence[Any], max_size: int) -> list[list[Any]]:
    """Chunks of at most ``max_size`` (array indices 0..n-1 must stay below ``MaxArraySize``)."""
    if max_size < 1:
        raise ValueError("max_size must be >= 1")
    items = list(items)
    return [items[i:i + max_size] for i in range(0, len(items), max_size)]
