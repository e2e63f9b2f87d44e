"""What a run spent: images seen, network image-passes with and without gradient, peak memory.

Image-passes are counted by a forward pre-hook on the trained network, registered before the method is built, so
that networks the method derives from it by copying (an EMA teacher) count too. A pass under
``torch.no_grad`` (pseudo-labels, a teacher's targets) is forward-only; a pass with gradient is forward and
backward. Evaluation passes are not counted (the protocol fixes them for every method). The counts are per
process; the record multiplies them by the number of processes.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["ComputeCounter", "peak_memory"]


@dataclass
class ComputeCounter:
    with_grad: int = 0          # images through the network with gradient (forward + backward)
    forward_only: int = 0       # images through it without gradient
    labeled: int = 0            # labeled images drawn by the loader
    unlabeled: int = 0          # unlabeled images drawn (a second crop of an image counts once)
    peak_memory_gib: float = 0.0
    counting: bool = field(default=True, repr=False)

    def attach(self, model: nn.Module) -> None:
        def count(_module, args):
            if self.counting and args and isinstance(args[0], torch.Tensor):
                if torch.is_grad_enabled():
                    self.with_grad += args[0].shape[0]
                else:
                    self.forward_only += args[0].shape[0]
        model.register_forward_pre_hook(count)

    def state_dict(self) -> dict:
        return {"with_grad": self.with_grad, "forward_only": self.forward_only, "labeled": self.labeled,
                "unlabeled": self.unlabeled, "peak_memory_gib": self.peak_memory_gib}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def peak_memory(device: torch.device) -> tuple[float, str]:
    """(GiB, what it measures): the CUDA allocator's peak on a GPU, else the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30, "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return rss / (2 ** 30 if sys.platform == "darwin" else 2 ** 20), "process_peak_rss"
