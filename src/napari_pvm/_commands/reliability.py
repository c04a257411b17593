"""Inter-observer reliability (ICC, Bland–Altman, SEM, MDC) of a measurements CSV.

For every measure column with values from two observers or more, over the
patients both observers measured (the latest row per patient × observer):
ICC(2,1) absolute agreement and ICC(3,1) consistency with 95 % confidence
intervals and their Koo & Li rating, ICC(2,k) for the observers' mean,
Bland–Altman bias and limits of agreement (first minus second observer in
sorted ID order) with their confidence intervals, a test of proportional
bias, SEM and MDC95. With --intra OBSERVER, the same between two readings
of one observer. See docs/reliability.md.
"""

import math
from pathlib import Path

from ..core._json import finite_or_none as _num
from . import Outcome

__all__ = ["add_arguments", "run", "to_json", "to_text"]


def add_arguments(parser):
    parser.add_argument("csv", metavar="MEASUREMENTS.csv", type=Path,
                        help="the shared measurement CSV")
    parser.add_argument("--session", metavar="LABEL",
                        help="reading to compare (default read1, or the only one)")
    parser.add_argument("--level", metavar="LEVEL",
                        help="vertebral level (default: the only one in the file)")
    parser.add_argument("--measures", metavar="A,B,...",
                        help="measure columns, comma-separated (default: every column with "
                             "values from two observers)")
    parser.add_argument("--intra", metavar="OBSERVER",
                        help="intra-observer reliability of OBSERVER between --sessions")
    parser.add_argument("--sessions", metavar="S1,S2", default="read1,read2",
                        help="readings compared with --intra (default read1,read2)")
    parser.add_argument("--loa-ci", choices=("exact", "approximate"), default="exact",
                        help="confidence intervals of the limits of agreement: exact "
                             "(noncentral t, default) or approximate (Bland & Altman)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args):
    from ..core import reliability as rel
    from ..core.errors import StatsInputError
    from ..core.store import read_rows

    rows = read_rows(args.csv)
    measures = _split(args.measures)
    if args.intra is not None:
        if args.session is not None:
            raise StatsInputError("--session does not apply with --intra; use --sessions S1,S2")
        sessions = _split(args.sessions) or ()
        kwargs = dict(measures=measures, level=args.level, loa_ci=args.loa_ci)
        table = rel.intra_observer_table(rows, args.intra, sessions, **kwargs)
        pairs = rel.intra_observer_pairs(rows, args.intra, sessions, **kwargs)
    else:
        kwargs = dict(measures=measures, session=args.session, level=args.level,
                      loa_ci=args.loa_ci)
        table = rel.reliability_table(rows, **kwargs)
        pairs = rel.pairwise_table(rows, **kwargs)
    data = to_json(table, pairs, file=args.csv)
    return Outcome(data=data, text=to_text(table, pairs, file=args.csv))


def _split(text):
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def _int(value):
    value = _num(value)
    return None if value is None else int(value)


def _ci(row, key):
    low, high = _num(row[f"{key}_ci_low"]), _num(row[f"{key}_ci_high"])
    return None if low is None and high is None else [low, high]


def _text(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _pair_json(row, label):
    return {
        f"{label}_a": row[f"{label}_a"],
        f"{label}_b": row[f"{label}_b"],
        "n": _int(row["n"]),
        "bias": _num(row["bias"]),
        "bias_ci": _ci(row, "bias"),
        "sd_diff": _num(row["sd_diff"]),
        "loa_low": _num(row["loa_low"]),
        "loa_low_ci": _ci(row, "loa_low"),
        "loa_high": _num(row["loa_high"]),
        "loa_high_ci": _ci(row, "loa_high"),
        "prop_bias_slope": _num(row["prop_bias_slope"]),
        "prop_bias_slope_ci": _ci(row, "prop_bias_slope"),
        "prop_bias_p": _num(row["prop_bias_p"]),
        "note": _text(row["note"]),
    }


def to_json(table, pairs, *, file=None):
    """The JSON object of ``napari-pvm reliability --json``.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`~napari_pvm.core.reliability.reliability_table` or
        :func:`~napari_pvm.core.reliability.intra_observer_table`.
    pairs : pandas.DataFrame
        One row per measure × pair (:func:`~napari_pvm.core.reliability.pairwise_table`).
    file : path, optional
        The CSV analysed, echoed as ``file``.

    Returns
    -------
    data : dict
        ``mode``, ``observers`` (or ``observer`` and ``sessions``), ``session``,
        ``level``, ``n_patients``, ``n_patients_both``, ``alpha``, ``loa_ci``
        and ``measures``: per measure ``measure``, ``n``, ``icc2_1``,
        ``icc2_1_ci``, ``icc3_1``, ``icc3_1_ci``, ``bias``, ``loa_low``,
        ``loa_high``, ``sem``, ``mdc95`` plus ratings, ICC(2,k), ICC(3,k), the
        F test, the CIs of bias and limits, proportional bias, ``note`` and
        ``pairs`` (every pair). A value that could not be computed is null
        and ``note`` says why; intervals are [low, high] or null.
    """
    attrs = dict(table.attrs)
    label = "session" if attrs.get("mode") == "intra-observer" else "observer"
    data = {"mode": attrs.get("mode", "inter-observer")}
    if file is not None:
        data["file"] = str(file)
    for key in ("observers", "observer", "sessions", "session", "level", "n_patients",
                "n_patients_both", "alpha", "loa_ci"):
        if key in attrs:
            data[key] = attrs[key]
    measures = []
    for _, row in table.iterrows():
        item = {
            "measure": row["measure"],
            "n": _int(row["n"]),
            "icc2_1": _num(row["icc2_1"]),
            "icc2_1_ci": _ci(row, "icc2_1"),
            "icc3_1": _num(row["icc3_1"]),
            "icc3_1_ci": _ci(row, "icc3_1"),
            "bias": _num(row["bias"]),
            "loa_low": _num(row["loa_low"]),
            "loa_high": _num(row["loa_high"]),
            "sem": _num(row["sem"]),
            "mdc95": _num(row["mdc95"]),
            f"n_{label}s": _int(row[f"n_{label}s"]),
            "n_missing": _int(row["n_missing"]),
            "icc2_1_rating": _text(row["icc2_1_rating"]),
            "icc3_1_rating": _text(row["icc3_1_rating"]),
            "icc2_k": _num(row["icc2_k"]),
            "icc2_k_ci": _ci(row, "icc2_k"),
            "icc2_k_rating": _text(row["icc2_k_rating"]),
            "icc3_k": _num(row["icc3_k"]),
            "icc3_k_ci": _ci(row, "icc3_k"),
            "f": _num(row["f"]),
            "df1": _int(row["df1"]),
            "df2": _int(row["df2"]),
            "p": _num(row["p"]),
            f"{label}_a": row[f"{label}_a"],
            f"{label}_b": row[f"{label}_b"],
            "bias_ci": _ci(row, "bias"),
            "sd_diff": _num(row["sd_diff"]),
            "loa_low_ci": _ci(row, "loa_low"),
            "loa_high_ci": _ci(row, "loa_high"),
            "prop_bias_slope": _num(row["prop_bias_slope"]),
            "prop_bias_slope_ci": _ci(row, "prop_bias_slope"),
            "prop_bias_p": _num(row["prop_bias_p"]),
            "sd": _num(row["sd"]),
            "note": _text(row["note"]),
            "pairs": [
                _pair_json(p, label)
                for _, p in pairs[pairs["measure"] == row["measure"]].iterrows()
            ],
        }
        measures.append(item)
    data["measures"] = measures
    return data


# --------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------


def _f(value, digits=3):
    value = _num(value)
    return "–" if value is None else f"{value:.{digits}f}"


def _fci(value, low, high, digits=3):
    if _num(value) is None:
        return "–"
    if _num(low) is None or _num(high) is None:
        return f"{_f(value, digits)} [–]"
    return f"{_f(value, digits)} [{_f(low, digits)}, {_f(high, digits)}]"


def _p(value):
    value = _num(value)
    if value is None:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _grid(header, rows, right=()):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = []
    for cells in [header, *rows]:
        parts = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        ]
        lines.append("  ".join(parts).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def to_text(table, pairs, *, file=None):
    """Readable report of ``napari-pvm reliability`` without ``--json``."""
    attrs = dict(table.attrs)
    intra = attrs.get("mode") == "intra-observer"
    label = "session" if intra else "observer"
    raters = attrs.get("sessions" if intra else "observers", [])
    conf = f"{100 * (1 - attrs.get('alpha', 0.05)):g} %"
    lines = []
    if intra:
        lines.append(f"Intra-observer reliability of observer {attrs.get('observer')}"
                     + (f": {file}" if file else ""))
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
    lines.append("")

    notes = {}
    for _, row in table.iterrows():
        if _text(row["note"]):
            notes[row["measure"]] = f"[{len(notes) + 1}]"
    header = ["measure", "n", f"ICC(2,1) [{conf} CI]", "rating (Koo & Li, on the CI)",
              "ICC(3,1) [CI]", "ICC(2,k) [CI]", "P"]
    body = []
    for _, r in table.iterrows():
        body.append([
            r["measure"] + (" " + notes[r["measure"]] if r["measure"] in notes else ""),
            str(_int(r["n"])),
            _fci(r["icc2_1"], r["icc2_1_ci_low"], r["icc2_1_ci_high"]),
            _text(r["icc2_1_rating"]) or "–",
            _fci(r["icc3_1"], r["icc3_1_ci_low"], r["icc3_1_ci_high"]),
            _fci(r["icc2_k"], r["icc2_k_ci_low"], r["icc2_k_ci_high"]),
            _p(r["p"]),
        ])
    lines += _grid(header, body, right={1})
    lines.append("")

    method = "exact" if attrs.get("loa_ci", "exact") == "exact" else "approximate"
    header = ["measure", "pair", "n", f"bias [{conf} CI]", "limits of agreement",
              f"LoA {conf} CIs ({method})", "prop. bias slope (P)", "SEM", "MDC95"]
    body = []
    first = {r["measure"]: r for _, r in table.iterrows()}
    for _, p in pairs.iterrows():
        t = first[p["measure"]]
        is_first = p[f"{label}_a"] == t[f"{label}_a"] and p[f"{label}_b"] == t[f"{label}_b"]
        loa = "–" if _num(p["loa_low"]) is None else f"{_f(p['loa_low'])} to {_f(p['loa_high'])}"
        loa_ci = "–"
        if _num(p["loa_low_ci_low"]) is not None:
            loa_ci = (f"[{_f(p['loa_low_ci_low'])}, {_f(p['loa_low_ci_high'])}] "
                      f"[{_f(p['loa_high_ci_low'])}, {_f(p['loa_high_ci_high'])}]")
        slope = "–"
        if _num(p["prop_bias_slope"]) is not None:
            slope = f"{_f(p['prop_bias_slope'])} ({_p(p['prop_bias_p'])})"
        body.append([
            p["measure"] + (" " + notes[p["measure"]] if p["measure"] in notes else ""),
            f"{p[f'{label}_a']} − {p[f'{label}_b']}",
            str(_int(p["n"])),
            _fci(p["bias"], p["bias_ci_low"], p["bias_ci_high"]),
            loa,
            loa_ci,
            slope,
            _f(t["sem"]) if is_first else "",
            _f(t["mdc95"]) if is_first else "",
        ])
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
