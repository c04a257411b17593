"""Measure the spine on a sagittal image: VBQ score and local kyphotic angle (contract 8).

Reads a sagittal MRI (NIfTI or DICOM) or a lateral radiograph and a
napari-pvm.spine/1 annotation, prints the row of the spine table with its
warnings (with --json under "warnings") and, with --csv, appends the row to
the shared spine CSV.
"""

from . import Outcome, add_spacing_override


def add_arguments(parser):
    parser.add_argument("image", help="sagittal NIfTI, DICOM series folder or DICOM file (MRI or lateral radiograph)")
    parser.add_argument("annotation", help="the case's napari-pvm.spine/1 annotation (*.pvm.json)")
    parser.add_argument("--patient", help="patient ID (overrides the annotation's)")
    parser.add_argument("--observer", help="observer ID (overrides the annotation's)")
    parser.add_argument("--session", help="reading label, e.g. read1 or read2 (default: the annotation's, else read1)")
    parser.add_argument("--series", help="which series of a DICOM folder holding several")
    parser.add_argument("--csv", help="shared spine CSV to append the row to")
    parser.add_argument(
        "--anterior",
        choices=("left", "right"),
        help="radiograph without PatientOrientation: side of the stored image where the patient's "
        "anterior lies (as confirmed by the observer)",
    )
    add_spacing_override(parser)
    parser.add_argument("--json", action="store_true", help="print the row as one flat JSON object")


def run(args):
    from ..core.errors import PvmError
    from ..core.io import read_volume
    from ..core.spine import read_spine_annotation, spine_row

    annotation = read_spine_annotation(args.annotation)
    anterior = args.anterior or (annotation.anterior or {}).get("side_in_file")
    volume = read_volume(
        args.image, series=args.series, allow_unusual_spacing=args.allow_unusual_spacing, anterior=anterior
    )
    row, result = spine_row(
        volume, annotation, patient_id=args.patient, observer_id=args.observer, session=args.session
    )
    if args.csv:
        if not row["patient_id"]:
            raise PvmError("--csv needs a patient ID: give --patient ID or set patient_id in the annotation")
        if not row["observer_id"]:
            raise PvmError("--csv needs an observer ID: give --observer ID or set observer_id in the annotation")
        from ..core.store import append_rows
        from ._notes import plain_notes

        with plain_notes():
            (row_id,) = append_rows(args.csv, [row], table="spine")
        row["row_id"] = row_id
    # the warnings (e.g. a VBQ from one level) are not columns of the table, so --json carries them beside the row
    return Outcome({**row, "warnings": list(result.warnings)}, format_row(row, result))


def format_row(row, result):
    """A readable summary of one spine row and its warnings."""
    lines = [
        f"patient {row.get('patient_id') or '-'}  observer {row.get('observer_id') or '-'}  "
        f"session {row.get('session')}  slice {row.get('slice_index')}",
        f"spacing {row['row_spacing_mm']:.4g} × {row['col_spacing_mm']:.4g} mm",
    ]
    if row.get("vbq") is not None:
        lines.append(f"VBQ {row['vbq']:.3f}  (levels {row['vbq_levels']}, CSF median {row['vbq_si_csf']:.4g})")
        for level, si in result.si.items():
            note = f"excluded: {result.excluded[level]}" if level in result.excluded else "included"
            lines.append(f"  {level} median {si:.4g}  {note}")
    if row.get("local_kyphosis_deg") is not None:
        lines.append(f"local kyphotic angle {row['local_kyphosis_deg']:.2f}° (positive: kyphosis)")
    lines += [f"warning: {w}" for w in result.warnings]
    if row.get("row_id"):
        lines.append(f"row {row['row_id']} appended")
    return "\n".join(lines)
