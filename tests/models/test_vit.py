"""The ViT family: vit_tiny's interface, complementary dropout, the frozen encoder, and DINOv2 weight files in the
official, timm and Hugging Face formats (small fake state dicts written as files)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from harness.train.engine import build_optimizer
from harness.errors import ConfigError
from harness.models import build_model
from harness.models.comp_drop import complementary_masks
from harness.models.dinov2_vit import VIT_CONFIGS, build_vit
from harness.models.vit_weights import detect_format, load_vit_weights, to_timm
from harness.protocols import ModelSpec

K = 4


def tiny(**kw):
    return build_model(ModelSpec(backbone="vit_tiny", pretrained=False, **kw), K)


# --- interface ---------------------------------------------------------------------------------------


def test_outputs_at_the_input_size_on_both_perturbation_paths():
    torch.manual_seed(0)
    model = tiny().eval()
    for size in ((48, 48), (40, 56), (45, 61)):  # patch multiples, then sides resized to the nearest multiples
        x = torch.randn(4, 3, *size)
        logits = model(x)
        assert logits.shape == (4, K, *size)
        clean, fp = model(x, need_fp=True)
        assert torch.allclose(clean, logits, atol=1e-5) and not torch.allclose(fp, logits)
        assert model(x, comp_drop=True).shape == (4, K, *size)
        feats = model.encode(x)
        assert len(feats) == 4 and feats[-1].shape[1] == model.semantic_channels == 64
        out, fuse = model.decode(*feats, size=size)
        assert torch.allclose(out, logits, atol=1e-5)
        assert fuse.shape == (4, model.feature_channels, -(-size[0] // 4), -(-size[1] // 4))
    with pytest.raises(ValueError, match="ask for one"):
        model(x, need_fp=True, comp_drop=True)


def test_comp_drop_masks_are_complementary_and_keep_half_the_pairs():
    torch.manual_seed(3)
    m = complementary_masks(8, 64)
    first, second = m[:4], m[4:]
    assert torch.equal(first + second, torch.full_like(first, 2.0))
    assert set(m.unique().tolist()) <= {0.0, 1.0, 2.0}
    untouched = (first == 1).all(dim=1)
    assert int(untouched.sum()) == 2  # ⌊4 · (1 − 0.5)⌋ pairs left as they are
    assert ((first[~untouched] == 0) | (first[~untouched] == 2)).all()
    with pytest.raises(ValueError, match="even batch"):
        complementary_masks(3, 8)
    torch.manual_seed(3)
    c1, c4 = complementary_masks(8, (16, 64))  # DeepLabV3+: two widths, the same pairs left unperturbed
    assert torch.equal((c1[:4] == 1).all(dim=1), (c4[:4] == 1).all(dim=1))
    assert torch.equal(c1 + c1.roll(4, dims=0), torch.full_like(c1, 2.0))


@pytest.mark.parametrize("backbone", ["vit_tiny", "small"])
def test_comp_drop_forward_is_the_decoder_on_masked_features(backbone):
    """ViT: one mask shared by the four layers (their width is the encoder's); DeepLabV3+: one per width."""
    torch.manual_seed(1)
    kw = {"width": 8, "decoder_channels": 16, "deep_stem": False} if backbone == "small" else {}
    model = build_model(ModelSpec(backbone=backbone, pretrained=False, **kw), K).eval()
    x = torch.randn(4, 3, 48, 48)
    torch.manual_seed(5)
    out = model(x, comp_drop=True)
    feats = model.encode(x)
    torch.manual_seed(5)
    if backbone == "vit_tiny":
        masks = [complementary_masks(4, 64)] * 4
    else:
        masks = complementary_masks(4, [f.shape[1] for f in feats])
    expected = model.decode(*[f * m[:, :, None, None] for f, m in zip(feats, masks)], size=(48, 48))[0]
    assert torch.allclose(out, expected, atol=1e-5)
    assert not torch.allclose(out, model(x), atol=1e-3)


def test_deeplab_only_options_are_refused_on_a_vit():
    with pytest.raises(ConfigError, match="model.aux_head is an option of the DeepLabV3\\+ encoders"):
        tiny(aux_head=True)


# --- frozen encoder ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["vit_tiny", "small"])
def test_frozen_encoder_is_not_trained(backbone):
    torch.manual_seed(0)
    kw = {"width": 8, "decoder_channels": 16, "deep_stem": False} if backbone == "small" else {}
    model = build_model(ModelSpec(backbone=backbone, pretrained=False, freeze_backbone=True, **kw), K)
    assert model.backbone_frozen and model.backbone_parameters() == []
    assert all(not p.requires_grad for p in model.backbone.parameters())
    head = model.head_parameters()
    assert head and all(p.requires_grad for p in head)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = [p.detach().clone() for p in head]
    method = type("M", (), {"extra_modules": torch.nn.ModuleDict()})()
    opt = build_optimizer(model, method, lr=0.1, head_lr_mult=10, momentum=0.9, weight_decay=1e-4)
    model.train()
    assert not model.backbone.training  # BatchNorm statistics of a frozen ResNet stay as loaded
    for _ in range(2):
        loss = model(torch.randn(2, 3, 48, 48)).logsumexp(dim=1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and running statistics
    assert any(not torch.equal(a, b) for a, b in zip(head_before, head))


def test_unfrozen_encoder_is_in_the_backbone_group():
    model = tiny()
    assert len(model.backbone_parameters()) == len(list(model.backbone.parameters()))
    ids = {id(p) for p in model.backbone_parameters()}
    assert not ids & {id(p) for p in model.head_parameters()}


# --- weight files --------------------------------------------------------------------------------------


def _reference(seed=0):
    torch.manual_seed(seed)
    return build_vit("vit_tiny")


def official_state(vit) -> dict:
    """The facebookresearch/dinov2 naming: timm's plus the mask token."""
    return {**{k: v.clone() for k, v in vit.state_dict().items()}, "mask_token": torch.zeros(1, 64)}


def huggingface_state(vit, prefix="") -> dict:
    """transformers' Dinov2Model naming: separate query / key / value, layer_scale lambdas, embeddings.*."""
    s = vit.state_dict()
    out = {"embeddings.cls_token": s["cls_token"], "embeddings.mask_token": torch.zeros(1, 64),
           "embeddings.position_embeddings": s["pos_embed"],
           "embeddings.patch_embeddings.projection.weight": s["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.projection.bias": s["patch_embed.proj.bias"],
           "layernorm.weight": s["norm.weight"], "layernorm.bias": s["norm.bias"]}
    for i in range(VIT_CONFIGS["vit_tiny"].depth):
        b, h = f"blocks.{i}.", f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            q, k, v = s[b + f"attn.qkv.{kind}"].chunk(3)
            out[h + f"attention.attention.query.{kind}"] = q
            out[h + f"attention.attention.key.{kind}"] = k
            out[h + f"attention.attention.value.{kind}"] = v
            out[h + f"attention.output.dense.{kind}"] = s[b + f"attn.proj.{kind}"]
            for n in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                out[h + f"{n}.{kind}"] = s[b + f"{n}.{kind}"]
        out[h + "layer_scale1.lambda1"] = s[b + "ls1.gamma"]
        out[h + "layer_scale2.lambda1"] = s[b + "ls2.gamma"]
    return {prefix + k: v.clone().contiguous() for k, v in out.items()}


def _assert_loaded(vit, reference):
    a, b = vit.state_dict(), reference.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("fmt, suffix", [("official", ".pth"), ("timm", ".safetensors"), ("timm", ".pth"),
                                         ("huggingface", ".safetensors"), ("huggingface-prefixed", ".safetensors"),
                                         ("unimatch-checkpoint", ".pth")])
def test_each_format_loads_the_same_weights(fmt, suffix, tmp_path):
    ref = _reference()
    state = {"official": lambda: official_state(ref), "timm": lambda: dict(ref.state_dict()),
             "huggingface": lambda: huggingface_state(ref),
             "huggingface-prefixed": lambda: {**huggingface_state(ref, "dinov2."), "classifier.weight": torch.ones(2)},
             "unimatch-checkpoint": lambda: {"model": {**{f"module.backbone.{k}": v for k, v in
                                                          official_state(ref).items()},
                                                       "module.head.projects.0.weight": torch.ones(3)}},
             }[fmt]()
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    vit = _reference(seed=1)
    assert not torch.equal(vit.pos_embed, ref.pos_embed)
    source = load_vit_weights(vit, "vit_tiny", str(path))
    _assert_loaded(vit, ref)
    expected = {"timm": "timm", "official": "official", "unimatch-checkpoint": "official"}.get(fmt, "huggingface")
    assert source.startswith(f"file ({expected} format): {path} (sha256 ")


def test_format_detection():
    ref = _reference()
    assert detect_format(dict(ref.state_dict())) == "timm"
    assert detect_format(official_state(ref)) == "official"
    assert detect_format(huggingface_state(ref)) == "huggingface"
    assert detect_format({"conv1.weight": torch.ones(1)}) is None
    chunked = {k.replace("blocks.", "blocks.0.", 1) if k.startswith("blocks.") else k: v
               for k, v in ref.state_dict().items()}  # block_chunks=1 in the official code
    converted, fmt = to_timm(chunked)
    assert fmt == "official" and converted.keys() == ref.state_dict().keys()


def test_a_file_of_another_size_is_refused_naming_it(tmp_path):
    other = {k: v for k, v in official_state(_reference()).items() if not k.startswith("blocks.3.")}
    other["pos_embed"] = torch.zeros(1, 50, 64)
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(other, path)
    with pytest.raises(ConfigError, match=rf"{path} \(official format\) does not fit encoder vit_tiny, a ViT of "
                                          r"width 64, 4 blocks, patch 8 \(65 position embeddings\): missing "
                                          r"\['blocks.3.attn.proj.bias'.*pos_embed \(1, 50, 64\) \(expected "
                                          r"\(1, 65, 64\)\)"):
        load_vit_weights(_reference(), "vit_tiny", str(path))


def test_unknown_format_and_unreadable_files_are_refused(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.ones(2, 3, 7, 7)}, path)
    with pytest.raises(ConfigError, match=rf"{path} is in no known format \(keys such as conv1.weight\); expected "
                                          r"vit_tiny weights in one of the formats official, timm, huggingface"):
        load_vit_weights(_reference(), "vit_tiny", str(path))
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match=rf"{bad} could not be read"):
        load_vit_weights(_reference(), "vit_tiny", str(bad))
    torn = huggingface_state(_reference())
    del torn["encoder.layer.2.attention.attention.key.weight"]  # a conversion error names the file too
    save_file(torn, tmp_path / "torn.safetensors")
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'torn.safetensors'} \(for vit_tiny\): layer 2: attention "
                                          r"weight has only \['query', 'value'\]"):
        load_vit_weights(_reference(), "vit_tiny", str(tmp_path / "torn.safetensors"))


def test_missing_weights_are_refused_when_the_run_is_resolved(tmp_path, monkeypatch):
    from harness.models.builtin_encoders import check_vit_weights

    monkeypatch.setenv("HARNESS_PRETRAINED_DIR", str(tmp_path))
    spec = ModelSpec(backbone="dinov2_base")
    with pytest.raises(ConfigError, match=r"protocol p-1 declares pretrained weights \(model.pretrained: true\) for "
                                          r"encoder dinov2_base, but none were found. Looked for dinov2_base.pth or "
                                          r"dinov2_vitb14_pretrain.pth or vit_base_patch14_dinov2.lvd142m.safetensors"
                                          r".*--set model.pretrained=false"):
        check_vit_weights(spec, "p-1")
    with pytest.raises(ConfigError, match=r"from the file /nowhere/w.pth \(model.weights\)"):
        check_vit_weights(spec.model_copy(update={"weights": "/nowhere/w.pth"}), "p-1")
    with pytest.raises(ConfigError, match="model.weights 'shapes-v1' of encoder dinov2_base is neither"):
        check_vit_weights(spec.model_copy(update={"weights": "shapes-v1"}), "p-1")
    torch.save(official_state(_reference()), tmp_path / "vit_tiny.pth")
    check_vit_weights(ModelSpec(backbone="vit_tiny"), "p-1")  # found in HARNESS_PRETRAINED_DIR
    model = build_model(ModelSpec(backbone="vit_tiny"), K)
    assert model.pretrained_source.startswith(f"file (official format): {tmp_path / 'vit_tiny.pth'}")
    _assert_loaded(model.backbone, _reference())


def test_records_name_the_regime_of_vit_weights(tmp_path):
    from harness.regimes import regime_of

    path = tmp_path / "w.pth"
    torch.save(official_state(_reference()), path)
    assert regime_of(load_vit_weights(_reference(1), "vit_tiny", str(path))) == "pretrained (file)"
    assert regime_of("dinov2 (official format): /w/dinov2_vitb14_pretrain.pth (sha256 0123456789ab)") == \
        "pretrained (DINOv2)"


# Printed by UniMatch V2's training script at start-up (its released logs, training-logs/ at the pinned commit):
# table01-pascal_unimatch_v2_92labels_dinov2_{small,base}.log (21 classes) and
# table08-ade20k_unimatch_v2_1_16labels_dinov2_large.log (150 classes; only the total is printed there).
OFFICIAL_PARAMS_M = [("dinov2_small", 21, 24.8, 22.1, 2.7), ("dinov2_base", 21, 97.5, 86.6, 10.9),
                     ("dinov2_large", 150, 335.6, None, None)]


@pytest.mark.parametrize("name, classes, total, encoder, decoder", OFFICIAL_PARAMS_M,
                         ids=[r[0] for r in OFFICIAL_PARAMS_M])
def test_parameter_counts_are_those_of_the_official_logs(name, classes, total, encoder, decoder):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = build_model(ModelSpec(backbone=name, pretrained=False), classes)
    # the official encoder also holds DINOv2's mask token (one embedding), which the harness's does not
    enc = sum(p.numel() for p in model.backbone.parameters()) + VIT_CONFIGS[name].embed_dim
    dec = sum(p.numel() for p in model.head.parameters())
    assert round((enc + dec) / 1e6, 1) == total
    if encoder is not None:
        assert (round(enc / 1e6, 1), round(dec / 1e6, 1)) == (encoder, decoder)
