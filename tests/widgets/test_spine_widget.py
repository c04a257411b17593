"""Spine measures dock: drawing ROIs and endplate lines with real mouse and
key events on the canvas, exclusions, undo, save/load and the shared CSV."""

import json

import numpy as np
import pytest

from napari_pvm.core.phantom_sagittal import write_sagittal_phantom
from napari_pvm.core.spine import line_angle_deg

SPACING = (0.8, 1.1)  # anisotropic on purpose


@pytest.fixture(scope="module")
def sagittal_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("sag")
    return write_sagittal_phantom(out, seed=2, spacing=SPACING, noise=0, shading=0, kyphosis_deg=12.0)


def _open(make_napari_viewer, canvas, files):
    from napari_pvm._widgets.spine_widget import SpineWidget

    viewer = make_napari_viewer()
    (image,) = viewer.open(str(files["image"]), plugin="napari-pvm")
    dock = SpineWidget(viewer)
    viewer.window.add_dock_widget(dock, area="right")
    truth_ann = json.loads(files["annotation"].read_text())
    step = list(viewer.dims.current_step)
    step[0] = truth_ann["slice_index"]
    viewer.dims.current_step = tuple(step)
    c = canvas(viewer)
    return viewer, image, dock, c, truth_ann


def test_draw_everything_with_mouse_and_keys(make_napari_viewer, canvas, sagittal_files, tmp_path):
    from napari_pvm.core.store import read_rows

    viewer, image, dock, c, truth_ann = _open(make_napari_viewer, canvas, sagittal_files)
    assert image.metadata["napari_pvm"]["plane"] == "sagittal"
    c.key("K", "shift")  # mark the mid-sagittal slice
    assert dock.slice_index == truth_ann["slice_index"]
    # the draw list starts at L1 and moves on by itself after each shape
    for item in truth_ann["vertebrae"]:
        assert dock.part == item["level"]
        c.polygon(image, item["vertices"], finish="enter")
    assert dock.part == "CSF"
    c.polygon(image, truth_ann["csf"]["vertices"], finish="enter")
    assert dock.part == "upper"
    # L2 is fractured: exclude it with the key on the chosen level
    dock.reason_combos["L2"].setCurrentText("fracture")
    c.key("N", "shift")  # back from "upper" to CSF …
    for _ in range(3):
        c.key("N", "shift")  # … L4, L3, L2
    assert dock.part == "L2"
    c.key("x")
    assert dock.excluded() == {"L2": "fracture"}
    # VBQ of the noise-free phantom: median(L1, L3, L4) / CSF, exactly
    result = dock.result
    assert result.levels == ("L1", "L3", "L4")
    assert result.vbq == pytest.approx(310 / 100, rel=1e-12)
    assert "3.100" in dock.vbq_label.text()
    # the two endplate lines, dragged from end to end
    dock.choose("upper")
    angle = truth_ann["angles"][0]
    c.pixel_drag(image, angle["upper"][0], angle["upper"][1])
    assert dock.part == "lower"
    c.pixel_drag(image, angle["lower"][0], angle["lower"][1])
    shown = dock.result.angles["local_kyphosis"]
    # what was drawn (canvas pixels are coarser than image pixels) is measured in mm
    # the layer shares the image's scale: its data coordinates are image pixels
    lines = {p: np.asarray(v)[:, -2:] for v, _, p in dock._state[0] if p in ("upper", "lower")}
    assert shown == pytest.approx(
        line_angle_deg(lines["upper"], lines["lower"], spacing=tuple(image.scale[-2:])), abs=1e-9
    )
    assert shown == pytest.approx(12.0, abs=1.5)
    assert "kyphosis" in dock.angle_label.text()
    # undo the lower line: the angle disappears, VBQ stays
    c.key("z", "ctrl")
    assert dock.result.angles == {} and dock.result.vbq == pytest.approx(3.1)
    c.pixel_drag(image, angle["lower"][0], angle["lower"][1])
    assert "local_kyphosis" in dock.result.angles
    redrawn = dock.result.angles["local_kyphosis"]  # the redrawn line may land a canvas pixel apart
    assert redrawn == pytest.approx(12.0, abs=1.5)
    # a second L3 ROI replaces the first (one ROI per level)
    dock.choose("L3")
    l3 = np.asarray(truth_ann["vertebrae"][2]["vertices"])
    c.polygon(image, (l3 - l3.mean(axis=0)) * 0.6 + l3.mean(axis=0), finish="enter")
    parts = [p for _, _, p in dock._state[0]]
    assert parts.count("L3") == 1 and len(parts) == 7
    # save, reload in a fresh dock: the same results
    dock.patient_edit.setText("007")
    dock.observer_edit.setText("obsA")
    saved = dock.save_annotation(tmp_path / "case.pvm.json")
    obj = json.loads(saved.read_text())
    assert obj["format"] == "napari-pvm.spine/1" and obj["excluded"] == [{"level": "L2", "reason": "fracture"}]
    csv = tmp_path / "spine.csv"
    dock.csv_edit.setText(str(csv))
    c.key("Return", "ctrl")  # add to the shared spine CSV
    rows = read_rows(csv, table="spine")
    assert len(rows) == 1 and rows.loc[0, "patient_id"] == "007"
    assert rows.loc[0, "vbq"] == pytest.approx(3.1, rel=1e-12)
    assert rows.loc[0, "local_kyphosis_deg"] == pytest.approx(redrawn, abs=1e-9)
    assert dock.results()["row_id"] == rows.loc[0, "row_id"]


def test_load_annotation_and_axial_refusal(make_napari_viewer, canvas, sagittal_files, phantom_files, tmp_path):
    viewer, image, dock, c, truth_ann = _open(make_napari_viewer, canvas, sagittal_files)
    assert dock.load_annotation(sagittal_files["annotation"])
    assert dock.result.vbq == pytest.approx(3.1, rel=1e-12)
    assert dock.result.angles["local_kyphosis"] == pytest.approx(12.0, abs=1e-4)
    assert dock.excluded() == {"L2": "fracture"}
    assert dock.warnings_label.text() == ""
    # an ROI drawn on another slice than the marked one is flagged
    dock.choose("L1")
    step = list(viewer.dims.current_step)
    step[0] = truth_ann["slice_index"] + 1
    viewer.dims.current_step = tuple(step)
    c.polygon(image, truth_ann["vertebrae"][0]["vertices"], finish="enter")
    assert any("another slice" in w and "L1" in w for w in dock.result.warnings)
    assert "another slice" in dock.warnings_label.text()
    assert dock.annotation()["vertebrae"][0]["slice_index"] == truth_ann["slice_index"] + 1
    dock.undo()
    assert dock.result.warnings == ()
    # a reading session may refuse a path (blinding): nothing is written
    from napari_pvm.core.errors import PvmError

    def guard(path, what):
        raise PvmError(f"{what} refused by the session")

    dock.path_guard = guard
    with pytest.raises(PvmError, match="save refused"):
        dock.save_annotation(tmp_path / "other.pvm.json")
    assert not (tmp_path / "other.pvm.json").exists()
    dock.path_guard = None
    # undo goes back to the empty dock
    c.key("z", "ctrl") if viewer.layers.selection.active is dock.layer else dock.undo()
    assert dock.result is None
    # an axial image is refused with a clear message
    viewer.open(str(phantom_files["image"]), plugin="napari-pvm")
    dock.image_combo.setCurrentText(viewer.layers[-1].name)
    with pytest.raises(PvmError, match="axial image"):
        dock.mark_slice()
    # back on the sagittal image, its shapes layer is followed again
    dock.image_combo.setCurrentText(image.name)
    assert dock.layer is not None and dock.slice_index is None


def test_radiograph_anterior_confirmed_by_the_observer(make_napari_viewer, tmp_path):
    from test_io import write_radiograph

    from napari_pvm._widgets.spine_widget import SpineWidget

    pixels = np.arange(40 * 30, dtype=np.uint16).reshape(40, 30)
    path = write_radiograph(tmp_path / "lat.dcm", pixels, orientation=None, field="ImagerPixelSpacing")
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(path), plugin="napari-pvm")
    dock = SpineWidget(viewer)
    assert not dock.anterior_box.isHidden()
    dock.confirm_anterior("right")
    np.testing.assert_array_equal(np.asarray(image.data)[0], pixels[:, ::-1])
    dock.mark_slice()
    dock.layer.add_lines([np.array([[0, 5.0, 2.0], [0, 5.0, 20.0]]) * [1, *image.scale[-2:]]])
    dock.sync_now()
    assert dock.annotation()["anterior"] == {"side_in_file": "right", "source": "observer"}
