"""Input of the statistics: the clinical table, the outcome and the shared measurements.

- :func:`load_table` reads a per-patient table (CSV from any spreadsheet, or
  Excel) as text;
- :func:`detect_type` guesses whether a column is continuous or categorical;
- :func:`encode_outcome` codes a two-valued outcome as 0/1;
- :func:`select_rows` chooses one reading per patient × observer from a
  shared CSV (the rule reliability uses too);
- :func:`merge_measurements` adds per-patient measurements (muscle and spine
  tables, with :func:`derived_measures`) to the clinical table: the mean of
  the observers or one observer's values.

Every problem raises :class:`~napari_pvm.core.errors.StatsInputError` with a
message that names the column, the value and the patient.
"""

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import StatsInputError

__all__ = [
    "DERIVED_GROUPS",
    "EXTRA_NA",
    "MAX_CATEGORICAL_LEVELS",
    "SPINE_MEASURES",
    "check_finite",
    "clean_text",
    "derived_measures",
    "describe_bad",
    "detect_type",
    "encode_outcome",
    "flagged",
    "id_list",
    "id_text",
    "load_table",
    "measure_columns",
    "merge_measurements",
    "outcome_series",
    "read_measurements",
    "select_rows",
    "table_kind",
    "to_numeric",
]

#: Measures of the spine table (contract 8) that statistics and reliability analyse.
SPINE_MEASURES = ("vbq", "local_kyphosis_deg")
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
    non-numeric cell can be reported by patient. Spreadsheet exports (``;``
    separators, decimal commas, UTF-8 with BOM, Windows-1252) are read by
    :func:`napari_pvm.core.tables.read_table`.

    Parameters
    ----------
    path : str or Path
        ``.csv`` or ``.txt`` (separator found from the header), ``.tsv``,
        ``.xlsx`` or ``.xls`` (first sheet; needs the ``openpyxl`` package).

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    StatsInputError
        An unknown extension, an empty or undecodable file, or Excel without
        openpyxl.
    """
    from ..tables import read_table

    return clean_text(read_table(path, what="clinical table"))


def clean_text(frame):
    """Strip text cells and turn empty cells and ``.`` into missing values."""
    frame = frame.copy()
    for c in frame.columns:
        if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c]):
            text = frame[c].astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
            frame[c] = text.mask(text.map(lambda v: isinstance(v, str) and v in ("", *EXTRA_NA)))
    return frame


def read_measurements(path):
    """All rows of a shared measurement CSV (muscle or spine table), IDs as text.

    Uses :func:`napari_pvm.core.store.read_rows`, with the table found from
    the header (a ``vbq`` column means the spine table of contract 8); the
    latest row per reading is chosen later (:func:`select_rows`).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    pandas.DataFrame
    """
    from ..store import read_rows

    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            line = handle.readline().strip()
    except OSError:
        line = ""  # read_rows says what is wrong
    header = line.split(",")
    if line and "schema_version" not in line:  # a re-saved measurement table is explained by read_rows
        shown = ", ".join(c.strip() for c in header[:3]) + (", …" if len(header) > 3 else "")
        raise StatsInputError(
            f"{Path(path).name} is not a napari-pvm measurement table (its header starts {shown}); "
            "give the shared CSV written by napari-pvm measure, batch or spine (its header starts "
            "schema_version,row_id,patient_id); a clinical table is the TABLE of napari-pvm stats"
        )
    rows = read_rows(path, table="spine" if "vbq" in header else "muscle")
    if rows.empty:
        raise StatsInputError(f"{Path(path).name} has no rows (only a header); measure and add cases to it first")
    return rows


def to_numeric(series):
    """Float values of a column and the mask of cells that are present but not numbers.

    Examples
    --------
    >>> import pandas as pd
    >>> values, bad = to_numeric(pd.Series(["1.5", "x", None]))
    >>> values.tolist()[0], bad.tolist()
    (1.5, [False, True, False])
    """
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


def outcome_series(y, index):
    """The 0/1 outcome as integers aligned on ``index``.

    Raises
    ------
    StatsInputError
        A missing outcome, or a value other than 0 and 1 (code it with
        :func:`encode_outcome` first).
    """
    y = pd.Series(y, index=index)
    if y.isna().any():
        raise StatsInputError(
            f"the outcome is missing for {int(y.isna().sum())} patient(s); leave them out or code their outcome first"
        )
    codes = pd.to_numeric(y, errors="coerce")
    if codes.isna().any() or not codes.isin([0, 1]).all():
        raise StatsInputError("the outcome must be coded 0 (no event) and 1 (event); code it with encode_outcome")
    return codes.astype(int)


def check_finite(data, columns):
    """Refuse numeric columns holding infinite values (a division by zero
    upstream, a corrupt cell): they are neither data nor missing.

    Raises
    ------
    StatsInputError
        Naming the column and how many such values it holds.
    """
    for name in columns:
        values = data[name]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            n_inf = int(np.isinf(values.to_numpy(dtype=float)).sum())
            if n_inf:
                raise StatsInputError(f"{name} has {n_inf} infinite value(s); correct or remove them first")


def describe_bad(series, bad, ids, k=5):
    """Up to ``k`` bad cells as ``'x' (patient P1), …`` for messages."""
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
    values, bad = to_numeric(present)
    infinite = np.isinf(pd.to_numeric(present.astype(object), errors="coerce").astype(float))
    if infinite.any():
        return None, f"it has {int(infinite.sum())} infinite value(s); correct them in the table first"
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
# Rows of the shared tables: one reading per patient and observer
# --------------------------------------------------------------------------


def id_text(series):
    """IDs as stripped text (missing stays missing)."""
    return series.map(lambda v: None if pd.isna(v) else str(v).strip())


def id_list(ids, k=10):
    """At most ``k`` IDs joined by commas, for messages."""
    ids = list(ids)
    return ", ".join(ids[:k]) + (f", … ({len(ids) - k} more)" if len(ids) > k else "")


def table_kind(rows):
    """``"spine"`` for rows of the spine table (contract 8), else ``"muscle"``.

    Examples
    --------
    >>> import pandas as pd
    >>> table_kind(pd.DataFrame(columns=["patient_id", "vbq"]))
    'spine'
    """
    from ..schema import MEASURE_COLUMNS

    spine = any(c in rows.columns for c in SPINE_MEASURES)
    muscle = any(c in rows.columns for c in MEASURE_COLUMNS)
    return "spine" if spine and not muscle else "muscle"


def measure_columns(rows):
    """The measure columns of a muscle or spine table present in ``rows``, in schema order."""
    from ..schema import MEASURE_COLUMNS

    names = SPINE_MEASURES if table_kind(rows) == "spine" else MEASURE_COLUMNS
    return [c for c in names if c in rows.columns]


def _pick(values, wanted, what, flag, default=None):
    """Choose one value (a session or a level) or explain why not."""
    present = sorted(set(values))
    shown = ", ".join(repr(v) for v in present) or "none"
    if wanted is not None:
        if str(wanted) not in present:
            raise StatsInputError(f"no rows with {what} {str(wanted)!r}; the file has {shown}")
        return str(wanted)
    if default is not None and default in present:
        return default
    if len(present) == 1:
        return present[0]
    raise StatsInputError(f"the file has several {what}s ({shown}); choose one with {flag}")


def flagged(rows):
    """Rows whose ``qc_flags`` is not empty (a doubtful fat classification)."""
    if "qc_flags" not in rows.columns:
        return pd.Series(False, index=rows.index)
    text = rows["qc_flags"].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return text.str.strip() != ""


def select_rows(rows, *, session=None, level=None, exclude_flagged=False, sessions=None):
    """One reading per patient × observer: the rule statistics and reliability share.

    1. The latest row per key of the table's own rule
       (:func:`napari_pvm.core.store.latest_rows`: patient × observer ×
       level × session for the muscle table, per value for the spine table);
    2. one level (``level``, or the only one) and one session (``session``,
       default ``"read1"`` when present, else the only one), so a repeat
       reading never replaces the first; or, with ``sessions``, those
       sessions (intra-observer reliability);
    3. with ``exclude_flagged``, rows with quality flags are left out *after*
       the latest row was chosen (an older row never takes a flagged row's
       place).

    Parameters
    ----------
    rows : pandas.DataFrame
        Every row of a shared muscle or spine CSV.
    session, level : str, optional
    exclude_flagged : bool, optional
    sessions : sequence of str, optional
        Keep these sessions instead of choosing one.

    Returns
    -------
    chosen : pandas.DataFrame
        The rows used, IDs as text, ``session`` and ``level`` filled in.
    info : dict
        ``table``, ``session`` (or ``sessions``), ``level``, ``n_flagged``
        (rows left out for a quality flag, or None when not asked),
        ``flagged`` (their patient × observer pairs) and ``exclude_flagged``.

    Raises
    ------
    StatsInputError
        No ``patient_id`` or ``observer_id``, a row without them, an unknown
        session or level, or several with none chosen.
    """
    from ..schema import DEFAULT_SESSION
    from ..store import latest_rows

    if not isinstance(rows, pd.DataFrame):
        raise StatsInputError(f"rows must be a pandas DataFrame, got {type(rows).__name__}")
    missing = [c for c in ("patient_id", "observer_id") if c not in rows.columns]
    if missing:
        raise StatsInputError(f"the measurements have no {' or '.join(missing)} column; is this a napari-pvm CSV?")
    if rows.empty:
        raise StatsInputError("the measurement file has no rows")
    frame = rows.reset_index(drop=True).copy()
    for col in ("patient_id", "observer_id"):
        text = id_text(frame[col])
        blank = text.isna() | (text == "")
        if blank.any():
            raise StatsInputError(f"{int(blank.sum())} measurement row(s) have no {col}; fill it in")
        frame[col] = text
    kind = table_kind(frame)
    for col, default in (("session", DEFAULT_SESSION), ("level", "")):
        if col not in frame.columns:
            frame[col] = default
        text = id_text(frame[col])
        frame[col] = text.mask(text.isna() | (text == ""), default)
    frame = latest_rows(frame, table=kind).reset_index(drop=True)
    if kind == "muscle":
        level = _pick(frame["level"], level, "level", "--level")
        frame = frame[frame["level"] == level]
    else:
        level = None
    info = {"table": kind, "level": level}
    if sessions is None:
        session = _pick(frame["session"], session, "session", "--session", DEFAULT_SESSION)
        frame = frame[frame["session"] == session]
        info["session"] = session
    else:
        present = sorted(set(frame["session"]))
        absent = [s for s in sessions if s not in present]
        if absent:
            raise StatsInputError(
                f"no reading {', '.join(map(repr, absent))}; readings present: {', '.join(map(repr, present))}"
            )
        frame = frame[frame["session"].isin(list(sessions))]
        info["sessions"] = list(sessions)
    info.update(exclude_flagged=bool(exclude_flagged), n_flagged=None, flagged=[])
    if exclude_flagged and kind == "muscle":
        bad = flagged(frame)
        info["n_flagged"] = int(bad.sum())
        info["flagged"] = [f"{p}/{o}" for p, o in zip(frame.loc[bad, "patient_id"], frame.loc[bad, "observer_id"])]
        frame = frame[~bad]
    elif exclude_flagged:
        info["n_flagged"] = 0
    if frame.empty:
        raise StatsInputError("no measurement rows are left after choosing the session and level")
    return frame.reset_index(drop=True), info


def _numeric_measures(rows, measures):
    out = rows.copy()
    for c in measures:
        values, bad = to_numeric(out[c])
        if bad.any():
            raise StatsInputError(
                f"measurement column {c} has non-numeric values: {describe_bad(out[c], bad, out['patient_id'])}"
            )
        out[c] = values
    return out


def _per_patient(rows, measures, observer):
    """Per patient: the mean over observers, or one observer's values; and notes."""
    notes = []
    observers = sorted(set(rows["observer_id"]))
    if str(observer) == "mean":
        values = rows.groupby("patient_id", sort=False)[measures].mean()
        n_obs = rows.groupby("patient_id", sort=False)["observer_id"].nunique()
        single = int((n_obs < 2).sum())
        if len(observers) > 1 and single:
            notes.append(
                f"merge: {single} patient(s) were measured by one observer only; "
                "their value is that observer's, not a mean"
            )
        return values, notes
    if str(observer) not in observers:
        raise StatsInputError(
            f"no measurements by observer {observer!r}; the file has {', '.join(map(repr, observers))}"
        )
    chosen = rows[rows["observer_id"] == str(observer)]
    return chosen.groupby("patient_id", sort=False)[measures].first(), notes


def merge_measurements(table, measurements, *, observer="mean", level=None, session=None, exclude_flagged=False):
    """Add one value per patient of each measure column to the clinical table.

    Parameters
    ----------
    table : pandas.DataFrame
        The per-patient table, with ``patient_id``.
    measurements : pandas.DataFrame or str or Path, or a list of them
        Rows of a shared CSV (the muscle table of contract 3 or the spine
        table of contract 8), its path, or several (one muscle and one spine
        table, say), each read with :func:`read_measurements`.
    observer : str, optional
        ``"mean"`` (default): per patient, the mean over observers of each
        measure (of the observers who have a value); otherwise the ID of the
        one observer to use.
    level : str, optional
        Vertebral level of the muscle table when it has several.
    session : str, optional
        Reading to use (default ``"read1"`` when present, else the only one):
        a repeat reading never replaces the first.
    exclude_flagged : bool, optional
        Leave out muscle rows with quality flags (after the latest row per
        reading is chosen).

    Returns
    -------
    merged : pandas.DataFrame
        ``table`` with the measure columns and the derived measures
        (:func:`derived_measures`) added (left join on ``patient_id`` as text;
        patients without measurements get missing values).
    rows : list of (pandas.DataFrame, dict)
        Per measurement table, the rows used (all observers) and the
        :func:`select_rows` information, for reliability.
    notes : list of str
        Patients in one table but not the other, patients with one observer,
        rows left out for quality flags.

    Raises
    ------
    StatsInputError
        No ``patient_id`` or ``observer_id``, an unknown observer, session or
        level, several with none chosen, no measure column, or a measure
        column that is also in the clinical table (or in two measurement
        tables).
    """
    if "patient_id" not in table.columns:
        raise StatsInputError("merging needs a patient_id column in the clinical table")
    sources = measurements if isinstance(measurements, (list, tuple)) else [measurements]
    left = table.copy()
    left["patient_id"] = id_text(left["patient_id"])
    used, notes = [], []
    for source in sources:
        rows = source if isinstance(source, pd.DataFrame) else read_measurements(source)
        name = "the measurements" if isinstance(source, pd.DataFrame) else Path(source).name
        chosen, info = select_rows(rows, session=session, level=level, exclude_flagged=exclude_flagged)
        measures = measure_columns(chosen)
        if not measures:
            raise StatsInputError(f"{name} has no measure columns (e.g. ESMF_B_fi_pct or vbq)")
        chosen = _numeric_measures(chosen, measures)
        if info["table"] == "muscle":
            derived = derived_measures(chosen)
            chosen = pd.concat([chosen, derived], axis=1)
            measures += list(derived.columns)
        measures = [c for c in measures if chosen[c].notna().any()]
        if not measures:
            raise StatsInputError(f"every measure column of {name} is empty")
        clash = [c for c in measures if c in left.columns]
        if clash:
            raise StatsInputError(
                f"the clinical table (or another measurement file) already has the column(s) "
                f"{', '.join(clash)}; rename them"
            )
        if info.get("n_flagged"):
            notes.append(
                f"{name}: {info['n_flagged']} row(s) with quality flags left out "
                f"({id_list(info['flagged'])}); no older row replaces them"
            )
        per_patient, more = _per_patient(chosen, measures, observer)
        notes += [f"{name}: {n}" for n in more]
        known = set(left["patient_id"].dropna())
        only_table = [p for p in left["patient_id"].dropna() if p not in per_patient.index]
        only_meas = [p for p in per_patient.index if p not in known]
        zeros = _leading_zero_pairs(only_table, only_meas)
        if zeros:
            raise StatsInputError(
                f"{len(zeros)} patient_id(s) of the clinical table differ from those of {name} only by leading "
                f"zeros (e.g. {zeros[0][0]} vs {zeros[0][1]}): a spreadsheet dropped them (007 became 7); "
                "format the patient_id column as text and enter the IDs again, or export the table anew"
            )
        if known and len(only_table) == len(known):
            raise StatsInputError(
                f"no patient_id of {name} (e.g. {only_meas[0]}) is in the clinical table (e.g. {only_table[0]}); "
                "write the IDs the same way in both (a spreadsheet may have dropped leading zeros: 007 became 7)"
            )
        if only_table:
            notes.append(
                f"{name}: {len(only_table)} patient(s) of the clinical table have no measurements "
                f"({id_list(only_table)}); their measure values are missing"
            )
        if only_meas:
            notes.append(
                f"{name}: {len(only_meas)} measured patient(s) are not in the clinical table "
                f"({id_list(only_meas)}); they are left out"
            )
        left = left.merge(per_patient.reset_index(), on="patient_id", how="left")
        used.append((chosen, info))
    return left, used, notes


def _leading_zero_pairs(table_ids, measured_ids):
    """(clinical ID, measured ID) pairs that differ only by leading zeros.

    Examples
    --------
    >>> _leading_zero_pairs(["7", "12"], ["007", "013"])
    [('7', '007')]
    """
    measured = {str(m).lstrip("0"): m for m in measured_ids}
    return [(t, measured[str(t).lstrip("0")]) for t in table_ids if str(t).lstrip("0") in measured]


# --------------------------------------------------------------------------
# Derived muscle measures (issue: L/R asymmetry, area relative to L4's body)
# --------------------------------------------------------------------------

#: Muscle groups whose derived measures are computed.
DERIVED_GROUPS = ("PS", "ES", "MF", "ESMF")


def derived_measures(rows):
    """Asymmetry and vertebral-body-relative measures from the stored columns.

    For each group G of PS, ES, MF and ESMF, from one row (one reading):

    - ``G_asym_area_pct`` = (L − R) / ((L + R) / 2) × 100, of the total areas
      ``G_L_total_area_cm2`` and ``G_R_total_area_cm2`` (%; positive: the
      left is larger);
    - ``G_asym_fi_pts`` = FI% left − FI% right (percentage points);
    - ``G_B_rel_area`` = ``G_B_total_area_cm2`` / ``VB_total_area_cm2`` (no
      unit; only when the L4 vertebral body was outlined).

    A value whose inputs are missing (an outline not drawn) is NaN.

    Parameters
    ----------
    rows : pandas.DataFrame
        Muscle-table rows with numeric measure columns.

    Returns
    -------
    pandas.DataFrame
        The derived columns, aligned on ``rows``.

    Examples
    --------
    >>> import pandas as pd
    >>> row = pd.DataFrame({"PS_L_total_area_cm2": [11.0], "PS_R_total_area_cm2": [9.0],
    ...                     "PS_L_fi_pct": [8.0], "PS_R_fi_pct": [5.5],
    ...                     "PS_B_total_area_cm2": [20.0], "VB_total_area_cm2": [16.0]})
    >>> derived_measures(row).iloc[0].to_dict()
    {'PS_asym_area_pct': 20.0, 'PS_asym_fi_pts': 2.5, 'PS_B_rel_area': 1.25}
    """
    out = {}
    number = lambda c: to_numeric(rows[c])[0] if c in rows.columns else None  # noqa: E731
    vb = number("VB_total_area_cm2")
    for g in DERIVED_GROUPS:
        left, right = number(f"{g}_L_total_area_cm2"), number(f"{g}_R_total_area_cm2")
        if left is not None and right is not None:
            mean = (left + right) / 2
            out[f"{g}_asym_area_pct"] = ((left - right) / mean.where(mean > 0)) * 100
        fl, fr = number(f"{g}_L_fi_pct"), number(f"{g}_R_fi_pct")
        if fl is not None and fr is not None:
            out[f"{g}_asym_fi_pts"] = fl - fr
        both = number(f"{g}_B_total_area_cm2")
        if both is not None and vb is not None:
            out[f"{g}_B_rel_area"] = both / vb.where(vb > 0)
    return pd.DataFrame(out, index=rows.index, dtype=float)
