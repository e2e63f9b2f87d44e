"""Moved to :mod:`harness.launch.task`; kept because submitit has pickled queued SLURM jobs as
``harness.task.GridTask``."""

from .launch.task import GridTask  # noqa: F401

__all__ = ["GridTask"]
