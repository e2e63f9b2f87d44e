"""The harness's ``dinov2_small`` (timm ViT-S/14 + DPT head) against the official UniMatch V2 model
(LiheYoung/UniMatch-V2, ``DPT`` in its ``small`` configuration), through ``golden/unimatch_v2_model.json``.

Same weights (the encoder's loaded from a file in the official DINOv2 format holding exactly the official
encoder's keys), same inputs (3×3 and 2×4 patch grids: the position embedding is resized), same seed before the
complementary-dropout forward. Tolerances: 1e-4 relative to each value, plus 1e-4 of the tensor's L2 norm inside a
summary and of the largest logit for the logit grids (timm's fused attention and the official explicit softmax
differ in rounding only).
"""

import pytest

from tests.conformance import cases, vit_cases
from tests.conformance.compare import assert_matches

GOLDEN = cases.load_golden("unimatch_v2_model")


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    return vit_cases.harness_outputs(GOLDEN["official_backbone_keys"], tmp_path_factory.mktemp("weights"))


def test_the_official_configuration_is_the_harness_encoders():
    from harness.models.dinov2_vit import VIT_CONFIGS

    cfg = VIT_CONFIGS["dinov2_small"]
    assert GOLDEN["config"]["layers"] == list(cfg.layers) and GOLDEN["config"]["features"] == cfg.dpt_features
    assert GOLDEN["config"]["out_channels"] == list(cfg.dpt_channels)


@pytest.mark.parametrize("case", [c["name"] for c in vit_cases.INPUTS])
def test_layers_logits_and_comp_drop_match_the_official_model(case, ours):
    golden, mine = GOLDEN["outputs"][case], ours[case]
    assert_matches(mine["inputs_fingerprint"], golden["inputs_fingerprint"], rtol=0.0, atol=0.0)
    assert mine.keys() == golden.keys()
    assert_matches(mine["layers"], golden["layers"], rtol=1e-4, atol=1e-5, what=f"{case}.layers")
    for out in ("eval", "comp_drop"):
        scale = max(abs(v) for img in golden[out]["grid"] for ch in img for row in ch for v in row)
        assert_matches(mine[out], golden[out], rtol=1e-4, atol=1e-4 * scale, what=f"{case}.{out}")
    # the dropout changed the logits, so the masks (same seed, same draws) were compared too
    assert golden["comp_drop"]["summary"]["l2"] != pytest.approx(golden["eval"]["summary"]["l2"], rel=1e-3)
