"""Plugin hook specifications (pluggy project name ``harness``).

A plugin is a module listed under the entry-point group ``harness`` in its distribution's metadata.
It implements any of these hooks, marked with ``hookimpl`` (``from harness.hookspecs import hookimpl``).
A module-level function whose name starts with ``harness_`` but is not one of these hooks is reported
as a plugin error (``harness list methods`` shows it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .data.registry import DatasetRegistry
    from .models.encoders import EncoderRegistry

hookspec = pluggy.HookspecMarker("harness")
hookimpl = pluggy.HookimplMarker("harness")


@hookspec
def harness_register_datasets(registry: "DatasetRegistry") -> None:
    """Add datasets: ``registry.add(harness.data.registry.Dataset(name, layout, class_names, ...))``.

    Called once at start-up, for every plugin before any ``harness_register_methods`` or
    ``harness_register_protocols``, so a plugin's protocols may name a dataset another plugin registers.
    A name registered twice is reported as a failure of the second plugin.
    """


@hookspec
def harness_register_encoders(registry: "EncoderRegistry") -> None:
    """Add encoders: ``registry.add(harness.models.encoders.Encoder(name, build, ...))``.

    ``build(spec, num_classes)`` returns a :class:`harness.models.base.SegmentationModel`; protocols name the encoder
    in ``model.backbone``. Called once at start-up, like ``harness_register_datasets``; a name registered twice is
    reported as a failure of the second plugin.
    """


@hookspec
def harness_register_methods(registry) -> None:
    """Add method classes: ``registry.add(MethodClass)``."""


@hookspec
def harness_register_protocols(registry) -> None:
    """Add protocols: ``registry.add_file(path_to_yaml)`` or ``registry.add(protocol)``."""


@hookspec
def harness_run_event(event: str, payload: dict) -> None:
    """Observe a run: ``event`` is one of ``start``, ``train``, ``eval``, ``checkpoint``, ``finish``, ``fail``.

    ``start`` carries ``loggers`` (the ``--logger`` names asked for; a logger records only runs that name it)
    and ``config`` (the run's ``config.json``); ``train`` comes every ``--log-every`` steps with ``step``,
    ``lr``, ``it_per_s`` and ``logs`` (losses and method signals averaged over those steps).

    For logger integrations (wandb, mlflow, ...). Must not modify ``payload``.
    """
