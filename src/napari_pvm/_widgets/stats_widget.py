"""Statistics dock: Table 2, Table 3, ROC, reliability and box plots of a cohort.

The dock only gathers the choices and shows the result: the analysis is
:func:`napari_pvm.core.stats.analyse` (the same call as ``napari-pvm stats``)
run in a worker thread, the tables are the rows of :mod:`napari_pvm.core.report`,
the figures are :mod:`napari_pvm.core.plots` and
:func:`napari_pvm.core.reliability.bland_altman_plot` drawn on canvases in the
colours of napari's theme. With a measurements CSV and no clinical table, Run
gives the inter-observer reliability alone.
"""

import logging
import re
from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
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
    (re.compile(r"say which one is the event with --event VALUE \(event=\.\.\. in Python\)"),
     "choose the event value in the Event box"),
    (re.compile(r"choose one with --level"), "choose one in the Level box"),
    (re.compile(r"--event "), "the event value "),
    (re.compile(r"--(outcome|continuous|categorical|logistic|roc|reference|level): "), r"\1: "),
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
        self._paths = ["", ""]  # of the table and the measurements loaded
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
        self.observer_combo = QComboBox()
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
            "CSV tables, results.json and report.html, the figures shown as PNG (white background) "
            "and the reliability table"
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
        pair = QHBoxLayout()
        pair.addWidget(self.observer_combo, 1)
        pair.addWidget(QLabel("level"))
        pair.addWidget(self.level_combo)
        form.addRow("observer", pair)
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
        path, _ = QFileDialog.getOpenFileName(self, "Clinical table", self.table_edit.text(),
                                              "Tables (*.csv *.tsv *.txt *.xlsx *.xls)")
        if path:
            self.load_table(path)

    def _browse_measurements(self):
        path, _ = QFileDialog.getOpenFileName(self, "Shared measurements CSV", self.meas_edit.text(), "CSV (*.csv)")
        if path:
            self.load_measurements(path)

    def _on_table_edited(self):
        if self.table_edit.text().strip() != self._paths[0]:
            self.load_table(self.table_edit.text())

    def _on_measurements_edited(self):
        if self.meas_edit.text().strip() != self._paths[1]:
            self.load_measurements(self.meas_edit.text())

    def load_table(self, path):
        """Read the per-patient table and list its columns; False (and a notification) on bad input."""
        from ..core.stats_input import load_table

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
        """Read the shared measurements CSV (observers, levels); None clears it."""
        from ..core.stats_input import read_measurements

        path = str(path or "").strip()
        self.meas_edit.setText(path)
        self._paths[1] = path
        self.rows = None
        if path:
            try:
                self.rows = read_measurements(path)
            except (PvmError, OSError) as exc:
                self.notify(f"cannot read the measurements: {exc}", "warning")
        observers = levels = []
        if self.rows is not None:
            observers = sorted({str(v) for v in self.rows["observer_id"].dropna() if str(v)})
            levels = sorted({str(v) for v in self.rows["level"].dropna()}) if "level" in self.rows else []
        self._fill_observers(observers, levels)
        self._refresh_variables()
        self._update_enabled()
        return self.rows is not None or not path

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
        if self.rows is None:
            return self.table
        from ..core.stats_input import merge_measurements

        try:
            merged, _, _ = merge_measurements(self.table, self.rows, level=self.level)
        except PvmError as exc:
            self.notify(f"measurements not merged: {gui_message(str(exc))}", "warning")
            return self.table
        return merged

    def _refresh_variables(self):
        from ..core.stats_input import detect_type

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
            "measurements": self.meas_edit.text().strip() if self.rows is not None else None,
            "observer": self.observer_combo.currentData() or "mean",
            "level": self.level,
        }

    # --------------------------------------------------------------- run
    def run(self):
        """Analyse in a worker thread; returns the worker (None when the input is refused)."""
        from napari.qt.threading import create_worker

        if self._worker is not None:
            return None
        try:
            if self.table is None and self.rows is not None:
                func, kwargs = _reliability_only, {"rows": self.rows, "level": self.level}
            else:
                from ..core.stats import analyse

                func, kwargs = analyse, self.analysis_kwargs()
        except PvmError as exc:
            self.notify(str(exc), "warning")
            return None
        self._clear_results("analysing…")
        self._set_running(True)
        worker = create_worker(func, **kwargs, _ignore_errors=True)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()
        return worker

    def _set_running(self, running):
        self.inputs.setEnabled(not running)
        if running:
            self.progress.setRange(0, 0)  # busy
            self.status_label.setText("analysing…")
        else:
            self.progress.setRange(0, 1)
            self.progress.setValue(1)
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
        if isinstance(result, tuple):  # reliability of the measurements alone
            self.results.show_reliability(*result)
            self.results.show_tab("Reliability")
            self.status_label.setText("reliability computed")
        else:
            self.results.show_result(result)
            n = len(result.warnings)
            self.status_label.setText(f"analysed {result.outcome['n']} patients" + (f"; {n} warning(s)" if n else ""))
            if n:
                self.notify(f"statistics: {n} warning(s), see the Warnings tab. First: {result.warnings[0]}",
                            "warning")
        self._update_enabled()

    def _on_error(self, exc):
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
        self.run_button.setEnabled(idle and (self.table is not None or self.rows is not None))
        self.export_button.setEnabled(idle and self.results.has_result)

    def _clear_results(self, message):
        self.results.clear(message)
        self._update_enabled()

    # ------------------------------------------------------------ export
    def _ask_directory(self):
        return QFileDialog.getExistingDirectory(self, "Export the statistics to a folder")

    def export(self, out_dir=None):
        """Write the tables (CSV), results.json, report.html and the figures shown (PNG).

        Returns
        -------
        list of Path
            The files written (empty when nothing was written).
        """
        from ..core.report import write_outputs

        if self.result is None and self.reliability is None:
            self.notify("run the analysis before exporting", "warning")
            return []
        out_dir = out_dir or self.ask_directory()
        if not out_dir:
            return []
        out_dir = Path(out_dir)
        try:
            if self.result is not None:
                written = write_outputs(self.result, out_dir)
            else:
                out_dir.mkdir(parents=True, exist_ok=True)
                written = [out_dir / "reliability.csv"]
                self.reliability.to_csv(written[0], index=False)
            written += self.results.save_figures(out_dir)
        except (PvmError, OSError) as exc:
            self.notify(f"export failed: {exc}", "error")
            return []
        self.notify(f"wrote {len(written)} files to {out_dir}", "info")
        return written


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _reliability_only(rows, level):
    """Worker: the reliability table of the measurements alone."""
    from ..core.reliability import reliability_table

    return reliability_table(rows, level=level), rows, level


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
