"""`core.migrate`: a version-1 shared CSV brought to version 2 (issue 13, item 6)."""

import csv
import io
import os
import warnings

import pandas as pd
import pytest

from napari_pvm.core import schema
from napari_pvm.core.errors import StoreError
from napari_pvm.core.migrate import BACKUP_SUFFIX, migrate_csv
from napari_pvm.core.store import (
    StoreWarning,
    append_rows,
    file_schema_version,
    read_rows,
    validate_row,
)

try:  # tests/ as packages, or rootdir-relative imports
    from ._rows import make_example_row
except ImportError:
    from _rows import make_example_row


def v1_line(row):
    """One line exactly as version 1 wrote it (repr floats, ' before formulas)."""
    row = validate_row(row)
    row["schema_version"] = "1"
    cells = []
    for col in schema.V1_COLUMNS:
        value = row[col]
        if value is None:
            cells.append("")
        elif isinstance(value, float):
            cells.append(repr(value))
        elif isinstance(value, str) and value.startswith(("=", "+", "-", "@", "'")):
            cells.append("'" + value)
        else:
            cells.append(str(value))
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


@pytest.fixture
def v1(tmp_path):
    folder = tmp_path / "share"
    folder.mkdir()
    path = folder / "measurements.csv"
    rows = [
        make_example_row(patient_id="=1+1", observer_id="obs, two", absent=["MF_R", "PS_L"], row_spacing_mm=0.1 + 0.2),
        make_example_row(patient_id="P3", annotation_sha256="ef" * 32),
    ]
    path.write_bytes((",".join(schema.V1_COLUMNS) + "\n").encode() + b"".join(v1_line(r).encode() for r in rows))
    return path


def test_migration_keeps_every_old_cell_and_adds_empty_columns(v1):
    before = v1.read_bytes()
    old = read_rows(v1)
    result = migrate_csv(v1)
    assert result.migrated and (result.from_version, result.to_version) == ("1", "2")
    assert result.rows == 2 and result.backup == str(v1) + BACKUP_SUFFIX
    # the backup is the original, byte for byte; the lock file aside, nothing else
    assert (v1.parent / (v1.name + BACKUP_SUFFIX)).read_bytes() == before
    assert sorted(p.name for p in v1.parent.iterdir()) == sorted([v1.name, v1.name + BACKUP_SUFFIX, v1.name + ".lock"])
    after = v1.read_bytes()
    old_lines, new_lines = before.splitlines(), after.splitlines()
    assert new_lines[0].decode() == ",".join(schema.V2_COLUMNS)
    added = len(schema.V2_COLUMNS) - len(schema.V1_COLUMNS)
    for was, now in zip(old_lines[1:], new_lines[1:], strict=True):
        assert now.startswith(was + b",")  # old cells byte for byte
        tail = now[len(was) + 1 :].decode().split(",")
        assert len(tail) == added and tail[1:] == [""] * (added - 1)
    assert file_schema_version(v1) == "2"
    new = read_rows(v1)
    assert list(new["schema_version"]) == ["1", "1"]  # the rows' own version
    assert list(new["outline_origin"]) == [
        "PS_R:drawn;ES_L:drawn;ES_R:drawn;MF_L:drawn",
        ";".join(f"{k}:drawn" for k in schema.ROI_KEYS),
    ]
    assert list(new["patient_id"]) == ["=1+1", "P3"]
    assert new["row_spacing_mm"].iloc[0] == 0.1 + 0.2
    pd.testing.assert_frame_equal(new[list(schema.V1_COLUMNS)], old[list(schema.V1_COLUMNS)])
    for col in schema.V2_COLUMNS[len(schema.V1_COLUMNS) + 1 :]:
        assert (new[col].isna() | (new[col] == "")).all(), col
    # and the file takes version-2 rows now
    append_rows(v1, make_example_row(patient_id="P4"))
    assert list(read_rows(v1)["schema_version"]) == ["1", "1", "2"]


def test_a_second_run_says_so_and_writes_nothing(v1):
    migrate_csv(v1)
    snapshot = {p.name: p.read_bytes() for p in v1.parent.iterdir()}
    again = migrate_csv(v1)
    assert not again.migrated and again.backup is None and again.to_version == "2"
    assert again.rows == 2
    assert {p.name: p.read_bytes() for p in v1.parent.iterdir()} == snapshot


def test_an_existing_different_backup_is_never_overwritten(v1):
    backup = v1.parent / (v1.name + BACKUP_SUFFIX)
    backup.write_bytes(b"an older backup\n")
    before = v1.read_bytes()
    with pytest.raises(StoreError, match="already exists with other content"):
        migrate_csv(v1)
    assert backup.read_bytes() == b"an older backup\n"
    assert v1.read_bytes() == before
    # the same bytes (an interrupted earlier run) are kept and used
    backup.write_bytes(before)
    assert migrate_csv(v1).migrated and backup.read_bytes() == before


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "empty"),
        (b"a,b\n1,2\n", "does not have the header"),
        (None, "does not exist"),
    ],
)
def test_a_bad_file_is_refused_unchanged(tmp_path, content, match):
    path = tmp_path / "m.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(StoreError, match=match):
        migrate_csv(path)
    assert sorted(os.listdir(tmp_path)) == (["m.csv"] if content is not None else [])


def test_a_changed_line_is_refused_unchanged(v1):
    v1.write_bytes(v1.read_bytes() + b"x,y\n")
    before = v1.read_bytes()
    with pytest.raises(StoreError, match=f"line 4: not one record of {len(schema.V1_COLUMNS)} fields"):
        migrate_csv(v1)
    assert v1.read_bytes() == before
    assert not (v1.parent / (v1.name + BACKUP_SUFFIX)).exists()


def test_a_torn_last_line_goes_to_the_quarantine_first(v1):
    whole = v1.read_bytes()
    v1.write_bytes(whole + b"1,abc,P9")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)
        result = migrate_csv(v1)
    assert result.rows == 2
    assert (v1.parent / (v1.name + ".quarantine")).read_bytes().endswith(b"1,abc,P9\n")
    assert (v1.parent / (v1.name + BACKUP_SUFFIX)).read_bytes() == whole


def test_a_spine_table_is_not_migrated(tmp_path):
    path = tmp_path / "spine.csv"
    path.write_bytes((",".join(schema.SPINE_COLUMNS) + "\n").encode())
    with pytest.raises(StoreError, match="spine measurement table, not a muscle"):
        migrate_csv(path)


def test_a_header_only_version_1_file(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes((",".join(schema.V1_COLUMNS) + "\n").encode())
    result = migrate_csv(path)
    assert result.migrated and result.rows == 0
    assert read_rows(path).empty and list(read_rows(path).columns) == list(schema.COLUMNS)
