"""Statistics of the seed paper: Table 2, Table 3 and the ROC analysis.

One call, :func:`analyse`, reads a per-patient table (optionally merged with
the shared measurement CSV), codes the outcome, detects or takes the type of
each variable and runs

- the two-group comparison (:mod:`.stats_compare`, Table 2),
- binary logistic regression (:mod:`.stats_logistic`, Table 3),
- ROC curves with Youden cut-offs (:mod:`.stats_roc`, Figure 2),
- inter-observer reliability when the merged measurements have two
  observers or more (:mod:`.reliability`).

It returns a :class:`StatsResult` of tidy DataFrames and warnings; nothing
here draws or writes files (see :mod:`.plots` and :mod:`.report`). Every
number follows SPSS 26 conventions; ``docs/statistics.md`` maps each one to
its SPSS menu and output row.

Examples
--------
>>> import pandas as pd
>>> table = pd.DataFrame({
...     "patient_id": [f"P{i}" for i in range(8)],
...     "lbp": [0, 0, 0, 0, 1, 1, 1, 1],
...     "area": [15.1, 16.0, 14.2, 17.3, 10.2, 12.5, 9.8, 11.0],
... })
>>> result = analyse(table, "lbp", continuous=["area"], roc=["area"])
>>> round(float(result.comparison.table.loc[0, "student_t"]), 3)
5.362
>>> row = result.roc.table.loc[0]
>>> row["direction"], float(row["cutoff"])
('<=', 13.35)
"""

import dataclasses
import difflib
import math

import numpy as np
import pandas as pd

from ._json import finite_or_none as _f
from ._json import json_safe
from .errors import StatsInputError
from .stats_compare import GroupComparison, compare_groups
from .stats_input import (
    MAX_CATEGORICAL_LEVELS,
    _as_numeric,
    _bad_examples,
    _clean_text,
    _id_list,
    _id_text,
    detect_type,
    encode_outcome,
    load_table,
    merge_measurements,
    read_measurements,
)
from .stats_logistic import LogisticResult, logistic_regression
from .stats_roc import AUC_CI_METHOD, RocResult, roc_analysis

__all__ = [
    "MAX_CATEGORICAL_LEVELS",
    "StatsResult",
    "analyse",
    "detect_type",
    "encode_outcome",
    "format_p",
    "load_table",
    "merge_measurements",
    "read_measurements",
]

def format_p(p):
    """A P value for display: ``"<0.001"`` below 0.001, else 3 decimals.

    Parameters
    ----------
    p : float or None

    Returns
    -------
    str
        ``"–"`` when ``p`` is missing.

    Examples
    --------
    >>> format_p(0.00049), format_p(0.0404), format_p(1.0)
    ('<0.001', '0.040', '1.000')
    """
    if p is None or not math.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# --------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------


def _notes(text):
    return [t for t in str(text or "").split(" | ") if t]


@dataclasses.dataclass
class StatsResult:
    """Everything :func:`analyse` computed.

    Attributes
    ----------
    outcome : dict
        ``column``, ``event``, ``non_event``, ``n`` (patients analysed),
        ``n_0``, ``n_1`` (per group) and ``n_missing`` (no outcome value).
    types : dict
        Variable → ``"continuous"`` or ``"categorical"`` for the comparison.
    comparison : GroupComparison
    logistic : LogisticResult or None
    roc : RocResult or None
    reliability : pandas.DataFrame or None
        :func:`napari_pvm.core.reliability.reliability_table` of the merged
        measurements when they have two observers or more.
    data : pandas.DataFrame
        The analysed table (numeric columns as floats), one row per patient.
    y : pandas.Series
        The outcome coded 0/1, aligned on ``data``.
    measurements : pandas.DataFrame or None
        The measurement rows used (for Bland–Altman plots).
    warnings : list of str
        Every warning of every analysis, in order.
    settings : dict
        The options used (observer, level, seed, …).
    """

    outcome: dict
    types: dict
    comparison: GroupComparison
    logistic: LogisticResult = None
    roc: RocResult = None
    reliability: pd.DataFrame = None
    data: pd.DataFrame = None
    y: pd.Series = None
    measurements: pd.DataFrame = None
    warnings: list = dataclasses.field(default_factory=list)
    settings: dict = dataclasses.field(default_factory=dict)

    @property
    def group_labels(self):
        """Labels of group 0 and group 1, e.g. ``("residual_lbp = 0", "residual_lbp = 1")``."""
        c = self.outcome["column"]
        return (f"{c} = {self.outcome['non_event']}", f"{c} = {self.outcome['event']}")

    def tables(self):
        """The result as named tidy DataFrames (what ``--out`` writes as CSV)."""
        out = {"comparison": self.comparison.table, "comparison_levels": self.comparison.levels}
        if self.logistic is not None:
            out["logistic"] = self.logistic.rows
            if not self.logistic.terms.empty:
                out["logistic_terms"] = self.logistic.terms
            if not self.logistic.classification.empty:
                out["logistic_classification"] = self.logistic.classification
            if self.logistic.hosmer_lemeshow is not None:
                out["logistic_hosmer_lemeshow"] = self.logistic.hosmer_lemeshow["groups"]
        if self.roc is not None:
            out["roc"] = self.roc.table
            out["roc_coordinates"] = self.roc.curves
        if self.reliability is not None:
            out["reliability"] = self.reliability
        return out

    def to_dict(self):
        """The JSON structure of ``napari-pvm stats --json`` (unrounded; None for NaN)."""
        return json_safe({
            "outcome": dict(self.outcome),
            "groups": list(self.group_labels),
            "comparison": [self._comparison_entry(r) for r in self.comparison.table.to_dict("records")],
            "logistic": self._logistic_dict(),
            "roc": self._roc_list(),
            "reliability": (
                None if self.reliability is None else self.reliability.to_dict("records")
            ),
            "warnings": list(self.warnings),
            "settings": dict(self.settings),
        })

    def _comparison_entry(self, r):
        pair = lambda key: [_f(r.get(f"{key}_0")), _f(r.get(f"{key}_1"))]  # noqa: E731
        entry = {
            "variable": r["variable"],
            "type": r["type"],
            "n": [int(r["n_0"]), int(r["n_1"])],
            "n_missing": int(r["n_missing"]),
        }
        if r["type"] == "continuous":
            entry.update(
                mean=pair("mean"),
                sd=pair("sd"),
                median=pair("median"),
                q1=pair("q1"),
                q3=pair("q3"),
                shapiro_w=pair("shapiro_w"),
                shapiro_p=pair("shapiro_p"),
                levene_f=_f(r["levene_f"]),
                levene_p=_f(r["levene_p"]),
                student_t=_f(r["student_t"]),
                student_df=_f(r["student_df"]),
                student_p=_f(r["student_p"]),
                welch_t=_f(r["welch_t"]),
                welch_df=_f(r["welch_df"]),
                welch_p=_f(r["welch_p"]),
                mannwhitney_u=_f(r["mannwhitney_u"]),
                mannwhitney_z=_f(r["mannwhitney_z"]),
                mannwhitney_p=_f(r["mannwhitney_p"]),
                mean_diff=_f(r["mean_diff"]),
                mean_diff_ci=[_f(r["mean_diff_ci_low"]), _f(r["mean_diff_ci_high"])],
                mean_diff_ci_from=r["mean_diff_ci_from"],
                test=r["test"],
                test_reason=r["test_reason"],
                statistic=_f(r["statistic"]),
                p=_f(r["p"]),
            )
        else:
            levels = self.comparison.levels
            lv = levels[levels["variable"] == r["variable"]]
            fisher_method = r["fisher_method"]
            if fisher_method is None and _f(r["chi2"]) is not None:
                fisher_method = "not needed: every expected count is 5 or more"
            entry.update(
                levels=[
                    {
                        "level": x["level"],
                        "n": [int(x["count_0"]), int(x["count_1"])],
                        "pct": [_f(x["pct_0"]), _f(x["pct_1"])],
                        "expected": [_f(x["expected_0"]), _f(x["expected_1"])],
                    }
                    for x in lv.to_dict("records")
                ],
                chi2=_f(r["chi2"]),
                df=None if _f(r["df"]) is None else int(r["df"]),
                p=_f(r["p"]),
                lr_chi2=_f(r["lr_chi2"]),
                lr_p=_f(r["lr_p"]),
                fisher_p=_f(r["fisher_p"]),
                fisher_method=fisher_method,
                min_expected=_f(r["min_expected"]),
                n_cells_below_5=int(r["n_cells_below_5"]),
                test="chi2",
            )
            if _f(r.get("yates_chi2")) is not None:
                entry.update(yates_chi2=_f(r["yates_chi2"]), yates_p=_f(r["yates_p"]))
        entry["notes"] = _notes(r.get("notes"))
        return entry

    def _logistic_dict(self):
        lg = self.logistic
        if lg is None:
            return None
        rows = []
        for r in lg.rows.to_dict("records"):
            rows.append(
                {
                    "variable": r["variable"],
                    "covariate": r["covariate"],
                    "level": r["level"],
                    "reference": r["reference"],
                    "B": _f(r["B"]),
                    "SE": _f(r["SE"]),
                    "wald": _f(r["wald"]),
                    "df": int(r["df"]),
                    "p": _f(r["p"]),
                    "OR": _f(r["OR"]),
                    "ci_low": _f(r["ci_low"]),
                    "ci_high": _f(r["ci_high"]),
                    "vif": _f(r["vif"]),
                }
            )
        out = {"rows": rows, "terms": lg.terms.to_dict("records")}
        for k, v in lg.summary.items():
            if isinstance(v, (dict, str, bool, type(None))):
                out[k] = v
            else:
                out[k] = int(v) if isinstance(v, (int, np.integer)) else _f(v)
        out["classification"] = lg.classification.to_dict("records")
        hl = lg.hosmer_lemeshow
        out["hosmer_lemeshow"] = (
            None
            if hl is None
            else {
                "chi2": _f(hl["chi2"]),
                "df": int(hl["df"]),
                "p": _f(hl["p"]),
                "groups": hl["groups"].to_dict("records"),
            }
        )
        out["warnings"] = list(lg.warnings)
        return out

    def _roc_list(self):
        if self.roc is None:
            return []
        out = []
        for r in self.roc.table.to_dict("records"):
            out.append(
                {
                    "variable": r["variable"],
                    "n": [int(r["n_0"]), int(r["n_1"])],
                    "n_missing": int(r["n_missing"]),
                    "auc": _f(r["auc"]),
                    "auc_se": _f(r["auc_se"]),
                    "auc_ci": [_f(r["auc_ci_low"]), _f(r["auc_ci_high"])],
                    "auc_ci_method": AUC_CI_METHOD,
                    "auc_p": _f(r["auc_p"]),
                    "direction": r["direction"],
                    "cutoff": _f(r["cutoff"]),
                    "sensitivity": _f(r["sensitivity"]),
                    "specificity": _f(r["specificity"]),
                    "youden_j": _f(r["youden_j"]),
                    "counts": {k: int(r[k]) for k in ("tp", "fn", "tn", "fp")},
                    "n_tied_maxima": int(r["n_tied_maxima"]),
                    "notes": _notes(r.get("notes")),
                }
            )
        return out


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def _names(value):
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    names = list(dict.fromkeys(v.strip() for v in value if v and v.strip()))
    return names or None


def _check_columns(frame, names, flag):
    unknown = [n for n in names if n not in frame.columns]
    if unknown:
        hints = []
        for n in unknown:
            close = difflib.get_close_matches(n, [str(c) for c in frame.columns], n=1)
            hints.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise StatsInputError(f"{flag}: no such column: {', '.join(hints)}")


def _numeric_column(frame, name, ids, what):
    """Convert an explicitly requested numeric column or explain why not."""
    values, bad = _as_numeric(frame[name])
    if bad.any():
        raise StatsInputError(
            f"{what} {name} has {int(bad.sum())} non-numeric value(s): {_bad_examples(frame[name], bad, ids)}; "
            "fix them"
            + (" or declare the column categorical" if what == "continuous variable" else "")
        )
    return values


def _require_variance(values, name, what):
    present = values.dropna()
    if present.empty:
        raise StatsInputError(f"{what} {name} has no values")
    if present.nunique() < 2:
        raise StatsInputError(f"{what} {name} has no variance (every value is {present.iloc[0]}); remove it")


def analyse(
    table,
    outcome,
    *,
    event=None,
    continuous=None,
    categorical=None,
    logistic=None,
    roc=None,
    measurements=None,
    observer="mean",
    level=None,
    reference=None,
    seed=0,
):
    """Run the seed paper's analysis on a per-patient table.

    Parameters
    ----------
    table : pandas.DataFrame or str or Path
        One row per patient with ``patient_id`` (needed to merge), the
        outcome and the clinical variables; a path is read with
        :func:`load_table`.
    outcome : str
        Column of the two-valued outcome.
    event : object, optional
        Outcome value that means "event" (group 1); needed unless the
        outcome is 0/1 (or true/false, yes/no).
    continuous, categorical : sequence of str or str, optional
        Variables for the group comparison, with their type. When neither is
        given, every column but ``patient_id`` and the outcome is compared,
        with its type detected (:func:`detect_type`); columns that cannot be
        analysed are left out with a warning. A comma-separated string is
        accepted.
    logistic : sequence of str, optional
        Covariates of the logistic model (all entered). A covariate listed in
        ``categorical`` or holding text is coded with indicators.
    roc : sequence of str, optional
        Variables for ROC analysis.
    measurements : pandas.DataFrame or str or Path, optional
        The shared measurement CSV (or its rows), merged per patient with
        :func:`merge_measurements`.
    observer : str, optional
        ``"mean"`` (default) or one observer ID, for the merge.
    level : str, optional
        Vertebral level of the measurements when the file has several.
    reference : dict, optional
        Reference category per categorical logistic covariate.
    seed : int, optional
        Seed of any resampled Fisher test (recorded in the result).

    Returns
    -------
    StatsResult

    Raises
    ------
    StatsInputError
        Bad input: unknown columns, an outcome without exactly two classes,
        too few patients, non-numeric values or no variance in a variable
        that was asked for by name, and the merge errors of
        :func:`merge_measurements`.
    """
    table = _clean_text(table) if isinstance(table, pd.DataFrame) else load_table(table)
    if table.empty:
        raise StatsInputError("the table has no rows")
    if outcome not in table.columns:
        _check_columns(table, [outcome], "--outcome")
    warnings = []

    if "patient_id" in table.columns:
        ids = _id_text(table["patient_id"])
        dup = ids[ids.duplicated(keep=False) & ids.notna()]
        if not dup.empty:
            raise StatsInputError(
                f"patient_id must be unique (one row per patient); repeated: {_id_list(sorted(set(dup)))}"
            )
        table = table.assign(patient_id=ids)
    rows = None
    if measurements is not None:
        table, rows, notes = merge_measurements(table, measurements, observer=observer, level=level)
        warnings.extend(notes)
    ids = table["patient_id"] if "patient_id" in table.columns else pd.Series(
        [f"row {i + 2}" for i in range(len(table))], index=table.index
    )

    y, info = encode_outcome(table[outcome], event=event, name=outcome)
    if info["n_missing"]:
        warnings.append(
            f"{info['n_missing']} patient(s) without a value of {outcome} left out of every analysis"
        )
    keep = y.notna()
    table = table[keep].reset_index(drop=True)
    ids = ids[keep].reset_index(drop=True)
    y = y[keep].astype(int).reset_index(drop=True)
    n0, n1 = int((y == 0).sum()), int((y == 1).sum())
    if n0 < 2 or n1 < 2:
        raise StatsInputError(
            f"too few patients: {n1} with {outcome} = {info['event']} and {n0} with "
            f"{outcome} = {info['non_event']}; each group needs at least 2 (3 for Shapiro–Wilk)"
        )

    continuous, categorical = _names(continuous), _names(categorical)
    logistic, roc = _names(logistic), _names(roc)
    explicit = continuous is not None or categorical is not None
    continuous, categorical = continuous or [], categorical or []
    for flag, names in (("--continuous", continuous), ("--categorical", categorical),
                        ("--logistic", logistic or []), ("--roc", roc or [])):
        _check_columns(table, names, flag)
        for special in (outcome, "patient_id"):
            if special in names:
                raise StatsInputError(f"{flag}: {special} cannot be analysed as a variable")
    both = sorted(set(continuous) & set(categorical))
    if both:
        raise StatsInputError(f"declared both continuous and categorical: {', '.join(both)}")

    data = table.copy()
    types = {}
    if explicit:
        for name in continuous:
            data[name] = _numeric_column(table, name, ids, "continuous variable")
            _require_variance(data[name], name, "continuous variable")
            types[name] = "continuous"
        for name in categorical:
            _require_variance(table[name], name, "categorical variable")
            types[name] = "categorical"
    else:
        for name in table.columns:
            if name in (outcome, "patient_id"):
                continue
            kind, reason = detect_type(table[name])
            if kind is None:
                warnings.append(f"{name} left out of the comparison: {reason}")
                continue
            types[name] = kind
            if kind == "continuous":
                data[name] = _as_numeric(table[name])[0]
        continuous = [n for n, t in types.items() if t == "continuous"]
        categorical = [n for n, t in types.items() if t == "categorical"]

    comparison = compare_groups(data, y, continuous=continuous, categorical=categorical, seed=seed)
    warnings.extend(comparison.warnings)

    logistic_result = None
    if logistic:
        cat = set()
        declared = set(categorical) if explicit else set()  # as SPSS: covariates unless declared
        for name in logistic:
            values, bad = _as_numeric(table[name])
            n_present = max(1, int(table[name].notna().sum()))
            if name in declared:
                cat.add(name)
                data[name] = table[name]
            elif bad.any() and bad.sum() / n_present <= 0.2:
                raise StatsInputError(
                    f"logistic covariate {name} has {int(bad.sum())} non-numeric value(s): "
                    f"{_bad_examples(table[name], bad, ids)}; fix them or declare it categorical"
                )
            elif bad.any():
                cat.add(name)
                data[name] = table[name]
                warnings.append(f"logistic: {name} holds text and is entered as a categorical covariate")
            else:
                data[name] = values
            _require_variance(data[name], name, "logistic covariate")
        stray = sorted(set(reference or {}) - cat)
        if stray:
            raise StatsInputError(
                f"--reference: {', '.join(stray)} is not a categorical logistic covariate "
                "(list it in --logistic and --categorical)"
            )
        logistic_result = logistic_regression(data, y, logistic, categorical=cat, reference=reference)
        warnings.extend(logistic_result.warnings)

    roc_result = None
    if roc:
        for name in roc:
            data[name] = _numeric_column(table, name, ids, "ROC variable")
            _require_variance(data[name], name, "ROC variable")
            present = y[data[name].notna()]
            if present.nunique() < 2:
                raise StatsInputError(
                    f"ROC variable {name} has values only for patients with {outcome} = "
                    f"{info['event'] if present.iloc[0] == 1 else info['non_event']}"
                )
        roc_result = roc_analysis(data, y, roc)
        warnings.extend(roc_result.warnings)

    reliability = None
    if rows is not None and rows["observer_id"].nunique() >= 2:
        try:
            from .reliability import reliability_table
        except ImportError:
            warnings.append("reliability not computed: napari_pvm.core.reliability is not available")
        else:
            try:
                reliability = reliability_table(rows, level=level)
            except StatsInputError as exc:
                warnings.append(f"reliability not computed: {exc}")

    outcome_info = {
        "column": outcome,
        "event": info["event"],
        "non_event": info["non_event"],
        "n": n0 + n1,
        "n_0": n0,
        "n_1": n1,
        "n_missing": info["n_missing"],
    }
    settings = {
        "observer": None if rows is None else str(observer),
        "level": level,
        "seed": seed,
        "types_detected": not explicit,
        "reference": dict(reference or {}),
        "auc_ci_method": AUC_CI_METHOD,
    }
    return StatsResult(
        outcome=outcome_info,
        types=types,
        comparison=comparison,
        logistic=logistic_result,
        roc=roc_result,
        reliability=reliability,
        data=data,
        y=y,
        measurements=rows,
        warnings=warnings,
        settings=settings,
    )
