"""Measurement dock: mark L4, outline six muscles, measure, save, export a row."""

import warnings
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHeaderView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core import schema
from ..core.errors import PvmError
from . import _layers
from ._style import ROI_COLORS, roi_label

LEVELS = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")
_TABLE_ROWS = [(g, s) for g in schema.GROUPS for s in schema.SIDES]
_TABLE_COLUMNS = (("total_area_cm2", "total cm²"), ("muscle_area_cm2", "lean cm²"),
                  ("fat_area_cm2", "fat cm²"), ("fi_pct", "FI %"))


class MeasureWidget(QWidget):
    """Outline PS/ES/MF on the L4 slice, classify fat, measure and export.

    Keyboard (on the outlines layer): ``m`` / ``Shift-M`` selects the next /
    previous muscle; the next polygon drawn becomes that muscle.
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.slice_index = None
        self.result = None  # last Measurement
        self._measured_sha = None
        self._worker = None
        self._hooked = set()  # unique_id of layers whose events we listen to
        # dialogs go through these two hooks so tests can answer them
        self.confirm = self._ask
        self.notify = _layers.notify
        # set by the reading session: path_guard(path, "load" | "save") raises PvmError to refuse
        self.path_guard = None
        self._build()
        self.viewer.layers.events.inserted.connect(self._refresh_images)
        self.viewer.layers.events.removed.connect(self._refresh_images)
        self._refresh_images()

    # ------------------------------------------------------------ layout
    def _build(self):
        self.image_combo = QComboBox()
        self.level_combo = QComboBox()
        self.level_combo.addItems(LEVELS)
        self.level_combo.setCurrentText("L4")
        self.mark_button = QPushButton("Mark current slice as level")
        self.mark_button.clicked.connect(self.mark_current_slice)
        self.slice_label = QLabel("level slice: not marked")
        self.muscle_combo = QComboBox()
        for key in schema.ROI_KEYS:
            self.muscle_combo.addItem(f"{roi_label(key)}  (patient {'left' if key.endswith('L') else 'right'})", key)
        self.muscle_combo.currentIndexChanged.connect(self._on_muscle_changed)
        self.missing_label = QLabel()
        self.missing_label.setWordWrap(True)
        self.fat_sample_button = QPushButton("Draw fat sample")
        self.muscle_sample_button = QPushButton("Draw lean-muscle sample")
        self.fat_sample_button.clicked.connect(lambda: self.start_sample("fat"))
        self.muscle_sample_button.clicked.connect(lambda: self.start_sample("muscle"))

        self.patient_edit = QLineEdit()
        self.observer_edit = QLineEdit()
        self.session_edit = QLineEdit("read1")
        from .fat_widget import FatClassifierWidget

        self.classifier_panel = FatClassifierWidget(self.viewer, context=self)

        self.measure_button = QPushButton("Measure")
        self.measure_button.clicked.connect(lambda: self.measure())
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.table = QTableWidget(len(_TABLE_ROWS), len(_TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels([c[1] for c in _TABLE_COLUMNS])
        self.table.setVerticalHeaderLabels([f"{g} {s}" for g, s in _TABLE_ROWS])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setMinimumHeight(22 * len(_TABLE_ROWS) + 30)
        self.copy_button = QPushButton("Copy table")
        self.copy_button.clicked.connect(self.copy_table)
        self.csv_edit = QLineEdit()
        self.csv_edit.setPlaceholderText("shared measurements CSV")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse_csv)
        self.export_button = QPushButton("Add to shared CSV")
        self.export_button.clicked.connect(lambda: self.export_row())
        save = QPushButton("Save annotation…")
        load = QPushButton("Load annotation…")
        save.clicked.connect(lambda: self.save_annotation())
        load.clicked.connect(lambda: self.load_annotation())

        # the dock is tall: its content scrolls inside the dock
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        content = QWidget()
        scroll.setWidget(content)
        outer.addWidget(scroll)
        layout = QVBoxLayout(content)
        case = QFormLayout()
        case.addRow("image", self.image_combo)
        row = QHBoxLayout()
        row.addWidget(self.level_combo)
        row.addWidget(self.mark_button)
        case.addRow("level", row)
        case.addRow("", self.slice_label)
        layout.addLayout(case)
        outlines = QGroupBox("Outlines (m: next muscle)")
        form = QFormLayout(outlines)
        form.addRow("draw", self.muscle_combo)
        form.addRow("", self.missing_label)
        samples = QHBoxLayout()
        samples.addWidget(self.fat_sample_button)
        samples.addWidget(self.muscle_sample_button)
        form.addRow("samples", samples)
        layout.addWidget(outlines)
        ids = QGroupBox("Case")
        form = QFormLayout(ids)
        form.addRow("patient ID", self.patient_edit)
        form.addRow("observer ID", self.observer_edit)
        form.addRow("session", self.session_edit)
        layout.addWidget(ids)
        layout.addWidget(self.classifier_panel)
        layout.addWidget(self.measure_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.table)
        layout.addWidget(self.copy_button)
        csv_row = QHBoxLayout()
        csv_row.addWidget(self.csv_edit)
        csv_row.addWidget(browse)
        layout.addLayout(csv_row)
        layout.addWidget(self.export_button)
        files = QHBoxLayout()
        files.addWidget(save)
        files.addWidget(load)
        layout.addLayout(files)
        layout.addStretch(1)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        bar = scroll.verticalScrollBar().sizeHint().width()
        self.setMinimumWidth(content.minimumSizeHint().width() + bar + 6)
        self._update_missing()

    # ------------------------------------------------------------ layers
    def _refresh_images(self, event=None):
        current = self.image_combo.currentText()
        names = _layers.image_names(self.viewer)
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)

    @property
    def image(self):
        name = self.image_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    @property
    def outlines(self):
        return _layers.outline_layer(self.viewer, self.image, create=False) if self.image else None

    def _require_image(self):
        if self.image is None:
            raise PvmError("open an MRI first (drag a NIfTI file or DICOM folder onto napari)")
        return self.image

    def mark_current_slice(self):
        """Mark the slice shown as the chosen level and create the outline layers."""
        try:
            image = self._require_image()
        except PvmError as exc:
            return self.notify(str(exc), "warning")
        self.slice_index = _layers.current_slice_index(image, self.viewer)
        self.slice_label.setText(f"{self.level_combo.currentText()} = slice {self.slice_index}")
        layer = _layers.outline_layer(self.viewer, image)
        _layers.sample_layer(self.viewer, image)
        self._connect_outlines(layer)
        self.viewer.layers.selection.active = layer
        layer.mode = "add_polygon"
        self._on_muscle_changed()
        self._update_missing()

    def _connect_outlines(self, layer):
        if layer.unique_id in self._hooked:
            return
        layer.events.data.connect(self._on_outlines_changed)
        layer.bind_key("m", lambda _layer: self.step_muscle(+1), overwrite=True)
        layer.bind_key("Shift-m", lambda _layer: self.step_muscle(-1), overwrite=True)
        self._hooked.add(layer.unique_id)

    def step_muscle(self, step):
        """Select the next (step=+1) or previous (-1) muscle."""
        n = self.muscle_combo.count()
        self.muscle_combo.setCurrentIndex((self.muscle_combo.currentIndex() + step) % n)

    @property
    def active_muscle(self):
        return self.muscle_combo.currentData()

    def _on_muscle_changed(self, *_):
        layer = self.outlines
        if layer is None:
            return
        key = self.active_muscle
        layer.feature_defaults = {"roi": key}
        layer.current_edge_color = ROI_COLORS[key]

    def _on_outlines_changed(self, event=None):
        layer = self.outlines
        action = str(getattr(event, "action", "added")).lower().rsplit(".", 1)[-1]
        if layer is None or action != "added":
            self._update_missing()
            return
        keys = list(layer.features["roi"]) if len(layer.data) else []
        if keys:
            newest = keys[-1]
            older = [i for i, k in enumerate(keys[:-1]) if k == newest]
            if older:  # a new outline of the same muscle replaces the old one
                layer.selected_data = set(older)
                layer.remove_selected()
                keys = list(layer.features["roi"])
            layer.edge_color = [ROI_COLORS.get(k, "white") for k in keys]
            layer.refresh_text()
            missing = [k for k in schema.ROI_KEYS if k not in keys]
            if missing:
                self.muscle_combo.setCurrentIndex(schema.ROI_KEYS.index(missing[0]))
        self._update_missing()

    def _update_missing(self):
        layer = self.outlines
        drawn = set(layer.features["roi"]) if layer is not None and len(layer.data) else set()
        missing = [roi_label(k) for k in schema.ROI_KEYS if k not in drawn]
        self.missing_label.setText("missing: " + ", ".join(missing) if missing else "all six outlined")

    def start_sample(self, cls):
        """Switch to drawing a fat or lean-muscle sample polygon."""
        try:
            image = self._require_image()
        except PvmError as exc:
            return self.notify(str(exc), "warning")
        layer = _layers.sample_layer(self.viewer, image)
        layer.feature_defaults = {"class": cls}
        from ._style import SAMPLE_COLORS

        layer.current_edge_color = SAMPLE_COLORS[cls]
        self.viewer.layers.selection.active = layer
        layer.mode = "add_polygon"

    # -------------------------------------------------------- annotation
    def annotation(self):
        """The current case as an :class:`~napari_pvm.core.annotation.Annotation`."""
        from ..core.annotation import Annotation

        image = self._require_image()
        if self.slice_index is None:
            raise PvmError("mark the L4 slice first (go to it and press 'Mark current slice as level')")
        outlines = _layers.outline_layer(self.viewer, image, create=False)
        rois = _layers.rois_from_layer(outlines, image, self.slice_index) if outlines is not None else {}
        samples_layer = _layers.sample_layer(self.viewer, image, create=False)
        samples = _layers.samples_from_layer(samples_layer, image, self.slice_index) if samples_layer else []
        painted = _layers.painted_labels(_layers.paint_layer(self.viewer, image, create=False), image, self.slice_index)
        meta = image.metadata.get("napari_pvm") or {}
        return Annotation(
            slice_index=int(self.slice_index),
            level=self.level_combo.currentText(),
            rois=rois,
            samples=samples,
            sample_labels=painted,
            image_sha256=meta.get("sha256") if isinstance(meta, dict) else None,
            patient_id=self.patient_edit.text().strip() or None,
            observer_id=self.observer_edit.text().strip() or None,
            session=self.session_edit.text().strip() or None,
            classifier=self.classifier_settings(),
        )

    def reset_case(self):
        """Forget the current case (level slice, last result, table) before another opens."""
        self.slice_index = None
        self.result = None
        self._measured_sha = None
        self.slice_label.setText("level slice: not marked")
        self.table.clearContents()
        self._update_missing()

    def classifier_settings(self):
        return self.classifier_panel.settings()

    def save_annotation(self, path=None):
        """Write the case to a ``*.pvm.json`` file (atomically)."""
        from ..core.annotation import write_annotation

        try:
            annotation = self.annotation()
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
        meta = image.metadata.get("napari_pvm") or {}
        current = meta.get("sha256") if isinstance(meta, dict) else None
        if annotation.image_sha256 and current and annotation.image_sha256 != current:
            if not self.confirm(
                "Different image",
                "This annotation was drawn on another image (its sha256 differs). Load it anyway?",
            ):
                return False
        self.slice_index = annotation.slice_index
        self.level_combo.setCurrentText(annotation.level)
        self.slice_label.setText(f"{annotation.level} = slice {self.slice_index}")
        if image.ndim == 3:
            step = list(self.viewer.dims.current_step)
            step[-3] = annotation.slice_index
            self.viewer.dims.current_step = tuple(step)
        layer = _layers.outline_layer(self.viewer, image)
        self._connect_outlines(layer)
        with layer.events.data.blocker():
            _layers.set_rois(layer, image, self.slice_index, annotation.rois)
        _layers.set_samples(_layers.sample_layer(self.viewer, image), image, self.slice_index, annotation.samples)
        if annotation.sample_labels is not None:
            paint = _layers.paint_layer(self.viewer, image)
            data = np.array(paint.data)
            data[annotation.slice_index if image.ndim == 3 else slice(None)] = annotation.sample_labels
            paint.data = data
        for edit, value in ((self.patient_edit, annotation.patient_id), (self.observer_edit, annotation.observer_id)):
            if value:
                edit.setText(value)
        if annotation.session:
            self.session_edit.setText(annotation.session)
        self.classifier_panel.set_settings(annotation.classifier)
        self._update_missing()
        return True

    # --------------------------------------------------------- measuring
    def measure(self, then=None):
        """Classify and measure in a worker thread; ``then(result)`` afterwards."""
        from napari.qt.threading import create_worker

        from ..core.annotation import annotation_sha256
        from ..core.measure import measure_annotation

        try:
            image = self._require_image()
            annotation = self.annotation()
            volume = _layers.volume_from_layer(image)
        except (PvmError, OSError) as exc:
            self.notify(str(exc), "warning")
            return None
        sha = annotation_sha256(annotation)
        self.measure_button.setEnabled(False)
        self.export_button.setEnabled(False)
        self.progress.setRange(0, 0)  # busy
        self.progress.setFormat("classifying…")
        worker = create_worker(
            measure_annotation,
            volume,
            annotation,
            check_image=False,
            _start_thread=False,
            _ignore_errors=True,  # errors go to _on_error as a notification
        )
        worker.returned.connect(lambda result: self._on_measured(result, sha, then))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()
        return worker

    def _on_measured(self, result, sha, then):
        self.result = result
        self._measured_sha = sha
        for i, (group, side) in enumerate(_TABLE_ROWS):
            for j, (measure, _) in enumerate(_TABLE_COLUMNS):
                value = result.row.get(f"{group}_{side}_{measure}")
                self.table.setItem(i, j, QTableWidgetItem("" if value is None else f"{value:.2f}"))
        image = self.image
        if image is not None:
            _layers.show_mask(self.viewer, image, self.slice_index, result.fat, name=f"{image.name} {_layers.FAT_LAYER}")
        if then is not None:
            then(result)

    def _on_error(self, exc):
        self.notify(str(exc) if isinstance(exc, PvmError) else f"measurement failed: {exc}", "error")

    def _on_finished(self):
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.progress.setFormat("done")
        self.measure_button.setEnabled(True)
        self.export_button.setEnabled(True)
        self._worker = None

    def table_text(self):
        """The results table as tab-separated text (for the clipboard)."""
        lines = ["\t".join(["muscle", "side"] + [c[1] for c in _TABLE_COLUMNS])]
        for i, (group, side) in enumerate(_TABLE_ROWS):
            cells = [self.table.item(i, j).text() if self.table.item(i, j) else "" for j in range(len(_TABLE_COLUMNS))]
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

    def export_row(self, csv_path=None):
        """Append the measurement of the current outlines to the shared CSV.

        Measures first when the outlines changed since the last measurement.
        Refuses without a patient ID, with invalid outlines, and asks before
        exporting a partial set of outlines.
        """
        from ..core.annotation import annotation_sha256, check_identifier

        csv_path = csv_path or self.csv_edit.text().strip()
        try:
            if not csv_path:
                raise PvmError("choose the shared measurements CSV first")
            check_identifier(self.patient_edit.text(), "patient ID")
            check_identifier(self.observer_edit.text(), "observer ID")
            annotation = self.annotation()
            from ..core.measure import outline_masks

            outline_masks(annotation.rois, self.image.data.shape[-2:])
        except PvmError as exc:
            self.notify(str(exc), "warning")
            return None
        missing = [k for k in schema.ROI_KEYS if k not in annotation.rois]
        if not annotation.rois:
            self.notify("outline at least one muscle before exporting", "warning")
            return None
        if missing and not self.confirm(
            "Partial set of outlines",
            f"Not outlined: {', '.join(missing)}. Export the row with these muscles left empty?",
        ):
            return None
        if self.result is not None and self._measured_sha == annotation_sha256(annotation):
            return self._append(csv_path, self.result)
        return self.measure(then=lambda result: self._append(csv_path, result))

    def _append(self, csv_path, result):
        from ..core.store import StoreWarning, append_rows

        row = dict(result.row)
        row.update(
            patient_id=self.patient_edit.text().strip(),
            observer_id=self.observer_edit.text().strip(),
            session=self.session_edit.text().strip() or "read1",
        )
        row.pop("row_id", None)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", StoreWarning)
                # a short lock timeout: the GUI waits at most a few seconds for another writer
                (row_id,) = append_rows(csv_path, [row], timeout=5.0)
        except (PvmError, OSError) as exc:
            self.notify(str(exc), "error")
            return None
        for warning in caught:
            if issubclass(warning.category, StoreWarning):
                self.notify(str(warning.message), "warning")
        self.notify(f"row for patient {row['patient_id']} added to {Path(csv_path).name}", "info")
        return row_id

    # ------------------------------------------------------------ dialogs
    def _ask(self, title, text):
        answer = QMessageBox.question(self, title, text, QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes

