"""The method contract: what a method plugin implements.

The engine owns data, optimizer, LR schedule, AMP, checkpoints and evaluation. A method only turns a
labeled and an unlabeled batch into a loss (``training_step``) and may keep extra state such as an
EMA teacher (``after_step``, ``eval_model``, ``state_dict``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import pydantic
import torch
from torch import nn


class MethodConfig(pydantic.BaseModel):
    """Base class of every method's ``Config``: unknown keys are an error, values are validated."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True)


@dataclass
class Batch:
    """A batch of weakly augmented crops, already on the training device.

    ``raw``   uint8 B×3×H×W RGB (padding is 0 = black), for photometric strong views;
    ``image`` float B×3×H×W, ImageNet-normalised ``raw``;
    ``valid`` bool B×H×W, False on padding added by the crop;
    ``label`` long B×H×W with 255 = ignore (labeled batches only, None for unlabeled ones);
    ``second`` an independently augmented second crop of the same images (unlabeled batches of
    methods with ``unlabeled_crops = 2``), else None.
    """

    raw: torch.Tensor
    image: torch.Tensor
    valid: torch.Tensor
    label: torch.Tensor | None = None
    second: "Batch | None" = None
    index: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.raw.shape[0]


@dataclass
class StepOutput:
    """The loss to minimise and scalar logs (plain floats or 0-d tensors) for the progress bar/record."""

    loss: torch.Tensor
    logs: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodContext:
    """Facts of the run a method may use. Never change the protocol through it."""

    device: torch.device
    num_classes: int
    total_steps: int
    iters_per_epoch: int
    crop_size: int
    dataset: str
    supervised_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    model_factory: Callable[[], nn.Module]
    autocast: Callable[[], Any]
    ignore_index: int = 255
    rank: int = 0  # this process among the run's processes (each holds a contiguous share of every batch)
    world_size: int = 1


class Method:
    """Base class of method plugins. Subclasses set ``name``, ``description``, ``Config``.

    ``model`` is the trained network (a ``harness.models`` segmentation model). Extra trainable
    modules (e.g. a reconstruction head) go in ``self.extra_modules``; the engine optimises them with
    the head learning rate, checkpoints them and moves them to the device.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    uses_unlabeled: ClassVar[bool] = True
    unlabeled_crops: ClassVar[int] = 1
    # How tables and plots show the method: its row label (default: ``name``), its place among the rows
    # (smaller first; ties by name) and a note printed under any table that has its row.
    display_name: ClassVar[str | None] = None
    table_order: ClassVar[int] = 1000
    table_note: ClassVar[str | None] = None
    # Which network ``eval_model()`` returns with the default settings, "student" or "teacher" (an EMA copy): the
    # tables' caption names the teacher-evaluated rows. Each run records the network it actually evaluated; this
    # is read only for records made before that field existed.
    evaluates: ClassVar[str] = "student"

    def __init__(self, model: nn.Module, config: MethodConfig, context: MethodContext):
        self.model = model
        self.config = config
        self.context = context
        self.extra_modules = nn.ModuleDict()

    @classmethod
    def crops_needed(cls, config: MethodConfig) -> int:
        """Independent weak crops per unlabeled image the loader must provide (1 or 2)."""
        return cls.unlabeled_crops

    @classmethod
    def check_run(cls, protocol: Any, config: MethodConfig, world_size: int) -> None:
        """Raise ``harness.errors.ConfigError`` if the method cannot train ``protocol`` with ``config`` on
        ``world_size`` processes (each gets ``batch / world_size`` images of every batch). Called when the run is
        resolved (``harness run``, ``harness grid`` validation), before any training. Default: no check."""

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> StepOutput:
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        """Called after every optimizer step (``step`` = 0-based index of the step just taken)."""

    def eval_model(self) -> nn.Module:
        """The network that is evaluated and reported."""
        return self.model

    def secondary_eval_models(self) -> dict[str, nn.Module]:
        """Other networks logged at evaluation time (e.g. the student of an EMA method)."""
        return {}

    def eval_logs(self) -> dict[str, float]:
        """Method signals recorded with every evaluation (e.g. iMAS mean easiness); reset after reading."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"extra_modules": self.extra_modules.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.extra_modules.load_state_dict(state["extra_modules"])
