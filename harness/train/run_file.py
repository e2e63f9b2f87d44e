"""A run described in a YAML file: ``harness run --config RUN.yaml``.

::

    method: unimatch
    protocol: synthetic-pt-100
    seed: 0
    settings:            # the keys --set takes, nested or dotted
      tau: 0.9
      budget: {iterations: 6000}

Every key is optional; the command line wins over the file (``--method``/``--protocol``/``--seed``, and each
``--set`` over the same setting in the file). Settings from the file are the same settings as ``--set``: they
change the run's settings hash and folder exactly as the equivalent ``--set`` would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

__all__ = ["RunFile", "read_run_file", "flatten_settings"]

TOP_LEVEL_KEYS = ("method", "protocol", "seed", "settings")


@dataclass(frozen=True)
class RunFile:
    path: Path
    method: str | None = None
    protocol: str | None = None
    seed: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # dotted keys, as --set


def flatten_settings(doc: dict[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    """``{'budget': {'iterations': 6000}, 'cmim.enabled': False}`` → ``{'budget.iterations': 6000,
    'cmim.enabled': False}``; a key given twice (nested and dotted) is an error naming ``where``."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{where}: setting names must be non-empty strings, got {key!r}")
        dotted = f"{prefix}{key}"
        items = flatten_settings(value, where, dotted + ".") if isinstance(value, dict) and value else {dotted: value}
        for k, v in items.items():
            if k in out:
                raise ConfigError(f"{where}: setting '{k}' is given twice")
            out[k] = v
    return out


def read_run_file(path: str | Path) -> RunFile:
    """The run described by ``path``; ConfigError naming the file and the key for anything unreadable."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"--config {p}: cannot read it ({exc.strerror or exc})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"--config {p}: not valid YAML{at}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"--config {p}: expected a mapping with keys {', '.join(TOP_LEVEL_KEYS)}, "
                          f"got {type(doc).__name__}")
    unknown = [k for k in doc if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise ConfigError(f"--config {p}: unknown key(s) {', '.join(map(repr, unknown))}; a run file has "
                          f"{', '.join(TOP_LEVEL_KEYS)} (settings under 'settings:', as --set takes them)")
    for key in ("method", "protocol"):
        if key in doc and not (isinstance(doc[key], str) and doc[key]):
            raise ConfigError(f"--config {p}: '{key}' must be a name, got {doc[key]!r}")
    seed = doc.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"--config {p}: 'seed' must be a whole number, got {seed!r}")
    settings = doc.get("settings") or {}
    if not isinstance(settings, dict):
        raise ConfigError(f"--config {p}: 'settings' must be a mapping of setting names to values, "
                          f"got {type(settings).__name__}")
    return RunFile(p, doc.get("method"), doc.get("protocol"), seed, flatten_settings(settings, f"--config {p}"))
