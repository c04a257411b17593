"""Reading-session dock: one observer's blinded, randomised pass through a study.

The dock only translates between napari and :mod:`napari_pvm.core.session`:
the order, the position, done/skipped, the recorded rows and the guard
against writing another observer's files all live in the core. Cases open in
the viewer with their spacing; outlines are drawn and measured in the Measure
dock, which this dock fills with the patient, observer, session and the
study's shared CSV. When the study's ``measure_sets`` include ``"spine"``,
the case's sagittal series opens too, and the Spine measures dock is filled
the same way (the study's ``spine.csv``); a study of spine measures only
opens no axial image and no Measure dock.

Keys (on the canvas; the Measure and Spine docks add their own, see ``docs/study.md``):

======================  ==========================================
``PageDown``            Next case (done only when its rows were added)
``PageUp``              Previous case
``Control-K``           Skip the case (asks for a reason)
``Control-J``           Axial (muscle) / sagittal (spine) image of the case
======================  ==========================================
"""

import os
import re
from datetime import datetime

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import PvmError
from ..core.session import DEFAULT_SESSION, ReadingSession, Study, spine_annotation_sha256
from . import _layers
from .fat_widget import warm_up_in_background
from .spine_widget import show_data_slice

#: Layer roles (``metadata["napari_pvm"]["role"]``, contract 6) whose edits are saved at once.
_WATCHED = ("outlines", "samples", "paint")
#: Session keys (napari key names) bound on the viewer.
KEYS = {
    "PageDown": "next case (done only when its rows are in the shared CSVs)",
    "PageUp": "previous case",
    "Control-K": "skip the case with a reason",
    "Control-J": "switch between the case's axial (muscle) and sagittal (spine) image",
}
#: Keys the session routes to the dock of the image shown when a study has spine
#: measures: both docks bind some of them on the viewer, and the one of the image on
#: screen must get them (K / Shift-K on the hidden image would mark a slice nobody sees).
#: Per key: the Measure dock's action, the Spine dock's action (None: not on that image).
_ROUTES = {
    "Control-Enter": ("measure_and_add", "add_to_csv"),
    "Control-Z": ("undo", "undo"),
    "k": ("mark_level", None),
    "Shift-K": (None, "mark_slice"),
}
#: Longest wait for the canvas to finish a pending draw before layers are swapped.
_DRAW_WAIT_MS = 500


def _read_case(path):
    """Read a case's image (in a worker thread): (data, layer kwargs)."""
    from .._reader import volume_layer_tuple
    from ..core.io import read_volume

    data, kwargs, _ = volume_layer_tuple(read_volume(path))
    return data, kwargs


def _read_case_images(paths):
    """Read a case's images ``{"muscle": path, "spine": path}`` (in a worker
    thread): ``{key: (data, kwargs) or the exception}``; one unreadable image
    does not stop the other."""
    out = {}
    for key, path in paths.items():
        try:
            out[key] = _read_case(path)
        except Exception as exc:  # noqa: BLE001 - shown to the observer, who skips the case
            out[key] = exc
    return out


class SessionWidget(QWidget):
    """Blinded reading session: study folder, observer, case order, progress.

    Nothing can be opened before an observer ID is entered. Start/Resume
    opens the observer's session file (or starts it) and the current case;
    Previous / Next / Skip… save the outlines and move on. Edits to the
    outlines and samples are saved as they happen, so closing napari loses
    nothing and the next Start/Resume opens the same case.

    A case is *done* only when the session file records the ``row_id`` of
    the row it appended to the shared CSV (the Measure dock's ``row_added``);
    Next on a case without its row offers to measure and add it, to skip the
    case with a reason, or to leave it unfinished.

    Attributes
    ----------
    ready : bool
        False while a case is being opened (its image is read in a worker).
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.session = None  # ReadingSession while one runs
        self.measure = None  # the Measure dock in use (None in a spine-only study)
        self.spine = None  # the Spine measures dock in use (None without "spine" in measure_sets)
        self.image_layer = None  # the case's axial image (muscle measures)
        self.sagittal_layer = None  # the case's sagittal image (spine measures)
        self.view = None  # "muscle" or "spine": whose image is shown
        self._views = {}  # view -> (dims point, (camera center, zoom) or None) when left
        self._spine_problem = None  # why this case's spine measures cannot be made
        self._unreadable = set()  # measure sets whose saved drawing of this case could not be loaded
        self._had_work = False  # outlines or samples were on screen during this visit of the case
        self.show_codes = False
        self.ready = True
        # dialogs and messages go through these hooks so tests can answer them
        self.notify = _layers.notify
        self.ask_reason = self._ask_reason
        self.ask_unfinished = self._ask_unfinished
        self._loading = False
        self._busy = False  # a Next / measure-and-add is running
        self._dock_notify = None
        self._spine_notify = None
        self._token = None  # the case being opened
        self._worker = None
        self._examples = None  # prefetched proposal examples of the current case
        self._build()
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self.viewer.layers.selection.events.active.connect(self._on_active_layer)
        self._bind_keys()
        self._update_enabled()
        warm_up_in_background()

    # ------------------------------------------------------------ layout
    def _build(self):
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("study folder (holds worklist.csv)")
        browse = QPushButton("…")
        browse.setMaximumWidth(28)
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
        self.progress.setMaximumHeight(10)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.prev_button = QPushButton("◀ Prev (PgUp)")
        self.next_button = QPushButton("Next ▶ (PgDn)")
        self.skip_button = QPushButton("Skip… (Ctrl-K)")
        self.prev_button.clicked.connect(lambda: self.previous())
        self.next_button.clicked.connect(lambda: self.next())
        self.skip_button.clicked.connect(lambda: self.skip())
        self.muscle_view_button = QPushButton("Axial: muscle")
        self.spine_view_button = QPushButton("Sagittal: spine (Ctrl-J)")
        for button, view in ((self.muscle_view_button, "muscle"), (self.spine_view_button, "spine")):
            button.setCheckable(True)
            button.clicked.connect(lambda _=False, v=view: self.show_view(v))
        for edit in (self.folder_edit, self.observer_edit, self.session_edit):
            edit.textChanged.connect(self._update_enabled)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(3)
        # the set-up fields are hidden while a session runs: the reading layout stays short
        self.setup_box = QWidget()
        form = QFormLayout(self.setup_box)
        form.setContentsMargins(0, 0, 0, 0)
        form.setVerticalSpacing(3)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit)
        row.addWidget(browse)
        form.addRow("study", row)
        form.addRow("observer ID", self.observer_edit)
        form.addRow("session", self.session_edit)
        form.addRow("", self.codes_check)
        layout.addWidget(self.setup_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.end_button)
        layout.addLayout(buttons)
        layout.addWidget(self.case_label)
        progress = QHBoxLayout()
        progress.addWidget(self.progress_label)
        progress.addWidget(self.progress, 1)
        layout.addLayout(progress)
        nav = QHBoxLayout()
        nav.addWidget(self.prev_button)
        nav.addWidget(self.next_button)
        nav.addWidget(self.skip_button)
        layout.addLayout(nav)
        # only in a study with both measure sets: which image of the case is shown
        self.view_box = QWidget()
        views = QHBoxLayout(self.view_box)
        views.setContentsMargins(0, 0, 0, 0)
        views.addWidget(self.muscle_view_button)
        views.addWidget(self.spine_view_button)
        self.view_box.setVisible(False)
        layout.addWidget(self.view_box)
        layout.addWidget(self.status_label)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)

    def _browse(self):
        folder = QFileDialog.getExistingDirectory(self, "Study folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def _update_enabled(self, *_):
        running = self.session is not None
        observer = self.observer_edit.text().strip()
        ready = bool(self.folder_edit.text().strip()) and bool(
            re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", observer)
        )
        self.start_button.setEnabled(not running and ready and bool(self.session_edit.text().strip()))
        self.start_button.setVisible(not running)
        self.end_button.setEnabled(running)
        for widget in (self.prev_button, self.next_button, self.skip_button):
            widget.setEnabled(running and self.ready and not self._busy)
        both = running and len(self.session.measure_sets) > 1
        self.view_box.setVisible(both)
        for button, view in ((self.muscle_view_button, "muscle"), (self.spine_view_button, "spine")):
            button.setEnabled(both and self.ready and not self._busy)
            button.setChecked(self.view == view)
        for widget in (self.folder_edit, self.observer_edit, self.session_edit):
            widget.setReadOnly(running)
        self.codes_check.setEnabled(not running)
        self.setup_box.setVisible(not running)

    def _bind_keys(self):
        actions = {
            "PageDown": self.next,
            "PageUp": self.previous,
            "Control-K": self.skip,
            "Control-J": self.switch_view,
        }

        def handler(action):
            def run(_viewer):
                if self.session is not None:
                    action()

            return run

        for key, action in actions.items():
            self.viewer.bind_key(key, handler(action), overwrite=True)

    # ----------------------------------------------------------- session
    def start(self):
        """Open (or resume) the observer's session and show its current case."""
        if self.session is not None:
            return True
        try:
            study = Study(self.folder_edit.text().strip())
            session = ReadingSession.open(study, self.observer_edit.text(), self.session_edit.text())
            session.settings  # noqa: B018 - refuse a bad study.json before anything opens
        except (PvmError, OSError) as exc:
            self._say(str(exc), "error")
            return False
        self.session = session
        self.show_codes = self.codes_check.isChecked()
        self._update_enabled()
        self._attach_docks()
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
        self._token = None
        self._loading = True
        try:
            self._clear_case()
        finally:
            self._loading = False
        measure, spine = self.measure, self.spine
        self._release_measure()
        self._release_spine()
        if spine is not None:
            _bind_dock_keys(self.viewer, measure, spine)  # each routed key belongs to its own dock again
        self.view = None
        self._views = {}
        self._spine_problem = None
        self.session = None
        self.ready = True
        self.case_label.setText("no session")
        self.progress_label.setText("")
        self.status_label.setText("")
        self._update_enabled()
        return True

    def next(self):
        """Leave the case for the next one.

        The case becomes *done* only when the session file records a row of
        every measure set of the study (the muscle row in the shared CSV, the
        spine row in the shared spine CSV) and the drawings did not change
        since; otherwise :attr:`ask_unfinished` offers to measure and add the
        missing rows, to skip the case with a reason, or to leave it
        unfinished. Returns whether it moved.
        """
        if not self._can_act():
            return False
        ok, _ = self._save_current()
        if not ok:
            return False
        finished, why = self._finished()
        if not finished:
            choice = self.ask_unfinished(self._mask(why))  # no image path in the dialog
            if choice == "measure":
                if not self.measure_and_add():
                    return False
                finished, why = self._finished()
                if not finished:
                    self._say(why, "warning")
                    return False
            elif choice == "skip":
                return self.skip()
            elif choice != "leave":
                return False

        def move(_outlines):
            if finished:
                self.session.mark_done()
            return self.session.next()

        return bool(self._leave_case(move, at_end="This is the last case."))

    def previous(self):
        """Save the case and open the previous one."""
        if not self._can_act():
            return False
        return bool(self._leave_case(lambda outlines: self.session.previous()))

    def go_to(self, position):
        """Save the case and open case ``position`` (0-based, in this observer's order)."""
        if not self._can_act():
            return False

        def move(outlines):
            self.session.go_to(position)
            return True

        return self._leave_case(move) is not None

    def skip(self, reason=None):
        """Skip the current case with a reason (asked for when not given)."""
        if not self._can_act():
            return False
        reason = reason if reason is not None else self.ask_reason()
        if not reason or not str(reason).strip():
            return False
        moved = self._leave_case(lambda outlines: self.session.skip(reason), at_end="Skipped the last case.")
        return moved is not None

    def measure_and_add(self):
        """Measure the case (when needed) and add the rows it still lacks: the
        muscle row to the study's CSV, the spine row to its spine CSV, as the
        study's ``measure_sets`` ask. Returns the last ``row_id`` (None when
        one was refused or cancelled). Rows are recorded in the session file
        through the docks' ``row_added``."""
        if not self._require_session() or self._busy:
            return None
        unfinished = [m for m in self.session.measure_sets if self._set_problem(m)] or list(self.session.measure_sets)
        self._busy = True
        self._update_enabled()
        row_id = None
        try:
            for measure_set in unfinished:
                row_id = self._add_row(measure_set)
                if row_id is None:
                    return None
            return row_id
        finally:
            self._busy = False
            self._update_enabled()

    def _add_row(self, measure_set):
        """Add this case's row of one measure set; None when refused."""
        study = self.session.study
        if measure_set == "spine":
            if self._spine_problem:
                self._say(f"no spine row: {self._spine_problem}; skip the case with a reason (Ctrl-K)", "warning")
                return None
            dock, csv = self.spine, study.spine_csv
        else:
            dock, csv = self.measure, study.measurements_csv
        if dock is None or not _alive(dock):
            self._say(f"the {measure_set} dock was closed; press Next again to open it", "warning")
            return None
        try:
            add = getattr(dock, "add_to_csv", None) or dock.export_row
            return add(str(csv))
        except PvmError:
            return None  # the dock showed why

    def _can_act(self):
        if not self._require_session():
            return False
        if not self.ready or self._busy:
            self._say("wait: the case is still opening or being measured", "info")
            return False
        return True

    def _finished(self):
        """(True, "") when the case's row of every measure set of the study
        is recorded and still matches what is drawn; else (False, what is
        missing)."""
        problems = [p for p in (self._set_problem(m) for m in self.session.measure_sets) if p]
        return (False, " ".join(problems)) if problems else (True, "")

    def _set_problem(self, measure_set):
        """What keeps one measure set of the case unfinished ("" when nothing)."""
        session = self.session
        row_id = session.row_id(measure_set=measure_set)
        if measure_set == "spine":
            if row_id is None:
                why = f" ({self._spine_problem})" if self._spine_problem else ""
                return f"This case has no row in the shared spine CSV yet{why}."
            sha = self._spine_sha()
            if sha is None and "spine" in self._unreadable:
                return (
                    f"Your saved spine drawing of this case could not be loaded, so spine row {row_id} "
                    "cannot be checked against it; redraw it and add the spine row again."
                )
            if sha is not None and not session.row_is_current(sha, measure_set="spine"):
                return f"The spine drawing changed after spine row {row_id} was added."
            return ""
        if row_id is None:
            return "This case has no row in the shared CSV yet."
        sha = self._annotation_sha()
        if sha is None and "muscle" in self._unreadable:
            return (
                f"Your saved outlines of this case could not be loaded, so row {row_id} "
                "cannot be checked against them; redraw them and add the row again."
            )
        if sha is not None and not session.row_is_current(sha):
            return f"The outlines changed after row {row_id} was added."
        return ""

    def _annotation_sha(self):
        from ..core.annotation import annotation_sha256

        dock = self.measure
        if dock is None or not _alive(dock) or self.image_layer is None:
            return None
        if getattr(dock, "slice_index", 0) is None:
            return None  # nothing outlined yet (asking the dock would only show its refusal)
        try:
            return annotation_sha256(_current_annotation(dock))
        except PvmError:
            return None

    def _spine_annotation(self):
        """The Spine dock's drawing of this case (None when its slice is not marked)."""
        dock = self.spine
        if dock is None or not _alive(dock) or self.sagittal_layer is None or dock.slice_index is None:
            return None
        if not _same(dock.image, self.sagittal_layer):
            return None
        try:
            return dock.annotation()
        except PvmError:
            return None

    def _spine_sha(self):
        annotation = self._spine_annotation()
        if annotation is None:
            return None
        try:
            return spine_annotation_sha256(annotation)
        except PvmError:
            return None

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
        """Open the current case: its image is read in a worker; the layers of
        the previous case are swapped for it once the canvas has drawn."""
        from napari.qt.threading import create_worker

        session = self.session
        case = session.current
        name = session.display_name(codes=self.show_codes)
        token = self._token = object()
        self.ready = False
        self._examples = None
        self._update_enabled()
        self.case_label.setText(f"Case {session.position + 1} of {session.total}: {name} (opening…)")
        paths = {}
        if "muscle" in session.measure_sets:
            paths["muscle"] = case.image
        if "spine" in session.measure_sets and session.spine_image():
            paths["spine"] = session.spine_image()
        worker = create_worker(
            _read_case_images,
            paths,
            _start_thread=False,
            _ignore_errors=True,
            _progress={"total": 0, "desc": f"Opening case {session.position + 1}"},
        )
        worker.returned.connect(lambda result: self._after_draw(lambda: self._show_case(token, result, None)))
        worker.errored.connect(lambda exc: self._after_draw(lambda: self._show_case(token, None, exc)))
        self._worker = worker
        worker.start()
        # while the worker reads: napari builds the scale bar's visual the first time it is
        # shown (tens of ms), which would otherwise add to the image layer's own first stall
        QTimer.singleShot(0, self._prepare_scale_bar)
        return worker

    def _prepare_scale_bar(self):
        """Have napari build the scale bar's visual now (shown, then hidden
        again: the Measure dock shows it with the case's image)."""
        canvas = getattr(self.viewer, "canvas", None)  # napari >= 0.9 keeps overlays on the canvas
        scale_bar = canvas.overlays.scale_bar if hasattr(canvas, "overlays") else self.viewer.scale_bar
        if not scale_bar.visible:
            scale_bar.visible = True
            scale_bar.visible = False

    def wait_until_ready(self, timeout=60.0):
        """Run the event loop until the case is open (for scripts and tests);
        returns :attr:`ready`."""
        from qtpy.QtCore import QEventLoop, QTimer as _Timer

        if self.ready:
            return True
        loop = QEventLoop()
        poll = _Timer()
        poll.timeout.connect(lambda: loop.quit() if self.ready else None)
        poll.start(10)
        _Timer.singleShot(int(timeout * 1000), loop.quit)
        loop.exec()
        poll.stop()
        return self.ready

    def _show_case(self, token, result, error):
        """Swap the previous case's layers for this one (GUI thread, after a draw)."""
        if token is not self._token or self.session is None:
            return  # another case was asked for meanwhile, or the session ended
        self._worker = None
        session = self.session
        name = session.display_name(codes=self.show_codes)
        self._attach_docks()
        self._loading = True
        try:
            self._retire_case()
            self._views = {}
            self.view = None
            self._unreadable = set()
            self._had_work = False
            if error is not None:  # the worker itself failed (each image's error is in result)
                result = dict.fromkeys(("muscle", "spine"), error)
            result = dict(result or {})
            if "spine" in session.measure_sets:
                self._show_sagittal(name, result.get("spine"))
            if "muscle" in session.measure_sets:
                self._show_axial(name, result.get("muscle"))
            views = [v for v in session.measure_sets if self._view_image(v) is not None]
            if views:
                self.show_view(views[0], remember=False)
        finally:
            self._loading = False
            session.start_clock()
            self._update_enabled()
            # ready once the previous case's layers are gone (they go after the next draw);
            # the labels are filled then too: their relayout is not added to the stall of
            # the image layer's first draw
            self._after_draw(lambda: self._set_ready(token))

    def _add_case_image(self, name, loaded):
        data, kwargs = loaded
        meta = dict(kwargs["metadata"]["napari_pvm"])
        meta.pop("source", None)  # the file path may carry the patient ID
        kwargs = dict(kwargs, name=name, metadata={"napari_pvm": meta, "napari_pvm_session": True})
        return self.viewer.add_image(data, **kwargs)

    def _cannot_open(self, name, error):
        message = str(error) if isinstance(error, (PvmError, OSError)) else repr(error)
        self._say(f"case {name}: the image cannot be opened ({message}); skip it with a reason", "error")

    def _show_axial(self, name, loaded):
        """The case's axial image in the Measure dock, with the observer's own outlines."""
        session, case, dock = self.session, self.session.current, self.measure
        if isinstance(loaded, BaseException) or loaded is None:
            self._cannot_open(name, loaded)
            return
        self.image_layer = self._add_case_image(name, loaded)
        dock.image_combo.setCurrentText(self.image_layer.name)
        dock.patient_edit.setText(case.patient_id)
        dock.level_combo.setCurrentText(case.level or "L4")
        if case.slice_index and int(case.slice_index) < loaded[0].shape[0]:
            self._show_slice(int(case.slice_index))
        path = session.own_annotation()
        if path is not None:
            if not dock.load_annotation(path):
                self._unreadable.add("muscle")
                self._say(f"case {name}: your saved outlines could not be loaded", "error")
            else:
                self._had_work = self._has_work()  # removing them all in this visit is then saved
                if dock.slice_index is not None and self.image_layer.ndim == 3:
                    self._show_slice(dock.slice_index)  # by world position: a sagittal series may share the viewer
        for layer in self._case_layers():
            self._watch(layer)
        self._set_up_proposals(dock)
        self._views["muscle"] = (tuple(self.viewer.dims.point), None)

    def _show_sagittal(self, name, loaded):
        """The case's sagittal image in the Spine dock, with the observer's own
        spine annotation; or why the spine measures cannot be made."""
        session, dock = self.session, self.spine
        self._spine_problem = None
        spine_only = "muscle" not in session.measure_sets
        if not session.spine_image():
            self._spine_problem = "the worklist gives no sagittal image for this case (column sagittal_image)"
        elif isinstance(loaded, BaseException) or loaded is None:
            message = str(loaded) if isinstance(loaded, (PvmError, OSError)) else repr(loaded)
            self._spine_problem = f"its sagittal image cannot be opened ({message})"
        elif loaded[1]["metadata"]["napari_pvm"].get("plane") != "sagittal":
            self._spine_problem = "the image given for the spine measures is not a sagittal series"
        if self._spine_problem:
            self._say(f"case {name}: {self._spine_problem}; skip the case with a reason (Ctrl-K)", "error")
            return
        self.sagittal_layer = self._add_case_image(name if spine_only else f"{name} sagittal", loaded)
        layer = self.sagittal_layer
        dock.image_combo.setCurrentText(layer.name)
        dock.patient_edit.setText(session.current_id)
        path = session.own_spine_annotation()
        loaded_ok = False
        if path is not None:
            try:
                loaded_ok = dock.load_annotation(path, start=True)  # Ctrl-Z then never wipes it
            except PvmError:
                loaded_ok = False
            if not loaded_ok:
                self._unreadable.add("spine")
                self._say(f"case {name}: your saved spine annotation could not be loaded", "error")
        if not loaded_ok and layer.ndim == 3:
            show_data_slice(self.viewer, layer, layer.data.shape[0] // 2)  # start in the middle of the stack
        row_id, sha = session.row_id(measure_set="spine"), self._spine_sha()
        if loaded_ok and row_id and sha and session.row_is_current(sha, measure_set="spine"):
            dock.remember_row(row_id, str(session.study.spine_csv))  # Ctrl-Enter again asks before a second row
        self._views["spine"] = (tuple(self.viewer.dims.point), None)

    # ------------------------------------------------------------- views
    def _view_image(self, view):
        return {"muscle": self.image_layer, "spine": self.sagittal_layer}.get(view)

    def switch_view(self):
        """Show the case's other image (axial for the muscle, sagittal for the
        spine measures) in a study that has both; returns the view shown."""
        if self.session is None or len(self.session.measure_sets) < 2:
            return self.view
        return self.show_view("spine" if self.view == "muscle" else "muscle")

    def show_view(self, view, *, remember=True):
        """Show the case's image of measure set ``view`` ("muscle": the axial
        image and its outlines; "spine": the sagittal image and its ROIs and
        lines) and hide the other; each keeps its slice and zoom. Layers are
        hidden, never removed, so nothing is swapped while a draw is pending."""
        target = self._view_image(view)
        if target is None:
            if view == "spine" and self._spine_problem:
                self._say(f"no sagittal image: {self._spine_problem}; skip the case with a reason (Ctrl-K)", "warning")
            self._update_enabled()
            return self.view
        if view == self.view:
            return view
        # a shape half drawn on the image about to be hidden is dropped, not finished at the cursor
        shown = self.spine if self.view == "spine" else self.measure if self.view == "muscle" else None
        cancel = getattr(shown, "cancel_drawing", None)
        if cancel is not None and _alive(shown):
            cancel()
        camera = _camera(self.viewer)
        if remember and self.view is not None:
            self._views[self.view] = (tuple(self.viewer.dims.point), (tuple(camera.center), camera.zoom))
        self.view = view
        for other in ("muscle", "spine"):
            image = self._view_image(other)
            if image is None:
                continue
            for layer in [image, *_layers.owned_layers(self.viewer, image)]:
                if layer.visible != (other == view):
                    layer.visible = other == view
        point, placed = self._views.get(view, (None, None))
        if point is not None and len(point) == self.viewer.dims.ndim:
            self.viewer.dims.set_point(range(len(point)), point)
        if placed is not None:
            camera.center, camera.zoom = placed
        elif len(self.session.measure_sets) > 1:  # one image per case: the zoom stays from case to case
            self.viewer.fit_to_view(layers=[target])
        dock = self.spine if view == "spine" else self.measure
        if dock is not None and _alive(dock):
            _raise_dock(dock)
        # the active layer is one of the image shown: clicks never draw on a hidden layer
        if view == "spine":
            active = dock.layer if dock is not None and dock.layer is not None else target
        else:
            active = _layers.outline_layer(self.viewer, target, create=False) or target
        self.viewer.layers.selection.active = active
        self._update_enabled()
        return view

    def _on_active_layer(self, event=None):
        """A layer of the hidden image became active (a part chosen in the
        other dock, a layer picked in the layer list): show that image, so
        that nothing is drawn on an image the observer does not see."""
        if self.session is None or self._loading or self.view is None or len(self.session.measure_sets) < 2:
            return
        active = self.viewer.layers.selection.active
        if active is None:
            return
        for view in ("muscle", "spine"):
            image = self._view_image(view)
            if view != self.view and image is not None and (_same(active, image) or _layers.belongs_to(active, image)):
                self.show_view(view)
                self.viewer.layers.selection.active = active  # the layer chosen (e.g. samples), not the default
                return

    def _view_guard(self, view, refusal):
        """A dock's ``view_guard`` hook: it raises ``refusal`` unless ``view``
        ("muscle" or "spine") is the image shown, because a dock's Mark button
        marks the slice the viewer shows."""

        def guard():
            if self.session is not None and len(self.session.measure_sets) > 1 and self.view != view:
                raise PvmError(refusal)

        return guard

    def _set_ready(self, token):
        if token is not self._token:
            return
        self._update_labels()
        self.ready = True
        self._update_enabled()

    def _after_draw(self, callback):
        """Run ``callback`` from the event loop once the canvas has finished a
        draw (or after a short wait when nothing is drawn, e.g. a hidden
        window): layers are never removed or replaced while a draw is pending."""
        canvas = _scene_canvas(self.viewer)
        state = {"done": False}

        def fire(*_):
            if state["done"]:
                return
            state["done"] = True
            if canvas is not None:
                try:
                    canvas.events.draw.disconnect(fire)
                except (RuntimeError, ValueError, TypeError):
                    pass
            QTimer.singleShot(0, callback)

        if canvas is None or not canvas.native.isVisible():
            fire()
            return
        canvas.events.draw.connect(fire, position="last")
        canvas.update()
        QTimer.singleShot(_DRAW_WAIT_MS, fire)

    def _retire_case(self):
        """Take the current case off the screen without removing a layer
        while a draw is pending: the Measure and Spine docks forget the case
        (a shape being drawn is cancelled), the outline, sample and spine
        shapes are emptied now, and the layers themselves are removed after
        the canvas has drawn that (images last).

        Removing Shapes layers that still held outlines crashed software
        OpenGL (Mesa) in vispy's glDrawArrays: napari redraws the canvas
        synchronously in the middle of a layer removal (its dimension
        sliders change), drawing the half-removed Shapes visual.
        """
        old = self._case_layers()
        if self.measure is not None and _alive(self.measure):
            _reset_measure(self.measure, "")
        if self.spine is not None and _alive(self.spine):
            self.spine.reset_case()
        for layer in old:
            if layer._type_string == "shapes" and len(layer.data):
                layer.selected_data = set(range(len(layer.data)))
                layer.remove_selected()
        for image in (self.image_layer, self.sagittal_layer):
            if image is not None and any(_same(image, layer) for layer in old):
                image.name = f"{image.name} (closing)"  # its name is free for the next case at once
                image.visible = False
        self.image_layer = self.sagittal_layer = None
        self._spine_problem = None
        if old:
            self._after_draw(lambda: self._remove_layers(old))
        return old

    def _remove_layers(self, layers):
        """Remove the layers of a case, the image last: while the image is
        still there the viewer's dimensions do not change, so napari does not
        redraw the canvas in the middle of a removal."""
        image = [layer for layer in layers if _is_session_image(layer)]
        # one batch: napari then collects garbage and rebuilds its scene graph once,
        # not once per layer (each costs a full gc.collect on the GUI thread)
        with self.viewer.layers.batched_update():
            for layer in [x for x in layers if x not in image] + image:
                if layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)

    def _show_slice(self, index):
        """Show axial slice ``index`` (by world position: a sagittal series
        of other spacing may share the viewer)."""
        show_data_slice(self.viewer, self.image_layer, index)

    def _case_layers(self):
        images = [x for x in (self.image_layer, self.sagittal_layer) if x is not None]
        return [
            layer
            for layer in self.viewer.layers
            if any(_same(layer, image) or _layers.belongs_to(layer, image) for image in images)
        ]

    def _clear_case(self):
        self._retire_case()

    def _image_shown(self):
        """Whether the case's axial image is in the viewer."""
        image = self.image_layer
        return image is not None and any(_same(layer, image) for layer in self.viewer.layers)

    def _has_work(self):
        if not self._image_shown():
            return False
        image = self.image_layer
        outlines = _layers.outline_layer(self.viewer, image, create=False)
        samples = _layers.sample_layer(self.viewer, image, create=False)
        paint = _layers.paint_layer(self.viewer, image, create=False)
        return bool(
            (outlines is not None and len(outlines.data))
            or (samples is not None and len(samples.data))
            or (paint is not None and paint.data.any())
        )

    def _cleared(self):
        """Whether the observer removed, during this visit, the last outline or
        sample of a case whose file holds some: the empty state is saved then
        (else the removed outlines came back on the next visit). Not when the
        image is not shown or the saved file could not be read (never
        overwritten)."""
        if not self._image_shown():
            return False
        if not self._had_work or "muscle" in self._unreadable or self.session.own_annotation() is None:
            return False
        return self.session.saved_outlines() > 0

    def _save_current(self, quiet=False, spine=True):
        """Save the current outlines (and, with ``spine``, the spine drawing)
        into the observer's own files.

        Returns ``(ok, number_of_outlines)``; nothing to save is ok.
        """
        if spine and not self._save_spine(quiet=quiet):
            return False, 0
        if self.session is None or not self.ready:
            return True, 0
        if self._has_work():
            self._had_work = True
        elif not self._cleared():
            return True, 0
        dock = self.measure
        try:
            if not _same(dock.image, self.image_layer):
                dock.image_combo.setCurrentText(self.image_layer.name)
            annotation = _current_annotation(dock)
            self.session.save_annotation(annotation)
        except (PvmError, OSError) as exc:
            self.status_label.setText(self._mask(f"not saved: {exc}"))
            if not quiet:
                self._say(f"the outlines of this case could not be saved: {exc}", "error")
            return False, 0
        self.status_label.setText(f"saved {datetime.now():%H:%M:%S}")
        return True, len(annotation.rois)

    def _save_spine(self, quiet=False):
        """Save the Spine dock's drawing of this case into the observer's own
        spine file (once its slice is marked); False when that was refused."""
        session = self.session
        if session is None or not self.ready or self._loading:
            return True
        annotation = self._spine_annotation()
        if annotation is None:
            return True
        drawn = annotation.get("vertebrae") or annotation.get("csf") or annotation.get("excluded")
        lines = annotation.get("angles") or annotation.get("unpaired_line")
        if not (drawn or lines or session.own_spine_annotation()):
            return True  # a slice marked and nothing drawn: nothing to keep yet
        try:
            session.save_spine_annotation(annotation)
        except (PvmError, OSError) as exc:
            self.status_label.setText(self._mask(f"not saved: {exc}"))
            if not quiet:
                self._say(f"the spine drawing of this case could not be saved: {exc}", "error")
            return False
        self.status_label.setText(f"saved {datetime.now():%H:%M:%S}")
        return True

    def _on_spine_changed(self):
        if self._loading or self.session is None:
            return
        self._save_spine(quiet=True)
        self._update_labels()

    # ------------------------------------------------------ live saving
    def _on_layer_inserted(self, event):
        if self.session is not None and not self._loading:
            self._watch(event.value)

    def _watch(self, layer):
        image = self.image_layer
        kind = _layers.layer_role(layer)
        if image is None or kind not in _WATCHED or not _layers.belongs_to(layer, image):
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
        self._save_current(quiet=True, spine=False)  # the spine file is saved by its own edits
        self._update_labels()

    # ------------------------------------------------------ rows
    def _on_spine_row_added(self, row):
        """The Spine dock stored a row in the spine CSV: record it for the current case."""
        session = self.session
        if session is None or not self.ready or self.sagittal_layer is None:
            return
        try:
            row_id = session.record_row(dict(row), annotation_sha256=self._spine_sha(), measure_set="spine")
        except PvmError as exc:
            self._say(f"the spine row was not recorded for this case: {exc}", "warning")
            return
        self._save_spine(quiet=True)
        self.status_label.setText(f"spine row {row_id} added {datetime.now():%H:%M:%S}")
        self._update_labels()

    def _on_row_added(self, row):
        """The Measure dock stored a row: record it for the current case."""
        session = self.session
        if session is None or not self.ready or self.image_layer is None:
            return
        try:
            row_id = session.record_row(dict(row), annotation_sha256=self._annotation_sha())
        except PvmError as exc:
            self._say(f"the row was not recorded for this case: {exc}", "warning")
            return
        self.status_label.setText(f"row {row_id} added {datetime.now():%H:%M:%S}")
        self._update_labels()

    # ------------------------------------------------------ proposals
    def _set_up_proposals(self, dock):
        """Proposals only when study.json allows them, with examples from this
        observer's own finished cases of this session (never this patient)."""
        try:
            allowed = self.session.settings.proposals
        except PvmError as exc:
            self._say(str(exc), "error")
            allowed = False
        if not allowed:
            dock.example_provider = None
            _allow_proposals(dock, False)
            return
        _allow_proposals(dock, True)
        dock.example_provider = self._example_annotations
        self._prefetch_examples()

    def _prefetch_examples(self):
        """Read the examples for this case in a worker (images are read from disk)."""
        from napari.qt.threading import create_worker

        token, session = self._token, self.session
        worker = create_worker(session.example_annotations, _start_thread=False, _ignore_errors=True)

        def keep(examples):
            if token is self._token:
                self._examples = examples

        worker.returned.connect(keep)
        worker.start()

    def _example_annotations(self):
        """Examples for the Measure dock's proposals (prefetched when possible)."""
        if self.session is None:
            return []
        if self._examples is None:
            self._examples = self.session.example_annotations()
        return list(self._examples)

    # ----------------------------------------------------- docks
    def _attach_docks(self):
        """Find or dock the docks the study's measure sets need and fill them."""
        sets = self.session.measure_sets
        if "muscle" in sets:
            self._attach_measure()
        if "spine" in sets:
            self._attach_spine()
            self._route_keys()

    def _route_keys(self):
        """The keys of :data:`_ROUTES` go to the dock of the image shown
        (both docks bind some of them on the viewer; the later binding would
        otherwise win whatever is on screen)."""

        def route(key):
            def run(_viewer):
                spine = self.view == "spine"
                dock = self.spine if spine else self.measure
                action = _ROUTES[key][1 if spine else 0]
                if action is None:
                    other = "the axial image (muscle)" if spine else "the sagittal image (spine)"
                    if self.session is not None and len(self.session.measure_sets) > 1:
                        self._say(f"{key} works on {other}: show it first (Ctrl-J)", "info")
                    return
                if dock is None or not _alive(dock):
                    return
                _run_dock_action(dock, action)

            return run

        for key in _ROUTES:
            self.viewer.bind_key(key, route(key), overwrite=True)

    def _attach_spine(self):
        """Find or dock the Spine measures widget and fill it for this session."""
        dock = self.spine if self.spine is not None and _alive(self.spine) else _find_spine(self.viewer, self.measure)
        if dock is not self.spine:
            dock.row_added.connect(self._on_spine_row_added)
            dock.changed.connect(self._on_spine_changed)
        self.spine = dock
        _lock_case_fields(dock, self.session, self.session.study.spine_csv, hide_patient=self.show_codes)
        dock.path_guard = self._guard_spine_path
        dock.view_guard = self._view_guard(
            "spine", "the mid-sagittal slice is marked on the sagittal image: show it first (Ctrl-J)"
        )
        if self._spine_notify is None:
            self._spine_notify = dock.notify
            dock.notify = lambda message, level="info": self._spine_notify(self._mask(message), level)
        return dock

    def _release_spine(self):
        dock = self.spine
        self.spine = None
        if dock is None or not _alive(dock):
            self._spine_notify = None
            return
        for signal, slot in ((dock.row_added, self._on_spine_row_added), (dock.changed, self._on_spine_changed)):
            try:
                signal.disconnect(slot)
            except (RuntimeError, ValueError, TypeError):
                pass
        _unlock_case_fields(dock)
        dock.path_guard = None
        dock.view_guard = None
        if self._spine_notify is not None:
            dock.notify = self._spine_notify
            self._spine_notify = None

    def _guard_spine_path(self, path, mode):
        """The Spine dock's ``path_guard`` (:meth:`_guard_path` for spine drawings)."""
        self._guard_path(path, mode, "spine")

    def _attach_measure(self):
        """Find or dock the Measure widget and fill it for this session."""
        dock = self.measure if self.measure is not None and _alive(self.measure) else _find_measure(self.viewer)
        if dock is not self.measure:
            signal = getattr(dock, "row_added", None)
            if signal is not None:
                signal.connect(self._on_row_added)
        self.measure = dock
        session = self.session
        _lock_case_fields(dock, session, session.study.measurements_csv, hide_patient=self.show_codes)
        if hasattr(dock, "path_guard"):  # the dock's own Save/Load… buttons obey the session too
            dock.path_guard = self._guard_path
        if hasattr(dock, "view_guard") and "spine" in session.measure_sets:
            dock.view_guard = self._view_guard(
                "muscle", "the level is marked on the axial image: show it first (Ctrl-J)"
            )
        if self._dock_notify is None:
            self._dock_notify = dock.notify
            dock.notify = lambda message, level="info": self._dock_notify(self._mask(message), level)
        return dock

    def _release_measure(self):
        dock = self.measure
        if dock is None or not _alive(dock):
            self.measure = None
            return
        signal = getattr(dock, "row_added", None)
        if signal is not None:
            try:
                signal.disconnect(self._on_row_added)
            except (RuntimeError, ValueError, TypeError):
                pass
        _unlock_case_fields(dock)
        if hasattr(dock, "path_guard"):
            dock.path_guard = None
        if hasattr(dock, "view_guard"):
            dock.view_guard = None
        if hasattr(dock, "example_provider"):
            dock.example_provider = None
        _allow_proposals(dock, True)
        if self._dock_notify is not None:
            dock.notify = self._dock_notify
            self._dock_notify = None
        self.measure = None

    def _guard_path(self, path, mode, measure_set="muscle"):
        """Raise unless a dock may ``mode`` ("load" / "save" / "append" a row
        to) ``path``: the Measure dock's ``path_guard`` (the Spine dock's with
        ``measure_set="spine"``)."""
        session = self.session
        if session is None:
            return
        if mode == "append":
            session.check_current()  # a window another one took the session from adds no row
        elif mode == "load":
            session.check_readable(path, measure_set)
        else:
            session.check_writable(path, measure_set)  # never over the other drawing, another case or session

    def _say(self, message, level="info"):
        self.notify(self._mask(message), level)

    def _mask(self, message):
        """Keep a message blind: no image path or file name, and with study
        codes the current patient's study code instead of the ID."""
        message = str(message)
        if self.session is None:
            return message
        case = self.session.current
        for path in (case.image, case.sagittal_image):
            if not path:
                continue
            message = message.replace(path, "<image>")
            name = os.path.basename(path.rstrip("/\\"))
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
        elif state != "done":
            added = [m for m in session.measure_sets if session.row_id(measure_set=m) is not None]
            if added and session.measure_sets == ("muscle",):
                text += "; row added"
            elif added:
                text += f"; {' and '.join(added)} row added"
        if self._spine_problem:
            text += "; no sagittal image"
        self.case_label.setText(text)
        self.progress_label.setText(self._summary())
        self.progress.setRange(0, max(counts["total"], 1))
        self.progress.setValue(counts["done"] + counts["skipped"])

    # ----------------------------------------------------------- dialogs
    def _ask_reason(self):
        text, ok = QInputDialog.getText(self, "Skip case", "Reason for skipping this case:")
        return text.strip() if ok else None

    def _ask_unfinished(self, why):
        """Ask what to do with a case that has no (current) row:
        "measure", "skip", "leave" or None (stay)."""
        box = QMessageBox(self)
        box.setWindowTitle("Case not finished")
        rows = "its row is" if len(self.session.measure_sets) == 1 else "its rows are"
        box.setText(f"{why} A case is done only when {rows} in the shared CSV{'s' * (rows != 'its row is')}.")
        measure = box.addButton("Measure and add the row", QMessageBox.ButtonRole.AcceptRole)
        skip = box.addButton("Skip with a reason…", QMessageBox.ButtonRole.DestructiveRole)
        leave = box.addButton("Leave unfinished", QMessageBox.ButtonRole.RejectRole)
        stay = box.addButton("Stay", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(measure)
        box.setEscapeButton(stay)
        box.exec()
        return {measure: "measure", skip: "skip", leave: "leave"}.get(box.clickedButton())


def _current_annotation(dock):
    """The Measure dock's case as an Annotation (older docks return it from ``annotation()``)."""
    current = getattr(dock, "current_annotation", None)
    return current() if callable(current) else dock.annotation()


def _run_dock_action(dock, action):
    """Run a dock's key action; a refusal was shown by the dock."""
    try:
        if action == "mark_level":
            dock.mark_level(dock.level_combo.currentText())
        else:
            getattr(dock, action)()
    except PvmError:
        pass


def _bind_dock_keys(viewer, measure, spine):
    """After a session: each routed key acts on its own dock again, as the
    docks bind them themselves (nothing when that dock is gone)."""

    def bind(dock, action):
        def run(_viewer):
            if dock is not None and action is not None and _alive(dock):
                _run_dock_action(dock, action)

        return run

    for key, (measure_action, spine_action) in _ROUTES.items():
        dock, action = (measure, measure_action) if measure_action else (spine, spine_action)
        viewer.bind_key(key, bind(dock, action), overwrite=True)


def _find_spine(viewer, beside=None):
    """The docked Spine measures widget, docking one (tabbed with ``beside``,
    the Measure dock, when there is one) when there is none."""
    from .spine_widget import SpineWidget

    window = viewer.window
    for widget in getattr(window, "dock_widgets", {}).values():
        if isinstance(widget, SpineWidget):
            return widget
    widget = SpineWidget(viewer)
    window.add_dock_widget(widget, name="Spine measures (napari-pvm)", area="right", tabify=beside is not None)
    return widget


def _raise_dock(widget):
    """Bring the dock holding ``widget`` to the front (it may share a tab bar)."""
    dock = widget.parentWidget()
    while dock is not None and not dock.inherits("QDockWidget"):
        dock = dock.parentWidget()
    if dock is not None:
        dock.show()
        dock.raise_()


def _case_fields(dock):
    return (dock.patient_edit, dock.observer_edit, dock.session_edit, dock.csv_edit)


def _lock_case_fields(dock, session, csv_path, *, hide_patient):
    """Fill a Measure or Spine dock's case fields from the session and lock
    them, with its image list: the session chooses the case's image."""
    dock.observer_edit.setText(session.observer_id)
    dock.session_edit.setText(session.session)
    dock.csv_edit.setText(str(csv_path))
    for edit in _case_fields(dock):
        edit.setReadOnly(True)
    if hide_patient:
        dock.patient_edit.setEchoMode(QLineEdit.EchoMode.Password)
    dock.image_combo.setEnabled(False)


def _unlock_case_fields(dock):
    """Give a dock its case fields and image list back when the session ends."""
    for edit in _case_fields(dock):
        edit.setReadOnly(False)
    dock.patient_edit.setEchoMode(QLineEdit.EchoMode.Normal)
    dock.image_combo.setEnabled(True)


def _allow_proposals(dock, allowed):
    """Enable or disable the Measure dock's propose action for this session."""
    if not allowed:
        dock.proposals_off_reason = 'Outline proposals are off in this study (study.json has no "proposals": true)'
    dock.proposals_allowed = allowed


def _camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9)."""
    scene = getattr(viewer, "scene", None)
    return getattr(scene, "camera", None) or viewer.camera


def _scene_canvas(viewer):
    """vispy's SceneCanvas of the viewer (None without a window)."""
    try:
        return _unwrap(viewer).window._qt_viewer.canvas._scene_canvas
    except AttributeError:
        return None


def _is_session_image(layer):
    return bool(layer.metadata.get("napari_pvm_session"))


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
