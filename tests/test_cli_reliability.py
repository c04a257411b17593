"""``napari-pvm reliability MEASUREMENTS.csv [--json]`` (contract 4, issue 6 items 3 and 5)."""

import json

import numpy as np
import pytest

from napari_pvm import cli
from napari_pvm.core.stats import reliability as rel
from napari_pvm.core import schema

AREA = "PS_L_total_area_cm2"
FI = "ESMF_B_fi_pct"
CONST = "MF_L_fi_pct"  # no fat drawn in the multifidus: constant 0

#: Keys the issue names for every measure object.
ISSUE_KEYS = {
    "measure",
    "n",
    "icc2_1",
    "icc2_1_ci",
    "icc3_1",
    "icc3_1_ci",
    "bias",
    "loa_low",
    "loa_high",
    "sem",
    "mdc95",
}


def _rect(shape, top, left, height, width):
    mask = np.zeros(shape, bool)
    mask[top : top + height, left : left + width] = True
    return mask


def measurement_rows(observers=("A", "B"), n=10, seed=0, session="read1", drop=()):
    """Valid contract-3 rows, measured from rectangle outlines by ``measure_masks``.

    Patient i's muscles have a true size and fat fraction; each observer's
    outline differs by a pixel or two, and A draws a little larger. The
    multifidus has no fat, so every ``MF_*_fi_pct`` column is constant (0).
    ``drop`` holds (observer, patient index, outline) left undrawn.
    """
    from napari_pvm.core.measure import measure_masks, rois_present

    rng = np.random.default_rng(seed)
    size = rng.integers(12, 24, size=(n, 3))  # PS, ES, MF side lengths (pixels)
    fat_rows = rng.integers(1, 8, size=n)  # rows of fat at the top of each ES
    shape = (40, 160)
    rows = []
    for j, observer in enumerate(observers):
        for i in range(n):
            masks = {}
            fat = np.zeros(shape, bool)
            for s, side in enumerate(("L", "R")):
                for m, muscle in enumerate(("PS", "ES", "MF")):
                    h = int(size[i, m] + rng.integers(-1, 2) + (1 if j == 0 else 0))
                    w = int(size[i, m] + rng.integers(-1, 2))
                    left = 80 * s + 26 * m
                    masks[f"{muscle}_{side}"] = _rect(shape, 1, left, h, w)
                    if muscle == "ES":
                        k = int(fat_rows[i] + rng.integers(0, 2))
                        fat |= _rect(shape, 1, left, k, w)
            for who, idx, key in drop:
                if who == observer and idx == i:
                    masks.pop(key)
            row = measure_masks(masks, fat, spacing=(0.7, 0.7))
            row.update(
                patient_id=f"{i:03d}",
                observer_id=observer,
                session=session,
                level="L4",
                slice_index=16,
                row_spacing_mm=0.7,
                col_spacing_mm=0.7,
                image_sha256=f"{i:064x}",
                method="random_forest",
                features_preset="weka",
                n_trees=200,
                seed=0,
                class_balance="balanced",
                rois_present=rois_present(masks),
                software_version="0.0.test",
            )
            rows.append(row)
    return rows


def write_csv(path, rows):
    """Append the rows to a new shared CSV through ``core.store``."""
    from napari_pvm.core.store import append_rows

    append_rows(path, rows)
    return path


def run_cli(capsys, *argv):
    status = cli.main(["reliability", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def strict_json(text):
    def refuse(constant):
        raise AssertionError(f"{constant} in JSON output")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def two_observers(tmp_path):
    # Observer A did not outline the right erector spinae of patient 003.
    rows = measurement_rows(drop=[("A", 3, "ES_R")])
    return write_csv(tmp_path / "measurements.csv", rows)


def test_json_has_the_issue_keys(capsys, two_observers):
    status, out, err = run_cli(capsys, two_observers, "--json")
    assert status == 0 and err == ""
    data = strict_json(out)
    assert data["observers"] == ["A", "B"]
    assert data["n_patients_both"] == 10
    assert data["session"] == "read1" and data["level"] == "L4"
    by_measure = {m["measure"]: m for m in data["measures"]}
    assert set(by_measure) == set(schema.MEASURE_COLUMNS)  # every group is drawn
    for item in by_measure.values():
        assert ISSUE_KEYS <= set(item)
        assert isinstance(item["pairs"], list) and len(item["pairs"]) == 1

    area = by_measure[AREA]
    assert area["n"] == 10
    low, high = area["icc2_1_ci"]
    assert low < area["icc2_1"] < high
    assert len(area["icc3_1_ci"]) == 2
    assert area["loa_low"] < area["bias"] < area["loa_high"]
    assert area["mdc95"] == pytest.approx(1.96 * 2**0.5 * area["sem"])
    assert area["icc2_k"] > area["icc2_1"]
    assert area["note"] is None
    # The same numbers as the core on the same file.
    from napari_pvm.core.store import read_rows

    table = rel.reliability_table(read_rows(two_observers)).set_index("measure")
    assert area["icc2_1"] == pytest.approx(table.loc[AREA, "icc2_1"], rel=1e-12)
    assert area["bias"] == pytest.approx(table.loc[AREA, "bias"], rel=1e-12)

    # Missing values: counted and said.
    fi = by_measure[FI]
    assert (fi["n"], fi["n_missing"]) == (9, 1)
    assert "1 of 10 patients left out" in fi["note"] and "(A: 1)" in fi["note"]
    assert by_measure["ES_L_fi_pct"]["n_missing"] == 0
    assert fi["icc2_1"] is not None

    # A constant measure: null values and a note, never NaN.
    const = by_measure[CONST]
    assert "constant" in const["note"]
    for key in ("icc2_1", "icc2_1_ci", "icc3_1", "icc3_1_ci", "bias", "loa_low", "loa_high", "sem", "mdc95"):
        assert const[key] is None


def test_text_output_is_a_readable_table(capsys, two_observers):
    status, out, err = run_cli(capsys, two_observers)
    assert status == 0 and err == ""
    assert "Inter-observer reliability" in out
    assert "observers A, B" in out
    assert "read by both: 10" in out
    assert "ICC(2,1)" in out and "ICC(3,1)" in out and "MDC95" in out
    assert "nan" not in out.lower()
    line = next(ln for ln in out.splitlines() if ln.startswith(AREA))
    assert "[" in line and "]" in line
    assert f"{CONST} [" in out and "constant" in out  # footnote mark and its note


def test_more_than_two_observers_lists_every_pair(capsys, tmp_path):
    path = write_csv(tmp_path / "m.csv", measurement_rows(("C", "A", "B"), n=8, seed=1))
    status, out, _ = run_cli(capsys, path, "--json", "--measures", AREA)
    assert status == 0
    data = strict_json(out)
    assert data["observers"] == ["A", "B", "C"]
    (item,) = data["measures"]
    pairs = [(p["observer_a"], p["observer_b"]) for p in item["pairs"]]
    assert pairs == [("A", "B"), ("A", "C"), ("B", "C")]
    assert item["bias"] == pytest.approx(item["pairs"][0]["bias"])
    assert item["n_observers"] == 3


def test_intra_observer(capsys, tmp_path):
    rows = measurement_rows(("A",), seed=2) + measurement_rows(("A",), seed=3, session="read2")
    path = write_csv(tmp_path / "m.csv", rows)
    status, out, _ = run_cli(capsys, path, "--intra", "A", "--json", "--measures", AREA)
    assert status == 0
    data = strict_json(out)
    assert data["mode"] == "intra-observer"
    assert data["sessions"] == ["read1", "read2"]
    assert data["measures"][0]["session_a"] == "read1"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (lambda: measurement_rows(("A",)), "only observer 'A'"),
        (
            lambda: (
                measurement_rows(("A",))
                + [{**r, "patient_id": "X" + r["patient_id"]} for r in measurement_rows(("B",))]
            ),
            "no patient was measured by both",
        ),
        (lambda: measurement_rows(session="read2") + measurement_rows(("A",), seed=4), "only observer 'A'"),
    ],
    ids=["one-observer", "no-common-patient", "one-observer-in-read1"],
)
def test_bad_input_is_one_error_line(capsys, tmp_path, rows, message):
    path = write_csv(tmp_path / "m.csv", rows())
    for extra in ((), ("--json",)):
        status, out, err = run_cli(capsys, path, *extra)
        assert status == 2
        assert out == ""
        assert err.startswith("error: ") and err.count("\n") == 1
        assert message in err


def test_bad_options(capsys, two_observers, tmp_path):
    status, _, err = run_cli(capsys, two_observers, "--session", "read7")
    assert status == 2 and "no rows with session 'read7'" in err
    status, _, err = run_cli(capsys, two_observers, "--measures", "PS_L_nonsense")
    assert status == 2 and "no such column" in err and "PS_L_nonsense" in err
    status, _, err = run_cli(capsys, tmp_path / "absent.csv")
    assert status == 2 and err.startswith("error: ")
    (tmp_path / "clinical.csv").write_text("patient_id,residual_lbp,age,bmi\n001,1,70,25\n")
    status, out, err = run_cli(capsys, tmp_path / "clinical.csv")
    assert status == 2 and out == "" and err.count("\n") == 1
    assert (
        "clinical.csv is not a napari-pvm measurement table (its header starts patient_id, residual_lbp, age, …)" in err
    )
    assert "written by napari-pvm measure, batch or spine" in err


def test_a_header_only_file_is_named_in_the_error(capsys, tmp_path, two_observers):
    header = two_observers.read_text(encoding="utf-8").splitlines()[0]
    empty = tmp_path / "empty_measurements.csv"
    empty.write_text(header + "\n", encoding="utf-8")
    status, out, err = run_cli(capsys, empty)
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "empty_measurements.csv has no rows" in err


def test_a_torn_last_line_is_one_plain_note(tmp_path, two_observers):
    # a real process, so that Python's warning machinery prints as it would for a user
    import subprocess
    import sys
    from pathlib import Path

    with open(two_observers, "a", encoding="utf-8") as handle:
        handle.write("2,torn-row,001,A")  # a writer killed mid-line: no newline, too few cells
    exe = str(Path(sys.executable).with_name("napari-pvm"))
    done = subprocess.run([exe, "reliability", str(two_observers)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    notes = done.stderr.splitlines()
    assert notes and all(line.startswith("note: ") for line in notes)
    assert "Warning" not in done.stderr and ".py:" not in done.stderr
