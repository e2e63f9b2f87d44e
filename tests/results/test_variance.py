"""Split variance against seed variance: the nested ANOVA on numbers worked by hand, and the --variance table over
run records (older records, without split seeds, still load)."""

from __future__ import annotations

import math

import pytest

from harness.cli import main
from harness.report.results import load_results
from harness.report.variance import build_variance_table, frame, render_variance, variance_components

from .conftest import write_run


def test_balanced_components_by_hand():
    # split means 2, 6, 10, grand mean 6; SS_between = 2·(16 + 0 + 16) = 64 over 2 df → MS_between 32;
    # SS_within = 3 · (1 + 1) = 6 over 6 − 3 = 3 df → MS_within 2; n0 = 2 → σ²_split = (32 − 2) / 2 = 15.
    c = variance_components({1: [1, 3], 2: [5, 7], 3: [9, 11]})
    assert (c.splits, c.runs, c.df_between, c.df_within) == (3, 6, 2, 3)
    assert c.mean == pytest.approx(6) and c.ms_between == pytest.approx(32) and c.ms_within == pytest.approx(2)
    assert c.n0 == pytest.approx(2) and c.split_var == pytest.approx(15) and c.seed_var == pytest.approx(2)
    assert c.split_share == pytest.approx(15 / 17) and c.f == pytest.approx(16)
    # F with 2 numerator df has a closed-form tail: P(F > f) = (1 + 2 f / d2)^(−d2 / 2)
    assert c.p_value == pytest.approx((1 + 2 * 16 / 3) ** -1.5)


def test_unbalanced_components_by_hand():
    # split A: 1, 3, 5 (mean 3); split B: 7 (mean 7); grand mean 16 / 4 = 4. SS_between = 3·1 + 1·9 = 12 (1 df);
    # SS_within = 4 + 0 + 4 = 8 over 4 − 2 = 2 df → 4; n0 = (4 − (9 + 1) / 4) / 1 = 1.5 → σ²_split = 8 / 1.5.
    c = variance_components({"A": [1, 3, 5], "B": [7]})
    assert c.ms_between == pytest.approx(12) and c.ms_within == pytest.approx(4) and c.n0 == pytest.approx(1.5)
    assert c.split_var == pytest.approx(16 / 3) and c.f == pytest.approx(3)


def test_negative_estimate_is_truncated_and_degenerate_cases_have_no_test():
    c = variance_components({1: [0, 10], 2: [5, 5]})  # equal split means: MS_between 0 < MS_within 25
    assert c.ms_within == pytest.approx(25) and c.split_var == 0 and c.split_share == 0
    one = variance_components({1: [60.0, 61.0, 62.0]})  # one split: no between-split component
    assert math.isnan(one.split_var) and math.isnan(one.p_value) and one.seed_var == pytest.approx(1)
    single = variance_components({1: [60.0], 2: [62.0]})  # no replicate: the two cannot be separated
    assert math.isnan(single.seed_var) and math.isnan(single.split_var) and math.isnan(single.f)


@pytest.fixture
def split_root(tmp_path):
    root = tmp_path / "runs"
    values = {1: [40.0, 42.0], 2: [50.0, 52.0], 3: [45.0, 47.0]}  # supervised on synthetic-100, 3 splits × 2 seeds
    for k, vals in values.items():
        for seed, v in enumerate(vals):
            write_run(root, "supervised", f"synthetic-100-split{k}", seed, v, split_of="synthetic-100", split_seed=k)
            write_run(root, "unimatch", f"synthetic-100-split{k}", seed, v + 1.0 + seed,
                      split_of="synthetic-100", split_seed=k)
    write_run(root, "supervised", "synthetic-100", 0, 44.0)  # the standard list: an older record, no split fields
    return root


def test_variance_table_separates_the_two_sources(split_root):
    rs = load_results([split_root])
    assert len(rs.runs) == 13 and not rs.warnings  # the record without split fields loads
    t = build_variance_table(rs)
    df = frame(t).set_index("method")
    sup = variance_components({1: [40, 42], 2: [50, 52], 3: [45, 47]})
    assert df.loc["supervised", "split_var"] == pytest.approx(sup.split_var)
    assert df.loc["supervised", "seed_var"] == pytest.approx(2.0)  # (1 + 1) · 3 / 3
    assert df.loc["unimatch", "seed_var"] == pytest.approx(variance_components(
        {1: [41, 44], 2: [51, 54], 3: [46, 49]}).seed_var)
    assert (df["split_of"] == "synthetic-100").all() and (df["runs"] == 6).all()
    text = render_variance(t, "markdown")
    assert "SD between splits" in text and "supervised" in text.lower()
    assert "standard lists (synthetic-100)" in text  # named as left out
    csv = render_variance(t, "csv").splitlines()
    assert csv[0].startswith("method,settings_hash,split_of") and len(csv) == 3
    assert "\\begin{tabular}" in render_variance(t, "latex")


def test_cli_variance_and_a_clear_error_without_split_seeds(split_root, tmp_path, capsys):
    assert main(["table", str(split_root), "--variance", "--format", "csv"]) == 0
    assert "synthetic-100" in capsys.readouterr().out
    other = tmp_path / "plain"
    write_run(other, "supervised", "synthetic-100", 0, 44.0)
    assert main(["table", str(other), "--variance"]) == 2
    assert "no finished run on a split-seed protocol" in capsys.readouterr().err


def test_delta_over_splits_is_a_paired_t_test_over_split_means(tmp_path):
    # per-split means: supervised 40, 50, 45; the method 41, 52, 48 → per-split Δ 1, 2, 3 (mean 2, SD 1, n 3):
    # t = 2 / (1 / √3) = 2√3 with 2 df; for 2 df the two-sided tail has the closed form
    # P(|T| > t) = 1 − t / √(2 + t²); half-width = t(0.975, 2) · 1 / √3 = 4.302653 / √3
    root = tmp_path / "runs"
    for k, (sup, own) in {1: (40.0, 41.0), 2: (50.0, 52.0), 3: (45.0, 48.0)}.items():
        for seed, jitter in enumerate((-0.5, 0.5)):  # seeds move both rows; only split means enter the Δ
            write_run(root, "supervised", f"synthetic-100-split{k}", seed, sup + jitter, split_of="synthetic-100",
                      split_seed=k)
            write_run(root, "unimatch", f"synthetic-100-split{k}", seed, own - jitter, split_of="synthetic-100",
                      split_seed=k)
    write_run(root, "mean_teacher", "synthetic-200-split1", 0, 60.0, split_of="synthetic-200", split_seed=1)
    write_run(root, "supervised", "synthetic-200-split1", 0, 58.5, split_of="synthetic-200", split_seed=1)
    write_run(root, "unimatch", "synthetic-200-split2", 0, 61.0, split_of="synthetic-200", split_seed=2)
    t = build_variance_table(load_results([root]))
    frames = frame(t).set_index(["split_of", "method"])
    df, df200 = frames.loc["synthetic-100"], frames.loc["synthetic-200"]
    t_stat = 2 * math.sqrt(3)
    assert df.loc["unimatch", "delta_over_splits"] == pytest.approx(2.0)
    assert df.loc["unimatch", "delta_p_value"] == pytest.approx(1 - t_stat / math.sqrt(2 + t_stat ** 2))
    assert df.loc["unimatch", "delta_halfwidth"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert df.loc["unimatch", "delta_splits"] == 3 and math.isnan(df.loc["supervised", "delta_over_splits"])
    text = render_variance(t, "markdown")
    assert "+2.00 ± 2.48, p = 0.074 n.s." in text
    # one common split: a Δ without interval or test; no common split: no Δ, and the notes say why; every row with
    # too few runs for the two components is named once
    assert df200.loc["mean_teacher", "delta_over_splits"] == pytest.approx(1.5)
    assert math.isnan(df200.loc["mean_teacher", "delta_p_value"]) and df200.loc["mean_teacher", "delta_splits"] == 1
    assert math.isnan(df200.loc["unimatch", "delta_over_splits"])
    assert "UniMatch on synthetic-200: no split seed in common with supervised" in text
    for who in ("Supervised", "Mean Teacher", "UniMatch"):
        assert text.count(f"{who} on synthetic-200: 1 split seed(s), 1 run(s)") == 1, who
    assert "on synthetic-100: 3 split seed(s)" not in text
    csv = render_variance(t, "csv").splitlines()
    assert csv[0].endswith("delta_over_splits,delta_halfwidth,delta_p_value,delta_splits")
