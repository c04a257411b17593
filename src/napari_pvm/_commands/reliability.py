"""Inter-observer reliability (ICC, Bland-Altman, SEM, MDC) of a shared measurements CSV.

Works on the muscle table and on the spine table (vbq, local_kyphosis_deg).
For every measure column with values from two observers or more, over the
patients both observers read (one reading each: the latest row of the chosen
session, default read1): ICC(2,1) absolute agreement and ICC(3,1) consistency
with 95 % confidence intervals and their Koo & Li rating, ICC(2,k) for the
observers' mean, Bland-Altman bias and limits of agreement (first minus second
observer in sorted ID order) with their confidence intervals, a test of
proportional bias, SEM and MDC95, and how many outlines of each observer were
drawn, proposed or edited. With --intra OBSERVER, the same between two
readings of one observer. See docs/reliability.md.
"""

from pathlib import Path

from . import Outcome

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    parser.add_argument(
        "csv", metavar="MEASUREMENTS.csv", type=Path, help="the shared measurement CSV (muscle or spine table)"
    )
    parser.add_argument("--session", metavar="LABEL", help="reading to compare (default read1, or the only one)")
    parser.add_argument("--level", metavar="LEVEL", help="vertebral level (default: the only one in the file)")
    parser.add_argument(
        "--measures",
        metavar="A,B,...",
        help="measure columns, comma-separated (default: every column with values from two observers)",
    )
    parser.add_argument("--intra", metavar="OBSERVER", help="intra-observer reliability of OBSERVER between --sessions")
    parser.add_argument(
        "--sessions",
        metavar="S1,S2",
        default="read1,read2",
        help="readings compared with --intra (default read1,read2)",
    )
    parser.add_argument(
        "--exclude-flagged",
        action="store_true",
        help="leave out rows with quality flags (qc_flags), after the latest row of each reading is chosen",
    )
    parser.add_argument(
        "--loa-ci",
        choices=("exact", "approximate"),
        default="exact",
        help="confidence intervals of the limits of agreement: exact "
        "(noncentral t, default) or approximate (Bland & Altman)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args):
    from ..core.errors import StatsInputError
    from ..core.stats import inter_observer, intra_observer
    from ..core.stats.input import read_measurements
    from ..core.stats.report import reliability_text

    from ._notes import plain_notes

    with plain_notes():  # a torn last line is reported as one note, not Python's warning text
        rows = read_measurements(args.csv)
    options = dict(
        measures=_split(args.measures), level=args.level, loa_ci=args.loa_ci, exclude_flagged=args.exclude_flagged
    )
    if args.intra is not None:
        if args.session is not None:
            raise StatsInputError("--session does not apply with --intra; use --sessions S1,S2")
        result = intra_observer(rows, args.intra, _split(args.sessions) or (), **options)
    else:
        result = inter_observer(rows, session=args.session, **options)
    data = {"file": str(args.csv), **result.to_dict()}
    return Outcome(data=data, text=reliability_text(result, file=args.csv))


def _split(text):
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]
