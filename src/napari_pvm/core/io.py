"""Read spine images (NIfTI, a DICOM file, a DICOM series folder, a radiograph).

Every reader returns a :class:`Volume` in one of two display orientations:

- axial (contract 1): ``data[k, row, col]`` with ``k`` counting axial slices
  from inferior to superior, row 0 anterior and column 0 the patient's right
  (radiological view);
- sagittal (contract 8): ``k`` counts sagittal slices from the patient's
  right to left, row 0 is superior and column 0 anterior; for an (L, P, S)
  volume slice ``k`` is ``data[k, :, ::-1].T``.

The slice axis of a NIfTI is the voxel axis with the largest spacing (the
stored third axis when no axis is clearly the largest); of a DICOM series,
the normal of ImageOrientationPatient. The image is sagittal when that axis
lies nearest the left-right axis, axial otherwise (coronal stacks keep the
axial display, as before). A 2D radiograph (DICOM CR/DX) is one sagittal
slice whose anterior side comes from PatientOrientation or from the
observer. Files are reoriented by axis permutations and flips only, never
resampled. Spacing comes from the header; a spacing outside
:data:`PLAUSIBLE_PIXEL_MM` (or :data:`PLAUSIBLE_SLICE_MM` between slices)
is refused unless ``allow_unusual_spacing=True``. No patient-identifying
header field is ever copied.
"""

import dataclasses
import gzip
import hashlib
import logging
import os
import zlib
from pathlib import Path

import numpy as np

from .errors import ImageReadError

__all__ = [
    "PLAUSIBLE_PIXEL_MM",
    "PLAUSIBLE_SLICE_MM",
    "Volume",
    "require_plane",
    "file_sha256",
    "find_dicom_series",
    "read_volume",
]

log = logging.getLogger(__name__)

#: Target axis codes of the (slice, row, col) array, in nibabel's convention
#: (each letter names the direction in which the index increases).
DISPLAY_AXCODES = ("S", "P", "L")
#: The same for sagittal images (contract 8): slices right → left, rows
#: superior → inferior, columns anterior → posterior.
SAGITTAL_AXCODES = ("L", "I", "P")

#: Plausible in-plane pixel spacing in mm, for MRI and radiographs alike
#: (a 3 T microscopy coil reaches ~0.1 mm, a scout ~5 mm). Outside this range
#: the header is almost certainly wrong (a NIfTI with 1e6 mm pixels would
#: put 1e13 cm² areas into the shared CSV), so reading refuses unless asked
#: with ``allow_unusual_spacing=True``.
PLAUSIBLE_PIXEL_MM = (0.05, 10.0)
#: Plausible distance between neighbouring slices in mm (thick lumbar axial
#: slices with a gap reach ~10 mm; 30 mm leaves room for sparse stacks).
PLAUSIBLE_SLICE_MM = (0.05, 30.0)
#: Minimal ratio by which the slice axis' spacing must exceed the others to
#: be taken as the slice axis of a NIfTI; below it the stored third axis is.
_SLICE_AXIS_MARGIN = 1.01

#: DICOM attributes that may be copied into metadata; nothing else is read
#: out of a header, so names, birth dates and IDs can never leak.
_SAFE_DICOM_KEYS = (
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "MagneticFieldStrength",
    "RepetitionTime",
    "EchoTime",
)


@dataclasses.dataclass(frozen=True)
class Volume:
    """A lumbar MRI volume in display orientation (contract 1).

    Attributes
    ----------
    data : ndarray of shape (K, M, N), float32
        Slices inferior → superior; row 0 anterior; column 0 patient right.
    spacing : tuple of 3 floats
        (slice, row, column) spacing in mm.
    affine : ndarray of shape (4, 4)
        Maps (k, row, col) indices of ``data`` to RAS+ world millimetres.
    source_axcodes : tuple of str
        Axis codes of the file as stored, e.g. ``('L', 'P', 'S')``.
    obliquity_deg : float
        Largest angle between a voxel axis and its nearest world axis.
    sha256 : str
        Digest of the file's bytes (for a DICOM series: of the per-file
        digests in slice order).
    name : str
        A display name (file name or SeriesDescription).
    path : str
        What was read.
    metadata : dict
        Non-identifying acquisition facts (modality, series description, ...).
    plane : {"axial", "sagittal"}
        Display orientation: contract 1 (axial) or contract 8 (sagittal).
    """

    data: np.ndarray
    spacing: tuple
    affine: np.ndarray
    source_axcodes: tuple
    obliquity_deg: float
    sha256: str
    name: str
    path: str
    metadata: dict = dataclasses.field(default_factory=dict)
    plane: str = "axial"

    @property
    def n_slices(self):
        return self.data.shape[0]

    def slice(self, index):
        """Return the 2D slice ``index`` (axial: inferior → superior;
        sagittal: patient right → left) as float32."""
        if not 0 <= int(index) < self.n_slices:
            raise ImageReadError(
                f"slice index {index} is out of range: this image has {self.n_slices} slices (0 to {self.n_slices - 1})"
            )
        return self.data[int(index)]

    @property
    def pixel_spacing(self):
        """(row, column) spacing of one slice in mm."""
        return tuple(self.spacing[1:])

    def layer_metadata(self):
        """Metadata safe to attach to a napari layer or write to a log."""
        return {
            "source": self.path,
            "sha256": self.sha256,
            "spacing_mm": list(self.spacing),
            "source_axcodes": "".join(self.source_axcodes),
            "obliquity_deg": self.obliquity_deg,
            "plane": self.plane,
            "display": _DISPLAY_TEXT[self.plane],
            **self.metadata,
        }


_DISPLAY_TEXT = {
    "axial": "rows anterior→posterior, columns patient right→left",
    "sagittal": "slices patient right→left, rows superior→inferior, columns anterior→posterior",
}


def require_plane(volume, plane, *, what):
    """Refuse a volume whose display plane is not ``plane``.

    Examples
    --------
    >>> import numpy as np
    >>> v = Volume(np.zeros((1, 2, 2), np.float32), (1.0, 1.0, 1.0), np.eye(4), ("L", "I", "P"),
    ...            0.0, "", "x", "x", plane="sagittal")
    >>> try:
    ...     require_plane(v, "axial", what="measure")
    ... except ImageReadError as exc:
    ...     print(str(exc)[:51])
    x is a sagittal image; measure needs an axial image
    """
    if volume.plane != plane:
        hint = {
            "axial": "open the axial T2-weighted series (the muscles are measured on the L4 axial slice)",
            "sagittal": "open the sagittal series (or a lateral radiograph) of the lumbar spine",
        }[plane]
        raise ImageReadError(
            f"{volume.name} is a{'n' if volume.plane == 'axial' else ''} {volume.plane} image; "
            f"{what} needs a{'n' if plane == 'axial' else ''} {plane} image: {hint}"
        )


def file_sha256(path, *, chunk_size=1 << 20):
    """Return the hex sha256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_volume(path, *, series=None, allow_unusual_spacing=False, anterior=None):
    """Read a NIfTI file, a DICOM file or a folder holding a DICOM series.

    Parameters
    ----------
    path : str or Path
        ``.nii`` / ``.nii.gz`` file, a single DICOM file, or a folder.
    series : str or int, optional
        Which series (or slab) to read from a folder holding several: a key
        from :func:`find_dicom_series`, a SeriesDescription or a
        SeriesInstanceUID. Required when the choice is ambiguous.
    allow_unusual_spacing : bool
        Accept a pixel spacing outside :data:`PLAUSIBLE_PIXEL_MM` (or a slice
        spacing outside :data:`PLAUSIBLE_SLICE_MM`); by default such a
        header is refused as almost certainly wrong.
    anterior : {"left", "right"}, optional
        For a radiograph only: the side of the stored image on which the
        patient's anterior lies, as confirmed by the observer. Needed when
        the file has no PatientOrientation; must agree with it otherwise.
        Ignored for cross-sectional images (their header says where anterior is).

    Returns
    -------
    Volume
        The volume in display orientation: axial (contract 1) or sagittal
        (contract 8), see ``Volume.plane``.

    Raises
    ------
    ImageReadError
        When the input is not a readable 3D lumbar volume; the message says
        what is wrong.

    Examples
    --------
    >>> vol = read_volume("phantom.nii.gz")  # doctest: +SKIP
    >>> vol.data.shape, vol.spacing  # doctest: +SKIP
    ((5, 512, 512), (4.0, 0.78125, 0.78125))
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"no such file or folder: {path}")
    if anterior not in (None, "left", "right"):
        raise ImageReadError(
            f"anterior must be 'left' or 'right' (the side of the stored radiograph), got {anterior!r}"
        )
    options = {"allow_unusual_spacing": bool(allow_unusual_spacing), "anterior": anterior}
    if path.is_dir():
        return _read_dicom_folder(path, series=series, **options)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return _read_nifti(path, allow_unusual_spacing=bool(allow_unusual_spacing))
    if _looks_like_dicom(path):
        return _read_dicom_files([path], name=path.name, **options)
    raise ImageReadError(
        f"{path.name} is neither NIfTI (.nii, .nii.gz) nor DICOM; "
        "open a NIfTI file, a DICOM file or a folder holding a DICOM series"
    )


# ---------------------------------------------------------------- NIfTI


def _read_nifti(path, *, allow_unusual_spacing=False):
    import nibabel as nib

    try:
        # nibabel logs its own note on zero pixdims to stderr; the check below says it once, clearly
        logger, was_disabled = nib.imageglobals.logger, nib.imageglobals.logger.disabled
        logger.disabled = True
        try:
            img = nib.load(str(path))
            affine = np.asarray(img.affine, dtype=float)
        finally:
            logger.disabled = was_disabled
    except Exception as exc:  # nibabel raises many types for a bad file
        raise ImageReadError(
            f"{path.name} is not a readable NIfTI file ({_short(exc)}); "
            "check that the export finished and the file is not truncated"
        ) from None
    dtype = img.get_data_dtype()
    if dtype.kind not in "biuf":
        raise ImageReadError(
            f"{path.name} holds {dtype} voxels; napari-pvm needs real-valued magnitude images "
            "(export the magnitude, not complex or RGB data)"
        )
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise ImageReadError(
            f"{path.name} has {len(img.shape)} dimensions {tuple(img.shape)}; "
            "napari-pvm needs one 3D axial stack (export a single series/echo)"
        )
    try:
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    except (EOFError, OSError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise ImageReadError(f"{path.name} is truncated or corrupt ({_short(exc)}); export the image again") from None
    if not np.isfinite(data).all():
        raise ImageReadError(f"{path.name} contains NaN or infinite voxel values")
    # nibabel silently replaces zero pixdims by 1 on load: check the raw header
    _check_zooms(_raw_pixdim(path), path.name)
    return _to_display(
        data,
        affine,
        sha256=file_sha256(path),
        name=_strip_nii(path.name),
        path=str(path),
        metadata={"format": "NIfTI"},
        spacing_field="pixdim (the voxel sizes of the sform/qform affine)",
        allow_unusual_spacing=allow_unusual_spacing,
    )


def _raw_pixdim(path):
    """pixdim[1:4] exactly as stored in the file's header."""
    import nibabel as nib
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as fh:
        block = fh.read(348)
    header = nib.Nifti1Header(binaryblock=block, check=False)
    return tuple(float(z) for z in header["pixdim"][1:4])


def _strip_nii(name):
    for ext in (".nii.gz", ".nii"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _check_zooms(zooms, what):
    zooms = np.asarray(zooms, dtype=float)
    if zooms.size < 3 or not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
        raise ImageReadError(
            f"{what} has invalid voxel spacing {tuple(zooms.tolist())} mm: "
            "spacing must be finite and positive; fix the header (pixdim) "
            "or re-export from the scanner"
        )


def _check_plausible(spacings, *, field, what, slice_axis):
    """Refuse spacings outside the plausible ranges, naming the header field.

    ``slice_axis`` is the position in ``spacings`` of the slice spacing
    (checked against :data:`PLAUSIBLE_SLICE_MM`; -1: no slice spacing); the
    others are pixel spacings (:data:`PLAUSIBLE_PIXEL_MM`).
    """
    for axis, value in enumerate(spacings):
        value = float(value)
        if axis == slice_axis:
            lo, hi = PLAUSIBLE_SLICE_MM
        else:
            lo, hi = PLAUSIBLE_PIXEL_MM
        if not lo <= value <= hi:
            kind = "slice spacing" if axis == slice_axis else "pixel spacing"
            raise ImageReadError(
                f"{what}: {kind} {value:.6g} mm from {field} is outside the plausible range "
                f"{lo:g}–{hi:g} mm for MRI and radiographs; the header is probably wrong "
                "(fix it or re-export from the scanner); if the spacing really is unusual, "
                "read it anyway with allow_unusual_spacing=True (command line: --allow-unusual-spacing)"
            )


# -------------------------------------------------------- orientation


def _slice_axis(norms, slice_axis=None):
    """The stored voxel axis that is the slice axis: given (DICOM), else the
    one with clearly the largest spacing, else the stored third axis."""
    if slice_axis is not None:
        return int(slice_axis)
    order = np.argsort(norms)[::-1]
    if norms[order[0]] > _SLICE_AXIS_MARGIN * norms[order[1]]:
        return int(order[0])
    return 2


def _to_display(
    data,
    affine,
    *,
    sha256,
    name,
    path,
    metadata,
    slice_axis=None,
    spacing_field="the header",
    allow_unusual_spacing=False,
):
    """Permute and flip a (i, j, k) array with a RAS affine into the axial
    (contract 1) or sagittal (contract 8) display."""
    import nibabel as nib
    from nibabel import orientations as ornt

    rz = affine[:3, :3]
    norms = np.linalg.norm(rz, axis=0)
    if not np.all(np.isfinite(rz)) or np.any(norms <= 0) or np.any(~np.isfinite(norms)):
        raise ImageReadError(
            f"{name}: the header's affine has zero, negative or NaN spacing "
            f"({tuple(np.round(norms, 4).tolist())} mm); fix the header"
        )
    if abs(np.linalg.det(rz)) < 1e-9 * float(np.prod(norms)):
        raise ImageReadError(f"{name}: the header's affine is singular")
    source = ornt.io_orientation(affine)
    source_axcodes = tuple(ornt.ornt2axcodes(source))
    stored_slice_axis = _slice_axis(norms, slice_axis)
    # world axis 0 of RAS is left-right: a slice axis nearest it is sagittal
    plane = "sagittal" if int(source[stored_slice_axis, 0]) == 0 else "axial"
    target = SAGITTAL_AXCODES if plane == "sagittal" else DISPLAY_AXCODES
    transform = ornt.ornt_transform(source, ornt.axcodes2ornt(target))
    display = np.ascontiguousarray(ornt.apply_orientation(data, transform), dtype=np.float32)
    display_affine = affine @ ornt.inv_ornt_aff(transform, data.shape)
    spacing = tuple(float(s) for s in np.linalg.norm(display_affine[:3, :3], axis=0))
    if not allow_unusual_spacing:
        # a single slice has no slice spacing worth checking
        checked = spacing if display.shape[0] > 1 else spacing[1:]
        _check_plausible(checked, field=spacing_field, what=name, slice_axis=0 if display.shape[0] > 1 else -1)
    obliquity = float(np.degrees(np.max(nib.affines.obliquity(affine))))
    meta = dict(metadata)
    if obliquity > 0.5:
        meta["oblique"] = (
            f"stack tilted {obliquity:.1f}° from the scanner axes; shown without "
            "resampling, areas are in the slice plane"
        )
    return Volume(
        data=display,
        spacing=spacing,
        affine=display_affine,
        source_axcodes=source_axcodes,
        obliquity_deg=round(obliquity, 3),
        sha256=sha256,
        name=name,
        path=path,
        metadata=meta,
        plane=plane,
    )


# ---------------------------------------------------------------- DICOM


def _looks_like_dicom(path):
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _dcmread(path, *, pixels):
    import pydicom

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=not pixels, force=False)
    except Exception:
        return None


def find_dicom_series(folder):
    """List the image series (and parallel slabs) in a DICOM folder.

    Files are grouped by SeriesInstanceUID, then by slice orientation, so a
    series made of slabs angled to different discs becomes one entry per
    slab. Non-DICOM files are ignored.

    Returns
    -------
    dict
        ``{key: {"files": [...], "description": str, "uid": str, "n": int}}``
        with keys such as ``"3: T2 TSE AX"`` or ``"3: T2 TSE AX (slab 2)"``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"{folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise ImageReadError(f"the folder {folder} is empty; choose the folder holding the DICOM series")
    groups = {}
    for path in files:
        ds = _dcmread(path, pixels=False)
        if ds is None or not _has_pixel_tag(ds):
            continue
        try:
            iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
            position = float(np.asarray(ds.ImagePositionPatient, float) @ np.cross(iop[:3], iop[3:]))
            orient = tuple(np.round(iop, 3))
        except (AttributeError, TypeError, ValueError):
            orient, position = None, 0.0
        key = (str(getattr(ds, "SeriesInstanceUID", "")), orient)
        group = groups.setdefault(key, {"items": [], "ds": ds})
        group["items"].append((position, path))
    if not groups:
        raise ImageReadError(
            f"no DICOM images found in {folder}; choose the folder holding the series exported from PACS"
        )
    by_uid = {}
    for (uid, _), g in groups.items():
        for run in _split_slabs(sorted(g["items"], key=lambda item: item[0])):
            by_uid.setdefault(uid, []).append((g["ds"], [p for _, p in run]))
    out = {}
    for uid, slabs in by_uid.items():
        for n, (ds, slab_files) in enumerate(slabs, start=1):
            desc = str(getattr(ds, "SeriesDescription", "") or "series")
            number = getattr(ds, "SeriesNumber", "")
            key = f"{number}: {desc}" if number != "" else desc
            if len(slabs) > 1:
                key += f" (slab {n})"
            while key in out:
                key += "'"
            out[key] = {"files": slab_files, "description": desc, "uid": uid, "n": len(slab_files)}
    return out


def _split_slabs(items):
    """Split (position, path) pairs sorted by position at gaps much larger than
    the typical one, so parallel slabs with a gap between them separate. A
    stack that is irregular within a run stays whole and is refused later."""
    if len(items) < 4:
        return [items]
    positions = np.array([p for p, _ in items])
    gaps = np.diff(positions)
    typical = float(np.median(gaps))
    if typical <= 0:
        return [items]
    cuts = [i + 1 for i, g in enumerate(gaps) if g > 1.5 * typical]
    runs = [items[a:b] for a, b in zip([0, *cuts], [*cuts, len(items)])]
    if len(runs) == 1 or any(len(r) < 2 for r in runs):
        return [items]
    return runs


def _has_pixel_tag(ds):
    # stop_before_pixels drops PixelData; Rows/Columns tell an image from a report
    return hasattr(ds, "Rows") and hasattr(ds, "Columns")


def _read_dicom_folder(folder, *, series=None, **options):
    found = find_dicom_series(folder)
    if series is None:
        if len(found) > 1:
            listing = "; ".join(f"{k!r} ({v['n']} files)" for k, v in found.items())
            raise ImageReadError(
                f"{folder.name} holds {len(found)} series or slabs: {listing}; choose one with series=..."
            )
        key = next(iter(found))
    else:
        matches = [
            k
            for k, v in found.items()
            if str(series) in (k, v["description"], v["uid"]) or str(series) == k.split(":")[0]
        ]
        if len(matches) != 1:
            raise ImageReadError(
                f"series {series!r} {'is ambiguous' if matches else 'not found'} in "
                f"{folder.name}; available: {', '.join(map(repr, found))}"
            )
        key = matches[0]
    return _read_dicom_files(found[key]["files"], name=key, path=str(folder), **options)


def _read_dicom_files(files, *, name, path=None, allow_unusual_spacing=False, anterior=None):
    datasets = []
    for f in files:
        ds = _dcmread(f, pixels=True)
        if ds is None:
            raise ImageReadError(f"{Path(f).name} is not a readable DICOM file")
        datasets.append((f, ds))
    first = datasets[0][1]
    if _is_radiograph(first):
        if len(datasets) > 1:
            raise ImageReadError(f"{name}: {len(datasets)} radiographs in one series; open one lateral radiograph file")
        return _read_radiograph(
            files[0], first, name=name, allow_unusual_spacing=allow_unusual_spacing, anterior=anterior
        )
    # anterior= is for radiographs; a cross-sectional image's orientation comes from its header
    try:
        iop = np.asarray(first.ImageOrientationPatient, dtype=float)
        row_dir, col_dir = iop[:3], iop[3:]
        dr, dc = (float(v) for v in first.PixelSpacing)
    except (AttributeError, TypeError, ValueError):
        raise ImageReadError(
            f"{name}: DICOM lacks ImageOrientationPatient or PixelSpacing; "
            "napari-pvm needs the geometry to measure in cm²"
        ) from None
    _check_zooms((dr, dc, 1.0), name)
    if not allow_unusual_spacing:
        _check_plausible((dr, dc), field="PixelSpacing (0028,0030)", what=name, slice_axis=-1)
    normal = np.cross(row_dir, col_dir)
    positions = []
    for f, ds in datasets:
        try:
            ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
        except (AttributeError, TypeError, ValueError):
            raise ImageReadError(f"{Path(f).name} lacks ImagePositionPatient") from None
        positions.append(float(ipp @ normal))
    order = np.argsort(positions, kind="stable")
    datasets = [datasets[i] for i in order]
    positions = np.asarray(positions)[order]
    if len(datasets) > 1:
        gaps = np.diff(positions)
        if np.any(gaps < 1e-3):
            raise ImageReadError(
                f"{name}: several slices share one position; the folder mixes "
                "repeated acquisitions — export one series per folder"
            )
        dk = float(np.median(gaps))
        if np.max(np.abs(gaps - dk)) > max(0.05 * dk, 0.01):
            raise ImageReadError(
                f"{name}: slice positions are neither one regular stack nor separable "
                f"parallel slabs (gaps {np.round(gaps, 2).tolist()} mm); export the "
                "slabs as separate series or choose one stack"
            )
        if not allow_unusual_spacing:
            _check_plausible((dk,), field="ImagePositionPatient (distance between slices)", what=name, slice_axis=0)
    else:
        dk = float(getattr(first, "SpacingBetweenSlices", 0) or getattr(first, "SliceThickness", 0) or 1.0)
    slices = []
    shape = None
    for f, ds in datasets:
        try:
            px = ds.pixel_array.astype(np.float32)
        except Exception as exc:
            raise ImageReadError(f"{Path(f).name}: cannot decode pixel data ({_short(exc)})") from None
        if px.ndim != 2:
            raise ImageReadError(f"{Path(f).name}: multi-frame or colour DICOM is not supported")
        if shape is None:
            shape = px.shape
        elif px.shape != shape:
            raise ImageReadError(f"{name}: slices have different sizes ({shape} vs {px.shape})")
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        slices.append(px * slope + intercept)
    # voxel (i=col, j=row, k=slice) → LPS mm, then to RAS for nibabel
    ipp0 = np.asarray(datasets[0][1].ImagePositionPatient, dtype=float)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * dc
    lps[:3, 1] = col_dir * dr
    lps[:3, 2] = normal * dk
    lps[:3, 3] = ipp0
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    data = np.stack([s.T for s in slices], axis=-1)  # (col, row, slice)
    digest = hashlib.sha256()
    for f, _ in datasets:
        digest.update(file_sha256(f).encode())
    meta = {"format": "DICOM", "n_files": len(datasets)}
    for key in _SAFE_DICOM_KEYS:
        value = getattr(first, key, None)
        if value not in (None, ""):
            meta[key] = str(value)
    return _to_display(
        data,
        affine,
        sha256=digest.hexdigest(),
        name=name,
        path=path or str(files[0]),
        metadata=meta,
        slice_axis=2,  # the normal of ImageOrientationPatient, whatever the spacings
        allow_unusual_spacing=True,  # checked above against the DICOM fields themselves
    )


# ------------------------------------------------------------ radiograph

#: Modalities read as a 2D projection radiograph (one sagittal slice).
RADIOGRAPH_MODALITIES = ("CR", "DX", "RG")


def _is_radiograph(ds):
    modality = str(getattr(ds, "Modality", "") or "").upper()
    return modality in RADIOGRAPH_MODALITIES or (
        not hasattr(ds, "ImageOrientationPatient")
        and not hasattr(ds, "PixelSpacing")
        and hasattr(ds, "ImagerPixelSpacing")
    )


def _orientation_letters(value):
    """First letter of each PatientOrientation (0020,0020) value, e.g. ('P', 'F')."""
    try:
        parts = [str(v).strip().upper() for v in value]
    except TypeError:
        return None
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0][0], parts[1][0]


def _read_radiograph(file, ds, *, name, allow_unusual_spacing, anterior):
    """One lateral radiograph as a one-slice sagittal volume (contract 8).

    Spacing: PixelSpacing (calibrated at the patient) when present, else
    ImagerPixelSpacing (at the detector: distances at the patient are
    smaller by the geometric magnification, angles are unchanged). The
    anterior side comes from PatientOrientation, else from ``anterior``;
    without either the image is shown as stored and marked unconfirmed.
    """
    meta = {"format": "DICOM", "n_files": 1, "radiograph": True}
    for key in _SAFE_DICOM_KEYS:
        value = getattr(ds, key, None)
        if value not in (None, ""):
            meta[key] = str(value)
    field = None
    for tag, label in (
        ("PixelSpacing", "PixelSpacing (0028,0030)"),
        ("ImagerPixelSpacing", "ImagerPixelSpacing (0018,1164)"),
    ):
        try:
            dr, dc = (float(v) for v in getattr(ds, tag))
        except (AttributeError, TypeError, ValueError):
            continue
        field = label
        break
    if field is None:
        raise ImageReadError(
            f"{name}: the radiograph has neither PixelSpacing nor ImagerPixelSpacing; "
            "export it with its pixel spacing (angles need the pixel aspect ratio)"
        )
    _check_zooms((dr, dc, 1.0), name)
    if not allow_unusual_spacing:
        _check_plausible((dr, dc), field=field, what=name, slice_axis=-1)
    if field.startswith("Imager"):
        meta["spacing_note"] = (
            "pixel spacing at the detector (ImagerPixelSpacing): lengths at the patient are smaller "
            "by the magnification factor (typically 1.1–1.2); angles are unaffected"
        )
    try:
        px = ds.pixel_array.astype(np.float32)
    except Exception as exc:
        raise ImageReadError(f"{name}: cannot decode pixel data ({_short(exc)})") from None
    if px.ndim != 2:
        raise ImageReadError(f"{name}: multi-frame or colour radiographs are not supported")
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    px = px * slope + intercept
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        px = px.max() + px.min() - px  # bone bright, as on MRI-style grey scales
    letters = _orientation_letters(getattr(ds, "PatientOrientation", None))
    from_header = None
    flip_rows = False
    if letters is not None:
        along_row, down_col = letters
        if along_row in "LR":
            raise ImageReadError(
                f"{name}: PatientOrientation {list(ds.PatientOrientation)} describes a frontal (AP/PA) "
                "view; the kyphotic angle is measured on a lateral radiograph"
            )
        if along_row in "AP":
            from_header = "right" if along_row == "A" else "left"
        flip_rows = down_col == "H"
    if from_header is not None and anterior is not None and anterior != from_header:
        raise ImageReadError(
            f"{name}: PatientOrientation puts the anterior side on the image's {from_header}, "
            f"but anterior={anterior!r} was given; check the radiograph and drop the override"
        )
    side = from_header or anterior
    if flip_rows:
        px = px[::-1]
    if side == "right":
        px = px[:, ::-1]
    if from_header:
        meta["anterior_source"] = "PatientOrientation"
    elif anterior:
        meta["anterior_source"] = "observer"
    else:
        meta["anterior_source"] = "unconfirmed"
        meta["anterior_note"] = (
            "no PatientOrientation: shown as stored; confirm on which side the patient's anterior lies "
            "before measuring an angle"
        )
    meta["anterior_side_in_file"] = side or "unknown"
    data = np.ascontiguousarray(px[None], dtype=np.float32)
    # display (k, row, col) → RAS: k towards left, rows inferior, columns posterior
    affine = np.array([[1.0, 0, 0, 0], [0, 0, -dc, 0], [0, -dr, 0, 0], [0, 0, 0, 1]])
    return Volume(
        data=data,
        spacing=(1.0, dr, dc),
        affine=affine,
        source_axcodes=("L", "I", "P"),
        obliquity_deg=0.0,
        sha256=file_sha256(file),
        name=name,
        path=str(file),
        metadata=meta,
        plane="sagittal",
    )


def _short(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


def is_readable_path(path):
    """Cheap check used by the napari reader: could this be an image we read?"""
    path = os.fspath(path)
    lower = path.lower()
    if lower.endswith((".nii", ".nii.gz", ".dcm")):
        return True
    if os.path.isdir(path):
        return True
    return _looks_like_dicom(path)
