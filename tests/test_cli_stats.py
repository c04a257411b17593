"""``napari-pvm stats``: JSON keys, text tables, --out files and bad input."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_pvm.cli import main

DATA = Path(__file__).resolve().parent / "data"
COHORT = DATA / "paper_table2_cohort.csv"
TABLE3 = "fascia_injury,vbq,kyphosis_post,cement_diffused,ps_muscle_area,ps_total_area,esmf_fi_pct"


def run(capsys, *argv):
    status = main(["stats", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def fail(capsys, *argv):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def cohort_json():
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = main(
            [
                "stats",
                str(COHORT),
                "--outcome",
                "residual_lbp",
                "--continuous",
                "age,bmi,vbq,esmf_fi_pct",
                "--categorical",
                "sex_male,trauma_severity,alcohol",
                "--logistic",
                TABLE3,
                "--roc",
                "ps_total_area,esmf_fi_pct",
                "--json",
            ]
        )
    assert status == 0
    return json.loads(buf.getvalue())


def test_json_comparison_keys_and_values(cohort_json):
    d = cohort_json
    assert set(d) >= {"comparison", "logistic", "roc", "outcome", "warnings"}
    rows = {r["variable"]: r for r in d["comparison"]}
    assert list(rows) == ["sex_male", "alcohol", "trauma_severity", "age", "bmi", "vbq", "esmf_fi_pct"]
    age = rows["age"]
    assert age["type"] == "continuous"
    assert age["n"] == [184, 29]
    assert age["mean"] == pytest.approx([70.56, 72.86]) and age["sd"] == pytest.approx([8.42, 9.41])
    assert len(age["shapiro_p"]) == 2
    assert round(age["student_t"], 3) == -1.345 and round(age["welch_t"], 3) == -1.240
    assert age["mannwhitney_u"] == 2251.0  # the smaller U, as SPSS prints it
    assert age["test"] in ("student", "welch", "mannwhitney")
    assert age["p"] == age[{"student": "student_p", "welch": "welch_p", "mannwhitney": "mannwhitney_p"}[age["test"]]]
    for key in ("levene_p", "student_p", "welch_df", "welch_p", "mannwhitney_p"):
        assert isinstance(age[key], float)
    vbq = rows["vbq"]
    assert vbq["student_p"] < 1e-15  # unrounded in JSON, never "<0.001"
    sex = rows["sex_male"]
    assert sex["type"] == "categorical"
    assert round(sex["chi2"], 3) == 0.186 and sex["df"] == 1
    assert sex["p"] == pytest.approx(0.6663193559307390, rel=1e-12)  # Pearson's
    assert sex["fisher_p"] == pytest.approx(0.6109350054568957, rel=1e-9)
    trauma = rows["trauma_severity"]
    assert trauma["df"] == 2 and trauma["fisher_p"] is not None  # an expected count is below 5
    assert [lv["level"] for lv in trauma["levels"]] == ["moderate", "none_slight", "severe"]
    assert trauma["levels"][0]["count"] == [97, 14]


def test_json_logistic_and_roc(cohort_json):
    lg = cohort_json["logistic"]
    assert lg["n"] == 213 and lg["events"] == 29
    assert [r["variable"] for r in lg["rows"]] == TABLE3.split(",") + ["Constant"]
    vbq = lg["rows"][1]
    assert set(vbq) >= {"variable", "B", "SE", "wald", "p", "OR", "ci_low", "ci_high"}
    assert vbq["wald"] == pytest.approx((vbq["B"] / vbq["SE"]) ** 2)
    assert vbq["ci_low"] == pytest.approx(np.exp(vbq["B"] - 1.959963984540054 * vbq["SE"]))
    assert any("events per variable" in w for w in lg["warnings"])
    assert any("collinearity" in w for w in lg["warnings"])
    assert lg["minus2ll"] == pytest.approx(33.4746787265130905, rel=1e-7)
    assert lg["hosmer_lemeshow"]["df"] >= 1
    roc = {r["variable"]: r for r in cohort_json["roc"]}
    ps = roc["ps_total_area"]
    assert ps["direction"] == "<=" and roc["esmf_fi_pct"]["direction"] == ">="
    assert ps["auc"] >= 0.5 and len(ps["auc_ci"]) == 2
    assert ps["cutoff"] == pytest.approx(11.27085010597666)
    assert ps["sensitivity"] == pytest.approx(22 / 29) and ps["specificity"] == pytest.approx(164 / 184)


def test_text_output_has_the_three_tables(capsys):
    status, out, err = run(
        capsys,
        COHORT,
        "--outcome",
        "residual_lbp",
        "--continuous",
        "vbq,cement_volume",
        "--categorical",
        "fascia_injury",
        "--logistic",
        "vbq,kyphosis_post",
        "--roc",
        "esmf_fi_pct",
    )
    assert status == 0 and err == ""
    assert "Group comparison (Table 2)" in out and "Binary logistic regression (Table 3)" in out
    assert "ROC analysis" in out
    assert "<0.001" in out and "2.57 ± 0.25" in out and "3.14 ± 0.38" in out
    assert "χ² = 8.263 (df 1)" in out
    assert "Nagelkerke R²" in out and "Hosmer–Lemeshow" in out and "Classification at 0.5" in out


def test_out_writes_csv_and_self_contained_html(capsys, tmp_path):
    out_dir = tmp_path / "report"
    status, out, _ = run(
        capsys,
        COHORT,
        "--outcome",
        "residual_lbp",
        "--continuous",
        "age,ps_total_area",
        "--categorical",
        "sex_male",
        "--logistic",
        "vbq",
        "--roc",
        "ps_total_area",
        "--out",
        out_dir,
        "--json",
    )
    assert status == 0
    files = json.loads(out)["files"]
    names = {Path(f).name for f in files}
    assert {
        "comparison.csv",
        "comparison_levels.csv",
        "logistic.csv",
        "roc.csv",
        "roc_coordinates.csv",
        "results.json",
        "report.html",
    } <= names
    table = pd.read_csv(out_dir / "comparison.csv")
    assert {"variable", "student_t", "welch_df", "mannwhitney_u", "chi2", "fisher_p"} <= set(table.columns)
    html = (out_dir / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= 2  # ROC curves and box plots
    assert "<script" not in html and 'src="http' not in html


def test_event_for_text_outcome(capsys, tmp_path):
    t = pd.read_csv(COHORT, usecols=["patient_id", "residual_lbp", "vbq"])
    t["lbp"] = np.where(t.pop("residual_lbp") == 1, "yes pain", "no pain")
    path = tmp_path / "t.csv"
    t.to_csv(path, index=False)
    line = fail(capsys, path, "--outcome", "lbp")
    assert "--event" in line and "'no pain'" in line
    status, out, _ = run(capsys, path, "--outcome", "lbp", "--event", "yes pain", "--json")
    assert status == 0
    d = json.loads(out)
    assert d["outcome"]["event"] == "yes pain" and d["outcome"]["n_1"] == 29
    assert round(d["comparison"][0]["student_t"], 3) == -10.533


@pytest.mark.parametrize(
    "mutate, args, message",
    [
        (lambda t: t.assign(residual_lbp=np.arange(len(t)) % 3), (), "exactly two"),
        (lambda t: t.assign(residual_lbp=1), (), "one class only"),
        (lambda t: t.head(3), (), "too few patients"),
        (
            lambda t: t.assign(vbq=t["vbq"].astype(str).where(t.index != 4, "2,5")),
            ("--continuous", "vbq"),
            "non-numeric value.*'2,5' \\(patient P005\\)",
        ),
        (lambda t: t.assign(const=1.0), ("--continuous", "const"), "no variance"),
        (lambda t: t, ("--roc", "nope"), "no such column"),
        (lambda t: t, ("--event", "7"), "not a value of residual_lbp"),
        (lambda t: t, ("--reference", "oops"), "VARIABLE=LEVEL"),
        (lambda t: t, ("--logistic", "vbq", "--reference", "age=70"), "not a categorical logistic covariate"),
    ],
)
def test_bad_input_is_one_error_line(capsys, tmp_path, mutate, args, message):
    t = mutate(pd.read_csv(COHORT, usecols=["patient_id", "residual_lbp", "vbq", "age"]))
    path = tmp_path / "bad.csv"
    t.to_csv(path, index=False)
    out_dir = tmp_path / "out"
    line = fail(capsys, path, "--outcome", "residual_lbp", *args, "--out", out_dir)
    import re

    assert re.search(message, line), line
    assert not out_dir.exists()  # nothing written


def test_missing_file_is_one_error_line(capsys, tmp_path):
    line = fail(capsys, tmp_path / "absent.csv", "--outcome", "y")
    assert "absent.csv" in line


def test_merge_with_the_shared_measurements(capsys, tmp_path):
    import importlib.util

    from napari_pvm.core.store import append_rows

    spec = importlib.util.spec_from_file_location("_stats_core_tests", Path(__file__).parent / "core" / "test_stats.py")
    core_tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(core_tests)
    measurement_row = core_tests.measurement_row
    rows = []
    for i in range(10):
        for obs, bias in (("A", 1.03), ("B", 0.97)):
            rows.append(measurement_row(f"{i:03d}", obs, (1 + 0.05 * i) * bias, 1 + 0.02 * i, "2024-01-01T10:00:00Z"))
    shared = tmp_path / "shared.csv"
    append_rows(shared, rows)
    clinical = pd.DataFrame(
        {"patient_id": [f"{i:03d}" for i in range(10)], "lbp": [0, 1] * 5, "age": np.linspace(60, 80, 10)}
    )
    cpath = tmp_path / "clinical.csv"
    clinical.to_csv(cpath, index=False)
    status, out, _ = run(
        capsys,
        cpath,
        "--outcome",
        "lbp",
        "--merge",
        shared,
        "--continuous",
        "PS_B_total_area_cm2,age",
        "--json",
        "--out",
        tmp_path / "o",
    )
    assert status == 0
    d = json.loads(out)
    ps = next(r for r in d["comparison"] if r["variable"] == "PS_B_total_area_cm2")
    assert ps["n"] == [5, 5]
    assert d["reliability"] is not None
    html = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    assert "Bland–Altman" in html
    status, out, _ = run(
        capsys,
        cpath,
        "--outcome",
        "lbp",
        "--merge",
        shared,
        "--observer",
        "B",
        "--continuous",
        "PS_B_total_area_cm2",
        "--json",
    )
    assert json.loads(out)["comparison"][0]["mean"][0] < ps["mean"][0]  # B reads lower
    line = fail(capsys, cpath, "--outcome", "lbp", "--merge", shared, "--observer", "Z")
    assert "observer 'Z'" in line
    # a spreadsheet turned "007" into 7: the IDs do not match, and the message says why
    clinical.assign(patient_id=range(10)).to_csv(cpath, index=False)
    line = fail(capsys, cpath, "--outcome", "lbp", "--merge", shared, "--continuous", "ESMF_B_fi_pct")
    assert "only by leading zeros (e.g. 0 vs 000)" in line and "format the patient_id column as text" in line
    clinical.assign(patient_id=[f"X{i}" for i in range(10)]).to_csv(cpath, index=False)
    line = fail(capsys, cpath, "--outcome", "lbp", "--merge", shared, "--continuous", "ESMF_B_fi_pct")
    assert "no patient_id of shared.csv (e.g. 000) is in the clinical table (e.g. X0)" in line
    # a clinical table given where the measurements belong
    line = fail(capsys, cpath, "--outcome", "lbp", "--merge", cpath)
    assert "clinical.csv is not a napari-pvm measurement table (its header starts patient_id, lbp, age)" in line


def test_table_without_rows_is_named(capsys, tmp_path):
    path = tmp_path / "clinical.csv"
    path.write_text("patient_id,residual_lbp\n")
    assert "clinical.csv has no rows" in fail(capsys, path, "--outcome", "residual_lbp")


def test_unwritable_out_folder_is_one_error_line(capsys, tmp_path):
    (tmp_path / "a_file").write_text("")
    out_dir = tmp_path / "a_file" / "res"  # cannot be created, whoever runs the test
    line = fail(capsys, COHORT, "--outcome", "residual_lbp", "--continuous", "age", "--out", out_dir)
    assert f"cannot create or write the output folder {out_dir}" in line and "choose another folder" in line


@pytest.mark.skipif(
    shutil.which("napari-pvm") is None and not (Path(sys.executable).parent / "napari-pvm").exists(),
    reason="console script not installed",
)
def test_console_script(tmp_path):
    exe = shutil.which("napari-pvm") or str(Path(sys.executable).parent / "napari-pvm")
    proc = subprocess.run(
        [exe, "stats", str(COHORT), "--outcome", "residual_lbp", "--continuous", "vbq", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert round(json.loads(proc.stdout)["comparison"][0]["student_t"], 3) == -10.533
    proc = subprocess.run([exe, "stats", str(COHORT), "--outcome", "age"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stdout == ""


def test_gui_without_qt_says_how_to_install_it(monkeypatch, capsys):
    import sys

    from napari_pvm.cli import main

    monkeypatch.setitem(sys.modules, "qtpy", None)  # as if no Qt binding were installed
    assert main(["gui"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "napari-pvm[qt]"' in err and 'pip install -e ".[qt]"' in err


def test_stats_help_is_plain_text(capsys):
    from napari_pvm.cli import main

    with pytest.raises(SystemExit):
        main(["stats", "--help"])
    out = capsys.readouterr().out
    assert "--merge MEASUREMENTS.csv" in out and "read1" in out
    for markup in ("``", ":func:", ":mod:", ":class:"):
        assert markup not in out


def test_out_tables_never_hold_a_formula(capsys, tmp_path):
    """Category levels and names are the user's text: in the CSV tables a cell
    that a spreadsheet would run gets a leading quote (the HTML escapes it)."""
    t = pd.read_csv(COHORT, usecols=["patient_id", "residual_lbp", "sex_male"])
    t["group"] = np.where(t["sex_male"] == 1, '=HYPERLINK("http://x","y")', "+cmd")
    table = tmp_path / "t.csv"
    t.to_csv(table, index=False)
    status, _, _ = run(capsys, table, "--outcome", "residual_lbp", "--categorical", "group", "--out", tmp_path / "o")
    assert status == 0
    levels = (tmp_path / "o" / "comparison_levels.csv").read_text(encoding="utf-8")
    assert "'=HYPERLINK" in levels and "'+cmd" in levels
    assert not any(cell.startswith(("=", "+", "@")) for line in levels.splitlines() for cell in line.split(","))


def test_a_seed_out_of_range_is_refused(capsys):
    assert "--seed must be a whole number from 0 to 4294967295, got -1" in fail(
        capsys, COHORT, "--outcome", "residual_lbp", "--seed", "-1"
    )
