"""Grids: the grid file, planning and submitting runs (local and SLURM executors through submitit), the task a
job runs, the manifest and the grid's status.

``python -m harness.launch --task JSON`` runs one planned run in this process (what the local executor and
torchrun start).
"""

from .submit import launch, show_status
# Jobs submitted by older versions (still queued, or requeued) hold pickles that name harness.launch.GridTask
# or harness.task.GridTask (harness/task.py).
from .task import GridTask

__all__ = ["launch", "show_status", "GridTask"]
