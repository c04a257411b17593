"""Compare outcome groups (Table 2), logistic regression (Table 3) and ROC, as SPSS does.

Reads a per-patient table (CSV from any spreadsheet, or Excel) with
patient_id, the outcome and clinical variables, optionally merged with the
shared measurement CSVs (--merge, once for the muscle table and once for the
spine table): per patient the mean of the observers, or one observer, of one
reading (--session, default read1). Prints Table 2, Table 3 and the ROC table,
or JSON with --json; with --out DIR also writes every table as CSV, every
figure as PNG, results.json and a self-contained report.html. See
docs/statistics.md.
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
    parser.add_argument(
        "--merge",
        action="append",
        metavar="MEASUREMENTS.csv",
        help="shared measurement CSV (muscle or spine table) to merge on patient_id; give it once per table",
    )
    parser.add_argument(
        "--observer",
        default="mean",
        metavar="ID|mean",
        help="with --merge: the mean of the observers (default) or one observer's values",
    )
    parser.add_argument(
        "--session", metavar="LABEL", help="with --merge: the reading to use (default read1, or the only one)"
    )
    parser.add_argument("--level", metavar="LEVEL", help="with --merge: vertebral level when the file has several")
    parser.add_argument(
        "--exclude-flagged",
        action="store_true",
        help="with --merge: leave out rows with quality flags (qc_flags), after the latest row of each reading "
        "is chosen",
    )
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
    parser.add_argument(
        "--out", metavar="DIR", help="write the tables as CSV, the figures as PNG, results.json and report.html here"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args):
    """Run the analysis; see :func:`napari_pvm.core.stats.analyse`."""
    from ..core.errors import StatsInputError
    from ..core.stats import analyse, report

    if not args.merge:
        used = [
            flag
            for flag, on in (
                ("--session", args.session),
                ("--level", args.level),
                ("--exclude-flagged", args.exclude_flagged),
            )
            if on
        ]
        if used:
            raise StatsInputError(f"{', '.join(used)} applies to measurements: add --merge MEASUREMENTS.csv")
    if not 0 <= args.seed < 2**32:  # the range numpy's random generators are seeded with here
        raise StatsInputError(f"--seed must be a whole number from 0 to {2**32 - 1}, got {args.seed}")
    from ._notes import plain_notes

    with plain_notes():  # a torn last line of a merged CSV is one note, not Python's warning text
        result = analyse(
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
            session=args.session,
            exclude_flagged=args.exclude_flagged,
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
