"""Figures of the statistics: ROC curves, box plots by group and Bland–Altman plots.

Matplotlib only, and never pyplot: each function draws on the Axes it is
given (``ax=``), or on a new :class:`matplotlib.figure.Figure` that needs no
display, and returns the Axes (pingouin's ``ax=None`` style). The napari dock
passes the Axes of its canvas; the HTML report renders new figures to PNG.
"""

import math

import numpy as np
import pandas as pd

__all__ = ["bland_altman_plot", "figure_png", "group_boxplot", "new_axes", "roc_plot"]


def new_axes(figsize=(5.0, 4.0)):
    """A single Axes on a new, display-free figure.

    Parameters
    ----------
    figsize : (float, float), optional
        Width and height in inches.

    Returns
    -------
    matplotlib.axes.Axes
    """
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained").add_subplot()


def figure_png(figure, *, dpi=110):
    """Render a figure to PNG bytes (Agg, no display).

    Parameters
    ----------
    figure : matplotlib.figure.Figure
    dpi : int, optional

    Returns
    -------
    bytes
    """
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def roc_plot(roc, *, variables=None, ax=None, mark_cutoff=True):
    """ROC curves of one or more variables, with the Youden cut-off marked.

    Parameters
    ----------
    roc : RocResult
        From :func:`napari_pvm.core.stats.roc.roc_analysis` (or
        ``StatsResult.roc``).
    variables : sequence of str, optional
        Which variables to draw (default: all).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made when None.
    mark_cutoff : bool, optional
        Mark the point of the Youden cut-off on each curve.

    Returns
    -------
    matplotlib.axes.Axes
        1 − specificity on x, sensitivity on y; the legend gives each area
        with its 95 % CI and the direction.
    """
    if ax is None:
        ax = new_axes((4.8, 4.6))
    table = roc.table.set_index("variable")
    names = list(table.index) if variables is None else list(variables)
    ax.plot([0, 1], [0, 1], color="0.75", lw=1, ls="--", zorder=0)
    for i, name in enumerate(names):
        row = table.loc[name]
        curve = roc.curves[roc.curves["variable"] == name]
        # Cut-offs ascend; for ">=" the curve then runs from (1, 1) to (0, 0).
        step = -1 if row["direction"] == ">=" else 1
        x = np.r_[0.0, (1.0 - curve["specificity"].to_numpy())[::step], 1.0]
        y = np.r_[0.0, curve["sensitivity"].to_numpy()[::step], 1.0]
        ci = ""
        if math.isfinite(row["auc_ci_low"]) and math.isfinite(row["auc_ci_high"]):
            ci = f" ({row['auc_ci_low']:.3f}–{row['auc_ci_high']:.3f})"
        label = f"{name} {row['direction']}: AUC {row['auc']:.3f}{ci}"
        (line,) = ax.plot(x, y, lw=1.8, color=f"C{i % 10}", label=label)
        if mark_cutoff:
            ax.plot(
                1.0 - row["specificity"],
                row["sensitivity"],
                marker="o",
                ms=6,
                mfc="white",
                mec=line.get_color(),
                mew=1.5,
                ls="none",
            )
            ax.annotate(
                f"{row['cutoff']:.4g}",
                (1.0 - row["specificity"], row["sensitivity"]),
                textcoords="offset points",
                xytext=(6, -12),
                fontsize=8,
                color=line.get_color(),
            )
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 − specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC curves (○ Youden cut-off)", fontsize=10)
    ax.legend(loc="lower right", fontsize=7, frameon=False)
    return ax


def group_boxplot(data, variable, group, *, labels=None, ax=None, points=True):
    """Box plot of one variable per outcome group, with the patients as dots.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per patient.
    variable : str
        Numeric column to plot.
    group : str or array_like of {0, 1}
        Column of ``data`` (or values aligned on it) with the group codes.
    labels : (str, str), optional
        Names of group 0 and group 1.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made when None.
    points : bool, optional
        Overlay every patient (horizontally jittered with a fixed seed).

    Returns
    -------
    matplotlib.axes.Axes
        Boxes show the median and the quartiles as the tables give them
        (SPSS's weighted-average percentiles); whiskers reach the most extreme
        values within 1.5 IQR of the box (Tukey).
    """
    if ax is None:
        ax = new_axes((3.4, 3.4))
    g = data[group] if isinstance(group, str) else pd.Series(np.asarray(group), index=data.index)
    x = pd.to_numeric(data[variable], errors="coerce")
    groups = [x[(g == k) & x.notna()].to_numpy(float) for k in (0, 1)]
    labels = list(labels) if labels is not None else ["0", "1"]
    shown = [f"{lab}\n(n={len(v)})" for lab, v in zip(labels, groups, strict=True)]
    for pos, values in zip((1, 2), groups, strict=True):
        _box(ax, pos, values, outliers=not points)
    ax.set_xlim(0.4, 2.6)
    ax.set_xticks([1, 2], shown)
    if points:
        rng = np.random.default_rng(0)
        for pos, values in zip((1, 2), groups, strict=True):
            jitter = rng.uniform(-0.12, 0.12, size=values.size)
            ax.scatter(pos + jitter, values, s=9, alpha=0.55, color=f"C{pos - 1}", edgecolor="none", zorder=3)
    ax.set_title(variable, fontsize=9)
    ax.tick_params(labelsize=8)
    return ax


def _box(ax, pos, values, width=0.5, outliers=False):
    """Draw one box by hand (Axes.boxplot reads every rcParam, which loads pyplot)."""
    from matplotlib.patches import Rectangle

    from .compare import quartiles

    if values.size == 0:
        return
    q1, med, q3 = quartiles(values)
    iqr = q3 - q1
    low = values[values >= q1 - 1.5 * iqr].min()
    high = values[values <= q3 + 1.5 * iqr].max()
    half = width / 2
    ax.add_patch(Rectangle((pos - half, q1), width, q3 - q1, fill=False, edgecolor="0.3", lw=1.2, zorder=2))
    ax.plot([pos - half, pos + half], [med, med], color="k", lw=1.8, zorder=4)
    ax.plot([pos, pos], [q3, high], color="0.3", lw=1.0, zorder=2)
    ax.plot([pos, pos], [q1, low], color="0.3", lw=1.0, zorder=2)
    ax.plot([pos - half / 2, pos + half / 2], [high, high], color="0.3", lw=1.0, zorder=2)
    ax.plot([pos - half / 2, pos + half / 2], [low, low], color="0.3", lw=1.0, zorder=2)
    if outliers:
        out = values[(values < low) | (values > high)]
        ax.plot(np.full(out.size, pos), out, ls="none", marker="o", mfc="none", mec="0.3", ms=4)


def bland_altman_plot(data, measure, *, ax=None, pair=None, session=None, level=None, alpha=0.05, loa_ci="exact"):
    """Bland–Altman plot of one measure for one pair of raters.

    Parameters
    ----------
    data : ReliabilityResult or pandas.DataFrame
        A result of :func:`napari_pvm.core.stats.reliability.inter_observer`
        (or ``intra_observer``), or the rows of a shared CSV, analysed with
        ``session``, ``level``, ``alpha`` and ``loa_ci``.
    measure : str
        Measure column, e.g. ``"ESMF_B_fi_pct"`` or ``"vbq"``.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new display-free figure is made when None.
    pair : (str, str), optional
        Rater IDs (a, b); the plot shows a − b. Default: the first two raters.
    session, level, alpha, loa_ci
        As for :func:`~napari_pvm.core.stats.reliability.inter_observer`, when
        ``data`` holds rows.

    Returns
    -------
    ax : matplotlib.axes.Axes
        Pair means on x, differences on y, the bias and the limits of
        agreement as lines with their confidence intervals shaded.

    Raises
    ------
    StatsInputError
        An unknown measure or pair, or a measure that cannot be analysed
        (the reason is in the message).
    """
    from ..errors import StatsInputError
    from .reliability import ReliabilityResult, bland_altman, inter_observer, measure_unit

    if not isinstance(data, ReliabilityResult):
        data = inter_observer(data, measures=[measure], session=session, level=level, alpha=alpha, loa_ci=loa_ci)
    alpha, loa_ci = data.info.get("alpha", alpha), data.info.get("loa_ci", loa_ci)
    raters = list(data.info["raters"])
    row = data.table[data.table["measure"] == measure]
    if row.empty:
        raise StatsInputError(f"no reliability of {measure}; measures analysed: {', '.join(data.table['measure'])}")
    if not math.isfinite(row["icc2_1"].iloc[0]) and row["note"].iloc[0]:
        raise StatsInputError(f"{measure}: {row['note'].iloc[0]}")
    pair = (raters[0], raters[1]) if pair is None else tuple(str(p) for p in pair)
    if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(raters):
        raise StatsInputError(f"pair must name two different raters among {', '.join(map(repr, raters))}, got {pair}")
    values = data.values[data.values["measure"] == measure]
    wide = values.pivot(index="patient_id", columns="rater", values="value")[list(pair)].dropna()
    a, b = wide[pair[0]].to_numpy(float), wide[pair[1]].to_numpy(float)
    ba = bland_altman(a, b, alpha=alpha, loa_ci=loa_ci)

    if ax is None:
        ax = new_axes((5.5, 4.0))
    unit = measure_unit(measure)
    suffix = f" ({unit})" if unit else ""
    ax.axhline(0.0, color="0.85", lw=1, zorder=0)
    ax.scatter((a + b) / 2, a - b, s=22, color="C0", alpha=0.8, edgecolor="none", zorder=3)
    for key, style, label in (
        ("bias", "-", f"bias {ba['bias']:.3g}"),
        ("loa_high", "--", f"+1.96 SD {ba['loa_high']:.3g}"),
        ("loa_low", "--", f"−1.96 SD {ba['loa_low']:.3g}"),
    ):
        ax.axhline(ba[key], color="k", ls=style, lw=1.4 if key == "bias" else 1.1, label=label)
        low, high = ba[f"{key}_ci"]
        if math.isfinite(low) and math.isfinite(high) and high > low:
            ax.axhspan(low, high, color="C1" if key == "bias" else "0.6", alpha=0.25, lw=0)
    ax.set_xlabel(f"Mean of {pair[0]} and {pair[1]}{suffix}")
    ax.set_ylabel(f"{pair[0]} − {pair[1]}{suffix}")
    ax.set_title(f"{measure}: n = {len(a)}, shaded {100 * (1 - alpha):g} % CI", fontsize="medium")
    ax.legend(loc="best", fontsize="small", frameon=False)
    return ax
