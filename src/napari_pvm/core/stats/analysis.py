"""The front door of the statistics: :func:`analyse` runs the seed paper's analysis.

One call reads a per-patient table (optionally merged with the shared
measurement CSVs, :mod:`.input`), codes the outcome, detects or takes the
type of each variable and runs

- the two-group comparison (:mod:`.compare`, Table 2),
- binary logistic regression (:mod:`.logistic`, Table 3),
- ROC curves with Youden cut-offs (:mod:`.roc`, Figure 2),
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
from pathlib import Path

import pandas as pd

from .._json import json_safe, tidy_records
from ..errors import StatsInputError
from ..tables import check_columns
from .compare import GroupComparison, compare_groups
from .input import (
    describe_bad,
    clean_text,
    detect_type,
    encode_outcome,
    id_text,
    id_list,
    load_table,
    merge_measurements,
    to_numeric,
)
from .logistic import LogisticResult, logistic_regression
from .reliability import ReliabilityResult
from .roc import AUC_CI_METHOD, RocResult, roc_analysis

__all__ = ["STAGES", "StatsResult", "analyse"]

#: The stages :func:`analyse` reports to its ``progress`` callback, in order.
STAGES = (
    "reading the table",
    "merging the measurements",
    "comparing the groups (Table 2)",
    "logistic regression (Table 3)",
    "ROC analysis",
    "reliability",
)


# --------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StatsResult:
    """Everything :func:`analyse` computed (immutable; tables are tidy DataFrames).

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
    reliability : ReliabilityResult or None
        Inter-observer reliability of the merged measurements (muscle and
        spine tables) when they have two observers or more; its ``values``
        are what the Bland–Altman plots draw.
    data : pandas.DataFrame
        The analysed table (numeric columns as floats), one row per patient.
    y : pandas.Series
        The outcome coded 0/1, aligned on ``data``.
    warnings : tuple of str
        Every warning of every analysis, in order.
    settings : dict
        The options used (observer, session, level, seed, …).
    """

    outcome: dict
    types: dict
    comparison: GroupComparison
    logistic: LogisticResult = None
    roc: RocResult = None
    reliability: ReliabilityResult = None
    data: pd.DataFrame = None
    y: pd.Series = None
    warnings: tuple = ()
    settings: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "warnings", tuple(self.warnings))

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
            out["reliability"] = self.reliability.table
            out["reliability_pairs"] = self.reliability.pairs
            if not self.reliability.origins.empty:
                out["outline_origins"] = self.reliability.origins
        return out

    def to_dict(self):
        """The JSON structure of ``napari-pvm stats --json`` (unrounded; None for NaN).

        Each table becomes a list of records (:func:`napari_pvm.core._json.tidy_records`):
        per-group columns ``x_0``, ``x_1`` become ``x: [group 0, group 1]`` and
        ``x_ci_low``, ``x_ci_high`` become ``x_ci``; a categorical variable
        carries its ``levels``.
        """
        levels = tidy_records(self.comparison.levels)
        comparison = []
        for item in tidy_records(self.comparison.table):
            if item["type"] == "categorical":
                item["levels"] = [lv for lv in levels if lv["variable"] == item["variable"]]
            comparison.append(item)
        logistic = None
        if self.logistic is not None:
            lg = self.logistic
            hl = lg.hosmer_lemeshow
            logistic = {
                "rows": tidy_records(lg.rows),
                "terms": tidy_records(lg.terms),
                **lg.summary,
                "classification": tidy_records(lg.classification),
                "hosmer_lemeshow": None if hl is None else {**hl, "groups": tidy_records(hl["groups"])},
                "warnings": list(lg.warnings),
            }
        roc = [] if self.roc is None else [dict(r, auc_ci_method=AUC_CI_METHOD) for r in tidy_records(self.roc.table)]
        return json_safe(
            {
                "outcome": dict(self.outcome),
                "groups": list(self.group_labels),
                "comparison": comparison,
                "logistic": logistic,
                "roc": roc,
                "reliability": None if self.reliability is None else self.reliability.to_dict(),
                "warnings": list(self.warnings),
                "settings": dict(self.settings),
            }
        )


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
    check_columns(frame, names, source="the table", flag=flag)


def _numeric_column(frame, name, ids, what):
    """Convert an explicitly requested numeric column or explain why not."""
    values, bad = to_numeric(frame[name])
    if bad.any():
        raise StatsInputError(
            f"{what} {name} has {int(bad.sum())} non-numeric value(s): {describe_bad(frame[name], bad, ids)}; "
            "fix them" + (" or declare the column categorical" if what == "continuous variable" else "")
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
    session=None,
    exclude_flagged=False,
    reference=None,
    seed=0,
    progress=None,
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
    measurements : pandas.DataFrame or str or Path, or a list of them, optional
        The shared measurement CSVs (muscle and spine tables) or their rows,
        merged per patient with
        :func:`~napari_pvm.core.stats.input.merge_measurements` (which adds
        the derived measures).
    observer : str, optional
        ``"mean"`` (default) or one observer ID, for the merge.
    level : str, optional
        Vertebral level of the measurements when the file has several.
    session : str, optional
        Reading of the measurements to use: default ``"read1"`` when present,
        else the only one; a repeat reading never replaces the first.
    exclude_flagged : bool, optional
        Leave out measurement rows with quality flags (``qc_flags``), after
        the latest row per reading is chosen; the warnings say how many.
    reference : dict, optional
        Reference category per categorical logistic covariate.
    seed : int, optional
        Seed of any resampled Fisher test (recorded in the result).
    progress : callable, optional
        ``progress(done, total, stage)`` as each stage of :data:`STAGES`
        starts and when all are done (``done == total``), for progress bars.

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
    step = _stepper(progress)
    step("reading the table")
    table_arg = table
    table = clean_text(table) if isinstance(table, pd.DataFrame) else load_table(table)
    if table.empty:
        name = "the table" if isinstance(table_arg, pd.DataFrame) else Path(table_arg).name
        raise StatsInputError(f"{name} has no rows (only a header); add one row per patient")
    if outcome not in table.columns:
        _check_columns(table, [outcome], "--outcome")
    warnings = []

    if "patient_id" in table.columns:
        ids = id_text(table["patient_id"])
        dup = ids[ids.duplicated(keep=False) & ids.notna()]
        if not dup.empty:
            raise StatsInputError(
                f"patient_id must be unique (one row per patient); repeated: {id_list(sorted(set(dup)))}"
            )
        table = table.assign(patient_id=ids)
    rows = None
    step("merging the measurements")
    if measurements is not None:
        table, rows, notes = merge_measurements(
            table,
            measurements,
            observer=observer,
            level=level,
            session=session,
            exclude_flagged=exclude_flagged,
        )
        warnings.extend(notes)
    ids = (
        table["patient_id"]
        if "patient_id" in table.columns
        else pd.Series([f"row {i + 2}" for i in range(len(table))], index=table.index)
    )

    y, info = encode_outcome(table[outcome], event=event, name=outcome)
    if info["n_missing"]:
        warnings.append(f"{info['n_missing']} patient(s) without a value of {outcome} left out of every analysis")
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
    for flag, names in (
        ("--continuous", continuous),
        ("--categorical", categorical),
        ("--logistic", logistic or []),
        ("--roc", roc or []),
    ):
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
                data[name] = to_numeric(table[name])[0]
        continuous = [n for n, t in types.items() if t == "continuous"]
        categorical = [n for n, t in types.items() if t == "categorical"]

    step("comparing the groups (Table 2)")
    comparison = compare_groups(data, y, continuous=continuous, categorical=categorical, seed=seed)
    warnings.extend(comparison.warnings)

    logistic_result = None
    step("logistic regression (Table 3)")
    if logistic:
        cat = set()
        declared = set(categorical) if explicit else set()  # as SPSS: covariates unless declared
        for name in logistic:
            values, bad = to_numeric(table[name])
            n_present = max(1, int(table[name].notna().sum()))
            if name in declared:
                cat.add(name)
                data[name] = table[name]
            elif bad.any() and bad.sum() / n_present <= 0.2:
                raise StatsInputError(
                    f"logistic covariate {name} has {int(bad.sum())} non-numeric value(s): "
                    f"{describe_bad(table[name], bad, ids)}; fix them or declare it categorical"
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
    step("ROC analysis")
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

    step("reliability")
    reliability = _reliability(rows, session, level, exclude_flagged, warnings)
    step(None)

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
        "session": None if not rows else rows[0][1].get("session"),
        "exclude_flagged": bool(exclude_flagged),
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
        warnings=warnings,
        settings=settings,
    )


def _reliability(used, session, level, exclude_flagged, warnings):
    """Inter-observer reliability of every merged table with two observers or more."""
    from .reliability import inter_observer

    if not used:
        return None
    parts = []
    for rows, info in used:
        if rows["observer_id"].nunique() < 2:
            continue
        try:
            parts.append(inter_observer(rows, session=info.get("session"), level=info.get("level")))
        except StatsInputError as exc:
            warnings.append(f"reliability of the {info['table']} table not computed: {exc}")
    return ReliabilityResult.concat(parts) if parts else None


def _stepper(progress):
    """``step(stage)``: tell ``progress`` that ``stage`` starts (None: all done)."""

    def step(stage):
        if progress is not None:
            done = len(STAGES) if stage is None else STAGES.index(stage)
            progress(done, len(STAGES), stage or "done")

    return step
