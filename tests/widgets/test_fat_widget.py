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
