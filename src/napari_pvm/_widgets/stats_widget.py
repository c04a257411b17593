"""Statistics dock: Table 2, Table 3, ROC, reliability and box plots of a cohort.

The dock only gathers the choices and shows the result: the analysis is
:func:`napari_pvm.core.stats.analyse` (the same call as ``napari-pvm stats``)
run in a worker thread, the tables are the rows of
:mod:`napari_pvm.core.stats.report`, the figures are
:mod:`napari_pvm.core.stats.plots` drawn on canvases in the colours of
napari's theme. The measurements are a muscle table and, optionally, a spine
table; the session box picks the reading (default read1). With measurements
and no clinical table, Run gives the inter-observer reliability alone. Export
writes every table and every figure in a worker, with progress.
"""

import logging
import re
from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import PvmError
from ._stats_results import ResultsPanel
from ._stats_views import VariableGrid

__all__ = ["StatsWidget"]

_log = logging.getLogger(__name__)
_AUTO = "(auto: 1 / yes / true)"
#: How the core's command-line wording reads in the dock.
_GUI_WORDS = (
    (
        re.compile(r"say which one is the event with --event VALUE \(event=\.\.\. in Python\)"),
        "choose the event value in the Event box",
    ),
    (re.compile(r"choose one with --level"), "choose one in the Level box"),
    (re.compile(r"choose one with --session"), "choose one in the Session box"),
    (re.compile(r"--event "), "the event value "),
    (re.compile(r"--(outcome|continuous|categorical|logistic|roc|reference|level|session): "), r"\1: "),
)


def gui_message(text):
    """A core error message with its command-line flags put in the dock's words."""
    for pattern, words in _GUI_WORDS:
        text = pattern.sub(words, text)
    return text


class StatsWidget(QWidget):
    """Compare outcome groups, fit the logistic model, ROC and reliability.

    Parameters
    ----------
    napari_viewer : napari.Viewer

    Attributes
    ----------
    grid : VariableGrid
        Per column of the table: Table 2 type, logistic, ROC.
    results : ResultsPanel
        The tabs; ``results.result`` is the last
        :class:`~napari_pvm.core.stats.StatsResult` (None before Run or after
        an error), ``results.reliability`` the reliability table shown.
    notify : callable
        ``notify(message, level)`` with level "info", "warning" or "error";
        napari notifications by default (tests replace it).
    ask_directory : callable
        ``ask_directory() -> str`` for Export… (tests replace it).
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.table = None  # the clinical table as loaded (text)
        self.rows = None  # the measurement rows as loaded
        self.spine_rows = None  # the spine-table rows as loaded
        self._paths = ["", "", ""]  # of the table, the measurements and the spine table loaded
        self._worker = None
        self.notify = _notify
        self.ask_directory = self._ask_directory
        self._build()
        self._fill_observers([], [])
        self._clear_results("Choose a clinical table (and/or a measurements CSV), then Run.")
        self._update_enabled()

    # ------------------------------------------------------------ layout
    def _build(self):
        self.table_edit = QLineEdit()
        self.table_edit.setPlaceholderText("per-patient table (.csv, .tsv, .xlsx)")
        self.table_edit.editingFinished.connect(self._on_table_edited)
        self.meas_edit = QLineEdit()
        self.meas_edit.setPlaceholderText("optional: shared measurements CSV")
        self.meas_edit.editingFinished.connect(self._on_measurements_edited)
        self.spine_edit = QLineEdit()
        self.spine_edit.setPlaceholderText("optional: shared spine CSV (VBQ, kyphotic angle)")
        self.spine_edit.editingFinished.connect(self._on_spine_edited)
        self.observer_combo = QComboBox()
        self.session_combo = QComboBox()
        self.session_combo.setToolTip("The reading used (default read1): a repeat reading never replaces the first")
        self.session_combo.currentIndexChanged.connect(lambda *_: self._refresh_variables())
        self.flagged_check = QCheckBox("leave out rows with quality flags")
        self.flagged_check.setToolTip(
            "Rows whose qc_flags is not empty are left out after the latest row of each reading is chosen "
            "(an older row never takes their place); the report says how many"
        )
        self.flagged_check.toggled.connect(lambda *_: self._refresh_variables())
        self.level_combo = QComboBox()
        self.level_combo.currentIndexChanged.connect(lambda *_: self._refresh_variables())
        self.outcome_combo = QComboBox()
        self.outcome_combo.currentIndexChanged.connect(lambda *_: self._on_outcome())
        self.event_combo = QComboBox()
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("filter variables")
        self.grid = VariableGrid()
        self.filter_edit.textChanged.connect(self.grid.apply_filter)
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(lambda: self.run())
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip(
            "Every table as CSV, every figure as PNG, results.json, report.html and report.txt "
            "(written in the background, with progress)"
        )
        self.export_button.clicked.connect(lambda: self.export())
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(8)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("table", _with_browse(self.table_edit, self._browse_table))
        form.addRow("measurements", _with_browse(self.meas_edit, self._browse_measurements))
        form.addRow("spine table", _with_browse(self.spine_edit, self._browse_spine))
        pair = QHBoxLayout()
        pair.addWidget(self.observer_combo, 1)
        pair.addWidget(QLabel("level"))
        pair.addWidget(self.level_combo)
        form.addRow("observer", pair)
        reading = QHBoxLayout()
        reading.addWidget(self.session_combo, 1)
        reading.addWidget(self.flagged_check)
        form.addRow("session", reading)
        outcome = QHBoxLayout()
        outcome.addWidget(self.outcome_combo, 1)
        outcome.addWidget(QLabel("event"))
        outcome.addWidget(self.event_combo, 1)
        form.addRow("outcome", outcome)
        inputs = QWidget()
        top = QVBoxLayout(inputs)
        top.setContentsMargins(0, 0, 0, 0)
        top.addLayout(form)
        top.addWidget(self.filter_edit)
        top.addWidget(self.grid, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.export_button)
        top.addLayout(buttons)
        top.addWidget(self.progress)
        top.addWidget(self.status_label)
        self.inputs = inputs

        self.results = ResultsPanel(self.viewer)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(inputs)
        splitter.addWidget(self.results)
        splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    # ------------------------------------------------------------- input
    def _browse_table(self):
        path, _ = QFileDialog.getOpenFileName(
            self, "Clinical table", self.table_edit.text(), "Tables (*.csv *.tsv *.txt *.xlsx *.xls)"
        )
        if path:
            self.load_table(path)

    def _browse_measurements(self):
        path, _ = QFileDialog.getOpenFileName(self, "Shared measurements CSV", self.meas_edit.text(), "CSV (*.csv)")
        if path:
            self.load_measurements(path)

    def _browse_spine(self):
        path, _ = QFileDialog.getOpenFileName(self, "Shared spine CSV", self.spine_edit.text(), "CSV (*.csv)")
        if path:
            self.load_spine(path)

    def _on_spine_edited(self):
        if self.spine_edit.text().strip() != self._paths[2]:
            self.load_spine(self.spine_edit.text())

    def _on_table_edited(self):
        if self.table_edit.text().strip() != self._paths[0]:
            self.load_table(self.table_edit.text())

    def _on_measurements_edited(self):
        if self.meas_edit.text().strip() != self._paths[1]:
            self.load_measurements(self.meas_edit.text())

    def load_table(self, path):
        """Read the per-patient table and list its columns; False (and a notification) on bad input."""
        from ..core.stats.input import load_table

        path = str(path or "").strip()
        self.table_edit.setText(path)
        self._paths[0] = path
        if not path:
            self.table = None
        else:
            try:
                self.table = load_table(path)
            except (PvmError, OSError) as exc:
                self.table = None
                self.notify(f"cannot read the table: {exc}", "warning")
        self._fill_outcomes()
        self._refresh_variables()
        self._update_enabled()
        return self.table is not None or not path

    def load_measurements(self, path):
        """Read the shared measurements CSV (observers, levels, sessions); None clears it."""
        self.rows = self._load_rows(path, self.meas_edit, 1, "the measurements")
        return self.rows is not None or not str(path or "").strip()

    def load_spine(self, path):
        """Read the shared spine CSV (contract 8) to merge with the muscle table; None clears it."""
        self.spine_rows = self._load_rows(path, self.spine_edit, 2, "the spine table")
        return self.spine_rows is not None or not str(path or "").strip()

    def _load_rows(self, path, edit, slot, what):
        """Rows of a shared CSV (None when empty or unreadable, with a notification); refresh the choices."""
        from ..core.stats.input import read_measurements

        path = str(path or "").strip()
        edit.setText(path)
        self._paths[slot] = path
        rows = None
        if path:
            try:
                rows = read_measurements(path)
            except (PvmError, OSError) as exc:
                self.notify(f"cannot read {what}: {exc}", "warning")
        if slot == 1:
            self.rows = rows
        else:
            self.spine_rows = rows
        self._fill_choices()
        self._refresh_variables()
        self._update_enabled()
        return rows

    @property
    def _measurement_frames(self):
        return [r for r in (self.rows, self.spine_rows) if r is not None]

    def _fill_choices(self):
        from ..core.schema import DEFAULT_SESSION

        frames = self._measurement_frames
        observers = sorted({str(v) for r in frames for v in r["observer_id"].dropna() if str(v)})
        levels = (
            sorted({str(v) for v in self.rows["level"].dropna()})
            if self.rows is not None and "level" in self.rows
            else []
        )
        sessions = sorted(
            {str(v) or DEFAULT_SESSION for r in frames if "session" in r for v in r["session"].fillna(DEFAULT_SESSION)}
        )
        self._fill_observers(observers, levels)
        self.session_combo.blockSignals(True)
        self.session_combo.clear()
        self.session_combo.addItems(sessions)
        if DEFAULT_SESSION in sessions:
            self.session_combo.setCurrentText(DEFAULT_SESSION)
        self.session_combo.blockSignals(False)
        self.session_combo.setEnabled(len(sessions) > 1)

    def _fill_observers(self, observers, levels):
        self.observer_combo.clear()
        self.observer_combo.addItem("mean of the observers", "mean")
        for o in observers:
            self.observer_combo.addItem(o, o)
        self.observer_combo.setEnabled(bool(observers))
        self.level_combo.blockSignals(True)
        self.level_combo.clear()
        self.level_combo.addItems(levels)
        self.level_combo.blockSignals(False)
        self.level_combo.setEnabled(len(levels) > 1)

    def _fill_outcomes(self):
        previous = self.outcome
        self.outcome_combo.blockSignals(True)
        self.outcome_combo.clear()
        if self.table is not None:
            columns = [c for c in self.table.columns if c != "patient_id"]
            self.outcome_combo.addItems(columns)
            binary = [c for c in columns if self.table[c].dropna().nunique() == 2]
            if previous in columns:  # the same table again: keep the choice
                self.outcome_combo.setCurrentText(previous)
            elif binary:  # a guess: the first two-valued column
                self.outcome_combo.setCurrentText(binary[0])
        self.outcome_combo.blockSignals(False)
        self._on_outcome(refresh=False)

    def _on_outcome(self, refresh=True):
        self.event_combo.clear()
        self.event_combo.addItem(_AUTO, None)
        outcome = self.outcome
        if self.table is not None and outcome:
            values = sorted({str(v) for v in self.table[outcome].dropna()})
            for v in values[:20]:
                self.event_combo.addItem(v, v)
        if refresh:
            self._refresh_variables()

    def _analysable_frame(self):
        """The table with the measure columns merged as the analysis will see them."""
        if self.table is None:
            return None
        if not self._measurement_frames:
            return self.table
        from ..core.stats.input import merge_measurements

        try:
            merged, _, _ = merge_measurements(
                self.table,
                self._measurement_frames,
                level=self.level,
                session=self.session,
                exclude_flagged=self.exclude_flagged,
            )
        except PvmError as exc:
            self.notify(f"measurements not merged: {gui_message(str(exc))}", "warning")
            return self.table
        return merged

    def _refresh_variables(self):
        from ..core.stats.input import detect_type

        frame = self._analysable_frame()
        variables, unusable = [], []
        if frame is not None:
            for name in frame.columns:
                if name in ("patient_id", self.outcome):
                    continue
                kind, reason = detect_type(frame[name])
                variables.append((name, kind, reason))
                if kind is None:
                    unusable.append(f"{name} ({reason})")
        self.grid.set_variables(variables)
        self.grid.apply_filter(self.filter_edit.text())
        if unusable:
            self.status_label.setText("Left out of Table 2 unless you choose a type: " + "; ".join(unusable))
        elif frame is not None:
            self.status_label.setText(f"{len(frame)} patients, {len(variables)} variables")

    @property
    def outcome(self):
        """The outcome column chosen ("" when none)."""
        return self.outcome_combo.currentText()

    @property
    def session(self):
        """The reading chosen, or None when the measurements hold one."""
        return self.session_combo.currentText() if self.session_combo.count() > 1 else None

    @property
    def exclude_flagged(self):
        """Whether rows with quality flags are left out."""
        return self.flagged_check.isChecked()

    @property
    def level(self):
        """The vertebral level chosen, or None when the measurements hold one level."""
        return self.level_combo.currentText() if self.level_combo.count() > 1 else None

    def analysis_kwargs(self):
        """The arguments of :func:`~napari_pvm.core.stats.analyse` the dock's choices give.

        Raises
        ------
        PvmError
            No table or outcome, or no variable chosen for Table 2.
        """
        if self.table is None:
            raise PvmError("choose the clinical table first")
        if not self.outcome:
            raise PvmError("choose the outcome column")
        chosen = self.grid.selection()
        if not chosen["continuous"] and not chosen["categorical"]:
            raise PvmError("choose at least one variable for Table 2 (continuous or categorical)")
        return {
            "table": self.table_edit.text().strip(),
            "outcome": self.outcome,
            "event": self.event_combo.currentData(),
            **chosen,
            "measurements": [
                e.text().strip()
                for e, r in ((self.meas_edit, self.rows), (self.spine_edit, self.spine_rows))
                if r is not None
            ]
            or None,
            "observer": self.observer_combo.currentData() or "mean",
            "level": self.level,
            "session": self.session,
            "exclude_flagged": self.exclude_flagged,
        }

    # --------------------------------------------------------------- run
    def run(self):
        """Analyse in a worker thread; returns the worker (None when the input is refused)."""
        from napari.qt.threading import create_worker

        if self._worker is not None:
            return None
        try:
            if self.table is None and self._measurement_frames:
                func, kwargs = (
                    _reliability_only,
                    {
                        "frames": self._measurement_frames,
                        "level": self.level,
                        "session": self.session,
                        "exclude_flagged": self.exclude_flagged,
                    },
                )
            else:
                from ..core.stats import analyse

                func, kwargs = analyse, self.analysis_kwargs()
        except PvmError as exc:
            self.notify(str(exc), "warning")
            return None
        self._clear_results("analysing…")
        self._set_running(True)
        from ..core.stats.analysis import STAGES

        steps = len(STAGES) + 1  # each stage as it starts, and "done"
        worker = create_worker(
            _steps, func, kwargs, _progress={"total": steps, "desc": "statistics"}, _ignore_errors=True
        )
        worker.yielded.connect(self._on_step)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()
        return worker

    def _set_running(self, running, text="analysing…"):
        self.inputs.setEnabled(not running)
        if running:
            self.progress.setRange(0, 0)  # busy until the first step
            self.status_label.setText(text)
        else:
            if self.progress.maximum() == 0:  # was busy: show "done"
                self.progress.setRange(0, 1)
            self.progress.setValue(self.progress.maximum())
        self._update_enabled()

    @property
    def result(self):
        """The last :class:`~napari_pvm.core.stats.StatsResult` shown, or None."""
        return self.results.result

    @property
    def reliability(self):
        """The reliability table shown, or None."""
        return self.results.reliability

    def _on_returned(self, result):
        if not hasattr(result, "outcome"):  # reliability of the measurements alone
            self.results.show_reliability(result)
            self.results.show_tab("Reliability")
            self.status_label.setText("reliability computed")
        else:
            self.results.show_result(result)
            n = len(result.warnings)
            self.status_label.setText(f"analysed {result.outcome['n']} patients" + (f"; {n} warning(s)" if n else ""))
            if n:
                self.notify(f"statistics: {n} warning(s), see the Warnings tab. First: {result.warnings[0]}", "warning")
        self._update_enabled()

    def _on_error(self, exc):
        if isinstance(exc, _Failed):
            exc = exc.__cause__
        if isinstance(exc, PvmError):
            message = gui_message(str(exc))
            self.notify(message, "warning")
        else:  # a bug: say so, log the traceback, never a dialog
            _log.error("statistics failed", exc_info=exc)
            message = f"statistics failed ({type(exc).__name__}: {exc})"
            self.notify(message, "error")
        self._clear_results(f"No result: {message}")
        self.status_label.setText(f"not analysed: {message}")

    def _on_finished(self):
        self._worker = None
        self._set_running(False)

    def _update_enabled(self, *_):
        idle = self._worker is None
        self.run_button.setEnabled(idle and (self.table is not None or bool(self._measurement_frames)))
        self.export_button.setEnabled(idle and self.results.has_result)

    def _clear_results(self, message):
        self.results.clear(message)
        self._update_enabled()

    # ------------------------------------------------------------ export
    def _ask_directory(self):
        return QFileDialog.getExistingDirectory(self, "Export the statistics to a folder")

    def export(self, out_dir=None, *, wait=False):
        """Write every table (CSV), every figure (PNG), results.json and the report, in a worker.

        The progress bar (and napari's activity panel) counts the figures and
        files; the GUI stays responsive.

        Parameters
        ----------
        out_dir : str or Path, optional
            Asked for when None.
        wait : bool, optional
            Wait (keeping the GUI responsive) and return the files written.

        Returns
        -------
        worker or list of Path
            The worker (None when nothing is to be written); with ``wait``,
            the files written (empty when nothing was written).
        """
        from napari.qt.threading import create_worker

        from ..core.stats.report import export_size

        result = self.result if self.result is not None else self.results.reliability_result
        if result is None or self._worker is not None:
            if result is None:
                self.notify("run the analysis before exporting", "warning")
            return [] if wait else None
        out_dir = out_dir or self.ask_directory()
        if not out_dir:
            return [] if wait else None
        out_dir = Path(out_dir)
        worker = create_worker(
            _export_steps,
            result,
            out_dir,
            _progress={"total": export_size(result), "desc": "export"},
            _ignore_errors=True,
        )
        written = []
        worker.yielded.connect(self._on_export_step)
        worker.returned.connect(
            lambda files: (
                written.extend(files or []),
                self.notify(f"wrote {len(files or [])} files to {out_dir}", "info"),
            )
        )
        worker.errored.connect(self._on_export_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._set_running(True, "exporting…")
        worker.start()
        if not wait:
            return worker
        from qtpy.QtCore import QCoreApplication, QEventLoop

        while self._worker is worker:
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        return written

    def _on_export_error(self, exc):
        if isinstance(exc, _Failed):
            exc = exc.__cause__
        if isinstance(exc, PvmError):
            self.notify(f"export failed: {gui_message(str(exc))}", "warning")
        else:  # a bug: say so, log the traceback, never a dialog
            _log.error("export failed", exc_info=exc)
            self.notify(f"export failed ({type(exc).__name__}: {exc})", "error")

    def _on_export_step(self, step):
        self._on_step(step, "exporting")

    def _on_step(self, step, verb="analysing"):
        done, total, what = step
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.status_label.setText(f"{verb}: {what} ({done}/{total})")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _reliability_only(frames, level, session, exclude_flagged, progress=None):
    """Worker: the inter-observer reliability of the measurements alone (muscle and spine tables)."""
    from ..core.stats import ReliabilityResult, inter_observer

    parts = []
    for i, rows in enumerate(frames):
        if progress is not None:
            progress(i, len(frames), "reliability")
        parts.append(inter_observer(rows, level=level, session=session, exclude_flagged=exclude_flagged))
    if progress is not None:
        progress(len(frames), len(frames), "done")
    return ReliabilityResult.concat(parts)


def _steps(func, kwargs):
    """Generator worker around ``func(progress=…)``: yields each ``(done, total, stage)``
    it reports (for the dock's bar and napari's activity panel) and returns its result.

    ``func`` runs in a helper thread of the worker thread, because a callback
    cannot yield from the worker's own frame.
    """
    import queue
    import threading

    steps, outcome = queue.SimpleQueue(), {}

    def target():
        try:
            outcome["result"] = func(progress=lambda *step: steps.put(step), **kwargs)
        except BaseException as exc:  # handed to the worker thread, which reports it
            outcome["error"] = exc
        finally:
            steps.put(None)

    threading.Thread(target=target, name="napari-pvm statistics", daemon=True).start()
    while (step := steps.get()) is not None:
        yield step
    error = outcome.get("error")
    if isinstance(error, RuntimeError):  # a generator worker takes a RuntimeError for an aborted thread
        raise _Failed(error) from error
    if error is not None:
        raise error
    return outcome["result"]


def _export_steps(result, out_dir):
    """Generator worker around :func:`~napari_pvm.core.stats.report.export_steps`;
    a RuntimeError inside is carried as :class:`_Failed` (see :func:`_steps`)."""
    from ..core.stats.report import export_steps

    try:
        return (yield from export_steps(result, out_dir))
    except RuntimeError as exc:
        raise _Failed(exc) from exc


class _Failed(Exception):
    """Carries an unexpected error of the worker to the dock (see :func:`_steps`)."""


def _with_browse(edit, browse):
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    button = QPushButton("…")
    button.setMaximumWidth(32)
    button.clicked.connect(browse)
    row.addWidget(button)
    return row


def _notify(message, level="info"):
    from napari.utils import notifications

    {"info": notifications.show_info, "warning": notifications.show_warning, "error": notifications.show_error}[level](
        message
    )
