"""Every registered method trains the auxiliary head (model.aux_head) through the protocol's supervised loss,
without knowing about it: the loss adds weight × the loss of the aux logits of the labeled rows it is given."""

import contextlib

import pytest
import torch

from harness.train.losses import build_supervised_loss
from harness.method import MethodContext
from harness.models import build_model
from harness.plugins import get_plugin_manager
from harness.protocols import SupervisedLoss
from harness.train.run import build_method_config
from tests.methods.helpers import SPEC, make_batch

K = 4
METHODS = sorted(info.name for info in get_plugin_manager().methods)


@pytest.mark.parametrize("name", METHODS)
def test_each_method_trains_the_aux_head(name):
    pm = get_plugin_manager()
    info = pm.methods.get(name)
    spec = SPEC.model_copy(update={"aux_head": True})
    torch.manual_seed(0)
    model = build_model(spec, K)
    ctx = MethodContext(device=torch.device("cpu"), num_classes=K, total_steps=100, iters_per_epoch=10, crop_size=32,
                        dataset="synthetic", supervised_loss=build_supervised_loss(SupervisedLoss(), 0.4),
                        model_factory=lambda: build_model(spec, K), autocast=contextlib.nullcontext)
    config = build_method_config(info, pm.protocols.get("synthetic-100"), {})
    method = info.cls(model, config, ctx)
    second = info.cls.crops_needed(config) == 2
    lab = make_batch(4, True, 1, K)
    unl = make_batch(4, False, 2, K, second=second) if info.cls.uses_unlabeled else None
    model.train()
    out = method.training_step(lab, unl, 0)
    out.loss.backward()
    grad = model.aux[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0
