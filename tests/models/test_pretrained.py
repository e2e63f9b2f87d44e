"""Local-only ImageNet weights (harness/models/pretrained.py)."""

import pytest
import torch

from harness.errors import ConfigError
from harness.models import build_model
from harness.models.resnet import ResNetBackbone
from harness.protocols import ModelSpec


def test_pretrained_disabled(no_weights):
    m = build_model(ModelSpec(backbone="small", pretrained=False), 3)
    assert m.pretrained_source == "random (pretrained disabled)"


def test_nothing_found_is_an_error_that_says_where_and_how_to_opt_out(no_weights, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("HARNESS_PRETRAINED_DIR", str(empty))
    with pytest.raises(ConfigError) as err:
        build_model(ModelSpec(backbone="small"), 3)
    msg = str(err.value)
    assert str(empty / "small_w32.pth") in msg and "--set model.pretrained=false" in msg


def _fake_state(deep_stem: bool, seed: int) -> dict:
    torch.manual_seed(seed)
    return ResNetBackbone("resnet50", deep_stem=deep_stem).state_dict()


def test_deep_stem_file_loads_and_standard_file_is_skipped(no_weights, tmp_path, monkeypatch):
    d = tmp_path / "weights"
    d.mkdir()
    monkeypatch.setenv("HARNESS_PRETRAINED_DIR", str(d))
    # A standard-stem file under the plain name does not serve a deep-stem backbone.
    torch.save(_fake_state(False, 1), d / "resnet50.pth")
    with pytest.raises(ConfigError, match=r"skipped .*resnet50\.pth \(stem layout 'standard', need 'deep'\)"):
        build_model(ModelSpec(backbone="resnet50"), 3)
    # The deep-stem file, wrapped and prefixed as DDP checkpoints are, with an fc layer, loads exactly.
    sd = _fake_state(True, 2)
    wrapped = {"state_dict": {"module." + k: v for k, v in sd.items()}}
    wrapped["state_dict"]["module.fc.weight"] = torch.zeros(1000, 2048)
    torch.save(wrapped, d / "resnet50_deepstem.pth")
    m = build_model(ModelSpec(backbone="resnet50"), 3)
    assert m.pretrained_source.startswith(f"imagenet: {d / 'resnet50_deepstem.pth'} (sha256 ")
    for k, v in m.backbone.state_dict().items():
        torch.testing.assert_close(v, sd[k])


def test_torchvision_cache_only_for_standard_stem(no_weights, monkeypatch):
    monkeypatch.delenv("HARNESS_PRETRAINED_DIR", raising=False)
    sd = _fake_state(False, 3)
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    path = no_weights / "checkpoints" / "resnet50-0676ba61.pth"
    torch.save(sd, path)
    m = build_model(ModelSpec(backbone="resnet50", deep_stem=False), 3)
    assert m.pretrained_source.startswith(f"imagenet: {path}")
    torch.testing.assert_close(m.backbone.conv1.weight, sd["conv1.weight"])
    with pytest.raises(ConfigError, match="resnet50_deepstem.pth or resnet50.pth"):
        build_model(ModelSpec(backbone="resnet50", deep_stem=True), 3)


def test_incompatible_file_is_an_error(no_weights, tmp_path, monkeypatch):
    d = tmp_path / "w"
    d.mkdir()
    monkeypatch.setenv("HARNESS_PRETRAINED_DIR", str(d))
    sd = _fake_state(True, 4)
    del sd["layer4.2.conv3.weight"]
    torch.save(sd, d / "resnet50_deepstem.pth")
    with pytest.raises(ConfigError, match="layer4.2.conv3.weight"):
        build_model(ModelSpec(backbone="resnet50"), 3)
