"""Reading sessions with spine measures (study.json ``measure_sets``): the
case's sagittal series in the Spine measures dock, drawn with real mouse and
key events on the canvas; Next needs the spine row; blinding; resume; a
spine-only study; a case without a sagittal image."""

import json
import shutil

import numpy as np
import pytest

from qtpy.QtWidgets import QLineEdit

from napari_pvm._widgets.session_widget import _same
from napari_pvm.core.errors import PvmError
from napari_pvm.core.phantom_sagittal import write_sagittal_phantom
from napari_pvm.core.session import SessionError, create_study, seeded_order, session_seed
from napari_pvm.core.spine import read_spine_annotation, write_spine_annotation
from napari_pvm.core.store import read_rows

SPACING = (0.8, 1.1)  # anisotropic on purpose
STUDY_ID = "SPINE-TEST"


@pytest.fixture(scope="module")
def sagittal_files(tmp_path_factory):
    """The noise-free sagittal phantom (``napari-pvm phantom --sagittal``): its
    ROI medians are the set signals, so VBQ without L2 is exactly 310 / 100."""
    out = tmp_path_factory.mktemp("sag")
    return write_sagittal_phantom(out, seed=2, spacing=SPACING, noise=0, shading=0, kyphosis_deg=12.0)


def _order(ids):
    return seeded_order(ids, session_seed(STUDY_ID, "A", "read1"))


def _study(folder, cases, measure_sets, images):
    """A study whose images are copies of the phantoms (``images``: name -> file)."""
    (folder / "images").mkdir(parents=True)
    for name, source in images.items():
        shutil.copy(source, folder / "images" / name)
    return create_study(folder, cases, study_id=STUDY_ID, measure_sets=measure_sets)


@pytest.fixture
def make_session(make_napari_viewer):
    def make(study, viewer=None, codes=False):
        from napari.utils._proxies import PublicOnlyProxy

        from napari_pvm._widgets.session_widget import SessionWidget

        viewer = viewer or make_napari_viewer(show=True)
        viewer.window._qt_window.resize(1500, 950)
        widget = SessionWidget(PublicOnlyProxy(viewer))  # what napari hands a plugin dock
        viewer.window.add_dock_widget(widget, name="Reading session")
        widget.messages = []
        widget.notify = lambda message, level="info": widget.messages.append((level, message))
        widget.folder_edit.setText(str(study.folder))
        widget.observer_edit.setText("A")
        widget.codes_check.setChecked(codes)
        return viewer, widget

    return make


def _ready(widget, result=True):
    assert widget.wait_until_ready(), "the case did not open"
    return result


def _quiet(dock):
    dock.messages = []
    dock.notify = lambda message, level="info": dock.messages.append((level, message))


def _session_file(study):
    return json.loads(study.session_path("A").read_text())


def _draw_spine(c, image, truth):
    """What the observer does on the mid-sagittal slice: Shift-K, the four
    vertebral ROIs and the CSF ROI (the draw list moves on by itself), the two
    endplate lines, and L2 excluded with x."""
    dock = c.spine
    c.key("K", "shift")
    for item in truth["vertebrae"]:
        assert dock.part == item["level"]
        c.polygon(image, item["vertices"], finish="enter")
    c.polygon(image, truth["csf"]["vertices"], finish="enter")
    angle = truth["angles"][0]
    assert dock.part == "upper"
    c.pixel_drag(image, angle["upper"][0], angle["upper"][1])
    c.pixel_drag(image, angle["lower"][0], angle["lower"][1])
    dock.reason_combos["L2"].setCurrentText("fracture")
    for _ in range(5):
        c.key("N", "shift")  # back from "lower" … to L2
    assert dock.part == "L2"
    c.key("x")


def test_muscle_and_spine_per_case_with_next_resume_and_blinding(
    make_session, make_napari_viewer, canvas, phantom_files, sagittal_files, open_recorder, tmp_path
):
    from napari_pvm._widgets.spine_widget import SpineWidget

    first, second = _order(["P001", "P002"])
    study = _study(
        tmp_path / "study",
        [
            {"patient_id": first, "image": "images/ax1.nii.gz", "sagittal_image": "images/sag1.nii.gz"},
            {"patient_id": second, "image": "images/ax2.nii.gz"},  # no sagittal series
        ],
        ["muscle", "spine"],
        {
            "ax1.nii.gz": phantom_files["image"],
            "ax2.nii.gz": phantom_files["image"],
            "sag1.nii.gz": sagittal_files["image"],
        },
    )
    truth = json.loads(sagittal_files["annotation"].read_text())
    # observer B already drew the spine of the first case
    b_file = study.spine_annotation_path("B", first)
    b_file.parent.mkdir(parents=True)
    write_spine_annotation(b_file, {**truth, "patient_id": first, "observer_id": "B", "session": "read1"})

    open_recorder.start()
    try:
        viewer, widget = make_session(study)
        asked = []
        widget.ask_unfinished = lambda why: asked.append(why)  # None: stay on the case
        _ready(widget, widget.start())
        session, spine, measure = widget.session, widget.spine, widget.measure
        _quiet(spine)
        assert session.current_id == first and isinstance(spine, SpineWidget)
        assert spine in viewer.window.dock_widgets.values() and measure in viewer.window.dock_widgets.values()
        # both images of the case are open; the axial one is shown first, the sagittal one hidden
        assert widget.view == "muscle" and widget.image_layer.visible and not widget.sagittal_layer.visible
        assert widget.sagittal_layer.metadata["napari_pvm"]["plane"] == "sagittal"
        assert "source" not in widget.sagittal_layer.metadata["napari_pvm"]  # no file path on screen
        ids = (spine.patient_edit.text(), spine.observer_edit.text(), spine.session_edit.text())
        assert ids == (first, "A", "read1")
        assert spine.csv_edit.text() == str(study.spine_csv) and spine.observer_edit.isReadOnly()
        assert spine.layer is None  # B's spine annotation of this case is not shown to A
        with pytest.raises(SessionError):
            widget._guard_spine_path(b_file, "load")  # nor loadable through the dock's Load… button
        # the muscle row of the case (the muscle flow on the canvas is tested in test_session_widget.py)
        session.record_row({"row_id": "muscle-1", "patient_id": first, "observer_id": "A", "session": "read1"})

        c = canvas(viewer)
        c.spine = spine
        c.key("PageDown")  # muscle row but no spine row: asked, and it stays
        assert len(asked) == 1 and "no row in the shared spine CSV" in asked[0]
        assert session.current_id == first and session.case_state() != "done"

        c.key("K", "shift")  # the mid-sagittal mark on the axial view: refused, nothing marked on the hidden image
        assert spine.slice_index is None and "Ctrl-J" in widget.messages[-1][1]
        c.key("J", "control")  # the sagittal image: axial layers hidden, never removed
        assert widget.view == "spine" and widget.sagittal_layer.visible and not widget.image_layer.visible
        sagittal = widget.sagittal_layer
        assert sagittal.world_to_data(viewer.dims.point)[0] == pytest.approx(truth["slice_index"])  # mid stack
        _draw_spine(c, sagittal, truth)
        assert spine.excluded() == {"L2": "fracture"}
        assert spine.result.vbq == pytest.approx(310 / 100, rel=1e-12)
        # saved as drawn into A's own spine file, with A's IDs
        saved = read_spine_annotation(study.spine_annotation_path("A", first))
        assert (saved.patient_id, saved.observer_id, saved.session) == (first, "A", "read1")
        assert sorted(saved.vertebrae) == ["L1", "L2", "L3", "L4"] and saved.csf["level"] == "L3"
        assert saved.excluded == {"L2": "fracture"} and "local_kyphosis" in saved.angles
        np.testing.assert_allclose(saved.vertebrae["L1"], truth["vertebrae"][0]["vertices"], atol=1.0)

        c.key("Return", "control")  # add the spine row: one key
        rows = read_rows(study.spine_csv, table="spine")
        assert len(rows) == 1 and rows.loc[0, "patient_id"] == first and rows.loc[0, "observer_id"] == "A"
        assert rows.loc[0, "vbq"] == pytest.approx(3.1, rel=1e-12) and rows.loc[0, "vbq_levels"] == "L1;L3;L4"
        assert rows.loc[0, "local_kyphosis_deg"] == pytest.approx(12.0, abs=1.5)
        assert session.row_id(measure_set="spine") == rows.loc[0, "row_id"]
        assert not study.measurements_csv.exists()  # the spine row went to its own table

        # a change after the row: Next asks again
        spine.include("L2")
        assert "spine drawing changed" in widget._finished()[1]
        spine.exclude("L2", "fracture")
        assert widget._finished() == (True, "")

        widget.ask_unfinished = lambda why: pytest.fail(f"asked although both rows were added: {why}")
        c.key("PageDown")
        _ready(widget)
        entry = _session_file(study)["cases"][first]
        assert entry["state"] == "done" and entry["row_id"] == "muscle-1"
        assert entry["spine_row_id"] == rows.loc[0, "row_id"] and entry["spine_row_ids"] == [entry["spine_row_id"]]

        # the second case has no sagittal series: it says so, and the case is skipped with a reason
        assert session.current_id == second
        assert widget.sagittal_layer is None and spine.layer is None and spine.result is None
        assert spine.patient_edit.text() == "" and not spine.excluded()
        level, message = widget.messages[-1]
        assert level == "error" and "no sagittal image" in message and "Ctrl-K" in message
        assert "no sagittal image" in widget.case_label.text()
        c.key("J", "control")
        assert widget.view == "muscle" and "no sagittal image" in widget.messages[-1][1]
        assert [layer.name for layer in viewer.layers] == [second]  # the first case's layers are gone
        widget.ask_unfinished = lambda why: asked.append(why) or "skip"
        widget.ask_reason = lambda: "no sagittal series"
        c.key("PageDown")
        assert "no sagittal image" in asked[-1] and "no row in the shared CSV" in asked[-1]
        assert session.case_state(second) == "skipped" and session.skip_reason(second) == "no sagittal series"
        viewer.close()  # napari closed without End session

        # resume: the first case's spine drawing comes back, and it is still done
        viewer2, again = make_session(study, viewer=make_napari_viewer(show=True))
        _ready(again, again.start())
        assert again.session.current_id == second
        _ready(again, again.previous())
        assert again.session.current_id == first and again.session.case_state() == "done"
        dock = again.spine
        assert dock.slice_index == truth["slice_index"] and dock.excluded() == {"L2": "fracture"}
        assert sorted(p for _, _, p in dock._state[0]) == sorted(["L1", "L2", "L3", "L4", "CSF", "upper", "lower"])
        assert dock.result.vbq == pytest.approx(3.1, rel=1e-12)
        assert again._finished() == (True, "")
        again.show_view("spine")
        assert again.sagittal_layer.visible and dock.layer.visible and not again.image_layer.visible
        assert viewer2.layers.selection.active is dock.layer  # clicks draw on the shown image's layer
        again.show_view("muscle")
        assert not dock.layer.visible and _same(viewer2.layers.selection.active, again.image_layer)
        dock.include("L2")  # the done case's drawing changed, and the session ends without Next
        assert again.session.case_state() == "started"  # no longer done: its spine row is stale
        assert again.end()
        assert not dock.observer_edit.isReadOnly() and dock.path_guard is None
    finally:
        paths = open_recorder.stop()
    b_folder = str(study.observer_dir("B"))
    assert not [p for p in paths if p.startswith(b_folder + "/") or p == b_folder]
    assert read_spine_annotation(b_file).observer_id == "B"  # untouched


def test_a_spine_only_study_needs_no_measure_dock(make_session, canvas, phantom_files, sagittal_files, tmp_path):
    from napari_pvm._widgets.measure_widget import MeasureWidget
    from napari_pvm._widgets.spine_widget import SpineWidget

    first, second = _order(["S1", "S2"])
    study = _study(
        tmp_path / "study",
        [
            {"patient_id": first, "image": "images/sag.nii.gz"},  # spine only: the image is the sagittal series
            {"patient_id": second, "image": "images/ax.nii.gz"},  # an axial image by mistake
        ],
        ["spine"],
        {"sag.nii.gz": sagittal_files["image"], "ax.nii.gz": phantom_files["image"]},
    )
    truth = json.loads(sagittal_files["annotation"].read_text())
    viewer, widget = make_session(study, codes=True)
    spine = SpineWidget(viewer)  # docked before the session starts, its messages kept for the test
    viewer.window.add_dock_widget(spine, name="Spine measures")
    _quiet(spine)
    asked = []
    widget.ask_unfinished = lambda why: asked.append(why)
    _ready(widget, widget.start())
    assert widget.spine is spine
    assert widget.measure is None and widget.image_layer is None
    assert not [w for w in viewer.window.dock_widgets.values() if isinstance(w, MeasureWidget)]
    assert widget.view == "spine" and widget.view_box.isHidden()
    sagittal = widget.sagittal_layer
    code = study.codes()[first]
    assert [layer.name for layer in viewer.layers] == [code] and sagittal.visible  # study codes on screen
    assert spine.patient_edit.text() == first and spine.patient_edit.echoMode() == QLineEdit.EchoMode.Password

    c = canvas(viewer)
    c.key("K", "shift")
    for _ in range(5):
        c.key("n")  # L1 … CSF passed over: only the angle is read in this study
    assert spine.part == "upper"
    angle = truth["angles"][0]
    c.pixel_drag(sagittal, angle["upper"][0], angle["upper"][1])
    assert spine.part == "lower"  # the list goes on to the lower line, not back to L1
    c.pixel_drag(sagittal, angle["lower"][0], angle["lower"][1])  # the list goes on to the lower line, not back to L1
    assert spine.result.angles["local_kyphosis"] == pytest.approx(12.0, abs=1.5)
    c.key("PageDown")  # no spine row yet: asked, stays, no outlines demanded
    assert len(asked) == 1 and "spine CSV" in asked[0] and "outline" not in asked[0]
    assert widget.session.current_id == first
    angle_drawn = spine.result.angles["local_kyphosis"]

    # an L1 ROI left half drawn (two vertices clicked): Next must not take it, nor swap layers under it
    assert spine.part == "L1" and spine.layer.mode == "add_polygon"
    l1 = truth["vertebrae"][0]["vertices"]
    c.polygon(sagittal, l1[:2], finish=None)
    widget.ask_unfinished = lambda why: asked.append(why) or "measure"  # "Measure and add the row"
    c.key("PageDown")
    _ready(widget)
    assert len(asked) == 2
    saved = read_spine_annotation(study.spine_annotation_path("A", first))
    assert saved.vertebrae == {} and "local_kyphosis" in saved.angles  # the half-drawn ROI was dropped
    rows = read_rows(study.spine_csv, table="spine")
    assert len(rows) == 1 and np.isnan(rows.loc[0, "vbq"]) and rows.loc[0, "patient_id"] == first
    assert rows.loc[0, "local_kyphosis_deg"] == pytest.approx(angle_drawn, abs=1e-9)
    added = [m for level, m in spine.messages if "spine row" in m]
    assert added and code in added[-1] and first not in added[-1]  # the dock's message keeps the code
    entry = _session_file(study)["cases"][first]
    assert entry["state"] == "done" and entry["spine_row_id"] == rows.loc[0, "row_id"] and "row_id" not in entry
    assert not study.measurements_csv.exists()

    # the second case's image is axial: said, nothing drawn on it, skipped with Ctrl-K and a reason
    assert widget.sagittal_layer is None and "not a sagittal series" in widget.messages[-1][1]
    assert len(viewer.layers) == 0  # the first case's image and shapes are gone, nothing of the axial image shown
    widget.ask_reason = lambda: "axial series only"
    c.key("K", "control")
    assert widget.session.skip_reason(second) == "axial series only"
    assert widget.progress_label.text() == "1 / 2 done, 1 skipped"


def test_x_moves_the_list_on_a_resumed_drawing_continues_with_its_single_line_and_a_row_is_added_once(
    make_session, make_napari_viewer, canvas, sagittal_files, tmp_path
):
    (only,) = _order(["R1"])
    study = _study(
        tmp_path / "study",
        [{"patient_id": only, "image": "images/sag.nii.gz"}],
        ["spine"],
        {"sag.nii.gz": sagittal_files["image"]},
    )
    truth = json.loads(sagittal_files["annotation"].read_text())
    levels = {item["level"]: item["vertices"] for item in truth["vertebrae"]}
    viewer, widget = make_session(study)
    _ready(widget, widget.start())
    spine, sagittal = widget.spine, widget.sagittal_layer
    _quiet(spine)
    answers = []
    spine.confirm = lambda title, text: answers.append(text) or False  # "No" to a second row
    c = canvas(viewer)
    c.key("K", "shift")
    c.polygon(sagittal, levels["L1"], finish="enter")
    assert spine.part == "L2"
    sagittal.name = "my label"  # renamed in the layer list: still the dock's image, still saved as drawn
    c.key("x")  # L2 left out before it is drawn: the list moves on, so the next ROI is L3's
    assert spine.excluded() == {"L2": "fracture"} and spine.part == "L3"
    c.polygon(sagittal, levels["L3"], finish="enter")
    assert [p for _, _, p in spine._state[0]] == ["L1", "L3"]
    c.key("n")  # L4 passed over for now
    c.polygon(sagittal, truth["csf"]["vertices"], finish="enter")
    upper = truth["angles"][0]["upper"]
    c.pixel_drag(sagittal, upper[0], upper[1])  # one endplate line: no angle yet, but kept
    c.key("Return", "control")
    c.key("Return", "control")  # pressed twice: asked, and "No" adds nothing
    rows = read_rows(study.spine_csv, table="spine")
    assert len(rows) == 1 and rows.loc[0, "vbq"] == pytest.approx(310 / 100, rel=1e-12)
    assert len(answers) == 1 and rows.loc[0, "row_id"] in answers[0]
    viewer.close()  # napari closed half-way

    viewer2, again = make_session(study, viewer=make_napari_viewer(show=True))
    _ready(again, again.start())
    dock = again.spine
    dock.confirm = lambda title, text: answers.append(text) or False
    _quiet(dock)
    assert dock.part == "L4" and dock.excluded() == {"L2": "fracture"}  # at the first missing part, not at L1
    assert [p for _, _, p in dock._state[0]] == ["L1", "L3", "CSF", "upper"]  # the single line came back
    c2 = canvas(viewer2)
    c2.key("Z", "control")  # nothing drawn since it reopened: the saved drawing is not wiped
    assert [p for _, _, p in dock._state[0]] == ["L1", "L3", "CSF", "upper"]
    assert len(read_spine_annotation(study.spine_annotation_path("A", only)).vertebrae) == 2
    c2.key("Return", "control")  # the same drawing after a resume: asked again, nothing added
    assert len(answers) == 2 and len(read_rows(study.spine_csv, table="spine")) == 1
    c2.polygon(again.sagittal_layer, levels["L4"], finish="enter")
    assert [p for _, _, p in dock._state[0]] == ["L1", "L3", "L4", "CSF", "upper"]  # L1's ROI kept
    c2.key("Return", "control")  # a changed drawing is added without a question
    assert len(answers) == 2 and len(read_rows(study.spine_csv, table="spine")) == 2


def test_a_careless_observer_cannot_draw_on_the_hidden_image(
    make_session, canvas, phantom_files, sagittal_files, tmp_path
):
    first, second = _order(["Q1", "Q2"])
    study = _study(
        tmp_path / "study",
        [
            {"patient_id": first, "image": "images/ax.nii.gz", "sagittal_image": "images/sag.nii.gz"},
            {"patient_id": second, "image": "images/ax.nii.gz", "sagittal_image": "images/sag_lost_Q2.nii.gz"},
        ],
        ["muscle", "spine"],
        {"ax.nii.gz": phantom_files["image"], "sag.nii.gz": sagittal_files["image"]},
    )
    truth = json.loads(sagittal_files["annotation"].read_text())
    viewer, widget = make_session(study)
    _ready(widget, widget.start())
    spine = widget.spine
    _quiet(spine)
    assert not spine.image_combo.isEnabled()  # the session chooses the case's sagittal image
    c = canvas(viewer)

    spine.mark_button.click()  # the dock's Mark button on the axial view: refused, nothing marked
    assert spine.slice_index is None and "Ctrl-J" in spine.messages[-1][1]
    c.key("J", "control")
    sagittal = widget.sagittal_layer
    c.key("K", "shift")
    c.polygon(sagittal, truth["vertebrae"][0]["vertices"], finish="enter")
    c.polygon(sagittal, truth["vertebrae"][1]["vertices"][:2], finish=None)  # L2 half drawn
    c.key(
        "J", "control"
    )  # back to the axial image (the half-drawn ROI is dropped), then a part chosen in the Spine dock's list
    spine.part_combo.setCurrentIndex(spine.part_combo.findData("CSF"))
    assert widget.view == "spine" and sagittal.visible and not widget.image_layer.visible
    assert viewer.layers.selection.active is spine.layer  # what is drawn next is seen
    c.polygon(sagittal, truth["csf"]["vertices"], finish="enter")
    assert [p for _, _, p in spine._state[0]] == ["L1", "CSF"]
    with pytest.raises(PvmError, match="saved only as"):  # Save… over the outline file: refused
        spine.save_annotation(str(study.annotation_path("A", first)))
    assert not study.annotation_path("A", first).exists()
    c.key("J", "control")
    c.key("Z", "control")  # on the axial view Ctrl-Z is the Measure dock's: the spine drawing stays
    assert [p for _, _, p in spine._state[0]] == ["L1", "CSF"]
    c.key("k")  # L4 marked on the axial image
    outline = json.loads(phantom_files["annotation"].read_text())["rois"][0]["vertices"]
    c.polygon(widget.image_layer, outline[:2], finish=None)  # an outline half drawn, then Ctrl-J: dropped
    c.key("J", "control")
    outlines = [x for x in viewer.layers if x.metadata.get("napari_pvm", {}).get("role") == "outlines"]
    assert len(outlines) == 1 and len(outlines[0].data) == 0
    # a Measure dock with a view_guard hook gets the session's: Mark only on the axial view
    measure = widget.measure
    measure.view_guard = None
    widget._attach_measure()
    with pytest.raises(PvmError, match="Ctrl-J"):
        measure.view_guard()  # the sagittal image is shown
    c.key("F", "shift")  # a fat sample chosen while the sagittal image is shown: the axial image shows
    assert widget.view == "muscle" and widget.image_layer.visible and not sagittal.visible
    active = viewer.layers.selection.active
    assert active.metadata["napari_pvm"]["role"] == "samples" and active.mode == "add_polygon"  # as chosen
    measure.view_guard()  # the axial image is shown: allowed

    # the next case's sagittal file is missing: Next's question says so without its path or name
    asked = []
    widget.ask_unfinished = lambda why: asked.append(why) or "leave"
    c.key("PageDown")
    _ready(widget)
    assert widget.session.current_id == second
    c.key("PageDown")
    assert "cannot be opened" in asked[-1] and "sag_lost_Q2" not in asked[-1] and "images" not in asked[-1]


def test_a_radiograph_oriented_by_the_observer_is_oriented_again_when_the_case_reopens(
    make_session, make_napari_viewer, canvas, tmp_path
):
    from test_io import write_radiograph

    (only,) = _order(["X1"])
    pixels = (np.arange(60)[:, None] * 7 + np.arange(80)[None, :] ** 2 % 97).astype(np.uint16)
    (tmp_path / "src").mkdir()
    lateral = write_radiograph(tmp_path / "src" / "lat.dcm", pixels, orientation=None, field="ImagerPixelSpacing")
    study = _study(
        tmp_path / "study", [{"patient_id": only, "image": "images/lat.dcm"}], ["spine"], {"lat.dcm": lateral}
    )
    viewer, widget = make_session(study)
    _ready(widget, widget.start())
    spine, image = widget.spine, widget.sagittal_layer
    _quiet(spine)
    assert not spine.anterior_box.isHidden()
    spine.anterior_right.click()  # the observer sees anterior on the image's right
    np.testing.assert_array_equal(np.squeeze(np.asarray(image.data)), pixels[:, ::-1])
    c = canvas(viewer)
    c.key("K", "shift")
    for _ in range(5):
        c.key("n")  # to the upper line: only the angle on a radiograph
    c.pixel_drag(image, (15, 10), (10, 70))
    c.pixel_drag(image, (45, 10), (52, 70))
    angle = spine.result.angles["local_kyphosis"]
    viewer.close()

    viewer2, again = make_session(study, viewer=make_napari_viewer(show=True))
    _ready(again, again.start())
    dock = again.spine
    # shown as the observer oriented it, so the lines sit where they were drawn; not asked again
    np.testing.assert_array_equal(np.squeeze(np.asarray(again.sagittal_layer.data)), pixels[:, ::-1])
    assert dock.anterior_box.isHidden() and dock.anterior == {"side_in_file": "right", "source": "observer"}
    assert dock.result.angles["local_kyphosis"] == pytest.approx(angle, abs=1e-9)


def test_a_spine_row_is_not_current_when_the_saved_spine_drawing_cannot_be_loaded(
    make_session, sagittal_files, tmp_path
):
    """Resuming a case whose spine file was corrupted: the recorded spine row
    cannot be checked against the drawing, so Next does not take the case as
    finished (it asks), and the message says why."""
    from napari_pvm.core.session import ReadingSession, Study, spine_annotation_sha256

    first, second = _order(["S1", "S2"])
    study = _study(
        tmp_path / "study",
        [{"patient_id": pid, "image": "images/sag.nii.gz"} for pid in (first, second)],
        ["spine"],
        {"sag.nii.gz": sagittal_files["image"]},
    )
    truth = json.loads(sagittal_files["annotation"].read_text())
    earlier = ReadingSession.open(Study(study.folder), "A")
    path = earlier.save_spine_annotation(truth)
    row = {"row_id": "r-1", "patient_id": first, "observer_id": "A", "session": earlier.session}
    earlier.record_row(
        row, annotation_sha256=spine_annotation_sha256(json.loads(path.read_text())), measure_set="spine"
    )
    earlier.close()
    path.write_text('{"format": "napari-pvm.spine/1", "vertebrae": [')  # cut off: not JSON any more

    viewer, widget = make_session(study)
    asked = []
    widget.ask_unfinished = lambda why: asked.append(why)  # answered "stay"
    _ready(widget, widget.start())
    assert widget.session.current_id == first and widget.session.row_id(measure_set="spine") == "r-1"
    assert any("spine annotation could not be loaded" in m for _, m in widget.messages)
    widget.next()
    assert len(asked) == 1 and "could not be loaded" in asked[0] and "r-1" in asked[0]
    assert widget.session.current_id == first  # stayed on the case
