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

from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from qtpy.QtCore import Qt

from ..core.errors import PvmError
from . import _stats_views as views
from ._mpl_canvas import ThemedCanvas

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
    result : StatsResult or None
        The last analysis (None before Run or after an error).
    reliability : pandas.DataFrame or None
        The reliability table shown (from ``result`` or from the measurements alone).
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
        self.result = None
        self.reliability = None
        self._ba_rows = None  # the rows Bland–Altman plots are drawn from
        self._ba_level = None
        self._worker = None
        self.notify = _notify
        self.ask_directory = self._ask_directory
        self._build()
        self._clear_results("Choose a clinical table (and/or a measurements CSV), then Run.")
        self._update_enabled()

    # ------------------------------------------------------------ layout
    def _build(self):
        self.table_edit = QLineEdit()
        self.table_edit.setPlaceholderText("per-patient table (.csv, .tsv, .xlsx)")
        self.table_edit.editingFinished.connect(lambda: self.load_table(self.table_edit.text()))
        self.meas_edit = QLineEdit()
        self.meas_edit.setPlaceholderText("optional: shared measurements CSV")
        self.meas_edit.editingFinished.connect(lambda: self.load_measurements(self.meas_edit.text()))
        self.observer_combo = QComboBox()
        self.level_combo = QComboBox()
        self.level_combo.currentIndexChanged.connect(lambda *_: self._refresh_variables())
        self.outcome_combo = QComboBox()
        self.outcome_combo.currentIndexChanged.connect(lambda *_: self._on_outcome())
        self.event_combo = QComboBox()
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("filter variables")
        self.grid = views.VariableGrid()
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

        self.tabs = QTabWidget()
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self.comparison_table = _table()
        self.comparison_note = _note(
            "Mean ± SD; median [Q1, Q3] when Mann–Whitney is used; n (% of group) for categories. "
            "Mann–Whitney when either group's Shapiro–Wilk P < 0.05, else Welch when Levene's P < 0.05, "
            "else Student. * an expected count is below 5: quote Fisher's P. Hover a row for the reason."
        )
        self.logistic_table = _table()
        self.logistic_note = _note("")
        self.roc_table = _table()
        self.roc_canvas = ThemedCanvas(self.viewer, figsize=(4.8, 4.6))
        self.reliability_table = _table()
        self.measure_combo = QComboBox()
        self.measure_combo.currentIndexChanged.connect(lambda *_: self._draw_bland_altman())
        self.ba_canvas = ThemedCanvas(self.viewer, figsize=(5.5, 4.0))
        self.box_combo = QComboBox()
        self.box_combo.currentIndexChanged.connect(lambda *_: self._draw_boxplot())
        self.box_canvas = ThemedCanvas(self.viewer, figsize=(3.6, 3.6))
        self.warnings_list = QListWidget()
        self.warnings_list.setWordWrap(True)
        self.tabs.addTab(_page(self.comparison_table, self.comparison_note), "Table 2")
        self.tabs.addTab(_page(self.logistic_table, self.logistic_note), "Table 3")
        self.tabs.addTab(_split(self.roc_table, self.roc_canvas), "ROC")
        self.tabs.addTab(_split(self.reliability_table, _page(_labelled("measure", self.measure_combo),
                                                              self.ba_canvas)), "Reliability")
        self.tabs.addTab(_page(_labelled("variable", self.box_combo), self.box_canvas), "Box plots")
        self.tabs.addTab(self.warnings_list, "Warnings")
        results = QWidget()
        bottom = QVBoxLayout(results)
        bottom.setContentsMargins(0, 0, 0, 0)
        bottom.addWidget(self.summary_label)
        bottom.addWidget(self.tabs, 1)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(inputs)
        splitter.addWidget(results)
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

    def load_table(self, path):
        """Read the per-patient table and list its columns; False (and a notification) on bad input."""
        from ..core.stats_input import load_table

        path = str(path or "").strip()
        self.table_edit.setText(path)
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
        self.observer_combo.clear()
        self.observer_combo.addItem("mean of the observers", "mean")
        for o in observers:
            self.observer_combo.addItem(o, o)
        self.level_combo.blockSignals(True)
        self.level_combo.clear()
        self.level_combo.addItems(levels)
        self.level_combo.blockSignals(False)
        self.level_combo.setEnabled(len(levels) > 1)
        self._refresh_variables()
        self._update_enabled()
        return self.rows is not None or not path

    def _fill_outcomes(self):
        self.outcome_combo.blockSignals(True)
        self.outcome_combo.clear()
        if self.table is not None:
            columns = [c for c in self.table.columns if c != "patient_id"]
            self.outcome_combo.addItems(columns)
            binary = [c for c in columns if self.table[c].dropna().nunique() == 2]
            if binary:
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

    def _on_returned(self, result):
        if isinstance(result, tuple):  # reliability only
            self.reliability, self._ba_rows, self._ba_level = result
            self.summary_label.setText(
                f"Inter-observer reliability of {self.reliability.attrs.get('n_patients_both', '?')} patients "
                f"measured by {', '.join(self.reliability.attrs.get('observers', []))}"
            )
            self._show_reliability()
            self.tabs.setCurrentIndex(3)
            self.status_label.setText("reliability computed")
            return
        self.result = result
        self._show_result(result)
        n = len(result.warnings)
        o = result.outcome
        self.status_label.setText(f"analysed {o['n']} patients" + (f"; {n} warning(s)" if n else ""))
        if n:
            self.notify(f"statistics: {n} warning(s), see the Warnings tab. First: {result.warnings[0]}", "warning")

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
        self.export_button.setEnabled(idle and (self.result is not None or self.reliability is not None))

    # ------------------------------------------------------------- views
    def _clear_results(self, message):
        self.result = None
        self.reliability = None
        self._ba_rows = None
        self.summary_label.setText("")
        for table in (self.comparison_table, self.logistic_table, self.roc_table, self.reliability_table):
            table.clear()
            table.setRowCount(0)
            table.setColumnCount(0)
        self.logistic_note.setText("")
        for combo in (self.measure_combo, self.box_combo):
            combo.blockSignals(True)
            combo.clear()
            combo.blockSignals(False)
        for canvas in (self.roc_canvas, self.ba_canvas, self.box_canvas):
            canvas.show_message(message)
        self.warnings_list.clear()
        self.tabs.setTabText(5, "Warnings")
        self._update_enabled()

    def _show_result(self, result):
        o = result.outcome
        self.summary_label.setText(
            f"Outcome {o['column']}: event = {o['event']} (n = {o['n_1']}), no event = {o['non_event']} "
            f"(n = {o['n_0']})" + (f"; {o['n_missing']} without a value left out" if o["n_missing"] else "")
        )
        views.fill_table(self.comparison_table, *views.comparison_rows(result))
        if result.logistic is not None:
            views.fill_table(self.logistic_table, *views.logistic_rows(result))
            lines = views.logistic_facts(result) + [f"⚠ {w}" for w in result.logistic.warnings]
            self.logistic_note.setText("\n".join(lines))
        else:
            self.logistic_note.setText("No logistic covariates chosen (tick them in the Logistic column).")
        if result.roc is not None:
            views.fill_table(self.roc_table, *views.roc_rows(result))
            self._plot(self.roc_canvas, lambda ax: _roc(result, ax))
        else:
            self.roc_canvas.show_message("No ROC variables chosen (tick them in the ROC column).")
        self.reliability, self._ba_rows = result.reliability, result.measurements
        self._ba_level = result.settings.get("level")
        if self.reliability is not None:
            self._show_reliability(preferred=list(result.types) + (list(result.roc.table["variable"])
                                                                     if result.roc is not None else []))
        else:
            why = ("no measurements merged" if result.measurements is None
                   else "the measurements have one observer only")
            self.ba_canvas.show_message(f"No reliability: {why}.")
        boxes = [n for n, t in result.types.items() if t == "continuous"]
        if result.roc is not None:
            boxes += [n for n in result.roc.table["variable"] if n not in boxes]
        self.box_combo.blockSignals(True)
        self.box_combo.addItems(boxes)
        self.box_combo.blockSignals(False)
        self._draw_boxplot()
        self.warnings_list.addItems(result.warnings)
        self.tabs.setTabText(5, f"Warnings ({len(result.warnings)})" if result.warnings else "Warnings")
        self._update_enabled()

    def _show_reliability(self, preferred=()):
        views.fill_table(self.reliability_table, *views.reliability_rows(self.reliability))
        measures = list(self.reliability["measure"])
        self.measure_combo.blockSignals(True)
        self.measure_combo.clear()
        self.measure_combo.addItems(measures)
        first = next((m for m in preferred if m in measures), None)
        if first is None:
            drawable = self.reliability[self.reliability["icc2_1"].notna()]["measure"]
            first = drawable.iloc[0] if len(drawable) else measures[0]
        self.measure_combo.setCurrentText(first)
        self.measure_combo.blockSignals(False)
        self._draw_bland_altman()
        self._update_enabled()

    def _draw_bland_altman(self):
        measure = self.measure_combo.currentText()
        if self._ba_rows is None or not measure:
            return
        from ..core.reliability import bland_altman_plot

        rows, level = self._ba_rows, self._ba_level
        self._plot(self.ba_canvas, lambda ax: bland_altman_plot(rows, measure, ax=ax, level=level),
                   what=f"Bland–Altman plot of {measure}")

    def _draw_boxplot(self):
        name, result = self.box_combo.currentText(), self.result
        if result is None or not name:
            self.box_canvas.show_message("No continuous variable to plot.")
            return
        self._plot(self.box_canvas, lambda ax: _boxplot(result, name, ax), what=f"box plot of {name}")

    def _plot(self, canvas, draw, what="plot"):
        try:
            canvas.plot(draw)
        except PvmError as exc:
            canvas.show_message(f"{what} not drawn:\n{exc}")

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
            figures = [(self.roc_canvas, "roc.png"),
                       (self.box_canvas, f"boxplot_{_safe(self.box_combo.currentText())}.png"),
                       (self.ba_canvas, f"bland_altman_{_safe(self.measure_combo.currentText())}.png")]
            for canvas, name in figures:
                if canvas.save_png(out_dir / name):
                    written.append(out_dir / name)
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


def _roc(result, ax):
    from ..core.plots import roc_plot

    return roc_plot(result.roc, ax=ax)


def _boxplot(result, name, ax):
    from ..core.plots import group_boxplot

    labels = (str(result.outcome["non_event"]), str(result.outcome["event"]))
    group_boxplot(result.data, name, result.y, labels=labels, ax=ax)
    ax.set_xlabel(result.outcome["column"], fontsize=8)
    return ax


def _safe(name):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "figure"


def _table():
    table = QTableWidget()
    table.verticalHeader().setVisible(False)
    table.setWordWrap(False)
    return table


def _note(text):
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def _page(*widgets):
    page = QWidget()
    layout = QVBoxLayout(page)
    layout.setContentsMargins(2, 2, 2, 2)
    for w in widgets:
        layout.addWidget(w, 1 if isinstance(w, (QTableWidget, ThemedCanvas)) else 0)
    return page


def _split(top, bottom):
    splitter = QSplitter(Qt.Orientation.Vertical)
    splitter.addWidget(top)
    splitter.addWidget(bottom)
    splitter.setStretchFactor(1, 2)
    return splitter


def _labelled(text, widget):
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(QLabel(text))
    layout.addWidget(widget, 1)
    return row


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
