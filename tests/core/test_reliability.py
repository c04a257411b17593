"""Inter-observer reliability core: ICC, Bland–Altman, SEM/MDC and bad input.

Known answers: the ANOVA mean squares of a 5 × 2 example worked out by hand,
Shrout & Fleiss (1979) Table 2, pingouin's ``intraclass_corr`` (test-only,
GPL: never imported by the package) and scipy's ``linregress``.
"""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from napari_pvm.core.stats import reliability as rel
from napari_pvm.core.stats.input import select_rows
from napari_pvm.core.stats.plots import bland_altman_plot
from napari_pvm.core import schema
from napari_pvm.core.errors import StatsInputError

AREA = "PS_L_total_area_cm2"
FI = "ESMF_B_fi_pct"

# Shrout & Fleiss (1979), Table 1: 6 targets (rows) × 4 judges (columns).
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
    dtype=float,
)

# A 5 × 2 example small enough to work out by hand.
HAND_A = [4.0, 6.0, 8.0, 5.0, 7.0]
HAND_B = [5.0, 6.0, 9.0, 7.0, 8.0]


def make_rows(values, *, session="read1", level="L4", when="2024-03-01T10:00:00+00:00"):
    """Rows of the shared CSV: ``values[observer][measure]`` is a list over patients.

    Patient i is ``"P{i:02d}"``; ``None``/NaN leaves the cell empty.
    """
    rows = []
    for observer, measures in values.items():
        n = max(len(v) for v in measures.values())
        for i in range(n):
            row = dict.fromkeys(schema.COLUMNS, np.nan)
            row.update(
                schema_version=schema.SCHEMA_VERSION,
                row_id=f"{observer}-{session}-{i}",
                patient_id=f"P{i:02d}",
                observer_id=observer,
                session=session,
                level=level,
                measured_at=when,
            )
            for m, vals in measures.items():
                v = vals[i] if i < len(vals) else None
                row[m] = np.nan if v is None else float(v)
            rows.append(row)
    return pd.DataFrame(rows, columns=list(schema.COLUMNS))


def simulated(n=20, k=2, seed=0, bias=0.5):
    """n patients × k observers with a real subject spread, noise and an offset."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(20, 4, size=(n, 1))
    x = truth + rng.normal(0, 1.0, size=(n, k)) + bias * np.arange(k)
    return x


def rows_from_matrix(x, observers=None, measure=AREA):
    observers = observers or [chr(ord("A") + j) for j in range(x.shape[1])]
    return make_rows({o: {measure: list(x[:, j])} for j, o in enumerate(observers)})


@pytest.fixture
def pg(monkeypatch):
    pingouin = pytest.importorskip("pingouin")
    # pingouin rounds CI95 to 2 decimals by default; compare at full precision.
    monkeypatch.setitem(pingouin.options, "round.column.CI95", None)
    return pingouin


def pingouin_icc(pg, x, nan_policy="raise"):
    n, k = x.shape
    long = pd.DataFrame([(i, j, x[i, j]) for i in range(n) for j in range(k)], columns=["t", "r", "y"])
    return pg.intraclass_corr(long, "t", "r", "y", nan_policy=nan_policy).set_index("Type")


# --------------------------------------------------------------------------
# ICC
# --------------------------------------------------------------------------


def test_anova_mean_squares_by_hand():
    # Row means 4.5 6 8.5 6 7.5, column means 6 7, grand mean 6.5.
    # SSR = 2·(4 + 0.25 + 4 + 0.25 + 1) = 19 → MSR = 19/4 = 4.75
    # SSC = 5·(0.25 + 0.25) = 2.5 → MSC = 2.5;  SST = 22.5 → SSE = 1 → MSE = 0.25
    r = rel.icc(np.c_[HAND_A, HAND_B])
    assert (r["n"], r["k"], r["df1"], r["df2"]) == (5, 2, 4, 4)
    assert r["ms_subjects"] == pytest.approx(4.75, abs=1e-12)
    assert r["ms_observers"] == pytest.approx(2.5, abs=1e-12)
    assert r["ms_error"] == pytest.approx(0.25, abs=1e-12)
    assert r["icc2_1"] == pytest.approx(4.5 / (5.0 + 2 * 2.25 / 5), abs=1e-12)  # 0.7627
    assert r["icc3_1"] == pytest.approx(4.5 / 5.0, abs=1e-12)
    assert r["icc2_k"] == pytest.approx(4.5 / (4.75 + 2.25 / 5), abs=1e-12)
    assert r["icc3_k"] == pytest.approx(4.5 / 4.75, abs=1e-12)
    assert r["f"] == pytest.approx(19.0)
    assert r["p"] == pytest.approx(stats.f.sf(19.0, 4, 4))
    # Consistency CI: F_L = F/F.975(4, 4), F_U = F·F.975(4, 4).
    fq = stats.f.ppf(0.975, 4, 4)
    fl, fu = 19.0 / fq, 19.0 * fq
    assert r["icc3_1_ci"] == pytest.approx(((fl - 1) / (fl + 1), (fu - 1) / (fu + 1)))
    assert r["icc3_k_ci"] == pytest.approx((1 - 1 / fl, 1 - 1 / fu))
    # Agreement CI: McGraw & Wong (1996) with Satterthwaite df, written out.
    n, k, msr, msc, mse, rho = 5, 2, 4.75, 2.5, 0.25, r["icc2_1"]
    a = k * rho / (n * (1 - rho))
    b = 1 + k * rho * (n - 1) / (n * (1 - rho))
    df2 = (n - 1) * (k - 1)
    v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / df2)
    fs, fs2 = stats.f.ppf(0.975, n - 1, v), stats.f.ppf(0.975, v, n - 1)
    low = n * (msr - fs * mse) / (fs * (k * msc + (k * n - k - n) * mse) + n * msr)
    high = n * (fs2 * msr - mse) / (k * msc + (k * n - k - n) * mse + n * fs2 * msr)
    assert r["icc2_1_ci"] == pytest.approx((low, high))
    # ICC(A,k) bounds, McGraw & Wong's own form.
    assert r["icc2_k_ci"] == pytest.approx(
        (n * (msr - fs * mse) / (fs * (msc - mse) + n * msr), n * (fs2 * msr - mse) / (msc - mse + n * fs2 * msr))
    )


def test_shrout_fleiss_published_values():
    r = rel.icc(SHROUT_FLEISS)
    # Shrout & Fleiss (1979) Table 2: ICC(2,1) .29, ICC(3,1) .71, ICC(2,4) .62, ICC(3,4) .91.
    assert round(r["icc2_1"], 2) == 0.29
    assert round(r["icc3_1"], 2) == 0.71
    assert round(r["icc2_k"], 2) == 0.62
    assert round(r["icc3_k"], 2) == 0.91
    # Hand computation in reference/stats_anchor.md §4.
    assert r["icc2_1"] == pytest.approx(0.290, abs=5e-4)
    assert r["icc3_1"] == pytest.approx(0.715, abs=5e-4)


@pytest.mark.parametrize(("n", "k", "seed"), [(6, 4, None), (12, 2, 1), (30, 2, 2), (15, 3, 3)])
def test_icc_matches_pingouin(pg, n, k, seed):
    x = SHROUT_FLEISS if seed is None else simulated(n, k, seed)
    mine = rel.icc(x)
    theirs = pingouin_icc(pg, x)
    for form, label in (("icc2_1", "ICC(A,1)"), ("icc3_1", "ICC(C,1)"), ("icc2_k", "ICC(A,k)"), ("icc3_k", "ICC(C,k)")):
        assert mine[form] == pytest.approx(theirs.at[label, "ICC"], abs=1e-12)
        assert mine[f"{form}_ci"] == pytest.approx(tuple(theirs.at[label, "CI95"]), abs=1e-10)
    assert mine["f"] == pytest.approx(theirs.at["ICC(A,1)", "F"], rel=1e-12)
    assert mine["p"] == pytest.approx(theirs.at["ICC(A,1)", "pval"], rel=1e-9)


def test_systematic_bias_lowers_agreement_not_consistency():
    x = simulated(25, 2, seed=4, bias=0.0)
    shifted = x + np.array([0.0, 3.0])
    r0, r1 = rel.icc(x), rel.icc(shifted)
    assert r1["icc3_1"] == pytest.approx(r0["icc3_1"])
    assert r1["icc2_1"] < r0["icc2_1"] - 0.1


def test_icc_refuses_bad_arrays():
    with pytest.raises(StatsInputError, match="2 raters"):
        rel.icc(np.ones((5, 1)))
    with pytest.raises(StatsInputError, match="2 subjects"):
        rel.icc([[1.0, 2.0]])
    with pytest.raises(StatsInputError, match="missing value"):
        rel.icc([[1.0, 2.0], [3.0, np.nan], [4.0, 5.0]])
    with pytest.raises(StatsInputError, match="undefined"):
        rel.icc(np.full((4, 2), 7.0))


def test_icc_constant_offset_has_no_interval():
    x = np.c_[HAND_A, np.add(HAND_A, 1.0)]
    r = rel.icc(x)
    assert r["icc3_1"] == pytest.approx(1.0)
    assert 0 < r["icc2_1"] < 1
    assert all(math.isnan(v) for v in r["icc2_1_ci"] + r["icc3_1_ci"])
    assert "residual variance 0" in r["note"]


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.2, None, "poor"),
        (0.5, None, "moderate"),
        (0.74, None, "moderate"),
        (0.75, None, "good"),
        (0.9, None, "good"),
        (0.91, None, "excellent"),
        (0.83, 0.94, "good to excellent"),
        (-0.1, 0.6, "poor to moderate"),
        (0.95, 0.99, "excellent"),
        (math.nan, 0.9, None),
    ],
)
def test_koo_li_rating(low, high, expected):
    assert rel.koo_li_rating(low, high) == expected


# --------------------------------------------------------------------------
# Bland–Altman
# --------------------------------------------------------------------------


def test_bland_altman_by_hand():
    # d = A − B = −1 0 −1 −2 −1: mean −1, SS 2, SD √0.5.
    r = rel.bland_altman(HAND_A, HAND_B, loa_ci="approximate")
    sd = math.sqrt(0.5)
    t = 2.7764451051977934  # t(.975, 4)
    assert r["n"] == 5
    assert r["bias"] == pytest.approx(-1.0)
    assert r["sd_diff"] == pytest.approx(sd)
    assert r["bias_ci"] == pytest.approx((-1 - t * sd / math.sqrt(5), -1 + t * sd / math.sqrt(5)))
    assert r["loa_low"] == pytest.approx(-1 - 1.96 * sd)  # −2.386
    assert r["loa_high"] == pytest.approx(-1 + 1.96 * sd)  # 0.386
    se = sd * math.sqrt(3 / 5)  # Bland & Altman: SE of a limit ≈ √(3 s²/n)
    assert r["loa_low_ci"] == pytest.approx((r["loa_low"] - t * se, r["loa_low"] + t * se))
    assert r["loa_high_ci"] == pytest.approx((r["loa_high"] - t * se, r["loa_high"] + t * se))
    # Means 4.5 6 8.5 6 7.5 against d: centred cross-products sum to 0.
    assert r["prop_bias_slope"] == pytest.approx(0.0, abs=1e-12)
    assert r["prop_bias_p"] == pytest.approx(1.0)


def test_bland_altman_exact_limits_have_nominal_error_rates():
    # The exact bound c of the upper limit μ + zσ solves
    # P(x̄ + c·s < μ + zσ) = E_S[Φ(√n (z − c·S))], S = s/σ ~ √(χ²(n−1)/(n−1)).
    a = np.array([12.1, 14.0, 9.8, 11.5, 13.2, 10.9, 12.7, 15.1])
    b = np.array([11.0, 14.6, 9.1, 10.2, 13.9, 10.0, 11.8, 14.0])
    r = rel.bland_altman(a, b)
    n, z, bias, sd = a.size, 1.96, r["bias"], r["sd_diff"]
    df = n - 1

    def below(c):
        def integrand(u):  # u = χ² value
            phi = stats.norm.cdf(math.sqrt(n) * (z - c * math.sqrt(u / df)))
            return phi * stats.chi2.pdf(u, df)

        return integrate.quad(integrand, 0, np.inf)[0]

    c_low, c_high = ((v - bias) / sd for v in r["loa_high_ci"])
    assert below(c_high) == pytest.approx(0.025, abs=1e-6)
    assert 1 - below(c_low) == pytest.approx(0.025, abs=1e-6)
    # The lower limit mirrors the upper one.
    assert r["loa_low_ci"] == pytest.approx((2 * bias - r["loa_high_ci"][1], 2 * bias - r["loa_high_ci"][0]))
    # At small n the exact interval lies further out than the symmetric approximation...
    approx = rel.bland_altman(a, b, loa_ci="approximate")
    assert r["loa_high_ci"][0] > approx["loa_high_ci"][0]
    assert r["loa_high_ci"][1] > approx["loa_high_ci"][1]
    assert r["loa_low_ci"][0] < approx["loa_low_ci"][0]
    # ...and agree with them for large n.
    big = simulated(2000, 2, seed=5)
    e = rel.bland_altman(big[:, 0], big[:, 1])
    p = rel.bland_altman(big[:, 0], big[:, 1], loa_ci="approximate")
    assert e["loa_high_ci"] == pytest.approx(p["loa_high_ci"], rel=2e-3)


def test_proportional_bias_matches_linregress():
    rng = np.random.default_rng(6)
    b = rng.uniform(5, 40, 30)
    a = 1.08 * b + rng.normal(0, 0.6, 30)  # observer A reads 8 % higher
    r = rel.bland_altman(a, b)
    fit = stats.linregress((a + b) / 2, a - b)
    assert r["prop_bias_slope"] == pytest.approx(fit.slope, rel=1e-10)
    assert r["prop_bias_p"] == pytest.approx(fit.pvalue, rel=1e-8)
    t = stats.t.ppf(0.975, 28)
    assert r["prop_bias_slope_ci"] == pytest.approx((fit.slope - t * fit.stderr, fit.slope + t * fit.stderr), rel=1e-10)
    assert r["prop_bias_p"] < 0.001


def test_bland_altman_refuses_bad_input():
    with pytest.raises(StatsInputError, match="differ in length"):
        rel.bland_altman([1, 2, 3], [1, 2])
    with pytest.raises(StatsInputError, match="complete pairs"):
        rel.bland_altman([1, 2, np.nan], [1, 2, 3])
    with pytest.raises(StatsInputError, match="loa_ci"):
        rel.bland_altman([1, 2, 3], [1, 2, 4], loa_ci="bootstrap")


# --------------------------------------------------------------------------
# reliability_table on rows of the shared CSV
# --------------------------------------------------------------------------


REQUIRED = (
    "measure",
    "n",
    "n_observers",
    "n_missing",
    "icc2_1",
    "icc2_1_ci_low",
    "icc2_1_ci_high",
    "icc2_1_rating",
    "icc3_1",
    "icc3_1_ci_low",
    "icc3_1_ci_high",
    "icc3_1_rating",
    "icc2_k",
    "icc2_k_ci_low",
    "icc2_k_ci_high",
    "observer_a",
    "observer_b",
    "bias",
    "bias_ci_low",
    "bias_ci_high",
    "loa_low",
    "loa_low_ci_low",
    "loa_low_ci_high",
    "loa_high",
    "loa_high_ci_low",
    "loa_high_ci_high",
    "sem",
    "mdc95",
    "prop_bias_slope",
    "prop_bias_p",
    "note",
)


def test_table_matches_pingouin_and_hand_sem(pg):
    x = simulated(20, 2, seed=7)
    table = rel.reliability_table(rows_from_matrix(x, ["obs2", "obs1"]))
    assert set(REQUIRED) <= set(table.columns)
    row = table.set_index("measure").loc[AREA]
    theirs = pingouin_icc(pg, x[:, ::-1])  # columns in sorted observer order
    assert row["n"] == 20 and row["n_observers"] == 2 and row["n_missing"] == 0
    assert row["icc2_1"] == pytest.approx(theirs.at["ICC(A,1)", "ICC"], abs=1e-12)
    assert (row["icc2_1_ci_low"], row["icc2_1_ci_high"]) == pytest.approx(
        tuple(theirs.at["ICC(A,1)", "CI95"]), abs=1e-10
    )
    assert row["icc3_1"] == pytest.approx(theirs.at["ICC(C,1)", "ICC"], abs=1e-12)
    assert row["icc2_k"] == pytest.approx(theirs.at["ICC(A,k)", "ICC"], abs=1e-12)
    assert (row["icc2_k_ci_low"], row["icc2_k_ci_high"]) == pytest.approx(
        tuple(theirs.at["ICC(A,k)", "CI95"]), abs=1e-10
    )
    assert row["icc2_1_rating"] == rel.koo_li_rating(row["icc2_1_ci_low"], row["icc2_1_ci_high"])
    # bias = first minus second observer in sorted ID order: obs1 − obs2.
    assert (row["observer_a"], row["observer_b"]) == ("obs1", "obs2")
    d = x[:, 1] - x[:, 0]
    assert row["bias"] == pytest.approx(d.mean())
    assert row["loa_high"] == pytest.approx(d.mean() + 1.96 * d.std(ddof=1))
    sd = x.std(ddof=1)
    assert row["sd"] == pytest.approx(sd)
    assert row["sem"] == pytest.approx(sd * math.sqrt(1 - row["icc2_1"]))
    assert row["mdc95"] == pytest.approx(1.96 * math.sqrt(2) * row["sem"])
    assert pd.isna(row["note"])
    assert table.attrs["observers"] == ["obs1", "obs2"]
    assert table.attrs["n_patients_both"] == 20
    assert table.attrs["session"] == "read1"


def test_more_than_two_observers(pg):
    x = simulated(15, 3, seed=8)
    ids = ["C", "A", "B"]  # stored out of order
    rows = rows_from_matrix(x, ids)
    table = rel.reliability_table(rows)
    row = table.iloc[0]
    order = np.argsort(ids)  # A, B, C
    theirs = pingouin_icc(pg, x[:, order])
    assert row["n_observers"] == 3
    assert row["icc2_1"] == pytest.approx(theirs.at["ICC(A,1)", "ICC"], abs=1e-12)
    assert row["icc3_1"] == pytest.approx(theirs.at["ICC(C,1)", "ICC"], abs=1e-12)
    pairs = rel.pairwise_table(rows)
    found = list(zip(pairs["observer_a"], pairs["observer_b"]))
    assert found == [("A", "B"), ("A", "C"), ("B", "C")]
    by_id = {o: x[:, j] for j, o in enumerate(ids)}
    for _, p in pairs.iterrows():
        d = by_id[p["observer_a"]] - by_id[p["observer_b"]]
        assert p["bias"] == pytest.approx(d.mean())
        assert p["n"] == 15
    # The table's Bland–Altman columns describe the first pair.
    assert row["bias"] == pytest.approx(pairs["bias"].iloc[0])
    assert (row["observer_a"], row["observer_b"]) == ("A", "B")


def test_observer_ids_sort_as_text():
    x = simulated(8, 2, seed=9)
    table = rel.reliability_table(rows_from_matrix(x, ["9", "10"]))
    assert (table["observer_a"].iloc[0], table["observer_b"].iloc[0]) == ("10", "9")
    assert table["bias"].iloc[0] == pytest.approx(np.mean(x[:, 1] - x[:, 0]))


def test_latest_row_per_patient_and_observer():
    x = simulated(6, 2, seed=10)
    rows = rows_from_matrix(x)
    # A re-measures patient P00 later: that row wins, wherever it sits in the file.
    redo = rows.iloc[[0]].copy()
    redo[AREA] = 99.0
    redo["measured_at"] = "2024-03-02T10:00:00+00:00"
    older = rows.iloc[[0]].copy()
    older[AREA] = -5.0
    older["measured_at"] = "2024-02-01T10:00:00+00:00"
    rows = pd.concat([redo, rows, older], ignore_index=True)
    latest, _ = select_rows(rows)
    assert len(latest) == 12
    p00 = latest[(latest["patient_id"] == "P00") & (latest["observer_id"] == "A")]
    assert p00[AREA].tolist() == [99.0]
    # Same time stamp: the later row in the frame wins.
    tie = rows_from_matrix(x).iloc[[1]].copy()
    tie[AREA] = 42.0
    latest, _ = select_rows(pd.concat([rows_from_matrix(x), tie], ignore_index=True))
    assert latest.loc[(latest["patient_id"] == "P01") & (latest["observer_id"] == "A"), AREA].tolist() == [42.0]
    table = rel.reliability_table(rows)
    expected = x.copy()
    expected[0, 0] = 99.0
    assert table["icc2_1"].iloc[0] == pytest.approx(rel.icc(expected)["icc2_1"])


def test_session_choice():
    x1, x2 = simulated(8, 2, seed=11), simulated(8, 2, seed=12)
    rows = pd.concat([rows_from_matrix(x2).assign(session="read2"), rows_from_matrix(x1)], ignore_index=True)
    default = rel.reliability_table(rows)
    assert default.attrs["session"] == "read1"
    assert default["icc2_1"].iloc[0] == pytest.approx(rel.icc(x1)["icc2_1"])
    second = rel.reliability_table(rows, session="read2")
    assert second["icc2_1"].iloc[0] == pytest.approx(rel.icc(x2)["icc2_1"])
    # No read1 and two other readings: ask which.
    other = rows.assign(session=rows["session"].map({"read1": "a", "read2": "b"}))
    with pytest.raises(StatsInputError, match="several sessions"):
        rel.reliability_table(other)
    with pytest.raises(StatsInputError, match="no rows with session 'read9'"):
        rel.reliability_table(rows, session="read9")
    # An empty session cell reads as read1 (contract 2 default).
    blank = rows_from_matrix(x1).assign(session=np.nan)
    assert rel.reliability_table(blank).attrs["session"] == "read1"


def test_several_levels_need_a_choice():
    x = simulated(6, 2, seed=13)
    rows = pd.concat([rows_from_matrix(x), rows_from_matrix(x + 1).assign(level="L3")], ignore_index=True)
    with pytest.raises(StatsInputError, match="several levels"):
        rel.reliability_table(rows)
    assert rel.reliability_table(rows, level="L3").attrs["level"] == "L3"


def test_intra_observer_table():
    x = simulated(10, 2, seed=14)
    rows = pd.concat(
        [
            rows_from_matrix(x[:, [0]], ["A"]),
            rows_from_matrix(x[:, [1]], ["A"]).assign(session="read2"),
            rows_from_matrix(x[:, [1]] + 5, ["B"]),
        ],
        ignore_index=True,
    )
    table = rel.intra_observer_table(rows, "A")
    row = table.iloc[0]
    assert (row["session_a"], row["session_b"]) == ("read1", "read2")
    assert row["n_sessions"] == 2
    assert row["icc2_1"] == pytest.approx(rel.icc(x)["icc2_1"])
    assert row["bias"] == pytest.approx(np.mean(x[:, 0] - x[:, 1]))
    assert table.attrs["observer"] == "A"
    assert len(rel.intra_observer_pairs(rows, "A")) == 1
    with pytest.raises(StatsInputError, match="no reading 'read2'"):
        rel.intra_observer_table(rows, "B")
    with pytest.raises(StatsInputError, match="no rows by observer 'Z'"):
        rel.intra_observer_table(rows, "Z")


# --------------------------------------------------------------------------
# Bad input (issue 6, item 5)
# --------------------------------------------------------------------------


def test_one_observer_only():
    rows = make_rows({"A": {AREA: [10, 11, 12, 13]}})
    with pytest.raises(StatsInputError, match="only observer 'A'"):
        rel.reliability_table(rows)


def test_only_one_observer_in_the_chosen_session():
    rows = pd.concat(
        [make_rows({"A": {AREA: [10, 11, 12]}}), make_rows({"B": {AREA: [10, 11, 12]}}, session="read2")],
        ignore_index=True,
    )
    with pytest.raises(StatsInputError, match="two observers or more"):
        rel.reliability_table(rows)


def test_no_patient_measured_by_both():
    rows = make_rows({"A": {AREA: [10, 11, 12]}, "B": {AREA: [None] * 3 + [9, 8, 7]}})
    # B's first three rows exist but are empty: drop them so the patient sets are disjoint.
    rows = rows[~((rows["observer_id"] == "B") & rows[AREA].isna())]
    with pytest.raises(StatsInputError, match=r"no patient was measured by both .*A: 3, B: 3"):
        rel.reliability_table(rows)


def test_constant_measure_gives_a_note_not_a_number():
    rows = make_rows(
        {
            "A": {AREA: [10, 12, 14, 11], "MF_L_fi_pct": [0, 0, 0, 0]},
            "B": {AREA: [10.5, 12, 13, 11.5], "MF_L_fi_pct": [0, 0, 0, 0]},
        }
    )
    table = rel.reliability_table(rows).set_index("measure")
    const = table.loc["MF_L_fi_pct"]
    assert "constant" in const["note"]
    numeric = [
        c for c in table.columns if c.startswith(("icc", "bias", "loa", "sem", "mdc")) and not c.endswith("rating")
    ]
    assert const[numeric].isna().all()
    assert const["icc2_1_rating"] is None or pd.isna(const["icc2_1_rating"])
    assert np.isfinite(table.loc[AREA, "icc2_1"])


def test_missing_values_are_left_out_and_counted(pg):
    x = simulated(12, 2, seed=15)
    values = {"A": {FI: list(x[:, 0])}, "B": {FI: list(x[:, 1])}}
    values["A"][FI][2] = None
    values["B"][FI][5] = None
    values["B"][FI][7] = None
    table = rel.reliability_table(make_rows(values))
    row = table.iloc[0]
    assert (row["n"], row["n_missing"]) == (9, 3)
    assert "3 of 12 patients left out" in row["note"] and "A: 1, B: 2" in row["note"]
    keep = np.ones(12, bool)
    keep[[2, 5, 7]] = False
    assert row["icc2_1"] == pytest.approx(rel.icc(x[keep])["icc2_1"])
    # pingouin's listwise deletion agrees.
    xm = x.copy()
    xm[2, 0] = xm[5, 1] = xm[7, 1] = np.nan
    theirs = pingouin_icc(pg, xm, nan_policy="omit")
    assert row["icc2_1"] == pytest.approx(theirs.at["ICC(A,1)", "ICC"], abs=1e-12)


def test_too_few_patients_with_values():
    rows = make_rows(
        {"A": {AREA: [10, 11, 12, 13], FI: [1, 2, None, None]}, "B": {AREA: [10, 11.5, 12, 14], FI: [1, 2, 3, 4]}}
    )
    table = rel.reliability_table(rows, measures=[AREA, FI]).set_index("measure")
    assert table.loc[FI, "n"] == 2 and np.isnan(table.loc[FI, "icc2_1"])
    assert "at least 3 needed" in table.loc[FI, "note"]
    assert np.isfinite(table.loc[AREA, "icc2_1"])


def test_default_measures_need_two_observers_with_data():
    rows = make_rows({"A": {AREA: [10, 11, 12], FI: [5, 6, 7]}, "B": {AREA: [10, 11.5, 12.5]}})
    table = rel.reliability_table(rows)
    assert table["measure"].tolist() == [AREA]  # FI has values from A only
    empty = make_rows({"A": {AREA: [10, 11, 12]}, "B": {FI: [1, 2, 3]}})
    with pytest.raises(StatsInputError, match="no measure column has values from two"):
        rel.reliability_table(empty)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.iloc[0:0], "no rows"),
        (lambda r: r.drop(columns="observer_id"), "no observer_id column"),
        (lambda r: r.assign(observer_id=[None] + ["B"] * (len(r) - 1)), "have no observer_id"),
        (lambda r: r.astype({AREA: object}).assign(**{AREA: ["x"] + [1.0] * (len(r) - 1)}), "not a number"),
        ("not a frame", "DataFrame"),
    ],
)
def test_malformed_rows(mutate, message):
    rows = make_rows({"A": {AREA: [10, 11, 12]}, "B": {AREA: [10, 11.5, 12.5]}})
    bad = mutate if isinstance(mutate, str) else mutate(rows)
    with pytest.raises(StatsInputError, match=message):
        rel.reliability_table(bad, measures=[AREA])


def test_unknown_measure():
    rows = make_rows({"A": {AREA: [10, 11, 12]}, "B": {AREA: [10, 11.5, 12.5]}})
    with pytest.raises(StatsInputError, match="--measures: no such column in the measure columns: 'nonsense'"):
        rel.reliability_table(rows, measures=["nonsense"])


# --------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------


def test_bland_altman_plot_draws_without_a_display():
    from matplotlib.axes import Axes

    x = simulated(12, 2, seed=16)
    rows = rows_from_matrix(x)
    ax = bland_altman_plot(rows, AREA)
    assert isinstance(ax, Axes)
    assert ax.get_xlabel() == "Mean of A and B (cm²)"
    assert ax.get_ylabel() == "A − B (cm²)"
    ys = sorted(line.get_ydata()[0] for line in ax.get_lines() if line.get_ydata()[0] != 0)
    pair = rel.pairwise_table(rows).iloc[0]
    assert ys == pytest.approx(sorted([pair["bias"], pair["loa_low"], pair["loa_high"]]))
    assert len(ax.patches) == 3  # the three shaded confidence intervals
    offsets = ax.collections[0].get_offsets()
    assert np.asarray(offsets)[:, 1] == pytest.approx(x[:, 0] - x[:, 1])


def test_bland_altman_plot_on_given_axes_and_pair():
    from matplotlib.figure import Figure

    x = simulated(10, 3, seed=17)
    rows = rows_from_matrix(x, measure=FI)
    ax = Figure().add_subplot()
    assert bland_altman_plot(rows, FI, ax=ax, pair=("C", "A")) is ax
    assert ax.get_ylabel() == "C − A (%)"
    with pytest.raises(StatsInputError, match="pair must name"):
        bland_altman_plot(rows, FI, pair=("A", "Z"))
    const = make_rows({"A": {FI: [1, 1, 1]}, "B": {FI: [1, 1, 1]}})
    with pytest.raises(StatsInputError, match="constant"):
        bland_altman_plot(const, FI)


def test_no_impossible_icc_or_interval_is_reported():
    """With poor reliability and few patients ICC(2,k)'s formula passes its pole
    (a value of 27.9 and an interval (5.4, 0.44) were reported): it is NaN
    with a note, and every interval is finite and ordered or NaN."""
    x = [[21.95, 19.1], [20.95, 20.54], [19.85, 21.08], [18.5, 21.36], [19.94, 19.46]]
    r = rel.icc(x)
    assert np.isnan(r["icc2_k"]) and np.isnan(r["icc2_k_ci"]).all() and "ICC(2,k) undefined" in r["note"]
    rng = np.random.default_rng(7)
    for _ in range(500):
        n, k = int(rng.integers(3, 8)), int(rng.integers(2, 4))
        r = rel.icc(rng.normal(20, 1, (n, k)))  # no patient effect: reliability near 0
        for form in ("icc2_1", "icc3_1", "icc2_k", "icc3_k"):
            assert not r[form] > 1
            low, high = r[f"{form}_ci"]
            assert (np.isnan(low) and np.isnan(high)) or low <= high
        if np.isnan(r["icc2_k"]):
            assert r["note"]


def test_equal_patient_means_give_notes_not_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = rel.icc([[1.0, 2], [2, 1], [1, 2], [2, 1]])  # every patient's mean is 1.5
    assert r["f"] == 0 and all(np.isnan(r[f"{form}_ci"]).all() for form in ("icc2_1", "icc3_1", "icc2_k", "icc3_k"))
    assert "every patient has the same mean" in r["note"]


def test_agreement_does_not_depend_on_the_values_offset():
    """A residual is compared with floating-point rounding of the values, not with
    their size: 1e9 + millimetres still varies."""
    b = np.array([[1, 1.1], [2, 2.3], [3, 2.8]]) * 1e-3
    assert rel.icc(b + 1e9)["icc3_1"] == pytest.approx(rel.icc(b)["icc3_1"], rel=1e-3)
    assert rel.icc(b + 1e9)["note"] == ""
    shifted = rel.bland_altman(b[:, 0] + 1e9, b[:, 1] + 1e9)
    assert shifted["sd_diff"] == pytest.approx(rel.bland_altman(b[:, 0], b[:, 1])["sd_diff"], rel=1e-3)
