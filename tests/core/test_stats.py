"""Tests of the statistics core against answers from other engines.

Known answers come from
- GNU PSPP 1.6 (Debian package ``pspp``, an SPSS work-alike), run on the same
  data by ``tests/data/pspp_reference.py``; its CSV output is stored beside it
  so the comparison runs everywhere, and is re-run live when pspp is present;
- the seed paper's Table 2 recomputed from its summary numbers
  (shared/reference/stats_anchor.md), which the cohort reproduces exactly;
- statsmodels (logistic rows), scikit-learn (AUC), scipy (Mann–Whitney,
  Fisher 2 × 2) and hand calculations.
"""

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_pvm.core import schema
from napari_pvm.core.errors import StatsInputError
from napari_pvm.core.stats import analyse, detect_type, encode_outcome, format_p, merge_measurements
from napari_pvm.core.stats.compare import continuous_row, fisher_exact_rx2, mann_whitney
from napari_pvm.core.stats.logistic import hosmer_lemeshow, logistic_regression
from napari_pvm.core.stats.roc import roc_curve

DATA = Path(__file__).resolve().parents[1] / "data"
COHORT = DATA / "paper_table2_cohort.csv"
SMALL = DATA / "small_cohort.csv"
TABLE3 = ["fascia_injury", "vbq", "kyphosis_post", "cement_diffused", "ps_muscle_area", "ps_total_area", "esmf_fi_pct"]


def _load_reference_module():
    spec = importlib.util.spec_from_file_location("pspp_reference", DATA / "pspp_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REF = _load_reference_module()
num = REF.number


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort():
    return pd.read_csv(COHORT)


@pytest.fixture(scope="module")
def cohort_result():
    return analyse(
        COHORT,
        "residual_lbp",
        continuous=REF.COHORT_CONTINUOUS,
        categorical=REF.COHORT_CATEGORICAL,
        logistic=TABLE3,
        roc=REF.COHORT_ROC,
    )


@pytest.fixture(scope="module")
def small_result():
    return analyse(
        SMALL,
        "y",
        continuous=["value", "score"],
        categorical=["flag", "rare", "group3"],
        logistic=["value", "flag", "group3"],
        reference={"group3": "3"},
        roc=["score", "value"],
    )


def pspp_tables(path):
    return REF.read_pspp_csv(path)


@pytest.fixture(scope="module")
def pspp_cohort():
    return pspp_tables(DATA / "pspp_cohort.csv")


@pytest.fixture(scope="module")
def pspp_small():
    return pspp_tables(DATA / "pspp_small.csv")


def titled(tables, title):
    return [rows for t, rows in tables if t == title]


def by_var(table, name):
    return table.set_index("variable").loc[name]


# --------------------------------------------------------------------------
# PSPP output readers (one per table kind)
# --------------------------------------------------------------------------


def pspp_ttest(tables):
    out = {}
    for rows in titled(tables, "Independent Samples Test"):
        var = None
        for r in rows[3:]:
            var = r[0] or var
            kind = "student" if r[1].startswith("Equal variances assumed") else "welch"
            out[(var, kind)] = [num(x) for x in r[2:]]
    return out


def pspp_chisq(tables):
    out, var = {}, None
    for title, rows in tables:
        if " × " in title:
            var = title.split(" × ")[0]
        elif title == "Chi-Square Tests":
            out[var] = {r[0]: [num(x) for x in r[1:]] for r in rows[1:]}
    return out


def pspp_mw(tables):
    rows = titled(tables, "Test Statistics")[0]
    return {r[0]: [num(x) for x in r[1:]] for r in rows[1:]}


def pspp_percentiles(tables):
    out = {}
    for rows in titled(tables, "Percentiles"):
        grouped = rows[0][1] != ""
        var = group = None
        for r in rows[2:]:
            var = r[0] or var
            if grouped:
                group = r[1] or group
                label, values = r[2], r[3:]
            else:
                label, values = r[1], r[2:]
            if label == "Weighted Average" and grouped:
                out[(var, int(group))] = [num(x) for x in values]
    return out


def pspp_logistic(tables):
    rows = titled(tables, "Variables in the Equation")[0]
    coef = {r[1]: [num(x) for x in r[2:]] for r in rows[2:]}
    summary = [num(x) for x in titled(tables, "Model Summary")[0][1][1:]]
    cls = titled(tables, "Classification Table")[0]
    counts = [[int(num(cls[3][3])), int(num(cls[3][4]))], [int(num(cls[4][3])), int(num(cls[4][4]))]]
    return coef, summary, counts


def pspp_auc(tables):
    out = []
    for rows in titled(tables, "Area Under the Curve"):
        for r in rows[2:]:
            out.append((r[0], [num(x) if x != "NaN" else math.nan for x in r[1:]]))
    return out


def pspp_coordinates(tables):
    out = {}
    for rows in titled(tables, "Coordinates of the Curve"):
        var = None
        for r in rows[1:]:
            var = r[0] or var
            out.setdefault(var, []).append([num(x) for x in r[1:]])
    return {k: np.array(v) for k, v in out.items()}


# --------------------------------------------------------------------------
# Table 2 against the paper's own summary numbers (stats_anchor.md, Part 1)
# --------------------------------------------------------------------------

#: Student t recomputed from the published means, SDs and n (stats_anchor.md).
ANCHOR_STUDENT_T = {
    "age": -1.345,
    "bmi": 0.266,
    "vbq": -10.533,
    "kyphosis_pre": -9.961,
    "kyphosis_post": -9.172,
    "kyphosis_last": -12.568,
    "cement_volume": 4.422,
    "ps_total_area": 7.158,
    "ps_muscle_area": 5.893,
    "ps_fi_pct": -1.041,
    "esmf_total_area": -0.436,
    "esmf_muscle_area": 3.342,
    "esmf_fi_pct": -4.943,
    "vas_pre": -1.498,
    "vas_post": -2.959,
    "vas_last": -16.629,
}
#: Pearson chi-square (no continuity correction) from the published counts.
ANCHOR_CHI2 = {
    "sex_male": 0.186,
    "diabetes": 0.561,
    "hypertension": 0.067,
    "smoking": 0.304,
    "alcohol": 0.016,
    "trauma_severity": 0.348,
    "fascia_injury": 8.263,
    "fracture_level": 3.565,
    "cement_diffused": 10.917,
}
#: Welch t (df) from the anchor's table.
ANCHOR_WELCH = {
    "age": (-1.240, 35.4),
    "bmi": (0.210, 32.8),
    "vbq": (-7.816, 31.9),
    "kyphosis_last": (-10.229, 33.2),
    "cement_volume": (3.300, 32.0),
    "esmf_muscle_area": (5.131, 64.2),
    "esmf_fi_pct": (-9.143, 104.8),
}


def test_student_t_reproduces_table2_anchor(cohort_result):
    table = cohort_result.comparison.table
    for name, t in ANCHOR_STUDENT_T.items():
        row = by_var(table, name)
        assert round(row["student_t"], 3) == pytest.approx(t, abs=1e-9), name
        assert row["student_df"] == 211


def test_pearson_chi2_reproduces_table2_anchor(cohort_result):
    table = cohort_result.comparison.table
    for name, chi2 in ANCHOR_CHI2.items():
        assert round(by_var(table, name)["chi2"], 3) == pytest.approx(chi2, abs=1e-9), name
    assert by_var(table, "trauma_severity")["df"] == 2
    assert by_var(table, "sex_male")["p"] == pytest.approx(0.666, abs=5e-4)  # not the paper's copied 0.840


def test_welch_reproduces_anchor(cohort_result):
    table = cohort_result.comparison.table
    for name, (t, df) in ANCHOR_WELCH.items():
        row = by_var(table, name)
        assert round(row["welch_t"], 3) == pytest.approx(t, abs=1e-9), name
        assert round(row["welch_df"], 1) == pytest.approx(df, abs=1e-9), name


def test_roc_reproduces_anchor(cohort_result):
    roc = cohort_result.roc.table.set_index("variable")
    ps, fi = roc.loc["ps_total_area"], roc.loc["esmf_fi_pct"]
    assert ps["direction"] == "<=" and fi["direction"] == ">="
    assert round(ps["auc"], 3) == 0.851 and round(fi["auc"], 3) == 0.812
    assert round(ps["cutoff"], 3) == 11.271 and round(fi["cutoff"], 3) == 47.458
    assert (ps["tp"], ps["tp"] + ps["fn"], ps["tn"], ps["tn"] + ps["fp"]) == (22, 29, 164, 184)
    assert (fi["tp"], fi["tn"]) == (28, 126)


# --------------------------------------------------------------------------
# Against PSPP (stored output; re-run live below)
# --------------------------------------------------------------------------


def check_ttests(table, reference, names):
    for name in names:
        row = by_var(table, name)
        st = reference[(name, "student")]
        we = reference[(name, "welch")]
        # F, Sig., t, df, Sig. (2-tailed), Mean Difference, Std. Error Difference, Lower, Upper
        assert row["levene_f"] == pytest.approx(st[0], rel=1e-9)
        assert row["levene_p"] == pytest.approx(st[1], rel=1e-9, abs=1e-15)
        for kind, ref in (("student", st), ("welch", we)):
            assert row[f"{kind}_t"] == pytest.approx(ref[2], rel=1e-9)
            assert row[f"{kind}_df"] == pytest.approx(ref[3], rel=1e-9)
            assert row[f"{kind}_p"] == pytest.approx(ref[4], rel=1e-7, abs=1e-15)
            assert row["mean_diff"] == pytest.approx(ref[5], rel=1e-9)
            assert row[f"{kind}_se"] == pytest.approx(ref[6], rel=1e-9)
            assert row[f"{kind}_ci_low"] == pytest.approx(ref[7], rel=1e-9)
            assert row[f"{kind}_ci_high"] == pytest.approx(ref[8], rel=1e-9)


def test_ttest_and_levene_equal_pspp(cohort_result, pspp_cohort):
    check_ttests(cohort_result.comparison.table, pspp_ttest(pspp_cohort), REF.COHORT_CONTINUOUS)


def check_chisq(table, reference, names, data):
    from scipy import stats as scipy_stats

    def crosstab(name):
        return pd.crosstab(data[name], data[data.columns[1]]).to_numpy()

    for name in names:
        row, ref = by_var(table, name), reference[name]
        assert row["chi2"] == pytest.approx(ref["Pearson Chi-Square"][0], rel=1e-9)
        assert row["df"] == ref["Pearson Chi-Square"][1]
        assert row["p"] == pytest.approx(ref["Pearson Chi-Square"][2], rel=1e-9)
        assert row["lr_chi2"] == pytest.approx(ref["Likelihood Ratio"][0], rel=1e-9)
        if "Fisher's Exact Test" in ref:  # 2 × 2
            assert row["yates_chi2"] == pytest.approx(ref["Continuity Correction"][0], rel=1e-9)
            assert row["yates_p"] == pytest.approx(ref["Continuity Correction"][2], rel=1e-9)
            # PSPP 1.6's two-sided Fisher P is not SPSS's rule (the sum over
            # tables no more probable than the observed one); it differs by up
            # to 3e-4 here. The rule is checked against scipy instead.
            assert row["fisher_p"] == pytest.approx(ref["Fisher's Exact Test"][3], abs=5e-4)
            assert row["fisher_p"] == pytest.approx(scipy_stats.fisher_exact(crosstab(name)).pvalue, rel=1e-12)


def test_crosstabs_equal_pspp(cohort_result, pspp_cohort, cohort):
    check_chisq(cohort_result.comparison.table, pspp_chisq(pspp_cohort), REF.COHORT_CATEGORICAL, cohort)


def check_mw(table, reference, names):
    for name in names:
        row = by_var(table, name)
        u, _, z, p = reference[name]
        assert row["mannwhitney_u"] == pytest.approx(u, abs=1e-9)
        assert row["mannwhitney_z"] == pytest.approx(z, rel=1e-9)
        assert row["mannwhitney_p"] == pytest.approx(p, rel=1e-7, abs=1e-15)


def test_mann_whitney_equals_pspp_and_scipy(cohort_result, pspp_cohort, cohort):
    from scipy import stats

    check_mw(cohort_result.comparison.table, pspp_mw(pspp_cohort), REF.COHORT_CONTINUOUS)
    for name in REF.COHORT_CONTINUOUS:
        a = cohort.loc[cohort.residual_lbp == 0, name]
        b = cohort.loc[cohort.residual_lbp == 1, name]
        ref = stats.mannwhitneyu(a, b, method="asymptotic", use_continuity=False)
        row = by_var(cohort_result.comparison.table, name)
        assert row["mannwhitney_p"] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
        assert row["mannwhitney_u"] == min(ref.statistic, len(a) * len(b) - ref.statistic)


def test_quartiles_equal_pspp_examine(cohort_result, pspp_cohort):
    table = cohort_result.comparison.table
    for (name, g), (q1, med, q3) in pspp_percentiles(pspp_cohort).items():
        row = by_var(table, name)
        assert row[f"q1_{g}"] == pytest.approx(q1, rel=1e-12)
        assert row[f"median_{g}"] == pytest.approx(med, rel=1e-12)
        assert row[f"q3_{g}"] == pytest.approx(q3, rel=1e-12)


def check_logistic(result, tables, names):
    coef, summary, counts = pspp_logistic(tables)
    rows = result.rows.set_index("variable")
    for ours, theirs in names.items():
        b, se, wald, df, p, exp_b, lo, hi = coef[theirs]
        row = rows.loc[ours]
        # PSPP, like SPSS, stops when no B changes by more than .001 (BCON);
        # statsmodels iterates to full convergence. The difference is far
        # below display precision (3 decimals) but not below 1e-6.
        assert row["B"] == pytest.approx(b, rel=1e-5)
        assert row["SE"] == pytest.approx(se, rel=2e-5)
        assert row["wald"] == pytest.approx(wald, rel=5e-5)
        assert row["df"] == df
        assert row["p"] == pytest.approx(p, rel=1e-4)
        assert row["OR"] == pytest.approx(exp_b, rel=1e-5)
        if lo is not None:
            assert row["ci_low"] == pytest.approx(lo, rel=1e-4)
            assert row["ci_high"] == pytest.approx(hi, rel=1e-4)
        for v, ref in ((row["B"], b), (row["SE"], se), (row["wald"], wald), (row["p"], p)):
            assert round(v, 3) == round(ref, 3)
    s = result.summary
    assert s["minus2ll"] == pytest.approx(summary[0], rel=1e-8)
    assert s["cox_snell_r2"] == pytest.approx(summary[1], rel=1e-7)
    assert s["nagelkerke_r2"] == pytest.approx(summary[2], rel=1e-7)
    cls = result.classification
    assert cls.loc[0, ["predicted_0", "predicted_1"]].tolist() == counts[0]
    assert cls.loc[1, ["predicted_0", "predicted_1"]].tolist() == counts[1]
    return coef


def test_logistic_equals_pspp(cohort_result, pspp_cohort):
    names = {n: n for n in TABLE3} | {"Constant": "Constant"}
    check_logistic(cohort_result.logistic, pspp_cohort, names)
    s = cohort_result.logistic.summary
    assert (s["n"], s["events"]) == (213, 29)
    assert s["epv"] == pytest.approx(29 / 7)


def test_logistic_rows_equal_statsmodels(cohort_result, cohort):
    import statsmodels.api as sm

    X = sm.add_constant(cohort[TABLE3].astype(float))
    fit = sm.Logit(cohort["residual_lbp"], X).fit(disp=False)
    rows = cohort_result.logistic.rows.set_index("variable")
    ci = np.exp(fit.conf_int())
    for name in TABLE3 + ["Constant"]:
        key = "const" if name == "Constant" else name
        row = rows.loc[name]
        assert row["B"] == pytest.approx(fit.params[key], rel=1e-7)
        assert row["SE"] == pytest.approx(fit.bse[key], rel=1e-7)
        assert row["wald"] == pytest.approx(fit.tvalues[key] ** 2, rel=1e-7)
        assert row["p"] == pytest.approx(fit.pvalues[key], rel=1e-7)
        assert row["OR"] == pytest.approx(math.exp(fit.params[key]), rel=1e-7)
        assert row["ci_low"] == pytest.approx(ci.loc[key, 0], rel=1e-7)
        assert row["ci_high"] == pytest.approx(ci.loc[key, 1], rel=1e-7)


def test_roc_equals_pspp(cohort_result, pspp_cohort, cohort):
    aucs = pspp_auc(pspp_cohort)
    roc = cohort_result.roc.table.set_index("variable")
    # PSPP's default is "larger values positive"; ps_total_area works the other way.
    (n1, large1), (n2, large2), (n3, small) = aucs
    assert (n1, n2, n3) == ("ps_total_area", "esmf_fi_pct", "ps_total_area")
    ps, fi = roc.loc["ps_total_area"], roc.loc["esmf_fi_pct"]
    assert ps["auc"] == pytest.approx(1 - large1[0], rel=1e-12)
    assert ps["auc"] == pytest.approx(small[0], rel=1e-12)
    assert fi["auc"] == pytest.approx(large2[0], rel=1e-12)
    # The nonparametric SE does not depend on the direction. (PSPP prints NaN
    # for it with TESTPOS(SMALL), and its "95%" interval is AUC ± 1.645 SE.)
    assert ps["auc_se"] == pytest.approx(large1[1], rel=1e-9)
    assert fi["auc_se"] == pytest.approx(large2[1], rel=1e-9)
    assert math.isnan(small[1])
    assert large2[4] - large2[0] == pytest.approx(1.6448536 * large2[1], rel=1e-6)
    assert fi["auc_ci_high"] - fi["auc"] == pytest.approx(1.959964 * fi["auc_se"], rel=1e-6)
    assert ps["auc_p"] == pytest.approx(large1[2], rel=1e-7)
    assert fi["auc_p"] == pytest.approx(large2[2], rel=1e-7)
    # Coordinates of the curve. PSPP 1.6 takes midpoints of consecutive cases
    # in *file* order (SPSS: of consecutive sorted values), so its cut-offs
    # differ; the classification between two adjacent observed values is the
    # same wherever the cut-off lies, so compare sensitivity and specificity
    # interval by interval.
    coords = pspp_coordinates(pspp_cohort)
    for name in REF.COHORT_ROC:
        check_coordinates(cohort[name], cohort["residual_lbp"], coords[name])
    x = cohort["ps_total_area"].to_numpy()
    mids = [(a + b) / 2 for a, b in zip(x[:-1], x[1:], strict=True) if a != b]
    file_order = np.unique(np.r_[x.min() - 1, x.max() + 1, mids])
    np.testing.assert_allclose(file_order, np.sort(coords["ps_total_area"][:, 0]), rtol=1e-13)


def check_coordinates(x, y, reference):
    """Our ">=" coordinates against PSPP's rows (cut-off, sensitivity, 1 − specificity)."""
    x = np.asarray(x, float)
    ours = roc_curve(x, y, direction=">=")["coordinates"]
    values = np.unique(x)
    # Index of the interval (between adjacent distinct values) of each cut-off.
    ours_idx = np.searchsorted(values, ours["cutoff"].to_numpy())
    ref_idx = np.searchsorted(values, reference[:, 0])
    assert len(np.unique(ours_idx)) == len(ours)
    lookup = dict(zip(ours_idx, zip(ours["sensitivity"], 1 - ours["specificity"], strict=True), strict=True))
    # A file-order "midpoint" can equal an observed value (between 3 and 5 in
    # file order: 4); PSPP then counts that value as negative. SPSS's
    # midpoints never equal an observed value, so those rows are skipped.
    between = ~np.isin(reference[:, 0], values)
    assert between.sum() >= len(reference) - len(values)
    for k, (_, sens, fpr) in zip(ref_idx[between], reference[between], strict=True):
        assert lookup[k] == pytest.approx((sens, fpr), abs=1e-13)


def test_auc_equals_sklearn(cohort, small_result):
    from sklearn.metrics import roc_auc_score

    for name in REF.COHORT_ROC:
        r = roc_curve(cohort[name], cohort["residual_lbp"])
        sk = roc_auc_score(cohort["residual_lbp"], cohort[name])
        assert r["auc"] == pytest.approx(max(sk, 1 - sk), rel=1e-12)
    small = pd.read_csv(SMALL)
    for name in ("score", "value"):  # score has many ties
        keep = small[name].notna()
        sk = roc_auc_score(small.loc[keep, "y"], small.loc[keep, name])
        auc = by_var(small_result.roc.table, name)["auc"]
        assert auc == pytest.approx(max(sk, 1 - sk), rel=1e-12)


def test_small_data_equals_pspp(small_result, pspp_small):
    """Missing values, tied scores, a 3-level covariate, small expected counts."""
    table = small_result.comparison.table
    check_ttests(table, pspp_ttest(pspp_small), ["value", "score"])
    check_mw(table, pspp_mw(pspp_small), ["value", "score"])
    check_chisq(table, pspp_chisq(pspp_small), ["flag", "rare", "group3"], pd.read_csv(SMALL))
    assert by_var(table, "value")["n_missing"] == 2
    for (name, g), (q1, med, q3) in pspp_percentiles(pspp_small).items():
        row = by_var(table, name)
        assert (row[f"q1_{g}"], row[f"median_{g}"], row[f"q3_{g}"]) == pytest.approx((q1, med, q3), rel=1e-12)
    # Logistic with an indicator-coded covariate; PSPP's reference is the last level.
    lg = small_result.logistic
    check_logistic(
        lg,
        pspp_small,
        {"value": "value", "flag": "flag", "group3[1]": "group3(1)", "group3[2]": "group3(2)", "Constant": "Constant"},
    )
    coef = pspp_logistic(pspp_small)[0]
    term = lg.terms.set_index("variable").loc["group3"]
    assert term["wald"] == pytest.approx(coef["group3"][2], rel=5e-5)
    assert term["df"] == 2
    assert lg.summary["n"] == 38 and lg.summary["n_missing"] == 2
    # ROC with ties (score) and with a missing value (value).
    roc = small_result.roc.table.set_index("variable")
    aucs = dict(pspp_auc(pspp_small))
    assert roc.loc["score", "auc"] == pytest.approx(aucs["score"][0], rel=1e-12)
    assert roc.loc["score", "auc_se"] == pytest.approx(aucs["score"][1], rel=1e-9)
    assert roc.loc["value", "direction"] == "<="
    assert roc.loc["value", "auc"] == pytest.approx(1 - aucs["value"][0], rel=1e-12)
    assert roc.loc["value", "auc_se"] == pytest.approx(aucs["value"][1], rel=1e-9)
    coords = pspp_coordinates(pspp_small)
    small = pd.read_csv(SMALL)
    for name in ("score", "value"):
        keep = small[name].notna()
        check_coordinates(small.loc[keep, name], small.loc[keep, "y"], coords[name])


@pytest.mark.skipif(shutil.which("pspp") is None, reason="pspp (Debian package 'pspp') is not installed")
def test_live_pspp_rerun_matches_stored(tmp_path):
    """Re-run PSPP; its output must equal the stored reference files."""
    REF.run(tmp_path)
    for stem in ("pspp_cohort", "pspp_small"):
        fresh = REF.read_pspp_csv(tmp_path / f"{stem}.csv")
        stored = REF.read_pspp_csv(DATA / f"{stem}.csv")
        assert [t for t, _ in fresh] == [t for t, _ in stored]
        for (_, a), (_, b) in zip(fresh, stored, strict=True):
            assert len(a) == len(b)
            for ra, rb in zip(a, b, strict=True):
                for x, y in zip(ra, rb, strict=True):
                    try:
                        fx, fy = float(x), float(y)
                    except ValueError:
                        assert x == y
                    else:
                        assert fx == pytest.approx(fy, rel=1e-10, abs=1e-14) or (math.isnan(fx) and math.isnan(fy))


# --------------------------------------------------------------------------
# Hand-computed answers
# --------------------------------------------------------------------------


def test_mann_whitney_by_hand():
    # Ranks 1..3 vs 4..7: U = 0; var = 3·4/(7·6) · (7³ − 7)/12 = 8; Z = −6/√8.
    r = mann_whitney([1, 2, 3], [4, 5, 6, 7])
    assert r["u"] == 0 and r["u_1"] == 12
    assert r["z"] == pytest.approx(-6 / math.sqrt(8))
    assert r["p"] == pytest.approx(0.033894853524689, rel=1e-9)
    # With ties: 1, 2, 2 | 2, 3. Ranks 1, 3, 3 | 3, 5; U0 = 7 − 6 = 1, U1 = 8 − 3 = 5.
    # Tie term: one triple, (27 − 3) = 24. var = 6/20 · ((125 − 5)/12 − 24/12) = 2.4.
    r = mann_whitney([1, 2, 2], [2, 3])
    assert (r["u"], r["u_0"], r["u_1"]) == (1.0, 1.0, 5.0)
    assert r["z"] == pytest.approx((1 - 3) / math.sqrt(2.4))


def test_shapiro_wilk_known_value():
    # Shapiro & Wilk (1965) weights of 11 men: W = 0.79; R's shapiro.test gives
    # W = 0.78881, p = 0.006704 (Royston's algorithm, as SPSS).
    weights = [148, 154, 158, 160, 161, 162, 166, 170, 182, 195, 236]
    row, _ = continuous_row(weights, [1.0, 2.0, 4.0, 8.0])
    assert row["shapiro_w_0"] == pytest.approx(0.78881, abs=1e-5)
    assert row["shapiro_p_0"] == pytest.approx(0.006704, abs=1e-6)
    assert row["test"] == "mannwhitney"


def test_levene_is_mean_centred_by_hand():
    a = np.array([1.0, 2.0, 4.0, 9.0, 3.0])
    b = np.array([2.0, 2.5, 3.0, 3.5, 2.0, 8.0])
    row, _ = continuous_row(a, b)
    da, db = np.abs(a - a.mean()), np.abs(b - b.mean())
    allz = np.r_[da, db]
    between = len(da) * (da.mean() - allz.mean()) ** 2 + len(db) * (db.mean() - allz.mean()) ** 2
    within = ((da - da.mean()) ** 2).sum() + ((db - db.mean()) ** 2).sum()
    f = between / (within / (len(allz) - 2))
    assert row["levene_f"] == pytest.approx(f, rel=1e-12)


def test_student_t_sign_and_ci_by_hand():
    a, b = np.array([5.0, 6.0, 7.0]), np.array([1.0, 2.0, 3.0, 2.0])
    row, _ = continuous_row(a, b)
    sp2 = (2 * 1.0 + 3 * np.var(b, ddof=1)) / 5
    se = math.sqrt(sp2 * (1 / 3 + 1 / 4))
    assert row["student_t"] == pytest.approx((6 - 2) / se)  # group 0 minus group 1
    assert row["mean_diff"] == 4
    assert row["student_ci_high"] - 4 == pytest.approx(2.570581835636314 * se, rel=1e-9)


@pytest.mark.parametrize(
    "a, b, test",
    [
        (np.linspace(-1.5, 1.5, 30), np.linspace(-1.4, 1.6, 25), "student"),
        (np.linspace(-1.5, 1.5, 30), 8 * np.linspace(-1.5, 1.5, 25), "welch"),
        (np.exp(np.linspace(0, 5, 30)), np.linspace(0, 1, 25), "mannwhitney"),
    ],
)
def test_test_choice_rule(a, b, test):
    row, _ = continuous_row(a, b)
    assert row["test"] == test
    assert row["p"] == row[{"student": "student_p", "welch": "welch_p", "mannwhitney": "mannwhitney_p"}[test]]
    if test == "welch":
        assert row["mean_diff_ci_from"] == "welch"


def test_fisher_2x2_equals_scipy():
    from scipy import stats

    for table in ([[3, 1], [1, 3]], [[24, 9], [1, 6]], [[157, 25], [27, 4]], [[0, 5], [6, 0]], [[10, 10], [10, 10]]):
        p, method = fisher_exact_rx2(table)
        assert method == "exact"
        assert p == pytest.approx(stats.fisher_exact(table).pvalue, rel=1e-12)


def test_fisher_rx2_by_hand_and_resampled():
    # Rows (1, 1), (1, 0), (0, 1): margins rows 2, 1, 1; column totals 2, 2.
    # Tables with x = first-column counts (x1, x2, x3), x1 + x2 + x3 = 2:
    # P = C(2,x1)C(1,x2)C(1,x3)/C(4,2): (2,0,0) 1/6, (1,1,0) 2/6, (1,0,1) 2/6, (0,1,1) 1/6.
    # Observed (1,1,0) has 2/6; every table is as or less likely: P = 1.
    p, _ = fisher_exact_rx2([[1, 1], [1, 0], [0, 1]])
    assert p == pytest.approx(1.0)
    p, _ = fisher_exact_rx2([[2, 0], [0, 1], [0, 1]])  # 1/6 + 1/6 (the two least likely tables)
    assert p == pytest.approx(2 / 6)
    table = [[11, 1], [156, 22], [17, 6]]  # the paper's fracture level
    exact, method = fisher_exact_rx2(table)
    assert method == "exact"
    resampled, how = fisher_exact_rx2(table, max_tables=10, resamples=20_000, seed=3)
    assert how == "resampled (20000 tables, seed 3)"
    assert resampled == fisher_exact_rx2(table, max_tables=10, resamples=20_000, seed=3)[0]
    assert resampled == pytest.approx(exact, abs=0.01)


def test_youden_cutoff_by_hand():
    # x: 1 2 3 4 5 6 with y 0 0 1 0 1 1; cut-offs 0, 1.5, 2.5, 3.5, 4.5, 5.5, 7.
    # ">=": at 2.5 sens 3/3, spec 2/3 (J 2/3); at 4.5 sens 2/3, spec 3/3 (J 2/3):
    # a tie, and the lower cut-off wins.
    r = roc_curve([1, 2, 3, 4, 5, 6], [0, 0, 1, 0, 1, 1])
    assert r["direction"] == ">=" and r["auc"] == pytest.approx(8 / 9)
    assert r["coordinates"]["cutoff"].tolist() == [0, 1.5, 2.5, 3.5, 4.5, 5.5, 7]
    assert (r["cutoff"], r["sensitivity"], r["specificity"]) == (2.5, 1.0, pytest.approx(2 / 3))
    assert r["n_tied_maxima"] == 2
    # "<=": lower values predict the event. x 10 12 12 15 20 | y 1 1 0 0 0.
    # Cut-offs 9, 11, 13.5, 17.5, 21. At 13.5: sens 2/2, spec 2/3 (J 2/3); at 11: 1/2, 3/3 (J 1/2).
    r = roc_curve([10, 12, 12, 15, 20], [1, 1, 0, 0, 0])
    assert r["direction"] == "<="
    assert r["auc"] == pytest.approx((3 + 2.5) / 6)  # tie at 12 counts ½
    assert (r["cutoff"], r["tp"], r["fn"], r["tn"], r["fp"]) == (13.5, 2, 0, 2, 1)


def test_hosmer_lemeshow_by_hand():
    # 20 patients, distinct probabilities → 10 groups of 2 (sorted).
    p = np.linspace(0.05, 0.95, 20)
    y = np.array([0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1])
    hl = hosmer_lemeshow(y, p)
    chi2 = 0.0
    for k in range(10):
        o = y[2 * k : 2 * k + 2].sum()
        e = p[2 * k : 2 * k + 2].sum()
        chi2 += (o - e) ** 2 / (e * (1 - e / 2))
    assert hl["df"] == 8 and len(hl["groups"]) == 10
    assert hl["chi2"] == pytest.approx(chi2, rel=1e-12)
    # Tied probabilities are never split: 4 blocks of 5 give 4 groups.
    hl = hosmer_lemeshow(y, np.repeat([0.2, 0.4, 0.6, 0.8], 5))
    assert hl["groups"]["n"].tolist() == [5, 5, 5, 5] and hl["df"] == 2


# --------------------------------------------------------------------------
# Logistic regression: separation, collinearity, EPV
# --------------------------------------------------------------------------


def _frame(**cols):
    return pd.DataFrame(cols)


def test_complete_separation_is_reported_not_fitted():
    x = np.arange(20, dtype=float)
    y = (x >= 10).astype(int)
    res = logistic_regression(_frame(x=x), pd.Series(y), ["x"])
    assert res.summary["separation"] == "complete"
    assert res.rows[["B", "OR"]].isna().all().all()
    assert any("complete separation" in w and "x" in w for w in res.warnings)


def test_quasi_complete_separation_is_reported():
    rng = np.random.default_rng(1)
    z = rng.normal(size=40)
    flag = np.r_[np.ones(8), np.zeros(32)]
    y = np.r_[np.ones(8), (rng.random(32) < 0.4).astype(float)]  # flag = 1 → always an event
    res = logistic_regression(_frame(flag=flag, z=z), pd.Series(y.astype(int)), ["flag", "z"])
    assert res.summary["separation"] == "quasi-complete"
    assert res.rows["B"].isna().all()
    assert any("quasi-complete separation" in w and "flag" in w for w in res.warnings)


def test_collinearity_reported():
    rng = np.random.default_rng(2)
    a = rng.normal(size=60)
    y = pd.Series((rng.random(60) < 1 / (1 + np.exp(-a))).astype(int))
    exact = logistic_regression(_frame(a=a, b=2 * a + 1), y, ["a", "b"])
    assert exact.rows["B"].isna().all()
    assert any("perfectly collinear" in w for w in exact.warnings)
    near = logistic_regression(_frame(a=a, b=a + rng.normal(scale=0.1, size=60)), y, ["a", "b"])
    assert near.rows.loc[0, "vif"] > 5
    assert any("strong collinearity" in w and "VIF" in w for w in near.warnings)
    assert not near.rows["B"].isna().any()


def test_events_per_variable_warning():
    rng = np.random.default_rng(3)
    x = rng.normal(size=200)
    y = pd.Series((rng.random(200) < 1 / (1 + np.exp(-x))).astype(int))
    assert not any("events per variable" in w for w in logistic_regression(_frame(x=x), y, ["x"]).warnings)
    few = logistic_regression(_frame(x=x[:16]), y[:16], ["x"])
    assert few.summary["epv"] == min(y[:16].sum(), 16 - y[:16].sum())
    assert few.summary["epv"] < 10 and any("events per variable" in w for w in few.warnings)


# --------------------------------------------------------------------------
# Inputs, types, outcome coding, bad input
# --------------------------------------------------------------------------


def test_format_p():
    assert format_p(0.0009999) == "<0.001"
    assert format_p(0.001) == "0.001"
    assert format_p(0.04449) == "0.044"
    assert format_p(float("nan")) == "–"


def test_detect_type():
    assert detect_type(pd.Series(["0", "1", "0", None]))[0] == "categorical"
    assert detect_type(pd.Series(["1", "2", "3", "2"]))[0] == "categorical"
    assert detect_type(pd.Series([str(v) for v in np.linspace(0, 10, 30)]))[0] == "continuous"
    assert detect_type(pd.Series(["a", "b", "a"]))[0] == "categorical"
    assert detect_type(pd.Series(["5", "5", "5"]))[0] is None
    kind, reason = detect_type(pd.Series(["1.5", "2.5", "3.5", "4.5", "x"]))
    assert kind is None and "'x'" in reason


def test_encode_outcome():
    y, info = encode_outcome(pd.Series(["yes", "no", None, "yes"]))
    assert y.tolist()[:2] == [1.0, 0.0] and info == {"event": "yes", "non_event": "no", "n_missing": 1}
    y, info = encode_outcome(pd.Series([1.0, 0.0, 1.0]))
    assert info["event"] == "1"
    y, info = encode_outcome(pd.Series(["A", "B", "B"]), event="b")
    assert y.tolist() == [0.0, 1.0, 1.0]
    with pytest.raises(StatsInputError, match="--event"):
        encode_outcome(pd.Series(["A", "B"]))
    with pytest.raises(StatsInputError, match="one class"):
        encode_outcome(pd.Series([1, 1, 1]))
    with pytest.raises(StatsInputError, match="3 different values"):
        encode_outcome(pd.Series([0, 1, 2]))
    with pytest.raises(StatsInputError, match="not a value"):
        encode_outcome(pd.Series([0, 1]), event=2)


def _table(n=12, **extra):
    rng = np.random.default_rng(5)
    t = pd.DataFrame(
        {"patient_id": [f"{i:03d}" for i in range(n)], "out": [0, 1] * (n // 2), "x": np.round(rng.normal(10, 2, n), 3)}
    )
    for k, v in extra.items():
        t[k] = v
    return t


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"continuous": ["x", "const"]}, "no variance"),
        ({"continuous": ["bad"]}, r"non-numeric value.*'abc' \(patient 003\)"),
        ({"continuous": ["nope"]}, "no such column in the table: 'nope'"),
        ({"continuous": ["xx"]}, "did you mean 'x'"),
        ({"roc": ["const"]}, "no variance"),
        ({"logistic": ["x", "const"]}, "no variance"),
        ({"continuous": ["x"], "categorical": ["x"]}, "both continuous and categorical"),
    ],
)
def test_bad_variables(kwargs, message):
    bad = ["1.5"] * 12
    bad[3] = "abc"
    t = _table(const=[4.0] * 12, bad=bad)
    with pytest.raises(StatsInputError, match=message):
        analyse(t, "out", **kwargs)


def test_bad_outcomes_and_too_few_patients():
    t = _table()
    with pytest.raises(StatsInputError, match="one class"):
        analyse(t.assign(out=1), "out")
    with pytest.raises(StatsInputError, match="exactly two"):
        analyse(t.assign(out=np.arange(12) % 3), "out")
    with pytest.raises(StatsInputError, match="too few patients"):
        analyse(t.assign(out=[1] + [0] * 11), "out")
    with pytest.raises(StatsInputError, match="unique"):
        analyse(t.assign(patient_id="P1"), "out")


def test_missing_values_are_counted_per_analysis():
    x = _table()["x"].to_numpy().copy()
    x[[0, 5]] = np.nan
    t = _table(x2=x, g=["a", "b", None] * 4)
    out = t["out"].astype(object).copy()
    out[7] = None
    t["out"] = out
    res = analyse(t, "out", continuous=["x2"], categorical=["g"], roc=["x2"], logistic=["x2"])
    assert res.outcome["n_missing"] == 1 and res.outcome["n"] == 11
    assert by_var(res.comparison.table, "x2")["n_missing"] == 2
    assert by_var(res.comparison.table, "g")["n_missing"] == 4 - (1 if 7 % 3 == 2 else 0)
    assert by_var(res.roc.table, "x2")["n_missing"] == 2
    assert res.logistic.summary["n_missing"] == 2
    text = " ".join(res.warnings)
    assert "without a value of out" in text and "x2: 2 patient(s) with a missing value left out" in text


def test_excel_table(tmp_path):
    import zipfile

    garbage = tmp_path / "garbage.xlsx"
    garbage.write_bytes(b"not a workbook")
    with pytest.raises(StatsInputError, match="not a readable Excel workbook"):
        analyse(garbage, "out")
    path = tmp_path / "table.xlsx"
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        with zipfile.ZipFile(path, "w") as z:  # enough for pandas to pick openpyxl
            z.writestr("xl/workbook.xml", "<workbook/>")
            z.writestr("[Content_Types].xml", "<Types/>")
        with pytest.raises(StatsInputError, match="openpyxl"):
            analyse(path, "out")
        return
    _table().to_excel(path, index=False)
    res = analyse(path, "out", continuous=["x"])
    assert res.outcome["n"] == 12 and res.data["patient_id"].iloc[0] == "000"


def test_auto_detection_skips_unusable_columns_with_a_warning():
    t = _table(note=[f"free text {i}" for i in range(12)], const=["L4"] * 12, typo=["1.5", "2.5", "3,5"] + ["4.5"] * 9)
    res = analyse(t, "out")
    assert res.types == {"x": "continuous"}
    joined = " ".join(res.warnings)
    for col in ("note", "const", "typo"):
        assert f"{col} left out of the comparison" in joined


def test_result_json_is_complete_and_has_no_nan(small_result):
    d = small_result.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["outcome"]["n"] == 40
    value = next(c for c in d["comparison"] if c["variable"] == "value")
    for key in ("mean", "sd", "n", "shapiro_p"):
        assert isinstance(value[key], list) and len(value[key]) == 2
    for key in (
        "levene_p",
        "student_t",
        "student_p",
        "welch_t",
        "welch_df",
        "welch_p",
        "mannwhitney_u",
        "mannwhitney_p",
        "test",
        "p",
    ):
        assert key in value
    rare = next(c for c in d["comparison"] if c["variable"] == "rare")
    assert {"chi2", "df", "p", "fisher_p"} <= set(rare) and rare["fisher_p"] is not None
    assert set(d["logistic"]["rows"][0]) >= {"variable", "B", "SE", "wald", "p", "OR", "ci_low", "ci_high"}
    wanted = {"n", "events", "warnings", "minus2ll", "nagelkerke_r2", "hosmer_lemeshow", "classification"}
    assert wanted <= set(d["logistic"])
    roc = d["roc"][0]
    assert {"variable", "auc", "auc_ci", "direction", "cutoff", "sensitivity", "specificity"} <= set(roc)
    assert 0 <= roc["sensitivity"] <= 1


# --------------------------------------------------------------------------
# Merge with the shared measurement CSV (through napari_pvm.core.store)
# --------------------------------------------------------------------------

_AREAS = {
    "PS_L": (10.0, 0.8),
    "PS_R": (9.8, 0.7),
    "ES_L": (14.0, 3.0),
    "ES_R": (15.0, 2.9),
    "MF_L": (5.3, 1.7),
    "MF_R": (5.6, 1.5),
}


def measurement_row(patient, observer, scale, fat, when, session="read1"):
    """A contract-3 row whose measures are consistent (areas × scale, fat × fat)."""
    row = {
        "patient_id": patient,
        "observer_id": observer,
        "session": session,
        "level": "L4",
        "slice_index": 16,
        "row_spacing_mm": 0.7,
        "col_spacing_mm": 0.7,
        "image_sha256": "ab" * 32,
        "annotation_sha256": "",
        "method": "random_forest",
        "features_preset": "weka",
        "n_trees": 200,
        "seed": 0,
        "class_balance": "balanced",
        "rois_present": ";".join(schema.ROI_KEYS),
        "software_version": "test",
        "measured_at": when,
    }
    for group in schema.GROUPS:
        for side in schema.SIDES:
            muscles = ("ES", "MF") if group == "ESMF" else (group,)
            sides = ("L", "R") if side == "B" else (side,)
            rois = [f"{m}_{s}" for m in muscles for s in sides]
            total = sum(_AREAS[r][0] * scale for r in rois)
            fat_area = sum(_AREAS[r][1] * scale * fat for r in rois)
            values = (total, total - fat_area, fat_area, 100 * fat_area / total)
            for m, v in zip(schema.MEASURES, values, strict=True):
                row[schema.measure_column(group, side, m)] = v
    return row


@pytest.fixture(scope="module")
def measurement_csv(tmp_path_factory):
    from napari_pvm.core.store import append_rows

    path = tmp_path_factory.mktemp("store") / "measurements.csv"
    rng = np.random.default_rng(11)
    rows = []
    for i in range(12):
        pid = f"{i:03d}"
        scale = 1.0 + 0.05 * i
        for obs, bias in (("A", 1.02), ("B", 0.98)):
            rows.append(measurement_row(pid, obs, scale * bias, 1 + 0.1 * rng.random(), "2024-01-01T10:00:00Z"))
    # A later re-reading by A of patient 000 in another session replaces the first.
    rows.append(measurement_row("000", "A", 3.0, 1.0, "2024-02-01T10:00:00Z", session="read2"))
    # A patient measured but not in the clinical table.
    rows.append(measurement_row("999", "A", 1.0, 1.0, "2024-01-01T10:00:00Z"))
    append_rows(path, rows)
    return path


def test_merge_mean_of_observers_and_latest_row(measurement_csv):
    from napari_pvm.core.store import read_rows

    clinical = _table(n=14)
    clinical.loc[12:, "patient_id"] = ["100", "101"]  # two patients without measurements
    merged, rows, notes = merge_measurements(clinical, measurement_csv)
    raw = read_rows(measurement_csv)
    col = "PS_B_total_area_cm2"
    a1 = raw[(raw.patient_id == "001") & (raw.observer_id == "A")][col].item()
    b1 = raw[(raw.patient_id == "001") & (raw.observer_id == "B")][col].item()
    assert merged.set_index("patient_id").loc["001", col] == pytest.approx((a1 + b1) / 2)
    first_a0 = raw[(raw.patient_id == "000") & (raw.observer_id == "A") & (raw.session == "read1")][col].item()
    repeat_a0 = raw[(raw.patient_id == "000") & (raw.observer_id == "A") & (raw.session == "read2")][col].item()
    b0 = raw[(raw.patient_id == "000") & (raw.observer_id == "B")][col].item()
    # the repeat reading (read2, measured later) never replaces the first in Table 2
    assert merged.set_index("patient_id").loc["000", col] == pytest.approx((first_a0 + b0) / 2)
    repeat, _, _ = merge_measurements(clinical, measurement_csv, session="read2")
    assert repeat.set_index("patient_id").loc["000", col] == pytest.approx(repeat_a0)
    with pytest.raises(StatsInputError, match="no rows with session 'read9'.*'read1', 'read2'"):
        merge_measurements(clinical, measurement_csv, session="read9")
    joined = " ".join(notes)
    assert "2 patient(s) of the clinical table have no measurements (100, 101)" in joined
    assert "1 measured patient(s) are not in the clinical table (999)" in joined
    only_b, _, _ = merge_measurements(clinical, measurement_csv, observer="B")
    assert only_b.set_index("patient_id").loc["001", col] == pytest.approx(b1)
    with pytest.raises(StatsInputError, match="observer 'C'"):
        merge_measurements(clinical, measurement_csv, observer="C")
    with pytest.raises(StatsInputError, match="already has"):
        merge_measurements(clinical.assign(**{col: 1.0}), measurement_csv)


def test_analyse_with_merge_adds_reliability(measurement_csv):
    res = analyse(
        _table(), "out", continuous=["x", "PS_B_total_area_cm2"], roc=["ESMF_B_fi_pct"], measurements=measurement_csv
    )
    assert res.types["PS_B_total_area_cm2"] == "continuous"
    assert by_var(res.comparison.table, "PS_B_total_area_cm2")["n_0"] == 6
    assert res.reliability is not None and "PS_B_total_area_cm2" in set(res.reliability.table["measure"])
    from napari_pvm.core.stats.report import html_report

    html = html_report(res)
    assert "Inter-observer reliability" in html and "Bland–Altman: PS_B_total_area_cm2" in html


# --------------------------------------------------------------------------
# Plots and report
# --------------------------------------------------------------------------


def test_plots_draw_on_given_axes(small_result):
    from matplotlib.figure import Figure

    from napari_pvm.core.stats import plots

    ax = Figure().add_subplot()
    assert plots.roc_plot(small_result.roc, ax=ax) is ax
    assert len(ax.get_legend().get_texts()) == 2
    ax2 = plots.group_boxplot(small_result.data, "value", small_result.y, labels=small_result.group_labels)
    assert ax2.get_title() == "value"
    assert plots.figure_png(ax2.figure)[:4] == b"\x89PNG"


def test_core_never_imports_pyplot():
    code = (
        "import sys\n"
        "from napari_pvm.core import stats\nfrom napari_pvm.core.stats import report\n"
        f"r = stats.analyse({str(SMALL)!r}, 'y', continuous=['value'], roc=['score'])\n"
        "report.html_report(r)\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_html_report_is_self_contained_and_escaped(tmp_path):
    from napari_pvm.core.stats.report import write_outputs

    t = _table(grp=["<script>alert(1)</script>", "b&c"] * 6)
    res = analyse(t, "out", continuous=["x"], categorical=["grp"], roc=["x"])
    files = write_outputs(res, tmp_path / "out")
    names = {f.name for f in files}
    assert {"report.html", "results.json", "comparison.csv", "roc.csv", "roc_coordinates.csv"} <= names
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html and "b&amp;c" in html
    assert "data:image/png;base64," in html and "http" not in html.replace("http-equiv", "")
    assert json.loads((tmp_path / "out" / "results.json").read_text())["outcome"]["column"] == "out"


# ------------------------------------------------ edge cases found in review


def test_levene_is_undefined_with_two_values_per_group():
    """|x − mean| is the same for both values of a pair, so F was inf and P 0."""
    row, notes = continuous_row([1.0, 2.0], [3.0, 5.0])
    assert math.isnan(row["levene_f"]) and math.isnan(row["levene_p"])
    assert row["mean_diff_ci_from"] == "student" and any("Levene" in n for n in notes)


def test_categorical_levels_are_matched_by_their_text():
    """1 and "1" (mixed spreadsheet cells) are one level, as in the outcome."""
    data = pd.DataFrame({"y": [0, 1, 0, 1, 0, 1], "c": [1, "1", 1, "1", 2, 2]})
    levels = analyse(data, "y", categorical=["c"]).comparison.levels
    assert levels["level"].tolist() == ["1", "2"]
    assert levels[["count_0", "count_1"]].to_numpy().tolist() == [[2, 2], [1, 1]]


def test_infinite_values_and_missing_outcomes_are_refused_by_name():
    from napari_pvm.core.stats.compare import compare_groups
    from napari_pvm.core.stats.roc import roc_analysis

    x = pd.DataFrame({"x": [1.0, 2, np.inf, 4, 5, 6.5, 7, 8]})
    y = pd.Series([0, 0, 0, 1, 1, 1, 0, 1])
    for call in (
        lambda: compare_groups(x, y, continuous=["x"]),
        lambda: logistic_regression(x, y, ["x"]),
        lambda: roc_analysis(x, y, ["x"]),
    ):
        with pytest.raises(StatsInputError, match="x has 1 infinite value"):
            call()
    unknown = y.astype(float).mask(y.index == 3)  # one patient's outcome not recorded
    with pytest.raises(StatsInputError, match="outcome is missing for 1 patient"):
        compare_groups(x.replace(np.inf, 3.0), unknown, continuous=["x"])
    # detected types: a column with infinite numbers is left out as such, not taken for text
    kind, reason = detect_type(pd.Series([np.inf, 1.5, 3, 4, 5, 2]))
    assert kind is None and "infinite" in reason


def test_logistic_regression_does_not_depend_on_a_covariates_units():
    """Fitted on centred, unit-SD covariates and brought back: a covariate in
    other units (× 1e-6) or with a large offset (+ 1e7) gives the same fit
    (it used to stop without convergence, or be called collinear), and the
    oracle is statsmodels on the unit scale."""
    import statsmodels.api as sm

    rng = np.random.default_rng(5)
    x = rng.normal(size=40)
    y = pd.Series((rng.random(40) < 1 / (1 + np.exp(-x))).astype(int))
    oracle = sm.Logit(y.to_numpy(float), sm.add_constant(x)).fit(disp=0)
    for scale, offset in ((1.0, 0.0), (1e-6, 0.0), (1.0, 1e7), (1e3, -5e4)):
        fit = logistic_regression(pd.DataFrame({"x": x * scale + offset}), y, ["x"])
        assert not fit.warnings, fit.warnings
        row = fit.rows.set_index("variable").loc["x"]
        assert row["B"] * scale == pytest.approx(oracle.params[1], rel=1e-7)
        assert row["SE"] * scale == pytest.approx(oracle.bse[1], rel=1e-7)
        assert row["p"] == pytest.approx(oracle.pvalues[1], rel=1e-6)
        assert fit.summary["minus2ll"] == pytest.approx(-2 * oracle.llf, rel=1e-10)
    # a separation beyond the offset where the unscaled search lost it
    steps = pd.DataFrame({"x": 1e4 + 0.5 * np.arange(20)})
    assert "complete separation" in " ".join(logistic_regression(steps, pd.Series([0] * 10 + [1] * 10), ["x"]).warnings)
