"""Propose muscle outlines on one slice from clicks and earlier outlined cases; write an annotation for review."""

from . import Outcome, add_spacing_override


def add_arguments(parser):
    parser.add_argument("image", help="NIfTI file, DICOM file or DICOM series folder")
    parser.add_argument(
        "--slice",
        type=int,
        required=True,
        dest="slice_index",
        help="axial slice index (inferior → superior, 0-based) to outline, e.g. the L4 slice",
    )
    parser.add_argument("--clicks", help='JSON file {"PS_L": [row, col], ...}: one point inside each muscle')
    parser.add_argument("--examples", help="worklist CSV (image + annotation columns) of earlier outlined cases")
    parser.add_argument("--out", required=True, help="annotation file to write (*.pvm.json)")
    parser.add_argument("--level", default="L4", help="vertebral level of the slice (default L4)")
    parser.add_argument("--series", help="which series or slab of a DICOM folder holding several")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    add_spacing_override(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args):
    import time
    from pathlib import Path

    from ..core import schema
    from ..core.annotation import parse_annotation, write_json_atomic
    from ..core.errors import PvmError
    from ..core.io import read_volume, require_plane
    from ..core.propose import propose_outlines

    out = Path(args.out)
    if out.exists() and not args.force:
        raise PvmError(f"{out} exists; choose another --out or give --force to replace it")
    if not out.parent.is_dir():
        raise PvmError(f"the folder of --out does not exist: {out.parent}")
    _check_writable(out.parent)  # before the work, and never naming the temporary file of the atomic write
    volume = read_volume(args.image, series=args.series, allow_unusual_spacing=args.allow_unusual_spacing)
    require_plane(volume, "axial", what="proposing muscle outlines")
    image = volume.slice(args.slice_index)
    clicks = _read_clicks(args.clicks) if args.clicks else None
    examples, used = (
        _read_examples(args.examples, volume.sha256, allow_unusual_spacing=args.allow_unusual_spacing)
        if args.examples
        else ([], [])
    )
    t0 = time.perf_counter()
    rois = propose_outlines(image, spacing=volume.pixel_spacing, clicks=clicks, examples=examples)
    seconds = time.perf_counter() - t0
    obj = {
        "format": "napari-pvm.annotation/1",
        "image": {"sha256": volume.sha256},
        "slice_index": int(args.slice_index),
        "level": args.level,
        "rois": [
            {
                "muscle": key.split("_")[0],
                "side": key.split("_")[1],
                "origin": "proposed",
                "vertices": [[float(r), float(c)] for r, c in rois[key]],
            }
            for key in schema.ROI_KEYS
            if key in rois
        ],
        "samples": [],
    }
    parse_annotation(obj, source=out.name)  # the file we write must read back
    write_json_atomic(out, obj)
    missing = [k for k in schema.ROI_KEYS if k not in rois]
    data = {
        "out": str(out),
        "slice_index": int(args.slice_index),
        "proposed": [k for k in schema.ROI_KEYS if k in rois],
        "missing": missing,
        "clicks": sorted(clicks or {}),
        "examples": used,
        "seconds": round(seconds, 3),
    }
    text = (
        f"proposed {', '.join(data['proposed']) or 'nothing'} on slice {args.slice_index} "
        f"from {len(data['clicks'])} click(s) and {len(used)} example(s) in {seconds:.1f} s\n"
        + (f"not found: {', '.join(missing)} (outline them by hand)\n" if missing else "")
        + f"written: {out} (every outline marked proposed; review and correct it before measuring)"
    )
    return Outcome(data, text)


def _read_clicks(path):
    import json
    from pathlib import Path

    from ..core import schema
    from ..core.errors import PvmError

    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PvmError(f"clicks file not found: {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PvmError(f"{path.name} is not valid JSON ({' '.join(str(exc).split())[:100]})") from None
    except RecursionError:
        raise PvmError(f"{path.name} is nested too deeply to be a clicks file") from None
    if not isinstance(obj, dict):
        raise PvmError(f'{path.name} must hold an object such as {{"PS_L": [row, col], ...}}')
    for key, value in obj.items():
        if key not in schema.ROI_KEYS:
            raise PvmError(f"{path.name}: unknown outline {key!r}; use {', '.join(schema.ROI_KEYS)}")
        if (
            not isinstance(value, (list, tuple))
            or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise PvmError(f"{path.name}: {key} must be [row, col] numbers, got {value!r}")
    return obj


def _check_writable(folder):
    from ..core.annotation import probe_writable
    from ..core.errors import PvmError

    try:
        probe_writable(folder)
    except OSError as exc:
        raise PvmError(
            f"the folder of --out, {folder}, is not writable ({exc.strerror}); choose --out in a folder you can write to"
        ) from None


def _read_examples(path, target_sha256, *, allow_unusual_spacing=False):
    """(examples, names) from a worklist; cases without an annotation or of
    the target image itself are left out (an example of the same image would
    copy its own answer)."""
    from pathlib import Path

    from ..core.annotation import read_annotation
    from ..core.batch import read_worklist
    from ..core.errors import PvmError
    from ..core.io import read_volume

    cases = read_worklist(path)
    examples, used = [], []
    if not any(c.annotation for c in cases):
        raise PvmError(
            f"{Path(path).name} names no annotation; examples need an annotation column with earlier outlines"
        )
    for case in cases:
        if not case.annotation:
            continue
        annotation = read_annotation(case.annotation)
        if not annotation.rois:
            continue
        volume = read_volume(case.image, allow_unusual_spacing=allow_unusual_spacing)
        if annotation.image_sha256 and annotation.image_sha256.lower() != volume.sha256:
            raise PvmError(
                f"{Path(path).name} line {case.line}: the annotation {Path(case.annotation).name} was drawn "
                f"on another image than {Path(case.image).name}"
            )
        if volume.sha256 == target_sha256:
            continue
        examples.append((volume.slice(annotation.slice_index), volume.pixel_spacing, dict(annotation.rois)))
        used.append(case.patient_id or Path(case.annotation).name)
    return examples, used
