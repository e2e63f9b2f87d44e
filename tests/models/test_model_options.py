"""ModelSpec options of the official recipes: decoder initialisation, multi-grid dilations, auxiliary head."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.train.engine import build_context
from harness.errors import HarnessError
from harness.train.losses import build_supervised_loss, cross_entropy
from harness.models import aux_logits_of, build_model
from harness.models.deeplab import DeepLabV3Plus
from harness.models.resnet import SmallBackbone, _init_conv_bn
from harness.plugins import get_plugin_manager
from harness.protocols import ModelSpec, SupervisedLoss

K = 5


def _decoder_convs(model):
    for part in (model.head, model.reduce, model.fuse, model.classifier):
        for m in part.modules():
            if isinstance(m, nn.Conv2d):
                yield m


@pytest.mark.parametrize("protocol", ["voc-92", "cityscapes-186"])
def test_resnet_protocols_leave_pytorch_default_init_in_the_decoder(protocol):
    spec = get_plugin_manager().protocols.get(protocol).model
    assert spec.decoder_init == "pytorch"
    torch.manual_seed(0)
    model = build_model(spec.model_copy(update={"pretrained": False}), K)
    for conv in _decoder_convs(model):
        fan_in = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
        bound = 1 / math.sqrt(fan_in)  # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        w = conv.weight.detach()
        assert w.abs().max() <= bound + 1e-7
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.15)


def test_kaiming_decoder_init_is_the_legacy_model_draw_for_draw():
    spec = get_plugin_manager().protocols.get("synthetic-100").model
    assert spec.decoder_init == "kaiming"  # the committed synthetic benchmark was trained so
    torch.manual_seed(0)
    model = build_model(spec, 8)
    # the model as the harness built it before decoder_init existed, from the same seed
    torch.manual_seed(0)
    backbone = SmallBackbone(width=spec.width, output_stride=16, blocks=1)
    legacy = DeepLabV3Plus(backbone, 8, spec.decoder_channels, 16, decoder_init="pytorch")
    for part in (legacy.head, legacy.reduce, legacy.fuse):
        for m in part.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    a, b = model.state_dict(), legacy.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _init_conv_bn  # (the backbone initialisation is shared, not duplicated here)


# --------------------------------------------------------------------------- multi-grid


def _conv2_dilations(layer):
    return [block.conv2.dilation[0] for block in layer]


@pytest.mark.parametrize("os_, layer3, layer4", [(16, 1, [2, 4, 8]), (8, 2, [4, 8, 16])])
def test_multi_grid_dilations_of_the_official_imas_resnet(os_, layer3, layer4):
    spec = ModelSpec(backbone="resnet50", output_stride=os_, pretrained=False, multi_grid=True)
    model = build_model(spec, K)
    bb = model.backbone
    assert _conv2_dilations(bb.layer4) == layer4
    assert [c.padding[0] for c in (b.conv2 for b in bb.layer4)] == layer4
    assert _conv2_dilations(bb.layer3)[1:] == [layer3] * 5  # layer3 unchanged by multi-grid
    plain = build_model(spec.model_copy(update={"multi_grid": False}), K)
    assert _conv2_dilations(plain.backbone.layer4) == ([1, 2, 2] if os_ == 16 else [2, 4, 4])
    # same parameters, so ImageNet weights load the same way
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 48, 48))
        c1, c4 = model.encode(torch.randn(1, 3, 48, 48))
    assert out.shape == (1, K, 48, 48) and c4.shape[-2:] == ((3, 3) if os_ == 16 else (6, 6))


def test_multi_grid_on_the_small_backbone():
    spec = ModelSpec(backbone="small", width=8, decoder_channels=16, pretrained=False, multi_grid=True, blocks=3)
    model = build_model(spec, K)
    assert [b.conv2.dilation[0] for b in model.backbone.layer4] == [2, 4, 8]
    with pytest.raises(ValueError, match="at most 3 blocks"):
        build_model(spec.model_copy(update={"blocks": 4}), K)


# --------------------------------------------------------------------------- auxiliary head


def _aux_model(**kw):
    torch.manual_seed(0)
    return build_model(ModelSpec(backbone="small", width=8, decoder_channels=16, pretrained=False, aux_head=True,
                                 **kw), K)


def test_aux_head_structure_and_rows():
    model = _aux_model()
    assert [type(m) for m in model.aux] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d]
    assert model.aux[0].in_channels == model.backbone.c3_channels and model.aux[0].kernel_size == (3, 3)
    assert model.aux[3].out_channels == K and model.aux[3].bias is not None
    assert {id(p) for p in model.aux.parameters()} <= {id(p) for p in model.head_parameters()}
    x = torch.randn(4, 3, 32, 32)
    model.train()
    out = model(x)
    aux = aux_logits_of(out)
    assert aux.shape == (4, K, 2, 2)  # layer3: stride 16
    torch.testing.assert_close(aux_logits_of(out[:2]), aux[:2])
    a, b = out.split([1, 3])
    torch.testing.assert_close(aux_logits_of(b), aux[1:])
    assert aux_logits_of(out.clone()) is None and aux_logits_of(out[:, :2]) is None
    clean, fp = model(x, need_fp=True)
    assert aux_logits_of(clean).shape == (4, K, 2, 2) and aux_logits_of(fp) is None
    model.eval()
    with torch.no_grad():
        assert aux_logits_of(model(x)) is None
    # without the head nothing changes: same draws, no aux logits
    torch.manual_seed(0)
    plain = build_model(ModelSpec(backbone="small", width=8, decoder_channels=16, pretrained=False), K).train()
    fresh = _aux_model().state_dict()
    for k, v in plain.state_dict().items():
        assert torch.equal(fresh[k], v), k
    assert aux_logits_of(plain(x)) is None


@pytest.mark.parametrize("loss_type", ["ce", "ohem"])
def test_supervised_loss_adds_the_weighted_aux_term(loss_type):
    model = _aux_model().train()
    x = torch.randn(4, 3, 32, 32)
    y = torch.randint(0, K, (2, 32, 32))
    y[0, :4] = 255
    spec = SupervisedLoss(type=loss_type, min_kept=100, group=1)
    base, with_aux = build_supervised_loss(spec), build_supervised_loss(spec, 0.4)
    out = model(x)
    z_l = out[:2]
    aux_up = F.interpolate(aux_logits_of(z_l), size=(32, 32), mode="bilinear", align_corners=True)
    expected = base(z_l, y) + 0.4 * base(aux_up, y)
    torch.testing.assert_close(with_aux(z_l, y), expected)
    with_aux(z_l, y).backward()
    assert model.aux[0].weight.grad is not None and model.aux[0].weight.grad.abs().sum() > 0
    with pytest.raises(HarnessError, match="aux_head"):
        with_aux(z_l.clone(), y)
    torch.testing.assert_close(with_aux(z_l.clone(), y, aux=aux_logits_of(z_l)), expected)


def test_engine_context_wires_the_aux_loss_from_the_protocol():
    p = get_plugin_manager().protocols.get("synthetic-100")
    plain = build_context(p, torch.device("cpu"), 10)
    assert plain.supervised_loss is cross_entropy
    aux = p.with_overrides({"model.aux_head": True, "model.aux_weight": 0.5})
    ctx = build_context(aux, torch.device("cpu"), 10)
    model = ctx.model_factory().train()
    out = model(torch.randn(2, 3, 32, 32))
    y = torch.randint(0, 8, (2, 32, 32))
    aux_up = F.interpolate(aux_logits_of(out), size=(32, 32), mode="bilinear", align_corners=True)
    torch.testing.assert_close(ctx.supervised_loss(out, y), cross_entropy(out, y) + 0.5 * cross_entropy(aux_up, y))
