"""Uncertainty of a table cell and significance of a difference between two rows, over training seeds.

A cell's 95 % confidence interval is Student's t over its seeds: mean ± t(0.975, n − 1) · s / √n. A difference
Δ = B − A between two rows of one column is **paired** when both rows have the same seeds (the seed fixes the
data order, augmentations and initialisation, so run k of A and run k of B share them): Δ and its interval
come from the per-seed differences, and the p-value from the paired t-test. Otherwise the rows are compared
unpaired with Welch's t-test. With one seed there is no interval and no test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as _st

__all__ = ["Comparison", "compare", "t_halfwidth"]


def t_halfwidth(values: Sequence[float], confidence: float = 0.95) -> float:
    """Half-width of the t confidence interval of the mean of ``values`` (NaN for fewer than two)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2:
        return math.nan
    return float(_st.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))


@dataclass(frozen=True)
class Comparison:
    delta: float        # mean of B − mean of A (paired: mean of the per-seed differences, the same number)
    halfwidth: float    # of the 95 % interval of Δ; NaN when it cannot be computed
    p_value: float      # two-sided; NaN when it cannot be computed
    n: int              # seeds of B (paired: common seeds)
    paired: bool

    @property
    def significant(self) -> bool:
        return math.isfinite(self.p_value) and self.p_value < 0.05


def compare(a: Mapping[object, float], b: Mapping[object, float], confidence: float = 0.95) -> Comparison:
    """Δ = B − A over seeds (``seed → value`` maps), paired when the seed sets are equal."""
    if not a or not b:
        raise ValueError("compare needs at least one value on each side")
    if set(a) == set(b):
        d = np.array([b[k] - a[k] for k in sorted(a, key=str)], dtype=float)
        n = len(d)
        if n < 2:
            return Comparison(float(d.mean()), math.nan, math.nan, n, True)
        sd = d.std(ddof=1)
        if sd <= 1e-12 * max(1.0, abs(float(d.mean()))):  # every seed moved by the same amount (up to rounding):
            # no spread, the t-test is undefined
            return Comparison(float(d.mean()), 0.0, math.nan, n, True)
        t = float(d.mean()) / (sd / math.sqrt(n))
        return Comparison(float(d.mean()), t_halfwidth(d, confidence), float(2 * _st.t.sf(abs(t), n - 1)), n, True)
    xa = np.array(list(a.values()), dtype=float)
    xb = np.array(list(b.values()), dtype=float)
    delta = float(xb.mean() - xa.mean())
    if len(xa) < 2 or len(xb) < 2:
        return Comparison(delta, math.nan, math.nan, len(xb), False)
    va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
    se = math.sqrt(va + vb)
    if se == 0:
        return Comparison(delta, 0.0, math.nan, len(xb), False)
    dof = (va + vb) ** 2 / (va ** 2 / (len(xa) - 1) + vb ** 2 / (len(xb) - 1))  # Welch–Satterthwaite
    p = float(2 * _st.t.sf(abs(delta) / se, dof))
    return Comparison(delta, float(_st.t.ppf(0.5 + confidence / 2, dof) * se), p, len(xb), False)
