"""Inter- and intra-observer reliability of the measurement columns.

Two blinded observers (or more) measure the same patients; this module says
how well they agree, per measure column of contract 3:

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
:func:`reliability_table`, :func:`pairwise_table` and
:func:`intra_observer_table` take the rows of the shared CSV (as
:func:`napari_pvm.core.store.read_rows` returns them) and give one tidy row
per measure. A measure that cannot be analysed (constant, too few patients)
keeps its row, with NaN values and a ``note`` that says why. Problems with the
study as a whole (one observer only, no patient measured by both) raise
:class:`~napari_pvm.core.errors.StatsInputError`.

See ``docs/reliability.md`` for the formulas and how to report them.
"""

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats as _stats

from .errors import StatsInputError
from .schema import DEFAULT_SESSION, MEASURE_COLUMNS

__all__ = [
    "DEFAULT_SESSION",
    "KOO_LI_BANDS",
    "LOA_CI_METHODS",
    "MIN_PATIENTS",
    "bland_altman",
    "bland_altman_plot",
    "icc",
    "intra_observer_pairs",
    "intra_observer_table",
    "koo_li_rating",
    "latest_rows",
    "measure_unit",
    "pairwise_table",
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
_ICC_VALUES = tuple(
    name
    for form in _ICC_FORMS
    for name in (form, f"{form}_ci_low", f"{form}_ci_high")
) + ("f", "df1", "df2", "p", "ms_subjects", "ms_observers", "ms_error")


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
        raise StatsInputError(
            f"every value is {x.flat[0]:g}: with no variation the ICC is undefined"
        )

    grand = x.mean()
    row_means = x.mean(axis=1)
    col_means = x.mean(axis=0)
    residuals = x - row_means[:, None] - col_means[None, :] + grand
    df1, dfc, df2 = n - 1, k - 1, (n - 1) * (k - 1)
    msr = k * np.sum((row_means - grand) ** 2) / df1
    msc = n * np.sum((col_means - grand) ** 2) / dfc
    exact_fit = np.abs(residuals).max() <= 1e-12 * np.abs(x).max()
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
    with np.errstate(divide="ignore", invalid="ignore"):
        out["icc2_1"] = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        out["icc3_1"] = (msr - mse) / (msr + (k - 1) * mse)
        out["icc2_k"] = (msr - mse) / (msr + (msc - mse) / n)
        out["icc3_k"] = (msr - mse) / msr if msr > 0 else math.nan

    if exact_fit:
        # Every subject's values differ between raters by the same constant
        # (or not at all): MSE = 0, F is infinite, the intervals undefined.
        out.update(f=math.inf, p=0.0)
        for form in _ICC_FORMS:
            out[f"{form}_ci"] = (math.nan, math.nan)
        out["note"] = (
            "the observers differ by the same amount for every patient (residual "
            "variance 0): confidence intervals undefined"
        )
        return _as_floats(out)

    fval = msr / mse
    out["f"] = fval
    out["p"] = float(_stats.f.sf(fval, df1, df2))
    q = 1 - alpha / 2

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
    # n(MSR − F*·MSE) / (F*(MSC − MSE) + n·MSR) for ICC(A,k).
    out["icc2_k_ci"] = tuple(k * r / (1 + (k - 1) * r) for r in (low, high))
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
        raise StatsInputError(
            "Bland–Altman needs complete pairs; leave out missing values first"
        )

    d = a - b
    m = (a + b) / 2
    bias = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd <= 1e-12 * max(np.abs(a).max(), np.abs(b).max()):
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
    if sxx <= (1e-12 * max(np.abs(means).max(), 1e-300)) ** 2 * n:
        return {**nan, "note": "proportional bias undefined: every pair has the same mean"}
    slope = float(np.sum(mx * (diffs - diffs.mean())) / sxx)
    resid = diffs - diffs.mean() - slope * mx
    s2 = float(np.sum(resid**2)) / (n - 2)
    scale = max(np.abs(diffs).max(), np.abs(means).max())
    if math.sqrt(s2) <= 1e-12 * scale:
        return {**nan, "prop_bias_slope": slope,
                "note": "the differences lie exactly on a line: no test of proportional bias"}
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
    """Unit of a contract-3 measure column from its name (``cm²``, ``%``)."""
    if measure.endswith("_cm2"):
        return "cm²"
    if measure.endswith("_pct"):
        return "%"
    return ""


# --------------------------------------------------------------------------
# Rows of the shared CSV
# --------------------------------------------------------------------------


def latest_rows(rows):
    """The latest row per patient × observer × level × session.

    Parameters
    ----------
    rows : pandas.DataFrame
        Rows of the shared CSV (contract 3); ``patient_id`` and
        ``observer_id`` are required, ``level``, ``session`` and
        ``measured_at`` are used when present.

    Returns
    -------
    latest : pandas.DataFrame
        One row per key, in the input's order; a missing
        ``session`` reads as ``"read1"``, a missing ``level`` as ``""``. The
        latest is the greatest ``measured_at`` (unparseable times count as
        earliest); ties go to the row later in the frame.
    """
    frame = _checked(rows)
    pos = np.arange(len(frame))
    if "measured_at" in frame.columns:
        when = pd.to_datetime(frame["measured_at"], utc=True, errors="coerce", format="ISO8601")
    else:
        when = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    order = pd.DataFrame({"when": when.to_numpy(), "pos": pos})
    order = order.sort_values(["when", "pos"], na_position="first", kind="stable")
    keys = ["patient_id", "observer_id", "level", "session"]
    ranked = frame.iloc[order["pos"].to_numpy()]
    latest = ranked.drop_duplicates(subset=keys, keep="last")
    return frame.loc[frame.index.isin(latest.index)].reset_index(drop=True)


def _checked(rows):
    """Validate the frame and normalise the ID columns to text."""
    if not isinstance(rows, pd.DataFrame):
        raise StatsInputError(f"rows must be a pandas DataFrame, got {type(rows).__name__}")
    missing = [c for c in ("patient_id", "observer_id") if c not in rows.columns]
    if missing:
        raise StatsInputError(
            f"the measurements have no {' or '.join(missing)} column; is this a napari-pvm CSV?"
        )
    if rows.empty:
        raise StatsInputError("the measurements table is empty: nothing to compare")
    frame = rows.reset_index(drop=True).copy()
    for col in ("patient_id", "observer_id"):
        text = frame[col].astype("string").str.strip()
        blank = text.isna() | (text == "")
        if blank.any():
            raise StatsInputError(
                f"{int(blank.sum())} row(s) have no {col}; fill it in before comparing observers"
            )
        frame[col] = text.astype(object)
    for col, default in (("session", DEFAULT_SESSION), ("level", "")):
        if col in frame.columns:
            text = frame[col].astype("string").str.strip()
            frame[col] = text.mask(text.isna() | (text == ""), default).astype(object)
        else:
            frame[col] = default
    return frame


def _pick(frame, column, wanted, what, flag, default=None):
    """Choose one value of ``column`` (session or level) or explain why not."""
    present = sorted(set(frame[column]))
    if wanted is not None:
        wanted = str(wanted)
        if wanted not in present:
            raise StatsInputError(
                f"no rows with {what} {wanted!r}; the file has {_listing(present)}"
            )
        return wanted
    if default is not None and default in present:
        return default
    if len(present) == 1:
        return present[0]
    raise StatsInputError(
        f"the file has several {what}s ({_listing(present)}); choose one with {flag}"
    )


def _listing(values):
    return ", ".join(repr(v) for v in values) if values else "none"


def _numeric(frame, measures):
    """Measure columns as floats; text that is not a number is an error."""
    out = {}
    for m in measures:
        try:
            values = pd.to_numeric(frame[m], errors="raise")
        except (ValueError, TypeError) as exc:
            raise StatsInputError(
                f"column {m} holds a value that is not a number ({exc})"
            ) from None
        values = values.astype(float)
        out[m] = values.where(np.isfinite(values))
    return pd.DataFrame(out, index=frame.index)


def _resolve_measures(frame, measures, rater_col):
    """Measure columns to analyse, in schema order by default."""
    if measures is None:
        candidates = [m for m in MEASURE_COLUMNS if m in frame.columns]
        if not candidates:
            raise StatsInputError("the measurements have no measure columns (e.g. ESMF_B_fi_pct)")
        values = _numeric(frame, candidates)
        raters_with_data = values.notna().groupby(frame[rater_col]).any().sum()
        chosen = [m for m in candidates if raters_with_data[m] >= 2]
        if not chosen:
            raise StatsInputError(
                "no measure column has values from two observers or more; "
                "nothing to compare"
            )
        return chosen
    if isinstance(measures, str):
        measures = [measures]
    measures = list(dict.fromkeys(measures))
    if not measures:
        raise StatsInputError("no measure columns asked for")
    unknown = [m for m in measures if m not in frame.columns]
    if unknown:
        known = all(m in MEASURE_COLUMNS for m in unknown)
        hint = "" if known else " (see schema.MEASURE_COLUMNS)"
        raise StatsInputError(f"no such measure column: {', '.join(unknown)}{hint}")
    return measures


def _prepare_inter(rows, session, level):
    """Latest rows of one session and level, and the patients of every observer."""
    frame = latest_rows(rows)
    level = _pick(frame, "level", level, "level", "level= / --level")
    frame = frame[frame["level"] == level]
    session = _pick(frame, "session", session, "session", "session= / --session", DEFAULT_SESSION)
    frame = frame[frame["session"] == session]
    observers = sorted(set(frame["observer_id"]))
    where = f"session {session!r}" + (f", level {level!r}" if level else "")
    if len(observers) < 2:
        raise StatsInputError(
            f"inter-observer reliability needs two observers or more; {where} has only "
            f"observer {observers[0]!r} ({frame['patient_id'].nunique()} patients)"
        )
    per = {o: set(frame.loc[frame["observer_id"] == o, "patient_id"]) for o in observers}
    both = set.intersection(*per.values())
    counts = ", ".join(f"{o}: {len(p)}" for o, p in per.items())
    if not both:
        raise StatsInputError(
            f"no patient was measured by {'both' if len(observers) == 2 else 'all'} observers "
            f"in {where} (patients per observer: {counts})"
        )
    meta = {
        "mode": "inter-observer",
        "raters": observers,
        "observers": observers,
        "session": session,
        "level": level,
        "n_patients": {o: len(p) for o, p in per.items()},
        "n_patients_both": len(both),
    }
    return frame, "observer_id", meta


def _prepare_intra(rows, observer, sessions, level):
    frame = latest_rows(rows)
    observer = str(observer).strip()
    observers = sorted(set(frame["observer_id"]))
    if observer not in observers:
        raise StatsInputError(
            f"no rows by observer {observer!r}; the file has {_listing(observers)}"
        )
    frame = frame[frame["observer_id"] == observer]
    level = _pick(frame, "level", level, "level", "level= / --level")
    frame = frame[frame["level"] == level]
    sessions = [str(s).strip() for s in sessions]
    if len(sessions) < 2 or len(set(sessions)) != len(sessions):
        raise StatsInputError(
            f"intra-observer reliability needs two different sessions, got {sessions}"
        )
    present = sorted(set(frame["session"]))
    absent = [s for s in sessions if s not in present]
    if absent:
        raise StatsInputError(
            f"observer {observer!r} has no reading {_listing(absent)}; readings present: "
            f"{_listing(present)}"
        )
    frame = frame[frame["session"].isin(sessions)]
    per = {s: set(frame.loc[frame["session"] == s, "patient_id"]) for s in sessions}
    both = set.intersection(*per.values())
    if not both:
        counts = ", ".join(f"{s}: {len(p)}" for s, p in per.items())
        raise StatsInputError(
            f"observer {observer!r} read no patient in every session ({counts})"
        )
    meta = {
        "mode": "intra-observer",
        "raters": sessions,
        "observer": observer,
        "sessions": sessions,
        "level": level,
        "n_patients": {s: len(p) for s, p in per.items()},
        "n_patients_both": len(both),
    }
    return frame, "session", meta


def _analyse(frame, rater_col, meta, measures, alpha, loa_ci, rater_label):
    """Per-measure ICC rows and per-pair Bland–Altman rows."""
    if loa_ci not in LOA_CI_METHODS:
        raise StatsInputError(f"loa_ci must be one of {LOA_CI_METHODS}, got {loa_ci!r}")
    if not 0 < alpha < 1:
        raise StatsInputError(f"alpha must lie between 0 and 1, got {alpha}")
    raters = meta["raters"]
    measures = _resolve_measures(frame, measures, rater_col)
    common = frame[frame["patient_id"].isin(_common_patients(frame, rater_col, raters))]
    values = _numeric(common, measures)
    values["patient_id"] = common["patient_id"].to_numpy()
    values["_rater"] = common[rater_col].to_numpy()

    a_col, b_col = f"{rater_label}_a", f"{rater_label}_b"
    table, pairs = [], []
    for m in measures:
        wide = values.pivot(index="patient_id", columns="_rater", values=m)[raters]
        row, pair_rows = _measure(wide, alpha, loa_ci, rater_label)
        row = {"measure": m, **row}
        first = pair_rows[0]
        row[a_col], row[b_col] = first["a"], first["b"]
        for key in _PAIR_VALUES:
            row[key] = first[key]
        table.append(row)
        for p in pair_rows:
            pairs.append({"measure": m, a_col: p.pop("a"), b_col: p.pop("b"), **p})

    icc_cols = ["measure", "n", f"n_{rater_label}s", "n_missing"]
    for form in _ICC_FORMS:
        icc_cols += [form, f"{form}_ci_low", f"{form}_ci_high", f"{form}_rating"]
    icc_cols += ["f", "df1", "df2", "p", "ms_subjects", "ms_observers", "ms_error",
                 a_col, b_col, *_PAIR_VALUES, "sd", "sem", "mdc95", "note"]
    for row in table:
        row[f"n_{rater_label}s"] = len(raters)
    table = pd.DataFrame(table, columns=icc_cols)
    pair_cols = ["measure", a_col, b_col, "n", *_PAIR_VALUES, "note"]
    pairs = pd.DataFrame(pairs, columns=pair_cols)
    attrs = {k: v for k, v in meta.items() if k != "raters"}
    attrs.update(alpha=alpha, loa_ci=loa_ci, min_patients=MIN_PATIENTS)
    table.attrs = dict(attrs)
    pairs.attrs = dict(attrs)
    return table, pairs


def _common_patients(frame, rater_col, raters):
    per = [set(frame.loc[frame[rater_col] == r, "patient_id"]) for r in raters]
    return set.intersection(*per)


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
    pairs = [{"a": raters[i], "b": raters[j], "n": n, **blank_pair, "note": None}
             for i, j in pair_keys]
    notes = []
    if n_missing:
        by_rater = ", ".join(
            f"{r}: {int(c)}" for r, c in zip(raters, (~np.isfinite(x_all)).sum(axis=0)) if c
        )
        notes.append(
            f"{n_missing} of {len(x_all)} patients left out for a missing value ({by_rater})"
        )
    if n < MIN_PATIENTS:
        notes.append(
            f"not computed: {n} patient(s) with a value from every {who}, "
            f"at least {MIN_PATIENTS} needed"
        )
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


def reliability_table(rows, *, measures=None, session=None, level=None, alpha=0.05,
                      loa_ci="exact"):
    """Inter-observer reliability, one row per measure column.

    Parameters
    ----------
    rows : pandas.DataFrame
        Rows of the shared CSV as :func:`napari_pvm.core.store.read_rows`
        returns them; all rows may be passed, the latest per patient ×
        observer × level × session is used (:func:`latest_rows`).
    measures : str or sequence of str, optional
        Measure columns to analyse. Default: every contract-3 column that has
        values from two observers or more.
    session : str, optional
        Reading to compare. Default ``"read1"`` when present, else the only
        session in the file.
    level : str, optional
        Vertebral level. Default: the only level in the file.
    alpha : float, optional
        1 − confidence level (default 0.05).
    loa_ci : {"exact", "approximate"}, optional
        Confidence intervals of the limits of agreement (see
        :func:`bland_altman`).

    Returns
    -------
    table : pandas.DataFrame
        One row per measure: ``measure``, ``n`` (patients with a value from
        every observer), ``n_observers``, ``n_missing`` (patients left out
        for a missing value); for each of ``icc2_1``, ``icc3_1``, ``icc2_k``,
        ``icc3_k`` the value, ``_ci_low``, ``_ci_high`` and the Koo & Li
        ``_rating`` of the interval; ``f``, ``df1``, ``df2``, ``p`` and the
        mean squares; for the first pair of observers in sorted ID order
        (``observer_a``, ``observer_b``): ``bias`` (a − b) and the limits of
        agreement with their CIs, ``sd_diff``, the proportional-bias slope,
        its CI and P; ``sd`` (of every value analysed), ``sem``, ``mdc95``;
        ``note`` (None, or why values are missing or patients were left out).
        ``table.attrs`` holds ``observers``, ``session``, ``level``,
        ``n_patients`` (per observer), ``n_patients_both``, ``alpha``,
        ``loa_ci``. Every pair is in :func:`pairwise_table`.

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
    frame, rater_col, meta = _prepare_inter(rows, session, level)
    return _analyse(frame, rater_col, meta, measures, alpha, loa_ci, "observer")[0]


def pairwise_table(rows, *, measures=None, session=None, level=None, alpha=0.05,
                   loa_ci="exact"):
    """Bland–Altman agreement for every pair of observers, one row per measure × pair.

    Takes the same arguments as :func:`reliability_table` and uses the same
    patients per measure. Columns: ``measure``, ``observer_a``,
    ``observer_b`` (sorted IDs; differences are a − b), ``n``, ``bias``,
    ``bias_ci_low``, ``bias_ci_high``, ``sd_diff``, ``loa_low`` (with
    ``_ci_low``, ``_ci_high``), ``loa_high`` (same), ``prop_bias_slope`` (with
    its CI), ``prop_bias_p`` and ``note``.
    """
    frame, rater_col, meta = _prepare_inter(rows, session, level)
    return _analyse(frame, rater_col, meta, measures, alpha, loa_ci, "observer")[1]


def intra_observer_table(rows, observer, sessions=("read1", "read2"), *, measures=None,
                         level=None, alpha=0.05, loa_ci="exact"):
    """Intra-observer reliability: one observer's readings of the same patients.

    Same computation and columns as :func:`reliability_table`, with the
    sessions (readings, e.g. before and after a washout) in place of the
    observers: ``n_sessions``, ``session_a``, ``session_b`` and ``bias`` =
    first minus second session in the order given. ``table.attrs`` holds
    ``observer``, ``sessions``, ``level``, ``n_patients`` (per session) and
    ``n_patients_both``.
    """
    frame, rater_col, meta = _prepare_intra(rows, observer, sessions, level)
    return _analyse(frame, rater_col, meta, measures, alpha, loa_ci, "session")[0]


def intra_observer_pairs(rows, observer, sessions=("read1", "read2"), *, measures=None,
                         level=None, alpha=0.05, loa_ci="exact"):
    """Bland–Altman rows of :func:`intra_observer_table`, one per measure × pair of sessions.

    Columns as in :func:`pairwise_table`, with ``session_a`` and
    ``session_b`` in place of the observers.
    """
    frame, rater_col, meta = _prepare_intra(rows, observer, sessions, level)
    return _analyse(frame, rater_col, meta, measures, alpha, loa_ci, "session")[1]


# --------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------


def bland_altman_plot(rows, measure, *, ax=None, pair=None, session=None, level=None,
                      alpha=0.05, loa_ci="exact"):
    """Bland–Altman plot of one measure for one pair of observers.

    Parameters
    ----------
    rows : pandas.DataFrame
        Rows of the shared CSV (as for :func:`reliability_table`).
    measure : str
        Measure column, e.g. ``"ESMF_B_fi_pct"``.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new :class:`matplotlib.figure.Figure` (no display
        needed) is made when None.
    pair : (str, str), optional
        Observer IDs (a, b); the plot shows a − b. Default: the first two
        observers in sorted order.
    session, level, alpha, loa_ci
        As for :func:`reliability_table`.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes, for further tweaking: pair means on x, differences on y,
        the bias and the limits of agreement as lines with their confidence
        intervals shaded.

    Raises
    ------
    StatsInputError
        Bad input as for :func:`reliability_table`, an unknown pair, or a
        measure that cannot be analysed (the reason is in the message).
    """
    frame, rater_col, meta = _prepare_inter(rows, session, level)
    observers = meta["observers"]
    if pair is None:
        pair = (observers[0], observers[1])
    else:
        pair = tuple(str(p) for p in pair)
        if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(observers):
            raise StatsInputError(
                f"pair must name two different observers among {_listing(observers)}, got {pair}"
            )
    table = _analyse(frame, rater_col, meta, [measure], alpha, loa_ci, "observer")[0]
    n = int(table["n"].iloc[0])
    if not math.isfinite(table["icc2_1"].iloc[0]) and table["note"].iloc[0]:
        raise StatsInputError(f"{measure}: {table['note'].iloc[0]}")

    common = frame[frame["patient_id"].isin(_common_patients(frame, rater_col, observers))]
    values = _numeric(common, [measure])
    values["patient_id"] = common["patient_id"].to_numpy()
    values["_rater"] = common[rater_col].to_numpy()
    wide = values.pivot(index="patient_id", columns="_rater", values=measure)[observers].dropna()
    a = wide[pair[0]].to_numpy(float)
    b = wide[pair[1]].to_numpy(float)
    ba = bland_altman(a, b, alpha=alpha, loa_ci=loa_ci)

    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(5.5, 4.0), layout="constrained").add_subplot()
    unit = measure_unit(measure)
    suffix = f" ({unit})" if unit else ""
    conf = f"{100 * (1 - alpha):g} %"
    ax.axhline(0.0, color="0.85", lw=1, zorder=0)
    ax.scatter((a + b) / 2, a - b, s=22, color="C0", alpha=0.8, edgecolor="none", zorder=3)
    for key, style, label in (
        ("bias", "-", f"bias {ba['bias']:.3g}"),
        ("loa_high", "--", f"+1.96 SD {ba['loa_high']:.3g}"),
        ("loa_low", "--", f"−1.96 SD {ba['loa_low']:.3g}"),
    ):
        ax.axhline(ba[key], color="k", ls=style, lw=1.4 if key == "bias" else 1.1, label=label)
        low, high = ba[f"{key}_ci"]
        if math.isfinite(low) and math.isfinite(high) and high > low:
            ax.axhspan(low, high, color="C1" if key == "bias" else "0.6", alpha=0.25, lw=0)
    ax.set_xlabel(f"Mean of {pair[0]} and {pair[1]}{suffix}")
    ax.set_ylabel(f"{pair[0]} − {pair[1]}{suffix}")
    ax.set_title(f"{measure}: n = {n}, shaded {conf} CI", fontsize="medium")
    ax.legend(loc="best", fontsize="small", frameon=False)
    return ax
