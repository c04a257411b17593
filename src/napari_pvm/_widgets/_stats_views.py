"""Qt views of a statistics result: the variable grid and the result tables.

The cell texts come from :mod:`napari_pvm.core.stats.report` (the same rows as the
text and HTML reports, P values by ``format_p``, "–" for a missing number),
so the dock, ``napari-pvm stats`` and ``report.html`` always agree.
"""

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHeaderView,
    QStyledItemDelegate,
    QTableWidget,
    QTableWidgetItem,
)

from ..core.stats.format import format_number as _num
from ..core.stats.format import format_p
from ..core.stats.report import comparison_rows as _comparison_rows
from ..core.stats.report import logistic_rows as _logistic_rows
from ..core.stats.report import roc_rows as _roc_rows

__all__ = [
    "OFF",
    "VariableGrid",
    "comparison_rows",
    "fill_table",
    "logistic_facts",
    "logistic_rows",
    "reliability_rows",
    "roc_rows",
    "table_texts",
]

#: Table 2 type of a variable left out of the comparison.
OFF = "—"
_TYPES = ("continuous", "categorical", OFF)


# --------------------------------------------------------------------------
# Result tables
# --------------------------------------------------------------------------


def fill_table(table, header, rows, tooltips=None):
    """Show (header, rows) of :mod:`.report` in a read-only QTableWidget.

    A cell is a list of lines (a categorical variable has one per level).
    """
    table.clear()
    table.setColumnCount(len(header))
    table.setRowCount(len(rows))
    table.setHorizontalHeaderLabels([str(h) for h in header])
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            item = QTableWidgetItem("\n".join(str(x) for x in cell))
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            if tooltips and tooltips[i]:
                item.setToolTip(tooltips[i])
            table.setItem(i, j, item)
    table.resizeColumnsToContents()
    table.resizeRowsToContents()


def table_texts(table):
    """The cells of a QTableWidget as a list of rows of text (header first)."""
    header = [table.horizontalHeaderItem(j).text() for j in range(table.columnCount())]
    rows = [
        [table.item(i, j).text() if table.item(i, j) else "" for j in range(table.columnCount())]
        for i in range(table.rowCount())
    ]
    return [header, *rows]


def comparison_rows(result):
    """Table 2 rows and a tooltip per row (the test chosen and why, notes)."""
    header, rows = _comparison_rows(result)
    tips = []
    for r in result.comparison.table.to_dict("records"):
        reason = r.get("test_reason") if r["type"] == "continuous" else None
        notes = str(r.get("notes") or "").replace(" | ", "\n")
        tips.append("\n".join(t for t in (reason, notes) if isinstance(t, str) and t))
    return header, rows, tips


def logistic_rows(result):
    """Table 3 ("Variables in the Equation") rows."""
    return _logistic_rows(result)


def roc_rows(result):
    """ROC rows (AUC, CI, Youden cut-off) and a tooltip per row (notes)."""
    header, rows = _roc_rows(result)
    tips = [str(r.get("notes") or "").replace(" | ", "\n") for r in result.roc.table.to_dict("records")]
    return header, rows, tips


def logistic_facts(result):
    """Fit statistics of the logistic model as lines of text (no NaN)."""
    lg = result.logistic
    s = lg.summary
    ok = _finite
    lines = [
        f"n = {s['n']}, events = {s['events']}, events per variable = {s['epv']:.1f}"
        + (f", {s['n_missing']} left out for a missing value" if s.get("n_missing") else "")
    ]
    if ok(s.get("minus2ll")):
        lines.append(
            f"−2 log likelihood = {s['minus2ll']:.3f}; Cox & Snell R² = {s['cox_snell_r2']:.3f}; "
            f"Nagelkerke R² = {s['nagelkerke_r2']:.3f}"
        )
        lines.append(f"Omnibus χ² = {s['model_chi2']:.3f} (df {s['model_df']}), {_p(s['model_p'])}")
    hl = lg.hosmer_lemeshow
    if hl is not None and ok(hl["chi2"]):
        lines.append(f"Hosmer–Lemeshow χ² = {hl['chi2']:.3f} (df {hl['df']}), {_p(hl['p'])}")
    if not lg.classification.empty:
        c = lg.classification.to_dict("records")
        lines.append(
            f"Classification at 0.5: {c[0]['percent_correct']:.1f}% of group 0 and "
            f"{c[1]['percent_correct']:.1f}% of group 1 correct; overall {c[2]['percent_correct']:.1f}%"
        )
    for t in lg.terms.to_dict("records"):
        lines.append(f"{t['variable']} (overall): Wald = {_num(t['wald'])} (df {t['df']}), {_p(t['p'])}")
    return lines


def reliability_rows(table):
    """Rows of a reliability table (:class:`~napari_pvm.core.stats.reliability.ReliabilityResult`), with notes."""
    header = [
        "Measure",
        "n",
        "ICC(2,1) (95% CI)",
        "Koo & Li",
        "ICC(3,1)",
        "ICC(2,k)",
        "Bias (95% limits of agreement)",
        "SEM",
        "MDC95",
        "Note",
    ]
    rows = []
    for r in table.to_dict("records"):
        g = r.get
        icc = _num(g("icc2_1"))
        if _finite(g("icc2_1_ci_low")) and _finite(g("icc2_1_ci_high")):
            icc += f" ({_num(g('icc2_1_ci_low'))}–{_num(g('icc2_1_ci_high'))})"
        loa = _num(g("bias"))
        if _finite(g("loa_low")) and _finite(g("loa_high")):
            loa += f" ({_num(g('loa_low'))} to {_num(g('loa_high'))})"
        rows.append(
            [
                [str(g("measure"))],
                [str(g("n"))],
                [icc],
                [_text(g("icc2_1_rating"), "–")],
                [_num(g("icc3_1"))],
                [_num(g("icc2_k"))],
                [loa],
                [_num(g("sem"))],
                [_num(g("mdc95"))],
                [_text(g("note"))],
            ]
        )
    return header, rows


def _p(p):
    """Text of a P value as "P = 0.040" or "P < 0.001" (format_p's text)."""
    text = format_p(p)
    return f"P < {text[1:]}" if text.startswith("<") else f"P = {text}"


def _text(v, empty=""):
    """A text cell: missing (None or NaN) shows as ``empty``."""
    return v if isinstance(v, str) and v else empty


def _finite(v):
    import math

    return isinstance(v, (int, float)) and math.isfinite(v)


# --------------------------------------------------------------------------
# Variable grid
# --------------------------------------------------------------------------


class _TypeDelegate(QStyledItemDelegate):
    """A combo box to edit the Table 2 type, created only while a cell is edited."""

    def createEditor(self, parent, option, index):  # noqa: N802 (Qt name)
        combo = QComboBox(parent)
        combo.addItems(_TYPES)
        combo.activated.connect(lambda *_: self.commitData.emit(combo))
        return combo

    def setEditorData(self, editor, index):  # noqa: N802
        editor.setCurrentText(index.data())

    def setModelData(self, editor, model, index):  # noqa: N802
        model.setData(index, editor.currentText())


class VariableGrid(QTableWidget):
    """One row per column of the table: its Table 2 type, logistic and ROC ticks.

    Types are pre-set from :func:`napari_pvm.core.stats.input.detect_type`
    (click a type to change it); a column that cannot be analysed starts as
    "—" with the reason as tooltip.
    """

    HEADER = ("Variable", "Table 2", "Logistic", "ROC")

    def __init__(self, parent=None):
        super().__init__(0, len(self.HEADER), parent)
        self.setHorizontalHeaderLabels(self.HEADER)
        self.verticalHeader().setVisible(False)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.AllEditTriggers)
        self._delegate = _TypeDelegate(self)
        self.setItemDelegateForColumn(1, self._delegate)
        head = self.horizontalHeader()
        head.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for j in (1, 2, 3):
            head.setSectionResizeMode(j, QHeaderView.ResizeMode.ResizeToContents)
        self._names = []

    @property
    def names(self):
        """The variables listed, in table order."""
        return list(self._names)

    def set_variables(self, variables):
        """List ``[(name, kind or None, reason), ...]``, keeping the choices of names already listed."""
        keep = self.state()
        self.setRowCount(0)
        self.setRowCount(len(variables))
        self._names = [name for name, _, _ in variables]
        enabled = Qt.ItemFlag.ItemIsEnabled
        for i, (name, kind, reason) in enumerate(variables):
            item = QTableWidgetItem(name)
            item.setFlags(enabled)
            item.setToolTip(f"{name}: {reason}" if kind else f"{name} cannot be analysed: {reason}")
            self.setItem(i, 0, item)
            kind_item = QTableWidgetItem(kind or OFF)
            kind_item.setFlags(enabled | Qt.ItemFlag.ItemIsEditable)
            kind_item.setToolTip("continuous, categorical or — (left out of Table 2); click to change")
            self.setItem(i, 1, kind_item)
            for j in (2, 3):
                check = QTableWidgetItem()
                check.setFlags(enabled | Qt.ItemFlag.ItemIsUserCheckable)
                check.setCheckState(Qt.CheckState.Unchecked)
                self.setItem(i, j, check)
            if name in keep:
                self.set(name, *keep[name])
        self.resizeRowsToContents()

    def set(self, name, table2=None, logistic=None, roc=None):
        """Set the choices of one variable (None leaves a choice as it is)."""
        i = self._names.index(name)
        if table2 is not None:
            self.item(i, 1).setText(table2 if table2 in _TYPES else OFF)
        for j, value in ((2, logistic), (3, roc)):
            if value is not None:
                self.item(i, j).setCheckState(Qt.CheckState.Checked if value else Qt.CheckState.Unchecked)

    def state(self):
        """``{name: (table2 type, logistic, roc)}``."""
        checked = Qt.CheckState.Checked
        return {
            name: (
                self.item(i, 1).text(),
                self.item(i, 2).checkState() == checked,
                self.item(i, 3).checkState() == checked,
            )
            for i, name in enumerate(self._names)
        }

    def selection(self):
        """The analysis lists: ``continuous``, ``categorical``, ``logistic``, ``roc``."""
        out = {"continuous": [], "categorical": [], "logistic": [], "roc": []}
        for name, (kind, logistic, roc) in self.state().items():
            if kind in ("continuous", "categorical"):
                out[kind].append(name)
            if logistic:
                out["logistic"].append(name)
            if roc:
                out["roc"].append(name)
        return out

    def apply_filter(self, text):
        """Show only the variables whose name contains ``text`` (case-insensitive)."""
        text = text.strip().lower()
        for i, name in enumerate(self._names):
            self.setRowHidden(i, bool(text) and text not in name.lower())
