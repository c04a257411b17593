"""Outline proposals in the Measure dock, driven by real clicks and keys;
origins (drawn / proposed / edited) end up in the annotation and the CSV row."""

import numpy as np
import pytest
from scipy import ndimage

from napari_pvm.core.annotation import read_annotation
from napari_pvm.core.rois import roi_mask

pytest.importorskip("napari_pvm.core.propose")


def _inner_point(vertices, shape):
    """The pixel deepest inside an outline (a click well inside the muscle)."""
    depth = ndimage.distance_transform_edt(roi_mask(vertices, shape))
    return np.unravel_index(int(np.argmax(depth)), shape)


def _dice(a, b):
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_propose_edit_redraw_and_the_row_records_origins(measure_case, qtbot, phantom_files, tmp_path):
    from napari_pvm.core.store import read_rows

    dock, c = measure_case
    image = dock.image
    shape = image.data.shape[-2:]
    truth = read_annotation(phantom_files["annotation"])
    assert dock.load_annotation(phantom_files["annotation"])  # six drawn outlines and the samples
    c.fit()
    layer = dock.outlines
    # delete both psoas outlines with the mouse and the Delete key
    c.key("s")
    for key in ("PS_L", "PS_R"):
        c.pixel_click(image, _inner_point(truth.rois[key], shape))
        c.key("Delete")
    qtbot.wait(60)
    assert sorted(dock.origins()) == ["ES_L", "ES_R", "MF_L", "MF_R"]
    assert dock.target == "PS_L"
    # Propose: the first press shows the clicks layer, clicks go inside PS L then PS R, the second press runs
    c.key("O", "shift")
    clicks = dock.viewer.layers.selection.active
    assert clicks.metadata["napari_pvm"]["role"] == "clicks" and clicks.mode == "add"
    for key in ("PS_L", "PS_R"):
        c.pixel_click(image, _inner_point(truth.rois[key], shape))
    assert len(clicks.data) == 2
    c.key("O", "shift")
    qtbot.waitUntil(lambda: dock._worker is None, timeout=60_000)
    origins = dock.origins()
    assert origins["PS_L"] == "proposed" and origins["PS_R"] == "proposed", dock.messages
    assert origins["ES_L"] == "drawn"
    rois = {f"{r['muscle']}_{r['side']}": r for r in dock.annotation()["rois"]}
    for key, other in (("PS_L", "PS_R"), ("PS_R", "PS_L")):
        # the proposal's accuracy is tested with the core; here: each went to its own muscle
        got = roi_mask(np.array(rois[key]["vertices"]), shape)
        assert _dice(got, roi_mask(truth.rois[key], shape)) > 0.5
        assert _dice(got, roi_mask(truth.rois[other], shape)) == 0
        assert rois[key]["origin"] == "proposed"
    # the draw list and the drawing layer are back for corrections
    assert dock.viewer.layers.selection.active is layer
    # edit PS L: drag one of its vertices 4 pixels outwards -> edited
    c.key("d")
    verts = np.array(rois["PS_L"]["vertices"])
    c.pixel_click(image, _inner_point(verts, shape))
    top = verts[np.argmin(verts[:, 0])]
    c.pixel_drag(image, top, top - [4, 0])
    qtbot.wait(60)
    assert dock.origins()["PS_L"] == "edited"
    assert dock.origins()["PS_R"] == "proposed"
    # measure and add: the row records each outline's origin
    dock.patient_edit.setText("P010")
    dock.observer_edit.setText("obsA")
    csv = tmp_path / "shared.csv"
    dock.csv_edit.setText(str(csv))
    c.key("Return", "ctrl")
    qtbot.waitUntil(csv.exists, timeout=60_000)
    row = read_rows(csv).iloc[0]
    assert row["outline_origin"] == "PS_L:edited;PS_R:proposed;ES_L:drawn;ES_R:drawn;MF_L:drawn;MF_R:drawn"
    # delete PS R and draw it again: drawn
    c.key("s")
    c.pixel_click(image, _inner_point(np.array(rois["PS_R"]["vertices"]), shape))
    c.key("Delete")
    qtbot.wait(60)
    assert dock.target == "PS_R"
    c.key("p")  # napari's polygon tool
    r, col = _inner_point(truth.rois["PS_R"], shape)
    c.polygon(image, [(r - 6.5, col - 6.5), (r - 6.5, col + 6.5), (r + 6.5, col + 6.5), (r + 6.5, col - 6.5)])
    qtbot.wait(60)
    assert dock.origins()["PS_R"] == "drawn"


def test_double_click_on_add_appends_one_row(measure_case, qtbot, phantom_files, tmp_path):
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    from napari_pvm.core.store import read_rows

    dock, c = measure_case
    assert dock.load_annotation(phantom_files["annotation"])
    dock.patient_edit.setText("P011")
    dock.observer_edit.setText("obsA")
    csv = tmp_path / "shared.csv"
    dock.csv_edit.setText(str(csv))
    # a real double click: press, release, press (delivered as a double click), release
    QTest.mouseClick(dock.export_button, Qt.MouseButton.LeftButton)
    QTest.mouseClick(dock.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(csv.exists, timeout=60_000)
    qtbot.waitUntil(lambda: dock._worker is None and not dock._adding, timeout=60_000)
    QTest.mouseClick(dock.export_button, Qt.MouseButton.LeftButton)  # and a third press later
    qtbot.wait(100)
    assert len(read_rows(csv)) == 1
    assert any("already row" in m for _, m in dock.messages)
