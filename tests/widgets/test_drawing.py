"""Drawing and editing outlines with REAL mouse and key events on the canvas.

Every outline and sample here is drawn by Qt mouse presses, moves, releases,
double clicks and key presses sent to the viewer's canvas (helpers in
conftest.py), the way an observer draws; the assertions are on what the
dock saves (the contract 2 annotation) and on the shared CSV.
"""

import numpy as np
import pytest

from napari_pvm._widgets._style import ROI_COLORS, SAMPLE_COLORS
from napari_pvm.core import schema
from napari_pvm.core.measure import outline_masks
from napari_pvm.core.rois import roi_mask


def _box(r0, c0, r1, c1):
    """Corners half a pixel outside pixel centres r0..r1, c0..c1: the mouse's
    sub-pixel placement (under 0.25 pixel here) cannot change which pixels it holds."""
    return [(r0 - 0.5, c0 - 0.5), (r0 - 0.5, c1 + 0.5), (r1 + 0.5, c1 + 0.5), (r1 + 0.5, c0 - 0.5)]


def _rois(dock):
    return {f"{r['muscle']}_{r['side']}": r for r in dock.annotation()["rois"]}


def _color(layer, i):
    """(shown, expected) colour of shape i, rounded to 8-bit steps."""
    from napari.utils.colormaps.standardize_color import transform_color

    shown = np.round(np.asarray(layer.edge_color[i][:3], float) * 255).astype(int)
    want = np.round(np.asarray(transform_color(ROI_COLORS[layer.features["roi"][i]])[0][:3], float) * 255).astype(int)
    return tuple(shown.tolist()), tuple(want.tolist())


def _settle(c):
    c.wait(60)


def test_draw_redraw_escape_undo_keep_identity_and_colour(measure_case):
    dock, c = measure_case
    image = dock.image
    layer = dock.outlines
    assert dock.viewer.layers.selection.active is layer and layer.mode == "add_polygon"
    # PS L finished with Enter, PS R with a double click
    c.polygon(image, _box(100, 90, 125, 115), finish="enter")
    _settle(c)
    assert list(layer.features["roi"]) == ["PS_L"] and dock.target == "PS_R"
    c.polygon(image, _box(100, 200, 125, 225), finish="double")
    _settle(c)
    assert list(layer.features["roi"]) == ["PS_L", "PS_R"] and dock.target == "ES_L"
    for i in range(2):
        got, want = _color(layer, i)
        assert got == want  # each keeps its own colour after the list advanced
    # redraw PS L: choose it in the list with a real click, draw again -> replaced, no error
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    row = dock.outline_list.visualItemRect(dock.outline_list.item(0, 0)).center()
    QTest.mouseClick(dock.outline_list.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, row)
    assert dock.target == "PS_L" and dock.viewer.layers.selection.active is layer
    c.polygon(image, _box(140, 90, 160, 110), finish="enter")
    _settle(c)
    rois = _rois(dock)
    assert sorted(rois) == ["PS_L", "PS_R"] and len(layer.data) == 2
    assert min(v[0] for v in rois["PS_L"]["vertices"]) > 135  # the new one
    assert not layer._is_creating and layer.mode == "add_polygon"
    assert dock.target == "ES_L"
    # Escape cancels a polygon in progress: nothing added, layer not stuck
    c.polygon(image, _box(60, 150, 80, 170), finish="escape")
    _settle(c)
    assert sorted(_rois(dock)) == ["PS_L", "PS_R"] and not layer._is_creating
    # the layer still draws afterwards
    c.polygon(image, _box(180, 120, 200, 140), finish="enter")
    _settle(c)
    assert "ES_L" in _rois(dock)
    # Ctrl-Z: undo ES L, then the redraw of PS L (the old PS L comes back)
    c.key("z", "ctrl")
    _settle(c)
    assert sorted(_rois(dock)) == ["PS_L", "PS_R"]
    c.key("z", "ctrl")
    _settle(c)
    assert max(v[0] for v in _rois(dock)["PS_L"]["vertices"]) < 130
    for i in range(len(layer.data)):
        got, want = _color(layer, i)
        assert got == want


def test_a_save_hook_inside_naparis_event_sees_the_settled_case(measure_case):
    """The reading session saves on the layer's data event, which napari emits
    while it is still finishing the polygon: the dock then reports the case as
    it will settle (the redrawn outline replacing the old one), and changes
    nothing under napari's feet."""
    dock, c = measure_case
    image = dock.image
    seen = []

    def save_hook(event):
        if str(event.action).lower().endswith("added"):
            seen.append({r["muscle"] + "_" + r["side"]: r["vertices"] for r in dock.annotation()["rois"]})

    dock.outlines.events.data.connect(save_hook)
    c.polygon(image, _box(100, 90, 125, 115), finish="enter")
    _settle(c)
    assert sorted(seen[-1]) == ["PS_L"]
    dock.choose("PS_L")
    c.polygon(image, _box(140, 90, 160, 110), finish="double")
    assert sorted(seen[-1]) == ["PS_L"]  # replaced, not outlined twice
    assert min(v[0] for v in seen[-1]["PS_L"]) > 135
    _settle(c)
    assert sorted(_rois(dock)) == ["PS_L"]


def test_undo_is_at_least_ten_steps_deep(measure_case):
    dock, c = measure_case
    image = dock.image
    # one fat sample drawn by hand keeps its colour when the lean-muscle sample is chosen
    c.key("F", "shift")
    c.polygon(image, _box(40, 250, 46, 256), finish="enter")
    c.key("U", "shift")
    _settle(c)
    from napari.utils.colormaps.standardize_color import transform_color

    assert list(dock.samples.features["class"]) == ["fat"]
    assert np.allclose(dock.samples.edge_color[0], transform_color(SAMPLE_COLORS["fat"])[0])
    # eleven more operations through the layers' own API (the mouse path is tested above)
    for i in range(4):
        dock.samples.add_polygons(
            [np.array([[2, 120 + 10 * i, 250], [2, 120 + 10 * i, 256], [2, 126 + 10 * i, 253]], float)]
        )
        _settle(c)
    dock.choose("PS_L")
    for i in range(6):
        dock.outlines.add_polygons(
            [np.array([[2, 40 + 12 * i, 40], [2, 40 + 12 * i, 60], [2, 48 + 12 * i, 50]], float)]
        )
        _settle(c)
    assert sorted(_rois(dock)) == sorted(schema.ROI_KEYS)
    assert list(dock.samples.features["class"]) == ["fat"] + ["muscle"] * 4
    for _ in range(10):  # real Ctrl-Z key presses on the canvas
        c.key("z", "ctrl")
    _settle(c)
    assert len(dock.outlines.data) == 0 and list(dock.samples.features["class"]) == ["fat"]


def test_choosing_a_muscle_after_samples_draws_an_outline(measure_case):
    dock, c = measure_case
    image = dock.image
    dock.choose("muscle")
    c.polygon(image, _box(150, 150, 160, 160), finish="enter")
    _settle(c)
    assert dock.viewer.layers.selection.active is dock.samples
    c.key("m")  # next muscle: the outlines layer becomes active again
    assert dock.viewer.layers.selection.active is dock.outlines and dock.outlines.mode == "add_polygon"
    c.polygon(image, _box(100, 90, 125, 115), finish="enter")
    _settle(c)
    assert len(dock.samples.data) == 1 and len(dock.outlines.data) == 1
    assert list(dock.samples.features["class"]) == ["muscle"]


def test_edit_move_insert_delete_copy_paste_keep_identity(measure_case):
    dock, c = measure_case
    image = dock.image
    layer = dock.outlines
    c.polygon(image, _box(100, 90, 125, 115), finish="enter")
    c.polygon(image, _box(100, 200, 125, 225), finish="enter")
    _settle(c)
    # direct mode (D): drag PS L's corner vertex outwards
    c.key("d")
    c.pixel_click(image, (112, 102))  # select PS L
    c.pixel_drag(image, (125, 115), (132, 122))
    _settle(c)
    v = np.array(_rois(dock)["PS_L"]["vertices"])
    assert np.any(np.all(np.abs(v - [132, 122]) < 1.0, axis=1))
    assert list(layer.features["roi"]) == ["PS_L", "PS_R"]
    # vertex insert mode (I) inserts into the selected outline: select PS R, click on its top edge
    c.pixel_click(image, (112, 212))
    c.key("i")
    c.pixel_click(image, (100, 212))
    _settle(c)
    assert len(_rois(dock)["PS_R"]["vertices"]) == 5
    # select mode (S): drag the whole PS R 10 pixels down
    c.key("s")
    before = np.array(_rois(dock)["PS_R"]["vertices"])
    c.pixel_drag(image, (112, 212), (122, 212))
    _settle(c)
    after = np.array(_rois(dock)["PS_R"]["vertices"])
    assert np.allclose(after[:, 0] - before[:, 0], 10, atol=1.0)
    for i in range(2):
        got, want = _color(layer, i)
        assert got == want
    # the transform box: drag the selected PS R's lower right handle 6 pixels outwards
    v = np.array(_rois(dock)["PS_R"]["vertices"])
    c.pixel_click(image, v.mean(axis=0))
    corner = v.max(axis=0)
    c.pixel_drag(image, corner, corner + 6)
    _settle(c)
    scaled = np.array(_rois(dock)["PS_R"]["vertices"])
    assert np.ptp(scaled, axis=0).min() > np.ptp(v, axis=0).min() + 3  # resized, not just moved
    assert list(layer.features["roi"]) == ["PS_L", "PS_R"]
    for i in range(2):
        got, want = _color(layer, i)
        assert got == want
    # copy PS R and paste it: the copy becomes the next missing outline (ES L), not a second PS R
    c.key("c", "ctrl")
    c.key("v", "ctrl")
    _settle(c)
    rois = _rois(dock)
    assert sorted(rois) == ["ES_L", "PS_L", "PS_R"]
    # Delete key removes the selected outline; the list shows it missing again
    c.pixel_click(image, (112, 97))
    c.key("Delete")
    _settle(c)
    assert "PS_L" not in _rois(dock)
    assert "PS L" in dock.missing_label.text()


def test_shared_border_is_clipped_in_one_step(measure_case):
    dock, c = measure_case
    image = dock.image
    dock.choose("ES_L")
    c.polygon(image, _box(180, 100, 220, 140), finish="enter")
    _settle(c)
    assert dock.target == "PS_L"  # the first missing outline
    dock.choose("MF_L")
    # MF L drawn 6 pixels into ES L
    c.polygon(image, _box(180, 134, 220, 160), finish="enter")
    _settle(c)
    rois = _rois(dock)
    shape = image.data.shape[-2:]
    masks = outline_masks({k: np.array(r["vertices"]) for k, r in rois.items()}, shape)  # validation passes
    assert not np.any(masks["ES_L"] & masks["MF_L"])
    drawn_mf = roi_mask(np.array(_box(180, 134, 220, 160), float), shape)
    # MF L lost exactly its pixels inside ES L (columns 134..140), nothing else
    assert np.array_equal(masks["ES_L"], roi_mask(np.array(_box(180, 100, 220, 140), float), shape))
    assert np.array_equal(masks["MF_L"], drawn_mf & ~masks["ES_L"])
    assert int(masks["MF_L"].sum()) == 41 * (160 - 141 + 1)
    assert any("clipped" in m for _, m in dock.messages)


def test_a_clip_that_would_split_is_refused_at_its_place(measure_case):
    dock, c = measure_case
    image = dock.image
    dock.choose("MF_L")
    c.polygon(image, _box(150, 150, 230, 156), finish="enter")  # a thin wall
    _settle(c)
    dock.choose("ES_L")
    c.polygon(image, _box(170, 120, 200, 180), finish="enter")  # across the wall
    _settle(c)
    level, message = [m for m in dock.messages if "pieces" in m[1]][-1]
    assert level == "warning" and "ES_L crosses MF_L" in message and "Ctrl-Z" in message
    marker = [layer for layer in dock.viewer.layers if layer.metadata.get("napari_pvm", {}).get("role") == "marker"]
    assert len(marker) == 1 and len(marker[0].data) == 1
    r, col = marker[0].data[0][-2:]
    assert 165 <= r <= 205 and (col < 150 or col > 156)
    assert "overlaps" in dock.outline_list.item(2, 1).text()
    assert dock.problem_label.isVisible() and message in dock.problem_label.text()  # in full
    # the drawing layer is still the active one, in polygon mode
    assert dock.viewer.layers.selection.active is dock.outlines and dock.outlines.mode == "add_polygon"
    # measuring refuses; the progress bar does not say done
    with pytest.raises(Exception, match="overlap"):
        dock.measure(wait=True)
    assert "done" not in dock.progress.format() and dock.results() is None
    # undo removes the bad outline and the marker
    c.key("z", "ctrl")
    _settle(c)
    assert "ES_L" not in _rois(dock) and len(marker[0].data) == 0
    assert not dock.problem_label.isVisible()


@pytest.mark.real
def test_real_shared_border_drawn_by_mouse_is_clipped(make_napari_viewer, qtbot, canvas, real_data):
    """MuscleMap slice 16: ES L traced along its border, then MF L traced one
    pixel across the shared border, both by mouse; the dock clips MF L and the
    outlines pass measurement's validation."""
    from scipy import ndimage
    from skimage.measure import approximate_polygon

    from napari_pvm._widgets.measure_widget import MeasureWidget
    from napari_pvm.core.clip import mask_to_polygon
    from napari_pvm.core.io import read_volume

    folder = real_data / "musclemap_lumbar_axial"
    labels = read_volume(folder / "image_dseg_musclemap_pred.nii.gz").slice(16).round().astype(int)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.open(str(folder / "image.nii.gz"), plugin="napari-pvm")
    dock = MeasureWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Measure")
    dock.messages = []
    dock.notify = lambda message, level="info": dock.messages.append((level, message))
    step = list(viewer.dims.current_step)
    step[0] = 16
    viewer.dims.current_step = tuple(step)
    c = canvas(viewer)
    c.key("k")
    image = dock.image

    def trace(value):
        region = ndimage.binary_dilation(labels == value)  # the line just outside the border
        return approximate_polygon(mask_to_polygon(region), 1.5)  # about 15 clicks per outline

    dock.choose("ES_L")
    c.polygon(image, trace(4), finish="double")
    dock.choose("MF_L")
    c.polygon(image, trace(2), finish="enter")
    c.wait(100)
    rois = {f"{r['muscle']}_{r['side']}": np.array(r["vertices"]) for r in dock.annotation()["rois"]}
    shape = labels.shape
    raw_shared = np.count_nonzero(roi_mask(trace(4), shape) & roi_mask(trace(2), shape))
    assert raw_shared > 5  # the two traced lines really overlap
    masks = outline_masks(rois, shape)  # refuses overlaps: passes after the clip
    assert not np.any(masks["ES_L"] & masks["MF_L"])
    assert any("MF_L clipped to ES_L" in m for _, m in dock.messages)
    # MF L keeps most of its muscle (the clip took only the shared band)
    truth = labels == 2
    assert np.count_nonzero(masks["MF_L"] & truth) > 0.9 * np.count_nonzero(truth)
