"""Multi-process training set up from torchrun-style environment variables.

``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` are exported by ``torchrun`` and
by the SLURM launcher (submitit's ``TorchDistributedEnvironment``). With ``WORLD_SIZE`` > 1 the process
group is initialised here (NCCL on GPU, gloo on CPU). Gradients are averaged explicitly after backward
instead of through a DDP wrapper, because methods call the model many ways per step (several forwards,
``features``, ``encode``, eval-mode passes) which a DDP wrapper's reducer does not follow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def from_env() -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Initialise the process group if the environment asks for several processes; return the device to use."""
    info = from_env()
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=info.rank, world_size=info.world)
    return info, device


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def average_gradients(params: Iterable[torch.nn.Parameter], world: int) -> None:
    """All-reduce the gradients as one flat buffer per dtype and divide by the world size."""
    grads = [p.grad for p in params if p.grad is not None]
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in group:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g))
            offset += n


def average_buffers(module: torch.nn.Module, world: int) -> None:
    """Average floating-point buffers (BatchNorm running statistics) so every rank holds the same model."""
    bufs = [b for b in module.buffers() if b.is_floating_point()]
    if bufs:
        flat = torch.cat([b.reshape(-1) for b in bufs])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for b in bufs:
            b.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()


def any_true(flag: bool | torch.Tensor, device: torch.device) -> bool:
    """True on every rank if it is true on any rank (for stop requests and non-finite losses)."""
    t = torch.as_tensor(flag, dtype=torch.float32, device=device).reshape(1).clone()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_gather_stack(t: torch.Tensor, world: int) -> torch.Tensor:
    """Every rank's ``t`` (same shape and dtype on every rank), stacked: ``world × *t.shape``, on ``t``'s device.
    Booleans travel as uint8 (not every backend reduces or gathers bool)."""
    src = t.to(torch.uint8) if t.dtype == torch.bool else t
    src = src.contiguous()
    parts = [torch.empty_like(src) for _ in range(world)]
    dist.all_gather(parts, src)
    out = torch.stack(parts)
    return out.bool() if t.dtype == torch.bool else out


def any_true_each(flags: list[bool], device: torch.device) -> list[bool]:
    """:func:`any_true` of several flags in one collective."""
    t = torch.tensor([float(bool(f)) for f in flags], dtype=torch.float32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v > 0) for v in t.tolist()]


def gather(obj: Any, world: int) -> list[Any]:
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
