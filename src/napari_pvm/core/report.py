"""Text and HTML reports of a :class:`~napari_pvm.core.stats.StatsResult`.

:func:`text_report` gives plain-text tables in the layout of the seed
paper's Table 2, Table 3 and ROC results (what ``napari-pvm stats`` prints);
:func:`html_report` gives one self-contained HTML page with the same tables
and the figures as base64 PNG; :func:`write_outputs` writes that page, every
table as CSV and the JSON into a folder. Every cell of the HTML is escaped.
"""

import base64
import html
import json
import math
from pathlib import Path

from .stats import format_p
from .stats_roc import AUC_CI_METHOD

__all__ = ["html_report", "text_report", "write_outputs"]

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


def _ok(v):
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _num(v, d=3):
    return f"{v:.{d}f}".replace("-", "−") if _ok(v) else "–"


def _ratio(v):
    """An odds ratio: 3 decimals, or 3 significant digits when very small or large."""
    if not _ok(v):
        return "–"
    return (f"{v:.3g}" if v < 0.001 or v >= 1e5 else f"{v:.3f}").replace("-", "−")


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


def _comparison_rows(result):
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


def _logistic_rows(result):
    header = ["Variable", "B", "S.E.", "Wald", "df", "Sig.", "Exp(B)", "95% CI for Exp(B)", "VIF"]
    rows = []
    for r in result.logistic.rows.to_dict("records"):
        name = r["variable"]
        if isinstance(r["reference"], str) and r["variable"] != r["covariate"]:
            name += f" (vs {r['reference']})"
        ci = f"{_ratio(r['ci_low'])}–{_ratio(r['ci_high'])}" if _ok(r["ci_low"]) else "–"
        rows.append(
            [[name], [_num(r["B"])], [_num(r["SE"])], [_num(r["wald"])], [str(r["df"])],
             [format_p(r["p"])], [_ratio(r["OR"])], [ci], [_num(r["vif"], 2)]]
        )
    return header, rows


def _roc_rows(result):
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
    """Two bounds, or one "–" when either is missing."""
    return f"{_num(low)}{sep}{_num(high)}" if _ok(low) and _ok(high) else "–"


def _reliability_rows(result):
    rel = result.reliability
    header = ["Measure", "n", "ICC(2,1)", "95% CI", "ICC(3,1)", "Bias", "95% limits of agreement", "Note"]
    rows = []
    for r in rel.to_dict("records"):
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
        _text_table(*_comparison_rows(result)),
        "Test rule: Mann–Whitney when either group's Shapiro–Wilk P < 0.05, else Welch when "
        "Levene's P < 0.05, else Student. Difference = mean of group 0 − mean of group 1, with "
        "the 95% CI of Welch's t when Levene's P < 0.05, else of Student's. χ² is Pearson's "
        "without continuity correction; * an expected count is below 5 (quote Fisher's exact P).",
    ]
    if result.logistic is not None:
        s = result.logistic.summary
        parts += ["", "Binary logistic regression (Table 3), method Enter", _text_table(*_logistic_rows(result))]
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
            _text_table(*_roc_rows(result)),
            f"AUC CI: {AUC_CI_METHOD}.",
        ]
    if result.reliability is not None:
        parts += ["", "Inter-observer reliability", _text_table(*_reliability_rows(result))]
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


def _img(ax_or_fig, caption):
    from matplotlib.figure import Figure

    from .plots import figure_png

    fig = ax_or_fig if isinstance(ax_or_fig, Figure) else ax_or_fig.figure
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
    for start in range(0, len(names), _BOXES_PER_FIGURE):
        chunk = names[start : start + _BOXES_PER_FIGURE]
        ncols = min(4, len(chunk))
        nrows = math.ceil(len(chunk) / ncols)
        fig = Figure(figsize=(3.0 * ncols, 3.0 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        labels = (str(result.outcome["non_event"]), str(result.outcome["event"]))
        for ax, name in zip(axes, chunk, strict=False):
            group_boxplot(result.data, name, result.y, labels=labels, ax=ax)
            ax.set_xlabel(result.outcome["column"], fontsize=8)
        for ax in axes[len(chunk):]:
            ax.set_visible(False)
        out.append(_img(fig, f"Box plots by {result.outcome['column']}: " + ", ".join(chunk)))
    return out


def _bland_altman_figures(result):
    from .errors import PvmError

    try:
        from .reliability import bland_altman_plot
    except ImportError:
        return [], ["Bland–Altman plots not drawn: napari_pvm.core.reliability is not available"]
    from .plots import new_axes

    measures = list(result.reliability["measure"]) if "measure" in result.reliability else []
    used = list(result.types)
    if result.logistic is not None:
        used += [c for c in result.logistic.rows["covariate"] if isinstance(c, str)]
    if result.roc is not None:
        used += list(result.roc.table["variable"])
    analysed = [c for c in dict.fromkeys(used) if c in measures]
    chosen = (analysed or measures)[:_MAX_BLAND_ALTMAN]
    figs, notes = [], []
    for m in chosen:
        try:
            ax = bland_altman_plot(result.measurements, m, ax=new_axes((5.0, 3.8)), level=result.settings.get("level"))
        except PvmError as exc:
            notes.append(f"Bland–Altman plot of {m} not drawn: {exc}")
            continue
        figs.append(_img(ax, f"Bland–Altman: {m}"))
    return figs, notes


def html_report(result, *, figures=True, title="napari-pvm statistics"):
    """One self-contained HTML page with every table and figure.

    Parameters
    ----------
    result : StatsResult
    figures : bool, optional
        Include the figures (ROC curves, box plots, Bland–Altman) as base64
        PNG.
    title : str, optional

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
    body += [
        "<h2>Group comparison (Table 2)</h2>",
        "<p>Mean ± SD; median [Q1, Q3] (SPSS weighted-average percentiles) when Mann–Whitney is "
        "used; n (% of group) for categories. Test rule: Mann–Whitney U when either group's "
        "Shapiro–Wilk P &lt; 0.05, else Welch's t when Levene's (mean-centred) P &lt; 0.05, else "
        "Student's t; t and the difference = mean of group 0 − mean of group 1 (95% CI of Welch's t "
        "when Levene's P &lt; 0.05, else of Student's). χ² is Pearson's without continuity "
        "correction; * an expected count is below 5 (quote Fisher's exact P).</p>",
        _html_table(*_comparison_rows(result)),
    ]
    if result.logistic is not None:
        s = result.logistic.summary
        body += ["<h2>Binary logistic regression (Table 3)</h2>", _html_table(*_logistic_rows(result))]
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
                [[str(g)], [f"{c[g]['predicted_0']:.0f}"], [f"{c[g]['predicted_1']:.0f}"],
                 [f"{c[g]['percent_correct']:.1f}"]]
                for g in (0, 1)
            ]
            cells.append([["Overall"], [""], [""], [f"{c[2]['percent_correct']:.1f}"]])
            body.append(_html_table(["Observed", "Predicted 0", "Predicted 1", "% correct"], cells))
        if result.logistic.warnings:
            body.append('<ul class="warn">' + "".join(f"<li>{e(w)}</li>" for w in result.logistic.warnings) + "</ul>")
    if result.roc is not None:
        body += [
            "<h2>ROC analysis (Figure 2)</h2>",
            _html_table(*_roc_rows(result)),
            f"<p>{e('AUC CI: ' + AUC_CI_METHOD)}. Cut-off: the midpoint between adjacent observed "
            "values that maximises Youden's J (the lowest on a tie).</p>",
        ]
        if figures:
            from .plots import roc_plot

            body.append(_img(roc_plot(result.roc), "ROC curves"))
    if figures and any(t == "continuous" for t in result.comparison.table.get("type", [])):
        body.append("<h2>Box plots by group</h2>")
        body += _boxplot_figures(result)
    if result.reliability is not None:
        body += ["<h2>Inter-observer reliability</h2>", _html_table(*_reliability_rows(result))]
        if figures:
            figs, notes = _bland_altman_figures(result)
            body += figs
            extra_notes += notes
    shown = set(result.logistic.warnings) if result.logistic is not None else set()
    warnings = [w for w in result.warnings if w not in shown] + extra_notes
    if warnings:
        body += ["<h2>Warnings</h2>", '<ul class="warn">' + "".join(f"<li>{e(w)}</li>" for w in warnings) + "</ul>"]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_outputs(result, out_dir):
    """Write every table as CSV, ``results.json`` and ``report.html`` into a folder.

    Everything is rendered in memory first, so a failure while computing
    leaves the folder untouched.

    Parameters
    ----------
    result : StatsResult
    out_dir : str or Path
        Created when missing.

    Returns
    -------
    list of Path
        The files written.
    """
    out_dir = Path(out_dir)
    contents = {f"{name}.csv": frame.to_csv(index=False) for name, frame in result.tables().items()}
    contents["results.json"] = json.dumps(result.to_dict(), indent=1, allow_nan=False) + "\n"
    contents["report.html"] = html_report(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in contents.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
