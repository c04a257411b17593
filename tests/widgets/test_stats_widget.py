"""The statistics dock: tables as analyse() gives them, plots, export, bad input."""

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_pvm._widgets import _stats_views as views
from napari_pvm._widgets.stats_widget import StatsWidget
from napari_pvm.core.stats import analyse, format_p

DATA = Path(__file__).resolve().parents[1] / "data"
COHORT = DATA / "paper_table2_cohort.csv"
LOGISTIC = ["fascia_injury", "vbq", "kyphosis_post", "ps_total_area", "esmf_fi_pct"]
ROC = ["ps_total_area", "esmf_fi_pct"]


@pytest.fixture
def dock(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = StatsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Statistics")  # closed with the viewer
    widget.messages = []
    widget.notify = lambda message, level="info": widget.messages.append((level, message))
    return widget


@pytest.fixture
def cohort(tmp_path):
    return Path(shutil.copy(COHORT, tmp_path / "cohort.csv"))


def _run(qtbot, widget):
    worker = widget.run()
    assert worker is not None, widget.messages
    assert not widget.run_button.isEnabled() and not widget.inputs.isEnabled()  # busy
    qtbot.waitUntil(lambda: widget._worker is None, timeout=30_000)
    assert widget.run_button.isEnabled()


def _texts(table):
    return views.table_texts(table)


def _column(table, name):
    header, *rows = _texts(table)
    j = header.index(name)
    return [r[j] for r in rows]


def _no_nan(widget):
    res = widget.results
    shown = [res.summary_label.text(), res.logistic_note.text()]
    for table in (res.comparison_table, res.logistic_table, res.roc_table, res.reliability_table):
        shown += ["\t".join(r) for r in _texts(table)]
    assert not re.search(r"\b(nan|inf)\b", "\n".join(shown), re.IGNORECASE)


def _legend_lines(ax):
    return [line for line in ax.lines if not line.get_label().startswith("_")]


# --------------------------------------------------------------------------
# The cohort
# --------------------------------------------------------------------------


def test_cohort_tables_and_plots_match_analyse(dock, qtbot, cohort, tmp_path):
    res = dock.results
    assert dock.load_table(cohort)
    assert dock.outcome == "residual_lbp"  # first two-valued column
    names = dock.grid.names
    assert "residual_lbp" not in names and "patient_id" not in names
    state = dock.grid.state()
    assert state["age"][0] == "continuous" and state["sex_male"][0] == "categorical"
    assert state["trauma_severity"][0] == "categorical"  # text
    for name in names:  # a smaller Table 2 keeps the test quick
        dock.grid.set(name, table2=views.OFF)
    for name in ("age", "bmi", "vbq", "esmf_fi_pct"):
        dock.grid.set(name, table2="continuous")
    for name in ("sex_male", "trauma_severity"):
        dock.grid.set(name, table2="categorical")
    for name in LOGISTIC:
        dock.grid.set(name, logistic=True)
    for name in ROC:
        dock.grid.set(name, roc=True)
    kwargs = dock.analysis_kwargs()
    assert kwargs["continuous"] == ["age", "bmi", "vbq", "esmf_fi_pct"]
    assert kwargs["categorical"] == ["sex_male", "trauma_severity"]  # table order
    assert kwargs["logistic"] == LOGISTIC and kwargs["roc"] == ROC and kwargs["measurements"] is None

    _run(qtbot, dock)
    expected = analyse(
        cohort,
        "residual_lbp",
        continuous=["age", "bmi", "vbq", "esmf_fi_pct"],
        categorical=["sex_male", "trauma_severity"],
        logistic=LOGISTIC,
        roc=ROC,
    )
    assert dock.result is not None, dock.messages
    assert "event = 1 (n = 29)" in res.summary_label.text()

    # Table 2: same variables, same P values and mean ± SD as the core
    comp = expected.comparison.table
    assert [c.split("\n")[0] for c in _column(res.comparison_table, "Variable")] == list(comp["variable"])
    assert [c.split("\n")[0] for c in _column(res.comparison_table, "P")] == [format_p(p) for p in comp["p"]]
    age = comp.set_index("variable").loc["age"]
    row = list(comp["variable"]).index("age")
    assert _texts(res.comparison_table)[1 + row][1].startswith(f"{age['mean_0']:.2f} ± {age['sd_0']:.2f}")

    # Table 3: Sig. and Exp(B) per row, fit statistics
    lg = expected.logistic.rows
    assert _column(res.logistic_table, "Sig.") == [format_p(p) for p in lg["p"]]
    ratio = lambda v: f"{v:.3g}" if v < 0.001 or v >= 1e5 else f"{v:.3f}"  # noqa: E731
    assert _column(res.logistic_table, "Exp(B)") == [ratio(v).replace("-", "−") for v in lg["OR"]]
    assert f"Nagelkerke R² = {expected.logistic.summary['nagelkerke_r2']:.3f}" in res.logistic_note.text()

    # ROC: AUC and cut-off per variable, one curve per variable on the canvas
    roc = expected.roc.table
    assert _column(res.roc_table, "AUC") == [f"{a:.3f}" for a in roc["auc"]]
    assert _column(res.roc_table, "Cut-off") == [f"{c:.4f}" for c in roc["cutoff"]]
    lines = _legend_lines(res.roc_canvas.axes)
    assert len(lines) == len(ROC) and all(v in line.get_label() for v, line in zip(ROC, lines, strict=True))

    # canvases follow napari's theme
    from matplotlib.colors import to_hex

    from napari.utils.theme import get_theme

    dark = get_theme(dock.viewer.theme).background.as_hex()
    assert to_hex(res.roc_canvas.figure.get_facecolor()) == dark
    dock.viewer.theme = "light"
    light = get_theme("light").background.as_hex()
    assert to_hex(res.roc_canvas.figure.get_facecolor()) == light
    assert to_hex(res.roc_canvas.axes.get_facecolor()) == light
    assert len(_legend_lines(res.roc_canvas.axes)) == len(ROC)  # redrawn, not lost

    # box plots: one per continuous variable, with the patients as dots
    assert [res.box_combo.itemText(i) for i in range(res.box_combo.count())] == [
        "age",
        "bmi",
        "vbq",
        "esmf_fi_pct",
        "ps_total_area",
    ]
    res.box_combo.setCurrentText("vbq")
    ax = res.box_canvas.axes
    assert ax.get_title() == "vbq"
    assert sum(len(c.get_offsets()) for c in ax.collections) == 213
    text = get_theme("light").text.as_hex()  # the black medians take the theme's text colour
    assert sum(to_hex(line.get_color()) == text for line in ax.lines) == 2

    # warnings: the expected-count warning of trauma_severity
    assert res.warnings_list.count() == len(expected.warnings) > 0
    assert res.tabs.tabText(5) == f"Warnings ({len(expected.warnings)})"
    assert (
        "warning",
        f"statistics: {len(expected.warnings)} warning(s), see the Warnings tab. First: {expected.warnings[0]}",
    ) in dock.messages
    assert dock.reliability is None and "no measurements" in res.ba_canvas.message
    _no_nan(dock)
    # determinate progress, one step per stage of the analysis
    assert dock.progress.maximum() == 6 and dock.progress.value() == 6

    # export: the CLI's files plus the figures shown
    out = tmp_path / "export"
    written = dock.export(out, wait=True)
    names = {p.name for p in written}
    # every figure, not only those on screen
    assert {
        "comparison.csv",
        "logistic.csv",
        "roc.csv",
        "results.json",
        "report.html",
        "roc.png",
        "boxplots_1.png",
    } <= names
    assert dock.progress.value() == dock.progress.maximum() > 1  # determinate progress
    assert all(p.exists() and p.stat().st_size > 0 for p in written)
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "roc.csv"), pd.read_csv(_csv(expected.roc.table, tmp_path)), check_dtype=False
    )
    assert dock.messages[-1] == ("info", f"wrote {len(written)} files to {out}")


def _csv(frame, tmp_path):
    path = tmp_path / "expected.csv"
    frame.to_csv(path, index=False)
    return path


# --------------------------------------------------------------------------
# Shared measurements: merge, reliability, Bland–Altman
# --------------------------------------------------------------------------


def _rect(shape, top, left, height, width):
    mask = np.zeros(shape, bool)
    mask[top : top + height, left : left + width] = True
    return mask


def _measurement_rows(n=12, observers=("A", "B"), seed=3):
    """Valid contract-3 rows measured from rectangles; A draws a little larger. MF has no fat."""
    from napari_pvm.core.measure import measure_masks, rois_present

    rng = np.random.default_rng(seed)
    size = rng.integers(12, 24, size=(n, 3))
    fat_rows = rng.integers(1, 8, size=n)
    shape = (40, 160)
    rows = []
    for j, observer in enumerate(observers):
        for i in range(n):
            masks, fat = {}, np.zeros(shape, bool)
            for s, side in enumerate(("L", "R")):
                for m, muscle in enumerate(("PS", "ES", "MF")):
                    h = int(size[i, m] + rng.integers(-1, 2) + (1 if j == 0 else 0))
                    w = int(size[i, m] + rng.integers(-1, 2))
                    masks[f"{muscle}_{side}"] = _rect(shape, 1, 80 * s + 26 * m, h, w)
                    if muscle == "ES":
                        fat |= _rect(shape, 1, 80 * s + 26 * m, int(fat_rows[i] + rng.integers(0, 2)), w)
            row = measure_masks(masks, fat, spacing=(0.7, 0.7))
            row.update(
                patient_id=f"{i:03d}",
                observer_id=observer,
                session="read1",
                level="L4",
                slice_index=16,
                row_spacing_mm=0.7,
                col_spacing_mm=0.7,
                image_sha256=f"{i:064x}",
                method="random_forest",
                features_preset="weka",
                n_trees=200,
                seed=0,
                class_balance="balanced",
                rois_present=rois_present(masks),
                software_version="0.0.test",
            )
            rows.append(row)
    return rows


@pytest.fixture
def shared(tmp_path):
    from napari_pvm.core.store import append_rows

    path = tmp_path / "measurements.csv"
    append_rows(path, _measurement_rows())
    clinical = pd.DataFrame(
        {"patient_id": [f"{i:03d}" for i in range(12)], "lbp": [0, 1] * 6, "age": np.linspace(55, 80, 12).round(1)}
    )
    cpath = tmp_path / "clinical.csv"
    clinical.to_csv(cpath, index=False)
    return cpath, path


def test_merged_measurements_reliability_and_bland_altman(dock, qtbot, shared, tmp_path):
    res = dock.results
    from napari_pvm.core.stats.reliability import reliability_table
    from napari_pvm.core.stats.input import read_measurements

    cpath, mpath = shared
    dock.load_table(cpath)
    assert dock.load_measurements(mpath)
    assert [dock.observer_combo.itemData(i) for i in range(dock.observer_combo.count())] == ["mean", "A", "B"]
    assert dock.outcome == "lbp"
    assert "ESMF_B_fi_pct" in dock.grid.names  # merged measure columns are listed
    assert dock.grid.state()["MF_L_fi_pct"][0] == views.OFF  # constant 0: left out
    for name in dock.grid.names:
        dock.grid.set(name, table2=views.OFF)
    dock.grid.set("age", table2="continuous")
    dock.grid.set("ESMF_B_fi_pct", table2="continuous")
    dock.grid.set("PS_B_total_area_cm2", table2="continuous", roc=True)
    dock.observer_combo.setCurrentIndex(2)  # observer B
    _run(qtbot, dock)
    expected = analyse(
        cpath,
        "lbp",
        continuous=["age", "PS_B_total_area_cm2", "ESMF_B_fi_pct"],
        roc=["PS_B_total_area_cm2"],
        measurements=mpath,
        observer="B",
    )
    assert dock.result.settings["observer"] == "B"
    assert _column(res.comparison_table, "P") == [format_p(p) for p in expected.comparison.table["p"]]

    # the reliability table: one row per measure, the core's numbers, notes for what cannot be computed
    rel = reliability_table(read_measurements(mpath))
    assert _column(res.reliability_table, "Measure") == list(rel["measure"])
    icc = _column(res.reliability_table, "ICC(2,1) (95% CI)")
    area = list(rel["measure"]).index("PS_B_total_area_cm2")
    r = rel.iloc[area]
    assert icc[area] == f"{r['icc2_1']:.3f} ({r['icc2_1_ci_low']:.3f}–{r['icc2_1_ci_high']:.3f})"
    const = list(rel["measure"]).index("MF_L_fi_pct")
    assert icc[const] == "–" and "constant" in _column(res.reliability_table, "Note")[const]
    _no_nan(dock)

    # Bland–Altman of the first analysed measure, one dot per patient; a constant measure says why
    assert res.measure_combo.currentText() == "PS_B_total_area_cm2"
    ax = res.ba_canvas.axes
    assert len(ax.collections[0].get_offsets()) == 12
    assert "PS_B_total_area_cm2" in ax.get_title()
    res.measure_combo.setCurrentText("MF_L_fi_pct")
    assert not res.ba_canvas.has_plot and "constant" in res.ba_canvas.message
    res.measure_combo.setCurrentText("ESMF_B_fi_pct")
    assert res.ba_canvas.has_plot

    written = {p.name for p in dock.export(tmp_path / "out", wait=True)}
    assert {"reliability.csv", "bland_altman_ESMF_B_fi_pct.png", "roc.png", "report.html"} <= written
    # every Bland–Altman plot that can be drawn, and a note on those that cannot
    drawable = rel.loc[rel["icc2_1"].notna(), "measure"]
    assert {f"bland_altman_{m}.png" for m in drawable} <= written
    assert "figures_not_drawn.txt" in written
    exported = pd.read_csv(tmp_path / "out" / "reliability.csv")
    assert exported["icc2_1"].iloc[area] == pytest.approx(r["icc2_1"], rel=1e-12)


def test_reliability_from_the_measurements_alone(dock, qtbot, shared, tmp_path):
    res = dock.results
    _, mpath = shared
    dock.load_measurements(mpath)
    assert dock.run_button.isEnabled()
    _run(qtbot, dock)
    assert dock.result is None and dock.reliability is not None
    assert res.tabs.tabText(res.tabs.currentIndex()) == "Reliability"
    assert res.reliability_table.rowCount() == len(dock.reliability) > 0
    # how the outlines were made (proposals shared by observers inflate agreement)
    assert "A: 0 drawn, 0 proposed, 0 edited, 72 not recorded" in res.reliability_note.text()  # no outline_origin
    assert res.ba_canvas.has_plot
    written = {p.name for p in dock.export(tmp_path / "rel", wait=True)}
    assert "reliability.csv" in written and any(n.startswith("bland_altman_") for n in written)


# --------------------------------------------------------------------------
# Bad input: a notification, no traceback, no result shown
# --------------------------------------------------------------------------

_BASE = ["patient_id", "residual_lbp", "vbq", "age"]


@pytest.mark.parametrize(
    "mutate, setup, message",
    [
        (lambda t: t.assign(residual_lbp=1), {"outcome": "residual_lbp"}, "one class only"),
        (lambda t: t.assign(residual_lbp=np.arange(len(t)) % 3), {"outcome": "residual_lbp"}, "exactly two"),
        (lambda t: t.head(3), {}, "too few patients"),
        (
            lambda t: t.assign(vbq=t["vbq"].astype(str).where(t.index != 4, "2,5")),
            {"vbq": "continuous"},
            r"non-numeric value.*'2,5' \(patient P005\)",
        ),
        (lambda t: t.assign(const=1.0), {"const": "continuous"}, "no variance"),
        (
            lambda t: t.assign(residual_lbp=t["residual_lbp"].map({0: "none", 1: "pain"})),
            {},
            "choose the event value in the Event box",
        ),
        (lambda t: t, {"vbq": views.OFF, "age": views.OFF}, "at least one variable for Table 2"),
    ],
    ids=["one-class", "three-classes", "too-few", "non-numeric", "no-variance", "no-event", "no-variables"],
)
def test_bad_input_gives_a_notification(dock, qtbot, tmp_path, mutate, setup, message):
    res = dock.results
    path = tmp_path / "bad.csv"
    mutate(pd.read_csv(COHORT, usecols=_BASE)).to_csv(path, index=False)
    dock.load_table(path)
    setup = dict(setup)
    if "outcome" in setup:
        dock.outcome_combo.setCurrentText(setup.pop("outcome"))
    for name, kind in setup.items():
        if kind != views.OFF:
            assert dock.grid.state()[name][0] == views.OFF  # detected as unusable: off, with the reason
            assert "cannot be analysed" in dock.grid.item(dock.grid.names.index(name), 0).toolTip()
        dock.grid.set(name, table2=kind)
    worker = dock.run()
    if worker is not None:
        qtbot.waitUntil(lambda: dock._worker is None, timeout=30_000)
    assert dock.messages, "no notification"
    level, text = dock.messages[-1]
    assert level == "warning" and re.search(message, text), text
    assert "--" not in text and "Traceback" not in text
    assert dock.result is None and res.comparison_table.rowCount() == 0
    assert not dock.export_button.isEnabled() and dock.run_button.isEnabled()


def test_missing_outcome_values_are_a_warning_not_an_error(dock, qtbot, tmp_path):
    res = dock.results
    t = pd.read_csv(COHORT, usecols=_BASE)
    t.loc[[3, 7, 11], "residual_lbp"] = np.nan
    path = tmp_path / "missing.csv"
    t.to_csv(path, index=False)
    dock.load_table(path)
    _run(qtbot, dock)
    assert dock.result.outcome["n"] == 210
    assert "3 without a value left out" in res.summary_label.text()
    items = [res.warnings_list.item(i).text() for i in range(res.warnings_list.count())]
    assert any("3 patient(s) without a value of residual_lbp" in w for w in items)
    assert dock.messages[-1][0] == "warning"
    _no_nan(dock)


def test_an_unexpected_error_is_a_notification(dock, qtbot, cohort, monkeypatch):
    res = dock.results
    import napari_pvm.core.stats as stats

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(stats, "analyse", broken)
    dock.load_table(cohort)
    _run(qtbot, dock)
    assert dock.messages[-1] == ("error", "statistics failed (RuntimeError: boom)")
    assert dock.result is None and "No result" in res.roc_canvas.message


def test_export_errors_are_notifications(dock, qtbot, monkeypatch, tmp_path):
    import napari_pvm.core.stats.report as report

    small = tmp_path / "small.csv"  # few variables: few figures to draw
    pd.read_csv(COHORT, usecols=["patient_id", "residual_lbp", "age"], dtype=str).to_csv(small, index=False)
    assert dock.load_table(small)
    _run(qtbot, dock)
    (tmp_path / "a_file").write_text("")
    assert dock.export(tmp_path / "a_file" / "out", wait=True) == []
    level, message = dock.messages[-1]
    assert level == "warning" and "cannot create or write the output folder" in message

    def broken(result, out_dir):
        yield 0, 1, "start"
        raise RuntimeError("boom")  # a generator worker would take it for an aborted thread

    monkeypatch.setattr(report, "export_steps", broken)
    assert dock.export(tmp_path / "out", wait=True) == []
    assert dock.messages[-1] == ("error", "export failed (RuntimeError: boom)")
    assert dock.export_button.isEnabled()


def _luminance(rgb):
    def lin(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = rgb
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_warnings_are_readable_in_both_themes(dock, qtbot, theme):
    dock.viewer.theme = theme
    listing = dock.results.warnings_list
    listing.addItems([f"warning {i}: a patient without a value of the outcome was left out" for i in range(6)])
    listing.resize(420, 260)
    image = listing.viewport().grab().toImage()
    pixels = np.array(
        [[image.pixelColor(x, y).getRgb()[:3] for x in range(0, image.width(), 2)] for y in range(0, image.height(), 2)]
    ).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    # every row's background (no alternating light rows) and the text on it
    backgrounds = [tuple(c) for c, n in zip(colours, counts) if n > 0.05 * len(pixels)]
    text = max((tuple(c) for c in colours), key=lambda c: abs(_luminance(c) - _luminance(backgrounds[0])))
    for bg in backgrounds:
        light, dark = sorted((_luminance(bg), _luminance(text)), reverse=True)
        assert (light + 0.05) / (dark + 0.05) >= 4.5, (theme, bg, text)  # WCAG AA contrast


def test_session_box_picks_the_reading_and_flagged_rows_can_be_left_out(dock, qtbot, shared):
    from napari_pvm.core.store import append_rows

    cpath, mpath = shared
    repeat = [dict(r, session="read2") for r in _measurement_rows(n=4, observers=("A",))]
    append_rows(mpath, repeat)
    dock.load_table(cpath)
    dock.load_measurements(mpath)
    sessions = [dock.session_combo.itemText(i) for i in range(dock.session_combo.count())]
    assert sessions == ["read1", "read2"] and dock.session == "read1"  # the first reading by default
    for name in dock.grid.names:
        dock.grid.set(name, table2=views.OFF)
    dock.grid.set("PS_B_total_area_cm2", table2="continuous")
    dock.flagged_check.setChecked(True)
    kwargs = dock.analysis_kwargs()
    assert kwargs["session"] == "read1" and kwargs["exclude_flagged"] is True
    dock.session_combo.setCurrentText("read2")
    _run(qtbot, dock)
    expected = analyse(
        cpath, "lbp", continuous=["PS_B_total_area_cm2"], measurements=mpath, session="read2", exclude_flagged=True
    )
    assert dock.result.settings["session"] == "read2"
    assert _column(dock.results.comparison_table, "P") == [format_p(p) for p in expected.comparison.table["p"]]
