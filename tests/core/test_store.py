"""The shared measurement CSV (issue 5): real processes, real crashes.

Concurrency and crash tests run separate Python processes against one file;
a full disk, a read-only folder and a spreadsheet holding the file are
simulated by making ``os`` calls fail. Every refusal is checked byte for byte
against the files as they were before the call.
"""

import csv
import errno
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import filelock
import numpy as np
import pandas as pd
import pytest

from napari_pvm.core.errors import StoreError
from napari_pvm.core.schema import (
    COLUMNS,
    INTEGER_COLUMNS,
    MEASURE_COLUMNS,
    NUMERIC_COLUMNS,
    SCHEMA_VERSION,
    SPINE_COLUMNS,
    SPINE_SCHEMA_VERSION,
    V1_COLUMNS,
)
from napari_pvm.core.store import (
    StoreWarning,
    append_rows,
    check_appendable,
    expected_header,
    file_schema_version,
    latest_rows,
    read_rows,
    validate_row,
)

try:  # tests/ as packages, or rootdir-relative imports
    from ._rows import make_example_row, make_spine_row
except ImportError:
    from _rows import make_example_row, make_spine_row

ROWS_DIR = os.path.dirname(os.path.abspath(__file__))
HEADER = (expected_header() + "\n").encode()
posix_only = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


@pytest.fixture
def path(tmp_path):
    folder = tmp_path / "share"
    folder.mkdir()
    return folder / "measurements.csv"


@pytest.fixture
def seeded(path):
    """A store holding one valid row."""
    append_rows(path, make_example_row(patient_id="seed"))
    return path


def snapshot(folder):
    """Every file beside the CSV, with its bytes, except the OS lock file.

    ``<csv>.lock`` is an empty file that stays after the first append on
    POSIX (filelock leaves it so that waiters share one inode).
    """
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix != ".lock"}


def data_records(path):
    with open(path, newline="", encoding="utf-8") as handle:
        records = list(csv.reader(handle))
    assert records[0] == list(COLUMNS)
    return records[1:]


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def dead_pid():
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_record(path, **fields):
    record = {"pid": dead_pid(), "host": socket.gethostname(), "time": time.time(), "since": "then"}
    record.update(fields)
    (path.parent / (path.name + ".writer")).write_text(json.dumps(record))


def fail_os(monkeypatch, target, name="write", err=errno.ENOSPC):
    """Make ``os.<name>`` fail on ``target`` (``write`` gets half through)."""
    real = getattr(os, name)

    def failing(fd, *args):
        if target.exists() and os.path.samestat(os.fstat(fd), os.stat(target)):
            if name == "write":
                real(fd, bytes(args[0])[: len(args[0]) // 2])
            raise OSError(err, os.strerror(err))
        return real(fd, *args)

    monkeypatch.setattr(os, name, failing)


def deny_open(monkeypatch, folder, only=None):
    """Refuse opening for writing in ``folder`` (or just ``only``)."""
    real = os.open
    write = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def refusing(file, flags, *args, **kwargs):
        file = os.path.abspath(os.fspath(file))
        hit = file == str(only) if only else os.path.dirname(file) == str(folder)
        if hit and flags & write:
            raise PermissionError(errno.EACCES, "Permission denied", file)
        return real(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)


# --- format --------------------------------------------------------------


def test_new_file_has_plain_header_and_filled_columns(path, no_warnings):
    ids = append_rows(path, make_example_row())
    raw = path.read_bytes()
    assert raw.startswith(HEADER) and raw.endswith(b"\n")
    assert raw.count(b"\n") == 2 and b"\r" not in raw
    assert not raw.startswith(b"\xef\xbb\xbf")
    (record,) = data_records(path)
    row = dict(zip(COLUMNS, record))
    assert row["schema_version"] == SCHEMA_VERSION
    assert row["row_id"] == ids[0] and re.fullmatch(r"[0-9a-f]{32}", ids[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", row["measured_at"])
    assert sorted(os.listdir(path.parent)) == [path.name, path.name + ".lock"]


def test_accepts_a_dict_a_list_and_a_dataframe(path, no_warnings):
    frame = pd.DataFrame([make_example_row(patient_id="P3"), make_example_row(patient_id="P4", absent=["MF_R"])])
    ids = append_rows(path, make_example_row(patient_id="P0"))
    ids += append_rows(path, [make_example_row(patient_id="P1"), make_example_row(patient_id="P2")])
    ids += append_rows(path, frame)
    table = read_rows(path)
    assert list(table["row_id"]) == ids
    assert list(table["patient_id"]) == ["P0", "P1", "P2", "P3", "P4"]
    assert table["MF_R_total_area_cm2"].isna().tolist() == [False] * 4 + [True]


def test_empty_call_creates_nothing(path):
    assert append_rows(path, []) == []
    assert list(path.parent.iterdir()) == []


def test_numbers_round_trip_to_the_last_bit(path, no_warnings):
    rng = np.random.default_rng(5)
    row = make_example_row(
        row_spacing_mm=0.1 + 0.2,
        col_spacing_mm=1 / 3,
        slice_index=0,
        fat_muscle_contrast=1 / 7,
        VB_total_area_cm2=5e-324,
        dixon=True,
    )
    tiny = {"PS_L": 5e-324, "ES_R": 1e-300}
    for col in MEASURE_COLUMNS[::4]:  # each group-side's total column
        prefix = col.removesuffix("total_area_cm2")
        total = rng.uniform(1, 30)
        fat = tiny.get(prefix[:-1], total * rng.uniform(0, 0.6))
        row.update(
            {
                col: total,
                prefix + "fat_area_cm2": fat,
                prefix + "muscle_area_cm2": total - fat,
                prefix + "fi_pct": 100 * fat / total,
            }
        )
    ff = {k: rng.uniform(0, 100) for k in ("PS_L", "PS_R", "ES_L", "ES_R", "MF_L", "MF_R")}
    for group in ("PS", "ES", "MF", "ESMF"):  # pooled by area, as measured
        for side in ("L", "R", "B"):
            parts = [
                f"{m}_{s}"
                for m in (("ES", "MF") if group == "ESMF" else (group,))
                for s in (("L", "R") if side == "B" else (side,))
            ]
            area = {k: row[f"{k}_total_area_cm2"] for k in parts}
            row[f"{group}_{side}_mean_ff_pct"] = (
                ff[parts[0]] if len(parts) == 1 else sum(area[k] * ff[k] for k in parts) / sum(area.values())
            )
    append_rows(path, row)
    back = read_rows(path).iloc[0]
    append_rows(path, make_example_row(seed=2**31 - 1))
    assert read_rows(path)["seed"].iloc[1] == 2**31 - 1
    for col in NUMERIC_COLUMNS:
        if col in ("n_trees", "seed"):  # a Dixon row leaves them empty
            assert back[col] is pd.NA
        elif col in INTEGER_COLUMNS:
            assert back[col] == row[col]
        else:
            written = np.float64(row[col]).view(np.uint64)
            assert np.float64(back[col]).view(np.uint64) == written, col


def test_ids_are_read_back_as_text(path, no_warnings):
    append_rows(path, make_example_row(patient_id="007", observer_id="NA", session="1", level="null"))
    table = read_rows(path)
    row = table.iloc[0]
    assert (row["patient_id"], row["observer_id"]) == ("007", "NA")
    assert (row["session"], row["level"]) == ("1", "null")
    assert row["annotation_sha256"] == ""
    text = [c for c in COLUMNS if c not in NUMERIC_COLUMNS]
    assert all(table[c].dtype == object for c in text)
    assert all(table[c].dtype == "Int64" for c in INTEGER_COLUMNS)
    assert table["PS_L_fi_pct"].dtype == np.float64


FORMULA_LIKE = [
    "=1+1",
    "+44 20",
    "-12",
    "@SUM(A1)",
    "=cmd|' /C calc'!A0",
    "'quoted",
    "''twice",
    "a,b",
    'say "hi"',
    "Müller-03",
]


def test_formula_like_text_is_neutralised_and_restored(path, no_warnings):
    append_rows(path, [make_example_row(patient_id=p, observer_id=p) for p in FORMULA_LIKE])
    records = data_records(path)
    for original, record in zip(FORMULA_LIKE, records):
        cell = record[COLUMNS.index("patient_id")]
        risky = original.startswith(("=", "+", "-", "@", "'"))
        assert cell == ("'" + original if risky else original)
        for col in NUMERIC_COLUMNS:  # numbers stay plain numbers
            float(record[COLUMNS.index(col)] or "nan")
    table = read_rows(path)
    assert list(table["patient_id"]) == FORMULA_LIKE
    assert list(table["observer_id"]) == FORMULA_LIKE


def test_header_only_file_reads_as_an_empty_table(path, no_warnings):
    path.write_bytes(HEADER)
    table = read_rows(path)
    assert table.empty and list(table.columns) == list(COLUMNS)
    assert table["seed"].dtype == "Int64"
    assert table["PS_L_fi_pct"].dtype == np.float64
    assert len(read_rows(path, latest=True)) == 0


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "does not exist"),
        (b"", r"empty \(0 bytes\)"),
        (b"a,b\n1,2\n", "column 1 is 'a' where 'schema_version'"),
    ],
)
def test_read_refuses_a_missing_empty_or_foreign_file(path, content, match):
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(StoreError, match=match):
        read_rows(path)


# --- header --------------------------------------------------------------

OLD, N = expected_header(), len(COLUMNS)
BAD_HEADERS = {
    "renamed": (OLD.replace("session", "visit"), "column 5 is 'visit'"),
    "missing": (OLD.rsplit(",", 1)[0], f"column {N} is 'missing'"),
    "extra": (OLD + ",comment", f"column {N + 1} is 'comment' where 'nothi"),
    "bom": ("\ufeff" + OLD, "spreadsheet"),
    "crlf": (OLD + "\r", "spreadsheet"),
    "semicolon": (OLD.replace(",", ";"), "spreadsheet"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_mismatched_header_is_refused_and_untouched(path, case):
    header, match = BAD_HEADERS[case]
    path.write_bytes((header + "\n").encode() + b"x,y\n")
    before = snapshot(path.parent)
    for call in (lambda: append_rows(path, make_example_row()), lambda: read_rows(path)):
        with pytest.raises(StoreError, match=match) as info:
            call()
        assert f"schema version {SCHEMA_VERSION}" in str(info.value)
    assert snapshot(path.parent) == before


def test_a_file_without_any_newline_is_refused(path):
    path.write_bytes(b"hello")
    with pytest.raises(StoreError, match="column 1 is 'hello'"):
        append_rows(path, make_example_row())
    assert path.read_bytes() == b"hello"


def test_a_torn_header_is_quarantined_and_rewritten(path):
    path.write_bytes(HEADER[:25])
    with pytest.warns(StoreWarning, match="torn"):
        assert read_rows(path).empty
    with pytest.warns(StoreWarning, match="moved 25 bytes"):
        append_rows(path, make_example_row())
    assert path.read_bytes().startswith(HEADER) and len(read_rows(path)) == 1
    quarantine = (path.parent / (path.name + ".quarantine")).read_bytes()
    assert quarantine.split(b"\n")[1] == HEADER[:25]


# --- validation ----------------------------------------------------------

BAD_ROWS = {
    "unknown column": ({"patient": "x"}, "unknown column 'patient'"),
    "no patient_id": ({"patient_id": None}, "patient_id is missing"),
    "empty patient_id": ({"patient_id": ""}, "patient_id is missing"),
    "blank session": ({"session": "  "}, "session '  ' starts or ends"),
    "padded id": ({"patient_id": " 007"}, "patient_id ' 007' starts"),
    "int id": ({"patient_id": 7}, "patient_id must be text"),
    "newline": ({"patient_id": "P\n1"}, "patient_id .* control character"),
    "tab": ({"observer_id": "\t=1"}, "observer_id .* control character"),
    "carriage return": ({"level": "\rL4"}, "level .* control character"),
    "no class_balance": ({"class_balance": None}, "class_balance is empty but features_preset is filled"),
    "half slice": ({"slice_index": 16.5}, "slice_index must be a whole"),
    "text slice": ({"slice_index": "16"}, "slice_index must be a number"),
    "bool slice": ({"slice_index": True}, "slice_index must be a number"),
    "negative slice": ({"slice_index": -1}, "slice_index is -1"),
    "no trees": ({"n_trees": 0}, "n_trees is 0"),
    "no seed": ({"seed": None}, "seed is empty but features_preset"),
    "no method": ({"method": ""}, "method is missing"),
    "zero spacing": ({"row_spacing_mm": 0.0}, "row_spacing_mm is 0.0"),
    "nan spacing": ({"col_spacing_mm": np.nan}, "col_spacing_mm is missing"),
    "inf spacing": ({"row_spacing_mm": np.inf}, "row_spacing_mm is inf"),
    "short hash": ({"image_sha256": "abc"}, "image_sha256 must be a SHA-256"),
    "upper hash": ({"annotation_sha256": "AB" * 32}, "annotation_sha256"),
    "unknown roi": ({"rois_present": "PS_L;XX_L"}, "rois_present is"),
    "repeated roi": ({"rois_present": "PS_L;PS_L"}, "rois_present is"),
    "no roi": ({"rois_present": ""}, "rois_present is missing"),
    "old schema": ({"schema_version": "0"}, "schema_version is '0'"),
    "naive time": ({"measured_at": "2026-11-24T07:30:00"}, "measured_at"),
    "bad time": ({"measured_at": "yesterday"}, "measured_at 'yesterday'"),
    "nan total": ({"PS_L_total_area_cm2": np.nan}, "PS_L_total_area_cm2 is empty but PS_L is outlined"),
    "empty bilateral": ({"PS_B_fi_pct": None}, "PS_B_fi_pct is empty but PS_L and PS_R"),
    "text area": ({"ES_R_fat_area_cm2": "2.8875"}, "ES_R_fat_area_cm2 must be a number"),
    "inf area": ({"MF_L_total_area_cm2": np.inf}, "MF_L_total_area_cm2 is inf"),
    "negative fat": (
        {"PS_L_fat_area_cm2": -0.1, "PS_L_muscle_area_cm2": 10.3375, "PS_L_fi_pct": 0.0},
        "PS_L_fat_area_cm2 is -0.1; areas cannot be negative",
    ),
    "fi above 100": ({"PS_R_fi_pct": 100.5}, "PS_R_fi_pct is 100.5; FI%"),
    "fi below 0": ({"PS_R_fi_pct": -0.5}, "PS_R_fi_pct is -0.5; FI%"),
    "lean + fat": (
        {"ES_L_muscle_area_cm2": 11.36375},  # 0.02 too much
        r"ES_L_muscle_area_cm2 \+ ES_L_fat_area_cm2 = 14\.4575 "
        r"but ES_L_total_area_cm2 = 14\.4375",
    ),
    "fi vs fat": ({"ESMF_B_fi_pct": 22.8}, "ESMF_B_fi_pct is 22.8 but 100 ×"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_bad_row_is_refused_naming_its_column(seeded, case):
    overrides, match = BAD_ROWS[case]
    row = make_example_row(**overrides)
    before = snapshot(seeded.parent)
    with pytest.raises(StoreError, match=match):
        validate_row(row)
    with pytest.raises(StoreError, match=match + ".*Nothing was written"):
        append_rows(seeded, row)
    assert snapshot(seeded.parent) == before


@pytest.mark.parametrize(
    ("absent", "column"),
    [
        ("MF_R", "MF_R_total_area_cm2"),
        ("MF_R", "ESMF_B_fi_pct"),
        ("PS_L", "PS_B_muscle_area_cm2"),
    ],
)
def test_a_measure_of_an_absent_outline_must_be_empty(seeded, absent, column):
    row = make_example_row(absent=[absent], **{column: 1.0})
    before = snapshot(seeded.parent)
    with pytest.raises(StoreError, match=f"{column} must be empty because {absent} is not in rois_present"):
        append_rows(seeded, row)
    assert snapshot(seeded.parent) == before


def test_a_required_column_left_out_is_named(seeded):
    row = make_example_row()
    del row["observer_id"]
    with pytest.raises(StoreError, match="observer_id is missing"):
        append_rows(seeded, row)
    with pytest.raises(StoreError, match="must be a dict"):
        validate_row(["P001"])


def test_absent_outlines_may_leave_their_columns_out(path, no_warnings):
    row = make_example_row(absent=["MF_R", "PS_L"])
    for col in [c for c, v in row.items() if v is None]:
        del row[col]
    append_rows(path, row)
    back = read_rows(path).iloc[0]
    assert back["rois_present"] == "PS_R;ES_L;ES_R;MF_L"
    assert np.isnan(back["ESMF_R_fi_pct"]) and np.isnan(back["PS_B_fi_pct"])
    assert back["ESMF_L_fi_pct"] == row["ESMF_L_fi_pct"]


def test_the_tolerances_are_a_hundredth(path):
    base = make_example_row()
    ok = make_example_row(
        PS_L_muscle_area_cm2=base["PS_L_muscle_area_cm2"] + 0.0099,
        PS_R_fi_pct=base["PS_R_fi_pct"] - 0.0099,
        ES_L_total_area_cm2=0.0,
        ES_L_muscle_area_cm2=0.0,
        ES_L_fat_area_cm2=0.0,
        ES_L_fi_pct=0.0,
    )
    ok.update(
        {c: v for c, v in make_example_row().items() if c.startswith(("ESMF_L", "ES_B", "ESMF_B"))}
    )  # sums are not cross-checked
    append_rows(path, ok)
    off = dict(ok, PS_R_fi_pct=base["PS_R_fi_pct"] - 0.0101)
    with pytest.raises(StoreError, match="PS_R_fi_pct"):
        append_rows(path, off)


def test_validate_row_normalises(no_warnings):
    row = validate_row(
        make_example_row(
            rois_present="MF_R;MF_L;ES_R;ES_L;PS_R;PS_L",
            measured_at=datetime(2026, 11, 24, 9, 30, tzinfo=timezone(timedelta(hours=2))),
            slice_index=np.int64(16),
            n_trees=200.0,
            PS_L_fi_pct=np.float32(8.25),
        )
    )
    assert row["rois_present"] == "PS_L;PS_R;ES_L;ES_R;MF_L;MF_R"
    assert row["measured_at"] == "2026-11-24T07:30:00.000000+00:00"
    assert type(row["slice_index"]) is int and row["n_trees"] == 200
    assert type(row["PS_L_fi_pct"]) is float
    assert list(row) == list(COLUMNS)
    assert validate_row(dict(row)) == row  # idempotent


def test_an_integer_beyond_64_bits_is_refused():
    """Readers hold integer columns as 64-bit integers: a larger seed would
    make every later read of the shared CSV fail."""
    with pytest.raises(StoreError, match="seed is 99999999999999999999; it must lie within"):
        validate_row(make_example_row(seed=99999999999999999999))
    assert validate_row(make_example_row(seed=2**63 - 1))["seed"] == 2**63 - 1


def test_a_bad_row_among_several_writes_none(seeded):
    rows = [make_example_row(patient_id=f"P{i}") for i in range(3)]
    rows[1]["PS_L_fi_pct"] = 101.0
    before = snapshot(seeded.parent)
    with pytest.raises(StoreError, match="row 2 of 3: PS_L_fi_pct"):
        append_rows(seeded, rows)
    assert snapshot(seeded.parent) == before


def test_row_ids_are_unique(seeded, no_warnings):
    (taken,) = read_rows(seeded)["row_id"]
    before = snapshot(seeded.parent)
    with pytest.raises(StoreError, match=f"row_id '{taken}' is already in"):
        append_rows(seeded, make_example_row(row_id=taken))
    with pytest.raises(StoreError, match="row_id 'x' is given twice"):
        append_rows(seeded, [make_example_row(row_id="x")] * 2)
    assert snapshot(seeded.parent) == before
    assert append_rows(seeded, make_example_row(row_id="-mine")) == ["-mine"]
    assert read_rows(seeded)["row_id"].iloc[-1] == "-mine"


# --- latest --------------------------------------------------------------


def test_latest_keeps_the_newest_row_per_reading(path, no_warnings):
    def at(hour, minute=0, **ids):
        stamp = f"2026-11-24T{hour:02d}:{minute:02d}:00+00:00"
        return make_example_row(measured_at=stamp, **ids)

    ids = append_rows(
        path,
        [
            at(10, patient_id="P1"),  # 0: superseded
            at(12, patient_id="P1"),  # 1: latest of P1/obs1
            at(11, patient_id="P1"),  # 2: older, later line
            at(9, patient_id="P1", observer_id="obs2"),  # 3: another observer
            at(8, patient_id="P1", session="read2"),  # 4: another session
            at(8, patient_id="P1", level="L3"),  # 5: another level
            at(7, patient_id="P2"),  # 6: tie, earlier line
            at(7, patient_id="P2"),  # 7: tie, later wins
            make_example_row(
                patient_id="P3",  # 8: 13:30 in UTC
                measured_at="2026-11-24T15:30:00+02:00",
            ),
            at(13, patient_id="P3"),  # 9: 13:00, older
        ],
    )
    latest = read_rows(path, latest=True)
    assert list(latest["row_id"]) == [ids[i] for i in (1, 3, 4, 5, 7, 8)]
    assert len(read_rows(path)) == 10


def test_a_broken_time_ranks_oldest(seeded):
    append_rows(seeded, make_example_row(patient_id="seed", measured_at="2000-01-01T00:00Z"))
    text = seeded.read_text(encoding="utf-8")
    first = text.splitlines()[1]
    broken = re.sub(r"2\d{3}-[^,]*\+00:00", "soon", first, count=1)
    seeded.write_text(text.replace(first, broken), encoding="utf-8")
    rows = read_rows(seeded)
    assert list(rows["measured_at"].str[:4]) == ["soon", "2000"]
    # the valid time wins although its line comes later and it is old
    (kept,) = read_rows(seeded, latest=True)["row_id"]
    assert kept == rows["row_id"].iloc[1]


# --- damaged files -------------------------------------------------------


def test_read_names_the_line_that_does_not_parse(seeded):
    good = seeded.read_bytes()
    seeded.write_bytes(good + b"a,b,c\n" + good[len(HEADER) :])
    with pytest.raises(StoreError, match="line 3: 3 fields where the header"):
        read_rows(seeded)
    seeded.write_bytes(good.replace(b",0.6875,", b",0.6875x,", 1))
    with pytest.raises(StoreError, match="line 2: row_spacing_mm is "):
        read_rows(seeded)
    seeded.write_bytes(good + good[len(HEADER) :].replace(b"seed", b"s\xffd"))
    with pytest.raises(StoreError, match="line 3: not UTF-8"):
        read_rows(seeded)


def test_read_warns_about_a_duplicated_row(seeded):
    good = seeded.read_bytes()
    seeded.write_bytes(good + good[len(HEADER) :])
    with pytest.warns(StoreWarning, match="appears more than once"):
        assert len(read_rows(seeded)) == 2


def test_a_torn_final_line_is_skipped_then_quarantined(seeded):
    torn = b"0,abc,torn-patient,obs"
    seeded.write_bytes(seeded.read_bytes() + torn)
    with pytest.warns(StoreWarning, match="ignored a torn final line"):
        assert list(read_rows(seeded)["patient_id"]) == ["seed"]
    with pytest.warns(StoreWarning, match=f"moved {len(torn)} bytes"):
        append_rows(seeded, make_example_row(patient_id="next"))
    quarantine = seeded.parent / (seeded.name + ".quarantine")
    comment, body, end = quarantine.read_bytes().split(b"\n")
    assert comment.startswith(b"# 20") and b"torn final line" in comment
    assert (body, end) == (torn, b"")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(read_rows(seeded)["patient_id"]) == ["seed", "next"]


def test_an_unfinished_call_is_undone_whole(seeded, tmp_path):
    """A dead writer's record gives the bytes of its call; they all go."""
    scratch = tmp_path / "scratch.csv"  # to get the bytes of a 3-row call
    append_rows(scratch, [make_example_row(patient_id=f"dead{i}") for i in range(3)])
    payload = scratch.read_bytes()[len(HEADER) :]
    first_two = payload.index(b"\n", payload.index(b"\n") + 1) + 1
    size = seeded.stat().st_size
    seeded.write_bytes(seeded.read_bytes() + payload[:first_two])  # no tear
    write_record(seeded, start=size, end=size + len(payload))
    with pytest.warns(StoreWarning, match="interrupted append of pid"):
        assert list(read_rows(seeded)["patient_id"]) == ["seed"]
    with pytest.warns(StoreWarning, match=f"moved {first_two} bytes"):
        append_rows(seeded, make_example_row(patient_id="next"))
    assert list(read_rows(seeded)["patient_id"]) == ["seed", "next"]
    quarantine = seeded.parent / (seeded.name + ".quarantine")
    assert quarantine.read_bytes().endswith(payload[:first_two])


# --- locking -------------------------------------------------------------


def test_a_held_lock_times_out_and_changes_nothing(seeded):
    before = snapshot(seeded.parent)
    with filelock.FileLock(str(seeded) + ".lock"):
        start = time.monotonic()
        with pytest.raises(
            StoreError,
            match=r"could not lock .* within 0.2 s"
            r": .*\.lock is held",
        ):
            append_rows(seeded, make_example_row(), timeout=0.2)
        assert time.monotonic() - start < 3
    assert snapshot(seeded.parent) == before


def test_a_live_writer_elsewhere_is_waited_for(seeded, no_warnings):
    write_record(seeded, pid=4242, host="other-host", start=0, end=10**6)
    before = snapshot(seeded.parent)
    with pytest.raises(StoreError, match="pid 4242 on other-host .* is appending"):
        append_rows(seeded, make_example_row(), timeout=0.2)
    assert snapshot(seeded.parent) == before
    assert len(read_rows(seeded)) == 0  # its rows are not acknowledged yet


@pytest.mark.parametrize(
    "record",
    [
        {"host": socket.gethostname()},  # this host, pid gone
        {"host": "other-host", "pid": 4242, "time": time.time() - 3600},
        "garbage",  # unreadable and old (by its file time)
    ],
)
def test_an_abandoned_writer_record_is_removed(seeded, record):
    if record == "garbage":
        writer = seeded.parent / (seeded.name + ".writer")
        writer.write_text('{"pid": 12')
        os.utime(writer, (time.time() - 3600,) * 2)
    else:
        write_record(seeded, **record)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        append_rows(seeded, make_example_row(), timeout=1)
    assert sorted(os.listdir(seeded.parent)) == [seeded.name, seeded.name + ".lock"]
    assert len(read_rows(seeded)) == 2


def test_an_empty_writer_record_is_removed_once_it_stays_empty(seeded):
    """A writer killed between creating its record and filling it."""
    (seeded.parent / (seeded.name + ".writer")).write_text("")
    with pytest.raises(StoreError, match="is appending"):
        append_rows(seeded, make_example_row(), timeout=0.5)
    start = time.monotonic()
    append_rows(seeded, make_example_row(), timeout=10)
    assert 2 <= time.monotonic() - start < 8  # after 2 s unchanged
    assert len(read_rows(seeded)) == 2


# --- failures ------------------------------------------------------------


@pytest.mark.parametrize("exists", [True, False])
def test_a_full_disk_changes_nothing(path, monkeypatch, exists):
    if exists:
        append_rows(path, make_example_row(patient_id="seed"))
    before = snapshot(path.parent)
    fail_os(monkeypatch, path)
    with pytest.raises(StoreError, match="No space left on device.*Nothing was written"):
        append_rows(path, [make_example_row(patient_id=f"P{i}") for i in range(3)])
    monkeypatch.undo()
    assert snapshot(path.parent) == before
    assert path.exists() == exists


def test_a_failed_fsync_undoes_the_append(seeded, monkeypatch):
    before = snapshot(seeded.parent)
    fail_os(monkeypatch, seeded, name="fsync", err=errno.EIO)
    with pytest.raises(StoreError, match="Input/output error"):
        append_rows(seeded, make_example_row())
    monkeypatch.undo()
    assert snapshot(seeded.parent) == before


def test_a_full_disk_while_quarantining_keeps_the_torn_line(seeded, monkeypatch):
    seeded.write_bytes(seeded.read_bytes() + b"torn")
    quarantine = seeded.parent / (seeded.name + ".quarantine")
    quarantine.write_bytes(b"# earlier\nold\n")
    before = snapshot(seeded.parent)
    fail_os(monkeypatch, quarantine)
    with pytest.raises(StoreError, match="No space left on device"):
        append_rows(seeded, make_example_row())
    monkeypatch.undo()
    assert snapshot(seeded.parent) == before


def test_a_full_disk_while_recording_the_writer_leaves_no_record(seeded, monkeypatch):
    before = snapshot(seeded.parent)
    fail_os(monkeypatch, seeded.parent / (seeded.name + ".writer"))
    with pytest.raises(StoreError, match="No space left on device; check"):
        append_rows(seeded, make_example_row())
    monkeypatch.undo()
    assert snapshot(seeded.parent) == before
    append_rows(seeded, make_example_row(), timeout=0.5)  # nothing blocks


def test_an_acknowledged_append_was_fsynced(path, monkeypatch):
    real, synced = os.fsync, []
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_ino), real(fd))[1])
    append_rows(path, make_example_row())  # creates the file
    assert path.stat().st_ino in synced
    assert path.parent.stat().st_ino in synced  # its directory entry too
    synced.clear()
    append_rows(path, make_example_row())
    assert synced == [path.stat().st_ino]


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(StoreError, match="does not exist; create it or connect the network share"):
        append_rows(tmp_path / "gone" / "m.csv", make_example_row())
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_folder_is_refused(path, monkeypatch):
    deny_open(monkeypatch, path.parent)
    with pytest.raises(StoreError, match="Permission denied.*writable by every observer"):
        append_rows(path, make_example_row())
    monkeypatch.undo()
    assert list(path.parent.iterdir()) == []


def test_a_file_held_by_a_spreadsheet_is_refused(seeded, monkeypatch):
    before = snapshot(seeded.parent)
    deny_open(monkeypatch, seeded.parent, only=seeded)
    with pytest.raises(StoreError, match="if a spreadsheet has it open"):
        append_rows(seeded, make_example_row())
    monkeypatch.undo()
    assert snapshot(seeded.parent) == before


# --- real processes ------------------------------------------------------

WORKER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {rows_dir!r})
    from _rows import make_example_row
    from napari_pvm.core.store import append_rows
    path, go, name, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.002)
    for i in range(n):
        row = make_example_row(patient_id=f"{{name}}-{{i:04d}}",
                               observer_id=name)
        print(append_rows(path, row, timeout=60)[0], flush=True)
""").format(rows_dir=ROWS_DIR)

DYING = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {rows_dir!r})
    from _rows import make_example_row
    from napari_pvm.core.store import append_rows
    path, cut = sys.argv[1], sys.argv[2]
    for i in range(5):
        row = make_example_row(patient_id=f"ok{{i}}")
        print(append_rows(path, row)[0], flush=True)
    real_write = os.write
    def dying_write(fd, data):
        data = bytes(data)
        if cut == "record" and b'"since"' in data:  # the new writer record
            os.kill(os.getpid(), signal.SIGKILL)
        if b"KILL" in data:  # the CSV payload: write part of it, then die
            real_write(fd, data[:int(len(data) * float(cut))])
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write(fd, data)
    os.write = dying_write
    append_rows(path, [make_example_row(patient_id=f"KILL{{i}}")
                       for i in range(3)])
""").format(rows_dir=ROWS_DIR)


def spawn(script, *args):
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE, text=True)


def test_threads_of_one_process_append_without_losing_rows(path):
    def append(k):
        return [append_rows(path, make_example_row(patient_id=f"t{k}-{i}"))[0] for i in range(40)]

    with ThreadPoolExecutor(4) as pool:
        acked = [i for ids in pool.map(append, range(4)) for i in ids]
    assert sorted(read_rows(path)["row_id"]) == sorted(acked)


def test_four_processes_append_1000_rows_exactly_once(path, tmp_path):
    go = tmp_path / "go"
    workers = [spawn(WORKER, path, go, f"w{k}", 250) for k in range(4)]
    try:
        for worker in workers:
            assert worker.stdout.readline() == "ready\n"
        go.touch()  # all four start appending at the same moment
        acked = [worker.communicate(timeout=120)[0].split() for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    assert [worker.returncode for worker in workers] == [0] * 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = read_rows(path)
    assert len(table) == 1000 and table["row_id"].is_unique
    assert set(table["row_id"]) == {i for ids in acked for i in ids}
    for k in range(4):  # each process's rows, once each, in its order
        mine = table[table["observer_id"] == f"w{k}"]
        assert list(mine["patient_id"]) == [f"w{k}-{i:04d}" for i in range(250)]
        assert list(mine["row_id"]) == acked[k]
    assert path.read_bytes().count(b"schema_version") == 1
    assert sorted(os.listdir(path.parent)) == [path.name, path.name + ".lock"]
    for row in table.sample(50, random_state=0).to_dict("records"):
        assert validate_row(row)["row_id"] == row["row_id"]


@posix_only
@pytest.mark.parametrize("cut", [0.5, 2 / 3])  # mid-row; on a row boundary
def test_a_writer_killed_mid_write_loses_only_its_unfinished_call(path, cut):
    child = spawn(DYING, path, cut)
    acked = child.communicate(timeout=60)[0].split()
    assert child.returncode == -signal.SIGKILL and len(acked) == 5
    assert b"KILL0" in path.read_bytes()  # it did die in the middle
    with pytest.warns(StoreWarning, match="interrupted append"):
        assert list(read_rows(path)["row_id"]) == acked
    with pytest.warns(StoreWarning, match="moved"):
        acked += append_rows(path, make_example_row(patient_id="after"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(read_rows(path)["row_id"]) == acked
    quarantine = (path.parent / (path.name + ".quarantine")).read_bytes()
    assert b"KILL0" in quarantine and b"KILL" not in path.read_bytes()


@posix_only
def test_a_writer_killed_before_filling_its_record_blocks_briefly(path):
    child = spawn(DYING, path, "record")
    acked = child.communicate(timeout=60)[0].split()
    assert child.returncode == -signal.SIGKILL and len(acked) == 5
    assert (path.parent / (path.name + ".writer")).read_bytes() == b""
    before = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        acked += append_rows(path, make_example_row(), timeout=10)
        assert list(read_rows(path)["row_id"]) == acked
    assert path.read_bytes().startswith(before)


@posix_only
@pytest.mark.parametrize("acks", [17, 60])
def test_a_writer_killed_at_random_keeps_every_acknowledged_row(path, tmp_path, acks):
    go = tmp_path / "go"
    go.touch()
    with spawn(WORKER, path, go, "victim", 100_000) as child:
        try:
            assert child.stdout.readline() == "ready\n"
            acked = [child.stdout.readline().strip() for _ in range(acks)]
            os.kill(child.pid, signal.SIGKILL)
            acked += child.stdout.read().split()  # acknowledged before it
        finally:
            child.kill()  # reaped on leaving "with": its pid is then gone
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)  # a torn line, maybe
        seen = list(read_rows(path)["row_id"])
        append_rows(path, make_example_row(patient_id="after"), timeout=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = read_rows(path)
    assert table["row_id"].is_unique
    assert set(acked) <= set(seen) and set(acked) <= set(table["row_id"])
    assert len(table) - len(acked) in (1, 2)  # "after", maybe the last call


def test_refused_header_or_folder_leaves_no_lock_file(tmp_path):
    from _rows import make_example_row

    from napari_pvm.core.errors import StoreError
    from napari_pvm.core.store import append_rows

    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(StoreError, match="header"):
        append_rows(other, [make_example_row()])
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(StoreError, match="is a folder"):
        append_rows(tmp_path / "dir.csv", [make_example_row()])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.csv", "other.csv"]


# --- one latest rule (issue 15, item 3) ----------------------------------


def test_latest_rows_ranks_missing_and_naive_times_oldest(no_warnings):
    def row(rid, when, **ids):
        base = {
            "patient_id": "P1",
            "observer_id": "A",
            "level": "L4",
            "session": "read1",
            "measured_at": when,
            "row_id": rid,
        }
        return {**base, **ids}

    frame = pd.DataFrame(
        [
            row("valid", "2020-01-01T00:00:00+00:00"),
            row("missing", None),
            row("naive", "2030-01-01T00:00:00"),  # no zone: oldest
            row("garbage", "tomorrow"),
            row("b-only-bad", "x", patient_id="P2"),  # alone: still kept
            row("b-later-bad", float("nan"), patient_id="P2"),  # tie: later wins
            row("zone", "2026-01-01T01:30:00+02:00", patient_id="P3"),  # 23:30
            row("utc", datetime(2025, 12, 31, 23, 0, tzinfo=timezone.utc), patient_id="P3"),
            row("empty-key", "2020-01-01T00:00:00+00:00", session=np.nan),
            row("empty-key2", "2020-01-01T00:00:00+00:00", session=""),
        ]
    )
    latest = latest_rows(frame)
    assert list(latest["row_id"]) == ["valid", "b-later-bad", "zone", "empty-key2"]
    assert list(latest.index) == [0, 1, 2, 3]
    assert list(frame["row_id"])[0] == "valid"  # the input is not changed
    # the chosen rows keep file order: A's latest comes after B's only row
    order = pd.DataFrame(
        [
            row("A-old", "2020-01-01T00:00Z"),
            row("B", "2020-01-01T00:00Z", patient_id="P9"),
            row("A-new", "2021-01-01T00:00Z"),
        ]
    )
    assert list(latest_rows(order)["row_id"]) == ["B", "A-new"]
    with pytest.raises(StoreError, match="no level column"):
        latest_rows(frame.drop(columns="level"))
    with pytest.raises(StoreError, match="unknown table 'bone'"):
        latest_rows(frame, table="bone")


def test_read_rows_latest_is_latest_rows(path, no_warnings):
    rows = [
        make_example_row(patient_id=p, session=s, measured_at=f"2026-01-0{d}T00:00:00+00:00")
        for p, s, d in [("P1", "read1", 2), ("P1", "read1", 1), ("P1", "read2", 1), ("P2", "read1", 3)]
    ]
    append_rows(path, rows)
    everything = read_rows(path)
    pd.testing.assert_frame_equal(read_rows(path, latest=True), latest_rows(everything))
    assert list(read_rows(path, latest=True)["row_id"]) == list(everything["row_id"].iloc[[0, 2, 3]])


# --- spine table (contract 8) --------------------------------------------


def test_spine_rows_round_trip_in_their_own_table(path, no_warnings):
    spine = path.with_name("spine.csv")
    ids = append_rows(
        spine,
        [
            make_spine_row(),
            make_spine_row(vbq=None, vbq_levels="", vbq_si_L1=None, vbq_si_L3=None, vbq_si_L4=None, vbq_si_csf=None),
        ],
        table="spine",
    )
    assert spine.read_bytes().startswith((expected_header(table="spine") + "\n").encode())
    back = read_rows(spine, table="spine")
    assert list(back.columns) == list(SPINE_COLUMNS)
    assert list(back["row_id"]) == ids
    assert back["vbq"].iloc[0] == 3.0 and np.isnan(back["vbq_si_L2"].iloc[0])
    assert back["vbq_levels"].iloc[0] == "L1;L3;L4"
    assert back["schema_version"].iloc[0] == SPINE_SCHEMA_VERSION
    assert np.isnan(back["vbq"].iloc[1])
    assert back["local_kyphosis_deg"].iloc[1] == 12.5
    assert back["slice_index"].dtype == "Int64"


BAD_SPINE = {
    "nothing": (
        {
            "vbq": None,
            "vbq_levels": "",
            "vbq_si_L1": None,
            "vbq_si_L3": None,
            "vbq_si_L4": None,
            "vbq_si_csf": None,
            "local_kyphosis_deg": None,
        },
        "neither vbq nor",
    ),
    "zero vbq": ({"vbq": 0.0}, "vbq is 0.0"),
    "inf vbq": ({"vbq": np.inf}, "vbq is inf"),
    "angle -90": ({"local_kyphosis_deg": -90.0}, r"\(-90, 90\]"),
    "angle 91": ({"local_kyphosis_deg": 91.0}, r"\(-90, 90\]"),
    "nan angle only": (
        {
            "vbq": None,
            "vbq_levels": "",
            "vbq_si_L1": None,
            "vbq_si_L3": None,
            "vbq_si_L4": None,
            "vbq_si_csf": None,
            "local_kyphosis_deg": np.nan,
        },
        "neither",
    ),
    "bad level": ({"vbq_levels": "L1;L5"}, "vbq_levels is 'L1;L5'"),
    "twice": ({"vbq_levels": "L1;L1;L3;L4"}, "vbq_levels is"),
    "excluded filled": ({"vbq_si_L2": 5.0}, "vbq_si_L2 must be empty"),
    "included empty": ({"vbq_si_L3": None}, "vbq_si_L3 is empty but L3"),
    "zero csf": ({"vbq_si_csf": 0.0}, "vbq_si_csf is 0.0"),
    "wrong vbq": ({"vbq": 3.1}, "median of the vbq_si"),
    "no csf": ({"vbq_si_csf": None}, "vbq_si_csf is empty"),
    "no level": ({"vbq_levels": ""}, "vbq_si_L1 must be empty because L1"),
    "no level at all": (
        {"vbq_levels": "", "vbq_si_L1": None, "vbq_si_L3": None, "vbq_si_L4": None},
        "vbq_levels is empty",
    ),
    "muscle column": ({"level": "L4"}, "unknown column 'level'"),
    "short hash": ({"image_sha256": "ab"}, "image_sha256 must be"),
    "no observer": ({"observer_id": ""}, "observer_id is missing"),
    "text angle": ({"local_kyphosis_deg": "12"}, "must be a number"),
    "muscle version": ({"schema_version": "2"}, "schema_version is '2'"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPINE))
def test_a_bad_spine_row_is_refused(path, case):
    overrides, match = BAD_SPINE[case]
    with pytest.raises(StoreError, match=match):
        validate_row(make_spine_row(**overrides), table="spine")
    spine = path.with_name("spine.csv")
    with pytest.raises(StoreError, match=match):
        append_rows(spine, make_spine_row(**overrides), table="spine")
    assert not spine.exists()


def test_spine_row_limits_and_normalising(no_warnings):
    # signals without a score (no CSF ROI) are kept with the angle
    partial = validate_row(make_spine_row(vbq=None, vbq_si_csf=None), table="spine")
    assert partial["vbq_si_L3"] == 280.0 and partial["vbq"] is None
    row = validate_row(make_spine_row(local_kyphosis_deg=90, vbq_levels="L4;L3;L1"), table="spine")
    assert row["local_kyphosis_deg"] == 90.0
    assert row["vbq_levels"] == "L1;L3;L4"
    # an even count: the median is the mean of the middle two (300+320)/2/50
    row = validate_row(
        make_spine_row(vbq_levels="L1;L2;L3;L4", vbq_si_L2=330.0, vbq_si_csf=50.0, vbq=6.2, local_kyphosis_deg=-89.5),
        table="spine",
    )
    assert row["vbq"] == 6.2 and list(row) == list(SPINE_COLUMNS)


def test_the_tables_are_kept_apart(path, no_warnings):
    append_rows(path, make_example_row())
    spine = path.with_name("spine.csv")
    append_rows(spine, make_spine_row(), table="spine")
    before = snapshot(path.parent)
    with pytest.raises(StoreError, match="is a napari-pvm muscle measurement table, not a spine"):
        append_rows(path, make_spine_row(), table="spine")
    with pytest.raises(StoreError, match="is a napari-pvm spine measurement"):
        read_rows(spine)
    with pytest.raises(StoreError, match="unknown column 'vbq'"):
        append_rows(path, make_spine_row())
    assert snapshot(path.parent) == before


def test_latest_spine_takes_each_measure_from_its_latest_row(path, no_warnings):
    spine = path.with_name("spine.csv")
    mri = make_spine_row(measured_at="2026-01-01T09:00:00+00:00", local_kyphosis_deg=10.0)
    xray = make_spine_row(
        measured_at="2026-01-02T09:00:00+00:00",
        vbq=None,
        vbq_levels="",
        vbq_si_L1=None,
        vbq_si_L3=None,
        vbq_si_L4=None,
        vbq_si_csf=None,
        local_kyphosis_deg=15.0,
        slice_index=0,
    )
    redo = make_spine_row(
        measured_at="2026-01-03T09:00:00+00:00",
        vbq_levels="L1;L2;L3",
        vbq_si_L2=290.0,
        vbq_si_L4=None,
        vbq=2.9,
        vbq_si_csf=100.0,
        local_kyphosis_deg=None,
    )
    other = make_spine_row(session="read2", measured_at="2020-01-01T00:00Z")
    ids = append_rows(spine, [mri, xray, redo, other], table="spine")
    latest = read_rows(spine, latest=True, table="spine")
    assert list(latest["session"]) == ["read1", "read2"]
    first = latest.iloc[0]
    assert first["row_id"] == ids[2]  # identity of the latest row
    assert first["vbq"] == 2.9 and first["vbq_levels"] == "L1;L2;L3"
    assert first["vbq_si_L2"] == 290.0 and np.isnan(first["vbq_si_L4"])
    assert first["vbq_row_id"] == ids[2]
    assert first["local_kyphosis_deg"] == 15.0
    assert first["local_kyphosis_deg_row_id"] == ids[1]
    assert first["local_kyphosis_deg_measured_at"].startswith("2026-01-02")
    assert latest["slice_index"].dtype == "Int64"
    # without a VBQ in any row of the key: empty, and no source
    only_angle = latest_rows(read_rows(spine, table="spine").iloc[[1]], table="spine").iloc[0]
    assert np.isnan(only_angle["vbq"]) and only_angle["vbq_levels"] == ""
    assert only_angle["vbq_row_id"] == ""


# --- schema versions -----------------------------------------------------


def v1_file(path, n=2):
    """A muscle table as version 1 wrote it (its columns: V1_COLUMNS)."""
    lines = [",".join(V1_COLUMNS)]
    for i in range(n):
        row = validate_row(make_example_row(patient_id=f"00{i}"))
        row.update(schema_version="1")
        line = io.StringIO()
        csv.writer(line, lineterminator="").writerow(
            ["" if row[c] is None else (repr(row[c]) if isinstance(row[c], float) else str(row[c])) for c in V1_COLUMNS]
        )
        lines.append(line.getvalue())
    path.write_bytes(("\n".join(lines) + "\n").encode())
    return path


def test_a_version_1_file_is_read_with_empty_new_columns(path, no_warnings):
    v1_file(path)
    rows = read_rows(path)
    assert list(rows.columns) == list(COLUMNS)
    assert list(rows["schema_version"]) == ["1", "1"]
    assert list(rows["patient_id"]) == ["000", "001"]
    assert (rows["outline_origin"] == "").all()
    assert rows["VB_total_area_cm2"].isna().all()
    assert rows["ESMF_B_mean_ff_pct"].isna().all()
    assert rows["ESMF_B_fi_pct"].iloc[0] == make_example_row()["ESMF_B_fi_pct"]
    assert file_schema_version(path) == "1"


def test_appending_to_a_version_1_file_is_refused_untouched(path):
    v1_file(path)
    before = snapshot(path.parent)
    with pytest.raises(StoreError) as info:
        append_rows(path, make_example_row())
    message = str(info.value)
    assert "schema version 1" in message and "writes version 2" in message
    assert f"napari-pvm migrate-csv {path}" in message
    assert "Nothing was written" in message
    assert snapshot(path.parent) == before
    assert not path.with_name(path.name + ".lock").exists()


V2_RULES = {
    "origin of an absent outline": ({"outline_origin": "PS_L:drawn;PS_R:drawn"}, "outline_origin is"),
    "unknown origin": (
        {
            "outline_origin": ";".join(
                f"{k}:{'traced' if k == 'MF_R' else 'drawn'}" for k in ("PS_L", "PS_R", "ES_L", "ES_R", "MF_L", "MF_R")
            )
        },
        "origin one of drawn, proposed, edited",
    ),
    "zero contrast": ({"fat_muscle_contrast": 0.0}, "fat_muscle_contrast is"),
    "upper flag": ({"qc_flags": "Low_contrast"}, "qc_flags has"),
    "flag twice": ({"qc_flags": "low_contrast;low_contrast"}, "twice"),
    "ff above 100": ({"PS_L_mean_ff_pct": 101.0}, "PS_L_mean_ff_pct is 101"),
    "ff partial": ({"PS_L_mean_ff_pct": 5.0}, "PS_R_mean_ff_pct is empty"),
    "zero vb": ({"VB_total_area_cm2": 0.0}, "VB_total_area_cm2 is 0.0"),
}


@pytest.mark.parametrize("case", sorted(V2_RULES))
def test_version_2_columns_are_checked(seeded, case):
    overrides, match = V2_RULES[case]
    before = snapshot(seeded.parent)
    with pytest.raises(StoreError, match=match):
        append_rows(seeded, make_example_row(**overrides))
    assert snapshot(seeded.parent) == before


def test_version_2_rows_normalise_and_allow_empty_settings(path, no_warnings):
    row = validate_row(
        make_example_row(
            absent=["MF_R"],
            outline_origin="ES_R:edited;PS_L:proposed;PS_R:drawn;ES_L:drawn;MF_L:drawn",
            qc_flags="low_contrast;fat_sample",
        )
    )
    assert row["outline_origin"] == ("PS_L:proposed;PS_R:drawn;ES_L:drawn;ES_R:edited;MF_L:drawn")
    assert row["schema_version"] == "2"
    dixon = make_example_row(dixon=True, absent=["PS_L"])
    assert dixon.get("PS_L_mean_ff_pct") is None
    append_rows(path, [dixon, make_example_row(outline_origin="", VB_total_area_cm2=None, fat_muscle_contrast=None)])
    back = read_rows(path)
    assert back["n_trees"].isna().tolist() == [True, False]
    assert back["features_preset"].tolist() == ["", "weka"]
    assert back["ESMF_B_mean_ff_pct"].iloc[0] == pytest.approx(
        (14.4375 * 18.25 + 15.1125 * 16.0 + 5.34375 * 27.5 + 5.68125 * 25.125) / (14.4375 + 15.1125 + 5.34375 + 5.68125)
    )
    with pytest.raises(StoreError, match="ESMF_B_mean_ff_pct is .* area-"):
        validate_row(dict(dixon, ESMF_B_mean_ff_pct=dixon["ESMF_B_mean_ff_pct"] + 0.02))


# --- careless input (reviewer's findings) --------------------------------


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc, a folder nobody can create files in")
def test_an_impossible_folder_is_refused_at_once_not_as_a_held_lock():
    # filelock retried creating /proc/m.csv.lock until the timeout and then blamed a held lock
    for call in (lambda: check_appendable("/proc/m.csv"), lambda: append_rows("/proc/m.csv", make_example_row())):
        with pytest.raises(StoreError, match=r"the folder /proc is not writable .*writable by every observer") as info:
            call()
        assert "lock" not in str(info.value).split(";")[0]


def test_a_semicolon_table_is_named_briefly(path, no_warnings):
    rows = [make_example_row(patient_id="P1"), make_example_row(patient_id="P2")]
    append_rows(path, rows)
    semi = path.with_name("semi.csv")
    semi.write_bytes(path.read_bytes().replace(b",", b";"))
    before = semi.read_bytes()
    for call in (
        lambda: read_rows(semi),
        lambda: append_rows(semi, make_example_row()),
        lambda: check_appendable(semi),
    ):
        with pytest.raises(
            StoreError,
            match=r"not a comma-separated napari-pvm muscle measurement table \(schema version \d+\): it uses se",
        ):
            call()
    message = str(pytest.raises(StoreError, read_rows, semi).value)
    assert len(message.replace(str(semi), "")) < 300 and "schema_version;" not in message
    assert semi.read_bytes() == before


def test_a_foreign_header_is_quoted_short(path):
    path.write_text("x" * 500 + ",b\n1,2\n")
    message = str(pytest.raises(StoreError, read_rows, path).value)
    assert "column 1 is 'xxx" in message and len(message.replace(str(path), "")) < 250
