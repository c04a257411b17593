"""Classify fat and measure one annotated case; optionally append the row to the shared CSV."""

from ..core import schema
from . import Outcome, add_spacing_override


def add_arguments(parser):
    parser.add_argument("image", help="NIfTI file, DICOM file or DICOM series folder")
    parser.add_argument("annotation", help="the case's *.pvm.json annotation file")
    parser.add_argument("--patient", help="patient ID (overrides the annotation's)")
    parser.add_argument("--observer", help="observer ID (overrides the annotation's)")
    parser.add_argument("--session", help="reading label, e.g. read1 or read2 (default: the annotation's, else read1)")
    parser.add_argument("--series", help="which series or slab of a DICOM folder holding several")
    parser.add_argument("--csv", help="shared measurements CSV to append the row to")
    parser.add_argument("--preset", help="feature preset of the fat classifier")
    parser.add_argument("--trees", type=int, help="number of trees of the random forest")
    parser.add_argument("--seed", type=int, help="seed of the random forest")
    parser.add_argument("--class-balance", choices=("true", "false"), help="weight classes equally when training")
    parser.add_argument(
        "--method",
        metavar="NAME",
        help="FI%% method: forest (default, the Weka-equivalent random forest), threshold, gmm, or dixon "
        "(needs --water and --fat); the methods this installation has are checked before any work",
    )
    parser.add_argument("--water", metavar="W", help="water image of a Dixon acquisition, on the grid of IMAGE")
    parser.add_argument("--fat", metavar="F", help="fat image of a Dixon acquisition, on the grid of IMAGE")
    add_spacing_override(parser)
    parser.add_argument("--json", action="store_true", help="print the row as one flat JSON object")


def run(args):
    from ..core.annotation import read_annotation
    from ..core.errors import PvmError
    from ..core.io import read_volume
    from ..core.measure import available_methods, measure_annotation

    if args.method is not None and args.method not in available_methods():
        # checked here, not by argparse: listing the methods imports them, which every command would pay for
        raise PvmError(f"--method {args.method}: unknown FI% method; use one of {', '.join(available_methods())}")
    forest_only = [
        flag
        for flag, value in (
            ("--preset", args.preset),
            ("--trees", args.trees),
            ("--seed", args.seed),
            ("--class-balance", args.class_balance),
        )
        if value is not None
    ]
    if forest_only and args.method not in (None, "forest"):
        raise PvmError(
            f"{', '.join(forest_only)} {'is a setting' if len(forest_only) == 1 else 'are settings'} of the "
            f"random-forest method, which --method {args.method} does not use; leave "
            f"{'it' if len(forest_only) == 1 else 'them'} out or use --method forest"
        )
    if (args.water is None) != (args.fat is None):
        raise PvmError("give both --water and --fat (the Dixon images), or neither")
    if args.method == "dixon" and args.water is None:
        raise PvmError("--method dixon needs --water W --fat F, the Dixon images on the grid of IMAGE")
    if args.water is not None and args.method != "dixon":
        raise PvmError("--water and --fat are used only by --method dixon; add it or leave them out")
    annotation = read_annotation(args.annotation)
    if args.csv:  # refuse what the append would refuse before the work
        from ..core.store import check_appendable

        if not (args.patient or annotation.patient_id):
            raise PvmError("--csv needs a patient ID: give --patient ID or set patient_id in the annotation")
        if not (args.observer or annotation.observer_id):
            raise PvmError("--csv needs an observer ID: give --observer ID or set observer_id in the annotation")
        check_appendable(args.csv)
    unusual = args.allow_unusual_spacing
    volume = read_volume(args.image, series=args.series, allow_unusual_spacing=unusual)
    water = read_volume(args.water, allow_unusual_spacing=unusual) if args.water else None
    fat = read_volume(args.fat, allow_unusual_spacing=unusual) if args.fat else None
    result = measure_annotation(
        volume,
        annotation,
        patient_id=args.patient,
        observer_id=args.observer,
        session=args.session,
        preset=args.preset,
        n_trees=args.trees,
        seed=args.seed,
        class_balance=None if args.class_balance is None else args.class_balance == "true",
        method=args.method,
        water=water,
        fat=fat,
    )
    row = result.row
    if args.csv:
        from ..core.store import append_rows
        from ._notes import plain_notes

        with plain_notes():
            (row_id,) = append_rows(args.csv, [row])
        row["row_id"] = row_id
    return Outcome(row, format_row(row))


def format_row(row):
    """A readable table of one row: groups × sides with areas and FI%."""
    dixon = any(row.get(c) is not None for c in schema.MEAN_FF_COLUMNS)
    lines = [
        f"patient {row.get('patient_id') or '-'}  observer {row.get('observer_id') or '-'}  "
        f"session {row.get('session')}  level {row.get('level')}  slice {row.get('slice_index')}",
        f"spacing {row['row_spacing_mm']:.4g} × {row['col_spacing_mm']:.4g} mm  " + _method_text(row),
        "",
        f"{'muscle':<6} {'side':<4} {'total cm²':>10} {'lean cm²':>10} {'fat cm²':>10} {'FI %':>7}"
        + (f" {'mean FF %':>9}" if dixon else ""),
    ]
    for group in schema.GROUPS:
        for side in schema.SIDES:
            total = row.get(f"{group}_{side}_total_area_cm2")
            if total is None:
                continue
            lean, fat, fi = (row[f"{group}_{side}_{m}"] for m in ("muscle_area_cm2", "fat_area_cm2", "fi_pct"))
            ff = row.get(f"{group}_{side}_mean_ff_pct")
            lines.append(
                f"{group:<6} {side:<4} {total:>10.2f} {lean:>10.2f} {fat:>10.2f} {fi:>7.2f}"
                + (f" {ff:>9.2f}" if dixon and ff is not None else "")
            )
    contrast = row.get("fat_muscle_contrast")
    quality = [
        f"fat:muscle contrast {contrast:.2f}" if contrast is not None else "",
        f"quality flags: {row['qc_flags'].replace(';', ', ')}" if row.get("qc_flags") else "no quality flags",
    ]
    lines.append("  ".join(q for q in quality if q))
    if row.get("VB_total_area_cm2") is not None:
        lines.append(f"vertebral body (VB) {row['VB_total_area_cm2']:.2f} cm²")
    missing = [key for key in schema.ROI_KEYS if key not in row["rois_present"].split(";")]
    if missing:
        lines.append(f"not outlined: {', '.join(missing)}")
    if row.get("row_id"):
        lines.append(f"row {row['row_id']} appended")
    return "\n".join(lines)


def _method_text(row):
    if row.get("n_trees") is None:
        return f"method {row.get('method')}"
    return (
        f"method {row.get('method')} ({row.get('features_preset')}, {row.get('n_trees')} trees, seed {row.get('seed')})"
    )
