"""The reading-session dock: observer first, own order, resume, blinding."""

import json
import os
import shutil

import numpy as np
import pytest
from qtpy.QtWidgets import QLineEdit

from napari_pvm.core.annotation import read_annotation, write_annotation
from napari_pvm.core.session import ReadingSession, SessionError, Study

IDS = ["P001", "P002", "P003"]


@pytest.fixture
def study(tmp_path, phantom_files):
    """Four patients (copies of one phantom), a worklist with outcome columns,
    and observer B's outlines and skip reasons already on disk."""
    folder = tmp_path / "study"
    (folder / "images").mkdir(parents=True)
    lines = ["patient_id,image,slice_index,outcome,fracture_group"]
    for i, pid in enumerate(IDS):
        shutil.copy(phantom_files["image"], folder / "images" / f"{pid}.nii.gz")
        lines.append(f"{pid},images/{pid}.nii.gz,{'2' if i % 2 == 0 else ''},OUTCOME_{i % 2},GROUP_SECRET")
    (folder / "worklist.csv").write_text("\n".join(lines) + "\n")
    study = Study(folder)
    b = ReadingSession.open(study, "B")
    truth = read_annotation(phantom_files["annotation"])
    for pid in IDS:
        truth.patient_id, truth.observer_id = pid, "B"
        b.save_annotation(truth, patient_id=pid)
    b.skip("B_ONLY_REASON")
    study.measurements_csv.write_text("patient_id,observer_id,ESMF_B_fi_pct\nP001,B,12.5\n")
    return study


@pytest.fixture
def make_dock(make_napari_viewer, qtbot):
    def make(study, observer="A", session="read1", codes=False, viewer=None):
        from napari.utils._proxies import PublicOnlyProxy

        from napari_pvm._widgets.session_widget import SessionWidget

        viewer = viewer or make_napari_viewer()
        widget = SessionWidget(PublicOnlyProxy(viewer))  # what napari hands a plugin dock
        viewer.window.add_dock_widget(widget, name="Reading session")
        widget.messages = []
        widget.notify = lambda message, level="info": widget.messages.append((level, message))
        widget.folder_edit.setText(str(study.folder))
        widget.observer_edit.setText(observer)
        widget.session_edit.setText(session)
        widget.codes_check.setChecked(codes)
        return widget

    return make


def _hook_measure(widget):
    """Dock a Measure widget whose dialogs the test answers, before the session finds it."""
    from napari_pvm._widgets.measure_widget import MeasureWidget

    dock = MeasureWidget(widget.viewer)  # the same proxied viewer napari would pass
    widget.viewer.window.add_dock_widget(dock, name="Measure")
    dock.messages = []
    dock.notify = lambda message, level="info": dock.messages.append((level, message))
    dock.confirm = lambda title, text: False
    return dock


def _draw(widget, n=2, slice_index=2):
    """Mark the L4 slice in the Measure dock and add ``n`` outlines from code
    (for the tests of files and blinding; the flow tests draw on the canvas)."""
    dock = widget.measure
    step = list(widget.viewer.dims.current_step)
    step[0] = slice_index
    widget.viewer.dims.current_step = tuple(step)
    dock.mark_current_slice()
    square = np.array(
        [[slice_index, 100, 100], [slice_index, 100, 120], [slice_index, 120, 120], [slice_index, 120, 100]], float
    )
    for i in range(n):
        dock.outlines.add_polygons([square + [0, 0, 30 * i]])


def _ready(widget, result=True):
    """Wait until the case the session moved to is open."""
    assert widget.wait_until_ready(), "the case did not open"
    return result


def _leave(widget):
    """Next without a row: leave the case unfinished."""
    widget.ask_unfinished = lambda why: "leave"
    return _ready(widget, widget.next())


def _session_file(study, observer="A", session="read1"):
    return json.loads(study.session_path(observer, session).read_text())


def test_nothing_opens_before_an_observer_id_is_entered(make_dock, study):
    widget = make_dock(study, observer="")
    assert not widget.start_button.isEnabled()
    assert not widget.next_button.isEnabled()
    assert widget.start() is False and widget.next() is False
    assert len(widget.viewer.layers) == 0
    assert widget.messages[0][0] == "error" and "observer ID" in widget.messages[0][1]
    assert not study.session_path("A").exists()
    widget.observer_edit.setText("../B")
    assert not widget.start_button.isEnabled()
    widget.observer_edit.setText("A")
    assert widget.start_button.isEnabled()


def test_cases_open_in_the_observers_order_and_outlines_are_saved_as_drawn(make_dock, study):
    widget = make_dock(study)
    assert widget.start(), widget.messages  # no Measure dock yet: the session docks one
    _ready(widget)
    session = widget.session
    assert session.order == tuple(_session_file(study)["order"]) and sorted(session.order) == IDS
    first = session.current_id
    assert first == session.order[0]
    image = widget.image_layer
    assert [layer.name for layer in widget.viewer.layers] == [first]
    np.testing.assert_allclose(image.scale, (4.0, 1.2, 1.2), rtol=1e-6)
    if session.current.slice_index:  # the suggested slice
        assert widget.viewer.dims.current_step[0] == 2
    dock = widget.measure
    assert dock in widget.viewer.window.dock_widgets.values()
    assert (dock.patient_edit.text(), dock.observer_edit.text(), dock.session_edit.text()) == (first, "A", "read1")
    assert dock.csv_edit.text() == str(study.measurements_csv)
    assert dock.observer_edit.isReadOnly() and widget.observer_edit.isReadOnly()
    assert dock.image.name == image.name
    assert widget.progress_label.text() == f"0 / {len(IDS)} done"
    dock.notify = lambda message, level="info": None

    _draw(widget, n=2)  # saved as drawn, without pressing anything
    saved = read_annotation(study.annotation_path("A", first))
    assert (saved.observer_id, saved.patient_id, saved.session) == ("A", first, "read1")
    assert sorted(saved.rois) == ["PS_L", "PS_R"]
    assert _leave(widget)
    second = widget.session.current_id
    assert second == session.order[1]
    # the previous case's image and outlines are gone; the dock forgot its slice
    assert [layer.name for layer in widget.viewer.layers] == [second]
    assert dock.slice_index is None and dock.patient_edit.text() == second
    # outlines but no row: not done
    assert widget.progress_label.text() == f"0 / {len(IDS)} done"
    assert _session_file(study)["cases"][first]["state"] == "started"
    # back to the first case: its own outlines come back
    assert _ready(widget, widget.previous())
    assert sorted(dock.outlines.features["roi"]) == ["PS_L", "PS_R"]


def test_resume_after_napari_is_closed(make_dock, make_napari_viewer, study):
    widget = make_dock(study)
    _hook_measure(widget)
    _ready(widget, widget.start())
    _leave(widget)
    skipped = widget.session.current_id
    widget.ask_reason = lambda: None  # cancelled: nothing happens
    assert not widget.skip() and widget.session.current_id == skipped
    widget.ask_reason = lambda: "L4 not covered"
    assert _ready(widget, widget.skip())
    here = widget.session.current_id
    _draw(widget, n=3)
    order = widget.session.order
    widget.viewer.close()  # no End session: napari just closes

    again = make_dock(study, viewer=make_napari_viewer())
    _hook_measure(again)
    assert _ready(again, again.start())
    assert again.session.order == order and again.session.current_id == here
    assert again.session.position == 2
    assert sorted(again.measure.outlines.features["roi"]) == ["ES_L", "PS_L", "PS_R"]
    assert again.session.skip_reason(skipped) == "L4 not covered"
    assert again.progress_label.text() == f"0 / {len(IDS)} done, 1 skipped"
    recorded = _session_file(study)
    assert recorded["cases"][skipped] == {**recorded["cases"][skipped], "state": "skipped", "reason": "L4 not covered"}
    assert recorded["log"][-1]["event"] == "resume"
    _ready(again, again.previous())
    assert "reason: L4 not covered" in again.case_label.text()


def test_the_other_observers_files_rows_and_the_outcome_are_never_read(make_dock, study, open_recorder):
    open_recorder.start()
    try:
        widget = make_dock(study)
        dock = _hook_measure(widget)
        _ready(widget, widget.start())
        for _ in IDS:
            _draw(widget, n=1)
            _leave(widget)
        widget.end()
    finally:
        paths = open_recorder.stop()
    assert any(p.endswith(".nii.gz") for p in paths), "the audit hook saw no image being read"
    b_folder = str(study.observer_dir("B")) + os.sep
    assert not [p for p in paths if p.startswith(b_folder) or "B.read1" in p or p.endswith("measurements.csv")]
    # B had outlined every case: none of B's outlines ever appeared in A's viewer
    texts = [widget.case_label.text(), widget.progress_label.text(), *(m for _, m in widget.messages + dock.messages)]
    assert not [t for t in texts if "B_ONLY" in t or "OUTCOME" in t or "SECRET" in t]
    for pid in IDS:
        assert read_annotation(study.annotation_path("A", pid)).observer_id == "A"
        assert len(read_annotation(study.annotation_path("B", pid)).rois) == 6  # untouched


def test_another_observers_file_in_my_folder_is_not_overwritten(make_dock, study):
    widget = make_dock(study)
    _hook_measure(widget)
    _ready(widget, widget.start())
    pid = widget.session.current_id
    target = study.annotation_path("A", pid)
    foreign = read_annotation(study.annotation_path("B", pid))  # copied over by hand
    target.parent.mkdir(parents=True, exist_ok=True)
    write_annotation(target, foreign)
    before = target.read_bytes()
    _draw(widget, n=1, slice_index=2)
    assert widget.status_label.text().startswith("not saved:")  # the live save was refused too
    widget.ask_unfinished = lambda why: "leave"
    assert not widget.next()  # refused: stays on the case rather than losing or overwriting work
    assert widget.session.current_id == pid
    assert target.read_bytes() == before
    assert any("belongs to observer B" in m for level, m in widget.messages if level == "error")
    # the guard the Measure dock's own Save…/Load… buttons go through while a session runs
    for mode in ("load", "save"):
        with pytest.raises(SessionError):
            widget._guard_path(study.annotation_path("B", pid), mode)
    widget._guard_path(study.annotation_path("A", widget.session.order[1]), "load")


def test_study_codes_hide_the_patient_id_but_the_files_keep_it(make_dock, study):
    widget = make_dock(study, codes=True)
    dock = _hook_measure(widget)
    _ready(widget, widget.start())
    pid = widget.session.current_id
    code = study.codes()[pid]
    assert widget.image_layer.name == code
    assert pid not in widget.case_label.text() and code in widget.case_label.text()
    assert "source" not in widget.image_layer.metadata["napari_pvm"]
    assert dock.patient_edit.text() == pid  # the row gets the real ID ...
    assert dock.patient_edit.echoMode() == QLineEdit.EchoMode.Password  # ... the screen does not show it
    _draw(widget, n=1)
    dock.save_annotation(str(study.annotation_path("A", pid)))  # the dock's own message names the file
    assert dock.messages[-1][1] == f"annotation saved to {code}.read1.pvm.json"
    assert read_annotation(study.annotation_path("A", pid)).patient_id == pid
    # an unreadable image: the message names neither the file nor the patient; the case can be skipped
    second = widget.session.order[1]
    os.remove(study.folder / "images" / f"{second}.nii.gz")
    _leave(widget)
    level, message = widget.messages[-1]
    assert level == "error" and "cannot be opened" in message and study.codes()[second] in message
    assert second not in message and "nii" not in message and "images" not in message
    assert _ready(widget, widget.skip("image missing")) and widget.session.skip_reason(second) == "image missing"
    widget.end()
    assert dock.patient_edit.echoMode() == QLineEdit.EchoMode.Normal and not dock.observer_edit.isReadOnly()


def test_repeat_reading_sees_neither_earlier_outlines_nor_earlier_order(make_dock, study):
    widget = make_dock(study)
    _hook_measure(widget)
    _ready(widget, widget.start())
    _draw(widget, n=2)
    read1 = widget.session.order
    widget.end()
    for pid in read1[1:]:  # read 1 finished on every case
        shutil.copy(study.annotation_path("A", read1[0]), study.annotation_path("A", pid))

    widget.session_edit.setText("read2")
    _ready(widget, widget.start())
    assert widget.session.order != read1
    assert widget.session.session == "read2" and widget.measure.session_edit.text() == "read2"
    for i in range(len(IDS)):
        assert widget.measure.outlines is None  # nothing of read 1 is loaded
        if i < len(IDS) - 1:
            _leave(widget)
    _draw(widget, n=1)
    widget.end()
    last = _session_file(study, "A", "read2")["order"][-1]
    assert len(read_annotation(study.annotation_path("A", last, "read2")).rois) == 1
    assert len(read_annotation(study.annotation_path("A", last, "read1")).rois) == 2


# ------------------------------------------------- the flow, on the canvas


def _outline(truth, key, n=10):
    verts = np.asarray(truth.rois[key])
    return [tuple(v) for v in verts[np.linspace(0, len(verts), n, endpoint=False).astype(int)]]


def _go_to_slice(widget, c, index):
    """Step through the slices with the arrow keys (napari's own keys)."""
    while widget.viewer.dims.current_step[0] != index:
        c.key("Right" if widget.viewer.dims.current_step[0] < index else "Left")


def _read_case_on_canvas(widget, c, truth, keys):
    """What an observer does with the keyboard and mouse: go to L4, mark it
    (K), draw the outlines ``keys`` and a fat and a lean-muscle sample."""
    image = widget.image_layer
    _go_to_slice(widget, c, 2)
    c.key("k")
    for key in keys:
        c.polygon(image, _outline(truth, key))
    fat = next(s for s in truth.samples if s["class"] == "fat")["vertices"]
    lean = next(s for s in truth.samples if s["class"] == "muscle")["vertices"]
    c.key("F", "shift")
    c.polygon(image, [tuple(v) for v in np.asarray(fat)])
    c.key("U", "shift")
    c.polygon(image, [tuple(v) for v in np.asarray(lean)[::3]])


def test_next_marks_a_case_done_only_once_its_row_is_in_the_csv(
    make_dock, make_napari_viewer, study, canvas, phantom_files, qtbot
):
    from napari_pvm.core.store import read_rows

    truth = read_annotation(phantom_files["annotation"])
    study.measurements_csv.unlink()  # the fixture's stand-in CSV (for the blinding test) is not a store file
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    widget = make_dock(study, viewer=viewer)
    dock = _hook_measure(widget)
    dock.confirm = lambda title, text: True  # "add the row with muscles left empty?" yes
    asked = []
    widget.ask_unfinished = lambda why: asked.append(why)  # answers None: stay on the case
    _ready(widget, widget.start())
    c = canvas(viewer)
    first = widget.session.current_id

    _read_case_on_canvas(widget, c, truth, ["PS_L", "PS_R"])
    c.key("PageDown")  # outlines but no row: asked, and it stays
    assert len(asked) == 1 and "no row" in asked[0]
    assert widget.session.current_id == first and widget.session.case_state(first) == "started"
    assert not study.measurements_csv.exists()

    c.key("Return", "ctrl")  # measure and add the row: one action
    qtbot.waitUntil(lambda: widget.session.row_id() is not None, timeout=120_000)
    row_id = widget.session.row_id()
    rows = read_rows(study.measurements_csv)
    mine = rows[rows["row_id"] == row_id]
    assert len(mine) == 1 and mine["patient_id"].iloc[0] == first and mine["observer_id"].iloc[0] == "A"
    assert float(mine["PS_L_total_area_cm2"].iloc[0]) > 0 and mine["ES_L_total_area_cm2"].isna().all()

    widget.ask_unfinished = lambda why: pytest.fail(f"asked although the row was added: {why}")
    c.key("PageDown")
    _ready(widget)
    second = widget.session.current_id
    assert second == widget.session.order[1]
    entry = _session_file(study)["cases"][first]
    assert entry["state"] == "done" and entry["row_id"] == row_id
    saved = read_annotation(study.annotation_path("A", first))
    assert sorted(saved.rois) == ["PS_L", "PS_R"] and sorted(s["class"] for s in saved.samples) == ["fat", "muscle"]
    np.testing.assert_allclose(saved.rois["PS_L"], _outline(truth, "PS_L"), atol=1.0)  # clicked within a pixel

    # the next case starts clean: no outlines, IDs of this case, no results, draw list at PS L
    assert [layer.name for layer in viewer.layers] == [second]
    assert dock.patient_edit.text() == second and dock.results() is None and dock.slice_index is None
    assert dock.target == "PS_L"

    # case 2: a row added, then an outline changed: Next asks again; "measure" adds a new row and moves on
    _read_case_on_canvas(widget, c, truth, ["ES_L"])
    c.key("Return", "ctrl")
    qtbot.waitUntil(lambda: widget.session.row_id() is not None, timeout=120_000)
    old_row = widget.session.row_id()
    c.key("m")
    c.polygon(widget.image_layer, _outline(truth, "ES_R"))
    asked.clear()
    widget.ask_unfinished = lambda why: asked.append(why) or "measure"
    c.key("PageDown")
    _ready(widget)
    assert len(asked) == 1 and "changed" in asked[0]
    entry = _session_file(study)["cases"][second]
    assert entry["state"] == "done" and entry["row_id"] != old_row and entry["row_ids"] == [old_row, entry["row_id"]]
    rows = read_rows(study.measurements_csv)
    assert list(rows.loc[rows["patient_id"] == second, "row_id"]) == [old_row, entry["row_id"]]
    assert widget.progress_label.text() == f"2 / {len(IDS)} done"


# ------------------------------------------------------ 1920 × 1080 screen

_LAYOUT_SCRIPT = r"""
import json, sys
import napari
from qtpy.QtWidgets import QAbstractScrollArea, QApplication
from napari_pvm._widgets.measure_widget import MeasureWidget
from napari_pvm._widgets.session_widget import SessionWidget

folder = sys.argv[1]
viewer = napari.Viewer(show=True)
window = viewer.window._qt_window
screen = window.screen().availableGeometry()
window.setGeometry(screen)  # no window manager under Xvfb: "maximised" by hand
session = SessionWidget(viewer)
viewer.window.add_dock_widget(session, name="Reading session", area="right")
measure = MeasureWidget(viewer)
viewer.window.add_dock_widget(measure, name="Measure", area="right")
session.notify = measure.notify = lambda *a, **k: None
session.folder_edit.setText(folder)
session.observer_edit.setText("A")
assert session.start() and session.wait_until_ready()
step = list(viewer.dims.current_step); step[0] = 2; viewer.dims.current_step = tuple(step)
measure.mark_level("L4")
for _ in range(20):
    QApplication.processEvents()
docks = {}
for name, widget in (("session", session), ("measure", measure)):
    dock = widget.parentWidget()
    while dock is not None and not dock.inherits("QDockWidget"):
        dock = dock.parentWidget()
    bars = [a.verticalScrollBar().isVisible() for a in widget.findChildren(QAbstractScrollArea)]
    docks[name] = {"height": widget.height(), "needed": widget.minimumSizeHint().height(),
                   "hint": widget.sizeHint().height(), "dock_visible": dock.isVisible(),
                   "bottom": widget.mapTo(window, widget.rect().bottomLeft()).y(), "scrollbars": sum(bars)}
print("LAYOUT " + json.dumps({"screen": [screen.width(), screen.height()], "window": [window.width(), window.height()],
                              "docks": docks}))
viewer.close()
"""


def test_the_reading_layout_fits_a_1920_by_1080_screen(tmp_path, study):
    """Both docks of the reading layout, on a real 1920 × 1080 X screen
    (its own Xvfb: pytest-xvfb's screen is smaller), without scrolling."""
    import subprocess
    import sys

    if shutil.which("xvfb-run") is None:
        pytest.skip("xvfb-run is not installed")
    script = tmp_path / "layout.py"
    script.write_text(_LAYOUT_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["QT_QPA_PLATFORM"] = "xcb"
    proc = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1920x1080x24", sys.executable, str(script), str(study.folder)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("LAYOUT ")]
    assert lines, proc.stderr[-2000:]
    layout = json.loads(lines[-1][len("LAYOUT ") :])
    assert layout["screen"][1] <= 1080 and layout["window"][1] <= layout["screen"][1]
    for name, dock in layout["docks"].items():
        assert dock["dock_visible"], name
        assert dock["height"] >= dock["hint"], f"the {name} dock is squeezed: {dock}"
        assert dock["scrollbars"] == 0, f"the {name} dock scrolls: {dock}"
        assert dock["bottom"] <= layout["window"][1], f"the {name} dock runs off the window: {dock}"


# ------------------------------------------------------------ proposals


def test_proposals_follow_study_json_and_learn_only_from_own_finished_cases(make_dock, study, phantom_files):
    from napari_pvm.core.annotation import Annotation
    from napari_pvm.core.errors import PvmError

    truth = read_annotation(phantom_files["annotation"])
    widget = make_dock(study)
    dock = _hook_measure(widget)
    _ready(widget, widget.start())
    assert dock.example_provider is None and not dock.propose_button.isEnabled()  # default: off
    with pytest.raises(PvmError, match="proposals are off"):
        dock.propose()
    widget.end()
    info = json.loads(study.study_file.read_text())
    study.study_file.write_text(json.dumps(dict(info, proposals=True)))

    _ready(widget, widget.start())
    assert callable(dock.example_provider) and dock.propose_button.isEnabled()
    assert dock.example_provider() == []  # nothing finished yet (B outlined every case)
    session = widget.session
    first = session.current_id
    two = {k: truth.rois[k] for k in ("PS_L", "PS_R")}  # A's outlines differ from B's six
    session.save_annotation(Annotation(slice_index=2, rois=two, image_sha256=truth.image_sha256))
    session.record_row({"row_id": "r1", "patient_id": first, "observer_id": "A", "session": "read1"})
    widget.ask_unfinished = lambda why: pytest.fail(why)
    _ready(widget, widget.next())
    assert session.case_state(first) == "done"
    examples = dock.example_provider()
    assert len(examples) == 1
    plane, spacing, rois = examples[0]
    assert sorted(rois) == ["PS_L", "PS_R"] and spacing == pytest.approx((1.2, 1.2)) and plane.shape == (336, 336)
    widget.end()
    assert dock.example_provider is None and dock.propose_button.isEnabled()  # released with the session


def test_a_row_is_not_current_when_the_saved_outlines_cannot_be_loaded(make_dock, study, phantom_files):
    """Resuming a case whose outlines file was corrupted: its recorded row
    cannot be checked against the outlines, so Next asks instead of moving on."""
    from napari_pvm.core.annotation import annotation_sha256

    earlier = ReadingSession.open(study, "A", "read1")
    pid = earlier.current_id
    truth = read_annotation(phantom_files["annotation"])
    path = earlier.save_annotation(truth)
    row = {"row_id": "r-1", "patient_id": pid, "observer_id": "A", "session": "read1"}
    earlier.record_row(row, annotation_sha256=annotation_sha256(read_annotation(path)))
    earlier.close()
    path.write_text('{"format": "napari-pvm.annotation/1", "rois": {')  # cut off: not JSON any more

    widget = make_dock(study)
    _hook_measure(widget)
    asked = []
    widget.ask_unfinished = lambda why: asked.append(why)  # answered "stay"
    _ready(widget, widget.start())
    assert widget.session.current_id == pid and widget.session.row_id() == "r-1"
    assert any("outlines could not be loaded" in m for _, m in widget.messages)
    widget.next()
    assert len(asked) == 1 and "could not be loaded" in asked[0] and "r-1" in asked[0]
    assert widget.session.current_id == pid  # stayed on the case


def test_the_session_locks_the_measure_docks_image_list(make_dock, study):
    """The session chooses the case's image: the Measure dock's image list is
    locked while it runs (like the Spine dock's) and unlocked when it ends."""
    widget = make_dock(study)
    dock = _hook_measure(widget)
    assert dock.image_combo.isEnabled()
    _ready(widget, widget.start())
    assert widget.measure is dock and not dock.image_combo.isEnabled()
    assert dock.image is not None and dock.image_combo.currentText() == widget.image_layer.name
    assert widget.end()
    assert dock.image_combo.isEnabled()


def test_a_reshape_stroke_in_a_reading_session_is_saved_and_its_layer_leaves_with_the_case(
    make_dock, make_napari_viewer, study, canvas, phantom_files, qtbot
):
    from napari_pvm.core.rois import roi_mask

    truth = read_annotation(phantom_files["annotation"])
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    widget = make_dock(study, viewer=viewer)
    dock = _hook_measure(widget)
    _ready(widget, widget.start())
    c = canvas(viewer)
    first = widget.session.current_id
    image = widget.image_layer
    _go_to_slice(widget, c, 2)
    c.key("k")
    c.polygon(image, _outline(truth, "PS_L"))
    shape = image.data.shape[-2:]
    drawn = roi_mask(np.array(dock.annotation()["rois"][0]["vertices"]), shape)
    rows, cols = np.nonzero(drawn)
    chord = np.floor(rows.mean()) + 0.5
    c.key("R", "shift")
    stroke_layer = viewer.layers.selection.active
    assert stroke_layer.metadata["napari_pvm"]["role"] == "stroke"
    c.pixel_stroke(image, [(chord, cols.min() - 2), (chord, cols.max() + 2)], steps=8)
    qtbot.waitUntil(lambda: not len(stroke_layer.data), timeout=5000)
    reshaped = roi_mask(np.array(dock.annotation()["rois"][0]["vertices"]), shape)
    assert 0 < reshaped.sum() < drawn.sum()
    _leave(widget)  # Next without a row: the case is saved as it is
    saved = read_annotation(study.annotation_path("A", first))
    np.testing.assert_array_equal(roi_mask(saved.rois["PS_L"], shape), reshaped)
    assert [layer.name for layer in viewer.layers] == [widget.session.current_id]  # the stroke layer left too


# -------------------------------------- found by an exploratory review
def test_removing_the_last_outline_is_saved_and_does_not_come_back(make_dock, study, canvas):
    """The empty state was never saved (nothing to save), so the removed
    outline came back on the next visit and stayed in the file."""
    widget = make_dock(study)
    _hook_measure(widget)
    _ready(widget, widget.start())
    first = widget.session.current_id
    _draw(widget, n=1)
    assert sorted(read_annotation(study.annotation_path("A", first)).rois) == ["PS_L"]
    c = canvas(widget.viewer)
    c.key("z", "ctrl")  # the only outline undone
    assert not len(widget.measure.outlines.data)
    assert _leave(widget)
    assert _ready(widget, widget.previous())
    assert not len(widget.measure.outlines.data)
    assert read_annotation(study.annotation_path("A", first)).rois == {}
    assert _session_file(study)["cases"][first]["outlines"] == 0


def test_a_window_whose_session_another_window_took_writes_nothing(make_dock, make_napari_viewer, study, canvas):
    """The second window of the same session is the one that writes; the first
    said "not saved" but still overwrote the annotation, and appended rows the
    session never recorded."""
    first_window = make_dock(study)
    _hook_measure(first_window)
    _ready(first_window, first_window.start())
    pid = first_window.session.current_id
    _draw(first_window, n=2)
    second_window = make_dock(study, viewer=make_napari_viewer())
    _hook_measure(second_window)
    _ready(second_window, second_window.start())
    before = study.annotation_path("A", pid).read_bytes()
    canvas(first_window.viewer).key("z", "ctrl")  # the first window goes on editing
    assert first_window.status_label.text().startswith("not saved")
    assert study.annotation_path("A", pid).read_bytes() == before
    # a row from the first window is refused before anything is appended
    from napari_pvm.core.errors import PvmError

    csv_before = study.measurements_csv.read_bytes()
    dock = first_window.measure
    with pytest.raises(PvmError, match="changed by another napari window"):
        dock._append_row(str(study.measurements_csv), {"patient_id": pid})
    assert study.measurements_csv.read_bytes() == csv_before


def test_outlines_removed_on_a_later_visit_are_saved_removed(make_dock, study, canvas):
    widget = make_dock(study)
    _hook_measure(widget)
    _ready(widget, widget.start())
    first = widget.session.current_id
    _draw(widget, n=1)
    assert _leave(widget)
    assert _ready(widget, widget.previous())  # the saved outline is shown again
    layer = widget.measure.outlines
    layer.selected_data = {0}
    widget.viewer.layers.selection.active = layer
    canvas(widget.viewer).key("Delete")  # removed on this visit
    assert not len(layer.data)
    assert _leave(widget)
    assert read_annotation(study.annotation_path("A", first)).rois == {}
