"""Reading-session dock: one observer's blinded, randomised pass through a study.

The dock only translates between napari and :mod:`napari_pvm.core.session`:
the order, the position, done/skipped and the guard against writing another
observer's files all live in the core. Cases open in the viewer with their
spacing; outlines are drawn and measured in the Measure dock, which this
dock fills with the patient, observer, session and the study's shared CSV.
"""

import os
import re
from datetime import datetime

from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import PvmError
from ..core.session import DEFAULT_SESSION, ReadingSession, Study
from . import _layers

#: Layer kinds (``metadata["napari_pvm"]``) whose edits are saved at once.
_WATCHED = ("rois", "samples", "paint")


class SessionWidget(QWidget):
    """Blinded reading session: study folder, observer, case order, progress.

    Nothing can be opened before an observer ID is entered. Start/Resume
    opens the observer's session file (or starts it) and the current case;
    Previous / Next / Skip… save the outlines and move on. Edits to the
    outlines and samples are saved as they happen, so closing napari loses
    nothing and the next Start/Resume opens the same case.
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.session = None  # ReadingSession while one runs
        self.measure = None  # the Measure dock in use
        self.image_layer = None
        self.show_codes = False
        # dialogs and messages go through these hooks so tests can answer them
        self.notify = _layers.notify
        self.ask_reason = self._ask_reason
        self._loading = False
        self._dock_notify = None
        self._build()
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self._update_enabled()

    # ------------------------------------------------------------ layout
    def _build(self):
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("study folder (holds worklist.csv)")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        self.observer_edit = QLineEdit()
        self.observer_edit.setPlaceholderText("required, e.g. A")
        self.session_edit = QLineEdit(DEFAULT_SESSION)
        self.codes_check = QCheckBox("show study codes instead of patient IDs")
        self.start_button = QPushButton("Start / resume")
        self.end_button = QPushButton("End session")
        self.start_button.clicked.connect(lambda: self.start())
        self.end_button.clicked.connect(lambda: self.end())
        self.case_label = QLabel("no session")
        self.case_label.setWordWrap(True)
        self.progress_label = QLabel("")
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.prev_button = QPushButton("◀ Previous")
        self.next_button = QPushButton("Next ▶")
        self.skip_button = QPushButton("Skip…")
        self.prev_button.clicked.connect(lambda: self.previous())
        self.next_button.clicked.connect(lambda: self.next())
        self.skip_button.clicked.connect(lambda: self.skip())
        for edit in (self.folder_edit, self.observer_edit, self.session_edit):
            edit.textChanged.connect(self._update_enabled)

        layout = QVBoxLayout(self)
        form = QFormLayout()
        row = QHBoxLayout()
        row.addWidget(self.folder_edit)
        row.addWidget(browse)
        form.addRow("study", row)
        form.addRow("observer ID", self.observer_edit)
        form.addRow("session", self.session_edit)
        form.addRow("", self.codes_check)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.end_button)
        layout.addLayout(buttons)
        layout.addWidget(self.case_label)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.progress)
        nav = QHBoxLayout()
        nav.addWidget(self.prev_button)
        nav.addWidget(self.next_button)
        nav.addWidget(self.skip_button)
        layout.addLayout(nav)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

    def _browse(self):
        folder = QFileDialog.getExistingDirectory(self, "Study folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def _update_enabled(self, *_):
        running = self.session is not None
        observer = self.observer_edit.text().strip()
        ready = bool(self.folder_edit.text().strip()) and bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", observer))
        self.start_button.setEnabled(not running and ready and bool(self.session_edit.text().strip()))
        self.end_button.setEnabled(running)
        for widget in (self.prev_button, self.next_button, self.skip_button):
            widget.setEnabled(running)
        for widget in (self.folder_edit, self.observer_edit, self.session_edit):
            widget.setReadOnly(running)
        self.codes_check.setEnabled(not running)

    # ----------------------------------------------------------- session
    def start(self):
        """Open (or resume) the observer's session and show its current case."""
        if self.session is not None:
            return True
        try:
            study = Study(self.folder_edit.text().strip())
            session = ReadingSession.open(study, self.observer_edit.text(), self.session_edit.text())
        except (PvmError, OSError) as exc:
            self._say(str(exc), "error")
            return False
        self.session = session
        self.show_codes = self.codes_check.isChecked()
        self._update_enabled()
        self._attach_measure()
        self._open_current()
        return True

    def end(self):
        """Save the current case, close the session and release the Measure dock."""
        if self.session is None:
            return True
        ok, _ = self._save_current()
        if not ok:
            return False
        try:
            self.session.close()
        except PvmError as exc:
            self._say(str(exc), "error")
        self._clear_case()
        self._release_measure()
        self.session = None
        self.case_label.setText("no session")
        self.progress_label.setText("")
        self.status_label.setText("")
        self._update_enabled()
        return True

    def next(self):
        """Save the case (done when it has outlines) and open the next one."""

        def move(outlines):
            if outlines:
                self.session.mark_done()
            return self.session.next()

        return bool(self._leave_case(move, at_end="This is the last case."))

    def previous(self):
        """Save the case and open the previous one."""
        return bool(self._leave_case(lambda outlines: self.session.previous()))

    def go_to(self, position):
        """Save the case and open case ``position`` (0-based, in this observer's order)."""

        def move(outlines):
            self.session.go_to(position)
            return True

        return self._leave_case(move) is not None

    def skip(self, reason=None):
        """Skip the current case with a reason (asked for when not given)."""
        if not self._require_session():
            return False
        reason = reason if reason is not None else self.ask_reason()
        if not reason or not str(reason).strip():
            return False
        moved = self._leave_case(lambda outlines: self.session.skip(reason), at_end="Skipped the last case.")
        return moved is not None

    def _leave_case(self, move, *, at_end=None):
        """Save the current case, then ``move(outlines_saved)`` the session and
        open the case it lands on. Returns whether it moved, or None when the
        case could not be left (the reason was shown)."""
        if not self._require_session():
            return None
        ok, outlines = self._save_current()
        if not ok:
            return None
        try:
            moved = move(outlines)
        except PvmError as exc:
            self._say(str(exc), "error")
            return None
        if moved:
            self._open_current()
        elif at_end:
            self._update_labels()
            self._say(f"{at_end} {self._summary()}.{self._unfinished()}", "info")
        return moved

    def _require_session(self):
        if self.session is None:
            self._say("enter your observer ID and press 'Start / resume' first", "warning")
            return False
        return True

    # -------------------------------------------------------------- cases
    def _open_current(self):
        """Clear the previous case and open the current one: image with its
        spacing at the suggested slice, and the observer's own annotation."""
        from ..core.io import read_volume
        from .._reader import volume_layer_tuple

        session = self.session
        case = session.current
        self._clear_case()
        name = session.display_name(codes=self.show_codes)
        self._loading = True
        try:
            try:
                volume = read_volume(case.image)
            except (PvmError, OSError) as exc:
                self._say(f"case {name}: the image cannot be opened ({exc}); skip it with a reason", "error")
                return False
            data, kwargs, _ = volume_layer_tuple(volume)
            meta = dict(kwargs["metadata"]["napari_pvm"])
            meta.pop("source", None)  # the file path may carry the patient ID
            kwargs.update(name=name, metadata={"napari_pvm": meta, "napari_pvm_session": True})
            self.image_layer = self.viewer.add_image(data, **kwargs)
            dock = self._attach_measure()
            _reset_measure(dock, case.patient_id)
            dock.image_combo.setCurrentText(self.image_layer.name)
            dock.level_combo.setCurrentText(case.level or "L4")
            if case.slice_index and int(case.slice_index) < data.shape[0]:
                self._show_slice(int(case.slice_index))
            path = session.own_annotation()
            if path is not None and not dock.load_annotation(path):
                self._say(f"case {name}: your saved outlines could not be loaded", "error")
            for layer in self._case_layers():
                self._watch(layer)
        finally:
            self._loading = False
            session.start_clock()
            self._update_labels()
        return True

    def _show_slice(self, index):
        step = list(self.viewer.dims.current_step)
        step[-3] = index
        self.viewer.dims.current_step = tuple(step)

    def _case_layers(self):
        image = self.image_layer
        if image is None:
            return []
        return [
            layer
            for layer in self.viewer.layers
            if _same(layer, image) or layer.metadata.get("image") == image.name
        ]

    def _clear_case(self):
        for layer in self._case_layers():
            self.viewer.layers.remove(layer)
        self.image_layer = None
        if self.measure is not None and _alive(self.measure):
            _reset_measure(self.measure, "")

    def _has_work(self):
        image = self.image_layer
        if image is None or not any(_same(layer, image) for layer in self.viewer.layers):
            return False
        outlines = _layers.outline_layer(self.viewer, image, create=False)
        samples = _layers.sample_layer(self.viewer, image, create=False)
        paint = _layers.paint_layer(self.viewer, image, create=False)
        return bool(
            (outlines is not None and len(outlines.data))
            or (samples is not None and len(samples.data))
            or (paint is not None and paint.data.any())
        )

    def _save_current(self, quiet=False):
        """Save the current outlines into the observer's own file.

        Returns ``(ok, number_of_outlines)``; nothing to save is ok.
        """
        if self.session is None or not self._has_work():
            return True, 0
        dock = self.measure
        try:
            if not _same(dock.image, self.image_layer):
                dock.image_combo.setCurrentText(self.image_layer.name)
            annotation = dock.annotation()
            self.session.save_annotation(annotation)
        except (PvmError, OSError) as exc:
            self.status_label.setText(self._mask(f"not saved: {exc}"))
            if not quiet:
                self._say(f"the outlines of this case could not be saved: {exc}", "error")
            return False, 0
        self.status_label.setText(f"saved {datetime.now():%H:%M:%S}")
        return True, len(annotation.rois)

    # ------------------------------------------------------ live saving
    def _on_layer_inserted(self, event):
        if self.session is not None and not self._loading:
            self._watch(event.value)

    def _watch(self, layer):
        image = self.image_layer
        kind = layer.metadata.get("napari_pvm")
        if image is None or kind not in _WATCHED or layer.metadata.get("image") != image.name:
            return
        target = _unwrap(layer)  # napari hands plugins proxies; mark the layer itself
        if getattr(target, "_pvm_session_watched", False):
            return
        event = target.events.paint if kind == "paint" else target.events.data
        event.connect(self._on_edit)
        target._pvm_session_watched = True

    def _on_edit(self, event=None):
        if self._loading or self.session is None:
            return
        action = str(getattr(event, "action", "") or "").lower().rsplit(".", 1)[-1]
        if action in ("adding", "removing", "changing"):
            return
        self._save_current(quiet=True)
        self._update_labels()

    # ----------------------------------------------------- measure dock
    def _attach_measure(self):
        """Find or dock the Measure widget and fill it for this session."""
        dock = self.measure if self.measure is not None and _alive(self.measure) else _find_measure(self.viewer)
        self.measure = dock
        session = self.session
        dock.observer_edit.setText(session.observer_id)
        dock.session_edit.setText(session.session)
        dock.csv_edit.setText(str(session.study.measurements_csv))
        for edit in (dock.patient_edit, dock.observer_edit, dock.session_edit, dock.csv_edit):
            edit.setReadOnly(True)
        if self.show_codes:
            dock.patient_edit.setEchoMode(QLineEdit.EchoMode.Password)
        if hasattr(dock, "path_guard"):  # the dock's own Save/Load… buttons obey the session too
            dock.path_guard = self._guard_path
        if self._dock_notify is None:
            self._dock_notify = dock.notify
            dock.notify = lambda message, level="info": self._dock_notify(self._mask(message), level)
        return dock

    def _release_measure(self):
        dock = self.measure
        if dock is None or not _alive(dock):
            self.measure = None
            return
        for edit in (dock.patient_edit, dock.observer_edit, dock.session_edit, dock.csv_edit):
            edit.setReadOnly(False)
        dock.patient_edit.setEchoMode(QLineEdit.EchoMode.Normal)
        if hasattr(dock, "path_guard"):
            dock.path_guard = None
        if self._dock_notify is not None:
            dock.notify = self._dock_notify
            self._dock_notify = None

    def _guard_path(self, path, mode):
        """Raise unless the Measure dock may ``mode`` ("load" / "save") ``path``."""
        session = self.session
        if session is None:
            return
        if mode == "load":
            session.check_readable(path)
        else:
            session.study.check_annotation_target(path, session.observer_id, session.current_id)

    def _say(self, message, level="info"):
        self.notify(self._mask(message), level)

    def _mask(self, message):
        """Keep a message blind: no image path or file name, and with study
        codes the current patient's study code instead of the ID."""
        message = str(message)
        if self.session is None:
            return message
        case = self.session.current
        message = message.replace(case.image, "<image>")
        name = os.path.basename(case.image.rstrip("/\\"))
        if len(name) >= 3:
            message = re.sub(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", "<image>", message)
        if self.show_codes:
            code = self.session.display_name(codes=True)
            message = re.sub(rf"(?<![A-Za-z0-9]){re.escape(case.patient_id)}(?![A-Za-z0-9])", code, message)
        return message

    # ------------------------------------------------------------ labels
    def _summary(self):
        counts = self.session.counts()
        text = f"{counts['done']} / {counts['total']} done"
        if counts["skipped"]:
            text += f", {counts['skipped']} skipped"
        return text

    def _unfinished(self):
        first = self.session.first_unfinished()
        return "" if first is None else f" Case {first + 1} is not finished yet."

    def _update_labels(self):
        session = self.session
        if session is None:
            return
        counts = session.counts()
        name = session.display_name(codes=self.show_codes)
        state = session.case_state()
        text = f"Case {session.position + 1} of {session.total}: {name} ({state})"
        if state == "skipped":
            text += f"; reason: {session.skip_reason()}"
        self.case_label.setText(text)
        self.progress_label.setText(self._summary())
        self.progress.setRange(0, max(counts["total"], 1))
        self.progress.setValue(counts["done"] + counts["skipped"])

    # ----------------------------------------------------------- dialogs
    def _ask_reason(self):
        text, ok = QInputDialog.getText(self, "Skip case", "Reason for skipping this case:")
        return text.strip() if ok else None


def _find_measure(viewer):
    """The docked Measure widget, docking one when there is none."""
    from .measure_widget import MeasureWidget

    window = viewer.window
    for widget in getattr(window, "dock_widgets", {}).values():
        if isinstance(widget, MeasureWidget):
            return widget
    try:
        _, widget = window.add_plugin_dock_widget("napari-pvm", "Measure")
    except Exception:  # plugin not registered (e.g. run from a source tree): dock it directly
        widget = None
    if not isinstance(widget, MeasureWidget):
        widget = MeasureWidget(viewer)
        window.add_dock_widget(widget, name="Measure (napari-pvm)", area="right")
    return widget


def _reset_measure(dock, patient_id):
    """Forget the previous case in the Measure dock and set the patient."""
    reset = getattr(dock, "reset_case", None)
    if callable(reset):
        reset()
    else:
        dock.slice_index = None
        dock.result = None
        dock.slice_label.setText("level slice: not marked")
        dock.table.clearContents()
    dock.patient_edit.setText(patient_id)


def _unwrap(obj):
    """The object behind napari's PublicOnlyProxy (plugins get proxied viewers)."""
    return getattr(obj, "__wrapped__", obj)


def _same(a, b):
    return a is not None and b is not None and _unwrap(a) is _unwrap(b)


def _alive(widget):
    try:
        widget.objectName()
    except RuntimeError:  # the C++ object was deleted (dock closed)
        return False
    return True

