"""EMA teacher shared by mean teacher, iMAS, combined and UniMatch V2 (imas spec §5, baselines spec §2).

The teacher is a deep copy of the student (parameters and buffers), receives no gradient and is always
used in eval mode. ``update`` averages parameters and floating-point buffers
(θ_T ← α·θ_T + (1 − α)·θ_S) and copies integer buffers (``num_batches_tracked``).

``EMATeacher`` is deliberately not an ``nn.Module``: it must never end up in a method's ``extra_modules``
(which the engine optimises). Save it through the method's ``state_dict``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["EMATeacher", "TeacherEvaluated", "imas_decay", "mean_teacher_decay"]


class EMATeacher:
    def __init__(self, student: nn.Module):
        self.module: nn.Module = copy.deepcopy(student)
        for p in self.module.parameters():
            p.requires_grad_(False)
            p.grad = None
        self.module.eval()

    # -- use ------------------------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Forward in eval mode without gradient (targets, easiness)."""
        self.module.eval()
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def eval_model(self) -> nn.Module:
        """The teacher network (in eval mode), e.g. for ``Method.eval_model``."""
        return self.module.eval()

    def to(self, *args: Any, **kwargs: Any) -> "EMATeacher":
        self.module.to(*args, **kwargs)
        return self

    # -- update ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, student: nn.Module, alpha: float) -> None:
        """θ_T ← α·θ_T + (1 − α)·θ_S for parameters and floating buffers; integer buffers copied.

        ``alpha = 0`` makes the teacher an exact copy of the student."""
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {alpha}")
        t_params = dict(self.module.named_parameters())
        s_params = dict(student.named_parameters())
        t_bufs = dict(self.module.named_buffers())
        s_bufs = dict(student.named_buffers())
        if t_params.keys() != s_params.keys() or t_bufs.keys() != s_bufs.keys():
            missing = (s_params.keys() ^ t_params.keys()) | (s_bufs.keys() ^ t_bufs.keys())
            raise ValueError(f"student and teacher differ in structure: {sorted(missing)[:5]}")

        avg_t: list[torch.Tensor] = []
        avg_s: list[torch.Tensor] = []
        for name, t in list(t_params.items()) + list(t_bufs.items()):
            s = (s_params.get(name) if name in t_params else s_bufs[name]).detach()
            if t.is_floating_point() or t.is_complex():
                if alpha == 0.0:
                    t.copy_(s)
                else:
                    avg_t.append(t)
                    avg_s.append(s.to(dtype=t.dtype, device=t.device))
            else:
                t.copy_(s)
        if avg_t:
            torch._foreach_mul_(avg_t, alpha)
            torch._foreach_add_(avg_t, avg_s, alpha=1.0 - alpha)

    # -- checkpoint -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state)
        self.module.eval()


def mean_teacher_decay(i: int, cap: float = 0.99) -> float:
    """Mean-teacher EMA decay after step ``i`` (0-based): min(1 − 1/(i + 1), cap)."""
    return min(1.0 - 1.0 / (i + 1), cap)


def imas_decay(
    i: int,
    iters_per_epoch: int,
    cap: float = 0.996,
    zero_first_epoch: bool = True,
    sup_only_epochs: int = 0,
) -> float:
    """iMAS EMA decay after step ``i`` (0-based global index) with ``iters_per_epoch`` = L (imas spec §5).

    s = ``sup_only_epochs``: α = 0 while epoch ≤ s (``zero_first_epoch``; while epoch < s otherwise), then
    min(1 − 1/(i − L·s + 1), cap). With s = 0: 0 during epoch 0, then min(1 − 1/(i + 1), cap).
    """
    if iters_per_epoch <= 0:
        raise ValueError("iters_per_epoch must be positive")
    s = int(sup_only_epochs)
    epoch = i // iters_per_epoch
    if (zero_first_epoch and epoch <= s) or epoch < s:
        return 0.0
    return min(1.0 - 1.0 / (i - iters_per_epoch * s + 1), cap)


class TeacherEvaluated:
    """Mixin (before ``Method`` in the bases) for a method whose EMA teacher ``self.teacher`` follows the student
    after every step (α from the method's ``ema_alpha(step)``) and is the evaluated network; the student is logged
    as ``student``, and the teacher is saved with the method's checkpoint."""

    evaluates = "teacher"

    def after_step(self, step: int) -> None:
        self.teacher.update(self.model, self.ema_alpha(step))

    def eval_model(self) -> nn.Module:
        return self.teacher.eval_model()

    def secondary_eval_models(self) -> dict[str, nn.Module]:
        return {"student": self.model}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.teacher.load_state_dict(state["teacher"])
