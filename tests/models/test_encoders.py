"""Encoders as plugins: the registry, the built-ins registered through the hook, a third-party encoder."""

from __future__ import annotations

import pytest
import torch

from harness import plugins, records
from harness.cli import main
from harness.errors import ConfigError
from harness.models import build_model
from harness.models.encoders import Encoder, get_encoder
from harness.protocols import ModelSpec

BUILTIN = ["dinov2_base", "dinov2_large", "dinov2_small", "resnet101", "resnet50", "small", "vit_tiny"]


@pytest.fixture
def with_toy(monkeypatch):
    """A plugin manager that loads tests.models.toy_encoder and tests.models.toy_encoder_duplicate as plugins."""
    monkeypatch.setattr(plugins, "BUILTIN_ENCODER_MODULES", plugins.BUILTIN_ENCODER_MODULES
                        + ("tests.models.toy_encoder", "tests.models.toy_encoder_duplicate"))
    plugins.get_plugin_manager.cache_clear()
    yield plugins.get_plugin_manager()
    plugins.get_plugin_manager.cache_clear()


def test_builtins_are_registered_through_the_hook():
    pm = plugins.get_plugin_manager()
    assert pm.encoders.names() == BUILTIN
    assert {pm.encoders.owner(n) for n in BUILTIN} == {"harness.models.builtin_encoders"}
    assert get_encoder("dinov2_base").display == "DINOv2-B" and get_encoder("resnet101").family == "deeplabv3+"


def test_unknown_encoder_lists_the_registered_ones(tiny_benchmark, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"unknown encoder 'resnet5' \(model.backbone\); registered encoders: "
                                          + ", ".join(BUILTIN)):
        build_model(ModelSpec(backbone="resnet5", pretrained=False), 3)
    argv = ["run", "--method", "supervised", "--protocol", "tiny-8", "--out", str(tmp_path / "r"), "--data-root",
            str(tiny_benchmark["data_root"]), "--no-progress", "--set", "model.backbone=dinov2_smal"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown encoder 'dinov2_smal' (protocol 'tiny-8'" in err and "key 'model.backbone'" in err, err
    assert "dinov2_small" in err and "Traceback" not in err


def test_encoder_spec_is_validated():
    with pytest.raises(ConfigError, match="lowercase"):
        Encoder("My Net", lambda spec, k: None)
    with pytest.raises(ConfigError, match="build must be a function"):
        Encoder("mynet", "not callable")
    with pytest.raises(pydantic_error()):
        ModelSpec(backbone="Res Net")


def pydantic_error():
    import pydantic

    return pydantic.ValidationError


def test_third_party_encoder_is_listed_built_and_trained(with_toy, tiny_benchmark, tmp_path, capsys):
    assert "toy_convnet" in with_toy.encoders and with_toy.encoders.owner("toy_convnet") == "tests.models.toy_encoder"
    dup = [f for f in with_toy.failures if "toy_encoder_duplicate" in f.entry_point]
    assert len(dup) == 1 and "encoder 'resnet50' is registered twice" in dup[0].error
    assert get_encoder("resnet50").description.startswith("DeepLabV3+")  # the first registration stays

    assert main(["list", "encoders"]) == 0
    out = capsys.readouterr()
    lines = {line.split()[0]: line for line in out.out.splitlines()[2:]}
    assert list(lines) == sorted(BUILTIN + ["toy_convnet"])
    assert "tests.models.toy_encoder" in lines["toy_convnet"] and "plain" in lines["toy_convnet"]
    assert "registered twice" in out.err

    model = build_model(ModelSpec(backbone="toy_convnet", width=4, pretrained=False, freeze_backbone=True), 3)
    assert model.backbone_parameters() == [] and len(model.head_parameters()) == 2
    torch.manual_seed(0)
    x = torch.randn(4, 3, 24, 24)
    a, b = model(x, need_fp=True)
    assert a.shape == b.shape == (4, 3, 24, 24) and model(x, comp_drop=True).shape == (4, 3, 24, 24)

    for method in ("supervised", "unimatch"):  # UniMatch uses need_fp
        argv = ["run", "--method", method, "--protocol", "tiny-8", "--out", str(tmp_path / "r"), "--data-root",
                str(tiny_benchmark["data_root"]), "--no-progress", "--set", "model.backbone=toy_convnet",
                "--set", "budget.iterations=2", "--set", "budget.eval_every=2"]
        assert main(argv) == 0, capsys.readouterr().err
        (run,) = (tmp_path / "r" / "tiny-8" / method).glob("*/seed0")
        rec = records.read_json(run / "record.json")
        assert rec["status"] == "finished" and rec["pretrained_source"] == "random (toy_convnet has no weights)"


def test_the_documented_encoder_plugin_works(monkeypatch):
    """The code block of docs/extending.md (Encoders), run as a plugin module."""
    import re
    import sys
    import types
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "extending.md").read_text()
    section = doc[doc.index("## Encoders"):doc.index("## Building blocks")]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    module = types.ModuleType("doc_encoder_plugin")
    exec(compile(code, "docs/extending.md", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "doc_encoder_plugin", module)
    monkeypatch.setattr(plugins, "BUILTIN_ENCODER_MODULES", plugins.BUILTIN_ENCODER_MODULES + ("doc_encoder_plugin",))
    plugins.get_plugin_manager.cache_clear()
    try:
        pm = plugins.get_plugin_manager()
        assert not pm.failures and pm.encoders.owner("toy_convnet") == "doc_encoder_plugin"
        model = build_model(ModelSpec(backbone="toy_convnet", width=4, pretrained=False), 3)
        x = torch.randn(2, 3, 20, 20)
        assert model(x).shape == (2, 3, 20, 20) and model.features(x)[1].shape == (2, 4, 5, 5)
        assert [t.shape for t in model(x, need_fp=True)] == [(2, 3, 20, 20)] * 2
    finally:
        plugins.get_plugin_manager.cache_clear()
