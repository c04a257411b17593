"""Write a synthetic phantom with exact truth: the axial lumbar phantom, or with --sagittal the spine phantom."""

from . import Outcome


def add_arguments(parser):
    parser.add_argument(
        "outdir",
        help="folder to write phantom.nii.gz, phantom.pvm.json and truth.json into "
        "(with --sagittal: sagittal.nii.gz, sagittal.pvm.json, sagittal_truth.json)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument(
        "--spacing",
        type=float,
        default=None,
        help="in-plane pixel spacing in mm (default 0.78125; sagittal: 0.75, the row spacing)",
    )
    parser.add_argument(
        "--sagittal",
        action="store_true",
        help="write the sagittal spine phantom (VBQ and local kyphotic angle) instead",
    )
    parser.add_argument(
        "--col-spacing",
        type=float,
        default=None,
        help="sagittal only: column spacing in mm when it differs from --spacing (e.g. 1.2)",
    )
    parser.add_argument(
        "--kyphosis",
        type=float,
        default=12.0,
        help="sagittal only: true local kyphotic angle in degrees, negative for lordosis (default 12)",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=None,
        help="sagittal only: noise σ as a share of the CSF signal (default 0.03; 0 for none)",
    )
    parser.add_argument(
        "--shading",
        type=float,
        default=None,
        help="sagittal only: peak-to-peak shading amplitude (default 0.15; 0 for none)",
    )
    parser.add_argument("--force", action="store_true", help="replace phantom files that exist in OUTDIR")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


#: The files each phantom writes into OUTDIR.
FILES = {
    False: ("phantom.nii.gz", "phantom.pvm.json", "truth.json"),
    True: ("sagittal.nii.gz", "sagittal.pvm.json", "sagittal_truth.json"),
}


def _check_outdir(outdir, *, sagittal, force):
    """Refuse, before any work, an OUTDIR that is a file or holds the phantom's files (without --force)."""
    from pathlib import Path

    from ..core.errors import PvmError

    outdir = Path(outdir)
    for folder in (outdir, *outdir.parents):
        if folder.exists():
            if not folder.is_dir():
                where = f"{outdir} is a file" if folder == outdir else f"OUTDIR {outdir}: {folder} is a file"
                raise PvmError(
                    f"{where}, not a folder; give a folder to write the phantom into (it is created when missing)"
                )
            break
    folders = [str(outdir / name) for name in FILES[sagittal] if (outdir / name).is_dir()]
    if folders:
        raise PvmError(
            f"{', '.join(folders)}: a folder has the name of a phantom file; move it or choose another OUTDIR"
        )
    existing = [str(outdir / name) for name in FILES[sagittal] if (outdir / name).exists()]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise PvmError(f"{', '.join(existing)} {verb}; choose another OUTDIR or give --force to replace them")


def run(args):
    from ..core.errors import PvmError

    sagittal_only = [
        flag
        for flag, value in (("--col-spacing", args.col_spacing), ("--noise", args.noise), ("--shading", args.shading))
        if value is not None
    ]
    if args.kyphosis != 12.0:
        sagittal_only.append("--kyphosis")
    if sagittal_only and not args.sagittal:
        raise PvmError(f"{', '.join(sagittal_only)} apply to the sagittal phantom only; add --sagittal")
    _check_outdir(args.outdir, sagittal=args.sagittal, force=args.force)
    if args.sagittal:
        from ..core.phantom_sagittal import write_sagittal_phantom

        row = args.spacing if args.spacing is not None else 0.75
        col = args.col_spacing if args.col_spacing is not None else row
        options = {"spacing": (row, col), "kyphosis_deg": args.kyphosis}
        if args.noise is not None:
            options["noise"] = args.noise
        if args.shading is not None:
            options["shading"] = args.shading
        paths = write_sagittal_phantom(args.outdir, seed=args.seed, **options)
    else:
        from ..core.phantom import write_phantom

        spacing = args.spacing if args.spacing is not None else 0.78125
        paths = write_phantom(args.outdir, seed=args.seed, spacing=spacing)
    data = {key: str(path) for key, path in paths.items()}
    text = "\n".join(f"{key:>10}: {path}" for key, path in data.items())
    return Outcome(data, text)
