"""Supervised baseline: the labeled stream only, same model, budget and evaluation as every other row."""

from __future__ import annotations

from typing import Literal

import pydantic

from harness.hookspecs import hookimpl
from harness.method import Method, MethodConfig, StepOutput
from harness.protocols import Protocol


class Supervised(Method):
    """L = L_x (the protocol's supervised loss). No unlabeled data, no teacher.

    Budget (baselines spec §1): by default the same iterations T and labeled batch as the
    semi-supervised methods of the protocol, so every table row has the same optimizer steps.
    ``budget=labeled_epochs`` instead runs epochs × ⌊N_l/B_l⌋ steps, to mimic published baselines;
    the run record carries the setting.
    """

    name = "supervised"
    display_name = "Supervised"
    table_order = 0
    description = "Supervised baseline: labeled images only (same iterations as the semi-supervised rows)"
    uses_unlabeled = False

    class Config(MethodConfig):
        budget: Literal["matched", "labeled_epochs"] = pydantic.Field(
            default="matched", description="matched: the protocol's T; labeled_epochs: epochs x floor(N_l/B_l)")

    @classmethod
    def total_steps(cls, protocol: Protocol, config: Config) -> int:
        if config.budget == "labeled_epochs" and protocol.budget.epochs is not None:
            return protocol.budget.epochs * max(1, protocol.labeled_count // protocol.budget.batch_labeled)
        return protocol.total_iterations

    def training_step(self, labeled, unlabeled, step):
        loss = self.context.supervised_loss(self.model(labeled.image), labeled.label)
        return StepOutput(loss, {"loss_x": loss.detach()})


@hookimpl
def harness_register_methods(registry):
    registry.add(Supervised)
