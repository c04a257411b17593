"""Inter- and intra-observer reliability of the measurement columns.

Two blinded observers (or more) measure the same patients; this module says
how well they agree, per measure column of the muscle table (contract 3) or
of the spine table (contract 8: ``vbq`` and ``local_kyphosis_deg``):

- intraclass correlation from the two-way ANOVA of the patients × observers
  matrix (Shrout & Fleiss 1979; McGraw & Wong 1996): ICC(2,1) absolute
  agreement and ICC(3,1) consistency for one observer, ICC(2,k) and ICC(3,k)
  for the mean of the k observers, each with its F-based confidence interval
  and the Koo & Li (2016) rating of that interval;
- Bland–Altman bias and limits of agreement with their confidence intervals,
  per pair of observers, and a test of proportional bias (regression of the
  differences on the pair means);
- the standard error of measurement SEM = SD × √(1 − ICC(2,1)) and the minimal
  detectable change MDC95 = 1.96 × √2 × SEM.

The pure functions :func:`icc` and :func:`bland_altman` work on arrays;
:func:`reliability` and :func:`intra_observer` take the rows of the shared
CSV (as :func:`napari_pvm.core.store.read_rows` returns them), choose one
reading per patient × observer with the rule the statistics use
(:func:`~napari_pvm.core.stats.input.select_rows`) and compute once a
:class:`ReliabilityResult`: the per-measure table, the pairwise Bland–Altman
table, the values analysed and the outline origins (drawn, proposed, edited)
per observer. A measure that cannot be analysed (constant, too few patients)
keeps its row, with NaN values and a ``note`` that says why. Problems with the
study as a whole (one observer only, no patient measured by both) raise
:class:`~napari_pvm.core.errors.StatsInputError`.

See ``docs/reliability.md`` for the formulas and how to report them.
"""

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats as _stats

from ..errors import StatsInputError
from ..tables import check_columns
from .input import id_text, measure_columns, select_rows, to_numeric

__all__ = [
    "KOO_LI_BANDS",
    "LOA_CI_METHODS",
    "MIN_PATIENTS",
    "ReliabilityResult",
    "bland_altman",
    "icc",
    "intra_observer",
    "intra_observer_pairs",
    "intra_observer_table",
    "koo_li_rating",
    "measure_unit",
    "outline_origins",
    "pairwise_table",
    "inter_observer",
    "reliability_table",
]

#: Fewest patients with a value from every observer for a measure to be analysed.
MIN_PATIENTS = 3
#: Koo & Li (2016) bands as (lower edge, label); a value at an edge takes the
#: upper band, except that 0.90 itself is still "good" (">0.90 excellent").
KOO_LI_BANDS = ((-math.inf, "poor"), (0.5, "moderate"), (0.75, "good"), (0.9, "excellent"))
#: Confidence intervals of the limits of agreement (see :func:`bland_altman`).
LOA_CI_METHODS = ("exact", "approximate")

_ICC_FORMS = ("icc2_1", "icc3_1", "icc2_k", "icc3_k")
_ICC_LABELS = {"icc2_1": "ICC(2,1)", "icc3_1": "ICC(3,1)", "icc2_k": "ICC(2,k)", "icc3_k": "ICC(3,k)"}
_PAIR_VALUES = (
    "bias",
    "bias_ci_low",
    "bias_ci_high",
    "sd_diff",
    "loa_low",
    "loa_low_ci_low",
    "loa_low_ci_high",
    "loa_high",
    "loa_high_ci_low",
    "loa_high_ci_high",
    "prop_bias_slope",
    "prop_bias_slope_ci_low",
    "prop_bias_slope_ci_high",
    "prop_bias_p",
)
_ICC_VALUES = tuple(name for form in _ICC_FORMS for name in (form, f"{form}_ci_low", f"{form}_ci_high")) + (
    "f",
    "df1",
    "df2",
    "p",
    "ms_subjects",
    "ms_observers",
    "ms_error",
)


# --------------------------------------------------------------------------
# Pure functions on arrays
# --------------------------------------------------------------------------


def icc(data, *, alpha=0.05):
    """Intraclass correlations of a complete subjects × raters matrix.

    Parameters
    ----------
    data : array_like of shape (n_subjects, k_raters)
        One row per subject (patient), one column per rater (observer or
        session); no missing values.
    alpha : float, optional
        1 − confidence level of the intervals (default 0.05: 95 % CIs).

    Returns
    -------
    result : dict
        ``n``, ``k``; the mean squares ``ms_subjects`` (MSR, df n − 1),
        ``ms_observers`` (MSC, df k − 1) and ``ms_error`` (MSE, df
        (n − 1)(k − 1)); ``f`` = MSR/MSE with ``df1``, ``df2`` and ``p`` (test
        of ICC = 0); ``icc2_1``, ``icc3_1``, ``icc2_k``, ``icc3_k`` each with
        ``<form>_ci`` = (low, high); ``note``: empty, or why an interval is
        NaN.

    Raises
    ------
    StatsInputError
        Fewer than 2 subjects or raters, missing or non-finite values, or
        every value identical (ICC undefined).

    Notes
    -----
    ICC(2,1) = (MSR − MSE) / (MSR + (k − 1)MSE + k(MSC − MSE)/n) is the
    two-way random, absolute-agreement, single-rater form (McGraw & Wong
    ICC(A,1)); ICC(3,1) = (MSR − MSE) / (MSR + (k − 1)MSE) is two-way mixed,
    consistency (ICC(C,1)); ICC(2,k) = (MSR − MSE) / (MSR + (MSC − MSE)/n)
    and ICC(3,k) = (MSR − MSE)/MSR are the same for the mean of k raters.
    The consistency intervals use F = MSR/MSE on (n − 1, (n − 1)(k − 1)) df;
    the absolute-agreement intervals use McGraw & Wong's (1996) formula with
    Satterthwaite's df, as SPSS does.

    Examples
    --------
    Shrout & Fleiss (1979), 6 targets × 4 judges:

    >>> x = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8],
    ...      [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    >>> r = icc(x)
    >>> round(r["icc2_1"], 2), round(r["icc3_1"], 2), round(r["icc3_k"], 2)
    (0.29, 0.71, 0.91)
    """
    x = np.asarray(data, dtype=float)
    if x.ndim != 2:
        raise StatsInputError(f"ICC needs a 2-D subjects × raters array, got shape {x.shape}")
    n, k = x.shape
    if k < 2:
        raise StatsInputError(f"ICC needs at least 2 raters, got {k}")
    if n < 2:
        raise StatsInputError(f"ICC needs at least 2 subjects, got {n}")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x).all(axis=1)).sum())
        raise StatsInputError(
            f"ICC needs a value from every rater for every subject; {bad} of {n} "
            "subjects have a missing value (leave them out first)"
        )
    if _is_constant(x):
        raise StatsInputError(f"every value is {x.flat[0]:g}: with no variation the ICC is undefined")

    grand = x.mean()
    row_means = x.mean(axis=1)
    col_means = x.mean(axis=0)
    residuals = x - row_means[:, None] - col_means[None, :] + grand
    df1, dfc, df2 = n - 1, k - 1, (n - 1) * (k - 1)
    msr = k * np.sum((row_means - grand) ** 2) / df1
    msc = n * np.sum((col_means - grand) ** 2) / dfc
    exact_fit = np.abs(residuals).max() <= _rounding(x)
    mse = 0.0 if exact_fit else float(np.sum(residuals**2) / df2)

    out = {
        "n": n,
        "k": k,
        "ms_subjects": float(msr),
        "ms_observers": float(msc),
        "ms_error": mse,
        "df1": df1,
        "df2": df2,
        "note": "",
    }
    notes = []
    with np.errstate(divide="ignore", invalid="ignore"):
        out["icc2_1"] = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        out["icc3_1"] = (msr - mse) / (msr + (k - 1) * mse)
        average = msr + (msc - mse) / n
        # past its pole (the observers disagree more than the patients differ)
        # the formula's value means nothing: above 1, or of the wrong sign
        out["icc2_k"] = (msr - mse) / average if average > 0 else math.nan
        out["icc3_k"] = (msr - mse) / msr if msr > 0 else math.nan
    if not average > 0:
        notes.append("ICC(2,k) undefined: the observers disagree more than the patients differ")
    if not msr > 0:
        notes.append("ICC(3,k) undefined: every patient has the same mean (between-patient variance 0)")

    if exact_fit:
        # Every subject's values differ between raters by the same constant
        # (or not at all): MSE = 0, F is infinite, the intervals undefined.
        out.update(f=math.inf, p=0.0)
        for form in _ICC_FORMS:
            out[f"{form}_ci"] = (math.nan, math.nan)
        out["note"] = "; ".join(
            notes
            + [
                "the observers differ by the same amount for every patient (residual "
                "variance 0): confidence intervals undefined"
            ]
        )
        return _as_floats(out)

    fval = msr / mse
    out["f"] = fval
    out["p"] = float(_stats.f.sf(fval, df1, df2))
    q = 1 - alpha / 2
    if fval <= 0:  # no between-patient variance: every interval degenerate
        for form in _ICC_FORMS:
            out[f"{form}_ci"] = (math.nan, math.nan)
        out["note"] = "; ".join(notes + ["confidence intervals undefined: every patient has the same mean"])
        return _as_floats(out)

    # Consistency: Shrout & Fleiss (1979) / McGraw & Wong (1996) case 3.
    f_low = fval / _stats.f.ppf(q, df1, df2)
    f_high = fval * _stats.f.ppf(q, df2, df1)
    out["icc3_1_ci"] = ((f_low - 1) / (f_low + k - 1), (f_high - 1) / (f_high + k - 1))
    out["icc3_k_ci"] = (1 - 1 / f_low, 1 - 1 / f_high)

    # Absolute agreement: McGraw & Wong (1996) case 2A, Satterthwaite df.
    rho = out["icc2_1"]
    a = k * rho / (n * (1 - rho))
    b = 1 + k * rho * (n - 1) / (n * (1 - rho))
    v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / dfc + (b * mse) ** 2 / df2)
    f_star = _stats.f.ppf(q, df1, v)
    f_star_inv = _stats.f.ppf(q, v, df1)
    c = k * msc + (k * n - k - n) * mse
    low = n * (msr - f_star * mse) / (f_star * c + n * msr)
    high = n * (f_star_inv * msr - mse) / (c + n * f_star_inv * msr)
    out["icc2_1_ci"] = (low, high)
    # Spearman–Brown of the single-rater bounds; identical to McGraw & Wong's
    # n(MSR − F*·MSE) / (F*(MSC − MSE) + n·MSR) for ICC(A,k). Below −1/(k − 1)
    # a single-rater bound has no average-rater counterpart.
    out["icc2_k_ci"] = tuple(k * r / (1 + (k - 1) * r) if 1 + (k - 1) * r > 0 else -math.inf for r in (low, high))
    for form in _ICC_FORMS:
        ci = out[form + "_ci"]
        if not (np.isfinite(ci).all() and ci[0] <= ci[1] and np.isfinite(out[form])):
            out[form + "_ci"] = (math.nan, math.nan)
            if np.isfinite(out[form]):
                notes.append(
                    f"{_ICC_LABELS[form]}: confidence interval undefined (too little between-patient variance)"
                )
    out["note"] = "; ".join(notes)
    return _as_floats(out)


def bland_altman(a, b, *, agreement=1.96, alpha=0.05, loa_ci="exact"):
    """Bland–Altman agreement of two paired series of measurements.

    Parameters
    ----------
    a, b : array_like of shape (n,)
        The same n subjects measured by two raters; no missing values.
    agreement : float, optional
        Multiple of the SD of the differences for the limits (default 1.96).
    alpha : float, optional
        1 − confidence level of the intervals (default 0.05).
    loa_ci : {"exact", "approximate"}, optional
        Interval for each limit of agreement: ``"exact"`` from the noncentral
        t distribution (Carkeet 2015), ``"approximate"`` limit ± t·SD·√(3/n)
        (Bland & Altman 1986, 1999).

    Returns
    -------
    result : dict
        ``n``; ``bias`` = mean(a − b) with ``bias_ci``; ``sd_diff``;
        ``loa_low``, ``loa_high`` = bias ∓ agreement·SD with ``loa_low_ci``,
        ``loa_high_ci``; proportional bias from the least-squares regression
        of a − b on (a + b)/2: ``prop_bias_slope``, ``prop_bias_slope_ci``,
        ``prop_bias_p`` (t test of slope 0, n − 2 df); ``note``.

    Raises
    ------
    StatsInputError
        Arrays of different lengths, fewer than 2 pairs, missing values, or
        an unknown ``loa_ci``.

    Notes
    -----
    The bias interval is bias ± t(1 − α/2, n − 1)·SD/√n. The exact interval
    of the upper limit is bias + SD·t'(q; n − 1, z√n)/√n for q = α/2 and
    1 − α/2, with t' the noncentral t quantile and z = ``agreement``; the
    lower limit mirrors it.

    Examples
    --------
    >>> r = bland_altman([10.0, 12.0, 11.0, 14.0], [9.0, 12.5, 10.0, 13.0])
    >>> round(r["bias"], 3), round(r["loa_low"], 3), round(r["loa_high"], 3)
    (0.625, -0.845, 2.095)
    """
    if loa_ci not in LOA_CI_METHODS:
        raise StatsInputError(f"loa_ci must be one of {LOA_CI_METHODS}, got {loa_ci!r}")
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise StatsInputError(f"paired series differ in length: {a.size} and {b.size}")
    n = a.size
    if n < 2:
        raise StatsInputError(f"Bland–Altman needs at least 2 pairs, got {n}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise StatsInputError("Bland–Altman needs complete pairs; leave out missing values first")

    d = a - b
    m = (a + b) / 2
    bias = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd <= _rounding(a, b):
        sd = 0.0
    t = _stats.t.ppf(1 - alpha / 2, n - 1)
    half = t * sd / math.sqrt(n)
    loa_low, loa_high = bias - agreement * sd, bias + agreement * sd
    if loa_ci == "exact":
        nc = agreement * math.sqrt(n)
        q_lo = _stats.nct.ppf(alpha / 2, n - 1, nc) / math.sqrt(n)
        q_hi = _stats.nct.ppf(1 - alpha / 2, n - 1, nc) / math.sqrt(n)
        high_ci = (bias + sd * q_lo, bias + sd * q_hi)
        low_ci = (bias - sd * q_hi, bias - sd * q_lo)
    else:
        se = sd * math.sqrt(3 / n)
        high_ci = (loa_high - t * se, loa_high + t * se)
        low_ci = (loa_low - t * se, loa_low + t * se)

    out = {
        "n": n,
        "bias": bias,
        "bias_ci": (bias - half, bias + half),
        "sd_diff": sd,
        "loa_low": loa_low,
        "loa_low_ci": low_ci,
        "loa_high": loa_high,
        "loa_high_ci": high_ci,
    }
    out.update(_proportional_bias(m, d, alpha))
    return _as_floats(out)


def _proportional_bias(means, diffs, alpha):
    """Least-squares slope of the differences on the means, its CI and P."""
    n = means.size
    nan = {
        "prop_bias_slope": math.nan,
        "prop_bias_slope_ci": (math.nan, math.nan),
        "prop_bias_p": math.nan,
    }
    if n < 3:
        return {**nan, "note": "proportional bias needs at least 3 pairs"}
    mx = means - means.mean()
    sxx = float(np.sum(mx**2))
    if math.sqrt(sxx / n) <= _rounding(means):
        return {**nan, "note": "proportional bias undefined: every pair has the same mean"}
    slope = float(np.sum(mx * (diffs - diffs.mean())) / sxx)
    resid = diffs - diffs.mean() - slope * mx
    s2 = float(np.sum(resid**2)) / (n - 2)
    if math.sqrt(s2) <= _rounding(diffs, means):
        return {
            **nan,
            "prop_bias_slope": slope,
            "note": "the differences lie exactly on a line: no test of proportional bias",
        }
    se = math.sqrt(s2 / sxx)
    t = _stats.t.ppf(1 - alpha / 2, n - 2)
    return {
        "prop_bias_slope": slope,
        "prop_bias_slope_ci": (slope - t * se, slope + t * se),
        "prop_bias_p": float(2 * _stats.t.sf(abs(slope / se), n - 2)),
        "note": "",
    }


def koo_li_rating(low, high=None):
    """Koo & Li (2016) rating of an ICC or of its confidence interval.

    Parameters
    ----------
    low : float
        The ICC, or the lower bound of its interval.
    high : float, optional
        The upper bound; the rating then spans both bounds.

    Returns
    -------
    rating : str or None
        ``"poor"`` (< 0.5), ``"moderate"`` (0.5 to < 0.75), ``"good"`` (0.75
        to 0.90), ``"excellent"`` (> 0.90), or e.g. ``"moderate to
        excellent"`` for an interval; None when a value is missing.

    Examples
    --------
    >>> koo_li_rating(0.83, 0.94)
    'good to excellent'
    >>> koo_li_rating(0.9)
    'good'
    """
    values = (low,) if high is None else (low, high)
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    labels = []
    for v in values:
        label = KOO_LI_BANDS[0][1]
        for edge, name in KOO_LI_BANDS[1:]:
            if v > edge or (v == edge and edge < 0.9):
                label = name
        labels.append(label)
    return labels[0] if labels[0] == labels[-1] else f"{labels[0]} to {labels[-1]}"


def measure_unit(measure):
    """Unit of a measure column from its name (``cm²``, ``%``, ``points``, ``°``).

    Examples
    --------
    >>> measure_unit("ESMF_B_fi_pct"), measure_unit("local_kyphosis_deg"), measure_unit("vbq")
    ('%', '°', '')
    """
    for suffix, unit in (("_cm2", "cm²"), ("_pct", "%"), ("_pts", "points"), ("_deg", "°")):
        if measure.endswith(suffix):
            return unit
    return ""


# --------------------------------------------------------------------------
# Rows of the shared CSV
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ReliabilityResult:
    """Everything one reliability analysis computed (tidy, computed once).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per measure (see :func:`reliability`).
    pairs : pandas.DataFrame
        Bland–Altman agreement of every pair of raters, one row per measure
        × pair.
    values : pandas.DataFrame
        The values analysed in long format: ``measure``, ``patient_id``,
        ``rater`` (observer or session) and ``value`` (what the Bland–Altman
        plots draw).
    origins : pandas.DataFrame
        Per rater, how many outlines of the rows analysed were ``drawn``,
        ``proposed`` or ``edited`` (contract 7), and ``not_recorded``; empty
        for the spine table. Proposals shared by both observers inflate
        agreement, so reports state these counts.
    info : dict
        ``mode`` (``"inter-observer"`` or ``"intra-observer"``), ``table``,
        ``raters``, ``observers`` (or ``observer`` and ``sessions``),
        ``session``, ``level``, ``n_patients`` (per rater),
        ``n_patients_both``, ``alpha``, ``loa_ci``, ``min_patients``,
        ``exclude_flagged``, ``n_flagged`` and ``flagged``.
    """

    table: pd.DataFrame
    pairs: pd.DataFrame
    values: pd.DataFrame
    origins: pd.DataFrame
    info: dict

    @property
    def rater_label(self):
        """``"observer"`` or ``"session"``: what the raters are."""
        return "session" if self.info.get("mode") == "intra-observer" else "observer"

    def to_dict(self):
        """Plain JSON values (None for NaN): ``info`` keys, ``measures`` (each
        with its ``pairs``) and ``outline_origins``."""
        from .._json import json_safe, tidy_records

        pairs = tidy_records(self.pairs)
        data = {k: v for k, v in self.info.items() if k != "raters"}
        measures = []
        for item in tidy_records(self.table):
            item["pairs"] = [p for p in pairs if p["measure"] == item["measure"]]
            measures.append(item)
        data["measures"] = measures
        data["outline_origins"] = tidy_records(self.origins)
        return json_safe(data)

    @classmethod
    def concat(cls, results):
        """One result from several (the muscle and the spine table)."""
        results = list(results)
        if len(results) == 1:
            return results[0]
        info = dict(results[0].info)
        info["parts"] = [r.info for r in results]
        return cls(
            table=pd.concat([r.table for r in results], ignore_index=True),
            pairs=pd.concat([r.pairs for r in results], ignore_index=True),
            values=pd.concat([r.values for r in results], ignore_index=True),
            origins=pd.concat([r.origins for r in results], ignore_index=True),
            info=info,
        )


def _numeric(frame, measures):
    """Measure columns as floats; text that is not a number is an error."""
    out = {}
    for m in measures:
        values, bad = to_numeric(frame[m])
        if bad.any():
            raise StatsInputError(f"column {m} holds a value that is not a number: {frame[m][bad].iloc[0]!r}")
        out[m] = values.where(np.isfinite(values))
    return pd.DataFrame(out, index=frame.index)


def _resolve_measures(frame, measures, rater_col):
    """Measure columns to analyse, in schema order by default."""
    if measures is None:
        candidates = measure_columns(frame)
        if not candidates:
            raise StatsInputError("the measurements have no measure columns (e.g. ESMF_B_fi_pct or vbq)")
        values = _numeric(frame, candidates)
        raters_with_data = values.notna().groupby(frame[rater_col].to_numpy()).any().sum()
        chosen = [m for m in candidates if raters_with_data[m] >= 2]
        if not chosen:
            raise StatsInputError("no measure column has values from two raters or more; nothing to compare")
        return chosen
    if isinstance(measures, str):
        measures = [measures]
    measures = list(dict.fromkeys(measures))
    if not measures:
        raise StatsInputError("no measure columns asked for")
    unknown = [m for m in measures if m not in frame.columns]
    check_columns(
        pd.DataFrame(columns=measure_columns(frame)), unknown, source="the measure columns", flag="--measures"
    )
    return measures


def outline_origins(rows, rater_col="observer_id"):
    """How many outlines per rater were drawn, proposed or edited (contract 7).

    Parameters
    ----------
    rows : pandas.DataFrame
        Muscle-table rows with ``outline_origin`` (``PS_L:drawn;PS_R:edited;…``);
        a row without it (schema version 1) counts its outlines as
        ``not_recorded``.
    rater_col : str, optional

    Returns
    -------
    pandas.DataFrame
        ``rater``, ``rows``, ``drawn``, ``proposed``, ``edited``,
        ``not_recorded``.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"observer_id": ["A", "A"],
    ...     "outline_origin": ["PS_L:drawn;PS_R:proposed", "PS_L:edited"]})
    >>> outline_origins(rows).iloc[0].to_dict()
    {'rater': 'A', 'rows': 2, 'drawn': 1, 'proposed': 1, 'edited': 1, 'not_recorded': 0}
    """
    from ..schema import OUTLINE_ORIGINS

    columns = ["rater", "rows", *OUTLINE_ORIGINS, "not_recorded"]
    out = []
    for rater, group in rows.groupby(rater_col, sort=True):
        counts = dict.fromkeys(OUTLINE_ORIGINS, 0)
        counts["not_recorded"] = 0
        for rec in group.to_dict("records"):
            text = rec.get("outline_origin")
            if not isinstance(text, str) or not text.strip():
                present = rec.get("rois_present")
                n = len(str(present).split(";")) if isinstance(present, str) and present.strip() else 0
                counts["not_recorded"] += n
                continue
            for item in text.split(";"):
                origin = item.partition(":")[2].strip()
                counts[origin if origin in counts else "not_recorded"] += 1
        out.append({"rater": rater, "rows": len(group), **counts})
    return pd.DataFrame(out, columns=columns)


def _prepare(rows, *, session=None, level=None, exclude_flagged=False, observer=None, sessions=None):
    """The rows one analysis uses, the rater column and what was chosen."""
    if observer is None:
        frame, info = select_rows(rows, session=session, level=level, exclude_flagged=exclude_flagged)
        observers = sorted(set(frame["observer_id"]))
        where = f"session {info['session']!r}" + (f", level {info['level']!r}" if info["level"] else "")
        if len(observers) < 2:
            raise StatsInputError(
                f"inter-observer reliability needs two observers or more; {where} has only "
                f"observer {observers[0]!r} ({frame['patient_id'].nunique()} patients)"
            )
        rater_col, raters = "observer_id", observers
        info.update(mode="inter-observer", observers=observers)
    else:
        sessions = [str(s).strip() for s in sessions]
        if len(sessions) < 2 or len(set(sessions)) != len(sessions):
            raise StatsInputError(f"intra-observer reliability needs two different sessions, got {sessions}")
        observer = str(observer).strip()
        known = sorted(set(id_text(rows["observer_id"]).dropna())) if "observer_id" in rows.columns else []
        if observer not in known:
            raise StatsInputError(f"no rows by observer {observer!r}; the file has {', '.join(map(repr, known))}")
        mine = rows[id_text(rows["observer_id"]) == observer]
        frame, info = select_rows(mine, level=level, exclude_flagged=exclude_flagged, sessions=sessions)
        where = f"observer {observer!r}"
        rater_col, raters = "session", sessions
        info.update(mode="intra-observer", observer=observer)
    per = {r: set(frame.loc[frame[rater_col] == r, "patient_id"]) for r in raters}
    both = set.intersection(*per.values())
    if not both:
        counts = ", ".join(f"{r}: {len(p)}" for r, p in per.items())
        who = "both" if len(raters) == 2 else "all"
        if observer is None:
            raise StatsInputError(
                f"no patient was measured by {who} observers in {where} (patients per observer: {counts})"
            )
        raise StatsInputError(f"{where} read no patient in every session ({counts})")
    info.update(raters=raters, n_patients={r: len(p) for r, p in per.items()}, n_patients_both=len(both))
    return frame[frame["patient_id"].isin(both)], rater_col, info


def _analyse(frame, rater_col, info, measures, alpha, loa_ci):
    """Per-measure ICC rows, per-pair Bland–Altman rows and the values used."""
    if loa_ci not in LOA_CI_METHODS:
        raise StatsInputError(f"loa_ci must be one of {LOA_CI_METHODS}, got {loa_ci!r}")
    if not 0 < alpha < 1:
        raise StatsInputError(f"alpha must lie between 0 and 1, got {alpha}")
    label = "session" if info["mode"] == "intra-observer" else "observer"
    raters = info["raters"]
    measures = _resolve_measures(frame, measures, rater_col)
    values = _numeric(frame, measures)
    values["patient_id"] = frame["patient_id"].to_numpy()
    values["rater"] = frame[rater_col].to_numpy()

    a_col, b_col = f"{label}_a", f"{label}_b"
    table, pairs, used = [], [], []
    for m in measures:
        wide = values.pivot(index="patient_id", columns="rater", values=m).reindex(columns=raters)
        row, pair_rows = _measure(wide, alpha, loa_ci, label)
        row = {"measure": m, "unit": measure_unit(m), **row}
        first = pair_rows[0]
        row[a_col], row[b_col] = first["a"], first["b"]
        for key in _PAIR_VALUES:
            row[key] = first[key]
        table.append(row)
        for p in pair_rows:
            pairs.append({"measure": m, a_col: p.pop("a"), b_col: p.pop("b"), **p})
        long = wide.dropna().reset_index().melt(id_vars="patient_id", var_name="rater", value_name="value")
        used.append(long.assign(measure=m))

    icc_cols = ["measure", "unit", "n", f"n_{label}s", "n_missing"]
    for form in _ICC_FORMS:
        icc_cols += [form, f"{form}_ci_low", f"{form}_ci_high", f"{form}_rating"]
    icc_cols += [
        "f",
        "df1",
        "df2",
        "p",
        "ms_subjects",
        "ms_observers",
        "ms_error",
        a_col,
        b_col,
        *_PAIR_VALUES,
        "sd",
        "sem",
        "mdc95",
        "note",
    ]
    for row in table:
        row[f"n_{label}s"] = len(raters)
    info = dict(info, alpha=alpha, loa_ci=loa_ci, min_patients=MIN_PATIENTS)
    origins = outline_origins(frame, rater_col) if info["table"] == "muscle" else outline_origins(frame.iloc[:0])
    table = pd.DataFrame(table, columns=icc_cols)
    pairs = pd.DataFrame(pairs, columns=["measure", a_col, b_col, "n", *_PAIR_VALUES, "note"])
    table.attrs, pairs.attrs = dict(info), dict(info)  # what was compared travels with each table
    return ReliabilityResult(
        table=table,
        pairs=pairs,
        values=pd.concat(used, ignore_index=True)[["measure", "patient_id", "rater", "value"]],
        origins=origins,
        info=info,
    )


def _measure(wide, alpha, loa_ci, who):
    """One measure: the ICC row and the Bland–Altman rows of every pair."""
    raters = list(wide.columns)
    x_all = wide.to_numpy(dtype=float)
    complete = np.isfinite(x_all).all(axis=1)
    x = x_all[complete]
    n, n_missing = int(complete.sum()), int((~complete).sum())
    row = {"n": n, "n_missing": n_missing}
    row.update({name: math.nan for name in _ICC_VALUES + ("sd", "sem", "mdc95")})
    row.update({f"{form}_rating": None for form in _ICC_FORMS})
    pair_keys = list(itertools.combinations(range(len(raters)), 2))
    blank_pair = {key: math.nan for key in _PAIR_VALUES}
    pairs = [{"a": raters[i], "b": raters[j], "n": n, **blank_pair, "note": None} for i, j in pair_keys]
    notes = []
    if n_missing:
        by_rater = ", ".join(f"{r}: {int(c)}" for r, c in zip(raters, (~np.isfinite(x_all)).sum(axis=0)) if c)
        notes.append(f"{n_missing} of {len(x_all)} patients left out for a missing value ({by_rater})")
    if n < MIN_PATIENTS:
        notes.append(f"not computed: {n} patient(s) with a value from every {who}, at least {MIN_PATIENTS} needed")
    elif _is_constant(x):
        notes.append(
            f"not computed: the measure is constant ({x.flat[0]:g} for every patient and "
            f"{who}), so agreement cannot be assessed"
        )
    if n < MIN_PATIENTS or _is_constant(x):
        row["note"] = "; ".join(notes)
        for p in pairs:
            p["note"] = row["note"]
        return row, pairs

    res = icc(x, alpha=alpha)
    for form in _ICC_FORMS:
        row[form] = res[form]
        row[f"{form}_ci_low"], row[f"{form}_ci_high"] = res[f"{form}_ci"]
        row[f"{form}_rating"] = koo_li_rating(*res[f"{form}_ci"])
    for key in ("f", "df1", "df2", "p", "ms_subjects", "ms_observers", "ms_error"):
        row[key] = res[key]
    if res["note"]:
        notes.append(res["note"])
    sd = float(x.std(ddof=1))
    row["sd"] = sd
    if math.isfinite(row["icc2_1"]):
        row["sem"] = sd * math.sqrt(max(0.0, 1.0 - row["icc2_1"]))
        row["mdc95"] = 1.96 * math.sqrt(2.0) * row["sem"]

    for p, (i, j) in zip(pairs, pair_keys):
        ba = bland_altman(x[:, i], x[:, j], alpha=alpha, loa_ci=loa_ci)
        for key in ("bias", "sd_diff", "loa_low", "loa_high", "prop_bias_slope", "prop_bias_p"):
            p[key] = ba[key]
        for key in ("bias", "loa_low", "loa_high", "prop_bias_slope"):
            p[f"{key}_ci_low"], p[f"{key}_ci_high"] = ba[f"{key}_ci"]
        p["note"] = ba["note"] or None
    if pairs[0]["note"]:
        notes.append(pairs[0]["note"])
    row["note"] = "; ".join(notes) or None
    return row, pairs


def _rounding(*arrays):
    """What floating-point rounding leaves of a zero in sums of these values:
    a spread or residual below it is no spread at all. It scales with the
    values' magnitude, not with their spread (1e9 + 0.001 still varies)."""
    return 256 * np.finfo(float).eps * max(float(np.abs(np.asarray(x, dtype=float)).max()) for x in arrays)


def _is_constant(x):
    x = np.asarray(x, dtype=float)
    return x.size > 0 and np.ptp(x) <= 1e-12 * np.abs(x).max()


def _as_floats(d):
    """Plain Python floats for numpy scalars (inside tuples too); NaN stays NaN."""
    out = {}
    for key, value in d.items():
        if isinstance(value, tuple):
            out[key] = tuple(float(v) for v in value)
        elif isinstance(value, (float, np.floating)):
            out[key] = float(value)
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------
# Public table functions
# --------------------------------------------------------------------------


def inter_observer(rows, *, measures=None, session=None, level=None, alpha=0.05, loa_ci="exact", exclude_flagged=False):
    """Inter-observer reliability of a shared CSV (muscle or spine table).

    Parameters
    ----------
    rows : pandas.DataFrame
        Every row of the shared CSV as :func:`napari_pvm.core.store.read_rows`
        returns them; one reading per patient × observer is chosen by
        :func:`~napari_pvm.core.stats.input.select_rows`.
    measures : str or sequence of str, optional
        Measure columns to analyse. Default: every measure column of the
        table (contract 3, or ``vbq`` and ``local_kyphosis_deg`` of
        contract 8) with values from two observers or more.
    session : str, optional
        Reading to compare. Default ``"read1"`` when present, else the only
        session in the file.
    level : str, optional
        Vertebral level (muscle table). Default: the only level in the file.
    alpha : float, optional
        1 − confidence level (default 0.05).
    loa_ci : {"exact", "approximate"}, optional
        Confidence intervals of the limits of agreement (see
        :func:`bland_altman`).
    exclude_flagged : bool, optional
        Leave out rows with quality flags (after the latest row per reading is
        chosen); the result's ``info`` says how many.

    Returns
    -------
    ReliabilityResult
        ``table``: one row per measure: ``measure``, ``unit``, ``n``
        (patients with a value from every observer), ``n_observers``,
        ``n_missing`` (patients left out for a missing value); for each of
        ``icc2_1``, ``icc3_1``, ``icc2_k``, ``icc3_k`` the value,
        ``_ci_low``, ``_ci_high`` and the Koo & Li ``_rating`` of the
        interval; ``f``, ``df1``, ``df2``, ``p`` and the mean squares; for
        the first pair of observers in sorted ID order (``observer_a``,
        ``observer_b``): ``bias`` (a − b) and the limits of agreement with
        their CIs, ``sd_diff``, the proportional-bias slope, its CI and P;
        ``sd`` (of every value analysed), ``sem``, ``mdc95``; ``note`` (None,
        or why values are missing or patients were left out). ``pairs``: the
        same Bland–Altman columns for every pair; ``values``; ``origins``;
        ``info``.

    Raises
    ------
    StatsInputError
        Fewer than two observers in the chosen session, no patient measured
        by all of them, an unknown session, level or column, several levels
        or sessions with none chosen, or no measure column with values from
        two observers.

    Notes
    -----
    Patients count when every observer measured them in the chosen session;
    for each measure, those with a missing value from any observer are left
    out (counted in ``n_missing``). With more than two observers the ICC uses
    all of them.
    """
    frame, rater_col, info = _prepare(rows, session=session, level=level, exclude_flagged=exclude_flagged)
    return _analyse(frame, rater_col, info, measures, alpha, loa_ci)


def intra_observer(
    rows,
    observer,
    sessions=("read1", "read2"),
    *,
    measures=None,
    level=None,
    alpha=0.05,
    loa_ci="exact",
    exclude_flagged=False,
):
    """Intra-observer reliability: one observer's readings of the same patients.

    Same computation and columns as :func:`inter_observer`, with the sessions
    (readings, e.g. before and after a washout) in place of the observers:
    ``n_sessions``, ``session_a``, ``session_b`` and ``bias`` = first minus
    second session in the order given. ``info`` holds ``observer``,
    ``sessions``, ``level``, ``n_patients`` (per session) and
    ``n_patients_both``.
    """
    frame, rater_col, info = _prepare(
        rows, level=level, exclude_flagged=exclude_flagged, observer=observer, sessions=sessions
    )
    return _analyse(frame, rater_col, info, measures, alpha, loa_ci)


def reliability_table(rows, **kwargs):
    """The per-measure table of :func:`inter_observer` (same arguments)."""
    return inter_observer(rows, **kwargs).table


def pairwise_table(rows, **kwargs):
    """The per-pair Bland–Altman table of :func:`inter_observer` (same arguments)."""
    return inter_observer(rows, **kwargs).pairs


def intra_observer_table(rows, observer, sessions=("read1", "read2"), **kwargs):
    """The per-measure table of :func:`intra_observer` (same arguments)."""
    return intra_observer(rows, observer, sessions, **kwargs).table


def intra_observer_pairs(rows, observer, sessions=("read1", "read2"), **kwargs):
    """The per-pair Bland–Altman table of :func:`intra_observer` (same arguments)."""
    return intra_observer(rows, observer, sessions, **kwargs).pairs
