"""The harness against the official UniMatch V2 step (LiheYoung/UniMatch-V2 ``unimatch_v2.py``) and that
repository's FixMatch step (``fixmatch.py``, the harness's ``fixmatch_v2``), through ``golden/unimatch_v2_step.json``.

The golden file holds the official outputs on the inputs of ``cases_unimatch_v2.py``;
``benchmarks/conformance/README.md`` says how it was made and the differences measured. Tolerances: fp32 losses
1e-5 absolute; gradients and the changes of the student (AdamW step, BatchNorm statistics) and of the teacher (EMA
update) 1e-4 relative (to each value, plus 1e-4 of the tensor's L2 norm inside a summary; a summary's Σx to 1e-4 of
its Σ|x|). The student's change under AdamW has its Σx held to 1e-3 of Σ|x|: a first AdamW step moves each weight
by lr·g/(|g| + 1e-8), about ±lr, so Σx is lr times a count of signs, and an entry whose gradient is at float32
rounding level (a few per tensor here, beside a median |g| of 2e-3) moves by anything within ±lr when the order of
the float32 reductions changes (another CPU, another thread count: up to 7e-5 of Σ|x| measured).
"""

import pytest

from tests.conformance import cases
from tests.conformance import cases_unimatch_v2 as v2
from tests.conformance.compare import assert_matches

GOLDEN = cases.load_golden("unimatch_v2_step")
LOSS_KEYS = ("loss", "loss_x", "loss_s1", "loss_s2", "loss_s", "mask_ratio")


def assert_matches_adamw(ours: dict, golden: dict, what: str) -> None:
    """Everything at 1e-4 relative; the Σx of the student's AdamW change at 1e-3 of its Σ|x| (module docstring)."""
    assert_matches({k: v for k, v in ours.items() if k != "student_change"},
                   {k: v for k, v in golden.items() if k != "student_change"}, rtol=1e-4, atol=1e-9, what=what)
    assert_matches(ours["student_change"], golden["student_change"], rtol=1e-4, atol=1e-9, sum_rtol=1e-3,
                   what=f"{what}.student_change")


@pytest.mark.parametrize("case", v2.STEP_CASES, ids=[c["name"] for c in v2.STEP_CASES])
def test_step_optimizer_and_ema_match_the_official_code(case):
    """``UniMatchV2`` step, the harness's AdamW groups and ``after_step`` against the official statements on the same
    network, inputs, strong views, CutMix boxes and complementary-dropout draws: the loss terms, the mask ratio,
    every gradient, the student's change under one AdamW step and the teacher's under the EMA update."""
    golden = GOLDEN["step"][case["name"]]
    ours = v2.harness_step(case)
    assert_matches({k: ours[k] for k in LOSS_KEYS}, {k: golden[k] for k in LOSS_KEYS}, rtol=0.0, atol=1e-5)
    assert_matches_adamw(ours, golden, case["name"])
    assert golden["loss_s1"] > 0 and golden["loss_s2"] > 0  # the unsupervised terms are exercised
    # both optimizer groups moved: the backbone at lr, the head at 40 × lr
    moved = {name.split(".")[0] for name, s in golden["student_change"].items() if s["l2"] > 0}
    assert "backbone" in moved and len(moved) > 1, moved


FIXMATCH_KEYS = ("loss", "loss_x", "loss_s", "mask_ratio")


@pytest.mark.parametrize("case", v2.FIXMATCH_CASES, ids=[c["name"] for c in v2.FIXMATCH_CASES])
def test_fixmatch_v2_step_matches_the_official_fixmatch(case):
    """``FixMatchV2.step_from_view`` (one strong view, one joint forward of labeled and strong images), AdamW and
    the EMA update against UniMatch V2's ``fixmatch.py`` statements on the same inputs."""
    golden = GOLDEN["fixmatch_step"][case["name"]]
    ours = v2.harness_step(case)
    assert_matches({k: ours[k] for k in FIXMATCH_KEYS}, {k: golden[k] for k in FIXMATCH_KEYS}, rtol=0.0, atol=1e-5)
    assert_matches_adamw(ours, golden, case["name"])
    assert 0 < golden["mask_ratio"] < 1 and golden["loss_s"] > 0
