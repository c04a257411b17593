"""Text and HTML reports of a :class:`~napari_pvm.core.stats.StatsResult`.

:func:`text_report` gives plain-text tables in the layout of the seed
paper's Table 2, Table 3 and ROC results (what ``napari-pvm stats`` prints);
:func:`html_report` gives one self-contained HTML page with the same tables
and the figures as base64 PNG; :func:`write_outputs` writes that page, every
table as CSV and the JSON into a folder. Every cell of the HTML is escaped.
"""

import base64
import html
import math
import re
from pathlib import Path

from .format import format_ci, format_number, format_p, format_ratio, is_number
from .roc import AUC_CI_METHOD

__all__ = [
    "comparison_rows",
    "export_size",
    "export_steps",
    "figures",
    "html_report",
    "logistic_rows",
    "origin_lines",
    "reliability_rows",
    "reliability_text",
    "roc_rows",
    "text_report",
    "write_outputs",
]

_TEST_NAMES = {
    "student": "Student t",
    "welch": "Welch t",
    "mannwhitney": "Mann–Whitney U",
    "chi2": "Pearson χ²",
}
_BOXES_PER_FIGURE = 12
_MAX_BLAND_ALTMAN = 6


# --------------------------------------------------------------------------
# Number formatting
# --------------------------------------------------------------------------


_ok = is_number
_num = format_number
_ratio = format_ratio


def _decimals(sd):
    if not _ok(sd) or sd <= 0 or sd >= 0.1:
        return 2
    return int(min(6, 1 - math.floor(math.log10(sd))))


def _mean_sd(mean, sd):
    d = _decimals(sd)
    return f"{_num(mean, d)} ± {_num(sd, d)}"


def _median_iqr(med, q1, q3, sd):
    d = _decimals(sd)
    return f"{_num(med, d)} [{_num(q1, d)}, {_num(q3, d)}]"


def _count(n, pct):
    return f"{n} ({pct:.1f}%)" if _ok(pct) else str(n)


def _statistic(row):
    test = row["test"]
    if test in ("student", "welch"):
        df = row[f"{test}_df"]
        df_txt = f"{df:.0f}" if test == "student" else f"{df:.1f}"
        return f"t = {_num(row[f'{test}_t'])} (df {df_txt})" if _ok(row[f"{test}_t"]) else "–"
    if test == "mannwhitney":
        if not _ok(row["mannwhitney_u"]):
            return "–"
        return f"U = {_num(row['mannwhitney_u'], 1)}, Z = {_num(row['mannwhitney_z'], 3)}"
    if not _ok(row["chi2"]):
        return "–"
    return f"χ² = {_num(row['chi2'])} (df {int(row['df'])})"


# --------------------------------------------------------------------------
# Table contents (shared by text and HTML)
# --------------------------------------------------------------------------


def comparison_rows(result):
    """Table 2 as (header, rows); a cell may hold several lines."""
    o = result.outcome
    lab0, lab1 = result.group_labels
    header = [
        "Variable",
        f"{lab0} (n={o['n_0']})",
        f"{lab1} (n={o['n_1']})",
        "Difference (95% CI)",
        "Test",
        "Statistic",
        "P",
        "Fisher P",
    ]
    levels = result.comparison.levels
    rows = []
    for r in result.comparison.table.to_dict("records"):
        name = r["variable"] + (f" (n missing {r['n_missing']})" if r["n_missing"] else "")
        if r["type"] == "continuous":
            c0 = [_mean_sd(r["mean_0"], r["sd_0"])]
            c1 = [_mean_sd(r["mean_1"], r["sd_1"])]
            if r["test"] == "mannwhitney":
                c0.append(_median_iqr(r["median_0"], r["q1_0"], r["q3_0"], r["sd_0"]))
                c1.append(_median_iqr(r["median_1"], r["q1_1"], r["q3_1"], r["sd_1"]))
            d = _decimals(min(r["sd_0"], r["sd_1"]) if _ok(r["sd_0"]) and _ok(r["sd_1"]) else None)
            diff = (
                f"{_num(r['mean_diff'], d)} ({_num(r['mean_diff_ci_low'], d)} to {_num(r['mean_diff_ci_high'], d)})"
                if _ok(r["mean_diff_ci_low"])
                else _num(r["mean_diff"], d)
            )
            rows.append([[name], c0, c1, [diff], [_TEST_NAMES[r["test"]]], [_statistic(r)], [format_p(r["p"])], [""]])
        else:
            lv = levels[levels["variable"] == r["variable"]]
            names = [name] + [f"  {x}" for x in lv["level"]]
            c0 = [""] + [_count(a, p) for a, p in zip(lv["count_0"], lv["pct_0"], strict=True)]
            c1 = [""] + [_count(a, p) for a, p in zip(lv["count_1"], lv["pct_1"], strict=True)]
            fisher = format_p(r["fisher_p"]) if _ok(r["fisher_p"]) else ""
            if fisher and r["n_cells_below_5"]:
                fisher += " *"
            rows.append([names, c0, c1, [""], [_TEST_NAMES["chi2"]], [_statistic(r)], [format_p(r["p"])], [fisher]])
    return header, rows


def logistic_rows(result):
    header = ["Variable", "B", "S.E.", "Wald", "df", "Sig.", "Exp(B)", "95% CI for Exp(B)", "VIF"]
    rows = []
    for r in result.logistic.rows.to_dict("records"):
        name = r["variable"]
        if isinstance(r["reference"], str) and r["variable"] != r["covariate"]:
            name += f" (vs {r['reference']})"
        ci = f"{_ratio(r['ci_low'])}–{_ratio(r['ci_high'])}" if _ok(r["ci_low"]) else "–"
        rows.append(
            [
                [name],
                [_num(r["B"])],
                [_num(r["SE"])],
                [_num(r["wald"])],
                [str(r["df"])],
                [format_p(r["p"])],
                [_ratio(r["OR"])],
                [ci],
                [_num(r["vif"], 2)],
            ]
        )
    return header, rows


def roc_rows(result):
    header = ["Variable", "Positive if", "AUC", "SE", "95% CI", "P", "Cut-off", "Sensitivity", "Specificity", "J"]
    rows = []
    for r in result.roc.table.to_dict("records"):
        rows.append(
            [
                [r["variable"]],
                [f"{r['direction']} cut-off"],
                [_num(r["auc"])],
                [_num(r["auc_se"])],
                [f"{_num(r['auc_ci_low'])}–{_num(r['auc_ci_high'])}"],
                [format_p(r["auc_p"])],
                [f"{r['cutoff']:.4f}".replace("-", "−")],
                [f"{_num(r['sensitivity'])} ({r['tp']}/{r['tp'] + r['fn']})"],
                [f"{_num(r['specificity'])} ({r['tn']}/{r['tn'] + r['fp']})"],
                [_num(r["youden_j"])],
            ]
        )
    return header, rows


def _range(low, high, sep="–"):
    return format_ci(low, high, sep=sep)


def reliability_rows(result):
    rel = result.reliability
    header = ["Measure", "n", "ICC(2,1)", "95% CI", "ICC(3,1)", "Bias", "95% limits of agreement", "Note"]
    rows = []
    for r in rel.table.to_dict("records"):
        g = r.get
        note = g("note")
        rows.append(
            [
                [str(g("measure"))],
                [str(g("n"))],
                [_num(g("icc2_1"))],
                [_range(g("icc2_1_ci_low"), g("icc2_1_ci_high"))],
                [_num(g("icc3_1"))],
                [_num(g("bias"))],
                [_range(g("loa_low"), g("loa_high"), " to ")],
                [note if isinstance(note, str) else ""],
            ]
        )
    return header, rows


# --------------------------------------------------------------------------
# Plain text
# --------------------------------------------------------------------------


def _text_table(header, rows):
    cells = [[[h] for h in header]] + rows
    ncol = len(header)
    widths = [max(len(line) for row in cells for line in row[c]) for c in range(ncol)]
    out = []

    def emit(row):
        height = max(len(c) for c in row)
        for i in range(height):
            parts = [(row[c][i] if i < len(row[c]) else "").ljust(widths[c]) for c in range(ncol)]
            out.append("  ".join(parts).rstrip())

    emit(cells[0])
    out.append("  ".join("-" * w for w in widths))
    for row in rows:
        emit(row)
    return "\n".join(out)


def text_report(result):
    """Plain-text tables of the result (Table 2, Table 3, ROC, reliability).

    Parameters
    ----------
    result : StatsResult

    Returns
    -------
    str
    """
    o = result.outcome
    parts = [
        f"Outcome {o['column']}: event = {o['event']!r} (n={o['n_1']}), "
        f"no event = {o['non_event']!r} (n={o['n_0']})"
        + (f"; {o['n_missing']} without a value left out" if o["n_missing"] else ""),
        "",
        "Group comparison (Table 2): mean ± SD; median [Q1, Q3] when Mann–Whitney is used; "
        "n (% of group) for categories",
        _text_table(*comparison_rows(result)),
        "Test rule: Mann–Whitney when either group's Shapiro–Wilk P < 0.05, else Welch when "
        "Levene's P < 0.05, else Student. Difference = mean of group 0 − mean of group 1, with "
        "the 95% CI of Welch's t when Levene's P < 0.05, else of Student's. χ² is Pearson's "
        "without continuity correction; * an expected count is below 5 (quote Fisher's exact P).",
    ]
    if result.logistic is not None:
        s = result.logistic.summary
        parts += ["", "Binary logistic regression (Table 3), method Enter", _text_table(*logistic_rows(result))]
        line = f"n = {s['n']}, events = {s['events']}, events per variable = {s['epv']:.1f}"
        if _ok(s.get("minus2ll")):
            line += (
                f"; −2 log likelihood = {s['minus2ll']:.3f}; Cox & Snell R² = {s['cox_snell_r2']:.3f}; "
                f"Nagelkerke R² = {s['nagelkerke_r2']:.3f}; model χ² = {s['model_chi2']:.3f} "
                f"(df {s['model_df']}, P {format_p(s['model_p'])})"
            )
        parts.append(line)
        hl = result.logistic.hosmer_lemeshow
        if hl is not None:
            parts.append(f"Hosmer–Lemeshow χ² = {hl['chi2']:.3f} (df {hl['df']}), P = {format_p(hl['p'])}")
        cls = result.logistic.classification
        if not cls.empty:
            c = cls.to_dict("records")
            parts.append(
                "Classification at 0.5: observed 0 → predicted 0/1 = "
                f"{c[0]['predicted_0']:.0f}/{c[0]['predicted_1']:.0f} ({c[0]['percent_correct']:.1f}% correct); "
                f"observed 1 → {c[1]['predicted_0']:.0f}/{c[1]['predicted_1']:.0f} "
                f"({c[1]['percent_correct']:.1f}% correct); overall {c[2]['percent_correct']:.1f}%"
            )
        for t in result.logistic.terms.to_dict("records"):
            parts.append(f"{t['variable']}: Wald = {t['wald']:.3f} (df {t['df']}), P = {format_p(t['p'])}")
    if result.roc is not None:
        parts += [
            "",
            "ROC analysis (Figure 2): Youden cut-off = midpoint between adjacent observed values",
            _text_table(*roc_rows(result)),
            f"AUC CI: {AUC_CI_METHOD}.",
        ]
    if result.reliability is not None:
        parts += ["", "Inter-observer reliability", _text_table(*reliability_rows(result))]
        parts += origin_lines(result.reliability)
    parts += _source_lines(result)
    if result.warnings:
        parts += ["", "Warnings:"] + [f"- {w}" for w in result.warnings]
    return "\n".join(parts)


# --------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:72em;color:#222}
table{border-collapse:collapse;margin:0.6em 0 1.2em 0;font-size:0.9em}
th,td{padding:0.25em 0.7em;text-align:left;vertical-align:top;border-bottom:1px solid #ddd}
th{border-bottom:2px solid #888}
td.n{font-variant-numeric:tabular-nums}
.warn li{color:#8a4b00}
figure{display:inline-block;margin:0.5em}
figcaption{font-size:0.85em;color:#555}
"""


def _html_table(header, rows):
    e = html.escape
    out = ["<table>", "<tr>" + "".join(f"<th>{e(str(h))}</th>" for h in header) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join("<td>" + "<br>".join(e(str(x)) for x in cell) + "</td>" for cell in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _source_lines(result):
    """What measurement rows were used: session, level, quality flags."""
    st = result.settings
    if st.get("observer") is None:
        return []
    line = (
        f"Measurements: session {st.get('session')!r}"
        + (f", level {st['level']!r}" if st.get("level") else "")
        + ("; the mean of the observers" if st.get("observer") == "mean" else f"; observer {st.get('observer')!r}")
    )
    line += (
        "; rows with quality flags left out (after choosing the latest row of each reading)"
        if st.get("exclude_flagged")
        else "; rows with quality flags included"
    )
    return ["", line + "."]


def origin_lines(rel):
    """How the outlines of each observer were made (proposals inflate agreement)."""
    origins = getattr(rel, "origins", None)
    if origins is None or origins.empty:
        return []
    parts = []
    for r in origins.to_dict("records"):
        text = f"{r['rater']}: {r['drawn']} drawn, {r['proposed']} proposed, {r['edited']} edited"
        if r["not_recorded"]:
            text += f", {r['not_recorded']} not recorded"
        parts.append(text)
    return [
        "Outlines of the rows compared (proposed outlines shared by observers inflate agreement): "
        + "; ".join(parts)
        + "."
    ]


def _img(fig, caption):
    from .plots import figure_png

    data = base64.b64encode(figure_png(fig)).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _boxplot_figures(result):
    from matplotlib.figure import Figure

    from .plots import group_boxplot

    names = [r["variable"] for r in result.comparison.table.to_dict("records") if r["type"] == "continuous"]
    out = []
    for number, start in enumerate(range(0, len(names), _BOXES_PER_FIGURE), start=1):
        chunk = names[start : start + _BOXES_PER_FIGURE]
        ncols = min(4, len(chunk))
        nrows = math.ceil(len(chunk) / ncols)
        fig = Figure(figsize=(3.0 * ncols, 3.0 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        labels = (str(result.outcome["non_event"]), str(result.outcome["event"]))
        for ax, name in zip(axes, chunk, strict=False):
            group_boxplot(result.data, name, result.y, labels=labels, ax=ax)
            ax.set_xlabel(result.outcome["column"], fontsize=8)
        for ax in axes[len(chunk) :]:
            ax.set_visible(False)
        out.append((f"boxplots_{number}", f"Box plots by {result.outcome['column']}: " + ", ".join(chunk), fig))
    return out


def _bland_altman_measures(result):
    """Measures of the reliability table, those analysed in the tables first."""
    measures = list(result.reliability.table["measure"])
    used = list(result.types)
    if result.logistic is not None:
        used += [c for c in result.logistic.rows["covariate"] if isinstance(c, str)]
    if result.roc is not None:
        used += list(result.roc.table["variable"])
    analysed = [c for c in dict.fromkeys(used) if c in measures]
    return analysed + [m for m in measures if m not in analysed]


def figures(result, *, bland_altman=None):
    """Every figure of a result as ``(name, caption, draw)`` in report order.

    ``draw()`` makes the :class:`matplotlib.figure.Figure` (or a list of
    ``(name, caption, Figure)`` for the box plots, several per figure) only
    when called, so a caller can report progress per figure; it raises
    :class:`~napari_pvm.core.errors.PvmError` when a plot cannot be drawn
    (the message says why).

    Parameters
    ----------
    result : StatsResult or ReliabilityResult
    bland_altman : int, optional
        Draw at most this many Bland–Altman plots (the measures analysed in
        the tables first); default all.
    """
    from .plots import bland_altman_plot, new_axes, roc_plot
    from .reliability import ReliabilityResult

    out = []
    rel = result if isinstance(result, ReliabilityResult) else result.reliability
    if not isinstance(result, ReliabilityResult):
        if result.roc is not None:
            out.append(("roc", "ROC curves", lambda: roc_plot(result.roc).figure))
        if any(t == "continuous" for t in result.comparison.table.get("type", [])):
            out.append(("boxplots", "Box plots", lambda: _boxplot_figures(result)))
    if rel is not None:
        measures = list(rel.table["measure"]) if rel is result else _bland_altman_measures(result)
        for m in measures if bland_altman is None else measures[:bland_altman]:
            out.append(
                (
                    f"bland_altman_{m}",
                    f"Bland–Altman: {m}",
                    lambda m=m: bland_altman_plot(rel, m, ax=new_axes((5.0, 3.8))).figure,
                )
            )
    return out


def _draw(item):
    """``([(name, caption, Figure)], note or None)`` of one entry of :func:`figures`."""
    from ..errors import PvmError

    name, caption, draw = item
    try:
        made = draw()
    except PvmError as exc:
        return [], f"{caption} not drawn: {exc}"
    return (made if isinstance(made, list) else [(name, caption, made)]), None


def _rendered(result, *, bland_altman=None):
    """Draw every figure: ``[(name, caption, Figure)]`` and notes on those not drawn."""
    drawn, notes = [], []
    for item in figures(result, bland_altman=bland_altman):
        made, note = _draw(item)
        drawn += made
        notes += [note] if note else []
    return drawn, notes


def html_report(result, *, figures=True, title="napari-pvm statistics", drawn=None):
    """One self-contained HTML page with every table and figure.

    Parameters
    ----------
    result : StatsResult
    figures : bool, optional
        Include the figures (ROC curves, box plots, Bland–Altman) as base64
        PNG.
    title : str, optional
    drawn : list, optional
        Figures already drawn (``[(name, caption, Figure)]``), so
        :func:`write_outputs` draws each once.

    Returns
    -------
    str
    """
    e = html.escape
    o = result.outcome
    body = [
        f"<h1>{e(title)}</h1>",
        f"<p>Outcome <b>{e(o['column'])}</b>: event = {e(str(o['event']))} (n = {o['n_1']}), "
        f"no event = {e(str(o['non_event']))} (n = {o['n_0']})"
        + (f"; {o['n_missing']} patient(s) without a value left out" if o["n_missing"] else "")
        + ".</p>",
    ]
    extra_notes = []
    if drawn is None:
        drawn, extra_notes = _rendered(result, bland_altman=_MAX_BLAND_ALTMAN) if figures else ([], [])
    body += [
        "<h2>Group comparison (Table 2)</h2>",
        "<p>Mean ± SD; median [Q1, Q3] (SPSS weighted-average percentiles) when Mann–Whitney is "
        "used; n (% of group) for categories. Test rule: Mann–Whitney U when either group's "
        "Shapiro–Wilk P &lt; 0.05, else Welch's t when Levene's (mean-centred) P &lt; 0.05, else "
        "Student's t; t and the difference = mean of group 0 − mean of group 1 (95% CI of Welch's t "
        "when Levene's P &lt; 0.05, else of Student's). χ² is Pearson's without continuity "
        "correction; * an expected count is below 5 (quote Fisher's exact P).</p>",
        _html_table(*comparison_rows(result)),
    ]
    if result.logistic is not None:
        s = result.logistic.summary
        body += ["<h2>Binary logistic regression (Table 3)</h2>", _html_table(*logistic_rows(result))]
        facts = [f"n = {s['n']}", f"events = {s['events']}", f"events per variable = {s['epv']:.1f}"]
        if _ok(s.get("minus2ll")):
            facts += [
                f"−2 log likelihood = {s['minus2ll']:.3f}",
                f"Cox & Snell R² = {s['cox_snell_r2']:.3f}",
                f"Nagelkerke R² = {s['nagelkerke_r2']:.3f}",
                f"omnibus χ² = {s['model_chi2']:.3f} (df {s['model_df']}, P {format_p(s['model_p'])})",
            ]
        hl = result.logistic.hosmer_lemeshow
        if hl is not None:
            facts.append(f"Hosmer–Lemeshow χ² = {hl['chi2']:.3f} (df {hl['df']}, P {format_p(hl['p'])})")
        body.append("<p>" + e("; ".join(facts)) + ".</p>")
        cls = result.logistic.classification
        if not cls.empty:
            c = cls.to_dict("records")
            cells = [
                [
                    [str(g)],
                    [f"{c[g]['predicted_0']:.0f}"],
                    [f"{c[g]['predicted_1']:.0f}"],
                    [f"{c[g]['percent_correct']:.1f}"],
                ]
                for g in (0, 1)
            ]
            cells.append([["Overall"], [""], [""], [f"{c[2]['percent_correct']:.1f}"]])
            body.append(_html_table(["Observed", "Predicted 0", "Predicted 1", "% correct"], cells))
        if result.logistic.warnings:
            body.append('<ul class="warn">' + "".join(f"<li>{e(w)}</li>" for w in result.logistic.warnings) + "</ul>")
    if result.roc is not None:
        body += [
            "<h2>ROC analysis (Figure 2)</h2>",
            _html_table(*roc_rows(result)),
            f"<p>{e('AUC CI: ' + AUC_CI_METHOD)}. Cut-off: the midpoint between adjacent observed "
            "values that maximises Youden's J (the lowest on a tie).</p>",
        ]
        body += [_img(fig, caption) for name, caption, fig in drawn if name == "roc"]
    boxes = [_img(fig, caption) for name, caption, fig in drawn if name.startswith("boxplots")]
    if boxes:
        body += ["<h2>Box plots by group</h2>", *boxes]
    if result.reliability is not None:
        body += ["<h2>Inter-observer reliability</h2>", _html_table(*reliability_rows(result))]
        body += [f"<p>{e(line)}</p>" for line in origin_lines(result.reliability)]
        body += [_img(fig, caption) for name, caption, fig in drawn if name.startswith("bland_altman")]
    body += [f"<p>{e(line)}</p>" for line in _source_lines(result) if line]
    shown = set(result.logistic.warnings) if result.logistic is not None else set()
    warnings = [w for w in result.warnings if w not in shown] + extra_notes
    if warnings:
        body += ["<h2>Warnings</h2>", '<ul class="warn">' + "".join(f"<li>{e(w)}</li>" for w in warnings) + "</ul>"]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def export_steps(result, out_dir):
    """Write every result file, one step at a time (a generator for progress bars).

    Yields ``(done, total, what)`` after each figure drawn and each file
    written, and returns the list of paths written. Every table goes to CSV,
    every figure to PNG (all of them: every Bland–Altman plot, every box
    plot), the JSON of ``--json`` to ``results.json``; a
    :class:`~napari_pvm.core.stats.StatsResult` also gets ``report.html``
    (and ``report.txt``), a reliability result ``reliability.txt``. Nothing
    is written before every figure is drawn, so a failure while computing
    leaves the folder untouched.

    Parameters
    ----------
    result : StatsResult or ReliabilityResult
    out_dir : str or Path
        Created when missing.

    Raises
    ------
    PvmError
        The folder cannot be created or written (the message suggests another).
    """
    from .._json import dumps
    from ..errors import PvmError
    from .plots import figure_png
    from .reliability import ReliabilityResult

    out_dir = Path(out_dir)
    todo = figures(result)
    is_rel = isinstance(result, ReliabilityResult)
    tables = _reliability_tables(result) if is_rel else result.tables()
    total = export_size(result)
    done = 0
    drawn, notes = [], []
    for item in todo:
        made, note = _draw(item)
        drawn += made
        notes += [note] if note else []
        done += 1
        yield done, total, item[1]
    from ..store import spreadsheet_safe

    # the tables carry the user's own text (variable names, category levels): never a formula
    contents = {f"{name}.csv": frame.map(spreadsheet_safe).to_csv(index=False) for name, frame in tables.items()}
    contents["results.json"] = dumps(result.to_dict(), indent=1) + "\n"
    if is_rel:
        contents["reliability.txt"] = reliability_text(result) + "\n"
    else:
        shown = [d for d in drawn if not d[0].startswith("bland_altman")]
        shown += [d for d in drawn if d[0].startswith("bland_altman")][:_MAX_BLAND_ALTMAN]
        contents["report.html"] = html_report(result, drawn=shown)
        contents["report.txt"] = text_report(result) + "\n"
    for name, _, fig in drawn:
        contents[f"{_file_name(name)}.png"] = figure_png(fig)
    if notes:
        contents["figures_not_drawn.txt"] = "\n".join(notes) + "\n"
    written = []
    for name, data in contents.items():
        path = out_dir / name
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            if isinstance(data, bytes):
                path.write_bytes(data)
            else:
                path.write_text(data, encoding="utf-8")
        except OSError as exc:
            raise PvmError(
                f"cannot create or write the output folder {out_dir} ({exc.strerror or exc}); "
                "choose another folder, one you can write to (in your home folder, say)"
            ) from None
        written.append(path)
        if not name.endswith(".png"):
            done = min(total, done + 1)
            yield done, total, name
    yield total, total, "done"
    return written


def export_size(result):
    """How many steps :func:`export_steps` yields (figures, files and the end)."""
    from .reliability import ReliabilityResult

    tables = _reliability_tables(result) if isinstance(result, ReliabilityResult) else result.tables()
    return len(figures(result)) + len(tables) + 3


def write_outputs(result, out_dir, *, progress=None):
    """Write every table as CSV, every figure as PNG, ``results.json`` and the report.

    The files of :func:`export_steps`.

    Parameters
    ----------
    result : StatsResult or ReliabilityResult
    out_dir : str or Path
        Created when missing.
    progress : callable, optional
        ``progress(done, total, what)`` after each figure and file.

    Returns
    -------
    list of Path
        The files written.
    """
    steps = export_steps(result, out_dir)
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(*step)


def _reliability_tables(result):
    out = {"reliability": result.table, "reliability_pairs": result.pairs}
    if not result.origins.empty:
        out["outline_origins"] = result.origins
    return out


def _file_name(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


# --------------------------------------------------------------------------
# Reliability report
# --------------------------------------------------------------------------


def _f(value, digits=3):
    return format_number(value, digits)


def _fci(value, low, high, digits=3):
    if _number_or_none(value) is None:
        return "–"
    if _number_or_none(low) is None or _number_or_none(high) is None:
        return f"{_f(value, digits)} [–]"
    return f"{_f(value, digits)} [{_f(low, digits)}, {_f(high, digits)}]"


def _grid(header, rows, right=()):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = []
    for cells in [header, *rows]:
        parts = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        lines.append("  ".join(parts).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def reliability_text(result, *, file=None):  # noqa: C901 (one report, read top to bottom)
    """Plain-text report of a :class:`~napari_pvm.core.stats.reliability.ReliabilityResult`.

    What ``napari-pvm reliability`` prints: the ICC table, the Bland–Altman
    table of every pair, how the outlines were made, which rows were left
    out, and notes.
    """
    table, pairs, attrs = result.table, result.pairs, dict(result.info)
    intra = attrs.get("mode") == "intra-observer"
    label = "session" if intra else "observer"
    raters = attrs.get("sessions" if intra else "observers", [])
    conf = f"{100 * (1 - attrs.get('alpha', 0.05)):g} %"
    lines = []
    if intra:
        lines.append(f"Intra-observer reliability of observer {attrs.get('observer')}" + (f": {file}" if file else ""))
        where = f"readings {', '.join(raters)}"
    else:
        lines.append("Inter-observer reliability" + (f": {file}" if file else ""))
        where = f"session {attrs.get('session')}; observers {', '.join(raters)}"
    if attrs.get("level"):
        where = f"level {attrs['level']}, " + where
    lines.append(where)
    counts = ", ".join(f"{r} {c}" for r, c in attrs.get("n_patients", {}).items())
    both = "both" if len(raters) == 2 else "all"
    lines.append(f"patients: {counts}; read by {both}: {attrs.get('n_patients_both')}")
    if attrs.get("table", "muscle") != "muscle":
        pass  # the spine table has no quality flags
    elif attrs.get("exclude_flagged"):
        lines.append(
            f"rows with quality flags left out (after choosing the latest row of each reading): "
            f"{attrs.get('n_flagged') or 0}"
        )
    else:
        lines.append("rows with quality flags included (leave them out with --exclude-flagged)")
    lines += origin_lines(result)
    lines.append("")

    notes = {}
    for _, row in table.iterrows():
        if _text(row["note"]):
            notes[row["measure"]] = f"[{len(notes) + 1}]"
    header = [
        "measure",
        "n",
        f"ICC(2,1) [{conf} CI]",
        "rating (Koo & Li, on the CI)",
        "ICC(3,1) [CI]",
        "ICC(2,k) [CI]",
        "P",
    ]
    body = []
    for _, r in table.iterrows():
        body.append(
            [
                r["measure"] + (" " + notes[r["measure"]] if r["measure"] in notes else ""),
                str(_count_text(r["n"])),
                _fci(r["icc2_1"], r["icc2_1_ci_low"], r["icc2_1_ci_high"]),
                _text(r["icc2_1_rating"]) or "–",
                _fci(r["icc3_1"], r["icc3_1_ci_low"], r["icc3_1_ci_high"]),
                _fci(r["icc2_k"], r["icc2_k_ci_low"], r["icc2_k_ci_high"]),
                format_p(r["p"]),
            ]
        )
    lines += _grid(header, body, right={1})
    lines.append("")

    method = "exact" if attrs.get("loa_ci", "exact") == "exact" else "approximate"
    header = [
        "measure",
        "pair",
        "n",
        f"bias [{conf} CI]",
        "limits of agreement",
        f"LoA {conf} CIs ({method})",
        "prop. bias slope (P)",
        "SEM",
        "MDC95",
    ]
    body = []
    first = {r["measure"]: r for _, r in table.iterrows()}
    for _, p in pairs.iterrows():
        t = first[p["measure"]]
        is_first = p[f"{label}_a"] == t[f"{label}_a"] and p[f"{label}_b"] == t[f"{label}_b"]
        loa = "–" if _number_or_none(p["loa_low"]) is None else f"{_f(p['loa_low'])} to {_f(p['loa_high'])}"
        loa_ci = "–"
        if _number_or_none(p["loa_low_ci_low"]) is not None:
            loa_ci = (
                f"[{_f(p['loa_low_ci_low'])}, {_f(p['loa_low_ci_high'])}] "
                f"[{_f(p['loa_high_ci_low'])}, {_f(p['loa_high_ci_high'])}]"
            )
        slope = "–"
        if _number_or_none(p["prop_bias_slope"]) is not None:
            slope = f"{_f(p['prop_bias_slope'])} ({format_p(p['prop_bias_p'])})"
        body.append(
            [
                p["measure"] + (" " + notes[p["measure"]] if p["measure"] in notes else ""),
                f"{p[f'{label}_a']} − {p[f'{label}_b']}",
                str(_count_text(p["n"])),
                _fci(p["bias"], p["bias_ci_low"], p["bias_ci_high"]),
                loa,
                loa_ci,
                slope,
                _f(t["sem"]) if is_first else "",
                _f(t["mdc95"]) if is_first else "",
            ]
        )
    lines += _grid(header, body, right={2})
    lines.append("")
    lines.append(
        "ICC(2,1): two-way random, absolute agreement, single observer; ICC(3,1): "
        "two-way mixed, consistency; ICC(2,k): mean of the observers. "
        "SEM = SD × √(1 − ICC(2,1)); MDC95 = 1.96 × √2 × SEM."
    )
    if notes:
        lines.append("")
        lines.append("Notes:")
        for measure, mark in notes.items():
            lines.append(f"{mark} {measure}: {first[measure]['note']}")
    return "\n".join(lines)


def _count_text(value):
    return str(int(value)) if is_number(value) else "–"


def _text(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _number_or_none(value):
    return float(value) if is_number(value) else None
