"""Blinded reading sessions: study folder, per-observer order, resume, guards."""

import json
import os
import sys

import numpy as np
import pytest

from napari_pvm.core.annotation import Annotation, read_annotation, write_annotation
from napari_pvm.core.session import (
    ReadingSession,
    SessionError,
    Study,
    StudySettings,
    create_study,
    seeded_order,
    session_seed,
)

IDS = [f"P{i:03d}" for i in range(1, 13)]
SQUARE = np.array([[100.0, 100.0], [100.0, 120.0], [120.0, 120.0], [120.0, 100.0]])


def _write_worklist(folder, ids=IDS, *, outcome=True, extra_rows=""):
    folder.mkdir(parents=True, exist_ok=True)
    header = "patient_id,image,slice_index,outcome,clinical_group" if outcome else "patient_id,image,slice_index"
    lines = [header]
    for i, pid in enumerate(ids):
        cells = [pid, f"images/{pid}.nii.gz", str(i % 3)]
        if outcome:
            cells += ["REFRACTURE_YES" if i % 2 else "REFRACTURE_NO", "SECRET_GROUP"]
        lines.append(",".join(cells))
    (folder / "worklist.csv").write_text("\n".join(lines) + "\n" + extra_rows, encoding="utf-8")
    return folder


@pytest.fixture
def study(tmp_path):
    return Study(_write_worklist(tmp_path / "study"))


def _annotation(n_rois=1, **ids):
    rois = {"PS_L": SQUARE, "PS_R": SQUARE + [0, 40]}
    return Annotation(slice_index=2, rois=dict(list(rois.items())[:n_rois]), **ids)


# ------------------------------------------------------------------ worklist


def test_outcome_and_clinical_columns_are_never_read(study):
    cases = study.cases("A")
    assert [c.patient_id for c in cases] == IDS
    for case in cases:
        assert "REFRACTURE" not in repr(case) and "SECRET" not in repr(case)
    assert cases[0].image == str(study.folder / "images" / "P001.nii.gz")
    assert cases[4].slice_index == "1"
    session = ReadingSession.open(study, "A")
    session.skip("motion artefact")
    for path in study.folder.rglob("*.json"):
        text = path.read_text()
        assert "REFRACTURE" not in text and "SECRET" not in text and "outcome" not in text


def test_worklist_columns_read_by_the_parser_exclude_outcome(study, monkeypatch):
    import pandas as pd

    seen = []
    real = pd.read_csv

    def spy(path, *args, **kwargs):
        table = real(path, *args, **kwargs)
        seen.append(list(table.columns))
        return table

    monkeypatch.setattr(pd, "read_csv", spy)
    study.cases()
    assert seen == [["patient_id", "image", "slice_index"]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("patient_id,outcome\nP1,1\n", "lacks the column"),
        ("patient_id,image\n", "lists no cases"),
        ("patient_id,image\n../x,a.nii\n", "characters"),
        ("patient_id,image,slice_index\nP1,a.nii,two\n", "slice_index"),
        ("patient_id,image\nP1,a.nii\nP1,b.nii\n", "listed twice"),
        ("patient_id,image\nP1,\n", "no image"),
    ],
)
def test_bad_worklists_are_refused_with_a_reason(tmp_path, content, message):
    (tmp_path / "worklist.csv").write_text(content)
    with pytest.raises(SessionError, match=message):
        Study(tmp_path).cases("A")


def test_worklist_outside_the_study_and_missing_folder_are_refused(tmp_path):
    _write_worklist(tmp_path / "elsewhere")
    (tmp_path / "study").mkdir()
    with pytest.raises(SessionError, match="outside the study folder"):
        Study(tmp_path / "study", worklist=tmp_path / "elsewhere" / "worklist.csv")
    with pytest.raises(SessionError, match="not found"):
        Study(tmp_path / "nope")


def test_rows_assigned_to_another_observer_are_left_out(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "worklist.csv").write_text(
        "patient_id,image,observer_id,annotation,session\n"
        "P1,a.nii,,annotations/B/P1.read1.pvm.json,read9\nP2,b.nii,B,,\nP3,c.nii,A,,\n"
    )
    study = Study(folder)
    assert [c.patient_id for c in study.cases("A")] == ["P1", "P3"]
    assert [c.patient_id for c in study.cases("B")] == ["P1", "P2"]
    # the annotation and session columns are never read
    assert all(c.annotation == "" and c.session == "" for c in study.cases())


def test_create_study_refuses_clinical_columns(tmp_path):
    with pytest.raises(SessionError, match="outcome"):
        create_study(tmp_path / "s", [{"patient_id": "P1", "image": "a.nii", "outcome": "1"}])
    study = create_study(tmp_path / "t", [{"patient_id": "P1", "image": "a.nii"}], study_id="PVM-2025")
    assert study.study_id == "PVM-2025"
    assert (study.folder / "annotations").is_dir() and (study.folder / "sessions").is_dir()


# --------------------------------------------------------------------- order


def test_each_observer_has_an_own_order_reproducible_from_the_recorded_seed(study):
    a = ReadingSession.open(study, "A")
    b = ReadingSession.open(study, "B")
    assert sorted(a.order) == sorted(b.order) == IDS
    assert a.order != b.order
    assert a.order != tuple(IDS)
    for session in (a, b):
        recorded = json.loads(session.path.read_text())
        assert recorded["seed"] == session_seed(study.study_id, session.observer_id, "read1")
        assert tuple(recorded["order"]) == session.order == tuple(seeded_order(IDS, recorded["seed"]))
    # a fresh study folder with the same ID gives the same order (no hidden randomness)
    again = Study(_write_worklist(study.folder.parent / "copy", IDS[::-1], outcome=False))
    (again.folder / "study.json").write_text(json.dumps({"study_id": study.study_id}))
    assert ReadingSession.open(again, "A").order == a.order


def test_seed_depends_on_study_observer_and_session():
    seeds = {session_seed(s, o, r) for s in ("S1", "S2") for o in ("A", "B") for r in ("read1", "read2")}
    assert len(seeds) == 8
    assert session_seed("S1", "A", "read1") == session_seed("S1", "A", "read1")
    assert all(0 <= s < 2**32 for s in seeds)


# -------------------------------------------------------------------- resume


def test_resume_restores_position_states_and_skip_reasons(study):
    s = ReadingSession.open(study, "A")
    first = s.current_id
    s.save_annotation(_annotation(2))
    s.record_row({"row_id": "r1", "patient_id": first, "observer_id": "A", "session": "read1"})
    s.mark_done()
    assert s.next()
    assert s.skip("L4 not covered by the scan")
    s.next()
    s.save_annotation(_annotation(1))  # started, not done
    here, skipped = s.current_id, s.order[1]
    revision = json.loads(s.path.read_text())["revision"]

    again = ReadingSession.open(Study(study.folder), "A")
    assert again.current_id == here and again.position == 3
    assert again.order == s.order and again.seed == s.seed
    assert again.case_state(first) == "done"
    assert again.case_state(skipped) == "skipped"
    assert again.skip_reason(skipped) == "L4 not covered by the scan"
    assert again.case_state(here) == "started"
    assert again.counts() == {"open": 9, "started": 1, "done": 1, "skipped": 1, "total": 12}
    assert again.own_annotation(here) == study.annotation_path("A", here)
    events = [e["event"] for e in again.log]
    assert events[0] == "start" and events[-1] == "resume" and "skip" in events
    assert json.loads(again.path.read_text())["revision"] == revision + 1


def test_every_action_is_on_disk_before_it_returns(study):
    s = ReadingSession.open(study, "A")
    s.go_to(5)
    assert json.loads(s.path.read_text())["position"] == 5
    s.skip("motion")
    on_disk = json.loads(s.path.read_text())
    assert on_disk["position"] == 6 and on_disk["cases"][s.order[5]]["reason"] == "motion"


def test_skip_needs_a_reason_and_stays_at_the_last_case(study):
    s = ReadingSession.open(study, "A")
    with pytest.raises(SessionError, match="reason"):
        s.skip("  ")
    s.go_to(s.total - 1)
    assert s.skip("no L4") is False
    assert s.position == s.total - 1 and s.case_state() == "skipped"
    assert not s.next()
    s.go_to(0)
    assert not s.previous()
    with pytest.raises(SessionError, match="does not exist"):
        s.go_to(s.total)


def test_patients_added_later_are_appended_and_the_order_kept(study):
    s = ReadingSession.open(study, "A")
    s.go_to(4 if s.order[4] != "P001" else 5)
    current = s.current_id
    _write_worklist(study.folder, IDS[1:] + ["P100", "P101"])  # P001 removed, two added
    again = ReadingSession.open(Study(study.folder), "A")
    assert again.order[: len(IDS) - 1] == tuple(p for p in s.order if p != "P001")
    assert set(again.order[-2:]) == {"P100", "P101"}
    assert again.current_id == current
    assert again.log[-2]["event"] == "worklist changed"


def test_a_second_window_on_the_same_session_is_refused(study):
    first = ReadingSession.open(study, "A")
    ReadingSession.open(study, "A").next()
    with pytest.raises(SessionError, match="another napari window"):
        first.next()


# ---------------------------------------------------------------- annotations


def test_annotation_paths_are_per_observer_and_session(study):
    s = ReadingSession.open(study, "A")
    path = s.save_annotation(_annotation(1, patient_id="WRONG", observer_id="B", session="x"))
    assert path == study.folder / "annotations" / "A" / f"{s.current_id}.read1.pvm.json"
    saved = read_annotation(path)
    assert (saved.patient_id, saved.observer_id, saved.session) == (s.current_id, "A", "read1")
    assert s.case_state() == "started"


def test_another_observers_file_is_never_overwritten(study):
    s = ReadingSession.open(study, "A")
    pid = s.current_id
    # a file of observer B placed in A's folder (copied by hand)
    target = s.annotation_path()
    target.parent.mkdir(parents=True)
    write_annotation(target, _annotation(2, patient_id=pid, observer_id="B"))
    before = target.read_bytes()
    with pytest.raises(SessionError, match="belongs to observer B"):
        s.save_annotation(_annotation(1))
    assert target.read_bytes() == before
    # writing into B's folder is refused outright
    other = study.annotation_path("B", pid)
    with pytest.raises(SessionError, match="may only write"):
        study.check_annotation_target(other, "A")
    assert not other.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_a_link_into_another_observers_folder_is_refused(study):
    s = ReadingSession.open(study, "A")
    b_file = study.annotation_path("B", s.current_id)
    b_file.parent.mkdir(parents=True)
    write_annotation(b_file, _annotation(2, observer_id="B"))
    link = s.annotation_path()
    link.parent.mkdir(parents=True)
    os.symlink(b_file, link)
    with pytest.raises(SessionError, match="may only write|belongs to observer B"):
        s.save_annotation(_annotation(1))
    assert read_annotation(b_file).observer_id == "B"


def test_observer_ids_differing_only_in_case_are_refused(study):
    ReadingSession.open(study, "A").save_annotation(_annotation(1))
    with pytest.raises(SessionError, match="only in letter case"):
        ReadingSession.open(study, "a")


def test_bad_observer_and_session_labels(study):
    with pytest.raises(SessionError, match="observer ID is required"):
        ReadingSession.open(study, "  ")
    with pytest.raises(SessionError, match="session label"):
        ReadingSession.open(study, "A", "read 2")
    with pytest.raises(SessionError, match="session label"):
        ReadingSession.open(study, "A", "read.2")


# -------------------------------------------------------------- repeat reads


def test_repeat_reading_has_its_own_order_files_and_sees_no_earlier_outlines(study):
    r1 = ReadingSession.open(study, "A")
    r1.save_annotation(_annotation(2))
    r1.record_row({"row_id": "r1", "patient_id": r1.current_id, "observer_id": "A", "session": "read1"})
    r1.mark_done()
    r2 = ReadingSession.open(study, "A", "read2")
    assert r2.path.name == "A.read2.json" and r1.path.name == "A.read1.json"
    assert r2.order != r1.order and r2.seed != r1.seed
    assert r2.own_annotation(r1.current_id) is None  # read1's outlines are not offered
    assert r2.counts()["done"] == 0
    path = r2.save_annotation(_annotation(1), patient_id=r1.current_id)
    assert path.name == f"{r1.current_id}.read2.pvm.json"
    assert len(read_annotation(r1.own_annotation(r1.current_id)).rois) == 2


# ------------------------------------------------------------------ codes


def test_study_codes_are_shared_by_observers_and_stable(study):
    a = ReadingSession.open(study, "A")
    b = ReadingSession.open(study, "B")
    codes = study.codes()
    assert sorted(codes) == IDS
    assert sorted(codes.values()) == [f"C{i:03d}" for i in range(1, 13)]
    assert list(codes.values()) != [f"C{i:03d}" for i in range(1, 13)]  # not the worklist order
    assert a.display_name("P005", codes=True) == b.display_name("P005", codes=True) == codes["P005"]
    assert a.display_name("P005") == "P005"
    _write_worklist(study.folder, ["P999"] + IDS)
    later = Study(study.folder).codes()
    assert {p: later[p] for p in IDS} == codes
    assert later["P999"] == "C013"


def test_opening_reads_no_file_of_another_observer(study, open_recorder):
    b = ReadingSession.open(study, "B")
    study.observer_dir("B").mkdir()
    write_annotation(study.annotation_path("B", "P001"), _annotation(2, observer_id="B"))
    b.skip("a reason only B knows")
    study.measurements_csv.write_text("patient_id,observer_id\nP001,B\n")
    open_recorder.start()
    try:
        s = ReadingSession.open(Study(study.folder), "A")
        for pid in s.order:
            s.own_annotation(pid)
        s.save_annotation(_annotation(1))
    finally:
        paths = open_recorder.stop()
    assert paths, "the audit hook saw nothing"
    assert not [p for p in paths if os.sep + "B" + os.sep in p or "B.read1" in p or p.endswith("measurements.csv")]


def test_only_the_observers_own_files_of_this_session_may_be_loaded(study):
    s = ReadingSession.open(study, "A", "read2")
    assert s.check_readable(study.annotation_path("A", "P003", "read2")) == "P003"
    for other in (
        study.annotation_path("B", "P003", "read2"),
        study.annotation_path("A", "P003", "read1"),
        study.folder.parent / "P003.read2.pvm.json",
    ):
        with pytest.raises(SessionError, match="only open their own outlines"):
            s.check_readable(other)


# ------------------------------------------------------- rows and done


def _row(reading, pid=None, row_id="row-1", **changes):
    row = {
        "row_id": row_id,
        "patient_id": pid or reading.current_id,
        "observer_id": reading.observer_id,
        "session": reading.session,
    }
    row.update(changes)
    return row


def test_a_case_is_done_only_when_its_row_is_recorded(study):
    s = ReadingSession.open(study, "A")
    pid = s.current_id
    s.save_annotation(_annotation(2))
    with pytest.raises(SessionError, match="no row in the shared CSV"):
        s.mark_done()
    assert s.case_state() == "started" and s.row_id() is None
    # rows of another patient, observer or session, or without a row_id, are not this case's row
    for bad in (_row(s, pid=s.order[1]), _row(s, observer_id="B"), _row(s, session="read2"), _row(s, row_id="")):
        with pytest.raises(SessionError):
            s.record_row(bad)
    assert s.row_id() is None
    s.record_row(_row(s, row_id="20260101-a"), annotation_sha256="abc")
    s.record_row(_row(s, row_id="20260101-b"), annotation_sha256="def")  # added again after an edit
    s.mark_done()
    entry = json.loads(s.path.read_text())["cases"][pid]
    assert entry["state"] == "done" and entry["row_id"] == "20260101-b"
    assert entry["row_ids"] == ["20260101-a", "20260101-b"]
    assert s.row_is_current("def") and not s.row_is_current("abc")
    assert [e for e in s.log if e["event"] == "done"][-1]["row_id"] == "20260101-b"


# ---------------------------------------------------------- study.json


def test_study_settings_default_and_validation(tmp_path):
    study = Study(_write_worklist(tmp_path / "s1", outcome=False))
    assert study.settings() == StudySettings(proposals=False, measure_sets=("muscle",))
    created = create_study(
        tmp_path / "s2", [{"patient_id": "P1", "image": "a.nii.gz"}], proposals=True, measure_sets=["muscle", "spine"]
    )
    assert created.settings() == StudySettings(proposals=True, measure_sets=("muscle", "spine"))
    assert created.study_id == "s2"  # the codes were added without losing the settings
    assert json.loads(created.study_file.read_text())["proposals"] is True
    for bad, message in (
        ({"proposals": "yes"}, "true or false"),
        ({"measure_sets": "muscle"}, "non-empty list"),
        ({"measure_sets": []}, "non-empty list"),
        ({"measure_sets": ["muscle", "bone"]}, "'bone'"),
        ({"measure_sets": ["muscle", "muscle"]}, "once"),
    ):
        study.study_file.write_text(json.dumps(bad))
        with pytest.raises(SessionError, match=message):
            study.settings()
    with pytest.raises(SessionError):
        create_study(tmp_path / "s3", [{"patient_id": "P1", "image": "a.nii.gz"}], proposals=1)


# ------------------------------------------------------- proposal examples


@pytest.fixture
def example_study(tmp_path, phantom_files):
    """Three patients (copies of one phantom). A finished P1 and P2 (rows
    recorded), B's outlines of every patient, A's read2 outlines of P3."""
    import shutil

    folder = tmp_path / "ex"
    (folder / "images").mkdir(parents=True)
    ids = ["P1", "P2", "P3"]
    for pid in ids:
        shutil.copy(phantom_files["image"], folder / "images" / f"{pid}.nii.gz")
    study = create_study(folder, [{"patient_id": p, "image": f"images/{p}.nii.gz"} for p in ids], proposals=True)
    truth = read_annotation(phantom_files["annotation"])
    b = ReadingSession.open(study, "B")
    for pid in ids:
        b.save_annotation(truth, patient_id=pid)
    a2 = ReadingSession.open(study, "A", "read2")
    a2.save_annotation(truth, patient_id="P3")
    return study, truth


def test_examples_come_only_from_the_observers_own_finished_cases_of_this_session(example_study, open_recorder):
    study, truth = example_study
    s = ReadingSession.open(study, "A")
    assert s.example_annotations() == []  # nothing finished yet
    # finish every case but the last one in A's order, with different outlines per case
    shifted = {}
    for i, pid in enumerate(s.order):
        rois = {k: np.asarray(v) + [0.0, i] for k, v in truth.rois.items() if k != "MF_R" or i == 0}
        shifted[pid] = rois
        s.save_annotation(
            Annotation(slice_index=truth.slice_index, rois=rois, image_sha256=truth.image_sha256), patient_id=pid
        )
        if i < len(s.order) - 1:
            s.record_row(_row(s, pid=pid, row_id=f"r{i}"), patient_id=pid)
            s.mark_done(pid)
    s.go_to(0)  # reading the first case again: it is never its own example
    current = s.current_id
    open_recorder.start()
    try:
        examples = s.example_annotations(limit=10)
    finally:
        opened = open_recorder.stop()
    assert len(examples) == 1  # the other finished case; the unfinished last one is not an example
    ((plane, spacing, rois),) = examples
    other = s.order[1]
    assert set(rois) == set(shifted[other]) and "MF_R" not in rois
    for key, vertices in rois.items():
        np.testing.assert_allclose(vertices, shifted[other][key])
    assert plane.shape == (336, 336) and spacing == pytest.approx((1.2, 1.2))
    from napari_pvm.core.io import read_volume

    np.testing.assert_array_equal(plane, read_volume(study.folder / "images" / f"{other}.nii.gz").data[2])
    # blinding: what was opened is this observer's read1 file of the other case and its image, nothing else
    folder = str(study.folder) + os.sep
    inside = sorted({p for p in opened if p.startswith(folder)})
    assert inside == sorted({str(study.annotation_path("A", other)), str(study.folder / "images" / f"{other}.nii.gz")})
    assert not [p for p in opened if current in os.path.basename(p)]
    # the limit, and a file that is not what its name says is left out
    assert len(s.example_annotations(limit=0)) == 0
    write_annotation(study.annotation_path("A", other), Annotation(slice_index=2, rois=truth.rois, observer_id="B"))
    assert s.example_annotations() == []
    # left and right outlines the wrong way round would teach mirrored sides: left out too
    own = {"slice_index": truth.slice_index, "image_sha256": truth.image_sha256, "observer_id": "A"}
    swapped = {k[:-1] + {"L": "R", "R": "L"}[k[-1]]: v for k, v in shifted[other].items()}
    write_annotation(study.annotation_path("A", other), Annotation(rois=swapped, **own))
    assert s.example_annotations() == []
    write_annotation(study.annotation_path("A", other), Annotation(rois=shifted[other], **own))
    assert len(s.example_annotations()) == 1
