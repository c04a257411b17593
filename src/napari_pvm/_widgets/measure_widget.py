"""Measurement dock: mark L4, outline six muscles, measure, add the row.

The dock is a thin layer over the core: :class:`~._outlines.OutlineController`
keeps the outlines' identity, colour, origin and undo; :mod:`napari_pvm.core`
measures and stores. Every control has a method of the same meaning
(contract 6) and a key (see :data:`KEYS`).
"""

import dataclasses
import threading
from pathlib import Path

import numpy as np
from psygnal import Signal
from qtpy.QtCore import QEventLoop, Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core import schema
from ..core.errors import AnnotationError, PvmError
from . import _layers
from ._dock import RefusingDock
from ._outlines import OutlineController
from ._style import ROI_COLORS, SAMPLE_COLORS, roi_label

LEVELS = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")
SAMPLE_TARGETS = ("fat", "muscle")
TARGETS = tuple(schema.ROI_KEYS) + SAMPLE_TARGETS
_SAMPLE_NAMES = {"fat": "fat sample", "muscle": "lean-muscle sample"}
_RESULT_GROUPS = tuple(schema.GROUPS)
_RESULT_COLUMNS = (
    ("L", "total_area_cm2", "L cm²"),
    ("R", "total_area_cm2", "R cm²"),
    ("L", "fi_pct", "L FI%"),
    ("R", "fi_pct", "R FI%"),
    ("B", "fi_pct", "B FI%"),
)
_ROW_PX = 19
_TEXT_COLUMNS = (
    ("total_area_cm2", "total cm²"),
    ("muscle_area_cm2", "lean cm²"),
    ("fat_area_cm2", "fat cm²"),
    ("fi_pct", "FI %"),
)

#: Keys of the Measure dock (napari key names), bound on the viewer.
KEYS = {
    "k": "mark the slice shown as the level",
    "m": "next outline in the draw list",
    "Shift-M": "previous outline in the draw list",
    "Shift-F": "draw a fat sample",
    "Shift-U": "draw a lean-muscle sample",
    "Shift-O": "propose outlines (press again after the clicks)",
    "Shift-R": "reshape outlines with strokes (press again to draw)",
    "Shift-T": "turn the last stroke round: keep the other side",
    "Control-Enter": "measure and add the row to the shared CSV",
    "Control-Z": "undo the last outline or sample operation",
}


class MeasureWidget(RefusingDock, QWidget):
    """Outline PS/ES/MF on the L4 slice, classify fat, measure and export.

    Contract 6 methods: :meth:`mark_level`, :meth:`choose`, :meth:`measure`,
    :meth:`annotation`, :meth:`results`, :meth:`add_to_csv`, :meth:`propose`.
    """

    #: Emitted with the stored row (``row_id`` included) after a successful add.
    row_added = Signal(dict)

    def __init__(self, napari_viewer):
        super().__init__()
        # napari hands plugins a proxy that wraps every layer anew on each
        # access; the dock keeps layer objects (identity, events), so it works
        # on the viewer itself
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.slice_index = None
        self.result = None  # last Measurement
        self._row = None  # results(): the row as add_to_csv writes it
        self._row_id = None  # its row_id once added
        self._measured_sha = None
        self._added = {}  # (annotation sha, csv path) -> row_id of rows added from this dock
        self._worker = None
        self._image = None
        self._controller = None
        self._target = schema.ROI_KEYS[0]
        self._adding = False
        self._awaiting_clicks = False  # Propose pressed once: the next press runs it
        self._stroke_layers = []  # reshape stroke layers whose data events reach this dock
        self._last_stroke = None  # (stroke, other_side, state it made, key): what Shift-T turns round
        self._drop_stroke = False  # the stroke being drawn was cancelled
        self._stroke_held = False  # a drag on a stroke layer is under way
        self._proposals_allowed = True
        #: why proposals are off when :attr:`proposals_allowed` is False (tooltip and refusal)
        self.proposals_off_reason = "Outline proposals are off here"
        # dialogs go through these hooks so tests can answer them
        self.confirm = self._ask
        self.notify = _layers.notify
        # set by the reading session: path_guard(path, "load" | "save" | "append") raises PvmError to refuse
        self.path_guard = None
        # set by the reading session: view_guard() raises PvmError when marking the level
        # must wait (e.g. the sagittal image is shown, not the axial one)
        self.view_guard = None
        # set by the reading session: () -> [(image2d, spacing, {roi: vertices})] or None
        self.example_provider = None
        self._build()
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self.viewer.layers.events.removed.connect(self._refresh_images)
        self._refresh_images()
        self._bind_keys()

    # ------------------------------------------------------------ layout
    def _build(self):
        self.image_combo = QComboBox()
        self.image_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.image_combo.setMinimumContentsLength(8)
        self.image_combo.currentIndexChanged.connect(self._on_image_chosen)
        self.level_combo = QComboBox()
        self.level_combo.addItems(LEVELS)
        self.level_combo.setCurrentText("L4")
        self.mark_button = QPushButton("Mark slice (K)")
        self.mark_button.setToolTip("Mark the slice shown as the chosen vertebral level")
        self.mark_button.clicked.connect(lambda: self._run(self.mark_level, self.level_combo.currentText()))
        self.slice_label = QLabel("not marked")

        # the draw list: six outlines and two samples with their state (like ImageJ's ROI Manager)
        self.outline_list = QTableWidget(len(TARGETS), 2)
        self.outline_list.setHorizontalHeaderLabels(["draw", "state"])
        self.outline_list.verticalHeader().setVisible(False)
        self.outline_list.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.outline_list.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.outline_list.verticalHeader().setDefaultSectionSize(_ROW_PX)
        self.outline_list.verticalHeader().setMinimumSectionSize(_ROW_PX)
        self.outline_list.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.outline_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.outline_list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.outline_list.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.outline_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.outline_list.setFixedHeight(
            _ROW_PX * len(TARGETS) + self.outline_list.horizontalHeader().sizeHint().height() + 8
        )
        for i, key in enumerate(TARGETS):
            name = (
                f"{roi_label(key)} ({'left' if key.endswith('L') else 'right'})"
                if key in ROI_COLORS
                else _SAMPLE_NAMES[key]
            )
            # the colour as a swatch; the text keeps the theme's colour (readable dark and light)
            item = QTableWidgetItem(_swatch(ROI_COLORS.get(key) or SAMPLE_COLORS[key]), name)
            item.setToolTip("the next polygon drawn on the canvas becomes this")
            self.outline_list.setItem(i, 0, item)
            self.outline_list.setItem(i, 1, QTableWidgetItem("—"))
        self.outline_list.itemSelectionChanged.connect(self._on_list_clicked)
        # a click on the row already chosen changes no selection: it still leaves Reshape
        self.outline_list.clicked.connect(lambda _index: self._on_list_clicked())
        self.missing_label = QLabel()
        self.missing_label.setWordWrap(True)
        # a refused clip, in full (a toast may be cut short), until it is resolved
        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        self.problem_label.setVisible(False)

        self.propose_button = QPushButton("Propose (Shift-O)")
        self.propose_button.clicked.connect(lambda: self._run(self._propose_action))
        self.reshape_button = QPushButton("Reshape (Shift-R)")
        self.reshape_button.setToolTip(
            "Correct an outline with a stroke: drag from its border along where the border should be, "
            "back to the border; press again to draw"
        )
        self.reshape_button.clicked.connect(lambda: self._run(self._reshape_action))
        self.undo_button = QPushButton("Undo (Ctrl-Z)")
        self.undo_button.clicked.connect(lambda: self.undo())
        self._check_propose_available()

        self.patient_edit = QLineEdit()
        self.observer_edit = QLineEdit()
        self.session_edit = QLineEdit(schema.DEFAULT_SESSION if hasattr(schema, "DEFAULT_SESSION") else "read1")
        self.patient_edit.setPlaceholderText("patient ID")
        self.observer_edit.setPlaceholderText("observer ID")
        from .fat_widget import FatClassifierWidget

        self.classifier_panel = FatClassifierWidget(self.viewer, context=self)
        self.classifier_panel.setVisible(False)
        self.classifier_toggle = QToolButton()
        self.classifier_toggle.setText("Fat classifier ▸")
        self.classifier_toggle.setCheckable(True)
        self.classifier_toggle.toggled.connect(self._toggle_classifier)

        self.measure_button = QPushButton("Measure")
        self.measure_button.clicked.connect(lambda: self._run(self.measure))
        self.measure_add_button = QPushButton("Measure + add (Ctrl-Enter)")
        self.measure_add_button.clicked.connect(lambda: self._run(self.measure_and_add))
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.progress.setMaximumHeight(16)
        self.table = QTableWidget(len(_RESULT_GROUPS), len(_RESULT_COLUMNS))
        self.table.setHorizontalHeaderLabels([c[2] for c in _RESULT_COLUMNS])
        self.table.setVerticalHeaderLabels(list(_RESULT_GROUPS))
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setDefaultSectionSize(_ROW_PX)
        self.table.verticalHeader().setMinimumSectionSize(_ROW_PX)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setFixedHeight(_ROW_PX * len(_RESULT_GROUPS) + self.table.horizontalHeader().sizeHint().height() + 8)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        # the fat classification's quality beside the numbers it qualifies (contrast, qc_flags)
        self.quality_label = QLabel("")
        self.quality_label.setWordWrap(True)
        self.quality_label.setVisible(False)  # shown with a result
        self.copy_button = QPushButton("Copy table")
        self.copy_button.clicked.connect(self.copy_table)
        self.csv_edit = QLineEdit()
        self.csv_edit.setPlaceholderText("shared measurements CSV")
        browse = QPushButton("…")
        browse.setMaximumWidth(28)
        browse.clicked.connect(self._browse_csv)
        self.export_button = QPushButton("Add to shared CSV")
        self.export_button.clicked.connect(lambda: self._run(self.add_to_csv))
        save = QPushButton("Save annotation…")
        load = QPushButton("Load annotation…")
        save.clicked.connect(lambda: self.save_annotation())
        load.clicked.connect(lambda: self.load_annotation())

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(3)
        grid = QGridLayout()
        grid.setHorizontalSpacing(4)
        grid.setVerticalSpacing(3)
        grid.addWidget(QLabel("image"), 0, 0)
        grid.addWidget(self.image_combo, 0, 1, 1, 3)
        grid.addWidget(QLabel("level"), 1, 0)
        grid.addWidget(self.level_combo, 1, 1)
        grid.addWidget(self.mark_button, 1, 2)
        grid.addWidget(self.slice_label, 1, 3)
        layout.addLayout(grid)
        layout.addWidget(self.outline_list)
        self.missing_label.setVisible(False)  # the list shows what is missing; kept for scripts
        layout.addWidget(self.problem_label)
        tools = QHBoxLayout()
        tools.addWidget(self.propose_button)
        tools.addWidget(self.reshape_button)
        tools.addWidget(self.undo_button)
        layout.addLayout(tools)
        ids = QGridLayout()
        ids.setHorizontalSpacing(4)
        ids.addWidget(QLabel("patient"), 0, 0)
        ids.addWidget(self.patient_edit, 0, 1)
        ids.addWidget(QLabel("observer"), 0, 2)
        ids.addWidget(self.observer_edit, 0, 3)
        ids.addWidget(QLabel("session"), 1, 0)
        ids.addWidget(self.session_edit, 1, 1)
        ids.addWidget(self.classifier_toggle, 1, 2, 1, 2)
        layout.addLayout(ids)
        layout.addWidget(self.classifier_panel)
        run = QHBoxLayout()
        run.addWidget(self.measure_button)
        run.addWidget(self.measure_add_button)
        layout.addLayout(run)
        layout.addWidget(self.progress)
        layout.addWidget(self.table)
        layout.addWidget(self.quality_label)
        csv_row = QHBoxLayout()
        csv_row.addWidget(self.csv_edit, 1)
        csv_row.addWidget(browse)
        csv_row.addWidget(self.export_button)
        layout.addLayout(csv_row)
        files = QHBoxLayout()
        files.addWidget(save)
        files.addWidget(load)
        files.addWidget(self.copy_button)
        layout.addLayout(files)
        layout.addStretch(1)

        self._select_row(self._target)
        self._update_list()

    def _toggle_classifier(self, on):
        self.classifier_panel.setVisible(on)
        self.classifier_toggle.setText("Fat classifier ▾" if on else "Fat classifier ▸")

    @property
    def proposals_allowed(self):
        """Whether Propose may run (a reading session sets it from study.json;
        default True). When False, the Propose control is disabled and
        :meth:`propose` refuses with :attr:`proposals_off_reason`."""
        return self._proposals_allowed

    @proposals_allowed.setter
    def proposals_allowed(self, allowed):
        self._proposals_allowed = bool(allowed)
        self.propose_button.setEnabled(self._check_propose_available() and self._worker is None)

    def _check_propose_available(self):
        if not self._proposals_allowed:
            self.propose_button.setEnabled(False)
            self.propose_button.setToolTip(self.proposals_off_reason)
            return False
        try:
            from ..core import propose  # noqa: F401
        except ImportError as exc:
            self.propose_button.setEnabled(False)
            self.propose_button.setToolTip(f"Outline proposals are not available in this installation ({exc})")
            return False
        self.propose_button.setToolTip(
            "Propose the missing outlines: press once, click inside each missing muscle in the list's "
            "order (or not at all), press again"
        )
        return True

    def _bind_keys(self):
        actions = {
            "k": lambda: self.mark_level(self.level_combo.currentText()),
            "m": lambda: self.step_muscle(+1),
            "Shift-M": lambda: self.step_muscle(-1),
            "Shift-F": lambda: self.choose("fat"),
            "Shift-U": lambda: self.choose("muscle"),
            "Shift-O": self._propose_action,
            "Shift-R": self._reshape_action,
            "Shift-T": self.turn_last_stroke,
            "Control-Enter": self.measure_and_add,
            "Control-Z": self.undo,
        }
        for key, action in actions.items():
            self.viewer.bind_key(key, _key_handler(self, action), overwrite=True)

    # ------------------------------------------------------------ image
    def _refresh_images(self, event=None):
        layers = _layers.image_layers(self.viewer)
        current = (
            self._image
            if self._image is not None and any(_layers.same(current, self._image) for current in layers)
            else None
        )
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        for layer in layers:
            self.image_combo.addItem(layer.name)
        if current is not None:
            self.image_combo.setCurrentIndex([_layers.same(x, current) for x in layers].index(True))
        self.image_combo.blockSignals(False)
        if current is None:
            self._set_image(layers[-1] if layers else None)

    def _on_layer_inserted(self, event=None):
        layer = getattr(event, "value", None)
        image = self.image
        if (
            layer is not None
            and image is not None
            and layer.ndim >= 2
            and np.allclose(np.asarray(layer.scale[-2:], float), np.asarray(image.scale[-2:], float))
        ):
            _layers.set_mm_units(layer)  # napari renders units only when all layers agree
        self._refresh_images()
        axial = _layers.image_meta(layer).get("plane") != "sagittal" if layer is not None else False
        if axial and any(_layers.same(layer, x) for x in _layers.image_layers(self.viewer)):
            # the (axial) image just opened is the case being worked on
            names = [x.name for x in _layers.image_layers(self.viewer)]
            if layer.name in names:
                self.image_combo.setCurrentIndex(names.index(layer.name))

    def _on_image_chosen(self, index):
        layers = _layers.image_layers(self.viewer)
        self._set_image(layers[index] if 0 <= index < len(layers) else None)

    def _set_image(self, layer):
        if _layers.same(layer, self._image):
            return
        old = self._image
        if old is not None:
            try:
                old.events.name.disconnect(self._on_image_renamed)
            except (TypeError, ValueError, RuntimeError):
                pass
        self._image = layer
        if layer is not None:
            layer.events.name.connect(self._on_image_renamed)
            _layers.show_in_mm(self.viewer, layer)
        if old is not None:
            self._clear_case_fields()  # another image: another case (outside a session too)
        self._attach_layers()

    def _on_image_renamed(self, event=None):
        image = self._image
        if image is None:
            return
        for layer in _layers.owned_layers(self.viewer, image):
            layer.metadata["image"] = image.name
        self._refresh_images()

    @property
    def image(self):
        """The image layer the dock measures (tracked as an object: renaming it is fine)."""
        image = self._image
        if image is None or not any(_layers.same(image, x) for x in self.viewer.layers):
            return None
        return image

    @property
    def outlines(self):
        return _layers.outline_layer(self.viewer, self.image, create=False) if self.image is not None else None

    @property
    def samples(self):
        return _layers.sample_layer(self.viewer, self.image, create=False) if self.image is not None else None

    def _require_image(self):
        if self.image is None:
            self._refuse("open an MRI first (drag a NIfTI file or DICOM folder onto napari)")
        return self.image

    def _require_slice(self):
        image = self._require_image()
        if self.slice_index is None:
            self._refuse("mark the level slice first: go to it and press 'Mark slice' (K)")
        return image

    # ------------------------------------------------------------ level
    def mark_level(self, level="L4"):
        """Mark the viewer's current slice of the image as ``level`` and
        make the outlines layer active for drawing."""
        image = self._require_image()
        if level not in LEVELS:
            self._refuse(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
        if self.view_guard is not None:
            try:
                self.view_guard()
            except PvmError as exc:
                self._refuse(str(exc))
        self.level_combo.setCurrentText(level)
        self.slice_index = _layers.current_slice_index(image, self.viewer)
        self.slice_label.setText(f"slice {self.slice_index}")
        self._attach_layers(create=True)
        self.choose(self._next_missing() or self._target)
        return self.slice_index

    def mark_current_slice(self):
        """Old name of :meth:`mark_level` with the level chosen in the dock."""
        return self._run(self.mark_level, self.level_combo.currentText())

    def _attach_layers(self, create=False):
        """Find (or make) the outlines and samples layers of the image and
        put a controller on them."""
        image = self.image
        outlines = _layers.outline_layer(self.viewer, image, create=create) if image is not None else None
        samples = _layers.sample_layer(self.viewer, image, create=create) if image is not None else None
        ctrl = self._controller
        if ctrl is not None and _layers.same(ctrl.outlines, outlines) and _layers.same(ctrl.samples, samples):
            return ctrl
        if ctrl is not None:
            ctrl.disconnect()
            self._controller = None
        if outlines is None or samples is None:
            self._update_list()
            return None
        self._controller = OutlineController(
            outlines,
            samples,
            image,
            slice_index=lambda: self.slice_index,
            target=lambda: self._target,
            on_change=self._on_outlines_settled,
            notify=lambda message, level="info": self.notify(message, level),
            marker=self._show_marker,
        )
        for layer in (outlines, samples):
            layer.bind_key("Escape", lambda _layer: self.cancel_drawing(), overwrite=True)
        self._update_list()
        return self._controller

    def cancel_drawing(self):
        """Drop a polygon or reshape stroke still being drawn (as Escape
        does); the reading session calls it before it switches the image shown."""
        if self._controller is not None:
            self._controller.cancel_drawing()
        self._drop_stroke_in_progress()

    def _drop_stroke_in_progress(self, *, now=False):
        """A reshape stroke still being drawn is dropped, not applied. A drag
        still held on the stroke layer is left to napari to finish at its
        release (finishing it under napari's drag breaks the release); it is
        dropped then. ``now``: finish it at once (the stroke layer is being
        left, and napari's drag with it)."""
        stroke = self._stroke_layer()
        if stroke is not None and stroke._is_creating:
            self._drop_stroke = True
            if now or not self._stroke_held:
                stroke._finish_drawing()

    # ------------------------------------------------------- draw list
    @property
    def active_muscle(self):
        """The draw-list choice when it is an outline (else None)."""
        return self._target if self._target in schema.ROI_KEYS else None

    @property
    def target(self):
        """The draw-list choice: an outline key or 'fat' / 'muscle'."""
        return self._target

    def choose(self, target):
        """Make the next polygon drawn on the canvas ``target``: ``PS_L`` …
        ``MF_R`` (the outlines layer becomes active in polygon mode) or
        ``fat`` / ``muscle`` (a sample; the samples layer becomes active)."""
        if target not in TARGETS:
            self._refuse(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
        self._require_slice()
        ctrl = self._attach_layers(create=True)
        _finish_polygon(ctrl)
        self._drop_stroke_in_progress(now=True)
        self._target = target
        if target in schema.ROI_KEYS:
            layer, defaults, color = ctrl.outlines, {"roi": target, "origin": "drawn"}, ROI_COLORS[target]
        else:
            layer, defaults, color = ctrl.samples, {"class": target}, SAMPLE_COLORS[target]
        layer.selected_data = set()  # else the selected shape would take the new colour
        layer.feature_defaults = defaults
        layer.current_edge_color = color
        self.viewer.layers.selection.active = layer
        layer.mode = "add_polygon"
        self._select_row(target)
        self._update_list()
        return target

    def step_muscle(self, step):
        """Choose the next (step=+1) or previous (-1) outline of the draw list."""
        keys = list(schema.ROI_KEYS)
        now = keys.index(self._target) if self._target in keys else -1 if step > 0 else 0
        return self._run(self.choose, keys[(now + step) % len(keys)])

    def start_sample(self, cls):
        """Old name of ``choose("fat" | "muscle")``."""
        return self._run(self.choose, cls)

    def _select_row(self, target):
        self.outline_list.blockSignals(True)
        self.outline_list.selectRow(TARGETS.index(target))
        self.outline_list.blockSignals(False)

    def _on_list_clicked(self):
        rows = self.outline_list.selectionModel().selectedRows()
        if rows:
            target = TARGETS[rows[0].row()]
            if target != self._target or not _layers.same(self.viewer.layers.selection.active, self._layer_for(target)):
                self._run(self.choose, target)
                if self._target != target:
                    self._select_row(self._target)

    def _layer_for(self, target):
        ctrl = self._controller
        if ctrl is None:
            return None
        return ctrl.outlines if target in schema.ROI_KEYS else ctrl.samples

    def _next_missing(self):
        layer = self.outlines
        drawn = (
            set(layer.features["roi"]) if layer is not None and len(layer.data) and "roi" in layer.features else set()
        )
        missing = [k for k in schema.ROI_KEYS if k not in drawn]
        return missing[0] if missing else None

    def _on_outlines_settled(self):
        """After every outline/sample change: advance the draw list, refresh the list."""
        if self._reshaping():
            self._update_list()  # Reshape stays on for the next stroke
            return
        layer = self.outlines
        drawn = set(layer.features["roi"]) if layer is not None and len(layer.data) else set()
        if self._target in schema.ROI_KEYS and self._target in drawn:
            nxt = self._next_missing()
            if nxt is not None:
                editing = layer.mode not in ("add_polygon", "add_polygon_lasso", "pan_zoom")
                if editing and _layers.same(self.viewer.layers.selection.active, layer):
                    self._advance_quietly(nxt)  # keep the observer's editing mode
                else:
                    self._run(self.choose, nxt)
        self._update_list()

    def _advance_quietly(self, target):
        layer = self.outlines
        self._target = target
        layer.feature_defaults = {"roi": target, "origin": "drawn"}
        self._select_row(target)

    def _update_list(self):
        layer = self.outlines
        ctrl = self._controller
        states = {}
        if layer is not None and len(layer.data) and "roi" in layer.features:
            origins = list(layer.features["origin"]) if "origin" in layer.features else ["drawn"] * len(layer.data)
            for key, origin in zip(layer.features["roi"], origins):
                states[key] = str(origin)
        samples = self.samples
        counts = {}
        if samples is not None and len(samples.data) and "class" in samples.features:
            for cls in samples.features["class"]:
                counts[cls] = counts.get(cls, 0) + 1
        for i, key in enumerate(TARGETS):
            if key in schema.ROI_KEYS:
                text = states.get(key, "—")
                if ctrl is not None and key in ctrl.problems:
                    text = f"{text}; overlaps (see marker)"
            else:
                n = counts.get(key, 0)
                text = f"{n} drawn" if n else "—"
            if key == self._target:
                text += "  ← next" if text.startswith("—") or key in SAMPLE_TARGETS else "  ← redraw"
            self.outline_list.item(i, 1).setText(text)
            self.outline_list.item(i, 1).setToolTip(ctrl.problems.get(key, "") if ctrl is not None else "")
        problems = list(ctrl.problems.values()) if ctrl is not None else []
        self.problem_label.setText("\n".join(f"⚠ {p}" for p in problems))
        self.problem_label.setVisible(bool(problems))
        missing = [roi_label(k) for k in schema.ROI_KEYS if k not in states]
        self.missing_label.setText("missing: " + ", ".join(missing) if missing else "all six outlined")

    def undo(self):
        """Revert the last outline or sample operation (Ctrl-Z); False when none."""
        ctrl = self._controller
        if ctrl is None or not ctrl.undo():
            self.notify("nothing to undo", "info")
            return False
        return True

    def _show_marker(self, location, text):
        image = self.image
        if image is None:
            return
        _layers.show_marker(self.viewer, image, self.slice_index, location, text, keep_active=True)

    # -------------------------------------------------------- annotation
    def current_annotation(self):
        """The case on screen as a :class:`~napari_pvm.core.annotation.Annotation`."""
        from ..core.annotation import Annotation

        image = self._require_slice()
        outlines = _layers.outline_layer(self.viewer, image, create=False)
        samples_layer = _layers.sample_layer(self.viewer, image, create=False)
        ctrl = self._controller
        origins = None
        try:
            if ctrl is not None and ctrl.busy():
                # napari is drawing or emitting a change (a save hook may be
                # asking): the case as it will settle, the layers untouched
                snap = ctrl.settled()
                rois = {key: self._on_slice(key, ctrl._to_image_3d(v)) for v, key, _ in snap.outlines}
                samples = [
                    {"class": c, "vertices": self._on_slice(f"{c} sample", ctrl._to_image_3d(v))}
                    for v, c in snap.samples
                ]
                origins = {key: origin for _, key, origin in snap.outlines}
            else:
                if ctrl is not None:
                    ctrl.sync_now()
                rois = _layers.rois_from_layer(outlines, image, self.slice_index) if outlines is not None else {}
                samples = _layers.samples_from_layer(samples_layer, image, self.slice_index) if samples_layer else []
            painted = _layers.painted_labels(
                _layers.paint_layer(self.viewer, image, create=False), image, self.slice_index
            )
        except PvmError as exc:
            self._refuse(str(exc))
        meta = _layers.image_meta(image)
        annotation = Annotation(
            slice_index=int(self.slice_index),
            level=self.level_combo.currentText(),
            rois=rois,
            samples=samples,
            sample_labels=painted,
            image_sha256=meta.get("sha256"),
            patient_id=self.patient_edit.text().strip() or None,
            observer_id=self.observer_edit.text().strip() or None,
            session=self.session_edit.text().strip() or None,
            classifier=self.classifier_settings(),
        )
        return _with_origins(annotation, self.origins() if origins is None else origins)

    def _on_slice(self, name, data):
        """[row, col] of image-data vertices, refusing an outline off the marked slice."""
        if data.shape[1] == 3 and np.any(np.abs(data[:, 0] - self.slice_index) > 0.5):
            raise AnnotationError(
                f"{name} is drawn on slice {int(round(data[:, 0].mean()))}, not on the {self.level_combo.currentText()} "
                f"slice {self.slice_index}; draw it on slice {self.slice_index}"
            )
        return data[:, -2:]

    def origins(self):
        """{roi key: "drawn" | "proposed" | "edited"} of the outlines on screen."""
        layer = self.outlines
        if layer is None or not len(layer.data):
            return {}
        origins = list(layer.features["origin"]) if "origin" in layer.features else ["drawn"] * len(layer.data)
        return {str(k): str(g) for k, g in zip(layer.features["roi"], origins)}

    def annotation(self):
        """What is on screen as a JSON-able contract 2 dict (rois carry ``origin``)."""
        annotation = self.current_annotation()
        data = annotation.to_dict()
        origins = self.origins()
        for roi in data.get("rois", []):
            roi.setdefault("origin", origins.get(f"{roi['muscle']}_{roi['side']}", "drawn"))
        return data

    def _clear_case_fields(self):
        """A changed image: forget the patient ID, the level mark and the results."""
        self.patient_edit.setText("")
        self.slice_index = None
        self.slice_label.setText("not marked")
        self._clear_results()
        self._target = schema.ROI_KEYS[0]
        self._awaiting_clicks = False
        self._select_row(self._target)

    def _clear_results(self):
        self.result = None
        self._row = None
        self._measured_sha = None
        self.table.clearContents()
        self.quality_label.setText("")
        self.quality_label.setVisible(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")

    def reset_case(self):
        """Forget the current case before another opens: outlines, samples,
        clicks, patient ID, level mark and results; the draw list goes back to PS L."""
        ctrl = self._controller
        if ctrl is not None:
            for layer in (ctrl.outlines, ctrl.samples):
                if layer._is_creating:
                    ctrl._cancel = True
                    layer._finish_drawing()
            ctrl._cancel = False
            from ._outlines import _Snapshot

            ctrl._apply(_Snapshot([], []))
            ctrl.undo_stack.clear()
            ctrl.proposals.clear()
            ctrl.problems.clear()
        image = self.image
        if image is not None:
            paint = _layers.paint_layer(self.viewer, image, create=False)
            if paint is not None and np.any(paint.data):
                paint.data = np.zeros_like(paint.data)
            for role in ("clicks", "stroke", "marker"):
                layer = _layers.owned_layer(self.viewer, role, image)
                if layer is not None and len(layer.data):
                    layer.data = np.empty((0, layer.ndim))
        self._clear_case_fields()
        self._update_list()

    def classifier_settings(self):
        return self.classifier_panel.settings()

    def save_annotation(self, path=None):
        """Write the case to a ``*.pvm.json`` file (atomically)."""
        from ..core.annotation import write_annotation

        try:
            annotation = self.current_annotation()
            if path is None:
                path, _ = QFileDialog.getSaveFileName(self, "Save annotation", "", "napari-pvm annotation (*.pvm.json)")
                if not path:
                    return None
            if self.path_guard is not None:
                self.path_guard(path, "save")
            write_annotation(path, annotation)
        except (PvmError, OSError) as exc:
            self.notify(str(exc), "error")
            return None
        self.notify(f"annotation saved to {Path(path).name}", "info")
        return Path(path)

    def load_annotation(self, path=None):
        """Restore outlines, samples, slice, level, IDs and settings from a file."""
        from ..core.annotation import read_annotation

        try:
            image = self._require_image()
            if path is None:
                path, _ = QFileDialog.getOpenFileName(self, "Load annotation", "", "napari-pvm annotation (*.pvm.json)")
                if not path:
                    return False
            if self.path_guard is not None:
                self.path_guard(path, "load")
            annotation = read_annotation(path)
            if annotation.slice_index >= (image.data.shape[0] if image.ndim == 3 else 1):
                raise PvmError(f"slice_index {annotation.slice_index} is outside this image")
        except (PvmError, OSError) as exc:
            self.notify(str(exc), "error")
            return False
        current = _layers.image_meta(image).get("sha256")
        if annotation.image_sha256 and current and annotation.image_sha256 != current:
            if not self.confirm(
                "Different image",
                "This annotation was drawn on another image (its sha256 differs). Load it anyway?",
            ):
                return False
        self.slice_index = annotation.slice_index
        self.level_combo.setCurrentText(annotation.level)
        self.slice_label.setText(f"slice {self.slice_index}")
        if image.ndim == 3:
            step = list(self.viewer.dims.current_step)
            step[-3] = annotation.slice_index
            self.viewer.dims.current_step = tuple(step)
        ctrl = self._attach_layers(create=True)
        origins = _origins_of(annotation)
        from ._outlines import _Snapshot

        outlines = [
            (ctrl._from_image(annotation.rois[k], None), k, origins.get(k, "drawn"))
            for k in schema.ROI_KEYS
            if k in annotation.rois
        ]
        samples = [(_layers._lift(s["vertices"], image, self.slice_index), s["class"]) for s in annotation.samples]
        ctrl._apply(_Snapshot(outlines, samples))
        ctrl.undo_stack.clear()
        ctrl.proposals.clear()
        if annotation.sample_labels is not None:
            paint = _layers.paint_layer(self.viewer, image)
            data = np.array(paint.data)
            data[annotation.slice_index if image.ndim == 3 else slice(None)] = annotation.sample_labels
            paint.data = data
            self.viewer.layers.selection.active = ctrl.outlines
        for edit, value in ((self.patient_edit, annotation.patient_id), (self.observer_edit, annotation.observer_id)):
            if value and not edit.isReadOnly():
                edit.setText(value)
        if annotation.session and not self.session_edit.isReadOnly():
            self.session_edit.setText(annotation.session)
        self.classifier_panel.set_settings(annotation.classifier)
        self._clear_results()
        self._run(self.choose, self._next_missing() or schema.ROI_KEYS[0])
        return True

    # --------------------------------------------------------- measuring
    def measure(self, wait=False, *, then=None):
        """Classify and measure in a worker; with ``wait=True`` wait (the GUI
        stays responsive) and return the row (see :meth:`results`).

        Raises
        ------
        PvmError
            Nothing to measure (shown as a notification too), or, with
            ``wait=True``, the measurement failed.
        """
        from napari.qt.threading import create_worker

        from ..core.annotation import annotation_sha256

        if self._worker is not None:
            self._refuse("a measurement is already running; wait for it to finish")
        image = self._require_slice()
        annotation = self.current_annotation()
        if not annotation.rois:
            self._refuse("outline at least one muscle before measuring")
        volume = _layers.volume_from_layer(image)
        sha = annotation_sha256(annotation)
        self._set_busy(True, "classifying…")
        outcome = {}
        worker = create_worker(
            _measure_stages,
            volume,
            annotation,
            _start_thread=False,
            _ignore_errors=True,  # errors go to _on_error as a notification
            _progress={"total": len(_MEASURE_STAGES), "desc": "Measure"},
        )
        worker.yielded.connect(self._on_stage)
        worker.returned.connect(lambda result: self._on_measured(result, sha, then, outcome))
        worker.errored.connect(lambda exc: self._on_error(exc, outcome))
        self._start(worker, wait=wait)
        if not wait:
            return worker
        if "error" in outcome:
            exc = outcome["error"]
            raise exc if isinstance(exc, PvmError) else PvmError(f"measurement failed: {exc}")
        return self.results()

    def _start(self, worker, *, wait):
        """Start ``worker`` (it ends in :meth:`_on_finished`); with ``wait``,
        return only once it has finished."""
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()
        if wait:
            _wait_for(worker, lambda: self._worker is None)

    def _set_busy(self, busy, text=""):
        for button in (self.measure_button, self.measure_add_button, self.export_button):
            button.setEnabled(not busy)
        self.propose_button.setEnabled(not busy and self._check_propose_available())
        if busy:
            self.progress.setRange(0, len(_MEASURE_STAGES))
            self.progress.setValue(0)
            self.progress.setFormat(text)

    def _on_stage(self, stage):
        index, text = stage
        self.progress.setValue(index)
        self.progress.setFormat(text)

    def _on_measured(self, result, sha, then, outcome):
        self.result = result
        self._measured_sha = sha
        self._row = self._row_for_csv(result)
        self._row_id = None
        outcome["row"] = self._row
        for i, group in enumerate(_RESULT_GROUPS):
            for j, (side, measure, _) in enumerate(_RESULT_COLUMNS):
                value = result.row.get(f"{group}_{side}_{measure}")
                text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.2f}"
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.quality_label.setText(quality_text(result.row))
        self.quality_label.setVisible(True)
        self.progress.setValue(len(_MEASURE_STAGES))
        self.progress.setFormat("measured")
        image = self.image
        if image is not None:
            _layers.show_mask(
                self.viewer,
                image,
                self.slice_index,
                result.fat,
                name=f"{image.name} {_layers.FAT_LAYER}",
                keep_active=True,
            )
        if then is not None:
            then(result)

    def _on_error(self, exc, outcome=None):
        if outcome is not None:
            outcome["error"] = exc
        message = str(exc) if isinstance(exc, PvmError) else f"measurement failed: {exc}"
        self.result = None
        self._row = None
        self.table.clearContents()
        self.quality_label.setText("")
        self.quality_label.setVisible(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("not measured: see the message")
        self.notify(message, "error")

    def _on_finished(self):
        self._set_busy(False)
        self._worker = None

    def _row_for_csv(self, result):
        row = dict(result.row)
        row.update(
            patient_id=self.patient_edit.text().strip(),
            observer_id=self.observer_edit.text().strip(),
            session=self.session_edit.text().strip() or "read1",
        )
        row.pop("row_id", None)
        return row

    def results(self):
        """The row of the last measurement exactly as :meth:`add_to_csv`
        writes it (None before one; with its ``row_id`` once added)."""
        if self._row is None:
            return None
        row = dict(self._row)
        if self._row_id is not None:
            row["row_id"] = self._row_id
        return row

    def table_text(self):
        """All measures of the last measurement as tab-separated text."""
        lines = ["\t".join(["muscle", "side"] + [c[1] for c in _TEXT_COLUMNS])]
        row = self.result.row if self.result is not None else {}
        for group in schema.GROUPS:
            for side in schema.SIDES:
                cells = []
                for measure, _ in _TEXT_COLUMNS:
                    value = row.get(f"{group}_{side}_{measure}")
                    ok = value is not None and not (isinstance(value, float) and np.isnan(value))
                    cells.append(f"{value:.2f}" if ok else "")
                if any(cells):
                    lines.append("\t".join([group, side, *cells]))
        return "\n".join(lines)

    def copy_table(self):
        QApplication.clipboard().setText(self.table_text())

    # ----------------------------------------------------------- export
    def _browse_csv(self):
        path, _ = QFileDialog.getSaveFileName(self, "Shared measurements CSV", self.csv_edit.text(), "CSV (*.csv)")
        if path:
            self.csv_edit.setText(path)

    def measure_and_add(self, path=None):
        """Measure (when needed) and add the row: one action (Ctrl-Enter)."""
        return self.add_to_csv(path)

    def add_to_csv(self, path=None):
        """Append the row of the outlines on screen to the shared CSV and
        return its ``row_id``; measures first when the outlines changed since
        the last measurement.

        Refuses without a CSV or patient ID, with invalid outlines, and when
        this annotation was already added to that CSV (unless confirmed); asks
        before adding a partial set of outlines.
        """
        from ..core.annotation import annotation_sha256, check_identifier
        from ..core.measure import outline_masks

        if self._adding:
            self._refuse("the row is being added already")
        csv_path = str(path or self.csv_edit.text().strip())
        if not csv_path:
            self._refuse("choose the shared measurements CSV first")
        try:
            check_identifier(self.patient_edit.text(), "patient ID")
            check_identifier(self.observer_edit.text(), "observer ID")
        except PvmError as exc:
            self._refuse(str(exc))
        annotation = self.current_annotation()
        if not annotation.rois:
            self._refuse("outline at least one muscle before adding a row")
        try:
            outline_masks(annotation.rois, self.image.data.shape[-2:])
        except PvmError as exc:
            self._refuse(str(exc))
        missing = [k for k in schema.ROI_KEYS if k not in annotation.rois]
        if missing and not self.confirm(
            "Partial set of outlines",
            f"Not outlined: {', '.join(missing)}. Add the row with these muscles left empty?",
        ):
            return None
        sha = annotation_sha256(annotation)
        key = (sha, str(Path(csv_path).resolve()), self.patient_edit.text().strip(), self.observer_edit.text().strip())
        earlier = self._added.get(key) or _row_in_csv(csv_path, sha, key[2], key[3])
        if earlier and not self.confirm(
            "Row already added",
            f"A row for this exact annotation of patient {key[2]} is already in {Path(csv_path).name} "
            f"(row {earlier}). Add another row anyway?",
        ):
            self.notify(f"not added: this annotation is already row {earlier} of {Path(csv_path).name}", "info")
            return None
        self._adding = True
        self.export_button.setEnabled(False)
        try:
            if self._row is None or self._measured_sha != sha:
                self.measure(wait=True)
            self._row = self._row_for_csv(self.result)  # the IDs as they are now
            row_id = self._append(csv_path, self._row)
        finally:
            self._adding = False
            self.export_button.setEnabled(self._worker is None)
        if row_id is not None:
            self._added[key] = row_id
        return row_id

    def export_row(self, csv_path=None):
        """Old name of :meth:`add_to_csv` (refusals shown, not raised)."""
        return self._run(self.add_to_csv, csv_path)

    def _append(self, csv_path, row):
        row = dict(row)
        row.pop("row_id", None)
        row_id = self._append_row(csv_path, row)
        self._row_id = row_id
        row["row_id"] = row_id
        self.progress.setFormat("row added")
        self.notify(f"row for patient {row['patient_id']} added to {Path(csv_path).name}", "info")
        self.row_added.emit(dict(row))
        return row_id

    # -------------------------------------------------------- proposals
    def _propose_action(self):
        """The Propose control: first press shows the clicks layer, the next runs."""
        image = self._require_slice()
        if not self._awaiting_clicks:
            clicks = _layers.clicks_layer(self.viewer, image)
            if len(clicks.data):
                clicks.data = np.empty((0, clicks.ndim))
            self._awaiting_clicks = True
            self.viewer.layers.selection.active = clicks
            clicks.mode = "add"
            missing = ", ".join(roi_label(k) for k in schema.ROI_KEYS if k not in self.origins())
            self.notify(
                f"click once inside each muscle not outlined yet, in this order: {missing} "
                "(fewer clicks are fine), then press Propose (Shift-O) again",
                "info",
            )
            return None
        self._awaiting_clicks = False
        return self.propose()

    def propose(self, clicks=None, wait=False):
        """Propose the missing outlines (contract 7) in a worker.

        ``clicks``: ``{roi key: (row, col)}``; None takes the points of the
        clicks layer, the n-th point for the n-th outline of the draw list.
        """
        from napari.qt.threading import create_worker

        if not self._check_propose_available():
            self._refuse(self.propose_button.toolTip())
        if self._worker is not None:
            self._refuse("wait for the running measurement or proposal to finish")
        image = self._require_slice()
        ctrl = self._attach_layers(create=True)
        ctrl.sync_now()
        present = {r for _, r, _ in ctrl._state.outlines}
        wanted = [k for k in schema.ROI_KEYS if k not in present]
        if not wanted:
            self._refuse("all six outlines are drawn; delete one to have it proposed again")
        if clicks is None:  # the n-th click is inside the n-th muscle not outlined yet
            layer = _layers.owned_layer(self.viewer, "clicks", image)
            clicks = _layers.clicks_from_layer(layer, image, self.slice_index, keys=wanted)
        examples = []
        if callable(self.example_provider):
            examples = list(self.example_provider() or [])
        plane = _layers.image_slice(image, self.slice_index)
        spacing = _layers.image_spacing(image)
        self._set_busy(True, "proposing…")
        self.progress.setRange(0, len(_PROPOSE_STAGES))
        outcome = {}
        worker = create_worker(
            _propose,
            plane,
            spacing,
            dict(clicks or {}),
            examples,
            wanted,
            _start_thread=False,
            _ignore_errors=True,
            _progress={"total": len(_PROPOSE_STAGES), "desc": "Propose outlines"},
        )
        worker.yielded.connect(self._on_stage)
        worker.returned.connect(lambda result: self._on_proposed(result, outcome))
        worker.errored.connect(lambda exc: self._on_propose_error(exc, outcome))
        self._start(worker, wait=wait)
        if not wait:
            return worker
        if "error" in outcome:
            raise outcome["error"] if isinstance(outcome["error"], PvmError) else PvmError(str(outcome["error"]))
        return outcome.get("added", [])

    def _on_proposed(self, result, outcome):
        ctrl = self._attach_layers(create=True)
        added = ctrl.set_proposals(result)
        outcome["added"] = added
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.progress.setFormat(f"{len(added)} outlines proposed")
        not_found = [k for k in schema.ROI_KEYS if k not in result and k not in {r for _, r, _ in ctrl._state.outlines}]
        text = f"proposed: {', '.join(roi_label(k) for k in added) or 'none'}"
        if not_found:
            text += f"; not found (draw them): {', '.join(roi_label(k) for k in not_found)}"
        self.notify(text, "info")
        clicks = _layers.owned_layer(self.viewer, "clicks", self.image)
        if clicks is not None and len(clicks.data):
            clicks.data = np.empty((0, clicks.ndim))
        self._run(self.choose, self._next_missing() or schema.ROI_KEYS[0])

    def _on_propose_error(self, exc, outcome):
        outcome["error"] = exc
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("no proposal: see the message")
        self.notify(str(exc) if isinstance(exc, PvmError) else f"proposal failed: {exc}", "error")

    # ---------------------------------------------------------- reshape
    def _stroke_layer(self):
        """This image's reshape stroke layer (None before Reshape was used on it)."""
        return _layers.owned_layer(self.viewer, "stroke", self.image) if self.image is not None else None

    def _reshaping(self):
        """Whether Reshape is on (this image's stroke layer is the active layer)."""
        layer = self._stroke_layer()
        return layer is not None and _layers.same(self.viewer.layers.selection.active, layer)

    def _track_stroke_drag(self, layer, event):
        """Whether a drag on the stroke layer is held (for Escape and choose)."""
        self._stroke_held = True
        yield
        while event.type == "mouse_move":
            yield
        self._stroke_held = False

    def _reshape_action(self):
        """The Reshape control: strokes dragged on the canvas reshape outlines
        until it is pressed again (or an outline or sample is chosen)."""
        image = self._require_slice()
        ctrl = self._attach_layers(create=True)
        if self._reshaping():
            return self.choose(self._target)  # pressed again: back to drawing (a stroke in progress dropped)
        _finish_polygon(ctrl)
        if not ctrl._state.outlines:
            self._refuse("nothing to reshape yet: draw or propose outlines first")
        layer = _layers.stroke_layer(self.viewer, image)
        # forget the stroke layers of earlier cases (removed with their image)
        self._stroke_layers = [s for s in self._stroke_layers if any(_layers.same(s, x) for x in self.viewer.layers)]
        if not any(_layers.same(layer, seen) for seen in self._stroke_layers):
            layer.events.data.connect(self._on_stroke_event)
            layer.bind_key("Escape", lambda _layer: self.cancel_drawing(), overwrite=True)
            layer.mouse_drag_callbacks.append(self._track_stroke_drag)
            self._stroke_layers.append(layer)
        self.viewer.layers.selection.active = layer
        layer.mode = "add_path"
        self.notify(
            "drag from an outline's border along where its border should be, back to the border; "
            "press Reshape (Shift-R) again to draw",
            "info",
        )
        return layer

    def _on_stroke_event(self, event=None):
        from ._outlines import _in_progress

        if not _in_progress(event):
            QTimer.singleShot(0, self._take_stroke)

    def _take_stroke(self):
        """Apply a finished stroke (napari may still be drawing: look again later)."""
        image = self.image
        layer = self._stroke_layer()
        if layer is None or not len(layer.data):
            return
        if layer._is_creating:
            QTimer.singleShot(30, self._take_stroke)
            return
        points = _layers._to_image_data(layer, image, layer.data[-1])
        layer.data = []
        if self._drop_stroke:  # Escape, or the image is being switched
            self._drop_stroke = False
            return
        planes = set(np.round(points[:, 0]).astype(int)) if points.shape[1] > 2 else set()
        if planes and planes != {self.slice_index}:
            return self._run(
                self._refuse,
                f"the stroke was drawn on slice {min(planes)}; the outlines are on the marked slice "
                f"{self.slice_index}: go back to it to reshape them",
            )
        self._run(self.reshape, points[:, -2:])

    def reshape(self, stroke, *, other_side=False):
        """Reshape an outline with a stroke of image ``[row, col]`` points
        dragged from its border along where the border should be, back to the
        border (:mod:`napari_pvm.core.reshape`). On a shared border the
        draw-list choice is reshaped and the neighbour yields. Returns the
        outline's key; one undo step."""
        return self._reshape(np.asarray(stroke, dtype=float), other_side=other_side)

    def turn_last_stroke(self):
        """Shift-T: the last stroke the other way round (a cut keeps the
        other part); pressing again turns it back. Returns the outline's key."""
        ctrl = self._controller
        last = self._last_stroke
        if ctrl is None or last is None or ctrl._state is not last[2]:
            self._refuse("no stroke to turn round: the last operation was not a reshape stroke")
        return self._reshape(last[0], other_side=not last[1], replace_last=True)

    def _reshape(self, stroke, *, other_side, replace_last=False):
        image = self._require_slice()
        ctrl = self._attach_layers(create=True)
        spacing = _layers.image_spacing(image)
        prefer = self._last_stroke[3] if replace_last else self.active_muscle
        try:
            key, result = ctrl.reshape(
                stroke, spacing=spacing, prefer=prefer, other_side=other_side, replace_last=replace_last
            )
        except AnnotationError as exc:
            if getattr(exc, "location", None) is not None:
                self._show_marker(exc.location, "reshape")
            self._refuse(str(exc))
        self._last_stroke = (stroke, other_side, ctrl._state, key)
        cm2 = spacing[0] * spacing[1] / 100.0
        change = (result.added_pixels - result.removed_pixels) * cm2
        self.notify(
            f"{roi_label(key)} reshaped: {result.added_pixels} pixels added, "
            f"{result.removed_pixels} removed ({change:+.2f} cm²); Shift-T keeps the other side instead",
            "info",
        )
        return key

    # ------------------------------------------------------------ dialogs
    def _ask(self, title, text):
        answer = QMessageBox.question(
            self,
            title,
            text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes


# ---------------------------------------------------------------- workers
_MEASURE_STAGES = ("training the fat classifier", "classifying pixels inside the outlines", "measuring areas")


def _measure_stages(volume, annotation):
    """Generator worker: measure in a helper thread and yield (stage, text)
    as the core reports its progress, so napari's activity panel shows it."""
    import queue

    from ..core.measure import measure_annotation

    messages = queue.Queue()
    outcome = {}

    def run():
        try:
            outcome["value"] = measure_annotation(volume, annotation, check_image=False, progress=messages.put)
        except BaseException as exc:  # handed to the worker's errored signal below
            outcome["error"] = exc
        finally:
            messages.put(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    done = 0
    while True:
        message = messages.get()
        if message is None:
            break
        if done < len(_MEASURE_STAGES) - 1:
            done += 1
            yield done, str(message)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    yield len(_MEASURE_STAGES), _MEASURE_STAGES[-1]
    return outcome["value"]


_PROPOSE_STAGES = ("proposing outlines", "outlines proposed")


def _propose(plane, spacing, clicks, examples, wanted):
    """Generator worker: (stage, text) for the activity panel, then the proposal."""
    from ..core.propose import propose_outlines

    yield 1, _PROPOSE_STAGES[0]
    result = propose_outlines(plane, spacing=spacing, clicks=clicks or None, examples=tuple(examples), rois=wanted)
    yield 2, _PROPOSE_STAGES[1]
    return result


def _wait_for(worker, done):
    """Run the Qt event loop until ``done()`` (GUI stays responsive)."""
    loop = QEventLoop()
    worker.finished.connect(loop.quit)
    timer = QTimer()
    timer.timeout.connect(lambda: loop.quit() if done() else None)
    timer.start(50)
    if not done():
        loop.exec()
    timer.stop()


def _finish_polygon(ctrl):
    """A polygon in progress is finished as what it was started for, and settled."""
    if ctrl.busy():
        for layer in (ctrl.outlines, ctrl.samples):
            if layer._is_creating:
                layer._finish_drawing()
    ctrl.sync_now()


def _row_in_csv(csv_path, sha, patient_id, observer_id):
    """row_id of a row in the CSV for the same annotation, patient and observer (or None)."""
    if not Path(csv_path).is_file():
        return None
    from ..core.store import read_rows

    try:
        rows = read_rows(csv_path)
    except (PvmError, OSError, ValueError):
        return None
    if "annotation_sha256" not in rows.columns or not len(rows):
        return None
    hit = rows[
        (rows["annotation_sha256"].astype(str) == sha)
        & (rows["patient_id"].astype(str) == patient_id)
        & (rows["observer_id"].astype(str) == observer_id)
    ]
    return str(hit["row_id"].iloc[-1]) if len(hit) else None


def _with_origins(annotation, origins):
    """The annotation carrying the outlines' origins (contract 7)."""
    names = {f.name for f in dataclasses.fields(annotation)}
    for field in ("origins", "origin"):
        if field in names:
            return dataclasses.replace(
                annotation, **{field: {k: v for k, v in origins.items() if k in annotation.rois}}
            )
    extra = dict(annotation.extra)
    extra.setdefault("outline_origins", {k: v for k, v in origins.items() if k in annotation.rois})
    return dataclasses.replace(annotation, extra=extra)


def _origins_of(annotation):
    for field in ("origins", "origin"):
        value = getattr(annotation, field, None)
        if isinstance(value, dict):
            return value
    value = annotation.extra.get("outline_origins")
    return value if isinstance(value, dict) else {}


def _key_handler(dock, action):
    def handler(_viewer):
        try:
            action()
        except PvmError:
            pass  # shown as a notification

    return handler


def _swatch(hex_color, size=12):
    """A small square icon of an outline's colour (with a grey border, visible on any theme)."""
    from qtpy.QtGui import QColor, QIcon, QPainter, QPixmap

    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(hex_color))
    painter = QPainter(pixmap)
    painter.setPen(QColor("#808080"))
    painter.drawRect(0, 0, size - 1, size - 1)
    painter.end()
    return QIcon(pixmap)


def quality_text(row):
    """One line on the fat classification's quality: contrast and flags.

    >>> quality_text({"fat_muscle_contrast": 3.21, "qc_flags": ""})
    'fat:muscle contrast 3.21 · no quality flags'
    >>> quality_text({"fat_muscle_contrast": 1.7, "qc_flags": "low_contrast"})
    'fat:muscle contrast 1.70 · ⚠ check before trusting FI%: low_contrast'
    """
    contrast = row.get("fat_muscle_contrast")
    parts = [] if contrast is None else [f"fat:muscle contrast {contrast:.2f}"]
    flags = [f for f in str(row.get("qc_flags") or "").split(";") if f]
    parts.append(f"⚠ check before trusting FI%: {', '.join(flags)}" if flags else "no quality flags")
    return " · ".join(parts)
