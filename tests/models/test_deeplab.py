"""DeepLabV3+ structure and API (s4mim spec §2.1)."""

import pytest
import torch

from harness.models import build_model, reduce_channels
from harness.protocols import ModelSpec

K = 5


def small(os_=16, d=64, **kw):
    torch.manual_seed(0)
    return build_model(ModelSpec(backbone="small", output_stride=os_, width=8, decoder_channels=d, pretrained=False,
                                 **kw), K)


@pytest.mark.parametrize("os_", [16, 8])
def test_small_shapes_and_strides(os_):
    m = small(os_).eval()
    x = torch.randn(2, 3, 65, 63)
    c1, c4 = m.encode(x)
    assert c1.shape[-2:] == (17, 16)  # stride 4
    assert c4.shape[-2:] == ((5, 4) if os_ == 16 else (9, 8))
    assert c4.shape[1] == m.backbone.c4_channels
    with torch.no_grad():
        logits = m(x)
        logits2, fuse = m.features(x)
    assert logits.shape == (2, K, 65, 63)
    assert fuse.shape == (2, m.feature_channels, 17, 16) and m.feature_channels == 64
    torch.testing.assert_close(logits, logits2)
    assert m.head.b1[0].dilation == ((6, 6) if os_ == 16 else (12, 12))
    assert m.head.b3[0].dilation == ((18, 18) if os_ == 16 else (36, 36))


def test_reduce_channels_scaled():
    assert reduce_channels(256) == 48 and reduce_channels(64) == 12
    m = small(d=64)
    assert m.reduce[0].out_channels == 12 and m.fuse[0].in_channels == 64 + 12


def test_decode_matches_forward():
    m = small().eval()
    x = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        c1, c4 = m.encode(x)
        logits, fuse = m.decode(c1, c4, x.shape[-2:])
        low, _ = m.decode(c1, c4)
        torch.testing.assert_close(logits, m(x))
    assert low.shape[-2:] == c1.shape[-2:]


def test_feature_perturbation_path():
    m = small().eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out, out_fp = m(x, need_fp=True)
        ref = m(x)
    assert out.shape == out_fp.shape == (3, K, 32, 32)
    torch.testing.assert_close(out, ref)  # eval-mode BN: the clean half equals the plain forward
    assert not torch.allclose(out, out_fp)  # dropout active in the FP path even in eval mode
    m.train()
    out, out_fp = m(x, need_fp=True)
    (out.mean() + out_fp.mean()).backward()


def test_parameter_groups_partition():
    m = small()
    bb, hd = m.backbone_parameters(), m.head_parameters()
    ids_b, ids_h = {id(p) for p in bb}, {id(p) for p in hd}
    assert not ids_b & ids_h
    assert ids_b | ids_h == {id(p) for p in m.parameters()}
    assert id(m.classifier.bias) in ids_h and m.classifier.bias is not None


def test_channels_last():
    m = small().eval()
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        ref = m(x)
        m = m.to(memory_format=torch.channels_last)
        out = m(x.contiguous(memory_format=torch.channels_last))
        out_fp = m(x.contiguous(memory_format=torch.channels_last), need_fp=True)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert out_fp[0].shape == ref.shape
    m.train()
    y = m(x.contiguous(memory_format=torch.channels_last))
    y.mean().backward()


def _dil(block):
    return block.conv2.dilation[0], block.conv2.stride[0]


def _check_dilations(b, os_):
    if os_ == 16:
        assert _dil(b.layer3[0]) == (1, 2) and _dil(b.layer3[-1]) == (1, 1)
        assert _dil(b.layer4[0]) == (1, 1) and all(_dil(blk) == (2, 1) for blk in b.layer4[1:])
    else:
        assert _dil(b.layer3[0]) == (1, 1) and all(_dil(blk) == (2, 1) for blk in b.layer3[1:])
        assert _dil(b.layer4[0]) == (2, 1) and all(_dil(blk) == (4, 1) for blk in b.layer4[1:])


def test_resnet101_deep_stem_structure():
    m = build_model(ModelSpec(backbone="resnet101", output_stride=16, pretrained=False), K)
    b = m.backbone
    assert m.pretrained_source == "random (pretrained disabled)"
    convs = [b.conv1[i] for i in (0, 3, 6)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 64, (3, 3), (2, 2)), (64, 64, (3, 3), (1, 1)), (64, 128, (3, 3), (1, 1))]
    assert b.bn1.num_features == 128
    assert b.layer1[0].conv1.in_channels == 128 and b.layer1[0].downsample[0].in_channels == 128
    assert [len(getattr(b, f"layer{i}")) for i in range(1, 5)] == [3, 4, 23, 3]
    _check_dilations(b, 16)
    assert m.reduce[0].out_channels == 48 and m.head.project[0].in_channels == 5 * 256
    assert m.feature_channels == 256
    keys = set(m.state_dict())  # UniMatch checkpoint layout (after stripping 'module.')
    assert {"backbone.conv1.0.weight", "backbone.conv1.4.running_var", "backbone.conv1.6.weight",
            "backbone.bn1.running_mean", "backbone.layer4.2.conv3.weight", "head.b0.0.weight",
            "head.b3.1.running_mean", "head.b4.gap.1.weight", "head.project.0.weight", "reduce.0.weight",
            "fuse.0.weight", "fuse.3.weight", "fuse.4.running_var", "classifier.weight", "classifier.bias"} <= keys
    # the layers of UniMatch's model/semseg/deeplabv3plus.py (ResNet-101 deep stem, 21 classes): 59,468,085 parameters
    assert sum(p.numel() for p in m.parameters()) + (21 - K) * 257 == 59_468_085
    m.eval()
    with torch.no_grad():
        c1, c4 = m.encode(torch.randn(1, 3, 33, 33))
        out = m(torch.randn(1, 3, 33, 33))
    assert c1.shape == (1, 256, 9, 9) and c4.shape == (1, 2048, 3, 3)
    assert out.shape == (1, K, 33, 33)


def test_resnet50_output_stride_8():
    m = build_model(ModelSpec(backbone="resnet50", output_stride=8, pretrained=False), K).eval()
    _check_dilations(m.backbone, 8)
    assert [len(getattr(m.backbone, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert m.head.b1[0].dilation == (12, 12)
    with torch.no_grad():
        c1, c4 = m.encode(torch.randn(1, 3, 33, 33))
    assert c1.shape[-2:] == (9, 9) and c4.shape[-2:] == (5, 5)


def test_resnet50_standard_stem():
    m = build_model(ModelSpec(backbone="resnet50", deep_stem=False, pretrained=False), K)
    assert m.backbone.conv1.kernel_size == (7, 7) and m.backbone.layer1[0].conv1.in_channels == 64
    assert [len(getattr(m.backbone, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    _check_dilations(m.backbone, 16)
