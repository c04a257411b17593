"""Compare outcome groups (Table 2), logistic regression (Table 3) and ROC, as SPSS does.

Reads a per-patient table (CSV, or Excel with openpyxl) with ``patient_id``,
the outcome and clinical variables, optionally merged with the shared
measurement CSV (per patient: the mean of the observers, or one observer).
Prints Table 2, Table 3 and the ROC table, or JSON with ``--json``; with
``--out DIR`` also writes every table as CSV, ``results.json`` and a
self-contained ``report.html`` with the figures. See docs/statistics.md.
"""

from . import Outcome

__all__ = ["add_arguments", "run"]


def _csv_list(text):
    return [t.strip() for t in text.split(",") if t.strip()]


def _reference(text):
    out = {}
    for item in _csv_list(text):
        name, sep, level = item.partition("=")
        if not sep or not name.strip() or not level.strip():
            from ..core.errors import StatsInputError

            raise StatsInputError(f"--reference takes VARIABLE=LEVEL pairs, got {item!r}")
        out[name.strip()] = level.strip()
    return out


def add_arguments(parser):
    """Add the ``stats`` options to an argparse parser."""
    parser.add_argument("table", metavar="TABLE", help="per-patient table (.csv, .tsv or .xlsx)")
    parser.add_argument("--outcome", required=True, metavar="COLUMN", help="two-valued outcome column")
    parser.add_argument(
        "--event", metavar="VALUE", help="outcome value meaning 'event' (needed unless the outcome is 0/1)"
    )
    parser.add_argument("--merge", metavar="MEASUREMENTS.csv", help="shared measurement CSV to merge on patient_id")
    parser.add_argument(
        "--observer",
        default="mean",
        metavar="ID|mean",
        help="with --merge: the mean of the observers (default) or one observer's values",
    )
    parser.add_argument("--level", metavar="LEVEL", help="with --merge: vertebral level when the file has several")
    parser.add_argument(
        "--continuous",
        type=_csv_list,
        metavar="a,b",
        help="continuous variables to compare (with --categorical: only these; default: every column, types detected)",
    )
    parser.add_argument("--categorical", type=_csv_list, metavar="c,d", help="categorical variables to compare")
    parser.add_argument("--logistic", type=_csv_list, metavar="x,y,z", help="covariates of a logistic model")
    parser.add_argument(
        "--reference",
        default="",
        metavar="VAR=LEVEL,...",
        help="reference category of categorical logistic covariates (default: the first level)",
    )
    parser.add_argument("--roc", type=_csv_list, metavar="u,v", help="variables for ROC analysis")
    parser.add_argument("--seed", type=int, default=0, help="seed of resampled Fisher tests (default 0)")
    parser.add_argument("--out", metavar="DIR", help="write the tables as CSV, results.json and report.html here")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args):
    """Run the analysis; see :func:`napari_pvm.core.stats.analyse`."""
    from ..core import report, stats

    result = stats.analyse(
        args.table,
        args.outcome,
        event=args.event,
        continuous=args.continuous,
        categorical=args.categorical,
        logistic=args.logistic,
        roc=args.roc,
        measurements=args.merge,
        observer=args.observer,
        level=args.level,
        reference=_reference(args.reference),
        seed=args.seed,
    )
    data = result.to_dict()
    text = report.text_report(result)
    if args.out:
        files = report.write_outputs(result, args.out)
        data["files"] = [str(f) for f in files]
        text += f"\n\nWrote {len(files)} files to {args.out}: " + ", ".join(f.name for f in files)
    return Outcome(data=data, text=text)
