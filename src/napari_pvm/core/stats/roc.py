"""ROC analysis as SPSS's ROC command computes it (the seed paper's Figure 2).

Cut-offs are SPSS's: the smallest observed value − 1, the midpoints of every
two consecutive distinct observed values (both groups together), and the
largest value + 1. The area is the Mann–Whitney estimate (ties count ½);
its standard error is the nonparametric one SPSS and PSPP print
(Hanley & McNeil's formula with Q₁ and Q₂ estimated from the data); the
confidence interval is AUC ± 1.96 SE. The Youden cut-off is the first
maximum of sensitivity + specificity − 1 in ascending cut-off order.
"""

import dataclasses
import math

import numpy as np
import pandas as pd
from scipy import stats as _stats

from ..errors import StatsInputError

__all__ = ["AUC_CI_METHOD", "RocResult", "roc_analysis", "roc_curve"]

#: How the confidence interval of the area is computed (shown in reports).
AUC_CI_METHOD = (
    "asymptotic 95% CI, AUC ± 1.96 SE, with the nonparametric SE of SPSS/PSPP ROC "
    "(Hanley & McNeil 1982 with Q1 and Q2 estimated from the data)"
)

_Z975 = _stats.norm.ppf(0.975)


@dataclasses.dataclass(frozen=True)
class RocResult:
    """Result of :func:`roc_analysis`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per variable: ``variable``, ``n_0`` (patients without the
        event), ``n_1`` (with it), ``n_missing``, ``auc``, ``auc_se``,
        ``auc_ci_low``, ``auc_ci_high``, ``auc_p`` (asymptotic test of
        AUC = 0.5), ``direction`` (``">="``: higher values predict the event;
        ``"<="``: lower values do), ``cutoff``, ``sensitivity``,
        ``specificity``, ``youden_j``, ``tp``, ``fn``, ``tn``, ``fp`` (counts
        at the cut-off) and ``n_tied_maxima``.
    curves : pandas.DataFrame
        Every cut-off of every variable (long format): ``variable``,
        ``cutoff``, ``sensitivity``, ``specificity``, ``tp``, ``fn``, ``tn``,
        ``fp``, in ascending cut-off order, for the variable's direction.
    warnings : list of str
    """

    table: pd.DataFrame
    curves: pd.DataFrame
    warnings: list


def _cutoffs(x):
    v = np.unique(x)
    return np.concatenate([[v[0] - 1.0], (v[:-1] + v[1:]) / 2.0, [v[-1] + 1.0]])


def _placements(pos, neg):
    """Q₁, Q₂ terms of the nonparametric SE, for 'higher values are positive'."""
    pos_sorted = np.sort(pos)
    neg_sorted = np.sort(neg)
    n1, n0 = pos.size, neg.size
    # For each negative: positives above it and tied with it.
    gt = n1 - np.searchsorted(pos_sorted, neg, side="right")
    eq = np.searchsorted(pos_sorted, neg, side="right") - np.searchsorted(pos_sorted, neg, side="left")
    q1 = float(np.sum(gt**2 + gt * eq + eq**2 / 3.0)) / (n0 * n1**2)
    # For each positive: negatives below it and tied with it.
    lt = np.searchsorted(neg_sorted, pos, side="left")
    eq2 = np.searchsorted(neg_sorted, pos, side="right") - lt
    q2 = float(np.sum(lt**2 + lt * eq2 + eq2**2 / 3.0)) / (n1 * n0**2)
    return q1, q2


def roc_curve(x, y, *, direction=None):
    """SPSS-style ROC coordinates, area and Youden cut-off of one variable.

    Parameters
    ----------
    x : array_like of float
        Test values (no NaN).
    y : array_like of {0, 1}
        1 for a patient with the event (SPSS's "positive actual state").
    direction : {">=", "<=", None}, optional
        ``">="``: a value at or above the cut-off predicts the event (SPSS
        TESTPOS(LARGE)); ``"<="``: at or below (TESTPOS(SMALL)). Default:
        whichever gives an area ≥ 0.5 (``">="`` on a tie).

    Returns
    -------
    result : dict
        ``auc``, ``auc_se``, ``auc_ci`` (low, high), ``auc_p``,
        ``direction``, ``cutoff``, ``sensitivity``, ``specificity``,
        ``youden_j``, ``tp``, ``fn``, ``tn``, ``fp``, ``n_tied_maxima``,
        ``n_0``, ``n_1`` and ``coordinates`` (a DataFrame of every cut-off).

    Raises
    ------
    StatsInputError
        When either group is empty.

    Examples
    --------
    >>> r = roc_curve([1, 2, 3, 4, 5, 6], [0, 0, 1, 0, 1, 1])
    >>> r["auc"], r["direction"], r["cutoff"], r["sensitivity"], r["specificity"]
    (0.8888888888888888, '>=', 2.5, 1.0, 0.6666666666666666)
    """
    x = np.asarray(x, float)
    y = np.asarray(y, int)
    pos, neg = x[y == 1], x[y == 0]
    n1, n0 = pos.size, neg.size
    if n1 == 0 or n0 == 0:
        raise StatsInputError(f"ROC needs patients with and without the event; got {n1} with and {n0} without")
    ranks = _stats.rankdata(x)
    auc_high = (float(ranks[y == 1].sum()) - n1 * (n1 + 1) / 2.0) / (n0 * n1)
    if direction is None:
        direction = ">=" if auc_high >= 0.5 else "<="
    if direction not in (">=", "<="):
        raise StatsInputError(f"direction must be '>=' or '<=', got {direction!r}")
    sign = 1.0 if direction == ">=" else -1.0
    auc = auc_high if direction == ">=" else 1.0 - auc_high

    # Nonparametric SE, computed in the orientation where the area is `auc`.
    q1, q2 = _placements(sign * pos, sign * neg)
    var = (auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n0 - 1) * (q2 - auc**2)) / (n1 * n0)
    se = math.sqrt(max(var, 0.0))
    sd_null = math.sqrt((n1 + n0 + 1) / (12.0 * n1 * n0))
    p = float(2.0 * _stats.norm.sf(abs(auc - 0.5) / sd_null))

    cut = _cutoffs(x)
    pos_s, neg_s = np.sort(pos), np.sort(neg)
    if direction == ">=":
        tp = n1 - np.searchsorted(pos_s, cut, side="left")
        fp = n0 - np.searchsorted(neg_s, cut, side="left")
    else:
        tp = np.searchsorted(pos_s, cut, side="right")
        fp = np.searchsorted(neg_s, cut, side="right")
    fn, tn = n1 - tp, n0 - fp
    # Youden's J in exact integer arithmetic: J·n0·n1 = tp·n0 + tn·n1 − n0·n1.
    j_num = tp.astype(np.int64) * n0 + tn.astype(np.int64) * n1 - n0 * n1
    best = int(np.argmax(j_num))  # first maximum in ascending cut-off order
    n_tied = int(np.count_nonzero(j_num == j_num[best]))
    coords = pd.DataFrame(
        {
            "cutoff": cut,
            "sensitivity": tp / n1,
            "specificity": tn / n0,
            "tp": tp,
            "fn": fn,
            "tn": tn,
            "fp": fp,
        }
    )
    return {
        "n_0": n0,
        "n_1": n1,
        "auc": auc,
        "auc_se": se,
        "auc_ci": (auc - _Z975 * se, auc + _Z975 * se),
        "auc_p": p,
        "direction": direction,
        "cutoff": float(cut[best]),
        "sensitivity": float(tp[best] / n1),
        "specificity": float(tn[best] / n0),
        "youden_j": float(j_num[best] / (n0 * n1)),
        "tp": int(tp[best]),
        "fn": int(fn[best]),
        "tn": int(tn[best]),
        "fp": int(fp[best]),
        "n_tied_maxima": n_tied,
        "coordinates": coords,
    }


def roc_analysis(data, y, variables):
    """ROC analysis of each variable against the outcome.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per patient; the ``variables`` columns numeric (NaN for
        missing).
    y : pandas.Series of {0, 1}
        Outcome per patient (1 = event), aligned on ``data``'s index.
    variables : sequence of str
        Columns to analyse.

    Returns
    -------
    RocResult
    """
    from .input import check_finite, outcome_series

    y = outcome_series(y, data.index)
    check_finite(data, list(variables))
    rows, curves, notes = [], [], []
    for name in variables:
        x = data[name]
        keep = x.notna()
        dropped = int((~keep).sum())
        if dropped:
            notes.append(f"ROC {name}: {dropped} patient(s) with a missing value left out")
        r = roc_curve(x[keep].to_numpy(float), y[keep].to_numpy())
        coords = r.pop("coordinates")
        low, high = r.pop("auc_ci")
        row = {"variable": name, "n_missing": dropped, **r, "auc_ci_low": low, "auc_ci_high": high}
        row_notes = []
        if x[keep].nunique() < 2:
            row_notes.append(f"ROC {name}: the variable has one value only; the curve is the diagonal")
        if low < 0 or high > 1:
            row_notes.append(
                f"ROC {name}: the asymptotic CI ({low:.3f} to {high:.3f}) leaves [0, 1]; "
                "the normal approximation is poor this close to the bound"
            )
        if r["n_tied_maxima"] > 1:
            row_notes.append(
                f"ROC {name}: {r['n_tied_maxima']} cut-offs share the maximum Youden index; the lowest is reported"
            )
        row["notes"] = " | ".join(row_notes)
        notes.extend(row_notes)
        rows.append(row)
        coords.insert(0, "variable", name)
        curves.append(coords)
    columns = [
        "variable",
        "n_0",
        "n_1",
        "n_missing",
        "auc",
        "auc_se",
        "auc_ci_low",
        "auc_ci_high",
        "auc_p",
        "direction",
        "cutoff",
        "sensitivity",
        "specificity",
        "youden_j",
        "tp",
        "fn",
        "tn",
        "fp",
        "n_tied_maxima",
        "notes",
    ]
    table = pd.DataFrame(rows, columns=columns)
    curves_df = (
        pd.concat(curves, ignore_index=True)
        if curves
        else pd.DataFrame(columns=["variable", "cutoff", "sensitivity", "specificity", "tp", "fn", "tn", "fp"])
    )
    return RocResult(table=table, curves=curves_df, warnings=notes)
