"""Bring a shared muscle table forward to the current schema version.

A shared CSV is never rewritten by an append (contract 3): appending a
version-2 row to a version-1 file is refused, and :func:`migrate_csv` (the
``napari-pvm migrate-csv`` command) brings the file forward on purpose:

- under the store's lock (:func:`napari_pvm.core.store.locked`), so no
  observer appends meanwhile; what a crashed writer left is first moved to
  the quarantine, as an append would;
- the original bytes are kept as a backup, ``<csv>.v1.bak`` beside the file
  (an existing backup is never overwritten: one with other content is a
  refusal, one with the same bytes is kept as it is);
- every old line keeps its bytes: the version-1 cells are copied as they
  are and the new columns are appended after them, so the old rows keep
  ``schema_version`` 1 and every value to the last digit;
- the new columns are empty, except ``outline_origin``, which says
  ``KEY:drawn`` for each outline in the row's ``rois_present``: version 1
  had no outline proposals, so every outline it measured was drawn by hand
  (contract 3);
- the new file is written to a temporary file in the same folder, fsynced,
  and moved over the old one with ``os.replace`` (atomic): a reader sees the
  old file or the new one, never a mix.
"""

import csv
import dataclasses
import os
import shutil
import tempfile

from . import schema
from .errors import StoreError
from .store import file_schema_version, locked

__all__ = ["BACKUP_SUFFIX", "Migration", "migrate_csv"]

#: Appended to the file name for the backup of a version-1 file.
BACKUP_SUFFIX = ".v1.bak"


@dataclasses.dataclass(frozen=True)
class Migration:
    """What :func:`migrate_csv` did.

    Attributes
    ----------
    path : str
        The shared file.
    from_version, to_version : str
        Schema version before and after (equal when nothing was done).
    rows : int
        Data rows in the file.
    backup : str or None
        The backup of the original bytes (None when nothing was done).
    migrated : bool
        False when the file already had the current version.
    """

    path: str
    from_version: str
    to_version: str
    rows: int
    backup: str | None
    migrated: bool


def _new_cells(record):
    """The version-2 cells that follow the version-1 cells of ``record``."""
    present = record[schema.V1_COLUMNS.index("rois_present")].lstrip("'")
    keys = [k for k in schema.ROI_KEYS if k in present.split(";")]
    cells = dict.fromkeys(schema.V2_COLUMNS[len(schema.V1_COLUMNS) :], "")
    cells["outline_origin"] = ";".join(f"{k}:drawn" for k in keys)
    return list(cells.values())


def _migrated_bytes(data, path):
    """The version-2 file whose old lines are those of ``data`` (version 1)."""
    old_header = (",".join(schema.V1_COLUMNS) + "\n").encode()
    body = data[len(old_header) :]
    out = [(",".join(schema.V2_COLUMNS) + "\n").encode()]
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        line = 2 + body.count(b"\n", 0, exc.start)
        raise StoreError(
            f"{path}, line {line}: not UTF-8 text; restore the file from a backup. Nothing was changed."
        ) from None
    for number, line in enumerate(text.split("\n")[:-1], 2):
        # a record is one line: the store refuses line breaks inside cells
        try:
            (record,) = csv.reader([line], strict=True)
        except (csv.Error, ValueError):
            record = None
        if record is None or len(record) != len(schema.V1_COLUMNS):
            raise StoreError(
                f"{path}, line {number}: not one record of "
                f"{len(schema.V1_COLUMNS)} fields of schema version 1; the "
                "line was changed outside napari-pvm, so fix or remove it "
                "first. Nothing was changed."
            )
        tail = ",".join(_new_cells(record))  # plain names: no quoting needed
        out.append(f"{line},{tail}\n".encode())
    return b"".join(out), len(out) - 1


def _write_new(path, data, mode_from):
    """Write ``data`` to a temporary file beside ``path``; return its name."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".migrating")
    _fill(fd, tmp, data, mode_from)
    return tmp


def _keep_backup(path, data, backup):
    """Write the original bytes to ``backup`` unless it holds them already."""
    try:
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except FileExistsError:
        with open(backup, "rb") as handle:
            if handle.read() == data:
                return  # an earlier, interrupted migration made it
        raise StoreError(
            f"the backup {backup} already exists with other content; move "
            f"it away (it may be the only copy of an older {os.path.basename(path)}), "
            "then migrate again. Nothing was changed."
        ) from None
    _fill(fd, backup, data, path)


def _fill(fd, name, data, mode_from):
    """Write ``data`` through ``fd``, the new file ``name``, to disk (fsync)
    with the permissions of ``mode_from``; on any failure remove ``name``."""
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        shutil.copymode(mode_from, name)
    except BaseException:
        os.unlink(name)
        raise


def _fsync_folder(path):
    if os.name == "nt":
        return
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def migrate_csv(csv_path, *, timeout=30.0):
    """Bring a shared muscle table written by schema version 1 to version 2.

    Parameters
    ----------
    csv_path : str or os.PathLike
        The shared measurement CSV.
    timeout : float, default 30.0
        Seconds to wait for an observer who is appending.

    Returns
    -------
    Migration
        ``migrated`` is False, and nothing was written, when the file has
        the current version already.

    Raises
    ------
    StoreError
        The file is missing, is not a napari-pvm muscle table, has a line
        that is not a version-1 record, a different backup exists already,
        or the folder is not writable. The file is then unchanged.

    Examples
    --------
    >>> migrate_csv("shared/measurements.csv")  # doctest: +SKIP
    Migration(path='shared/measurements.csv', from_version='1', to_version='2',
              rows=84, backup='shared/measurements.csv.v1.bak', migrated=True)
    """
    path = os.fspath(csv_path)
    current = schema.SCHEMA_VERSION
    version = file_schema_version(path)
    if version != current:
        backup = path + BACKUP_SUFFIX
        if os.path.isdir(backup):
            raise StoreError(f"{backup} is a folder; move it away, then migrate again. Nothing was changed.")
        with locked(path, timeout=timeout):
            version = file_schema_version(path)  # another migration may have run
            if version != current:
                with open(path, "rb") as handle:
                    data = handle.read()
                new, rows = _migrated_bytes(data, path)
                try:
                    _keep_backup(path, data, backup)
                    tmp = _write_new(path, new, path)
                    try:
                        os.replace(tmp, path)
                    except BaseException:
                        os.unlink(tmp)
                        raise
                except OSError as exc:
                    raise StoreError(
                        f"cannot migrate {path}: {exc.strerror}; the folder "
                        "must be writable and have free space. The file was "
                        "not changed."
                    ) from None
                _fsync_folder(path)
                return Migration(path, version, current, rows, backup, True)
    with open(path, "rb") as handle:
        rows = max(handle.read().count(b"\n") - 1, 0)
    return Migration(path, current, current, rows, None, False)
