"""The measurement dock: contract 6 methods and layers, measuring, the shared
CSV, the case fields, the layout. Drawing by mouse is in test_drawing.py."""

import json

import numpy as np
import pytest

from napari_pvm._widgets.measure_widget import KEYS, MeasureWidget
from napari_pvm.core import schema
from napari_pvm.core.annotation import read_annotation
from napari_pvm.core.errors import PvmError


@pytest.fixture
def dock(make_napari_viewer, qtbot, phantom_files):
    viewer = make_napari_viewer()
    viewer.open(str(phantom_files["image"]), plugin="napari-pvm")
    widget = MeasureWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.messages = []
    widget.notify = lambda message, level="info": widget.messages.append((level, message))
    widget.answers = []
    widget.confirm = lambda title, text: widget.answers.pop(0) if widget.answers else False
    return widget


def _go_to(widget, index=2):
    step = list(widget.viewer.dims.current_step)
    step[0] = index
    widget.viewer.dims.current_step = tuple(step)


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60_000)


def test_mark_level_creates_contract_6_layers(dock):
    _go_to(dock)
    assert dock.mark_level("L4") == 2
    layer = dock.outlines
    assert tuple(layer.scale) == tuple(dock.image.scale)
    assert layer.metadata["napari_pvm"]["role"] == "outlines"
    assert dock.samples.metadata["napari_pvm"]["role"] == "samples"
    assert {"roi", "origin"} <= set(layer.features.columns)
    assert dock.viewer.layers.selection.active is layer and layer.mode == "add_polygon"
    assert dock.missing_label.text() == "missing: PS L, PS R, ES L, ES R, MF L, MF R"
    # units in mm for the scale bar (all layers agree) and the axes named
    assert all(str(u) == "millimeter" for layer in dock.viewer.layers for u in layer.units)
    assert dock.viewer.canvas.overlays.scale_bar.visible
    assert "mm" in dock.viewer.dims.axis_labels[-1]


def test_refusals_raise_and_notify(dock):
    with pytest.raises(PvmError, match="mark the level slice"):
        dock.choose("PS_L")
    with pytest.raises(PvmError, match="unknown target"):
        dock.choose("QL_L")
    assert dock.messages[-1][0] == "warning"
    with pytest.raises(PvmError, match="unknown level"):
        dock.mark_level("L9")


def test_programmatic_shapes_take_the_chosen_muscle(dock, qtbot):
    _go_to(dock)
    dock.mark_level()
    layer = dock.outlines
    square = np.array([[2, 100, 100], [2, 100, 120], [2, 120, 120], [2, 120, 100]], float)
    layer.add_polygons([square])
    qtbot.waitUntil(lambda: dock.target == "PS_R", timeout=2000)
    assert list(layer.features["roi"]) == ["PS_L"]
    assert list(layer.features["origin"]) == ["drawn"]
    dock.step_muscle(+1)
    assert dock.active_muscle == "ES_L"
    dock.step_muscle(-1)
    assert dock.active_muscle == "PS_R"


def test_outline_on_another_slice_is_refused(dock, qtbot):
    _go_to(dock)
    dock.mark_level()
    dock.outlines.add_polygons([np.array([[1, 100, 100], [1, 100, 120], [1, 120, 120]], float)])
    qtbot.wait(50)
    with pytest.raises(PvmError, match="not on the L4 slice"):
        dock.annotation()


def test_annotation_is_json_contract_2_with_origins(dock, phantom_files):
    assert dock.load_annotation(phantom_files["annotation"])
    data = dock.annotation()
    json.dumps(data)  # JSON-able
    assert data["format"] == "napari-pvm.annotation/1" and data["slice_index"] == 2
    assert sorted(f"{r['muscle']}_{r['side']}" for r in data["rois"]) == sorted(schema.ROI_KEYS)
    assert {r["origin"] for r in data["rois"]} == {"drawn"}


def test_measure_add_results_and_csv_agree(dock, qtbot, tmp_path, phantom_files):
    from napari_pvm.core.store import read_rows

    assert dock.load_annotation(phantom_files["annotation"])
    assert dock.results() is None
    dock.proposals_allowed = False  # a measurement re-enables its controls, not Propose
    dock.patient_edit.setText("P001")
    dock.observer_edit.setText("obsA")
    stages = []
    worker = dock.measure()
    worker.yielded.connect(stages.append)
    _wait(qtbot, dock)
    assert [s[0] for s in stages] == [1, 2, 3]  # determinate progress per stage
    assert dock.progress.value() == dock.progress.maximum() and dock.progress.format() == "measured"
    truth = json.loads(phantom_files["truth"].read_text())
    row = dock.results()
    for key in ("PS_B_total_area_cm2", "ESMF_B_total_area_cm2"):
        assert row[key] == pytest.approx(truth[key], rel=1e-9)
    assert f"{dock.image.name} fat map" in dock.viewer.layers
    assert dock.viewer.layers.selection.active is dock.outlines  # the fat map did not take it
    assert len(dock.table_text().splitlines()) == 1 + 12
    assert dock.measure_button.isEnabled() and not dock.propose_button.isEnabled()
    # the classification's quality is shown beside the table, as stored in the row
    assert f"fat:muscle contrast {row['fat_muscle_contrast']:.2f}" in dock.quality_label.text()
    assert ("no quality flags" in dock.quality_label.text()) == (not row["qc_flags"])
    added = []
    dock.row_added.connect(added.append)
    csv = tmp_path / "shared.csv"
    row_id = dock.add_to_csv(csv)
    rows = read_rows(csv)
    assert len(rows) == 1 and rows.loc[0, "row_id"] == row_id
    assert added and added[0]["row_id"] == row_id and added[0]["patient_id"] == "P001"
    assert rows.loc[0, "PS_B_total_area_cm2"] == pytest.approx(row["PS_B_total_area_cm2"], rel=1e-12)
    # the same annotation again: asked, refused by default, never silent
    assert dock.add_to_csv(csv) is None
    assert len(read_rows(csv)) == 1
    assert "already row" in dock.messages[-1][1]
    dock.answers = [True]  # confirmed: a second row
    assert dock.add_to_csv(csv) is not None
    assert len(read_rows(csv)) == 2


def test_measure_and_add_is_one_key(dock, qtbot, tmp_path, phantom_files, canvas):
    from napari_pvm.core.store import read_rows

    dock.viewer.window._qt_window.show()
    assert dock.load_annotation(phantom_files["annotation"])
    dock.patient_edit.setText("P002")
    dock.observer_edit.setText("obsA")
    csv = tmp_path / "shared.csv"
    dock.csv_edit.setText(str(csv))
    c = canvas(dock.viewer, fit=False)
    c.key("Return", "ctrl")
    qtbot.waitUntil(csv.exists, timeout=60_000)
    assert list(read_rows(csv)["patient_id"]) == ["P002"]
    assert "Control-Enter" in KEYS


def test_vertices_map_to_image_pixels_through_world_coordinates(make_napari_viewer):
    from napari_pvm._widgets._layers import _to_image_data

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((4, 50, 60)), scale=(3.0, 0.7, 0.8), translate=(1.0, -5.0, 2.0))
    shapes = viewer.add_shapes(None, ndim=3, scale=(1.5, 0.35, 1.6), translate=(0.0, 3.0, -4.0))
    vertices = np.array([[2.0, 10.0, 5.0], [2.0, 30.5, 7.25], [2.0, 12.0, 20.0]])
    expected = np.array([image.world_to_data(shapes.data_to_world(v)) for v in vertices])  # napari, point by point
    assert np.allclose(_to_image_data(shapes, image, vertices), expected, atol=1e-9)
    # by hand: world = data * scale + translate, then back with the image's
    world = vertices * (1.5, 0.35, 1.6) + (0.0, 3.0, -4.0)
    assert np.allclose(expected, (world - (1.0, -5.0, 2.0)) / (3.0, 0.7, 0.8), atol=1e-9)


def test_view_guard_refuses_marking_and_changes_nothing(dock):
    _go_to(dock)

    def guard():
        raise PvmError("the level is marked on the axial image: show it first")

    dock.view_guard = guard
    with pytest.raises(PvmError, match="axial image"):
        dock.mark_level("L4")
    assert dock.slice_index is None and dock.outlines is None
    assert dock.messages[-1] == ("warning", "the level is marked on the axial image: show it first")
    dock.view_guard = None
    assert dock.mark_level("L4") == 2


def test_proposals_allowed_switches_propose_off_and_on(dock):
    _go_to(dock)
    dock.mark_level("L4")
    assert dock.proposals_allowed and dock.propose_button.isEnabled()
    dock.proposals_off_reason = "Outline proposals are off in this study"
    dock.proposals_allowed = False
    assert not dock.propose_button.isEnabled()
    assert dock.propose_button.toolTip() == "Outline proposals are off in this study"
    with pytest.raises(PvmError, match="off in this study"):
        dock.propose(clicks={"PS_L": (200.0, 200.0)})
    assert dock._worker is None and len(dock.outlines.data) == 0  # refused before any work
    dock.proposals_allowed = True
    assert dock.propose_button.isEnabled() and "Propose the missing outlines" in dock.propose_button.toolTip()


def test_changed_image_clears_case_fields_and_reset_case(dock, qtbot, phantom_files):
    assert dock.load_annotation(phantom_files["annotation"])
    dock.patient_edit.setText("P001")
    first = dock.image
    # a second image opened: the dock moves to it and forgets the patient
    dock.viewer.add_image(np.zeros((5, 64, 64), np.float32), name="other", scale=first.scale)
    assert dock.image.name == "other"
    assert dock.patient_edit.text() == "" and dock.slice_index is None and dock.results() is None
    assert dock.target == "PS_L"
    # back to the first: its outlines are still there
    dock.image_combo.setCurrentText(first.name)
    assert dock.image is first and len(dock.outlines.data) == 6
    dock.slice_index = 2
    dock.reset_case()
    assert len(dock.outlines.data) == 0 and len(dock.samples.data) == 0
    assert dock.patient_edit.text() == "" and dock.target == "PS_L" and dock.slice_index is None


def test_renaming_the_image_keeps_the_dock_working(dock, phantom_files):
    assert dock.load_annotation(phantom_files["annotation"])
    dock.image.name = "renamed"
    assert dock.image is not None and dock.image.name == "renamed"
    assert dock.image_combo.currentText() == "renamed"
    assert len(dock.outlines.data) == 6
    assert dock.annotation()["slice_index"] == 2


def test_save_then_load_restores_exactly(dock, tmp_path, phantom_files):
    dock.load_annotation(phantom_files["annotation"])
    dock.patient_edit.setText("007")
    dock.observer_edit.setText("obsA")
    saved = dock.save_annotation(tmp_path / "case.pvm.json")
    original = read_annotation(phantom_files["annotation"])
    again = read_annotation(saved)
    assert again.patient_id == "007" and again.observer_id == "obsA"
    for key, verts in original.rois.items():
        np.testing.assert_allclose(again.rois[key], verts, atol=1e-9)
    assert again.image_sha256 == original.image_sha256
    assert [s["class"] for s in again.samples] == [s["class"] for s in original.samples]


def test_sha_mismatch_asks_before_loading(dock, tmp_path, phantom_files):
    data = json.loads(phantom_files["annotation"].read_text())
    data["image"]["sha256"] = "0" * 64
    other = tmp_path / "other.pvm.json"
    other.write_text(json.dumps(data))
    dock.answers = [False]
    assert dock.load_annotation(other) is False
    assert dock.slice_index is None
    dock.answers = [True]
    assert dock.load_annotation(other) is True


def test_partial_set_needs_confirmation(dock, qtbot, tmp_path, phantom_files):
    from napari_pvm.core.store import read_rows

    csv = tmp_path / "shared.csv"
    dock.load_annotation(phantom_files["annotation"])
    dock.patient_edit.setText("")
    with pytest.raises(PvmError, match="patient ID"):
        dock.add_to_csv(csv)
    assert not csv.exists()
    dock.patient_edit.setText("P001")
    dock.observer_edit.setText("obsA")
    layer = dock.outlines
    layer.selected_data = {i for i, k in enumerate(layer.features["roi"]) if k.startswith("PS")}
    layer.remove_selected()
    dock.answers = [False]
    assert dock.add_to_csv(csv) is None
    assert not csv.exists()
    dock.answers = [True]
    assert dock.add_to_csv(csv) is not None
    rows = read_rows(csv)
    assert len(rows) == 1 and rows.loc[0, "rois_present"] == "ES_L;ES_R;MF_L;MF_R"
    assert np.isnan(rows.loc[0, "PS_B_total_area_cm2"])


def test_failed_measurement_never_says_done(dock, qtbot, phantom_files):
    dock.load_annotation(phantom_files["annotation"])
    samples = dock.samples
    samples.selected_data = set(range(len(samples.data)))
    samples.remove_selected()
    with pytest.raises(PvmError, match="sample"):
        dock.measure(wait=True)
    assert dock.results() is None
    assert dock.messages[-1][0] == "error" and "sample" in dock.messages[-1][1]
    assert "done" not in dock.progress.format() and dock.progress.value() == 0
    assert dock.measure_button.isEnabled()


def test_no_label_or_button_is_truncated(dock, qtbot):
    from qtpy.QtWidgets import QLabel, QPushButton, QToolButton

    dock.viewer.window._qt_window.resize(1920, 1080)
    dock.viewer.window._qt_window.show()
    qtbot.wait(100)
    for widget in dock.findChildren((QPushButton, QToolButton)):
        if widget.isVisible():
            needed = widget.fontMetrics().horizontalAdvance(widget.text())
            assert widget.width() >= needed, f"{widget.text()!r} is cut off"
    for label in dock.findChildren(QLabel):
        if label.isVisible() and not label.wordWrap():
            assert label.width() >= label.fontMetrics().horizontalAdvance(label.text()), label.text()
    # compact: the whole dock fits in less than half of a 1080-pixel screen
    assert dock.sizeHint().height() < 540


def test_dock_opened_as_a_plugin_keeps_one_controller(make_napari_viewer, qtbot, phantom_files):
    """napari gives plugin docks a proxy viewer; the undo history must survive choosing."""
    viewer = make_napari_viewer()
    viewer.open(str(phantom_files["image"]), plugin="napari-pvm")
    _, dock = viewer.window.add_plugin_dock_widget("napari-pvm", "Measure")
    dock.notify = lambda message, level="info": None
    _go_to(dock)
    dock.mark_level()
    ctrl = dock._controller
    dock.outlines.add_polygons([np.array([[2, 100, 100], [2, 100, 120], [2, 120, 120]], float)])
    qtbot.waitUntil(lambda: len(ctrl.undo_stack) == 1, timeout=2000)
    dock.choose("ES_L")
    dock.choose("fat")
    assert dock._controller is ctrl
    assert dock.undo() and len(dock.outlines.data) == 0
