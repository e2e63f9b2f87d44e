"""The registry behind ``harness_register_datasets`` and ``harness_register_encoders``: named entries, each
remembering the plugin that registered it, and errors that name the protocol, its file and key, the registered
names and the plugins that failed to load (one of which may have provided a missing name)."""

from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class NamedRegistry(Generic[T]):
    """Entries of one kind by ``name``. Subclasses set ``kind`` (``"dataset"``), ``entry_type``, ``protocol_key``
    (the protocol key that names an entry) and may set ``sort_key``; the plugin manager sets ``current_plugin``
    around each plugin's hook call and ``failures`` after loading."""

    kind: str = "entry"
    entry_type: type = object
    protocol_key: str = ""
    sort_key: Callable[[Any], Any] | None = None  # entry → sort key before the name (default: the name alone)
    unnamed_where: str = ""  # what an error says of where the name came from when no protocol is given

    def __init__(self) -> None:
        self._entries: dict[str, T] = {}
        self._owner: dict[str, str] = {}
        self.current_plugin = "unknown"
        self.failures: list = []

    def add(self, entry: T) -> None:
        if not isinstance(entry, self.entry_type):
            raise ConfigError(f"registry.add expects a {self.entry_type.__module__}.{self.entry_type.__name__}, got "
                              f"{type(entry).__name__}")
        name = entry.name
        if name in self._entries:
            raise ConfigError(f"{self.kind} '{name}' is registered twice: by {self._owner[name]} and by "
                              f"{self.current_plugin}")
        self._entries[name] = entry
        self._owner[name] = self.current_plugin

    def get(self, name: str, protocol=None) -> T:
        """The entry; an unknown name is a ConfigError listing the registered ones (and naming the protocol)."""
        try:
            return self._entries[name]
        except KeyError:
            pass
        where = (f" (protocol '{protocol.id}', file {protocol.source or '?'}, key '{self.protocol_key}')"
                 if protocol is not None else self.unnamed_where)
        msg = f"unknown {self.kind} '{name}'{where}; registered {self.kind}s: {', '.join(self.names()) or '(none)'}"
        if self.failures:
            msg += (". Plugins that failed to load (one may provide it): "
                    + "; ".join(f.describe() for f in self.failures))
        raise ConfigError(msg)

    def owner(self, name: str) -> str:
        return self._owner.get(name, "")

    def names(self) -> list[str]:
        key = type(self).sort_key
        return sorted(self._entries, key=(lambda n: (key(self._entries[n]), n)) if key else None)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)
