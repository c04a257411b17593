"""The shared measurement CSV: locked, durable and append-only (contract 3).

Observers add rows with :func:`append_rows` and read them with
:func:`read_rows`; rows are never rewritten, a re-measurement is a new row
with a later ``measured_at``. One append, all under the lock:

1. take the OS lock ``<csv>.lock`` (filelock: the kernel or the file server
   frees it when a writer dies), then create the writer record
   ``<csv>.writer`` (exclusive create: pid, host, time and the bytes being
   written), which still keeps writers apart where OS locks stay local;
2. check the header, then move what a dead writer left (the bytes of its
   unfinished call, or a torn final line) to ``<csv>.quarantine``;
3. write all rows at once, fsync, remove the writer record.

docs/shared-csv.md says where to keep the file and what is guaranteed.
"""

import csv
import io
import json
import logging
import math
import os
import re
import socket
import time
import uuid
import warnings
from collections.abc import Mapping
from contextlib import contextmanager, suppress
from datetime import datetime, timezone

import filelock
import numpy as np
import pandas as pd

from .errors import StoreError
from .schema import (
    COLUMNS,
    GROUPS,
    ID_COLUMNS,
    INTEGER_COLUMNS,
    MEASURES,
    NUMERIC_COLUMNS,
    ROI_KEYS,
    SCHEMA_VERSION,
    SIDES,
    measure_column,
)

__all__ = [
    "AREA_TOLERANCE_CM2",
    "FI_TOLERANCE_PCT",
    "LATEST_KEYS",
    "STALE_WRITER_AGE_S",
    "StoreWarning",
    "append_rows",
    "expected_header",
    "read_rows",
    "validate_row",
]

logger = logging.getLogger(__name__)

#: Largest accepted ``|muscle + fat - total|`` of one group and side, in cm².
AREA_TOLERANCE_CM2 = 0.01
#: Largest accepted ``|fi_pct - 100 * fat / total|``, in percentage points.
FI_TOLERANCE_PCT = 0.01
#: One reading; ``read_rows(latest=True)`` keeps the newest row of each.
LATEST_KEYS = ("patient_id", "observer_id", "level", "session")
#: Seconds after which a writer record whose owner cannot be probed is stale.
STALE_WRITER_AGE_S = 120.0

_TEXT = tuple(c for c in ID_COLUMNS if c not in NUMERIC_COLUMNS)
# a spreadsheet runs cells starting so; "'" too, so that quoting inverts
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEADER = (",".join(COLUMNS) + "\n").encode()  # plain names need no quoting
_BINARY = getattr(os, "O_BINARY", 0)  # stops Windows translating "\n"
_SLACK = 1e-9  # float noise on top of the stated tolerances
_UNREADABLE_S = 2.0  # a live writer fills its new record in microseconds
_CHUNK = 1 << 16


class StoreWarning(UserWarning):
    """The shared CSV needed a repair or has a flaw; no row was dropped."""


def expected_header():
    """Return the header line of the current schema, without its newline.

    Examples
    --------
    >>> expected_header().split(",")[:3]
    ['schema_version', 'row_id', 'patient_id']
    """
    return _HEADER.decode().rstrip("\n")


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
        raise StoreError(f"{col} must be text, got {type(value).__name__} "
                         f"{value!r}; pass a str (so '007' keeps its zeros)")
    if found := _CONTROL.search(value):
        raise StoreError(f"{col} {value!r} contains the control character "
                         f"{found.group()!r}; remove it")
    if value != value.strip():
        raise StoreError(f"{col} {value!r} starts or ends with white space; "
                         "remove it so that both observers' rows match")
    return value


def _number(col, value):
    if _is_empty(value):
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise StoreError(f"{col} must be a number, got "
                         f"{type(value).__name__} {value!r}")
    if col in INTEGER_COLUMNS:
        if not float(value).is_integer():
            raise StoreError(f"{col} must be a whole number, got {value!r}")
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
        raise StoreError(f"measured_at {value!r} is not an ISO 8601 time "
                         "with a time zone, such as "
                         "2026-11-24T07:30:00.123456+00:00")
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _check_measures(row, present):
    for group in GROUPS:
        for side in SIDES:
            cols = [measure_column(group, side, m) for m in MEASURES]
            muscles = ("ES", "MF") if group == "ESMF" else (group,)
            needed = [f"{m}_{s}" for m in muscles
                      for s in (("L", "R") if side == "B" else (side,))]
            if lacking := [r for r in needed if r not in present]:
                if filled := [c for c in cols if row[c] is not None]:
                    raise StoreError(
                        f"{filled[0]} must be empty because {lacking[0]} is "
                        "not in rois_present; add the outline to "
                        f"rois_present or empty the {group}_{side} columns")
                continue
            if empty := [c for c in cols if row[c] is None]:
                verb = "are" if len(needed) > 1 else "is"
                raise StoreError(f"{empty[0]} is empty but "
                                 f"{' and '.join(needed)} {verb} outlined "
                                 "(rois_present); fill it in")
            total, muscle, fat, fi = (row[c] for c in cols)
            for col, area in zip(cols, (total, muscle, fat)):
                if area < 0:
                    raise StoreError(f"{col} is {area!r}; areas cannot be "
                                     "negative")
            if not 0 <= fi <= 100:
                raise StoreError(f"{cols[3]} is {fi!r}; FI% must lie "
                                 "between 0 and 100")
            if abs(muscle + fat - total) > AREA_TOLERANCE_CM2 + _SLACK:
                raise StoreError(
                    f"{cols[1]} + {cols[2]} = {muscle + fat:.6g} but "
                    f"{cols[0]} = {total:.6g}; lean plus fat must equal the "
                    f"total within {AREA_TOLERANCE_CM2} cm²")
            if total > 0 and (abs(fi - 100 * fat / total)
                              > FI_TOLERANCE_PCT + _SLACK):
                raise StoreError(
                    f"{cols[3]} is {fi:.6g} but 100 × {cols[2]} / {cols[0]} "
                    f"= {100 * fat / total:.6g}; they must agree within "
                    f"{FI_TOLERANCE_PCT} percentage points")


def validate_row(row):
    """Check one row and return it as :func:`append_rows` would write it.

    Parameters
    ----------
    row : Mapping
        Column name to value (``schema.COLUMNS``). ``row_id``,
        ``measured_at`` and ``schema_version`` are filled in when missing;
        ``annotation_sha256`` may be empty. Measure columns are empty (None,
        NaN, "" or left out) exactly when an outline they need is not in
        ``rois_present``.

    Returns
    -------
    dict
        Every column in schema order: text as str, integers as int, measures
        as float or None, ``measured_at`` in UTC with microseconds and
        ``rois_present`` in ``ROI_KEYS`` order.

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
    if not isinstance(row, Mapping):
        raise StoreError("a row must be a dict of column name to value, not "
                         f"a {type(row).__name__}")
    if unknown := [repr(k) for k in row if k not in COLUMNS]:
        raise StoreError(f"unknown column {', '.join(unknown)}; rows hold "
                         "only napari_pvm.core.schema.COLUMNS (schema "
                         f"version {SCHEMA_VERSION}): check the spelling")
    out = {c: _text(c, row.get(c)) for c in _TEXT if c != "measured_at"}
    out.update((c, _number(c, row.get(c))) for c in NUMERIC_COLUMNS)
    out["measured_at"] = _timestamp(row.get("measured_at"))
    out["row_id"] = out["row_id"] or uuid.uuid4().hex
    if out["schema_version"] not in ("", SCHEMA_VERSION):
        raise StoreError(f"schema_version is {out['schema_version']!r}, but "
                         f"this napari-pvm writes {SCHEMA_VERSION!r}; leave "
                         "it out")
    out["schema_version"] = SCHEMA_VERSION
    for col in ID_COLUMNS:
        if col != "annotation_sha256" and out[col] in ("", None):
            raise StoreError(f"{col} is missing or empty")
    for col, low in (("slice_index", 0), ("n_trees", 1), ("seed", 0)):
        if out[col] < low:
            raise StoreError(f"{col} is {out[col]}; it must be {low} or more")
    for col in ("row_spacing_mm", "col_spacing_mm"):
        if out[col] <= 0:
            raise StoreError(f"{col} is {out[col]!r}; it must be above 0")
    for col in ("image_sha256", "annotation_sha256"):
        if out[col] and not _HEX64.fullmatch(out[col]):
            raise StoreError(f"{col} must be a SHA-256 in 64 lowercase hex "
                             f"digits, got {out[col]!r}")
    rois = out["rois_present"].split(";")
    if len(set(rois)) < len(rois) or not set(rois) <= set(ROI_KEYS):
        raise StoreError(f"rois_present is {out['rois_present']!r}; list each"
                         " drawn outline once, separated by ';', from "
                         f"{';'.join(ROI_KEYS)}")
    out["rois_present"] = ";".join(k for k in ROI_KEYS if k in rois)
    _check_measures(out, set(rois))
    return {c: out[c] for c in COLUMNS}


# --- reading -------------------------------------------------------------


def _warn(message, stacklevel=3):
    logger.warning(message)
    warnings.warn(StoreWarning(message), stacklevel=stacklevel)


def _header_error(line, path):
    text = line.decode("utf-8", "replace").rstrip("\n")
    got, want = text.lstrip("\ufeff").rstrip("\r").split(","), list(COLUMNS)
    i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
             min(len(got), len(want)))
    what = (f"column {i + 1} is {got[i] if i < len(got) else 'missing'!r} "
            f"where {want[i] if i < len(want) else 'nothing'!r} is expected"
            if got != want else "the names match but it is not plain UTF-8")
    how = ("it looks re-saved by a spreadsheet, so restore it from a backup"
           if text[:1] == "\ufeff" or text[-1:] == "\r" or ";" in text else
           "write to a new file, or convert this one")
    return StoreError(f"{path} does not have the header of napari-pvm schema "
                      f"version {SCHEMA_VERSION}: {what}. The file was left "
                      f"untouched; {how}.")


def _parse(body, path):
    """Return the records of ``body`` (whole lines after the header)."""
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        line = 2 + body.count(b"\n", 0, exc.start)
        raise StoreError(f"{path}, line {line}: not UTF-8 text; restore the "
                         "file from a backup") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records, line = [], 2
    try:
        for record in reader:
            if len(record) != len(COLUMNS):
                raise StoreError(
                    f"{path}, line {line}: {len(record)} fields where the "
                    f"header has {len(COLUMNS)}; the line was changed "
                    "outside napari-pvm, so restore the file from a backup "
                    f"or move the line by hand to {path}.quarantine")
            records.append((line, record))
            line = 2 + reader.line_num
    except csv.Error as exc:
        raise StoreError(f"{path}, line {line}: {exc}; restore the file "
                         "from a backup") from None
    return records


def _restore(cell):
    return cell[1:] if cell.startswith("'") else cell


def _column(col, cells, lines, path):
    if col not in NUMERIC_COLUMNS:
        return pd.Series([_restore(c) for c in cells], dtype=object)
    parse = int if col in INTEGER_COLUMNS else float
    values = []
    for cell, line in zip(cells, lines):
        try:
            values.append(None if cell == "" else parse(cell))
        except ValueError:
            raise StoreError(f"{path}, line {line}: {col} is {cell!r}, not "
                             "a number; fix the line") from None
    if parse is int:
        return pd.Series(pd.array(values, dtype="Int64"))
    return pd.Series(np.array(values, dtype=float))  # float(): exact


def _latest(frame, lines, path):
    stamps = []
    for text, line in zip(frame["measured_at"], lines):
        try:
            stamps.append(datetime.fromisoformat(text))
        except ValueError:
            stamps.append(None)
        if stamps[-1] is None or stamps[-1].utcoffset() is None:
            raise StoreError(f"{path}, line {line}: measured_at {text!r} is "
                             "not an ISO 8601 time with a time zone; fix it")
    best = {}
    for i, key in enumerate(zip(*(frame[c] for c in LATEST_KEYS))):
        if key not in best or stamps[i] >= stamps[best[key]]:
            best[key] = i  # ">=": on a tie the later line wins
    return frame.iloc[sorted(best.values())].reset_index(drop=True)


def read_rows(csv_path, latest=False):
    """Read the shared CSV into a DataFrame.

    Readers take no lock. Rows of an append still in progress, or of one
    whose writer died, are left out (the writer record gives their offset),
    and a torn final line is skipped with a :class:`StoreWarning`.

    Parameters
    ----------
    csv_path : str or os.PathLike
        The shared measurement file.
    latest : bool, default False
        Keep only the row with the latest ``measured_at`` of each
        ``LATEST_KEYS`` combination (on a tie, the later line), in file order.

    Returns
    -------
    pandas.DataFrame
        Columns ``schema.COLUMNS``. Text is str (object dtype; "007" stays
        "007", an empty optional cell is "") with spreadsheet quoting
        removed; integer columns are Int64; measures and spacings are float,
        NaN where empty. A header-only file gives an empty frame.

    Raises
    ------
    StoreError
        The file is missing or unreadable, empty (0 bytes), has another
        header, or has a line that does not parse (its number is given).

    Examples
    --------
    >>> read_rows("shared/measurements.csv", latest=True)  # doctest: +SKIP
    """
    path = os.fspath(csv_path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise StoreError(f"{path} does not exist; check the path and that "
                         "the network share is connected") from None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from None
    if not data:
        raise StoreError(f"{path} is empty (0 bytes), so it has no header; "
                         "pick the right file, or delete this one")
    end = data.find(b"\n") + 1
    if not end and _HEADER.startswith(data):
        _warn(f"{path}: its header line is torn (a writer died creating it)")
        data, end = _HEADER, len(_HEADER)
    if data[:end] != _HEADER:
        raise _header_error(data[:end] or data, path)
    record = _read_record(path + ".writer") or {}
    start, stop = record.get("start"), record.get("end")
    if isinstance(start, int) and isinstance(stop, int) and start < len(data):
        if not _abandoned(record):  # in progress: not acknowledged yet
            data = data[:max(start, end)]
        elif len(data) < stop:  # the rule the next append's repair follows
            _warn(f"{path}: ignored the interrupted append of "
                  f"{_who(record)}; the next append moves it to "
                  f"{path}.quarantine")
            data = data[:max(start, end)]
    if not data.endswith(b"\n"):
        _warn(f"{path}: ignored a torn final line (a writer died mid-line)")
        data = data[:data.rfind(b"\n") + 1]
    parsed = _parse(data[end:], path)
    lines = [line for line, _ in parsed]
    cells = list(zip(*(r for _, r in parsed))) or [()] * len(COLUMNS)
    frame = pd.DataFrame({c: _column(c, v, lines, path)
                          for c, v in zip(COLUMNS, cells)})
    if frame["row_id"].duplicated().any():
        twice = frame["row_id"][frame["row_id"].duplicated()].iloc[0]
        _warn(f"{path}: row_id {twice!r} appears more than once")
    return _latest(frame, lines, path) if latest else frame


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
    return (f"pid {record.get('pid', '?')} on {record.get('host', '?')} "
            f"(since {record.get('since', '?')})")


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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
            if holder is not None and (holder.get("stuck")
                                       or _abandoned(holder)):
                with suppress(FileNotFoundError):
                    os.unlink(path)
                logger.warning("removed the abandoned %s of %s", path,
                               _who(holder))
                self.stale = holder
                continue
            self.stale = None  # a live writer came first and settled it
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"{_who(holder or {})} is appending ({path}). Try again "
                    "in a moment; if that program is no longer running, the "
                    f"record counts as abandoned {STALE_WRITER_AGE_S:g} s "
                    "after it was written, or delete it by hand.")
            time.sleep(0.02)
        self.record = {"pid": os.getpid(), "host": socket.gethostname(),
                       "time": time.time(), "since": _now()}
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
            "Nothing was written.") from None
    except OSError as exc:
        raise StoreError(f"cannot create the lock file {path}.lock: "
                         f"{exc.strerror}. The folder must be writable by "
                         "every observer. Nothing was written.") from None
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
    if isinstance(start, int) and isinstance(stop, int) and (
            start < size < stop):
        keep, why = start, f"unfinished append of {_who(stale)}"
    elif size and _read_at(fd, size - 1, 1) != b"\n":
        keep, why = _line_start(fd, size), "torn final line"
    if keep < size:
        torn = _read_at(fd, keep, size - keep)
        entry = f"# {_now()} from {os.path.basename(path)}: {why}\n".encode()
        entry += torn + (b"" if torn.endswith(b"\n") else b"\n")
        qfd = os.open(path + ".quarantine",
                      os.O_RDWR | os.O_APPEND | os.O_CREAT | _BINARY, 0o666)
        try:  # saved there before it leaves the CSV, so nothing is lost
            _append_durably(qfd, entry, os.fstat(qfd).st_size)
        finally:
            os.close(qfd)
        os.ftruncate(fd, keep)
        os.fsync(fd)
        _warn(f"{path}: moved {size - keep} bytes ({why}) to "
              f"{path}.quarantine; every acknowledged row is still in place",
              stacklevel=5)
    return keep


def _append_locked(path, payload, supplied, writer):
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | _BINARY)
        created = False
    except FileNotFoundError:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL
                     | _BINARY, 0o666)
        created = True
    written = False
    try:
        size = os.fstat(fd).st_size
        head = _read_at(fd, 0, min(size, _CHUNK))
        # a prefix of the header alone is one torn by a writer that died
        if size and not (head.startswith(_HEADER)
                         or _HEADER.startswith(head)):
            raise _header_error(head[:head.find(b"\n") + 1] or head, path)
        size = _recover(fd, path, size, writer.stale or {})
        if supplied and size:
            ids = {_restore(r[1]) for _, r in
                   _parse(_read_at(fd, len(_HEADER), size), path)}
            if taken := sorted(supplied & ids):
                raise StoreError(f"row_id {taken[0]!r} is already in {path};"
                                 " leave row_id out to get a new one. "
                                 "Nothing was written.")
        payload = payload if size else _HEADER + payload
        writer.mark(start=size, end=size + len(payload))
        try:
            _append_durably(fd, payload, size)
        except OSError as exc:
            raise StoreError(f"could not write to {path}: {exc.strerror}. "
                             "Nothing was written; free space on the share "
                             "or fix its permissions, then retry.") from None
        written = True
        if created and os.name != "nt":  # Windows cannot open a folder
            with suppress(OSError):  # and some network file systems refuse
                folder = os.open(os.path.dirname(os.path.abspath(path)),
                                 os.O_RDONLY)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)
    finally:
        os.close(fd)  # before unlinking: Windows cannot remove an open file
        if created and not written:
            with suppress(OSError):
                os.unlink(path)


def _precheck(path):
    """Refuse a folder or a file with another header before taking the lock,
    so that a refused call leaves no lock file behind (checked again under
    the lock)."""
    if os.path.isdir(path):
        raise StoreError(f"{path} is a folder, not a CSV file. Nothing was written.")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_HEADER) + 1)
    except FileNotFoundError:
        return
    except OSError:
        return  # reported with its reason under the lock
    if b"\n" in head and head[:head.find(b"\n") + 1] != _HEADER:
        raise _header_error(head[:head.find(b"\n") + 1], path)


def append_rows(csv_path, rows, *, timeout=30.0):
    """Append measurement rows to the shared CSV, all or nothing.

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
        Contract-3 rows; ``row_id``, ``measured_at`` and ``schema_version``
        are filled in when missing. No rows: nothing is created or written.
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
        missing or read-only folder, another header, a lock not obtained
        within ``timeout`` or a failed write (a full disk). No row of the
        call is then in the file.

    Warns
    -----
    StoreWarning
        When bytes left by a writer that died are moved to the quarantine.

    Examples
    --------
    >>> append_rows("shared/measurements.csv", row)  # doctest: +SKIP
    ['3f0c9d4e5b6a47c8a1e2f3b4c5d6e7f8']
    """
    path = os.fspath(csv_path)
    if isinstance(rows, Mapping):
        rows = [rows]
    elif isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")
    rows, checked = list(rows), []
    for i, row in enumerate(rows, 1):
        try:
            checked.append(validate_row(row))
        except StoreError as exc:
            where = f"row {i} of {len(rows)}: " if len(rows) > 1 else ""
            raise StoreError(f"{where}{exc}. Nothing was written.") from None
    ids = [row["row_id"] for row in checked]
    if len(set(ids)) < len(ids):
        raise StoreError(f"row_id {max(ids, key=ids.count)!r} is given twice;"
                         " row_ids are unique. Nothing was written.")
    if not checked:
        return []
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise StoreError(f"the folder {folder} does not exist; create it or "
                         "connect the network share. Nothing was written.")
    _precheck(path)
    supplied = {r["row_id"] for r, raw in zip(checked, rows)
                if not _is_empty(raw.get("row_id"))}
    payload = "".join(_csv_line(row) for row in checked).encode()
    try:
        with _exclusive(path, timeout) as writer:
            _append_locked(path, payload, supplied, writer)
    except OSError as exc:
        hint = ("if a spreadsheet has it open, close it; the folder and the "
                "file must be writable by every observer"
                if isinstance(exc, PermissionError) else
                "check that the share is connected and has free space")
        raise StoreError(f"cannot append to {path}: {exc.strerror}; {hint}. "
                         "Nothing was written.") from None
    return ids


def _csv_line(row):
    cells = []
    for col in COLUMNS:
        value = row[col]
        if value is None:
            cells.append("")
        elif col in INTEGER_COLUMNS:
            cells.append(str(value))
        elif col in NUMERIC_COLUMNS:
            cells.append(repr(value))  # the shortest text giving this float
        elif value.startswith(_FORMULA_START):  # a spreadsheet would run it
            cells.append("'" + value)
        else:
            cells.append(value)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)  # QUOTE_MINIMAL
    return buffer.getvalue()
