"""The UniMatch V2 model conformance cases: its DPT on DINOv2 ViT-S/14 against the harness's ``dinov2_small``.

``benchmarks/conformance/golden_unimatch_v2_model.py`` builds the official ``DPT`` (LiheYoung/UniMatch-V2,
``model/semseg/dpt.py``, the ``small`` configuration of its training scripts), loads the weights drawn here by
entry name, and writes its outputs on the inputs drawn here to ``golden/unimatch_v2_model.json``. The test
(``test_unimatch_v2_model_official.py``) gives the harness model the same weights, the encoder's through a file in
the official DINOv2 format (the golden file lists the official encoder's state-dict keys), and compares.

Inputs: 42×42 and 28×56 crops (3×3 and 2×4 patch grids: the 37×37 position embedding is resized, the non-square
case included). Outputs: the four intermediate layers (``get_intermediate_layers``), eval-mode logits, and the
logits of the complementary-dropout forward after ``torch.manual_seed(COMP_DROP_SEED)``.
"""

from __future__ import annotations

import zlib

import torch

from tests.conformance.cases import fingerprint, outputs_json, summary, uniform

CLASSES = 5
WEIGHT_SEED = 21
COMP_DROP_SEED = 22
INPUTS = [{"name": "square42", "shape": (4, 3, 42, 42), "seed": 23},
          {"name": "wide28x56", "shape": (2, 3, 28, 56), "seed": 24}]
# The ``small`` entry of UniMatch V2's ``model_configs`` (its training scripts).
OFFICIAL_CONFIG = {"encoder_size": "small", "features": 64, "out_channels": [48, 96, 192, 384]}


def seeded_weights(names_shapes: dict[str, torch.Size], seed: int = WEIGHT_SEED) -> dict[str, torch.Tensor]:
    """Weights drawn by entry name from seeded generators, so either side draws the same tensor for a name.

    Linear and convolution weights: U(±√(3 / n)), n the entries per output unit of the weight (unit-variance
    outputs for linear and plain convolutions); biases U[−0.1, 0.1); LayerNorm
    weights U[0.8, 1.2); LayerScale γ U[0.05, 0.3) (residual branches that do not swamp the stream); the class
    token, position embedding and mask token U[−1, 1) (so that resizing the position embedding matters)."""
    out = {}
    for name, shape in names_shapes.items():
        s = (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63)
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("cls_token", "pos_embed", "mask_token"):
            v = uniform(shape, s, -1.0, 1.0)
        elif leaf == "gamma":
            v = uniform(shape, s, 0.05, 0.3)
        elif leaf == "bias":
            v = uniform(shape, s, -0.1, 0.1)
        elif len(shape) == 1:
            v = uniform(shape, s, 0.8, 1.2)
        else:
            bound = (3.0 / torch.Size(shape)[1:].numel()) ** 0.5
            v = uniform(shape, s, -bound, bound)
        out[name] = v
    return out


def inputs() -> dict[str, torch.Tensor]:
    return {c["name"]: uniform(c["shape"], c["seed"], -2.0, 2.0) for c in INPUTS}


@torch.no_grad()
def outputs(forward_layers, forward, x: torch.Tensor) -> dict:
    """The same calls on either model: ``forward_layers(x)`` → four B×N×C token tensors, ``forward(x, comp)``."""
    layers = forward_layers(x)
    out = {"layers": [summary(t, 16) for t in layers], "eval": outputs_json(forward(x, False))}
    torch.manual_seed(COMP_DROP_SEED)
    out["comp_drop"] = outputs_json(forward(x, True))
    return out


# ----------------------------------------------------------------------------------------------------
# the harness's side


def harness_model(official_backbone_keys: list[str], tmp_dir) -> torch.nn.Module:
    """``dinov2_small`` with the seeded weights: the encoder's from an official-format file holding exactly the
    official encoder's keys (loaded by :mod:`harness.models.vit_weights`), the head's by their (official) names."""
    from harness.models import build_model
    from harness.protocols import ModelSpec

    shapes = {k: v.shape for k, v in build_model(ModelSpec(backbone="dinov2_small", pretrained=False),
                                                 CLASSES).state_dict().items()}
    extra = {"backbone.mask_token": torch.Size([1, 384])}  # in the official encoder only
    backbone = {k: shapes.get(k, extra.get(k)) for k in official_backbone_keys}
    missing = [k for k, v in backbone.items() if v is None]
    if missing:
        raise AssertionError(f"official encoder keys the harness model lacks: {missing[:5]}")
    drawn = seeded_weights({**backbone, **{k: v for k, v in shapes.items() if k.startswith("head.")}})
    path = tmp_dir / "dinov2_vits14_pretrain.pth"
    torch.save({k[len("backbone."):]: v for k, v in drawn.items() if k.startswith("backbone.")}, path)
    model = build_model(ModelSpec(backbone="dinov2_small", weights=str(path)), CLASSES)
    model.head.load_state_dict({k[len("head."):]: v for k, v in drawn.items() if k.startswith("head.")})
    return model.eval()


def harness_outputs(official_backbone_keys: list[str], tmp_dir) -> dict:
    model = harness_model(official_backbone_keys, tmp_dir)
    golden = {}
    for name, x in inputs().items():
        golden[name] = {"inputs_fingerprint": fingerprint(x),
                        **outputs(lambda t: model.backbone.intermediate_layers(t)[0],
                                  lambda t, comp: model(t, comp_drop=comp), x)}
    return golden

