"""Confidence intervals and significance over seeds (harness/stats.py), worked by hand."""

import math

import pytest
from scipy import stats as st

from harness.stats import compare, t_halfwidth


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
