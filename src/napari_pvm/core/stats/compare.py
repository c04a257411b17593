"""Two-group comparison in the layout of the seed paper's Table 2.

Continuous variables get every statistic SPSS prints for them (EXAMINE,
T-TEST, NPAR TESTS /M-W) and one test chosen by a declared rule;
categorical variables get the CROSSTABS chi-square rows and Fisher's exact
test. :func:`compare_groups` is the entry point; the helpers
:func:`mann_whitney` and :func:`fisher_exact_rx2` are public because the
tests check them on their own. See ``docs/statistics.md``.
"""

import dataclasses
import math
import warnings as _warnings

import numpy as np
import pandas as pd
from scipy import special as _special
from scipy import stats as _stats

from ..errors import StatsInputError

__all__ = [
    "ALPHA",
    "FISHER_MAX_TABLES",
    "FISHER_RESAMPLES",
    "GroupComparison",
    "compare_groups",
    "continuous_row",
    "categorical_row",
    "fisher_exact_rx2",
    "mann_whitney",
    "quartiles",
]

#: Level of the Shapiro–Wilk and Levene tests that choose the group test.
ALPHA = 0.05
#: Largest number of tables Fisher's exact test enumerates; above it the P
#: value is estimated from random tables (with a recorded seed).
FISHER_MAX_TABLES = 1_000_000
#: Number of random tables for the resampled Fisher P value.
FISHER_RESAMPLES = 100_000

_CHUNK = 4_000_000


@dataclasses.dataclass(frozen=True)
class GroupComparison:
    """Result of :func:`compare_groups`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per variable (Table 2). Continuous rows carry ``n_0``,
        ``n_1``, ``mean_0``, …; categorical rows ``chi2``, ``df``, …; columns
        that do not apply to a row are NaN there (see ``docs/statistics.md``
        for every column).
    levels : pandas.DataFrame
        Categorical variables only: one row per variable × level with the
        counts, column percentages and expected counts per group.
    warnings : list of str
        Everything the reader must know: dropped patients, tests that could
        not be computed and why, small expected counts.
    """

    table: pd.DataFrame
    levels: pd.DataFrame
    warnings: list


# --------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------


def quartiles(x):
    """First quartile, median and third quartile as SPSS EXAMINE computes them.

    SPSS's default percentile definition (HAVERAGE, "weighted average at
    x_(n+1)p") is numpy's ``method="weibull"``.

    Parameters
    ----------
    x : array_like of float
        Values without NaN.

    Returns
    -------
    q1, median, q3 : float

    Examples
    --------
    >>> quartiles([1, 2, 3, 4, 5, 6, 7, 8])
    (2.25, 4.5, 6.75)
    """
    q = np.percentile(np.asarray(x, float), [25, 50, 75], method="weibull")
    return float(q[0]), float(q[1]), float(q[2])


def mann_whitney(x0, x1):
    """Mann–Whitney U test as SPSS NPAR TESTS /M-W prints it.

    Parameters
    ----------
    x0, x1 : array_like of float
        The two groups (no NaN).

    Returns
    -------
    result : dict
        ``u`` (the smaller of U₀ and U₁, as SPSS prints it), ``u_0`` and
        ``u_1`` (U of each group: its rank sum minus n(n+1)/2), ``rank_sum``
        (per group), ``mean_rank`` (per group), ``z`` (tie-corrected, no
        continuity correction, always ≤ 0) and ``p`` (asymptotic two-sided,
        2Φ(z)). ``z`` and ``p`` are NaN when every value is tied.

    Examples
    --------
    >>> r = mann_whitney([1, 2, 3], [4, 5, 6, 7])
    >>> r["u"], round(r["z"], 4), round(r["p"], 4)
    (0.0, -2.1213, 0.0339)
    """
    a = np.asarray(x0, float)
    b = np.asarray(x1, float)
    n0, n1 = a.size, b.size
    n = n0 + n1
    ranks = _stats.rankdata(np.concatenate([a, b]))
    r0 = float(ranks[:n0].sum())
    r1 = float(ranks[n0:].sum())
    u0 = r0 - n0 * (n0 + 1) / 2.0
    u1 = r1 - n1 * (n1 + 1) / 2.0
    u = min(u0, u1)
    _, counts = np.unique(ranks, return_counts=True)
    ties = float(((counts.astype(float) ** 3) - counts).sum())
    var = n0 * n1 / (n * (n - 1.0)) * ((n**3 - n) / 12.0 - ties / 12.0) if n > 1 else 0.0
    if var > 0:
        z = (u - n0 * n1 / 2.0) / math.sqrt(var)
        p = min(1.0, float(2.0 * _stats.norm.cdf(z)))
    else:
        z = p = math.nan
    return {
        "u": u,
        "u_0": u0,
        "u_1": u1,
        "rank_sum": (r0, r1),
        "mean_rank": (r0 / n0 if n0 else math.nan, r1 / n1 if n1 else math.nan),
        "z": z,
        "p": p,
    }


def _log_comb(n, k):
    return _special.gammaln(n + 1.0) - _special.gammaln(k + 1.0) - _special.gammaln(n - k + 1.0)


def _count_tables(row_totals, n1):
    """Number of r×2 tables with the given row totals and first-column total."""
    counts = np.zeros(n1 + 1, dtype=float)
    counts[0] = 1.0
    for r in row_totals:
        new = np.zeros_like(counts)
        for x in range(min(int(r), n1) + 1):
            new[x:] += counts[: n1 + 1 - x]
        counts = new
    return counts[n1]


def fisher_exact_rx2(table, *, seed=0, max_tables=FISHER_MAX_TABLES, resamples=FISHER_RESAMPLES):
    """Fisher's (Freeman–Halton) exact test for an r × 2 table.

    The two-sided P value sums the probabilities (multivariate
    hypergeometric, margins fixed) of every table no more probable than the
    observed one, with the relative tolerance 1e-7 that scipy and SPSS use.
    For a 2 × 2 table this is exactly ``scipy.stats.fisher_exact``.

    Parameters
    ----------
    table : array_like of int, shape (r, 2)
        Counts; rows are the levels of the variable, columns the two groups.
    seed : int, optional
        Seed of the random tables when there are more than ``max_tables``.
    max_tables : int, optional
        Largest number of tables to enumerate.
    resamples : int, optional
        Number of random tables otherwise.

    Returns
    -------
    p : float
        Two-sided P value.
    method : str
        ``"exact"``, or ``"resampled (N tables, seed S)"`` with the
        estimate (k + 1)/(N + 1).

    Examples
    --------
    >>> p, method = fisher_exact_rx2([[3, 1], [1, 3]])
    >>> round(p, 6), method
    (0.485714, 'exact')
    """
    t = np.asarray(table)
    if t.ndim != 2 or t.shape[1] != 2 or t.shape[0] < 2:
        raise StatsInputError(f"Fisher's exact test needs an r × 2 table, got shape {t.shape}")
    if np.any(t < 0) or not np.all(np.equal(np.mod(t, 1), 0)):
        raise StatsInputError("Fisher's exact test needs non-negative integer counts")
    t = t.astype(np.int64)
    rows = t.sum(axis=1)
    n1 = int(t[:, 1].sum())
    n = int(rows.sum())
    log_norm = _log_comb(n, n1)
    obs = float(np.sum(_log_comb(rows, t[:, 1]))) - log_norm
    limit = obs + 1e-7  # log(1 + 1e-7): the relative tolerance of SPSS and scipy

    if _count_tables(rows, n1) <= max_tables:
        # Enumerate: partial sums s and log-probabilities lp of the rows so far.
        s = np.zeros(1, dtype=np.int64)
        lp = np.zeros(1, dtype=float)
        remaining = np.concatenate([np.cumsum(rows[::-1])[::-1][1:], [0]])
        for i, r in enumerate(rows[:-1]):
            xs = np.arange(min(int(r), n1) + 1)
            lc = _log_comb(int(r), xs)
            chunk = max(1, _CHUNK // xs.size)  # bound the memory of the expansion
            parts_s, parts_lp = [], []
            for j in range(0, s.size, chunk):
                s_new = (s[j : j + chunk, None] + xs[None, :]).ravel()
                lp_new = (lp[j : j + chunk, None] + lc[None, :]).ravel()
                keep = (s_new <= n1) & (s_new + remaining[i] >= n1)
                parts_s.append(s_new[keep])
                parts_lp.append(lp_new[keep])
            s, lp = np.concatenate(parts_s), np.concatenate(parts_lp)
        last = n1 - s
        ok = (last >= 0) & (last <= rows[-1])
        lp = lp[ok] + _log_comb(int(rows[-1]), last[ok]) - log_norm
        p = float(np.exp(lp[lp <= limit]).sum())
        return min(1.0, p), "exact"

    rng = np.random.default_rng(seed)
    draws = rng.multivariate_hypergeometric(rows, n1, size=resamples)
    lp = np.sum(_log_comb(rows[None, :], draws), axis=1) - log_norm
    k = int(np.count_nonzero(lp <= limit))
    return (k + 1) / (resamples + 1), f"resampled ({resamples} tables, seed {seed})"


# --------------------------------------------------------------------------
# One row
# --------------------------------------------------------------------------


def continuous_row(x0, x1, *, name="x"):
    """All Table 2 statistics of one continuous variable.

    Parameters
    ----------
    x0, x1 : array_like of float
        Values of group 0 (outcome absent) and group 1 (outcome present),
        without NaN.
    name : str, optional
        Variable name used in the warnings.

    Returns
    -------
    row : dict
        The columns described in ``docs/statistics.md`` (``mean_0``,
        ``student_t``, ``test``, ``p``, …); NaN where a statistic cannot be
        computed.
    warnings : list of str
        Why any value is NaN, and notes on the test choice.
    """
    a = np.asarray(x0, float)
    b = np.asarray(x1, float)
    notes = []
    row = {"type": "continuous", "n_0": a.size, "n_1": b.size}
    for g, x in ((0, a), (1, b)):
        row[f"mean_{g}"] = float(x.mean()) if x.size else math.nan
        row[f"sd_{g}"] = float(x.std(ddof=1)) if x.size > 1 else math.nan
        if x.size:
            q1, med, q3 = quartiles(x)
        else:
            q1 = med = q3 = math.nan
        row[f"median_{g}"], row[f"q1_{g}"], row[f"q3_{g}"] = med, q1, q3
        w = sp = math.nan
        if x.size < 3:
            notes.append(f"{name}: Shapiro–Wilk needs 3 values or more in each group; group {g} has {x.size}")
        elif np.ptp(x) == 0:
            notes.append(f"{name}: Shapiro–Wilk is undefined in group {g}: every value is {x[0]:g}")
        else:
            with _warnings.catch_warnings():
                _warnings.simplefilter("ignore")
                res = _stats.shapiro(x)
            w, sp = float(res.statistic), float(res.pvalue)
        row[f"shapiro_w_{g}"], row[f"shapiro_p_{g}"] = w, sp

    too_few = a.size < 2 or b.size < 2
    if too_few:
        notes.append(
            f"{name}: t tests need 2 values or more in each group (group 0 has {a.size}, group 1 has {b.size})"
        )
    var0 = a.var(ddof=1) if a.size > 1 else math.nan
    var1 = b.var(ddof=1) if b.size > 1 else math.nan
    row["mean_diff"] = row["mean_0"] - row["mean_1"]

    # Levene (mean-centred, as SPSS T-TEST); undefined when both groups are constant.
    lev_f = lev_p = math.nan
    if not too_few:
        if var0 == 0 and var1 == 0:
            notes.append(f"{name}: Levene's test is undefined: both groups are constant")
        elif a.size == 2 and b.size == 2:
            # |x − mean| is the same for both values of a pair: no spread within groups to test
            notes.append(f"{name}: Levene's test is undefined with 2 values in each group")
        else:
            res = _stats.levene(a, b, center="mean")
            lev_f, lev_p = float(res.statistic), float(res.pvalue)
    row["levene_f"], row["levene_p"] = lev_f, lev_p

    # Student (pooled) and Welch t: sign = mean of group 0 minus group 1.
    keys = ("t", "df", "p", "se", "ci_low", "ci_high")
    for kind in ("student", "welch"):
        vals = dict.fromkeys(keys, math.nan)
        if not too_few and not (var0 == 0 and var1 == 0):
            res = _stats.ttest_ind(a, b, equal_var=(kind == "student"))
            ci = res.confidence_interval(0.95)
            vals = {
                "t": float(res.statistic),
                "df": float(res.df),
                "p": float(res.pvalue),
                "se": float(row["mean_diff"] / res.statistic) if res.statistic else math.nan,
                "ci_low": float(ci.low),
                "ci_high": float(ci.high),
            }
        for k in keys:
            row[f"{kind}_{k}"] = vals[k]
    if not too_few and var0 == 0 and var1 == 0:
        notes.append(
            f"{name}: no variance within either group; t is undefined"
            + (" (the variable has one value only)" if row["mean_diff"] == 0 else "")
        )

    mw = mann_whitney(a, b) if a.size and b.size else None
    row["mannwhitney_u"] = mw["u"] if mw else math.nan
    row["mannwhitney_z"] = mw["z"] if mw else math.nan
    row["mannwhitney_p"] = mw["p"] if mw else math.nan
    row["mean_rank_0"], row["mean_rank_1"] = mw["mean_rank"] if mw else (math.nan, math.nan)
    if mw and not math.isfinite(mw["z"]):
        notes.append(f"{name}: Mann–Whitney Z is undefined: every value is tied")

    # The declared rule: Mann–Whitney when either group fails Shapiro–Wilk
    # (or normality cannot be checked), else Welch when Levene rejects equal
    # variances, else Student.
    sw = (row["shapiro_p_0"], row["shapiro_p_1"])
    if any(not math.isfinite(p) for p in sw):
        test = "mannwhitney"
        reason = "normality could not be checked in both groups"
    elif min(sw) < ALPHA:
        test = "mannwhitney"
        reason = f"Shapiro–Wilk P < {ALPHA:g} in group {0 if sw[0] < ALPHA else 1}"
    elif math.isfinite(lev_p) and lev_p < ALPHA:
        test, reason = "welch", f"Levene P < {ALPHA:g}"
    else:
        test, reason = "student", "normal in both groups, equal variances not rejected"
    row["test"] = test
    row["test_reason"] = reason
    row["statistic"] = {
        "student": row["student_t"],
        "welch": row["welch_t"],
        "mannwhitney": row["mannwhitney_u"],
    }[test]
    row["p"] = {
        "student": row["student_p"],
        "welch": row["welch_p"],
        "mannwhitney": row["mannwhitney_p"],
    }[test]
    # The CI of the mean difference follows Levene: Welch's row when equal
    # variances are rejected, Student's otherwise.
    ci_from = "welch" if (math.isfinite(lev_p) and lev_p < ALPHA) else "student"
    row["mean_diff_ci_low"] = row[f"{ci_from}_ci_low"]
    row["mean_diff_ci_high"] = row[f"{ci_from}_ci_high"]
    row["mean_diff_ci_from"] = ci_from
    if not math.isfinite(row["p"]):
        notes.append(f"{name}: the chosen test ({test}) has no P value; see the notes above")
    return row, notes


def _level_order(values):
    """Sorted distinct levels: numerically when every level is a number."""
    levels = list(pd.unique(values))
    nums = pd.to_numeric(pd.Series(levels, dtype=object), errors="coerce")
    if nums.notna().all():
        return [lv for _, lv in sorted(zip(nums.tolist(), levels, strict=True), key=lambda t: t[0])]
    return sorted(levels, key=str)


def categorical_row(values, y, *, name="x", seed=0):
    """Chi-square tests of one categorical variable against the two groups.

    Parameters
    ----------
    values : array_like
        Levels (text or numbers), without missing values.
    y : array_like of {0, 1}
        Group of each value.
    name : str, optional
        Variable name used in the warnings.
    seed : int, optional
        Seed of the resampled Fisher test (used only for very large tables).

    Returns
    -------
    row : dict
        ``chi2`` (Pearson, no continuity correction), ``df``, ``p`` (Pearson),
        ``lr_chi2``/``lr_p`` (likelihood ratio), ``yates_chi2``/``yates_p``
        (2 × 2 only), ``fisher_p`` and ``fisher_method`` (for every 2 × 2
        table, as SPSS prints it, and for larger tables when an expected
        count is below 5), ``min_expected``, ``n_cells_below_5``, ``n_cells``.
    levels : list of dict
        Per level: counts, column percentages and expected counts per group.
    warnings : list of str
    """
    from .input import _canon

    # one level per text: 1, 1.0 and "1" (mixed spreadsheet cells) are the same level
    values = pd.Series([_canon(v) for v in np.asarray(values, dtype=object)], dtype=object)
    y = np.asarray(y, int)
    notes = []
    order = _level_order(values)
    table = np.array([[np.sum((values == lv).to_numpy() & (y == g)) for g in (0, 1)] for lv in order])
    n_g = table.sum(axis=0)
    row = {"type": "categorical", "n_0": int(n_g[0]), "n_1": int(n_g[1])}
    expected = np.outer(table.sum(axis=1), n_g) / table.sum() if table.sum() else table * 0.0
    level_rows = [
        {
            "level": _level_label(lv),
            "count_0": int(table[i, 0]),
            "count_1": int(table[i, 1]),
            "pct_0": 100.0 * table[i, 0] / n_g[0] if n_g[0] else math.nan,
            "pct_1": 100.0 * table[i, 1] / n_g[1] if n_g[1] else math.nan,
            "expected_0": float(expected[i, 0]),
            "expected_1": float(expected[i, 1]),
        }
        for i, lv in enumerate(order)
    ]
    stats = dict.fromkeys(
        ("chi2", "df", "p", "lr_chi2", "lr_p", "yates_chi2", "yates_p", "fisher_p", "min_expected"),
        math.nan,
    )
    stats["fisher_method"] = None
    stats["n_cells"] = int(table.size)
    stats["n_cells_below_5"] = 0
    if len(order) < 2:
        notes.append(
            f"{name}: no variance: every patient has the level {_level_label(order[0])!r}"
            if order
            else f"{name}: no values"
        )
    elif min(n_g) == 0:
        notes.append(f"{name}: one group has no values; the chi-square test is undefined")
    else:
        chi2, p, dof, _ = _stats.chi2_contingency(table, correction=False)
        lr, lr_p, _, _ = _stats.chi2_contingency(table, correction=False, lambda_="log-likelihood")
        stats.update(chi2=float(chi2), df=int(dof), p=float(p), lr_chi2=float(lr), lr_p=float(lr_p))
        stats["min_expected"] = float(expected.min())
        below = int(np.count_nonzero(expected < 5))
        stats["n_cells_below_5"] = below
        if table.shape == (2, 2):
            y_chi2, y_p, _, _ = _stats.chi2_contingency(table, correction=True)
            stats.update(yates_chi2=float(y_chi2), yates_p=float(y_p))
        if table.shape == (2, 2) or below:
            fp, method = fisher_exact_rx2(table, seed=seed)
            stats.update(fisher_p=fp, fisher_method=method)
        if below:
            notes.append(
                f"{name}: {below} of {table.size} cells ({100 * below / table.size:.1f}%) have "
                f"an expected count below 5 (minimum {expected.min():.2f}); "
                "Fisher's exact P is given and is the safer one to quote"
            )
    row.update(stats)
    row["test"] = "chi2"
    row["statistic"] = row["chi2"]
    return row, level_rows, notes


def _level_label(value):
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def compare_groups(data, y, *, continuous=(), categorical=(), seed=0):
    """Compare the two outcome groups on each variable (Table 2).

    Parameters
    ----------
    data : pandas.DataFrame
        One row per patient. Continuous columns must already be numeric
        (float with NaN for missing); categorical columns may hold text or
        numbers (NaN or None for missing).
    y : pandas.Series of {0, 1}
        The outcome per patient (1 = event), aligned on ``data``'s index,
        without missing values.
    continuous, categorical : sequence of str
        Columns to compare; the rows come in the order of ``data``'s columns.
    seed : int, optional
        Seed of the resampled Fisher test (used only for very large tables).

    Returns
    -------
    GroupComparison
    """
    from .input import check_finite, outcome_series

    y = outcome_series(y, data.index)
    check_finite(data, list(continuous))
    rows, level_rows, notes = [], [], []
    for name in continuous:
        x = data[name]
        keep = x.notna()
        dropped = int((~keep).sum())
        x0 = x[keep & (y == 0)].to_numpy(float)
        x1 = x[keep & (y == 1)].to_numpy(float)
        row, w = continuous_row(x0, x1, name=name)
        row = {"variable": name, **row, "n_missing": dropped}
        if dropped:
            w.insert(0, f"{name}: {dropped} patient(s) with a missing value left out")
        row["notes"] = " | ".join(w)
        rows.append(row)
        notes.extend(w)
    for name in categorical:
        x = data[name]
        keep = x.notna()
        dropped = int((~keep).sum())
        row, levels, w = categorical_row(x[keep].to_numpy(object), y[keep].to_numpy(), name=name, seed=seed)
        row = {"variable": name, **row, "n_missing": dropped}
        if dropped:
            w.insert(0, f"{name}: {dropped} patient(s) with a missing value left out")
        row["notes"] = " | ".join(w)
        rows.append(row)
        level_rows.extend({"variable": name, **lv} for lv in levels)
        notes.extend(w)
    # Table 2 order: the order of the columns in the table.
    position = {c: i for i, c in enumerate(data.columns)}
    order = {name: position.get(name, len(position)) for name in [*continuous, *categorical]}
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.sort_values("variable", key=lambda s: s.map(order), kind="stable")
        table = table.reset_index(drop=True)
    levels_df = pd.DataFrame(
        level_rows,
        columns=["variable", "level", "count_0", "count_1", "pct_0", "pct_1", "expected_0", "expected_1"],
    )
    return GroupComparison(table=table, levels=levels_df, warnings=notes)
