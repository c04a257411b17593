"""Statistics input: one reading per patient × observer, flagged rows, the spine table,
derived measures, outline origins, and spreadsheet tables."""

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from _rows import make_example_row, make_spine_row
from napari_pvm.cli import main
from napari_pvm.core.errors import StatsInputError
from napari_pvm.core.stats import analyse, inter_observer, merge_measurements, select_rows
from napari_pvm.core.stats.input import derived_measures
from napari_pvm.core.stats.reliability import outline_origins
from napari_pvm.core.store import append_rows
from napari_pvm.core.tables import read_table

AREA = "PS_B_total_area_cm2"


def _muscle(patient, observer, when, *, session="read1", scale=1.0, **extra):
    """A valid muscle row whose areas are scaled (so rows differ by a known factor)."""
    row = make_example_row(patient_id=patient, observer_id=observer, session=session, measured_at=when, **extra)
    for key, value in list(row.items()):
        if key.endswith("_area_cm2") and value is not None and not key.startswith("VB"):
            row[key] = value * scale
    return row


def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------
# Quality flags: left out after the latest row is chosen, never replaced
# --------------------------------------------------------------------------


def test_flagged_latest_row_is_left_out_not_replaced_by_an_older_one():
    rows = pd.DataFrame(
        [
            _muscle("001", "A", "2024-01-01T10:00:00+00:00", scale=1.0),
            _muscle("001", "A", "2024-03-01T10:00:00+00:00", scale=2.0, qc_flags="low_contrast"),
            _muscle("002", "A", "2024-01-01T10:00:00+00:00", scale=1.5),
        ]
    )
    kept, info = select_rows(rows)
    assert sorted(kept["patient_id"]) == ["001", "002"]  # off by default: the flagged row counts
    assert kept.loc[kept["patient_id"] == "001", "qc_flags"].item() == "low_contrast"
    kept, info = select_rows(rows, exclude_flagged=True)
    assert list(kept["patient_id"]) == ["002"]  # 001's older, unflagged row does not step in
    assert info["n_flagged"] == 1 and info["flagged"] == ["001/A"]


def test_stats_report_states_the_flagged_rows(tmp_path):
    path = tmp_path / "m.csv"
    rows = []
    for i in range(8):
        for obs, f in (("A", 1.0), ("B", 1.03)):
            flags = "low_contrast" if (i, obs) == (3, "B") else ""
            rows.append(_muscle(f"{i:03d}", obs, "2024-01-01T10:00:00+00:00", scale=(1 + 0.1 * i) * f, qc_flags=flags))
    append_rows(path, rows)
    clinical = tmp_path / "c.csv"
    pd.DataFrame({"patient_id": [f"{i:03d}" for i in range(8)], "y": [0, 1] * 4}).to_csv(clinical, index=False)
    status, out, err = _cli(
        "stats", clinical, "--outcome", "y", "--continuous", AREA, "--merge", path, "--exclude-flagged"
    )
    assert status == 0, err
    assert "1 row(s) with quality flags left out (003/B)" in out
    assert "rows with quality flags left out (after choosing the latest row" in out
    status, out, _ = _cli("stats", clinical, "--outcome", "y", "--continuous", AREA, "--merge", path)
    assert "rows with quality flags included" in out
    status, out, _ = _cli("reliability", path, "--exclude-flagged", "--json")
    data = json.loads(out)
    assert data["n_flagged"] == 1 and data["measures"][0]["n"] == 7
    status, _, err = _cli("stats", clinical, "--outcome", "y", "--session", "read1")
    assert status == 2 and "--session applies to measurements: add --merge" in err


# --------------------------------------------------------------------------
# Spine table: merged with the muscle table; reliability of vbq and the angle
# --------------------------------------------------------------------------


@pytest.fixture
def two_tables(tmp_path):
    rng = np.random.default_rng(5)
    muscle, spine = [], []
    for i in range(10):
        pid = f"P{i:02d}"
        for obs, f in (("A", 1.0), ("B", 0.97)):
            muscle.append(_muscle(pid, obs, "2024-01-01T10:00:00+00:00", scale=(1 + 0.05 * i) * f))
            signals = {lv: 250.0 + 10 * i + rng.normal(0, 3) for lv in ("L1", "L2", "L3", "L4")}
            vbq = float(np.median(list(signals.values()))) / 100.0
            spine.append(
                make_spine_row(
                    patient_id=pid,
                    observer_id=obs,
                    vbq=vbq,
                    vbq_levels="L1;L2;L3;L4",
                    vbq_si_csf=100.0,
                    **{f"vbq_si_{k}": v for k, v in signals.items()},
                    local_kyphosis_deg=5.0 + 1.5 * i + (0.4 if obs == "A" else -0.4) + rng.normal(0, 0.2),
                )
            )
    mpath, spath = tmp_path / "muscle.csv", tmp_path / "spine.csv"
    append_rows(mpath, muscle)
    append_rows(spath, spine, table="spine")
    clinical = pd.DataFrame({"patient_id": [f"P{i:02d}" for i in range(10)], "lbp": [0, 1] * 5})
    cpath = tmp_path / "clinical.csv"
    clinical.to_csv(cpath, index=False)
    return cpath, mpath, spath, pd.DataFrame(spine)


def test_merge_twice_brings_spine_and_muscle_measures(two_tables):
    cpath, mpath, spath, spine = two_tables
    status, out, err = _cli(
        "stats",
        cpath,
        "--outcome",
        "lbp",
        "--continuous",
        f"vbq,local_kyphosis_deg,{AREA}",
        "--roc",
        "vbq",
        "--merge",
        mpath,
        "--merge",
        spath,
        "--json",
    )
    assert status == 0, err
    data = json.loads(out)
    rows = {r["variable"]: r for r in data["comparison"]}
    assert set(rows) == {"vbq", "local_kyphosis_deg", AREA}
    mean_vbq = spine.groupby("patient_id")["vbq"].mean()
    assert rows["vbq"]["mean"][0] == pytest.approx(mean_vbq.iloc[0::2].mean(), rel=1e-12)
    measures = {m["measure"] for m in data["reliability"]["measures"]}
    assert {"vbq", "local_kyphosis_deg", AREA} <= measures


def test_reliability_of_vbq_and_angle_matches_the_icc_of_the_values(two_tables):
    from napari_pvm.core.stats.reliability import icc

    _, _, spath, spine = two_tables
    status, out, err = _cli("reliability", spath, "--json")
    assert status == 0, err
    data = json.loads(out)
    by = {m["measure"]: m for m in data["measures"]}
    assert set(by) == {"vbq", "local_kyphosis_deg"} and data["table"] == "spine"
    wide = spine.pivot(index="patient_id", columns="observer_id", values="local_kyphosis_deg")
    assert by["local_kyphosis_deg"]["icc2_1"] == pytest.approx(icc(wide.to_numpy())["icc2_1"], rel=1e-12)
    assert by["local_kyphosis_deg"]["unit"] == "°"
    assert by["local_kyphosis_deg"]["bias"] == pytest.approx((wide["A"] - wide["B"]).mean(), rel=1e-12)


# --------------------------------------------------------------------------
# Derived measures and outline origins
# --------------------------------------------------------------------------


def test_derived_measures_follow_their_formulas():
    row = pd.DataFrame([make_example_row()])
    d = derived_measures(row).iloc[0]
    L, R = row["ES_L_total_area_cm2"].item(), row["ES_R_total_area_cm2"].item()
    assert d["ES_asym_area_pct"] == pytest.approx((L - R) / ((L + R) / 2) * 100)
    assert d["MF_asym_fi_pts"] == pytest.approx(row["MF_L_fi_pct"].item() - row["MF_R_fi_pct"].item())
    assert d["ESMF_B_rel_area"] == pytest.approx(row["ESMF_B_total_area_cm2"].item() / row["VB_total_area_cm2"].item())
    no_vb = derived_measures(pd.DataFrame([make_example_row(VB_total_area_cm2=None)]))
    assert no_vb["PS_B_rel_area"].isna().all()
    no_mf = derived_measures(pd.DataFrame([make_example_row(absent=("MF_R",))]))
    assert np.isnan(no_mf["MF_asym_area_pct"].item()) and np.isfinite(no_mf["PS_asym_area_pct"].item())
    merged, _, _ = merge_measurements(pd.DataFrame({"patient_id": ["P001"]}), pd.DataFrame([make_example_row()]))
    assert merged["PS_asym_fi_pts"].item() == pytest.approx(d["PS_asym_fi_pts"])


def test_outline_origins_are_counted_per_observer():
    rows = pd.DataFrame(
        [
            _muscle(
                "001",
                "A",
                "2024-01-01T10:00:00+00:00",
                outline_origin="PS_L:proposed;PS_R:edited;ES_L:drawn;ES_R:drawn;MF_L:proposed;MF_R:proposed",
            ),
            _muscle("001", "B", "2024-01-01T10:00:00+00:00"),
            _muscle("002", "A", "2024-01-01T10:00:00+00:00", scale=1.2),
            _muscle("002", "B", "2024-01-01T10:00:00+00:00", scale=1.1),
            _muscle("003", "A", "2024-01-01T10:00:00+00:00", scale=1.4),
            _muscle("003", "B", "2024-01-01T10:00:00+00:00", scale=1.3),
        ]
    )
    counts = outline_origins(rows).set_index("rater")
    assert counts.loc["A", ["drawn", "proposed", "edited"]].tolist() == [2 + 12, 3, 1]
    result = inter_observer(rows, measures=[AREA])
    assert result.origins.set_index("rater").loc["B", "drawn"] == 18
    from napari_pvm.core.stats.report import reliability_text

    assert "A: 14 drawn, 3 proposed, 1 edited" in reliability_text(result)


# --------------------------------------------------------------------------
# Spreadsheet tables
# --------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8-sig", "cp1252", "utf-8"])
def test_european_excel_csv_is_read(tmp_path, encoding):
    text = "patient_id;sex;bmi;größe\n007;männlich;23,5;1,80\n008;weiblich;31;1,65\n"
    path = tmp_path / "clinical.csv"
    path.write_bytes(text.encode(encoding))
    table = read_table(path)
    assert list(table.columns) == ["patient_id", "sex", "bmi", "größe"]
    assert table["patient_id"].tolist() == ["007", "008"]
    assert table["bmi"].tolist() == ["23.5", "31"] and table["sex"].tolist() == ["männlich", "weiblich"]


def test_stats_reads_a_semicolon_table_like_a_comma_table(tmp_path):
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {"patient_id": [f"{i:03d}" for i in range(20)], "y": [0, 1] * 10, "bmi": rng.normal(26, 3, 20).round(2)}
    )
    comma, semi = tmp_path / "comma.csv", tmp_path / "semi.csv"
    frame.to_csv(comma, index=False)
    frame.to_csv(semi, index=False, sep=";", decimal=",", encoding="cp1252")
    a = analyse(comma, "y", continuous=["bmi"]).comparison.table
    b = analyse(semi, "y", continuous=["bmi"]).comparison.table
    assert b.loc[0, "student_t"] == a.loc[0, "student_t"]


def test_undecodable_table_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "clinical.csv"
    path.write_bytes(b"patient_id,x\n1,\x81\x8d\n")  # bytes Windows-1252 leaves undefined
    with pytest.raises(StatsInputError, match=r"clinical.csv: .* neither UTF-8 nor Windows-1252.*CSV UTF-8"):
        read_table(path, what="clinical table")


def test_missing_column_suggests_the_nearest_names(tmp_path):
    path = tmp_path / "clinical.csv"
    pd.DataFrame({"patient_id": ["1", "2", "3", "4"], "y": [0, 1, 0, 1], "sex_male": [0, 1, 1, 0]}).to_csv(
        path, index=False
    )
    status, _, err = _cli("stats", path, "--outcome", "y", "--categorical", "sex")
    assert status == 2 and err.count("\n") == 1
    assert "--categorical: no such column in the table: 'sex' (did you mean 'sex_male'?)" in err
