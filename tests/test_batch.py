"""`napari-pvm batch`: same rows as `measure`, failures reported, resumable."""

import json
import shutil

import pandas as pd
import pytest

from napari_pvm.cli import main
from napari_pvm.core.batch import read_worklist, run_batch
from napari_pvm.core.errors import PvmError
from napari_pvm.core.store import read_rows


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from napari_pvm.core.phantom import write_phantom

    root = tmp_path_factory.mktemp("cohort")
    rows = []
    for i in range(3):
        write_phantom(root / f"case{i}", seed=20 + i, spacing=1.2, n_slices=3)
        rows.append(
            {
                "patient_id": f"P{i:03d}",
                "observer_id": "obsA",
                "image": f"case{i}/phantom.nii.gz",
                "annotation": f"case{i}/phantom.pvm.json",
            }
        )
    pd.DataFrame(rows).to_csv(root / "worklist.csv", index=False)
    return root


def _measure_cli(cohort, case, capsys):
    assert (
        main(
            [
                "measure",
                str(cohort / case["image"]),
                str(cohort / case["annotation"]),
                "--patient",
                case["patient_id"],
                "--observer",
                case["observer_id"],
                "--json",
            ]
        )
        == 0
    )
    return json.loads(capsys.readouterr().out)


def test_local_cluster_rows_equal_measure_case_by_case(cohort, tmp_path, capsys):
    out = tmp_path / "out.csv"
    summary = run_batch(cohort / "worklist.csv", out, workers=2)
    assert (summary.cases, summary.measured, summary.failed, summary.skipped) == (3, 3, 0, 0)
    rows = read_rows(out).set_index("patient_id")
    worklist = pd.read_csv(cohort / "worklist.csv", dtype=str)
    for case in worklist.to_dict(orient="records"):
        expected = _measure_cli(cohort, case, capsys)
        got = rows.loc[case["patient_id"]]
        for key, value in expected.items():
            if key in ("row_id", "measured_at", "patient_id"):
                continue
            if value is None or (isinstance(value, float) and value != value):
                assert pd.isna(got[key]) or got[key] in ("", None), key
            elif isinstance(value, float):
                assert got[key] == value, key
            else:
                assert str(got[key]) == str(value), key


def test_failures_and_duplicates_reported_rest_completes(cohort, tmp_path):
    work = tmp_path / "study"
    shutil.copytree(cohort, work)
    (work / "broken.pvm.json").write_text("{oops")
    table = pd.read_csv(work / "worklist.csv", dtype=str)
    extra = pd.DataFrame(
        [
            {
                "patient_id": "P900",
                "observer_id": "obsA",
                "image": "missing.nii.gz",
                "annotation": "case0/phantom.pvm.json",
            },
            {
                "patient_id": "P901",
                "observer_id": "obsA",
                "image": "case1/phantom.nii.gz",
                "annotation": "broken.pvm.json",
            },
            table.iloc[0].to_dict(),
        ]
    )
    pd.concat([table, extra]).to_csv(work / "worklist.csv", index=False)
    out = work / "out.csv"
    code = main(["batch", str(work / "worklist.csv"), "--csv", str(out), "--workers", "1", "--json"])
    assert code == 1
    rows = read_rows(out)
    assert sorted(rows["patient_id"]) == ["P000", "P001", "P002"]
    errors = pd.read_csv(work / "out.errors.csv", dtype=str)
    reasons = dict(zip(errors["patient_id"], errors["reason"]))
    assert "no such file" in reasons["P900"]
    assert "not valid JSON" in reasons["P901"]
    assert "duplicate of worklist line 2" in reasons["P000"]


def test_rerun_skips_and_edited_annotation_is_measured_again(cohort, tmp_path):
    work = tmp_path / "study"
    shutil.copytree(cohort, work)
    out = work / "out.csv"
    first = run_batch(work / "worklist.csv", out, workers=1)
    assert first.measured == 3
    again = run_batch(work / "worklist.csv", out, workers=1)
    assert (again.measured, again.skipped, again.failed) == (0, 3, 0)
    # edit one annotation: move a vertex → measured again, the others skipped
    path = work / "case1" / "phantom.pvm.json"
    data = json.loads(path.read_text())
    data["rois"][0]["vertices"][0][0] += 1.0
    path.write_text(json.dumps(data))
    third = run_batch(work / "worklist.csv", out, workers=1)
    assert (third.measured, third.skipped) == (1, 2)
    assert len(read_rows(out)) == 4
    # a different classifier setting is a new measurement too
    fourth = run_batch(work / "worklist.csv", out, workers=1, settings={"seed": 1})
    assert fourth.measured == 3


def test_bad_worklists(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(PvmError, match="empty"):
        read_worklist(tmp_path / "empty.csv")
    (tmp_path / "nocol.csv").write_text("patient_id,annotation\nP1,a.json\n")
    with pytest.raises(PvmError, match="lacks the column"):
        read_worklist(tmp_path / "nocol.csv")
    (tmp_path / "outcome.csv").write_text("patient_id,image,residual_lbp\nP1,a.nii,1\n")
    with pytest.raises(PvmError, match="unknown column"):
        read_worklist(tmp_path / "outcome.csv")
    assert main(["batch", str(tmp_path / "nope.csv"), "--csv", str(tmp_path / "o.csv")]) == 2


def test_killed_batch_resumes_without_duplicates(cohort, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    work = tmp_path / "study"
    shutil.copytree(cohort, work)
    out = work / "out.csv"
    exe = str(Path(sys.executable).with_name("napari-pvm"))
    args = [exe, "batch", str(work / "worklist.csv"), "--csv", str(out), "--workers", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if out.exists() and len(out.read_bytes().splitlines()) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its workers, like a crash
    proc.wait()
    measured_before = len(read_rows(out))
    assert 1 <= measured_before <= 3
    summary = run_batch(work / "worklist.csv", out, workers=1)
    assert summary.measured == 3 - measured_before and summary.skipped == measured_before
    rows = read_rows(out)
    assert sorted(rows["patient_id"]) == ["P000", "P001", "P002"]


@pytest.mark.parametrize("flags, message", [(["--trees", "0"], "n_trees"), (["--preset", "nope"], "preset")])
def test_bad_settings_are_a_bad_invocation(cohort, tmp_path, capsys, flags, message):
    out = tmp_path / "out.csv"
    assert main(["batch", str(cohort / "worklist.csv"), "--csv", str(out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "out.errors.csv").exists()


def test_worklist_with_more_fields_than_header_refused(tmp_path):
    (tmp_path / "w.csv").write_text("patient_id,image,observer_id,annotation\nP9,001,img1.nii.gz,A,ann1.json\n")
    with pytest.raises(PvmError, match="more fields than its header"):
        read_worklist(tmp_path / "w.csv")


# --------------------------------------------------------------------------
# Hardening
# --------------------------------------------------------------------------


def test_worklist_without_annotation_column_exits_2(cohort, tmp_path, capsys):
    table = pd.read_csv(cohort / "worklist.csv", dtype=str).drop(columns="annotation")
    table.to_csv(tmp_path / "worklist.csv", index=False)
    for name in ("case0", "case1", "case2"):
        shutil.copytree(cohort / name, tmp_path / name)
    out = tmp_path / "out.csv"
    code = main(["batch", str(tmp_path / "worklist.csv"), "--csv", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "worklist.csv lacks the column(s) annotation" in err
    assert not out.exists() and not (tmp_path / "out.errors.csv").exists()


def test_unwritable_output_folder_is_refused_before_any_case(cohort, monkeypatch, capsys):
    import napari_pvm.core.batch as batch

    measured = []
    monkeypatch.setattr(batch, "measure_case", lambda *a, **k: measured.append(a) or {"status": "failed"})
    # /proc takes no new files, even for root
    code = main(["batch", str(cohort / "worklist.csv"), "--csv", "/proc/out.csv", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: cannot write /proc/out.csv") and err.count("\n") == 1
    assert measured == []


def test_reasons_never_name_internal_temporary_files():
    from napari_pvm.core.batch import _public

    for internal in ("/data/study/.out.csv.lock", "/data/.out.errors.csv.tmp", "/tmp/dask-scratch-space/worker-1x2y"):
        assert internal not in _public(f"cannot write {internal}: disk full")
    assert _public("No such file or directory: /data/study/case1.nii.gz") == (
        "No such file or directory: /data/study/case1.nii.gz"
    )


def test_worklist_method_water_fat_columns_reach_measure(cohort, tmp_path, monkeypatch):
    import napari_pvm.core.batch as batch
    import napari_pvm.core.measure as measure

    work = tmp_path / "study"
    shutil.copytree(cohort, work)
    table = pd.read_csv(work / "worklist.csv", dtype=str)
    table["method"] = ["dixon", "", "nonsense"]
    table["water"] = ["case0/phantom.nii.gz", "", ""]
    table["fat"] = ["case0/phantom.nii.gz", "", ""]
    table["sagittal_image"] = ""
    table.to_csv(work / "worklist.csv", index=False, sep=";", encoding="utf-8-sig")  # as Excel writes it
    cases = read_worklist(work / "worklist.csv")
    assert [c.method for c in cases] == ["dixon", "", "nonsense"]
    assert cases[0].water == str((work / "case0/phantom.nii.gz").resolve())
    with pytest.raises(PvmError, match="unknown FI% method"):  # refused before any case is measured
        run_batch(work / "worklist.csv", work / "out.csv", workers=1)
    seen = {}
    monkeypatch.setattr(batch, "_predicted_key", lambda *a: None)
    monkeypatch.setattr(
        measure,
        "measure_annotation",
        lambda volume, annotation, **kw: seen.update(kw) or (_ for _ in ()).throw(PvmError("stop")),
    )
    outcome = batch.measure_case(cases[0])
    assert outcome == {"status": "failed", "reason": "stop"}
    assert seen["method"] == "dixon" and seen["water"].data.shape == seen["fat"].data.shape
    monkeypatch.undo()
    # end to end: the worklist's method is the row's method, the others use the default
    table["method"], table["water"], table["fat"] = ["threshold", "", ""], "", ""
    table.to_csv(work / "worklist.csv", index=False, sep=";", encoding="utf-8-sig")
    summary = run_batch(work / "worklist.csv", work / "out.csv", workers=2)
    assert summary.measured == 3, summary
    methods = read_rows(work / "out.csv").set_index("patient_id")["method"]
    assert "threshold" in methods["P000"] and "threshold" not in methods["P001"]


def test_progress_bar_prints_on_a_terminal_only():
    import io

    from napari_pvm._commands.batch import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty, log = Terminal(), io.StringIO()
    for stream in (tty, log):
        bar = ProgressBar(stream)
        bar(1, 0, 0, 3, 2.0)
        bar(2, 1, 0, 3, 0.0)
        bar.close()
    assert "3/3" in tty.getvalue() and "1 failed" in tty.getvalue()
    assert log.getvalue() == ""


def _stop_at_measuring(monkeypatch):
    """Cases then fail with the reason "stop" once every check before measuring passed."""
    import napari_pvm.core.batch as batch
    import napari_pvm.core.measure as measure

    monkeypatch.setattr(batch, "_predicted_key", lambda *a: None)
    monkeypatch.setattr(measure, "measure_annotation", lambda *a, **k: (_ for _ in ()).throw(PvmError("stop")))


@pytest.mark.parametrize(
    "slice_index, reason",
    [
        ("1", "stop"),
        ("1.0", "stop"),
        ("1,0", "stop"),
        ("2", "differs from the annotation's 1"),
        ("1.5", "not a whole slice number"),
        ("one", "not a whole slice number"),
    ],
)
def test_worklist_slice_index_compared_as_a_number(cohort, monkeypatch, slice_index, reason):
    import dataclasses

    from napari_pvm.core.batch import measure_case

    _stop_at_measuring(monkeypatch)
    case = dataclasses.replace(read_worklist(cohort / "worklist.csv")[0], slice_index=slice_index)
    outcome = measure_case(case)
    assert outcome["status"] == "failed" and reason in outcome["reason"], outcome


def test_version1_csv_refused_before_any_case(cohort, tmp_path, monkeypatch, capsys):
    import napari_pvm.core.batch as batch
    from napari_pvm.core import schema

    measured = []
    monkeypatch.setattr(batch, "measure_case", lambda *a, **k: measured.append(a) or {"status": "failed"})
    out = tmp_path / "v1.csv"
    out.write_text(",".join(schema.V1_COLUMNS) + "\n", encoding="utf-8")
    before = out.read_bytes()
    code = main(["batch", str(cohort / "worklist.csv"), "--csv", str(out), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "migrate-csv" in err
    assert measured == [] and out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1.csv"]


def test_allow_unusual_spacing_reaches_image_and_dixon_reads(cohort, monkeypatch):
    import dataclasses

    import napari_pvm.core.batch as batch
    import napari_pvm.core.io as io

    monkeypatch.setattr(io, "PLAUSIBLE_PIXEL_MM", (0.05, 1.0))  # the phantoms' 1.2 mm pixels become unusual
    _stop_at_measuring(monkeypatch)
    case = read_worklist(cohort / "worklist.csv")[0]
    dixon = dataclasses.replace(case, method="dixon", water=case.image, fat=case.image)
    refused = batch.measure_case(dixon)
    assert refused["status"] == "failed" and "--allow-unusual-spacing" in refused["reason"]
    assert batch.measure_case(dixon, allow_unusual_spacing=True) == {"status": "failed", "reason": "stop"}
    # the command's flag reaches run_batch
    seen = {}
    monkeypatch.setattr(batch, "run_batch", lambda *a, **k: seen.update(k) or batch.BatchSummary())
    assert main(["batch", str(cohort / "worklist.csv"), "--csv", "out.csv", "--allow-unusual-spacing"]) == 0
    assert seen["allow_unusual_spacing"] is True


def test_a_torn_last_line_is_a_plain_note(cohort, tmp_path, capsys):
    """The store's repair is one ``note:`` line, as in measure, spine and the
    other commands (batch printed Python's warning text with a source line)."""
    out = tmp_path / "out.csv"
    assert main(["batch", str(cohort / "worklist.csv"), "--csv", str(out), "--workers", "1"]) == 0
    with open(out, "a", encoding="utf-8") as handle:
        handle.write("2,torn-row,P9,A")  # a writer killed mid-line: no newline, too few cells
    capsys.readouterr()
    assert main(["batch", str(cohort / "worklist.csv"), "--csv", str(out), "--workers", "1"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "ignored a torn final line" in notes[0]
