"""The comparison rule of the conformance tests (``compare.assert_matches``)."""

import pytest

from tests.conformance.compare import assert_matches


def summary(total, abs_sum, l2, values):
    return {"shape": [len(values)], "sum": total, "abs_sum": abs_sum, "l2": l2, "values": values}


def test_summary_sum_is_held_to_its_abs_sum():
    # entries ±1 that cancel: Σx = 0, Σ|x| = 100; each entry within 1e-4 of its own value moves Σx by at most 1e-2
    golden = summary(0.0, 100.0, 10.0, [1.0, -1.0])
    assert_matches(summary(0.009, 100.0, 10.0, [1.0, -1.0]), golden, rtol=1e-4, atol=1e-9)
    with pytest.raises(AssertionError, match=r"x\.sum: harness 0\.011"):
        assert_matches(summary(0.011, 100.0, 10.0, [1.0, -1.0]), golden, rtol=1e-4, atol=1e-9, what="x")
    # a looser bound for the sum alone leaves the other leaves at rtol
    assert_matches(summary(0.09, 100.0, 10.0, [1.0, -1.0]), golden, rtol=1e-4, atol=1e-9, sum_rtol=1e-3)
    with pytest.raises(AssertionError, match=r"abs_sum"):
        assert_matches(summary(0.0, 100.1, 10.0, [1.0, -1.0]), golden, rtol=1e-4, atol=1e-9, sum_rtol=1e-3)


def test_other_leaves_use_the_tensor_scale_and_exact_equality():
    golden = {"n": 3, "t": summary(5.0, 5.0, 2.0, [0.0, 1.0])}
    # an entry near 0 is held to 1e-4 of the tensor's L2 norm, not to its own size
    assert_matches({"n": 3, "t": summary(5.0, 5.0, 2.0, [1.5e-4, 1.0])}, golden, rtol=1e-4, atol=1e-9)
    with pytest.raises(AssertionError, match=r"values\[0\]"):
        assert_matches({"n": 3, "t": summary(5.0, 5.0, 2.0, [2.5e-4, 1.0])}, golden, rtol=1e-4, atol=1e-9)
    with pytest.raises(AssertionError, match=r"n: harness 4"):
        assert_matches({"n": 4, "t": golden["t"]}, golden, rtol=1e-4, atol=1e-9)
