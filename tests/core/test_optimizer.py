"""budget.optimizer: SGD (the ResNet recipes) or AdamW (UniMatch V2), two groups, and resumes of older runs."""

import copy

import pytest
import torch

from harness.train.engine import build_optimizer, optimizer_for
from harness.errors import ConfigError
from harness.method import Method
from harness.models import build_model
from harness.protocols import Budget, ProtocolRegistry
from harness.resources import protocols_dir
from harness.train.resume import comparable
from tests.methods.helpers import SPEC, make_context

K = 3


def _model_and_method():
    torch.manual_seed(0)
    model = build_model(SPEC, K)
    return model, Method(model, None, make_context(K))


def _budget(**kw):
    return Budget(iterations=10, batch_labeled=2, batch_unlabeled=2, lr=5e-6, head_lr_mult=40.0, weight_decay=0.01,
                  **kw)


def test_sgd_is_the_default_and_keeps_its_groups():
    model, method = _model_and_method()
    opt = optimizer_for(model, method, _budget())
    assert type(opt) is torch.optim.SGD
    backbone, head = opt.param_groups
    assert (backbone["name"], head["name"]) == ("backbone", "head")
    assert backbone["momentum"] == 0.9 and head["lr"] == pytest.approx(5e-6 * 40)


def test_adamw_groups_lr_betas_and_decay():
    """UniMatch V2: AdamW(betas 0.9/0.999, weight decay 0.01), backbone at lr, everything else at 40 × lr."""
    model, method = _model_and_method()
    opt = optimizer_for(model, method, _budget(optimizer="adamw"))
    assert type(opt) is torch.optim.AdamW
    backbone, head = opt.param_groups
    assert backbone["lr"] == backbone["base_lr"] == 5e-6
    assert head["lr"] == head["base_lr"] == pytest.approx(2e-4)
    for g in (backbone, head):
        assert g["betas"] == (0.9, 0.999) and g["weight_decay"] == 0.01
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(backbone["params"]) == ids(model.backbone_parameters())
    assert ids(head["params"]) == ids(model.head_parameters())
    assert ids(backbone["params"]) | ids(head["params"]) == ids(model.parameters())


def test_adamw_first_step_is_the_decoupled_formula():
    """First AdamW step from zero moments: θ ← θ·(1 − lr·λ) − lr·g/(|g| + ε) (bias corrections cancel)."""
    model, method = _model_and_method()
    opt = build_optimizer(model, method, 1e-3, 40.0, 0.9, 0.01, kind="adamw")
    x = torch.randn(2, 3, 32, 32)
    model(x).square().mean().backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    opt.step()
    for n, p in model.named_parameters():
        lr = lr_of[id(p)]
        expected = before[n] * (1 - lr * 0.01) - lr * grads[n] / (grads[n].abs() + 1e-8)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-7, msg=n)


def test_unknown_optimizer_is_refused_with_its_name():
    model, method = _model_and_method()
    with pytest.raises(ValueError, match="'adam'.*'sgd' or 'adamw'"):
        build_optimizer(model, method, 1e-3, 10.0, 0.9, 0.0, kind="adam")
    registry = ProtocolRegistry()
    registry.add_dir(protocols_dir())
    with pytest.raises(ConfigError, match="budget.optimizer"):
        registry.get("voc-92").with_overrides({"budget.optimizer": "adam"})
    with pytest.raises(ConfigError, match="betas"):
        registry.get("voc-92").with_overrides({"budget.betas": [0.9, 1.5]})


def test_a_run_started_before_the_optimizer_setting_resumes():
    """config.json of a run started by a harness without budget.optimizer / betas compares equal to a start of the
    same settings now: the missing keys take the defaults the older code used."""
    registry = ProtocolRegistry()
    registry.add_dir(protocols_dir())
    p = registry.get("voc-92")
    now = {"method": {"name": "supervised", "config": {}}, "protocol": p.model_dump(mode="json"), "seed": 0,
           "total_steps": 10}
    old = copy.deepcopy(now)
    for key in ("optimizer", "betas"):
        del old["protocol"]["budget"][key]
    assert comparable(old) == comparable(now)
    other = copy.deepcopy(now)
    other["protocol"]["budget"]["optimizer"] = "adamw"
    assert comparable(other) != comparable(now)
