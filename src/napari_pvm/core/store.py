"""The shared measurement CSVs: locked, durable and append-only (contracts 3, 8).

Two tables live in shared CSV files of the same kind: the muscle table
(``table="muscle"``, contract 3, :data:`~napari_pvm.core.schema.COLUMNS`)
and the spine table (``table="spine"``, contract 8,
:data:`~napari_pvm.core.schema.SPINE_COLUMNS`), each in its own file.
Observers add rows with :func:`append_rows` and read them with
:func:`read_rows`; rows are never rewritten, a re-measurement is a new row
with a later ``measured_at``, and :func:`latest_rows` is the one rule that
picks the reading that counts. One append, all under the lock:

1. take the OS lock ``<csv>.lock`` (filelock: the kernel or the file server
   frees it when a writer dies), then create the writer record
   ``<csv>.writer`` (exclusive create: pid, host, time and the bytes being
   written), which still keeps writers apart where OS locks stay local;
2. check the header, then move what a dead writer left (the bytes of its
   unfinished call, or a torn final line) to ``<csv>.quarantine``;
3. write all rows at once, fsync, remove the writer record.

A muscle table written by an older release (schema version 1) is read as
it is, but appending to it is refused until ``napari-pvm migrate-csv``
(:mod:`napari_pvm.core.migrate`) has brought it forward.

docs/shared-csv.md says where to keep the file and what is guaranteed.
"""

import csv
import dataclasses
import io
import json
import logging
import math
import os
import re
import socket
import statistics
import time
import uuid
import warnings
from collections.abc import Mapping
from contextlib import contextmanager, suppress
from datetime import datetime, timezone

import filelock
import numpy as np
import pandas as pd

from . import schema
from .errors import StoreError
from .schema import (
    GROUPS,
    MEASURES,
    OUTLINE_ORIGINS,
    ROI_KEYS,
    SIDES,
    SPINE_LEVELS,
    measure_column,
)

__all__ = [
    "AREA_TOLERANCE_CM2",
    "FI_TOLERANCE_PCT",
    "LATEST_KEYS",
    "MEAN_FF_TOLERANCE_PCT",
    "STALE_WRITER_AGE_S",
    "StoreWarning",
    "VBQ_RELATIVE_TOLERANCE",
    "append_rows",
    "check_appendable",
    "expected_header",
    "file_schema_version",
    "latest_rows",
    "locked",
    "read_rows",
    "spreadsheet_safe",
    "validate_row",
]

logger = logging.getLogger(__name__)

#: Largest accepted ``|muscle + fat - total|`` of one group and side, in cm².
AREA_TOLERANCE_CM2 = 0.01
#: Largest accepted ``|fi_pct - 100 * fat / total|``, in percentage points.
FI_TOLERANCE_PCT = 0.01
#: Largest accepted difference, in percentage points, between a pooled mean
#: fat fraction (both sides, or ES+MF) and the area-weighted mean of its parts.
MEAN_FF_TOLERANCE_PCT = 0.01
#: Largest accepted relative difference between ``vbq`` and the median of the
#: included levels' signals divided by the CSF signal.
VBQ_RELATIVE_TOLERANCE = 1e-6
#: One reading of the muscle table (kept for callers of version 1);
#: ``schema.LATEST_KEYS`` has the keys of every table.
LATEST_KEYS = schema.LATEST_KEYS["muscle"]
#: Seconds after which a writer record whose owner cannot be probed is stale.
STALE_WRITER_AGE_S = 120.0

# a spreadsheet runs cells starting so; "'" too, so that quoting inverts
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_QC_FLAG = re.compile(r"[a-z][a-z0-9_]{0,31}")
_BINARY = getattr(os, "O_BINARY", 0)  # stops Windows translating "\n"
_SLACK = 1e-9  # float noise on top of the stated tolerances
_UNREADABLE_S = 2.0  # a live writer fills its new record in microseconds
_CHUNK = 1 << 16


class StoreWarning(UserWarning):
    """The shared CSV needed a repair or has a flaw; no row was dropped."""


@dataclasses.dataclass(frozen=True)
class _Table:
    """What the store needs to know about one kind of shared table."""

    name: str
    what: str  # for messages
    version: str  # the version this release writes
    columns_by_version: dict  # every version a reader understands
    integer: tuple
    numeric: tuple
    optional: tuple  # identity columns that may be empty
    check: object  # the table's own rules: check(row) on the parsed row

    @property
    def columns(self):
        return self.columns_by_version[self.version]

    def header(self, version=None):
        # plain names need no quoting
        return (",".join(self.columns_by_version[version or self.version]) + "\n").encode()

    @property
    def text(self):
        return tuple(c for c in self.columns if c not in self.numeric)


def _table(name):
    try:
        return _TABLES[name]
    except (KeyError, TypeError):
        raise StoreError(f"unknown table {name!r}; use one of {', '.join(schema.TABLES)}") from None


def expected_header(*, table="muscle"):
    """Return the header line this release writes, without its newline.

    Examples
    --------
    >>> expected_header().split(",")[:3]
    ['schema_version', 'row_id', 'patient_id']
    >>> expected_header(table="spine").split(",")[-1]
    'local_kyphosis_deg'
    """
    return _table(table).header().decode().rstrip("\n")


# --- validation ----------------------------------------------------------


def _is_empty(value):
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, str):
        return value == ""
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def _text(col, value):
    if _is_empty(value):
        return ""
    if not isinstance(value, str):
        raise StoreError(
            f"{col} must be text, got {type(value).__name__} {value!r}; pass a str (so '007' keeps its zeros)"
        )
    if found := _CONTROL.search(value):
        raise StoreError(f"{col} {value!r} contains the control character {found.group()!r}; remove it")
    if value != value.strip():
        raise StoreError(
            f"{col} {value!r} starts or ends with white space; remove it so that both observers' rows match"
        )
    return value


def _number(col, value, integer):
    if _is_empty(value):
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise StoreError(f"{col} must be a number, got {type(value).__name__} {value!r}")
    if col in integer:
        try:
            whole = float(value).is_integer()
        except OverflowError:  # an int beyond the float range
            whole = True
        if not whole:
            raise StoreError(f"{col} must be a whole number, got {value!r}")
        if not -(2**63) <= int(value) < 2**63:  # readers hold these columns as 64-bit integers
            raise StoreError(f"{col} is {value!r}; it must lie within ±9.2e18 (a 64-bit integer)")
        return int(value)
    try:
        number = float(value)
    except OverflowError:  # an int beyond the float range
        number = math.inf
    if not math.isfinite(number):
        raise StoreError(f"{col} is {value!r}; it must be a finite number")
    return number


def _timestamp(value):
    if _is_empty(value):
        return datetime.now(timezone.utc).isoformat(timespec="microseconds")
    if isinstance(value, str):
        with suppress(ValueError):
            value = datetime.fromisoformat(value)
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise StoreError(
            f"measured_at {value!r} is not an ISO 8601 time with a time zone, such as 2026-11-24T07:30:00.123456+00:00"
        )
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _group_rois(group, side):
    muscles = ("ES", "MF") if group == "ESMF" else (group,)
    return [f"{m}_{s}" for m in muscles for s in (("L", "R") if side == "B" else (side,))]


def _check_measures(row, present):
    for group in GROUPS:
        for side in SIDES:
            cols = [measure_column(group, side, m) for m in MEASURES]
            needed = _group_rois(group, side)
            if lacking := [r for r in needed if r not in present]:
                if filled := [c for c in cols if row[c] is not None]:
                    raise StoreError(
                        f"{filled[0]} must be empty because {lacking[0]} is "
                        "not in rois_present; add the outline to "
                        f"rois_present or empty the {group}_{side} columns"
                    )
                continue
            if empty := [c for c in cols if row[c] is None]:
                verb = "are" if len(needed) > 1 else "is"
                raise StoreError(
                    f"{empty[0]} is empty but {' and '.join(needed)} {verb} outlined (rois_present); fill it in"
                )
            total, muscle, fat, fi = (row[c] for c in cols)
            for col, area in zip(cols, (total, muscle, fat)):
                if area < 0:
                    raise StoreError(f"{col} is {area!r}; areas cannot be negative")
            if not 0 <= fi <= 100:
                raise StoreError(f"{cols[3]} is {fi!r}; FI% must lie between 0 and 100")
            if abs(muscle + fat - total) > AREA_TOLERANCE_CM2 + _SLACK:
                raise StoreError(
                    f"{cols[1]} + {cols[2]} = {muscle + fat:.6g} but "
                    f"{cols[0]} = {total:.6g}; lean plus fat must equal the "
                    f"total within {AREA_TOLERANCE_CM2} cm²"
                )
            if total > 0 and (abs(fi - 100 * fat / total) > FI_TOLERANCE_PCT + _SLACK):
                raise StoreError(
                    f"{cols[3]} is {fi:.6g} but 100 × {cols[2]} / {cols[0]} "
                    f"= {100 * fat / total:.6g}; they must agree within "
                    f"{FI_TOLERANCE_PCT} percentage points"
                )


def _check_mean_ff(row, present):
    """Version 2: the Dixon mean fat fraction per group and side."""
    filled = [c for c in schema.MEAN_FF_COLUMNS if row[c] is not None]
    for col in filled:
        if not 0 <= row[col] <= 100:
            raise StoreError(f"{col} is {row[col]!r}; a mean fat fraction lies between 0 and 100 %")
    if not filled:
        return
    for group in GROUPS:
        for side in SIDES:
            col = measure_column(group, side, "mean_ff_pct")
            needed = _group_rois(group, side)
            if lacking := [r for r in needed if r not in present]:
                if row[col] is not None:
                    raise StoreError(f"{col} must be empty because {lacking[0]} is not in rois_present")
                continue
            if row[col] is None:
                raise StoreError(
                    f"{col} is empty but {filled[0]} is filled; a Dixon "
                    "measurement fills the mean fat fraction of every "
                    "outlined group and side"
                )
            parts = (
                [(g, s) for g in ("ES", "MF") for s in (("L", "R") if side == "B" else (side,))]
                if group == "ESMF"
                else [(group, "L"), (group, "R")]
                if side == "B"
                else []
            )
            if not parts:
                continue
            weights = [row[measure_column(g, s, "total_area_cm2")] for g, s in parts]
            if sum(weights) <= 0:
                continue
            pooled = sum(w * row[measure_column(g, s, "mean_ff_pct")] for w, (g, s) in zip(weights, parts)) / sum(
                weights
            )
            if abs(row[col] - pooled) > MEAN_FF_TOLERANCE_PCT + _SLACK:
                raise StoreError(
                    f"{col} is {row[col]:.6g} but the area-weighted mean of "
                    f"its parts is {pooled:.6g}; the pooled mean fat fraction "
                    f"must agree within {MEAN_FF_TOLERANCE_PCT} percentage "
                    "points"
                )


def _check_muscle(out):
    """The rules of the muscle table (contract 3), version 2."""
    for col in schema.ID_COLUMNS:
        if col not in _MUSCLE.optional and out[col] in ("", None):
            raise StoreError(f"{col} is missing or empty")
    settings = schema.METHOD_SETTING_COLUMNS
    given = [c for c in settings if out[c] not in ("", None)]
    if given and len(given) < len(settings):
        lacking = next(c for c in settings if c not in given)
        raise StoreError(
            f"{lacking} is empty but {given[0]} is filled; a method either "
            f"records all of {', '.join(settings)} (the forest) or none "
            "(methods that do not use them)"
        )
    for col, low in (("slice_index", 0), ("n_trees", 1), ("seed", 0)):
        if out[col] is not None and out[col] < low:
            raise StoreError(f"{col} is {out[col]}; it must be {low} or more")
    for col in ("row_spacing_mm", "col_spacing_mm"):
        if out[col] <= 0:
            raise StoreError(f"{col} is {out[col]!r}; it must be above 0")
    for col in ("image_sha256", "annotation_sha256"):
        if out[col] and not _HEX64.fullmatch(out[col]):
            raise StoreError(f"{col} must be a SHA-256 in 64 lowercase hex digits, got {out[col]!r}")
    rois = out["rois_present"].split(";")
    if len(set(rois)) < len(rois) or not set(rois) <= set(ROI_KEYS):
        raise StoreError(
            f"rois_present is {out['rois_present']!r}; list each"
            " drawn outline once, separated by ';', from "
            f"{';'.join(ROI_KEYS)}"
        )
    out["rois_present"] = ";".join(k for k in ROI_KEYS if k in rois)
    _check_measures(out, set(rois))
    if out["outline_origin"]:
        origins = dict(pair.partition(":")[::2] for pair in out["outline_origin"].split(";"))
        pairs = out["outline_origin"].split(";")
        if len(origins) < len(pairs) or set(origins) != set(rois) or not set(origins.values()) <= set(OUTLINE_ORIGINS):
            example = ";".join(f"{k}:drawn" for k in ROI_KEYS if k in rois)
            raise StoreError(
                f"outline_origin is {out['outline_origin']!r}; give each "
                "outline of rois_present once as KEY:origin, origin one of "
                f"{', '.join(OUTLINE_ORIGINS)}, joined by ';' (e.g. "
                f"{example!r}), or leave it empty"
            )
        out["outline_origin"] = ";".join(f"{k}:{origins[k]}" for k in ROI_KEYS if k in origins)
    contrast = out["fat_muscle_contrast"]
    if contrast is not None and contrast <= 0:
        raise StoreError(f"fat_muscle_contrast is {contrast!r}; a ratio of two signal medians must be above 0")
    if out["qc_flags"]:
        flags = out["qc_flags"].split(";")
        if bad := [f for f in flags if not _QC_FLAG.fullmatch(f)]:
            raise StoreError(f"qc_flags has {bad[0]!r}; flags are short lower-case codes (a-z, 0-9, _) joined by ';'")
        if len(set(flags)) < len(flags):
            raise StoreError(f"qc_flags {out['qc_flags']!r} names a flag twice")
    _check_mean_ff(out, set(rois))
    vb = out["VB_total_area_cm2"]
    if vb is not None and vb <= 0:
        raise StoreError(
            f"VB_total_area_cm2 is {vb!r}; an outlined vertebral"
            " body has an area above 0 (leave it empty without"
            " the outline)"
        )


def _check_spine(out):
    """The rules of the spine table (contract 8)."""
    for col in schema.SPINE_ID_COLUMNS:
        if out[col] in ("", None):
            raise StoreError(f"{col} is missing or empty")
    if out["slice_index"] < 0:
        raise StoreError(f"slice_index is {out['slice_index']}; it must be 0 or more")
    for col in ("row_spacing_mm", "col_spacing_mm"):
        if out[col] <= 0:
            raise StoreError(f"{col} is {out[col]!r}; it must be above 0")
    if not _HEX64.fullmatch(out["image_sha256"]):
        raise StoreError(f"image_sha256 must be a SHA-256 in 64 lowercase hex digits, got {out['image_sha256']!r}")
    vbq, angle = out["vbq"], out["local_kyphosis_deg"]
    if vbq is None and angle is None:
        raise StoreError("the row has neither vbq nor local_kyphosis_deg; a spine row carries at least one measure")
    if angle is not None and not -90 < angle <= 90:
        raise StoreError(
            f"local_kyphosis_deg is {angle!r}; the acute angle between two lines lies in (-90, 90] degrees"
        )
    levels = out["vbq_levels"].split(";") if out["vbq_levels"] else []
    if len(set(levels)) < len(levels) or not set(levels) <= set(SPINE_LEVELS):
        raise StoreError(
            f"vbq_levels is {out['vbq_levels']!r}; list each "
            "included level once, separated by ';', from "
            f"{';'.join(SPINE_LEVELS)}"
        )
    out["vbq_levels"] = ";".join(k for k in SPINE_LEVELS if k in levels)
    signals = {k: out[f"vbq_si_{k}"] for k in SPINE_LEVELS}
    csf = out["vbq_si_csf"]
    for level, value in signals.items():
        if level in levels and value is None:
            raise StoreError(f"vbq_si_{level} is empty but {level} is in vbq_levels; fill it in")
        if level not in levels and value is not None:
            raise StoreError(
                f"vbq_si_{level} must be empty because {level} is not in vbq_levels (excluded or not drawn)"
            )
    if csf is not None and csf <= 0:
        raise StoreError(f"vbq_si_csf is {csf!r}; the CSF signal the score is divided by must be above 0")
    if vbq is None:  # signals without a score (e.g. no CSF ROI) are kept
        return
    if vbq <= 0:
        raise StoreError(f"vbq is {vbq!r}; a ratio of signals must be above 0")
    if not levels:
        raise StoreError("vbq is filled but vbq_levels is empty; list the levels it was computed from")
    if csf is None:
        raise StoreError("vbq is filled but vbq_si_csf is empty; fill in the CSF signal the score is divided by")
    expected = statistics.median(signals[k] for k in levels) / csf
    if not math.isclose(vbq, expected, rel_tol=VBQ_RELATIVE_TOLERANCE):
        raise StoreError(
            f"vbq is {vbq:.9g} but the median of the vbq_si of "
            f"{out['vbq_levels']} divided by vbq_si_csf is {expected:.9g}; "
            f"they must agree within a relative {VBQ_RELATIVE_TOLERANCE:g}"
        )


_MUSCLE = _Table(
    name="muscle",
    what="muscle measurement table",
    version=schema.SCHEMA_VERSION,
    columns_by_version=schema.COLUMNS_BY_VERSION,
    integer=schema.INTEGER_COLUMNS,
    numeric=schema.NUMERIC_COLUMNS,
    optional=("annotation_sha256",) + schema.METHOD_SETTING_COLUMNS,
    check=_check_muscle,
)
_SPINE = _Table(
    name="spine",
    what="spine measurement table",
    version=schema.SPINE_SCHEMA_VERSION,
    columns_by_version={schema.SPINE_SCHEMA_VERSION: schema.SPINE_COLUMNS},
    integer=schema.SPINE_INTEGER_COLUMNS,
    numeric=schema.SPINE_NUMERIC_COLUMNS,
    optional=(),
    check=_check_spine,
)
_TABLES = {"muscle": _MUSCLE, "spine": _SPINE}


def validate_row(row, *, table="muscle"):
    """Check one row and return it as :func:`append_rows` would write it.

    Parameters
    ----------
    row : Mapping
        Column name to value (``schema.COLUMNS`` for the muscle table,
        ``schema.SPINE_COLUMNS`` for the spine table). ``row_id``,
        ``measured_at`` and ``schema_version`` are filled in when missing.
        Muscle table: ``annotation_sha256``, ``outline_origin`` and the
        version-2 quality, Dixon and vertebral-body columns may be empty;
        the forest settings (``features_preset``, ``n_trees``, ``seed``,
        ``class_balance``) are all filled or all empty; measure columns are
        empty (None, NaN, "" or left out) exactly when an outline they need
        is not in ``rois_present``.
    table : {"muscle", "spine"}
        Which table the row belongs to.

    Returns
    -------
    dict
        Every column in schema order: text as str, integers as int, numbers
        as float or None, ``measured_at`` in UTC with microseconds, and
        ``rois_present``, ``outline_origin`` and ``vbq_levels`` in contract
        order.

    Raises
    ------
    StoreError
        Naming the column and the rule it breaks (docs/shared-csv.md lists
        the rules).

    Examples
    --------
    >>> validate_row({"patient_id": "007"})
    Traceback (most recent call last):
    ...
    napari_pvm.core.errors.StoreError: observer_id is missing or empty
    """
    spec = _table(table)
    if not isinstance(row, Mapping):
        raise StoreError(f"a row must be a dict of column name to value, not a {type(row).__name__}")
    if unknown := [repr(k) for k in row if k not in spec.columns]:
        names = "napari_pvm.core.schema.COLUMNS" if spec is _MUSCLE else "napari_pvm.core.schema.SPINE_COLUMNS"
        raise StoreError(
            f"unknown column {', '.join(unknown)}; rows of the "
            f"{spec.what} hold only {names} (schema version "
            f"{spec.version}): check the spelling"
        )
    out = {c: _text(c, row.get(c)) for c in spec.text if c != "measured_at"}
    out.update((c, _number(c, row.get(c), spec.integer)) for c in spec.numeric)
    out["measured_at"] = _timestamp(row.get("measured_at"))
    out["row_id"] = out["row_id"] or uuid.uuid4().hex
    if out["schema_version"] not in ("", spec.version):
        raise StoreError(
            f"schema_version is {out['schema_version']!r}, but "
            f"this napari-pvm writes {spec.version!r} to the "
            f"{spec.what}; leave it out"
        )
    out["schema_version"] = spec.version
    spec.check(out)
    return {c: out[c] for c in spec.columns}


# --- latest --------------------------------------------------------------


def _instant(value):
    """Seconds since the epoch of an ISO 8601 time with a zone, else -inf."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return -math.inf
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return value.timestamp()
    return -math.inf  # missing, unparseable or without a time zone: oldest


def _key_part(value):
    return "" if _is_empty(value) else value


def latest_rows(frame, *, table="muscle"):
    """The reading that counts: the latest row of each patient, observer, ….

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of one shared table, as :func:`read_rows` returns them (or any
        frame with the key columns; ``measured_at`` as ISO 8601 text or
        datetimes).
    table : {"muscle", "spine"}
        Muscle table (contract 3): the row with the latest ``measured_at``
        per patient × observer × level × session (``schema.LATEST_KEYS``).
        Spine table (contract 8): per patient × observer × session, each
        measure taken from the latest row in which it is not empty (see
        Returns).

    Returns
    -------
    pandas.DataFrame
        A new frame, index 0..n-1, one row per key, the chosen rows in the
        order of the input (file order). Ranking: a later ``measured_at`` wins (times
        compare as instants, so ``+02:00`` counts); on a tie the row later in
        the frame (later in the file) wins; a missing or unparseable time, or
        one without a time zone, ranks older than any valid time. Empty key
        cells (NaN, None, "") form a key of their own.

        Muscle table: the chosen rows whole, with their columns.

        Spine table: the columns of the input. The identity columns
        (``row_id``, ``measured_at``, ``slice_index``, spacings,
        ``image_sha256``, …) are those of the latest row of the key. Each
        measure of ``schema.SPINE_VALUE_GROUPS`` is taken whole from the
        latest row in which its first column is not empty: ``vbq`` together
        with ``vbq_levels``, ``vbq_si_L1`` … ``vbq_si_L4`` and ``vbq_si_csf``
        (so excluded levels stay empty as that reading left them), and
        ``local_kyphosis_deg`` on its own; so a radiograph row with only the
        angle does not hide the MRI row's VBQ. Two columns per measure say
        where it came from: ``vbq_row_id``, ``vbq_measured_at``,
        ``local_kyphosis_deg_row_id`` and ``local_kyphosis_deg_measured_at``
        (empty text when no row of the key has the measure).

    Examples
    --------
    >>> rows = pd.DataFrame({"patient_id": ["1", "1"], "observer_id": ["A", "A"],
    ...     "level": ["L4", "L4"], "session": ["read1", "read1"],
    ...     "measured_at": ["2026-01-02T10:00:00+00:00", "2026-01-01T10:00:00+00:00"],
    ...     "row_id": ["new", "old"]})
    >>> list(latest_rows(rows)["row_id"])
    ['new']
    """
    spec = _table(table)
    keys = list(schema.LATEST_KEYS[spec.name])
    if missing := [c for c in keys if c not in frame.columns]:
        raise StoreError(
            f"the rows have no {missing[0]} column; "
            f"latest_rows(table={spec.name!r}) needs "
            f"{', '.join(keys)} and measured_at"
        )
    when = (
        frame["measured_at"].map(_instant).to_numpy(float)
        if "measured_at" in frame.columns
        else np.full(len(frame), -math.inf)
    )
    key_of = [tuple(_key_part(v) for v in values) for values in zip(*(frame[c] for c in keys))]
    # positions ranked oldest first; a stable sort keeps file order on ties
    order = sorted(range(len(frame)), key=lambda i: when[i])
    best = {}
    for i in order:
        best[key_of[i]] = i  # later in the ranking replaces earlier
    chosen = sorted(best, key=best.__getitem__)  # the chosen rows in file order
    if spec is _MUSCLE:
        return frame.iloc[[best[k] for k in chosen]].reset_index(drop=True)
    out = frame.iloc[[best[k] for k in chosen]].reset_index(drop=True).copy()
    for name, cols in schema.SPINE_VALUE_GROUPS.items():
        lead = cols[0]
        if lead not in frame.columns:
            continue
        have = {}
        for i in order:
            if not _is_empty(frame[lead].iloc[i]):
                have[key_of[i]] = i
        source = [have.get(k) for k in chosen]
        for col in cols:
            if col in frame.columns:
                values = frame[col].to_numpy(dtype=object)
                text = frame[col].dtype == object
                blank = "" if text else None
                out[col] = pd.Series([values[i] if i is not None else blank for i in source], dtype=frame[col].dtype)
        for extra in ("row_id", "measured_at"):
            if extra in frame.columns:
                values = frame[extra].to_numpy(dtype=object)
                out[f"{name}_{extra}"] = pd.Series([values[i] if i is not None else "" for i in source], dtype=object)
    return out


# --- reading -------------------------------------------------------------


def _warn(message, stacklevel=3):
    logger.warning(message)
    warnings.warn(StoreWarning(message), stacklevel=stacklevel)


def _short(text, limit=40):
    """``text`` cut to ``limit`` characters for a one-line message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _header_error(line, path, spec):
    text = line.decode("utf-8", "replace").rstrip("\n")
    names = text.lstrip("\ufeff").rstrip("\r").split(",")
    for other in _TABLES.values():
        if other is not spec and names in (list(c) for c in other.columns_by_version.values()):
            return StoreError(
                f"{path} is a napari-pvm {other.what}, not a {spec.what}; "
                f"pick the right file (table={other.name!r}). The file was "
                "left untouched."
            )
    for sep, name in ((";", "semicolons"), ("\t", "tabs")):
        if len(names) == 1 and sep in text:
            return StoreError(
                f"{path} is not a comma-separated napari-pvm {spec.what} (schema version {spec.version}): "
                f"it uses {name}, as a spreadsheet's export does; use the original file, or export again "
                "with commas as separators. The file was left untouched."
            )
    got, want = [_short(n) for n in names], list(spec.columns)
    i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    what = (
        f"column {i + 1} is {got[i] if i < len(got) else 'missing'!r} "
        f"where {want[i] if i < len(want) else 'nothing'!r} is expected"
        if got != want
        else "the names match but it is not plain UTF-8"
    )
    how = (
        "it looks re-saved by a spreadsheet, so restore it from a backup"
        if text[:1] == "\ufeff" or text[-1:] == "\r" or ";" in text
        else "write to a new file, or convert this one"
    )
    return StoreError(
        f"{path} does not have the header of the napari-pvm "
        f"{spec.what}, schema version {spec.version}: {what}. "
        f"The file was left untouched; {how}."
    )


def _old_version_error(path, spec, version):
    return StoreError(
        f"{path} is a {spec.what} of schema version {version}, and this "
        f"napari-pvm writes version {spec.version}; it never rewrites a "
        f"shared file on its own. Bring the file forward with "
        f"`napari-pvm migrate-csv {path}` (atomic, keeps a backup; old rows "
        "keep their values), then append again. Nothing was written."
    )


def _header_version(line, path, spec):
    """The schema version whose header is ``line`` (with its newline)."""
    for version in spec.columns_by_version:
        if line == spec.header(version):
            return version
    raise _header_error(line, path, spec)


def file_schema_version(csv_path, *, table="muscle"):
    """The schema version of a shared table's file, from its header.

    Raises
    ------
    StoreError
        The file is missing, empty, or its first line is not a header of
        ``table`` that this release knows.

    Examples
    --------
    >>> file_schema_version("shared/measurements.csv")  # doctest: +SKIP
    '1'
    """
    spec = _table(table)
    path = os.fspath(csv_path)
    head = _read_csv_bytes(path, len(spec.header()) + 1024, missing_hint="check the path")
    end = head.find(b"\n") + 1
    return _header_version(head[:end] or head, path, spec)


def _read_csv_bytes(path, size=-1, *, missing_hint):
    """The first ``size`` bytes of the CSV file ``path`` (all with -1); a
    StoreError when it is missing (with ``missing_hint``), a folder,
    unreadable or empty."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(size)
    except FileNotFoundError:
        raise StoreError(f"{path} does not exist; {missing_hint}") from None
    except IsADirectoryError:
        raise StoreError(f"{path} is a folder, not a CSV file") from None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from None
    if not data:
        raise StoreError(f"{path} is empty (0 bytes), so it has no header; pick the right file, or delete this one")
    return data


def _parse(body, path, ncols):
    """Return the records of ``body`` (whole lines after the header)."""
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        line = 2 + body.count(b"\n", 0, exc.start)
        raise StoreError(f"{path}, line {line}: not UTF-8 text; restore the file from a backup") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records, line = [], 2
    try:
        for record in reader:
            if len(record) != ncols:
                raise StoreError(
                    f"{path}, line {line}: {len(record)} fields where the "
                    f"header has {ncols}; the line was changed "
                    "outside napari-pvm, so restore the file from a backup "
                    f"or move the line by hand to {path}.quarantine"
                )
            records.append((line, record))
            line = 2 + reader.line_num
    except csv.Error as exc:
        raise StoreError(f"{path}, line {line}: {exc}; restore the file from a backup") from None
    return records


def _restore(cell):
    return cell[1:] if cell.startswith("'") else cell


def _column(col, cells, lines, path, spec):
    if col not in spec.numeric:
        return pd.Series([_restore(c) for c in cells], dtype=object)
    parse = int if col in spec.integer else float
    values = []
    for cell, line in zip(cells, lines):
        try:
            values.append(None if cell == "" else parse(cell))
        except ValueError:
            raise StoreError(f"{path}, line {line}: {col} is {cell!r}, not a number; fix the line") from None
    if parse is int:
        return pd.Series(pd.array(values, dtype="Int64"))
    return pd.Series(np.array(values, dtype=float))  # float(): exact


def read_rows(csv_path, latest=False, *, table="muscle"):
    """Read a shared table into a DataFrame.

    Readers take no lock. Rows of an append still in progress, or of one
    whose writer died, are left out (the writer record gives their offset),
    and a torn final line is skipped with a :class:`StoreWarning`.

    Parameters
    ----------
    csv_path : str or os.PathLike
        The shared file.
    latest : bool, default False
        Keep only the reading that counts (:func:`latest_rows`).
    table : {"muscle", "spine"}
        Which table the file holds. The muscle table is read in schema
        version 1 or 2.

    Returns
    -------
    pandas.DataFrame
        The current columns of the table (``schema.COLUMNS`` or
        ``schema.SPINE_COLUMNS``), whatever version the file has: columns a
        version-1 file lacks are empty, and ``schema_version`` says what
        each row was written with. Text is str (object dtype; "007" stays
        "007", an empty optional cell is "") with spreadsheet quoting
        removed; integer columns are Int64; other numbers are float, NaN
        where empty. A header-only file gives an empty frame.

    Raises
    ------
    StoreError
        The file is missing or unreadable, empty (0 bytes), has another
        header, or has a line that does not parse (its number is given).

    Examples
    --------
    >>> read_rows("shared/measurements.csv", latest=True)  # doctest: +SKIP
    """
    spec = _table(table)
    path = os.fspath(csv_path)
    data = _read_csv_bytes(path, missing_hint="check the path and that the network share is connected")
    end = data.find(b"\n") + 1
    if not end and any(spec.header(v).startswith(data) for v in spec.columns_by_version):
        _warn(f"{path}: its header line is torn (a writer died creating it)")
        data, end = spec.header(), len(spec.header())
    version = _header_version(data[:end] or data, path, spec)
    columns = spec.columns_by_version[version]
    record = _read_record(path + ".writer") or {}
    start, stop = record.get("start"), record.get("end")
    if isinstance(start, int) and isinstance(stop, int) and start < len(data):
        if not _abandoned(record):  # in progress: not acknowledged yet
            data = data[: max(start, end)]
        elif len(data) < stop:  # the rule the next append's repair follows
            _warn(
                f"{path}: ignored the interrupted append of "
                f"{_who(record)}; the next append moves it to "
                f"{path}.quarantine"
            )
            data = data[: max(start, end)]
    if not data.endswith(b"\n"):
        _warn(f"{path}: ignored a torn final line (a writer died mid-line)")
        data = data[: data.rfind(b"\n") + 1]
    parsed = _parse(data[end:], path, len(columns))
    lines = [line for line, _ in parsed]
    cells = dict(zip(columns, zip(*(r for _, r in parsed))))
    n = len(parsed)
    frame = pd.DataFrame({c: _column(c, cells.get(c, ("",) * n), lines, path, spec) for c in spec.columns})
    if frame["row_id"].duplicated().any():
        twice = frame["row_id"][frame["row_id"].duplicated()].iloc[0]
        _warn(f"{path}: row_id {twice!r} appears more than once")
    return latest_rows(frame, table=spec.name) if latest else frame


# --- locking -------------------------------------------------------------


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _read_record(path):
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_CHUNK)
            mtime = os.fstat(handle.fileno()).st_mtime
    except OSError:
        return None
    with suppress(ValueError):
        record = json.loads(raw)
        if isinstance(record, dict) and isinstance(record.get("time"), float):
            return record
    return {"time": mtime}  # half written or cut short: judge by file age


def _abandoned(record):
    pid = record.get("pid")
    if record.get("host") == socket.gethostname() and isinstance(pid, int):
        if os.name != "nt":  # os.kill(pid, 0) would kill it on Windows
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except OSError:
                pass  # alive, owned by another user
    # the owner cannot be probed: a live append takes milliseconds
    return abs(time.time() - record["time"]) > STALE_WRITER_AGE_S


def _who(record):
    return f"pid {record.get('pid', '?')} on {record.get('host', '?')} (since {record.get('since', '?')})"


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _append_durably(fd, data, size):
    """Append ``data`` and fsync; on failure cut the file back to ``size``."""
    try:
        _write_all(fd, data)
        os.fsync(fd)
    except OSError:
        with suppress(OSError):
            os.ftruncate(fd, size)
            os.fsync(fd)
        raise


class _Writer:
    """The record ``<csv>.writer`` of the append this process is making."""

    def __init__(self, path, deadline):
        self.path, self.stale = path, None
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _BINARY
        unreadable = {}  # file time of an unreadable record -> first seen
        while True:
            try:
                self.fd = os.open(path, flags, 0o666)
                break
            except FileExistsError:
                holder = _read_record(path)
            except PermissionError:  # Windows: a record being deleted
                if os.name != "nt":
                    raise
                holder = None
            if holder is not None and "pid" not in holder:
                # its writer died between creating and writing it, unless it
                # changes soon; timed here, as the clocks of hosts differ
                seen = unreadable.setdefault(holder["time"], time.monotonic())
                holder["stuck"] = time.monotonic() - seen > _UNREADABLE_S
            if holder is not None and (holder.get("stuck") or _abandoned(holder)):
                with suppress(FileNotFoundError):
                    os.unlink(path)
                logger.warning("removed the abandoned %s of %s", path, _who(holder))
                self.stale = holder
                continue
            self.stale = None  # a live writer came first and settled it
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"{_who(holder or {})} is appending ({path}). Try again "
                    "in a moment; if that program is no longer running, the "
                    f"record counts as abandoned {STALE_WRITER_AGE_S:g} s "
                    "after it was written, or delete it by hand."
                )
            time.sleep(0.02)
        self.record = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), "since": _now()}
        try:
            self.mark()
        except BaseException:  # e.g. a full disk: leave no record behind
            self.release()
            raise

    def mark(self, **extra):
        data = json.dumps({**self.record, **extra}).encode()
        os.lseek(self.fd, 0, os.SEEK_SET)
        _write_all(self.fd, data)
        os.ftruncate(self.fd, len(data))

    def release(self):
        os.close(self.fd)
        with suppress(FileNotFoundError):
            os.unlink(self.path)


@contextmanager
def _exclusive(path, timeout):
    deadline = time.monotonic() + timeout if timeout >= 0 else math.inf
    lock = filelock.FileLock(path + ".lock", timeout=timeout)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise StoreError(
            f"could not lock {path} within {timeout:g} s: {path}.lock is "
            "held. Another observer may be writing, so try again; if nobody "
            "is, a crashed writer left it and the operating system or file "
            "server frees it (on a network share within a few minutes). "
            "Nothing was written."
        ) from None
    except OSError as exc:
        raise StoreError(
            f"cannot create the lock file {path}.lock: "
            f"{exc.strerror}. The folder must be writable by "
            "every observer. Nothing was written."
        ) from None
    try:
        writer = _Writer(path + ".writer", deadline)
        try:
            yield writer
        finally:
            writer.release()
    finally:
        lock.release()


# --- appending -----------------------------------------------------------


def _read_at(fd, offset, size):
    os.lseek(fd, offset, os.SEEK_SET)
    chunks = []
    while size > 0 and (chunk := os.read(fd, min(size, _CHUNK))):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _line_start(fd, size):
    """Return the offset just after the last newline before ``size``."""
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        if (i := _read_at(fd, start, end - start).rfind(b"\n")) >= 0:
            return start + i + 1
        end = start
    return 0


def _recover(fd, path, size, stale):
    """Move what a dead writer left to the quarantine; return the new size."""
    keep, start, stop = size, stale.get("start"), stale.get("end")
    if isinstance(start, int) and isinstance(stop, int) and (start < size < stop):
        keep, why = start, f"unfinished append of {_who(stale)}"
    elif size and _read_at(fd, size - 1, 1) != b"\n":
        keep, why = _line_start(fd, size), "torn final line"
    if keep < size:
        torn = _read_at(fd, keep, size - keep)
        entry = f"# {_now()} from {os.path.basename(path)}: {why}\n".encode()
        entry += torn + (b"" if torn.endswith(b"\n") else b"\n")
        qfd = os.open(path + ".quarantine", os.O_RDWR | os.O_APPEND | os.O_CREAT | _BINARY, 0o666)
        try:  # saved there before it leaves the CSV, so nothing is lost
            _append_durably(qfd, entry, os.fstat(qfd).st_size)
        finally:
            os.close(qfd)
        os.ftruncate(fd, keep)
        os.fsync(fd)
        _warn(
            f"{path}: moved {size - keep} bytes ({why}) to {path}.quarantine; every acknowledged row is still in place",
            stacklevel=5,
        )
    return keep


def _refuse_header(head, path, spec):
    """Refuse a file whose header is not the one this release appends to."""
    line = head[: head.find(b"\n") + 1] or head
    for version in spec.columns_by_version:
        if version != spec.version and line == spec.header(version):
            raise _old_version_error(path, spec, version)
    raise _header_error(line, path, spec)


def _append_locked(path, payload, supplied, writer, spec):
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | _BINARY)
        created = False
    except FileNotFoundError:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | _BINARY, 0o666)
        created = True
    written = False
    header = spec.header()
    try:
        size = os.fstat(fd).st_size
        head = _read_at(fd, 0, min(size, _CHUNK))
        # a prefix of the header alone is one torn by a writer that died
        if size and not (head.startswith(header) or header.startswith(head)):
            _refuse_header(head, path, spec)
        size = _recover(fd, path, size, writer.stale or {})
        if supplied and size:
            ids = {_restore(r[1]) for _, r in _parse(_read_at(fd, len(header), size), path, len(spec.columns))}
            if taken := sorted(supplied & ids):
                raise StoreError(
                    f"row_id {taken[0]!r} is already in {path}; leave row_id out to get a new one. Nothing was written."
                )
        payload = payload if size else header + payload
        writer.mark(start=size, end=size + len(payload))
        try:
            _append_durably(fd, payload, size)
        except OSError as exc:
            raise StoreError(
                f"could not write to {path}: {exc.strerror}. "
                "Nothing was written; free space on the share "
                "or fix its permissions, then retry."
            ) from None
        written = True
        if created:
            _fsync_folder(path)
    finally:
        os.close(fd)  # before unlinking: Windows cannot remove an open file
        if created and not written:
            with suppress(OSError):
                os.unlink(path)


def _fsync_folder(path):
    """Make a new directory entry durable (a created or replaced file)."""
    if os.name == "nt":  # Windows cannot open a folder
        return
    with suppress(OSError):  # and some network file systems refuse
        folder = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _check_folder(path):
    """Refuse a missing or unwritable folder at once: filelock would retry
    creating ``<csv>.lock`` there until the timeout and then blame a held
    lock."""
    from .annotation import probe_writable

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise StoreError(
            f"the folder {folder} does not exist; create it or connect the network share. Nothing was written."
        )
    try:
        probe_writable(folder)
    except OSError as exc:
        raise StoreError(
            f"the folder {folder} is not writable ({exc.strerror}); the shared CSV, its .lock and its "
            ".writer file live there, so it must be writable by every observer: pick a CSV in such a "
            "folder or fix its permissions. Nothing was written."
        ) from None


def _precheck(path, spec):
    """Refuse a folder or a file with another header before taking the lock,
    so that a refused call leaves no lock file behind (checked again under
    the lock)."""
    if os.path.isdir(path):
        raise StoreError(f"{path} is a folder, not a CSV file. Nothing was written.")
    header = spec.header()
    try:
        with open(path, "rb") as fh:
            head = fh.read(max(len(spec.header(v)) for v in spec.columns_by_version) + 1)
    except FileNotFoundError:
        return
    except OSError:
        return  # reported with its reason under the lock
    if b"\n" in head and head[: head.find(b"\n") + 1] != header:
        _refuse_header(head, path, spec)


def check_appendable(csv_path, *, table="muscle"):
    """Refuse, before any work, a file that :func:`append_rows` would refuse
    for what it is: a folder, a missing folder, or a file with another
    header (a version-1 muscle table is named, with the
    ``napari-pvm migrate-csv`` command). A missing file is fine: the first
    append creates it. Rows are not checked; nothing is written.

    Raises
    ------
    StoreError
        As :func:`append_rows` would, ending in "Nothing was written."

    Examples
    --------
    >>> check_appendable("shared/measurements.csv")  # doctest: +SKIP
    """
    spec = _table(table)
    path = os.fspath(csv_path)
    _check_folder(path)
    _precheck(path, spec)


def append_rows(csv_path, rows, *, table="muscle", timeout=30.0):
    """Append rows to a shared table, all or nothing.

    Every row is validated first (:func:`validate_row`); then, under the
    lock, all rows are written at once and fsynced before this returns. A
    new file starts with :func:`expected_header`. Text cells that a
    spreadsheet would run as a formula get a leading ``'``.

    Parameters
    ----------
    csv_path : str or os.PathLike
        The shared file; its folder must exist. ``<csv>.lock``,
        ``<csv>.writer`` and (after a crash) ``<csv>.quarantine`` live
        beside it.
    rows : dict, list of dict or pandas.DataFrame
        Rows of ``table``; ``row_id``, ``measured_at`` and
        ``schema_version`` are filled in when missing. No rows: nothing is
        created or written.
    table : {"muscle", "spine"}
        The muscle table (contract 3, ``schema.COLUMNS``) or the spine
        table (contract 8, ``schema.SPINE_COLUMNS``); keep each in its own
        file.
    timeout : float, default 30.0
        Seconds to wait for another writer; negative waits without limit.

    Returns
    -------
    list of str
        The ``row_id`` of each row written, in order.

    Raises
    ------
    StoreError
        A bad row (naming row and column), a ``row_id`` already used, a
        missing or read-only folder, another header (a muscle table of
        schema version 1 is named, with the ``napari-pvm migrate-csv``
        command that brings it forward), a lock not obtained within
        ``timeout`` or a failed write (a full disk). No row of the call is
        then in the file, and a refused file is left byte for byte as it
        was.

    Warns
    -----
    StoreWarning
        When bytes left by a writer that died are moved to the quarantine.

    Examples
    --------
    >>> append_rows("shared/measurements.csv", row)  # doctest: +SKIP
    ['3f0c9d4e5b6a47c8a1e2f3b4c5d6e7f8']
    >>> append_rows("shared/spine.csv", spine_row, table="spine")  # doctest: +SKIP
    ['9a1b...']
    """
    spec = _table(table)
    path = os.fspath(csv_path)
    if isinstance(rows, Mapping):
        rows = [rows]
    elif isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")
    rows, checked = list(rows), []
    for i, row in enumerate(rows, 1):
        try:
            checked.append(validate_row(row, table=spec.name))
        except StoreError as exc:
            where = f"row {i} of {len(rows)}: " if len(rows) > 1 else ""
            raise StoreError(f"{where}{exc}. Nothing was written.") from None
    ids = [row["row_id"] for row in checked]
    if len(set(ids)) < len(ids):
        raise StoreError(f"row_id {max(ids, key=ids.count)!r} is given twice; row_ids are unique. Nothing was written.")
    if not checked:
        return []
    _check_folder(path)
    _precheck(path, spec)
    supplied = {r["row_id"] for r, raw in zip(checked, rows) if not _is_empty(raw.get("row_id"))}
    payload = "".join(_csv_line(row, spec) for row in checked).encode()
    try:
        with _exclusive(path, timeout) as writer:
            _append_locked(path, payload, supplied, writer, spec)
    except OSError as exc:
        hint = (
            "if a spreadsheet has it open, close it; the folder and the file must be writable by every observer"
            if isinstance(exc, PermissionError)
            else "check that the share is connected and has free space"
        )
        raise StoreError(f"cannot append to {path}: {exc.strerror}; {hint}. Nothing was written.") from None
    return ids


def spreadsheet_safe(value):
    """A text cell a spreadsheet shows but never runs: text starting like a
    formula (``=``, ``+``, ``-``, ``@``, a tab, a carriage return, or ``'``)
    gets a leading ``'``; anything else is returned unchanged.

    Examples
    --------
    >>> print(spreadsheet_safe("=1+1"), spreadsheet_safe("ES_L"), spreadsheet_safe(1.5))
    '=1+1 ES_L 1.5
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv_line(row, spec):
    cells = []
    for col in spec.columns:
        value = row[col]
        if value is None:
            cells.append("")
        elif col in spec.integer:
            cells.append(str(value))
        elif col in spec.numeric:
            cells.append(repr(value))  # the shortest text giving this float
        else:
            cells.append(spreadsheet_safe(value))
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)  # QUOTE_MINIMAL
    return buffer.getvalue()


@contextmanager
def locked(csv_path, *, timeout=30.0):
    """Hold a shared file as an append does, to replace it whole.

    Takes the same OS lock and writer record as :func:`append_rows`, and
    first moves what a writer that died left behind (an unfinished append, a
    torn final line) to ``<csv>.quarantine``, so that the caller sees only
    acknowledged rows. Used by :mod:`napari_pvm.core.migrate`; the caller
    replaces the file with ``os.replace`` before leaving the block.

    Parameters
    ----------
    csv_path : str or os.PathLike
        An existing shared file.
    timeout : float, default 30.0
        Seconds to wait for another writer; negative waits without limit.

    Yields
    ------
    None

    Raises
    ------
    StoreError
        The lock was not obtained within ``timeout``, or the file could not
        be repaired.
    """
    path = os.fspath(csv_path)
    _check_folder(path)
    with _exclusive(path, timeout) as writer:
        try:
            fd = os.open(path, os.O_RDWR | _BINARY)
            try:
                _recover(fd, path, os.fstat(fd).st_size, writer.stale or {})
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot open {path} to repair it: {exc.strerror}. Nothing was changed.") from None
        yield
