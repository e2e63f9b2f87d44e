"""Comparing the harness's outputs with a golden file's, leaf by leaf, with stated tolerances."""

from __future__ import annotations

import math

SUMMARY_KEYS = {"shape", "sum", "abs_sum", "l2", "values"}


def assert_matches(actual, expected, rtol: float, atol: float, what: str = "", sum_rtol: float | None = None) -> None:
    """Every float leaf within ``atol + rtol·|expected|``; every other leaf (ints, strings, booleans, None) equal.

    Inside a tensor summary (``cases.summary``) ``atol`` is at least ``rtol·l2`` of the expected tensor, so that
    sums that nearly cancel are held to the tensor's scale rather than to their own. The summary's Σx is held to
    ``sum_rtol·Σ|x|`` (``sum_rtol`` defaults to ``rtol``): the bound on a sum of entries that are each within
    ``sum_rtol`` of their own value, however much they cancel. ``inputs_fingerprint``
    leaves must agree to 1e-9 relative: a mismatch there means the inputs were not rebuilt as the golden file's
    were (e.g. torch's generators changed), not that the harness disagrees with the official code."""
    failures: list[str] = []
    _walk(actual, expected, rtol, atol, what, failures, rtol if sum_rtol is None else sum_rtol)
    if failures:
        shown = "\n  ".join(failures[:12])
        more = f"\n  … and {len(failures) - 12} more" if len(failures) > 12 else ""
        raise AssertionError(f"{len(failures)} value(s) differ from the official code's (rtol {rtol}, atol {atol}):"
                             f"\n  {shown}{more}")


def _walk(a, e, rtol, atol, path, failures, sum_rtol) -> None:
    if isinstance(e, dict):
        if not isinstance(a, dict) or a.keys() != e.keys():
            failures.append(f"{path}: keys {sorted(a) if isinstance(a, dict) else type(a).__name__} "
                            f"!= {sorted(e)}")
            return
        summary = SUMMARY_KEYS <= e.keys()
        if summary:
            atol = max(atol, rtol * e["l2"])
        for k in e:
            sub = f"{path}.{k}" if path else str(k)
            if summary and k == "sum":
                _walk(a[k], e[k], 0.0, max(atol, sum_rtol * e["abs_sum"]), sub, failures, sum_rtol)
                continue
            if k == "inputs_fingerprint":
                if not math.isclose(a[k], e[k], rel_tol=1e-9):
                    raise AssertionError(f"{sub}: {a[k]!r} != {e[k]!r}: the inputs are not those of the golden file "
                                         f"(have torch's random generators changed?); regenerate it "
                                         f"(benchmarks/conformance/README.md)")
                continue
            _walk(a[k], e[k], rtol, atol, sub, failures, sum_rtol)
    elif isinstance(e, list):
        if not isinstance(a, list) or len(a) != len(e):
            failures.append(f"{path}: {a!r} != {e!r}")
            return
        for i, (x, y) in enumerate(zip(a, e)):
            _walk(x, y, rtol, atol, f"{path}[{i}]", failures, sum_rtol)
    elif isinstance(e, float) and not isinstance(a, bool) and isinstance(a, (int, float)):
        if math.isnan(e) and math.isnan(a):
            return
        if not abs(a - e) <= atol + rtol * abs(e):
            failures.append(f"{path}: harness {a!r}, official {e!r} (difference {abs(a - e):.3g})")
    elif a != e or type(a) is not type(e):
        failures.append(f"{path}: harness {a!r}, official {e!r}")

