"""The measurement dock: L4, outlines, measure, save/load, export."""

import json

import numpy as np
import pytest

from napari_pvm._widgets.measure_widget import MeasureWidget
from napari_pvm.core import schema
from napari_pvm.core.annotation import read_annotation


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


def _go_to_l4(widget, index=2):
    step = list(widget.viewer.dims.current_step)
    step[0] = index
    widget.viewer.dims.current_step = tuple(step)
    widget.mark_current_slice()


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60_000)


def test_mark_l4_creates_outline_layer_with_image_scale(dock):
    _go_to_l4(dock)
    assert dock.slice_index == 2
    layer = dock.outlines
    assert tuple(layer.scale) == tuple(dock.image.scale)
    assert "missing: PS L, PS R, ES L, ES R, MF L, MF R" == dock.missing_label.text()


def test_drawn_polygons_take_the_active_muscle_and_advance(dock):
    _go_to_l4(dock)
    layer = dock.outlines
    square = np.array([[2, 100, 100], [2, 100, 120], [2, 120, 120], [2, 120, 100]], float)
    layer.add_polygons([square])
    assert list(layer.features["roi"]) == ["PS_L"]
    assert dock.active_muscle == "PS_R"  # advanced to the next missing one
    layer.add_polygons([square + [0, 40, 0]])
    assert list(layer.features["roi"]) == ["PS_L", "PS_R"]
    # drawing PS_R again replaces the old PS_R
    dock.muscle_combo.setCurrentIndex(schema.ROI_KEYS.index("PS_R"))
    layer.add_polygons([square + [0, 60, 0]])
    assert sorted(layer.features["roi"]) == ["PS_L", "PS_R"]
    assert len(layer.data) == 2
    assert "missing: ES L" in dock.missing_label.text()
    assert dock.active_muscle == "ES_L"
    dock.step_muscle(+1)
    assert dock.active_muscle == "ES_R"
    dock.step_muscle(-1)
    assert dock.active_muscle == "ES_L"


def test_outline_on_another_slice_is_refused(dock):
    _go_to_l4(dock)
    layer = dock.outlines
    layer.add_polygons([np.array([[1, 100, 100], [1, 100, 120], [1, 120, 120]], float)])
    with pytest.raises(Exception, match="not on the L4 slice"):
        dock.annotation()


def test_load_measure_matches_cli_and_truth(dock, qtbot, phantom_files):
    assert dock.load_annotation(phantom_files["annotation"])
    assert dock.slice_index == 2
    assert sorted(dock.outlines.features["roi"]) == sorted(schema.ROI_KEYS)
    dock.measure()
    _wait(qtbot, dock)
    assert dock.result is not None, dock.messages
    truth = json.loads(phantom_files["truth"].read_text())
    row = dock.result.row
    for key in ("PS_B_total_area_cm2", "ESMF_B_total_area_cm2"):
        assert row[key] == pytest.approx(truth[key], rel=1e-9)
    assert f"{dock.image.name} fat map" in dock.viewer.layers
    text = dock.table_text()
    assert text.splitlines()[0].startswith("muscle\tside\ttotal")
    assert len(text.splitlines()) == 1 + 12


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


def test_export_requires_patient_and_confirms_partial_set(dock, qtbot, tmp_path, phantom_files):
    from napari_pvm.core.store import read_rows

    csv = tmp_path / "shared.csv"
    dock.load_annotation(phantom_files["annotation"])
    dock.patient_edit.setText("")
    assert dock.export_row(csv) is None
    assert "patient ID" in dock.messages[-1][1]
    assert not csv.exists()
    dock.patient_edit.setText("P001")
    dock.observer_edit.setText("obsA")
    # drop the psoas outlines: a partial set needs a confirmation
    layer = dock.outlines
    layer.selected_data = {i for i, k in enumerate(layer.features["roi"]) if k.startswith("PS")}
    layer.remove_selected()
    dock.answers = [False]
    assert dock.export_row(csv) is None
    assert not csv.exists()
    dock.answers = [True]
    dock.export_row(csv)
    _wait(qtbot, dock)
    qtbot.waitUntil(csv.exists, timeout=10_000)
    rows = read_rows(csv)
    assert len(rows) == 1
    assert rows.loc[0, "patient_id"] == "P001"
    assert rows.loc[0, "rois_present"] == "ES_L;ES_R;MF_L;MF_R"
    assert np.isnan(rows.loc[0, "PS_B_total_area_cm2"])


def test_measure_without_samples_notifies_and_keeps_running(dock, qtbot, phantom_files):
    dock.load_annotation(phantom_files["annotation"])
    samples = dock.viewer.layers[f"{dock.image.name} fat/muscle samples"]
    samples.selected_data = set(range(len(samples.data)))
    samples.remove_selected()
    dock.measure()
    _wait(qtbot, dock)
    assert dock.result is None
    assert dock.messages[-1][0] == "error" and "sample" in dock.messages[-1][1]
    assert dock.measure_button.isEnabled()
