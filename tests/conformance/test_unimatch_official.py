"""The harness against the official UniMatch code (LiheYoung/UniMatch), through ``golden/unimatch.json``.

The golden file holds the official outputs on the inputs of ``cases.py``; ``benchmarks/conformance/README.md`` says
how it was made and the differences measured. Tolerances: fp32 losses 1e-5 absolute; gradients, BatchNorm
statistics and logits 1e-4 relative (to each value, plus 1e-4 of the tensor's L2 norm inside a summary and of the
largest logit for the model outputs).
"""

import pytest

from tests.conformance import cases
from tests.conformance.compare import assert_matches

GOLDEN = cases.load_golden("unimatch")
LOSS_KEYS = ("loss", "loss_x", "loss_s1", "loss_s2", "loss_fp", "mask_ratio")


def names(items):
    return [c["name"] for c in items]


@pytest.mark.parametrize("case", cases.MODEL_CASES, ids=names(cases.MODEL_CASES))
def test_deeplab_forward_on_shared_weights(case):
    """Eval, train-mode and feature-perturbation forwards of harness.models' DeepLabV3+ with the official
    model's random weights (same state-dict keys)."""
    golden = GOLDEN["model_forward"][case["name"]]
    ours = cases.harness_model_forward(case)
    meta = ("inputs_fingerprint", "state_entries")
    assert_matches({k: ours[k] for k in meta}, {k: golden[k] for k in meta}, rtol=0.0, atol=0.0)
    assert ours.keys() == golden.keys()
    for out in ("eval", "train", "fp_clean", "fp_perturbed"):
        scale = max(abs(v) for img in golden[out]["grid"] for ch in img for row in ch for v in row)
        assert_matches(ours[out], golden[out], rtol=1e-4, atol=1e-4 * scale, what=f"{case['name']}.{out}")


@pytest.mark.parametrize("case", cases.UNIMATCH_STEP_CASES, ids=names(cases.UNIMATCH_STEP_CASES))
def test_step_losses_and_gradients(case):
    """``UniMatch.training_step`` against the official step (unimatch.py) on the same tiny network, strong views,
    CutMix boxes and Dropout2d masks: the four loss terms, the total, the mask ratio, every parameter's gradient
    and the BatchNorm running statistics after the step's forwards."""
    golden = GOLDEN["step"][case["name"]]
    ours = cases.harness_unimatch_step(case)
    assert_matches({k: ours[k] for k in LOSS_KEYS}, {k: golden[k] for k in LOSS_KEYS}, rtol=0.0, atol=1e-5)
    assert_matches(ours, golden, rtol=1e-4, atol=1e-5, what=case["name"])
    assert golden["loss_s1"] > 0 and golden["loss_fp"] > 0  # the unsupervised terms are exercised


def test_cutmix_boxes_from_the_same_draws():
    """``unimatch_cutmix_box`` against ``obtain_cutmix_box`` answered from the same generator: 300 boxes, equal."""
    golden = GOLDEN["cutmix_box"]
    ours = {str(seed): cases.harness_unimatch_box(seed) for seed in cases.UNIMATCH_BOX["seeds"]}
    assert ours == golden
    assert 100 < sum(b is not None for b in golden.values()) < 200  # p = 0.5: both branches exercised


@pytest.mark.parametrize("case", cases.OHEM_CASES, ids=names(cases.OHEM_CASES))
def test_ohem_matches_prob_ohem_cross_entropy(case):
    """``harness.train.losses.ohem_cross_entropy`` against ``ProbOhemCrossEntropy2d`` (one call per group of
    ``group`` crops, averaged as data parallelism averages devices): loss and gradient."""
    assert cases.ohem_branches(case) == case["branches"]
    golden = GOLDEN["ohem"][case["name"]]
    ours = cases.harness_ohem(case)
    assert abs(ours["loss"] - golden["loss"]) <= 1e-5
    assert_matches(ours, golden, rtol=1e-4, atol=1e-7, what=case["name"])
