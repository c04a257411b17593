"""The result half of the statistics dock: six tabs of tables and themed plots.

``Table 2`` (comparison), ``Table 3`` (logistic rows, fit statistics and
warnings), ``ROC`` (table and curves), ``Reliability`` (table and a
Bland–Altman plot per measure), ``Box plots`` and ``Warnings``. The panel
shows a :class:`~napari_pvm.core.stats.StatsResult` (or a reliability result
alone); it computes nothing itself.
"""

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QSplitter,
    QTableWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import PvmError
from . import _stats_views as views
from ._mpl_canvas import ThemedCanvas

__all__ = ["TABS", "ResultsPanel"]

TABS = ("Table 2", "Table 3", "ROC", "Reliability", "Box plots", "Warnings")
_COMPARISON_NOTE = (
    "Mean ± SD; median [Q1, Q3] when Mann–Whitney is used; n (% of group) for categories. "
    "Mann–Whitney when either group's Shapiro–Wilk P < 0.05, else Welch when Levene's P < 0.05, "
    "else Student. * an expected count is below 5: quote Fisher's P. Hover a row for the reason."
)


class ResultsPanel(QWidget):
    """Tables and plots of one analysis.

    Attributes
    ----------
    result : StatsResult or None
    reliability : pandas.DataFrame or None
        The reliability table shown.
    reliability_result : ReliabilityResult or None
        What the reliability tab shows (the Bland–Altman plots draw its values).
    """

    def __init__(self, viewer, parent=None):
        super().__init__(parent)
        self.result = None
        self.reliability = None
        self.reliability_result = None
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self.comparison_table = _table()
        self.logistic_table = _table()
        self.logistic_note = _note("")
        self.roc_table = _table()
        self.roc_canvas = ThemedCanvas(viewer, figsize=(4.8, 4.6))
        self.reliability_table = _table()
        self.reliability_note = _note("")
        self.measure_combo = QComboBox()
        self.measure_combo.currentIndexChanged.connect(lambda *_: self.draw_bland_altman())
        self.ba_canvas = ThemedCanvas(viewer, figsize=(5.5, 4.0))
        self.box_combo = QComboBox()
        self.box_combo.currentIndexChanged.connect(lambda *_: self.draw_boxplot())
        self.box_canvas = ThemedCanvas(viewer, figsize=(3.6, 3.6))
        self.warnings_list = QListWidget()
        self.warnings_list.setWordWrap(True)
        self.warnings_list.setSpacing(4)
        # No alternating row colours: napari's themes colour the text but not
        # Qt's alternate base, which left light text on light grey rows. A
        # rule in the theme's own text colour separates the warnings instead.
        self.warnings_list.setAlternatingRowColors(False)
        self.warnings_list.setStyleSheet("QListWidget::item { border-bottom: 1px solid palette(mid); padding: 2px; }")

        self.tabs = QTabWidget()
        pages = (
            _page(self.comparison_table, _note(_COMPARISON_NOTE)),
            _page(self.logistic_table, self.logistic_note),
            _split(self.roc_table, self.roc_canvas),
            _split(
                _page(self.reliability_table, self.reliability_note),
                _page(_labelled("measure", self.measure_combo), self.ba_canvas),
            ),
            _page(_labelled("variable", self.box_combo), self.box_canvas),
            self.warnings_list,
        )
        for page, title in zip(pages, TABS, strict=True):
            self.tabs.addTab(page, title)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.tabs, 1)

    @property
    def has_result(self):
        """Whether there is anything to export."""
        return self.result is not None or self.reliability is not None

    def show_tab(self, title):
        """Bring the tab ``title`` (one of :data:`TABS`) to the front."""
        self.tabs.setCurrentIndex(TABS.index(title))

    # ----------------------------------------------------------- content
    def clear(self, message):
        """Empty every tab; the canvases show ``message``."""
        self.result = self.reliability = self.reliability_result = None
        self.summary_label.setText("")
        for table in (self.comparison_table, self.logistic_table, self.roc_table, self.reliability_table):
            table.clear()
            table.setRowCount(0)
            table.setColumnCount(0)
        self.logistic_note.setText("")
        self.reliability_note.setText("")
        for combo in (self.measure_combo, self.box_combo):
            combo.blockSignals(True)
            combo.clear()
            combo.blockSignals(False)
        for canvas in (self.roc_canvas, self.ba_canvas, self.box_canvas):
            canvas.show_message(message)
        self.warnings_list.clear()
        self.tabs.setTabText(TABS.index("Warnings"), "Warnings")

    def show_result(self, result):
        """Fill every tab from a :class:`~napari_pvm.core.stats.StatsResult`."""
        self.result = result
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
        roc_names = list(result.roc.table["variable"]) if result.roc is not None else []
        if result.roc is not None:
            views.fill_table(self.roc_table, *views.roc_rows(result))
            self._plot(self.roc_canvas, lambda ax: _roc(result, ax), "ROC curves")
        else:
            self.roc_canvas.show_message("No ROC variables chosen (tick them in the ROC column).")
        if result.reliability is not None:
            self.show_reliability(result.reliability, preferred=list(result.types) + roc_names)
        else:
            merged = result.settings.get("observer") is not None
            why = "the measurements have one observer" if merged else "no measurements merged"
            self.ba_canvas.show_message(f"No reliability: {why}.")
        boxes = [n for n, t in result.types.items() if t == "continuous"]
        boxes += [n for n in roc_names if n not in boxes]
        self.box_combo.blockSignals(True)
        self.box_combo.addItems(boxes)
        self.box_combo.blockSignals(False)
        self.draw_boxplot()
        self.warnings_list.addItems(result.warnings)
        if result.warnings:
            self.tabs.setTabText(TABS.index("Warnings"), f"Warnings ({len(result.warnings)})")

    def show_reliability(self, result, *, preferred=()):
        """Show a reliability result; the Bland–Altman plot starts at the first ``preferred`` measure."""
        table = result.table
        self.reliability, self.reliability_result = table, result
        if self.result is None:
            attrs = result.info
            self.summary_label.setText(
                f"Inter-observer reliability: {attrs.get('n_patients_both', '?')} patients measured by "
                f"{', '.join(map(str, attrs.get('observers', [])))}"
            )
        views.fill_table(self.reliability_table, *views.reliability_rows(table))
        from ..core.stats.report import origin_lines

        self.reliability_note.setText("\n".join(origin_lines(result)))
        measures = list(table["measure"])
        first = next((m for m in preferred if m in measures), None)
        if first is None:
            drawable = list(table.loc[table["icc2_1"].notna(), "measure"])
            first = (drawable or measures)[0]
        self.measure_combo.blockSignals(True)
        self.measure_combo.clear()
        self.measure_combo.addItems(measures)
        self.measure_combo.setCurrentText(first)
        self.measure_combo.blockSignals(False)
        self.draw_bland_altman()

    def draw_bland_altman(self):
        """Draw the Bland–Altman plot of the measure chosen (or say why it cannot be drawn)."""
        measure, result = self.measure_combo.currentText(), self.reliability_result
        if result is None or not measure:
            return
        from ..core.stats.plots import bland_altman_plot

        self._plot(
            self.ba_canvas, lambda ax: bland_altman_plot(result, measure, ax=ax), f"Bland–Altman plot of {measure}"
        )

    def draw_boxplot(self):
        """Draw the box plot of the variable chosen."""
        name, result = self.box_combo.currentText(), self.result
        if result is None or not name:
            self.box_canvas.show_message("No continuous variable to plot.")
            return
        self._plot(self.box_canvas, lambda ax: _boxplot(result, name, ax), f"box plot of {name}")

    @staticmethod
    def _plot(canvas, draw, what):
        try:
            canvas.plot(draw)
        except PvmError as exc:
            canvas.show_message(f"{what} not drawn:\n{exc}")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _roc(result, ax):
    from ..core.stats.plots import roc_plot

    return roc_plot(result.roc, ax=ax)


def _boxplot(result, name, ax):
    from ..core.stats.plots import group_boxplot

    labels = (str(result.outcome["non_event"]), str(result.outcome["event"]))
    group_boxplot(result.data, name, result.y, labels=labels, ax=ax)
    ax.set_xlabel(result.outcome["column"], fontsize=8)
    return ax


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
    splitter.setStretchFactor(1, 3)
    splitter.setSizes([140, 420])
    return splitter


def _labelled(text, widget):
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(QLabel(text))
    layout.addWidget(widget, 1)
    return row
