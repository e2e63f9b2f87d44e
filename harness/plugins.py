"""The plugin manager: loads every module of the ``harness`` entry-point group (built-ins included).

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin that fails to import; here a
broken plugin is recorded with its error and the others stay usable. Each plugin's hooks are called on
their own, so an exception names the plugin that raised it, and a misspelt hook name is reported rather
than silently ignored. Observers of runs (``harness_run_event``) can never end a run.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import sys
import traceback
from dataclasses import dataclass
from importlib import metadata

import pluggy

from . import hookspecs
from .data.registry import DatasetRegistry
from .errors import ConfigError
from .method import Method
from .models.encoders import EncoderRegistry
from .protocols import ProtocolRegistry, default_protocol_dirs

ENTRY_POINT_GROUP = "harness"

# The built-in datasets implement ``harness_register_datasets`` like any plugin, but the core registers their
# modules itself instead of reading them from the distribution's entry points: every built-in protocol names
# one of them, so an install whose metadata predates a dataset module (an editable install made before it was
# added, which keeps the old entry-point list until reinstalled) would otherwise lose datasets silently.
BUILTIN_DATASET_MODULES = ("harness.data.voc", "harness.data.cityscapes", "harness.data.ade20k", "harness.data.coco",
                           "harness.data.synthetic")
# The built-in encoders, for the same reason (every built-in protocol names one of them).
BUILTIN_ENCODER_MODULES = ("harness.models.builtin_encoders",)


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
    name: str = ""  # the entry point's name (by convention the method it provides)

    def describe(self) -> str:
        return f"plugin {self.entry_point} ({self.distribution}): {self.error}"


def _last_line(exc: BaseException) -> str:
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


class MethodRegistry:
    """Passed to ``harness_register_methods``; remembers which distribution provided each method."""

    def __init__(self) -> None:
        self._methods: dict[str, MethodInfo] = {}
        self._current_dist = ("unknown", "")
        self.failures: list[PluginFailure] = []  # set by the plugin manager: named in "unknown method" errors

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
            pass
        msg = f"unknown method '{name}'; available methods: {', '.join(self.names()) or '(none)'}"
        own = [f for f in self.failures if f.name == name]
        if own:
            msg += ". It is provided by a plugin that failed to load: " + "; ".join(f.describe() for f in own)
        elif self.failures:
            msg += (". Plugins that failed to load (one may provide it): "
                    + "; ".join(f.describe() for f in self.failures))
        raise ConfigError(msg)

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
        self._entry_points: dict[object, metadata.EntryPoint] = {}
        self._hook_names = [n for n in dir(hookspecs) if n.startswith("harness_")]
        self._ordered: list = []
        self._register_builtins()
        self._load_entry_points()
        self.methods = MethodRegistry()
        self.methods.failures = self.failures
        self.datasets = DatasetRegistry()
        self.datasets.failures = self.failures
        self.encoders = EncoderRegistry()
        self.encoders.failures = self.failures
        self.protocols = ProtocolRegistry()
        self.protocols.failures = self.failures
        self._collect()
        self._reported_observers: set[str] = set()

    def _load_entry_points(self) -> None:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.metadata["Name"] if ep.dist is not None else "unknown"
            version = ep.dist.version if ep.dist is not None else ""
            try:
                module = importlib.import_module(ep.value.split(":")[0])
                if self.pm.is_registered(module):
                    continue
                self.pm.register(module, name=ep.name)
                self._ordered.append(module)
            except Exception as exc:  # a broken plugin must not take the others down
                self.failures.append(PluginFailure(f"{ep.name} = {ep.value}", f"{dist} {version}".strip(),
                                                   _last_line(exc), ep.name))
                continue
            self._dists[module] = (dist, version)
            self._entry_points[module] = ep

    def _register_builtins(self) -> None:
        """See BUILTIN_DATASET_MODULES and BUILTIN_ENCODER_MODULES. An import error here is a bug of the harness
        itself: it propagates."""
        version = _own_version()
        for name in BUILTIN_DATASET_MODULES + BUILTIN_ENCODER_MODULES:
            module = importlib.import_module(name)
            self.pm.register(module, name=name)
            self._ordered.append(module)
            self._dists[module] = ("ssseg-harness", version)

    def _label(self, plugin) -> str:
        """``name = module`` for an entry point's plugin, else the module's name (a built-in dataset module)."""
        ep = self._entry_points.get(plugin)
        return f"{ep.name} = {ep.value}" if ep is not None else getattr(plugin, "__name__", repr(plugin))

    def _failure(self, plugin, error: str) -> PluginFailure:
        ep = self._entry_points.get(plugin)
        dist, version = self._dists.get(plugin, ("unknown", ""))
        return PluginFailure(self._label(plugin), f"{dist} {version}".strip(), error, ep.name if ep is not None else "")

    def _check_hook_names(self, plugin) -> None:
        """A function named like a hook that is not one (``harness_register_method``) would never be called."""
        known = set(self._hook_names)
        for attr in dir(plugin):
            if attr.startswith("harness_") and attr not in known and callable(getattr(plugin, attr)):
                close = difflib.get_close_matches(attr, known, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; hooks: {', '.join(sorted(known))}"
                self.failures.append(self._failure(plugin, f"unknown hook '{attr}'{hint}"))

    def _collect(self) -> None:
        # In registration order (pluggy's get_plugins() is a set): built-in datasets first, so a plugin that registers
        # a built-in name again is the one reported, and the registries' "registered by" is reproducible.
        plugins = list(self._ordered)
        # Datasets and encoders first, from every plugin: protocols (built-in or a plugin's) name datasets and
        # encoders of other plugins.
        for hook, registry in (("harness_register_datasets", self.datasets),
                               ("harness_register_encoders", self.encoders)):
            for plugin in plugins:
                impl = getattr(plugin, hook, None)
                if impl is None:
                    continue
                registry.current_plugin = self._label(plugin)
                try:
                    impl(registry=registry)
                except Exception as exc:  # one plugin's bug must not take every command down
                    self.failures.append(self._failure(plugin, f"{hook} raised {_last_line(exc)}"))
            registry.current_plugin = "unknown"
        for directory in default_protocol_dirs():
            if directory.is_dir():
                self.protocols.add_dir(directory)
        for plugin in plugins:
            self._check_hook_names(plugin)
            self.methods._current_dist = self._dists.get(plugin, ("unknown", ""))
            for hook, registry in (("harness_register_methods", self.methods),
                                   ("harness_register_protocols", self.protocols)):
                impl = getattr(plugin, hook, None)
                if impl is None:
                    continue
                try:
                    impl(registry=registry)
                except Exception as exc:  # one plugin's bug must not take every command down
                    self.failures.append(self._failure(plugin, f"{hook} raised {_last_line(exc)}"))
        self.methods._current_dist = ("unknown", "")

    def observers(self) -> list[str]:
        """Names of the plugins that observe runs (``harness_run_event``): the values ``--logger`` accepts."""
        return [impl.plugin_name for impl in self.pm.hook.harness_run_event.get_hookimpls()]

    def emit(self, event: str, payload: dict) -> None:
        """Tell every observer of runs; an observer that raises is reported once and never ends the run."""
        for impl in self.pm.hook.harness_run_event.get_hookimpls():
            try:
                impl.function(event=event, payload=payload)
            except Exception as exc:  # noqa: BLE001 — observers (loggers) are not allowed to fail a run
                if impl.plugin_name not in self._reported_observers:
                    self._reported_observers.add(impl.plugin_name)
                    print(f"warning: plugin '{impl.plugin_name}' failed in harness_run_event('{event}'): "
                          f"{_last_line(exc)}; the run goes on (further errors of this plugin are not shown)",
                          file=sys.stderr)


def _own_version() -> str:
    try:
        return metadata.version("ssseg-harness")
    except metadata.PackageNotFoundError:
        return ""


@functools.lru_cache(maxsize=1)
def get_plugin_manager() -> PluginManager:
    return PluginManager()
