"""Reading sessions with spine measures (study.json ``measure_sets``, contract 7/8):
which rows a case needs before it is done, the spine files' place, blinding."""

import json

import pytest

from napari_pvm.core.session import ReadingSession, SessionError, Study, create_study, spine_annotation_sha256
from napari_pvm.core.spine import read_spine_annotation, write_spine_annotation

IDS = ["P001", "P002", "P003"]
ROI = [[10.0, 10.0], [10.0, 20.0], [20.0, 20.0], [20.0, 10.0]]


def _study(folder, measure_sets, *, sagittal=True):
    cases = []
    for i, pid in enumerate(IDS):
        case = {"patient_id": pid, "image": f"images/{pid}.nii.gz"}
        if sagittal and i != 2:  # P003 has no sagittal series
            case["sagittal_image"] = f"images/{pid}_sag.nii.gz"
        cases.append(case)
    return create_study(folder, cases, study_id="S", measure_sets=measure_sets)


def _row(s, row_id, pid=None):
    return {"row_id": row_id, "patient_id": pid or s.current_id, "observer_id": s.observer_id, "session": s.session}


def _spine(**extra):
    return {"format": "napari-pvm.spine/1", "slice_index": 2, "vertebrae": [{"level": "L1", "vertices": ROI}], **extra}


def test_the_sagittal_image_column_is_read_and_resolved(tmp_path):
    study = _study(tmp_path / "s", ["muscle", "spine"])
    s = ReadingSession.open(study, "A")
    assert s.measure_sets == ("muscle", "spine")
    assert s.spine_image("P001") == str(study.folder / "images" / "P001_sag.nii.gz")
    assert s.spine_image("P003") == ""  # muscle + spine: the axial image is not a sagittal one
    spine_only = ReadingSession.open(_study(tmp_path / "t", ["spine"]), "A")
    assert spine_only.spine_image("P003").endswith("images/P003.nii.gz")  # spine only: the image is the series
    assert spine_only.spine_image("P001").endswith("P001_sag.nii.gz")


def test_a_case_is_done_only_with_a_row_of_every_measure_set(tmp_path):
    study = _study(tmp_path / "s", ["muscle", "spine"])
    s = ReadingSession.open(study, "A")
    pid = s.current_id
    assert s.missing_rows() == ("muscle", "spine")
    s.record_row(_row(s, "m1"), annotation_sha256="aaa")
    with pytest.raises(SessionError, match=r"no row in the shared CSV yet for spine \(spine.csv\)"):
        s.mark_done()
    assert s.case_state() == "open"
    s.record_row(_row(s, "s1"), annotation_sha256="bbb", measure_set="spine")
    s.record_row(_row(s, "s2"), annotation_sha256="ccc", measure_set="spine")
    assert s.missing_rows() == ()
    assert (s.row_id(), s.row_id(measure_set="spine")) == ("m1", "s2")
    assert s.row_is_current("ccc", measure_set="spine") and not s.row_is_current("bbb", measure_set="spine")
    assert s.row_is_current("aaa") and not s.row_is_current("ccc")
    s.mark_done()
    entry = json.loads(s.path.read_text())["cases"][pid]
    assert entry["state"] == "done" and entry["row_id"] == "m1"
    assert entry["spine_row_id"] == "s2" and entry["spine_row_ids"] == ["s1", "s2"]
    done = [e for e in s.log if e["event"] == "done"][-1]
    assert (done["row_id"], done["spine_row_id"]) == ("m1", "s2")
    with pytest.raises(SessionError, match="unknown measure set"):
        s.record_row(_row(s, "x"), measure_set="bone")
    with pytest.raises(SessionError, match="another|not 'P"):
        s.record_row(_row(s, "x", pid=s.order[1]), measure_set="spine")
    # resumed: the rows are still there
    again = ReadingSession.open(study, "A")
    assert again.row_id(pid, measure_set="spine") == "s2"


def test_a_spine_only_study_needs_no_muscle_row(tmp_path):
    s = ReadingSession.open(_study(tmp_path / "s", ["spine"]), "A")
    with pytest.raises(SessionError, match="for spine"):
        s.mark_done()
    s.record_row(_row(s, "m1"))  # a muscle row does not finish a spine-only case
    with pytest.raises(SessionError):
        s.mark_done()
    s.record_row(_row(s, "s1"), measure_set="spine")
    s.mark_done()
    assert s.case_state() == "done"


def test_a_muscle_study_keeps_its_message(tmp_path):
    s = ReadingSession.open(_study(tmp_path / "s", None), "A")
    assert s.measure_sets == ("muscle",)
    with pytest.raises(SessionError, match="has no row in the shared CSV yet; measure"):
        s.mark_done()


def test_spine_annotations_go_to_the_observers_own_spine_folder(tmp_path):
    study = _study(tmp_path / "s", ["muscle", "spine"])
    s = ReadingSession.open(study, "A")
    pid = s.current_id
    path = s.save_spine_annotation(_spine(patient_id="WRONG", observer_id="B"))
    assert path == study.folder / "annotations" / "A" / "spine" / f"{pid}.read1.pvm.json"
    saved = read_spine_annotation(path)
    assert (saved.patient_id, saved.observer_id, saved.session) == (pid, "A", "read1")
    assert s.case_state() == "started" and s.own_spine_annotation() == path
    assert s.own_annotation() is None  # the outline file is another file
    assert s.check_readable(path, "spine") == pid
    with pytest.raises(SessionError, match="their own outlines"):
        s.check_readable(path)  # not an outline file
    with pytest.raises(SessionError, match="their own spine annotations"):
        s.check_readable(study.annotation_path("A", pid), "spine")
    # observer B's spine file is neither readable nor overwritten
    b_path = study.spine_annotation_path("B", pid)
    b_path.parent.mkdir(parents=True)
    write_spine_annotation(b_path, _spine(observer_id="B", patient_id=pid))
    with pytest.raises(SessionError):
        s.check_readable(b_path, "spine")
    before = b_path.read_bytes()
    with pytest.raises(SessionError, match="may only write"):
        study.check_annotation_target(b_path, "A", pid)
    # B's file copied into A's folder by hand is not overwritten either
    path.write_bytes(before)
    with pytest.raises(SessionError, match="belongs to observer B"):
        s.save_spine_annotation(_spine())
    assert path.read_bytes() == before
    # a drawing the spine format refuses is not written
    path.unlink()
    with pytest.raises(SessionError, match="L9|level"):
        s.save_spine_annotation(_spine(vertebrae=[{"level": "L9", "vertices": ROI}]))
    assert not path.exists()


def test_the_spine_digest_follows_the_drawing_not_the_ids():
    a = _spine()
    assert spine_annotation_sha256(a) == spine_annotation_sha256({**a, "patient_id": "P1", "session": "read2"})
    excluded = {**a, "excluded": [{"level": "L2", "reason": "fracture"}]}
    assert spine_annotation_sha256(excluded) != spine_annotation_sha256(a)
    moved = _spine(vertebrae=[{"level": "L1", "vertices": [[11.0, 10.0], *ROI[1:]]}])
    assert spine_annotation_sha256(moved) != spine_annotation_sha256(a)


def test_a_bad_measure_set_is_refused_before_a_session_file_is_written(tmp_path):
    study = _study(tmp_path / "s", ["spine"])
    info = json.loads(study.study_file.read_text())
    study.study_file.write_text(json.dumps({**info, "measure_sets": ["spine", "bone"]}))
    with pytest.raises(SessionError, match="unknown measure set 'bone'"):
        ReadingSession.open(Study(study.folder), "A")
    assert not study.session_path("A").exists()


def test_a_dock_saves_only_into_the_cases_own_file_of_its_kind(tmp_path):
    study = _study(tmp_path / "s", ["muscle", "spine"])
    s = ReadingSession.open(study, "A")
    pid, other = s.current_id, s.order[1]
    assert s.check_writable(s.annotation_path()) == study.annotation_path("A", pid)
    assert s.check_writable(s.spine_annotation_path(), "spine") == study.spine_annotation_path("A", pid)
    refused = [
        (study.annotation_path("A", pid), "spine"),  # a spine drawing over the outlines
        (study.spine_annotation_path("A", pid), "muscle"),  # outlines over the spine drawing
        (study.spine_annotation_path("A", other), "spine"),  # another case
        (study.spine_annotation_path("A", pid, "read2"), "spine"),  # another session label
        (study.observer_dir("A") / "copy.pvm.json", "spine"),
    ]
    for path, kind in refused:
        with pytest.raises(SessionError, match="saved only as"):
            s.check_writable(path, kind)
    with pytest.raises(SessionError, match="may only write"):
        s.check_writable(study.spine_annotation_path("B", pid), "spine")


def test_done_cases_are_reopened_when_the_study_adds_a_measure_set(tmp_path):
    study = _study(tmp_path / "s", ["muscle"])
    s = ReadingSession.open(study, "A")
    first = s.current_id
    s.record_row(_row(s, "m-1"))
    s.mark_done()
    assert s.counts()["done"] == 1
    info = json.loads(study.study_file.read_text())
    study.study_file.write_text(json.dumps({**info, "measure_sets": ["muscle", "spine"]}))
    again = ReadingSession.open(study, "A")  # spine measures added after the first case was read
    assert again.case_state(first) == "started" and again.counts()["done"] == 0
    assert again.row_id(first) == "m-1" and again.missing_rows(first) == ("spine",)
    assert again.first_unfinished() == 0
    assert json.loads(study.session_path("A").read_text())["cases"][first]["state"] == "started"
    # back to muscle only: the case has every row the study asks for, and may be marked done again
    study.study_file.write_text(json.dumps(info))
    third = ReadingSession.open(study, "A")
    third.mark_done(first)
    assert third.case_state(first) == "done"


def test_a_done_case_whose_drawing_changes_is_started_again_however_it_is_left(tmp_path):
    study = _study(tmp_path / "s", ["spine"])
    s = ReadingSession.open(study, "A")
    drawing = _spine(csf={"level": "L3", "vertices": ROI})
    s.save_spine_annotation(drawing)
    s.record_row(_row(s, "s-1"), annotation_sha256=spine_annotation_sha256(drawing), measure_set="spine")
    s.mark_done()
    s.save_spine_annotation({**drawing, "patient_id": "ignored"})  # saved again unchanged: still done
    assert s.case_state() == "done"
    s.save_spine_annotation({**drawing, "excluded": [{"level": "L1", "reason": "fracture"}]})
    assert s.case_state() == "started" and s.row_id(measure_set="spine") == "s-1"
    assert s.to_dict()["log"][-1]["event"] == "changed after done"


def test_a_done_case_whose_outlines_change_is_started_again(tmp_path):
    import numpy as np

    from napari_pvm.core.annotation import Annotation, annotation_sha256

    study = _study(tmp_path / "s", ["muscle"])
    s = ReadingSession.open(study, "A")
    outlines = Annotation(slice_index=2, rois={"PS_L": np.array(ROI)})
    s.save_annotation(outlines)
    s.record_row(_row(s, "m-1"), annotation_sha256=annotation_sha256(outlines))
    s.mark_done()
    s.save_annotation(outlines)  # the same outlines saved again (leaving the case): still done
    assert s.case_state() == "done"
    s.save_annotation(Annotation(slice_index=2, rois={"PS_L": np.array(ROI) + 1.0}))
    assert s.case_state() == "started" and s.row_id() == "m-1"


def test_no_row_is_current_for_an_unknown_drawing(tmp_path):
    """``row_is_current(None)``: the drawing could not be read, so no row of
    it is current, with or without a recorded digest."""
    s = ReadingSession.open(_study(tmp_path / "s", ["muscle", "spine"]), "A")
    s.record_row(_row(s, "m1"))  # a row recorded without a digest
    s.record_row(_row(s, "s1"), annotation_sha256="bbb", measure_set="spine")
    assert s.row_is_current("anything") and not s.row_is_current(None)
    assert s.row_is_current("bbb", measure_set="spine") and not s.row_is_current(None, measure_set="spine")
