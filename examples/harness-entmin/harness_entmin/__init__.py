"""Entropy minimisation (Grandvalet and Bengio, 2004) as a harness method, and a short synthetic protocol.

The method: the protocol's supervised loss on labeled crops plus ``weight`` × the mean per-pixel prediction
entropy on the non-padded pixels of unlabeled crops. Everything else (data, optimiser, schedule, evaluation,
checkpoints) is the harness's.
"""

from importlib import resources

import pydantic
import torch

from harness.hookspecs import hookimpl
from harness.method import Method, MethodConfig, StepOutput


class EntMin(Method):
    name = "entmin"
    description = "Entropy minimisation on unlabeled images (example third-party plugin)"

    class Config(MethodConfig):
        weight: float = pydantic.Field(default=0.1, ge=0, description="weight of the entropy term")

    def training_step(self, labeled, unlabeled, step):
        # one forward for both streams: BatchNorm statistics over labeled and unlabeled crops together
        logits = self.model(torch.cat([labeled.image, unlabeled.image]))
        loss_x = self.context.supervised_loss(logits[: len(labeled)], labeled.label)
        p = logits[len(labeled):].float().softmax(1)   # fp32 probabilities, also under --precision bf16
        ent = -(p * p.clamp_min(1e-8).log()).sum(1)[unlabeled.valid].mean()
        return StepOutput(loss_x + self.config.weight * ent, {"loss_x": loss_x.detach(), "entropy": ent.detach()})


@hookimpl
def harness_register_methods(registry):
    registry.add(EntMin)


@hookimpl
def harness_register_protocols(registry):
    # protocol files ship as package data; read them through importlib.resources so that a wheel works
    with resources.as_file(resources.files(__name__) / "protocols" / "synthetic-short.yaml") as path:
        registry.add_file(path)
