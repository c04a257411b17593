"""Fat classifier dock: paint or draw samples, train, live preview, maps.

The same panel sits inside the measurement dock (so the settings saved with
an annotation are the ones shown) and, on its own, under Plugins ▸
napari-pvm ▸ Fat classifier. Training runs in a worker thread; in "Live
update" mode each painted stroke retrains a light preview model after a
short pause, and "Train" always fits the full, seeded model that
measurements use.
"""

import hashlib
import threading
import time

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import PvmError
from . import _layers

_WARMED = threading.Event()
_last_full = [None]  # the classifier of the last full training (set in the worker)


def warm_up_in_background():
    """Load in a daemon thread, once per process, what the first Train /
    Measure in a fresh napari would otherwise load on the GUI thread: the
    Labels colour mapping (napari's numba code, from its disk cache), the
    classifier's forest engine (from numba's disk cache), the measuring
    modules and the image reader's imports.
    """
    if _WARMED.is_set():
        return
    _WARMED.set()

    def run():
        for step in (_layers.warm_up_label_colors, _warm_up_classifier, _warm_up_reading):
            try:
                step()
            except Exception:  # noqa: BLE001 - warming is an optimisation; the real call reports errors
                pass

    threading.Thread(target=run, name="napari-pvm warm-up", daemon=True).start()


def _warm_up_classifier():
    from ..core import classify, measure  # noqa: F401

    classify.warm_up()


def _warm_up_reading():
    # the image reader's first call imports nibabel (and pydicom through it): most
    # of a second that napari's File > Open would otherwise spend on its GUI thread
    import nibabel  # noqa: F401


def train_and_classify(image, labels, within, settings, *, preview=False, model=None):
    """Fit (full or preview model) and classify inside ``within``.

    ``labels`` and ``within`` may also be callables that return them, so that
    rasterising the samples and outlines happens in the worker too.

    With ``preview``, a light model (:meth:`FatClassifier.fit_preview`) is
    fitted, from ``model`` (a fitted full classifier of this slice) when given.

    Returns ``(fat, probability, uncertainty)`` 2D arrays (NaN outside).
    """
    from ..core.classify import FatClassifier

    labels = labels() if callable(labels) else labels
    within = within() if callable(within) else within
    if preview:
        from ..core.features import shared_cache

        # the preview model: the last full model's calibration canvas when there
        # is one, else none (building a canvas costs more than the whole preview)
        clf = model if model is not None else FatClassifier(**settings, calibration=False)
        shared_cache().get(image, clf.preset)  # features of the whole slice, once: later strokes reuse them
        model = clf.fit_preview(image, labels)
    else:
        clf = FatClassifier(**settings)
        model = clf.fit(image, labels, within=within)
    proba = model.predict_proba(image, within=within)
    fat = np.nan_to_num(proba, nan=0.0) > 0.5
    uncertainty = 1.0 - np.abs(2.0 * proba - 1.0)  # 1 − (p_max − p_second) for two classes
    if not preview:
        _last_full[0] = clf
    return fat, proba, uncertainty


class FatClassifierWidget(QWidget):
    """Samples, settings and training of the per-patient fat classifier.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    context : object, optional
        Supplies ``image`` (layer) and ``slice_index``; the measurement dock
        passes itself. Alone, the panel uses the image chosen here and the
        slice shown.
    """

    def __init__(self, napari_viewer, *, context=None):
        super().__init__()
        self.viewer = napari_viewer
        self.context = context
        self.result = None  # (fat, probability, uncertainty) of the last full model
        self._worker = None
        self._pending = None
        self._hooked = set()  # unique_id of paint layers we listen to
        self.notify = _layers.notify
        #: perf_counter() of the last preview shown (benchmarks read it)
        self.preview_shown_at = None
        self._full_model = (None, None)  # (image, slice, settings) -> fitted full classifier
        self._polygons = (None, [], {})  # (key, samples, rois) of the last conversion
        self._build()
        self.set_settings(None)
        warm_up_in_background()

    def _build(self):
        from ..core.features import PRESETS

        self.image_combo = QComboBox()
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(list(PRESETS))
        self.trees_spin = QSpinBox()
        self.trees_spin.setRange(1, 2000)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.balance_check = QCheckBox("balance classes")
        self.paint_fat_button = QPushButton("Paint fat")
        self.paint_muscle_button = QPushButton("Paint muscle")
        self.paint_fat_button.clicked.connect(lambda: self.start_painting(2))
        self.paint_muscle_button.clicked.connect(lambda: self.start_painting(1))
        self.train_button = QPushButton("Train and show fat")
        self.train_button.clicked.connect(lambda: self.train())
        self.live_check = QCheckBox("Live update while painting")
        self.live_check.toggled.connect(self._on_live_toggled)
        self.probability_button = QPushButton("Probability map")
        self.uncertainty_button = QPushButton("Uncertainty map")
        self.probability_button.clicked.connect(lambda: self.show_map("probability"))
        self.uncertainty_button.clicked.connect(lambda: self.show_map("uncertainty"))
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)

        box = QGroupBox("Fat classifier")
        form = QFormLayout(box)
        if self.context is None:
            form.addRow("image", self.image_combo)
            self.viewer.layers.events.inserted.connect(self._refresh_images)
            self.viewer.layers.events.removed.connect(self._refresh_images)
            self._refresh_images()
        form.addRow("features", self.preset_combo)
        form.addRow("trees", self.trees_spin)
        form.addRow("seed", self.seed_spin)
        form.addRow("", self.balance_check)
        paint = QHBoxLayout()
        paint.addWidget(self.paint_fat_button)
        paint.addWidget(self.paint_muscle_button)
        form.addRow("samples", paint)
        form.addRow(self.train_button)
        form.addRow(self.live_check)
        maps = QHBoxLayout()
        maps.addWidget(self.probability_button)
        maps.addWidget(self.uncertainty_button)
        form.addRow(maps)
        form.addRow(self.progress)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(box)

    # ------------------------------------------------------------ settings
    def settings(self):
        """Classifier settings as stored in an annotation (contract 2)."""
        return {
            "preset": self.preset_combo.currentText(),
            "n_trees": self.trees_spin.value(),
            "seed": self.seed_spin.value(),
            "class_balance": self.balance_check.isChecked(),
        }

    def set_settings(self, settings):
        """Show ``settings`` (missing keys: the defaults of FatClassifier)."""
        from ..core.classify import FatClassifier

        params = FatClassifier().params
        params.update({k: v for k, v in (settings or {}).items() if v is not None})
        self.preset_combo.setCurrentText(str(params["preset"]))
        self.trees_spin.setValue(int(params["n_trees"]))
        self.seed_spin.setValue(int(params["seed"]))
        self.balance_check.setChecked(str(params["class_balance"]).lower() == "true")

    # ---------------------------------------------------------- the case
    def _refresh_images(self, event=None):
        current = self.image_combo.currentText()
        names = _layers.image_names(self.viewer)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)

    @property
    def image(self):
        if self.context is not None:
            return self.context.image
        name = self.image_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    @property
    def slice_index(self):
        if self.context is not None and self.context.slice_index is not None:
            return self.context.slice_index
        image = self.image
        return None if image is None else _layers.current_slice_index(image, self.viewer)

    def start_painting(self, label):
        """Select the painted-samples layer (made with the image's scale)."""
        image = self.image
        if image is None:
            return self.notify("open an MRI first", "warning")
        layer = _layers.paint_layer(self.viewer, image)
        self._listen(layer)
        layer.selected_label = int(label)
        self.viewer.layers.selection.active = layer
        layer.mode = "paint"
        self._prime_features()
        return layer

    def training_data(self):
        """(image slice, labels, within mask) for the case shown."""
        plane, labels, within = self._training_inputs()
        return plane, labels(), within()

    def _training_inputs(self):
        """(image slice, labels(), within()): the layers are read here, on the
        GUI thread; the two callables rasterise samples and outlines (in the
        worker)."""
        from ..core.classify import labels_from_samples
        from ..core.measure import outline_masks

        image = self.image
        if image is None:
            raise PvmError("open an MRI first")
        index = self.slice_index
        plane = _layers.image_slice(image, index)
        shape = plane.shape
        samples_layer = _layers.sample_layer(self.viewer, image, create=False)
        outlines = _layers.outline_layer(self.viewer, image, create=False)
        # converting vertices to pixels goes through napari's transforms point by
        # point: do it only when the polygons changed, not on every brush stroke
        key = (_layers_key(image), index, _shapes_key(samples_layer), _shapes_key(outlines))
        if self._polygons[0] != key:
            samples = _layers.samples_from_layer(samples_layer, image, index) if samples_layer else []
            rois = _layers.rois_from_layer(outlines, image, index) if outlines is not None else {}
            self._polygons = (key, samples, rois)
        _, samples, rois = self._polygons
        painted = _layers.painted_labels(_layers.paint_layer(self.viewer, image, create=False), image, index)

        def labels():
            return labels_from_samples(samples, shape, painted=painted)

        def within():  # None without outlines: the whole slice, calibrated on the samples alone
            masks = outline_masks(rois, shape) if rois else {}
            return np.logical_or.reduce(list(masks.values())) if masks else None

        return plane, labels, within

    # ------------------------------------------------------------ training
    def _on_live_toggled(self, on):
        if on:
            image = self.image
            layer = _layers.paint_layer(self.viewer, image, create=False) if image is not None else None
            if layer is not None:
                self._listen(layer)
            self._prime_features()

    def _prime_features(self):
        """Compute the slice's features in the background before the first
        live stroke (the preview then only trains and predicts)."""
        from napari.qt.threading import create_worker

        from ..core.features import shared_cache

        image = self.image
        if image is None or not self.live_check.isChecked():
            return
        try:
            plane = _layers.image_slice(image, self.slice_index)
        except (IndexError, ValueError):
            return
        worker = create_worker(
            shared_cache().get, plane, self.preset_combo.currentText(), _start_thread=False, _ignore_errors=True
        )
        worker.start()

    def _listen(self, layer):
        if layer.unique_id not in self._hooked:
            layer.events.paint.connect(self._on_painted)
            self._hooked.add(layer.unique_id)

    def _on_painted(self, event=None):
        if self.live_check.isChecked():
            # napari reports a stroke once, at the mouse release: start at once, so
            # the preview is computed while the canvas draws the stroke
            self.train(preview=True)

    def train(self, *, preview=False):
        """Train in a worker and show the fat map inside the outlines."""
        from napari.qt.threading import create_worker

        if self._worker is not None:
            self._pending = preview  # run again once the current job is done
            return None
        try:
            plane, labels, within = self._training_inputs()
        except PvmError as exc:
            if not preview:
                self.notify(str(exc), "warning")
            return None
        index, image = self.slice_index, self.image
        settings = self.settings()
        key = (_layers_key(image), index, tuple(sorted(settings.items())))
        model = self._full_model[1] if preview and self._full_model[0] == key else None
        self.train_button.setEnabled(False)
        self.progress.setRange(0, 0)
        worker = create_worker(
            train_and_classify,
            plane,
            labels,
            within,
            settings,
            preview=preview,
            model=model,
            _start_thread=False,
            _ignore_errors=True,
        )
        worker.returned.connect(lambda res: self._on_trained(res, image, index, preview, key))
        worker.errored.connect(lambda exc: self.notify(str(exc), "warning" if isinstance(exc, PvmError) else "error"))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()
        return worker

    def _on_trained(self, res, image, index, preview, key=None):
        fat, proba, uncertainty = res
        if not preview:
            self.result = res
            self._full_model = (key, _last_full[0])
        if image is None or not any(_same(image, layer) for layer in self.viewer.layers):
            return  # the image was closed meanwhile
        name = f"{image.name} {_layers.FAT_LAYER}" + (" (preview)" if preview else "")
        if not _update_overlay(self.viewer, image, index, fat, name):
            # the first time: a new layer, which must not become the active one (the
            # next brush stroke has to paint, not pan)
            _layers.show_mask(self.viewer, image, index, fat, name=name, keep_active=True)
        if preview:
            self.preview_shown_at = time.perf_counter()

    def _on_finished(self):
        self._worker = None
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.train_button.setEnabled(True)
        if self._pending is not None:
            preview, self._pending = self._pending, None
            self.train(preview=preview)

    def show_map(self, which):
        """Show the probability or uncertainty map of the last full model."""
        if self.result is None:
            return self.notify("press 'Train and show fat' first", "info")
        image = self.image
        values = self.result[1] if which == "probability" else self.result[2]
        cmap = "magma" if which == "probability" else "cyan"
        return _layers.show_map(
            self.viewer, image, self.slice_index, values, name=f"{image.name} fat {which}", colormap=cmap
        )


def _layers_key(layer):
    return None if layer is None else str(getattr(getattr(layer, "__wrapped__", layer), "unique_id", id(layer)))


def _shapes_key(layer):
    """Content key of a Shapes layer's polygons and names (None without one)."""
    if layer is None:
        return None
    data = layer.data
    blob = hashlib.blake2b(digest_size=16)
    for array in data:
        blob.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        blob.update(b"|")
    names = tuple(str(v) for column in layer.features.columns for v in layer.features[column])
    return (
        _layers_key(layer),
        len(data),
        blob.hexdigest(),
        names,
        tuple(np.asarray(layer.scale).tolist()),
        tuple(np.asarray(layer.translate).tolist()),
    )


def _same(a, b):
    return getattr(a, "__wrapped__", a) is getattr(b, "__wrapped__", b)


def _update_overlay(viewer, image, index, mask, name):
    """Write ``mask`` into the existing overlay layer ``name`` in place, only
    on the slice shown, and redraw just that slice (replacing the whole
    volume re-uploads every slice and costs a large part of a second on
    software OpenGL). False when there is no such layer yet."""
    for layer in viewer.layers:
        if layer.name != name or _layers.layer_role(layer) != "overlay":
            continue
        data = layer.data
        if not isinstance(data, np.ndarray) or data.shape != image.data.shape:
            return False
        plane = data[int(index)] if data.ndim == 3 else data
        new = mask.astype(plane.dtype)
        if not np.array_equal(plane, new):
            plane[...] = new
            layer.refresh()
        return True
    return False
