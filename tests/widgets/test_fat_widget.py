"""The fat classifier dock: painted samples, training in a worker, live preview, maps."""

import numpy as np
import pytest

from napari_pvm._widgets.fat_widget import FatClassifierWidget
from napari_pvm.core.classify import FatClassifier, labels_from_samples


@pytest.fixture
def setup(make_napari_viewer, qtbot, small_phantom):
    viewer = make_napari_viewer()
    ph = small_phantom
    image = viewer.add_image(ph.data, name="mri", scale=ph.spacing)
    step = list(viewer.dims.current_step)
    step[0] = ph.l4_index
    viewer.dims.current_step = tuple(step)
    widget = FatClassifierWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.messages = []
    widget.notify = lambda message, level="info": widget.messages.append((level, message))
    return viewer, widget, image, ph


def _paint_samples(widget, ph):
    layer = widget.start_painting(2)
    labels = labels_from_samples(ph.samples, ph.l4.shape)
    data = np.zeros(layer.data.shape, np.uint8)
    data[ph.l4_index] = labels
    layer.data = data
    return layer, labels


def test_paint_layer_has_image_scale(setup):
    viewer, widget, image, ph = setup
    layer = widget.start_painting(1)
    assert tuple(layer.scale) == tuple(image.scale)
    assert layer.selected_label == 1 and layer.mode == "paint"


def test_label_colour_warm_up_runs_off_the_gui_thread_and_maps_known_colours():
    import threading

    from napari_pvm._widgets import _layers
    from napari_pvm._widgets._style import SAMPLE_COLORS

    errors = []

    def warm():
        try:
            _layers.warm_up_label_colors()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=warm)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive() and not errors
    # the colormap the layers get: 0 transparent, 1 and 2 the sample colours (labels cycle after n)
    colormap = _layers._label_colormap({1: SAMPLE_COLORS["muscle"], 2: SAMPLE_COLORS["fat"]})
    colours = colormap.map(np.array([0, 1, 2, 3], np.uint8))
    from napari.utils.colormaps.standardize_color import transform_color

    assert colours[0][3] == 0
    assert np.allclose(colours[1], transform_color(SAMPLE_COLORS["muscle"])[0])
    assert np.allclose(colours[2], transform_color(SAMPLE_COLORS["fat"])[0])
    assert np.allclose(colours[3], colours[1])
    with pytest.raises(ValueError, match="1 … n"):
        _layers._label_colormap({2: SAMPLE_COLORS["fat"]})


def test_train_shows_same_fat_as_the_core(setup, qtbot):
    viewer, widget, image, ph = setup
    _, labels = _paint_samples(widget, ph)
    widget.train()
    qtbot.waitUntil(lambda: widget._worker is None and widget.result is not None, timeout=60_000)
    fat_layer = viewer.layers["mri fat map"]
    assert tuple(fat_layer.scale) == tuple(image.scale)
    expected = FatClassifier().fit(ph.l4, labels).predict(ph.l4)
    np.testing.assert_array_equal(fat_layer.data[ph.l4_index].astype(bool), expected)
    assert not fat_layer.data[ph.l4_index - 1].any()  # only the slice trained on
    prob = widget.show_map("probability")
    unc = widget.show_map("uncertainty")
    assert np.nanmax(prob.data) <= 1 and np.nanmin(unc.data) >= 0


def test_live_update_retrains_preview_after_a_stroke(setup, qtbot):
    viewer, widget, image, ph = setup
    layer, _ = _paint_samples(widget, ph)
    widget.live_check.setChecked(True)
    layer.events.paint(value=[])  # what napari emits after a brush stroke
    qtbot.waitUntil(lambda: "mri fat map (preview)" in viewer.layers, timeout=60_000)
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60_000)
    assert widget.result is None  # a preview never becomes the measured result


def test_no_samples_or_one_class_gives_a_message(setup, qtbot):
    viewer, widget, image, ph = setup
    widget.train()
    qtbot.waitUntil(lambda: widget._worker is None, timeout=30_000)
    assert widget.messages and "fat" in widget.messages[-1][1].lower()
    layer = widget.start_painting(2)
    data = np.zeros(layer.data.shape, np.uint8)
    data[ph.l4_index][labels_from_samples(ph.samples, ph.l4.shape) == 2] = 2
    layer.data = data
    widget.train()
    qtbot.waitUntil(lambda: widget._worker is None, timeout=30_000)
    assert "muscle" in widget.messages[-1][1].lower()
    assert widget.result is None


def test_live_preview_follows_real_strokes_and_never_takes_the_brush(make_napari_viewer, qtbot, small_phantom, canvas):
    from napari_pvm._widgets.fat_widget import train_and_classify

    ph = small_phantom
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    image = viewer.add_image(ph.data, name="mri", scale=ph.spacing)
    step = list(viewer.dims.current_step)
    step[0] = ph.l4_index
    viewer.dims.current_step = tuple(step)
    widget = FatClassifierWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.messages = []
    widget.notify = lambda message, level="info": widget.messages.append((level, message))
    layer, _ = _paint_samples(widget, ph)  # the phantom's samples as the first paint
    widget.live_check.setChecked(True)
    c = canvas(viewer)
    layer = widget.start_painting(2)
    layer.brush_size = 3
    colours = {k: tuple(np.round(layer.colormap.map(k), 3).ravel()) for k in (1, 2)}
    fat = np.asarray(next(s for s in ph.samples if s["class"] == "fat")["vertices"])
    row = float(fat[:, 0].max()) + 3  # just outside the fat sample already painted, in the subcutaneous fat
    cols = (float(fat[:, 1].min()) + 2, float(fat[:, 1].max()) - 2)

    before = np.asarray(layer.data[ph.l4_index]).copy()
    c.pixel_drag(image, (row, cols[0]), (row, cols[1]))  # a real brush stroke of fat
    assert (np.asarray(layer.data[ph.l4_index]) != before).any(), "the stroke did not paint"
    name = "mri fat map (preview)"
    qtbot.waitUntil(lambda: name in viewer.layers and widget._worker is None, timeout=60_000)
    assert viewer.layers.selection.active is layer and layer.mode == "paint"  # the preview did not take over
    # the preview is the core's preview model on what is painted now (known answer, deterministic)
    painted = np.array(layer.data[ph.l4_index])  # a copy: painting changes the layer in place
    assert (painted == 2).sum() > (labels_from_samples(ph.samples, ph.l4.shape) == 2).sum()  # the stroke landed
    expected, _, _ = train_and_classify(ph.l4.astype(np.float32), painted, None, widget.settings(), preview=True)
    np.testing.assert_array_equal(viewer.layers[name].data[ph.l4_index].astype(bool), expected)

    camera = (tuple(viewer.camera.center), viewer.camera.zoom)
    c.pixel_drag(image, (row + 3, cols[0]), (row + 3, cols[1]))  # the next stroke paints, it does not pan
    assert (np.asarray(layer.data[ph.l4_index]) != painted).any()
    assert (tuple(viewer.camera.center), viewer.camera.zoom) == camera
    qtbot.waitUntil(lambda: widget._worker is None and widget._pending is None, timeout=60_000)
    assert {k: tuple(np.round(layer.colormap.map(k), 3).ravel()) for k in (1, 2)} == colours  # samples keep colours
    assert widget.result is None and not widget.messages
