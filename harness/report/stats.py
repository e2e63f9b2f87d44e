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

__all__ = ["Comparison", "compare", "t_halfwidth", "bootstrap_miou"]


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


def bootstrap_miou(per_image_confusion: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """Evaluation noise of a dataset-level mIoU: the images are resampled with replacement ``resamples`` times
    and the mIoU recomputed from the summed confusion matrices (the metric is dataset-level, so the images, not
    the pixels, are the sampling unit).

    ``per_image_confusion``: N×K×K (``evaluate(..., per_image=True)``). Returns the mIoU of all images, the
    bootstrap standard deviation and the 2.5 / 97.5 percentiles, in mIoU points."""
    cms = np.asarray(per_image_confusion, dtype=np.float64)
    n, k, _ = cms.shape
    if n < 2:
        raise ValueError(f"a bootstrap over images needs at least two images, got {n}")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)  # resamples × N
    mats = (counts @ cms.reshape(n, k * k)).reshape(resamples, k, k)
    inter = np.diagonal(mats, axis1=1, axis2=2)
    union = mats.sum(1) + mats.sum(2) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        miou = 100 * np.nanmean(np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan), axis=1)
    total = cms.sum(0)
    t_inter = np.diag(total)
    t_union = total.sum(0) + total.sum(1) - t_inter
    with np.errstate(invalid="ignore", divide="ignore"):
        full = 100 * float(np.nanmean(np.where(t_union > 0, t_inter / np.where(t_union > 0, t_union, 1), np.nan)))
    lo, hi = np.percentile(miou, [2.5, 97.5])
    return {"miou": full, "std": float(miou.std(ddof=1)), "low": float(lo), "high": float(hi),
            "resamples": resamples, "images": n}
