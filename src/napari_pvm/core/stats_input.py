"""Reading the tables of :mod:`napari_pvm.core.stats`: types, outcome, merge.

- :func:`load_table` reads a per-patient CSV or Excel sheet as text;
- :func:`detect_type` guesses whether a column is continuous or categorical;
- :func:`encode_outcome` codes a two-valued outcome as 0/1;
- :func:`merge_measurements` adds per-patient measurements from the shared
  CSV (contract 3): the mean of the observers or one observer's values, the
  latest row per patient × observer.

Every problem raises :class:`~napari_pvm.core.errors.StatsInputError` with a
message that names the column, the value and the patient.
"""

import math
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import StatsInputError

__all__ = [
    "EXTRA_NA",
    "MAX_CATEGORICAL_LEVELS",
    "detect_type",
    "encode_outcome",
    "load_table",
    "merge_measurements",
    "read_measurements",
]

#: A numeric column with integer values and at most this many distinct values
#: is taken as categorical (a code such as 1/2/3) when types are detected.
MAX_CATEGORICAL_LEVELS = 5
#: Missing-value markers read from tables besides pandas' defaults ("", NA, …).
EXTRA_NA = (".",)
_EVENT_PAIRS = ({"0", "1"}, {"false", "true"}, {"no", "yes"}, {"n", "y"})

# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def load_table(path):
    """Read a per-patient table from CSV (or Excel) as text.

    Every cell is read as text (IDs keep their leading zeros); surrounding
    spaces are removed and empty cells, ``NA``, ``n/a`` and SPSS's ``.``
    become missing. Numbers are converted later, column by column, so that a
    non-numeric cell can be reported by patient.

    Parameters
    ----------
    path : str or Path
        ``.csv`` (comma-separated, UTF-8 with or without BOM), ``.tsv`` or
        ``.txt`` (tab-separated), ``.xlsx`` or ``.xls`` (first sheet; needs
        the ``openpyxl`` package).

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    StatsInputError
        An unknown extension, an empty file, or Excel without openpyxl.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    kw = {"dtype": str, "keep_default_na": True, "na_values": list(EXTRA_NA)}
    try:
        if suffix in (".xlsx", ".xlsm", ".xls"):
            try:
                frame = pd.read_excel(path, **kw)
            except ImportError:
                raise StatsInputError(
                    f"reading {path.name} needs the openpyxl package (pip install openpyxl); "
                    "or save the sheet as CSV"
                ) from None
            except (ValueError, zipfile.BadZipFile, KeyError) as exc:
                raise StatsInputError(f"{path.name} is not a readable Excel workbook ({exc})") from None
        elif suffix in (".csv", ".tsv", ".txt", ""):
            sep = "," if suffix == ".csv" else "\t"
            with warnings.catch_warnings():
                # more fields than header names would shift columns silently
                warnings.simplefilter("error", pd.errors.ParserWarning)
                frame = pd.read_csv(path, sep=sep, encoding="utf-8-sig", index_col=False, **kw)
        else:
            raise StatsInputError(f"{path.name}: unknown table format; use .csv, .tsv or .xlsx")
    except pd.errors.ParserWarning:
        raise StatsInputError(
            f"{path.name} has lines with more fields than its header (a stray or trailing "
            "separator?); fix the table so every line has one value per column"
        ) from None
    except pd.errors.EmptyDataError:
        raise StatsInputError(f"{path.name} is empty") from None
    except pd.errors.ParserError as exc:
        raise StatsInputError(f"{path.name} is not a valid table: {' '.join(str(exc).split())}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return _clean_text(frame)


def _clean_text(frame):
    frame = frame.copy()
    for c in frame.columns:
        if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c]):
            text = frame[c].astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
            frame[c] = text.mask(text.map(lambda v: isinstance(v, str) and v in ("", *EXTRA_NA)))
    return frame


def read_measurements(path):
    """Rows of the shared measurement CSV (contract 3), IDs as text.

    Uses :func:`napari_pvm.core.store.read_rows` (``latest=True``).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    pandas.DataFrame
    """
    from .store import read_rows

    return read_rows(path, latest=True)


def _as_numeric(series):
    """(float values, mask of cells that are present but not numbers)."""
    if pd.api.types.is_bool_dtype(series):
        values = series.astype(float)
        return values, pd.Series(False, index=series.index)
    if pd.api.types.is_numeric_dtype(series):
        values = series.astype(float)
        bad = pd.Series(np.isinf(values.to_numpy()), index=series.index)
        return values.where(~bad), bad
    text = series.astype(object)
    values = pd.to_numeric(text, errors="coerce").astype(float)
    bad = text.notna() & (values.isna() | np.isinf(values))
    return values.where(~bad), bad


def _bad_examples(series, bad, ids, k=5):
    where = np.flatnonzero(bad.to_numpy())[:k]
    parts = [f"{series.iloc[i]!r} (patient {ids.iloc[i]})" for i in where]
    more = int(bad.sum()) - len(parts)
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def detect_type(series, *, max_levels=MAX_CATEGORICAL_LEVELS):
    """Guess whether a column is continuous or categorical.

    Parameters
    ----------
    series : pandas.Series
        Text or numbers; missing values are ignored.
    max_levels : int, optional
        Integer codes with at most this many distinct values are categorical.

    Returns
    -------
    kind : {"continuous", "categorical", None}
        None when the column cannot be analysed.
    reason : str
        Why (shown to the user when the column is left out).

    Examples
    --------
    >>> import pandas as pd
    >>> detect_type(pd.Series(["0", "1", "1"]))[0]
    'categorical'
    >>> detect_type(pd.Series(["12.5", "14.1", "9.75", "11"]))[0]
    'continuous'
    """
    present = series.dropna()
    if present.empty:
        return None, "it has no values"
    values, bad = _as_numeric(present)
    n_distinct = present.nunique()
    if not bad.any():
        if n_distinct < 2:
            return None, f"it has one value only ({present.iloc[0]})"
        integer = bool(np.all(np.mod(values, 1) == 0))
        if n_distinct <= 2 or (integer and n_distinct <= max_levels):
            return "categorical", f"{n_distinct} distinct codes"
        return "continuous", "numbers"
    share = 1.0 - bad.mean()
    if share >= 0.8:
        examples = ", ".join(repr(v) for v in pd.unique(present[bad])[:3])
        return None, f"it looks numeric but has text values ({examples})"
    if n_distinct < 2:
        return None, f"it has one value only ({present.iloc[0]!r})"
    if n_distinct > max(10, len(present) // 2):
        return None, f"it has {n_distinct} distinct text values (an identifier or free text?)"
    return "categorical", "text"


# --------------------------------------------------------------------------
# Outcome
# --------------------------------------------------------------------------


def _canon(v):
    """Text form of a value for matching (1, 1.0 and '1' all read '1')."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    text = str(v).strip()
    try:
        f = float(text)
    except ValueError:
        return text
    return str(int(f)) if math.isfinite(f) and f.is_integer() else text


def encode_outcome(values, *, event=None, name="outcome"):
    """Code a two-valued outcome as 0/1.

    Parameters
    ----------
    values : pandas.Series
        The outcome column (text or numbers; missing values allowed).
    event : object, optional
        The value that means "event" (coded 1). Needed unless the values are
        0/1, true/false, yes/no or y/n.
    name : str, optional
        Column name, for messages.

    Returns
    -------
    y : pandas.Series of float
        1.0 for the event, 0.0 otherwise, NaN where the outcome is missing.
    info : dict
        ``event`` and ``non_event`` (the original values, as text) and
        ``n_missing``.

    Raises
    ------
    StatsInputError
        One class only, more than two classes, or an ambiguous event.

    Examples
    --------
    >>> import pandas as pd
    >>> y, info = encode_outcome(pd.Series(["yes", "no", None, "yes"]))
    >>> y.tolist(), info["event"]
    ([1.0, 0.0, nan, 1.0], 'yes')
    """
    keys = values.map(lambda v: None if pd.isna(v) else _canon(v))
    present = keys.dropna()
    distinct = list(dict.fromkeys(present))
    if not distinct:
        raise StatsInputError(f"the outcome column {name} has no values")
    if len(distinct) == 1:
        raise StatsInputError(
            f"the outcome {name} has one class only: all {len(present)} patients are "
            f"{distinct[0]!r}; comparing groups needs patients of both classes"
        )
    if len(distinct) > 2:
        shown = ", ".join(repr(v) for v in sorted(distinct, key=str)[:8])
        raise StatsInputError(
            f"the outcome {name} has {len(distinct)} different values ({shown}"
            f"{', …' if len(distinct) > 8 else ''}); it must have exactly two: recode it"
        )
    if event is not None:
        ev = _canon(event)
        matches = [d for d in distinct if d == ev or d.lower() == ev.lower()]
        if not matches:
            raise StatsInputError(
                f"--event {event!r} is not a value of {name} (its values are "
                f"{', '.join(repr(d) for d in sorted(distinct))})"
            )
        ev = matches[0]
    else:
        lowered = {d.lower(): d for d in distinct}
        pair = next((p for p in _EVENT_PAIRS if set(lowered) == p), None)
        if pair is None:
            raise StatsInputError(
                f"the outcome {name} has the values {', '.join(repr(d) for d in sorted(distinct))}; "
                "say which one is the event with --event VALUE (event=... in Python)"
            )
        ev = lowered[max(pair, key=lambda s: s in ("1", "true", "yes", "y"))]
    non = next(d for d in distinct if d != ev)
    y = keys.map(lambda k: math.nan if pd.isna(k) else (1.0 if k == ev else 0.0)).astype(float)
    return y, {"event": ev, "non_event": non, "n_missing": int(keys.isna().sum())}


# --------------------------------------------------------------------------
# Merge with the measurement CSV
# --------------------------------------------------------------------------


def _id_text(series):
    return series.map(lambda v: None if pd.isna(v) else str(v).strip())


def merge_measurements(table, measurements, *, observer="mean", level=None):
    """Add one value per patient of each measure column to the clinical table.

    Parameters
    ----------
    table : pandas.DataFrame
        The per-patient table, with ``patient_id``.
    measurements : pandas.DataFrame or str or Path
        Rows of the shared CSV (contract 3), or its path (read with
        :func:`read_measurements`).
    observer : str, optional
        ``"mean"`` (default): per patient, the mean over observers of each
        measure (of the observers who have a value); otherwise the ID of the
        one observer to use.
    level : str, optional
        Vertebral level to use when the file has several.

    Returns
    -------
    merged : pandas.DataFrame
        ``table`` with the measure columns added (left join on
        ``patient_id`` as text; patients without measurements get missing
        values).
    rows : pandas.DataFrame
        The measurement rows of the chosen level (all observers), as used
        for reliability.
    notes : list of str
        Patients in one table but not the other, patients with one observer.

    Raises
    ------
    StatsInputError
        No ``patient_id`` or ``observer_id``, an unknown observer or level,
        several levels with none chosen, no measure column, or a measure
        column that is also in the clinical table.
    """
    from .schema import MEASURE_COLUMNS

    if not isinstance(measurements, pd.DataFrame):
        measurements = read_measurements(measurements)
    rows = measurements.copy()
    for col in ("patient_id", "observer_id"):
        if col not in rows.columns:
            raise StatsInputError(f"the measurements have no {col} column; is this a napari-pvm CSV?")
        rows[col] = _id_text(rows[col])
    rows = rows[rows["patient_id"].notna()]
    if rows.empty:
        raise StatsInputError("the measurement file has no rows")
    if "level" in rows.columns:
        lv = _id_text(rows["level"]).fillna("")
        levels = sorted(set(lv))
        if level is not None:
            if str(level) not in levels:
                raise StatsInputError(
                    f"no measurements at level {level!r}; the file has {', '.join(map(repr, levels))}"
                )
            rows = rows[lv == str(level)]
        elif len(levels) > 1:
            raise StatsInputError(
                f"the measurements cover several levels ({', '.join(map(repr, levels))}); choose one with --level"
            )
    measures = [c for c in MEASURE_COLUMNS if c in rows.columns]
    if not measures:
        raise StatsInputError("the measurement file has no measure columns (e.g. ESMF_B_fi_pct)")
    for c in measures:
        values, bad = _as_numeric(rows[c])
        if bad.any():
            raise StatsInputError(
                f"measurement column {c} has non-numeric values: "
                f"{_bad_examples(rows[c], bad, rows['patient_id'])}"
            )
        rows[c] = values
    measures = [c for c in measures if rows[c].notna().any()]
    if not measures:
        raise StatsInputError("every measure column of the measurement file is empty")
    clash = [c for c in measures if c in table.columns]
    if clash:
        raise StatsInputError(
            f"the clinical table already has the measure column(s) {', '.join(clash)}; rename them"
        )

    # The latest row per patient × observer (over sessions).
    order = np.arange(len(rows))
    if "measured_at" in rows.columns:
        when = pd.to_datetime(rows["measured_at"], utc=True, errors="coerce", format="ISO8601")
        key = pd.DataFrame({"when": when.to_numpy(), "pos": order})
        order = key.sort_values(["when", "pos"], na_position="first", kind="stable")["pos"].to_numpy()
    latest = rows.iloc[order].drop_duplicates(["patient_id", "observer_id"], keep="last")

    notes = []
    observers = sorted(set(latest["observer_id"].dropna()))
    if str(observer) == "mean":
        per_patient = latest.groupby("patient_id", sort=False)[measures].mean()
        n_obs = latest.groupby("patient_id", sort=False)["observer_id"].nunique()
        single = int((n_obs < 2).sum())
        if len(observers) > 1 and single:
            notes.append(
                f"merge: {single} patient(s) were measured by one observer only; "
                "their value is that observer's, not a mean"
            )
    else:
        if str(observer) not in observers:
            raise StatsInputError(
                f"no measurements by observer {observer!r}; the file has {', '.join(map(repr, observers))}"
            )
        per_patient = latest[latest["observer_id"] == str(observer)].set_index("patient_id")[measures]

    if "patient_id" not in table.columns:
        raise StatsInputError("merging needs a patient_id column in the clinical table")
    left = table.copy()
    left["patient_id"] = _id_text(left["patient_id"])
    only_table = [p for p in left["patient_id"].dropna() if p not in per_patient.index]
    only_meas = [p for p in per_patient.index if p not in set(left["patient_id"])]
    if only_table:
        notes.append(
            f"merge: {len(only_table)} patient(s) of the clinical table have no measurements "
            f"({_id_list(only_table)}); their measure values are missing"
        )
    if only_meas:
        notes.append(
            f"merge: {len(only_meas)} measured patient(s) are not in the clinical table "
            f"({_id_list(only_meas)}); they are left out"
        )
    merged = left.merge(per_patient.reset_index(), on="patient_id", how="left")
    return merged, rows, notes


def _id_list(ids, k=10):
    ids = list(ids)
    return ", ".join(ids[:k]) + (f", … ({len(ids) - k} more)" if len(ids) > k else "")
