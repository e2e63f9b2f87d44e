"""Freeze BatchNorm running statistics for forwards on masked inputs.

Specification: the s4mim spec §3.6 — a **harness engineering safeguard [harness]**, not
something stated by the S4MIM paper. The CMIM inputs are mostly zeros and the semantic-MIM inputs
partly zeroed; forwards on them run in train mode and normalise with their own batch statistics but
must not change the running mean/variance used at evaluation time.

Implementation: inside :func:`frozen_bn_stats` every BatchNorm module (``nn.modules.batchnorm._BatchNorm``:
BatchNorm1d/2d/3d, SyncBatchNorm, lazy variants) that tracks running statistics has
``track_running_stats`` temporarily set to False. In train mode PyTorch then normalises with the batch
statistics (synchronised across processes for SyncBatchNorm), passes no running buffers to the kernel
and skips the ``num_batches_tracked`` increment; eval-mode forwards still use the running buffers.
Nothing is copied into the buffers, so the autograd graph is unaffected (backward may run after the
context has exited). As a safeguard the buffers are snapshotted on entry and, should a custom
subclass have changed them anyway, restored on exit.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.nn.parameter import is_lazy
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["frozen_bn_stats", "bn_modules"]

_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def bn_modules(module: nn.Module) -> list[_BatchNorm]:
    """All BatchNorm modules of ``module`` (itself included)."""
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


@contextmanager
def frozen_bn_stats(module: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Context under which train-mode forwards of ``module`` leave all BN running statistics unchanged.

    ``enabled=False`` makes it a no-op (flag ``freeze_bn_stats_for_masked: false``). Nestable.
    """
    if not enabled:
        yield
        return
    frozen = [m for m in bn_modules(module) if m.track_running_stats]
    for m in frozen:
        if any(is_lazy(getattr(m, n)) for n in _BUFFERS if getattr(m, n, None) is not None):
            raise ValueError("frozen_bn_stats: initialise lazy BatchNorm modules (one forward) before freezing")
    snapshot = [
        {name: getattr(m, name).detach().clone() for name in _BUFFERS if getattr(m, name, None) is not None}
        for m in frozen
    ]
    for m in frozen:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m, saved in zip(frozen, snapshot):
            m.track_running_stats = True
            with torch.no_grad():
                for name, value in saved.items():
                    buf = getattr(m, name)
                    if not torch.equal(buf, value):
                        buf.copy_(value)
