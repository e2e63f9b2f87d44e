"""The plugin manager: loads every module of the ``harness`` entry-point group (built-ins included).

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin that fails to import; here a
broken plugin is recorded with its error and the others stay usable.
"""

from __future__ import annotations

import functools
import importlib
import traceback
from dataclasses import dataclass
from importlib import metadata

import pluggy

from . import hookspecs
from .errors import ConfigError
from .method import Method
from .protocols import ProtocolRegistry, default_protocol_dirs

ENTRY_POINT_GROUP = "harness"


@dataclass(frozen=True)
class MethodInfo:
    name: str
    cls: type[Method]
    distribution: str
    version: str
    description: str


@dataclass(frozen=True)
class PluginFailure:
    entry_point: str
    distribution: str
    error: str


class MethodRegistry:
    """Passed to ``harness_register_methods``; remembers which distribution provided each method."""

    def __init__(self) -> None:
        self._methods: dict[str, MethodInfo] = {}
        self._current_dist = ("unknown", "")

    def add(self, cls: type[Method]) -> None:
        for attr in ("name", "description", "Config"):
            if not hasattr(cls, attr):
                raise ConfigError(f"method class {cls.__module__}.{cls.__qualname__} has no '{attr}' attribute")
        if cls.name in self._methods:
            other = self._methods[cls.name]
            raise ConfigError(
                f"method '{cls.name}' is registered twice: by {other.distribution} ({other.cls.__module__}) "
                f"and by {self._current_dist[0]} ({cls.__module__})")
        dist, version = self._current_dist
        self._methods[cls.name] = MethodInfo(cls.name, cls, dist, version, cls.description)

    def get(self, name: str) -> MethodInfo:
        try:
            return self._methods[name]
        except KeyError:
            raise ConfigError(f"unknown method '{name}'; available methods: {', '.join(self.names()) or '(none)'}") from None

    def names(self) -> list[str]:
        return sorted(self._methods)

    def __iter__(self):
        return iter(self._methods[k] for k in self.names())


class PluginManager:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("harness")
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self._dists: dict[object, tuple[str, str]] = {}
        self._load_entry_points()
        self.methods = MethodRegistry()
        self.protocols = ProtocolRegistry()
        self._collect()

    def _load_entry_points(self) -> None:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.metadata["Name"] if ep.dist is not None else "unknown"
            version = ep.dist.version if ep.dist is not None else ""
            try:
                module = importlib.import_module(ep.value.split(":")[0])
                if self.pm.is_registered(module):
                    continue
                self.pm.register(module, name=ep.name)
            except Exception as exc:  # a broken plugin must not take the others down
                last = traceback.format_exception_only(type(exc), exc)[-1].strip()
                self.failures.append(PluginFailure(f"{ep.name} = {ep.value}", f"{dist} {version}".strip(), last))
                continue
            self._dists[module] = (dist, version)

    def _collect(self) -> None:
        for directory in default_protocol_dirs():
            if directory.is_dir():
                self.protocols.add_dir(directory)
        for plugin in self.pm.get_plugins():
            self.methods._current_dist = self._dists.get(plugin, ("unknown", ""))
            impl = getattr(plugin, "harness_register_methods", None)
            if impl is not None:
                impl(registry=self.methods)
            impl = getattr(plugin, "harness_register_protocols", None)
            if impl is not None:
                impl(registry=self.protocols)
        self.methods._current_dist = ("unknown", "")

    def emit(self, event: str, payload: dict) -> None:
        self.pm.hook.harness_run_event(event=event, payload=payload)


@functools.lru_cache(maxsize=1)
def get_plugin_manager() -> PluginManager:
    return PluginManager()
