"""Confidence intervals and significance over seeds (harness/report/stats.py), worked by hand."""

import math

import numpy as np

import pytest
from scipy import stats as st

from harness.report.stats import compare, t_halfwidth


def test_t_halfwidth_by_hand():
    # values 1, 2, 3: s = 1, n = 3, t(0.975, 2) = 4.302653
    assert t_halfwidth([1.0, 2.0, 3.0]) == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert math.isnan(t_halfwidth([5.0]))


def test_paired_comparison_by_hand():
    a = {0: 1.0, 1: 2.0, 2: 3.0}
    b = {0: 2.0, 1: 4.0, 2: 4.0}  # differences 1, 2, 1: mean 4/3, s = 0.57735, se = 1/3, t = 4
    c = compare(a, b)
    assert c.paired and c.n == 3
    assert c.delta == pytest.approx(4 / 3)
    assert c.halfwidth == pytest.approx(4.302653 / 3, rel=1e-6)
    assert c.p_value == pytest.approx(2 * st.t.sf(4.0, 2), rel=1e-9)  # 0.0572: not significant
    assert not c.significant


def test_unpaired_comparison_is_welch():
    a = {0: 1.0, 1: 2.0, 2: 3.0}
    b = {0: 2.0, 1: 4.0, 2: 6.0, 3: 8.0}  # other seeds: Welch; va = 1/3, vb = 20/3/4, se = √2
    c = compare(a, b)
    assert not c.paired and c.delta == pytest.approx(3.0)
    dof = 4 / ((1 / 3) ** 2 / 2 + (5 / 3) ** 2 / 3)
    assert c.p_value == pytest.approx(2 * st.t.sf(3 / math.sqrt(2), dof), rel=1e-9)
    assert c.halfwidth == pytest.approx(st.t.ppf(0.975, dof) * math.sqrt(2), rel=1e-9)


def test_degenerate_cases():
    one = compare({0: 1.0}, {0: 3.0})
    assert one.delta == 2.0 and math.isnan(one.p_value) and math.isnan(one.halfwidth)
    shift = compare({0: 1.0, 1: 2.0}, {0: 2.0, 1: 3.0})  # every seed +1: no spread
    assert shift.delta == 1.0 and shift.halfwidth == 0.0 and math.isnan(shift.p_value)  # t-test undefined
    with pytest.raises(ValueError):
        compare({}, {0: 1.0})


def _miou(cm):
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    return 100 * np.nanmean(np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan))


def test_bootstrap_miou_resamples_images_not_pixels():
    from harness.evaluation.metrics import bootstrap_miou

    rng = np.random.default_rng(0)
    cms = rng.integers(0, 50, size=(40, 3, 3))
    out = bootstrap_miou(cms, resamples=300, seed=1)
    assert out["miou"] == pytest.approx(_miou(cms.sum(0)))
    # the same resamples drawn by hand: multinomial counts per image, mIoU of the weighted sum
    counts = np.random.default_rng(1).multinomial(40, np.full(40, 1 / 40), size=300)
    by_hand = np.array([_miou(np.tensordot(c, cms, axes=1)) for c in counts])
    assert out["std"] == pytest.approx(by_hand.std(ddof=1))
    assert (out["low"], out["high"]) == pytest.approx(tuple(np.percentile(by_hand, [2.5, 97.5])))
    # identical images carry no evaluation noise; more images of the same kind carry less
    same = np.repeat(cms[:1], 40, axis=0)
    assert bootstrap_miou(same, resamples=50)["std"] == pytest.approx(0, abs=1e-9)
    many = np.concatenate([cms] * 10)
    assert bootstrap_miou(many, resamples=300)["std"] < out["std"] / 2
    with pytest.raises(ValueError, match="at least two images"):
        bootstrap_miou(cms[:1])


@pytest.mark.parametrize("argv, message", [
    (["eval", "run", "--bootstrap", "1"], "--bootstrap: expected 0 (off) or a number of resamples >= 2, got '1'"),
    (["eval", "run", "--bootstrap", "-5"], "--bootstrap: expected 0 (off) or a number of resamples >= 2, got '-5'"),
    (["diagnose", "run", "--protocol", "p", "--tau", "1.5"], "--tau: expected a probability in [0, 1], got '1.5'"),
])
def test_noise_and_threshold_options_refuse_values_without_meaning(argv, message, capsys):
    from harness.cli import main

    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err
