"""Read lumbar MRI volumes (NIfTI, a DICOM file or a DICOM series folder).

Every reader returns a :class:`Volume` whose array follows contract 1 of
DESIGN.md: ``data[k, row, col]`` with ``k`` counting axial slices from
inferior to superior, row 0 anterior and column 0 the patient's right
(radiological view). Files in other orientations are reoriented by axis
permutations and flips only, never resampled. Spacing comes from the
header's affine; no patient-identifying header field is ever copied.
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
    "Volume",
    "file_sha256",
    "find_dicom_series",
    "read_volume",
]

log = logging.getLogger(__name__)

#: Target axis codes of the (slice, row, col) array, in nibabel's convention
#: (each letter names the direction in which the index increases).
DISPLAY_AXCODES = ("S", "P", "L")

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

    @property
    def n_slices(self):
        return self.data.shape[0]

    def slice(self, index):
        """Return the 2D slice ``index`` (inferior → superior) as float32."""
        if not 0 <= int(index) < self.n_slices:
            raise ImageReadError(
                f"slice index {index} is out of range: this image has "
                f"{self.n_slices} slices (0 to {self.n_slices - 1})"
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
            "display": "rows anterior→posterior, columns patient right→left",
            **self.metadata,
        }


def file_sha256(path, *, chunk_size=1 << 20):
    """Return the hex sha256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_volume(path, *, series=None):
    """Read a NIfTI file, a DICOM file or a folder holding a DICOM series.

    Parameters
    ----------
    path : str or Path
        ``.nii`` / ``.nii.gz`` file, a single DICOM file, or a folder.
    series : str or int, optional
        Which series (or slab) to read from a folder holding several: a key
        from :func:`find_dicom_series`, a SeriesDescription or a
        SeriesInstanceUID. Required when the choice is ambiguous.

    Returns
    -------
    Volume
        The volume in display orientation (contract 1).

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
    if path.is_dir():
        return _read_dicom_folder(path, series=series)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return _read_nifti(path)
    if _looks_like_dicom(path):
        return _read_dicom_files([path], name=path.name)
    raise ImageReadError(
        f"{path.name} is neither NIfTI (.nii, .nii.gz) nor DICOM; "
        "open a NIfTI file, a DICOM file or a folder holding a DICOM series"
    )


# ---------------------------------------------------------------- NIfTI


def _read_nifti(path):
    import nibabel as nib

    try:
        img = nib.load(str(path))
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
        raise ImageReadError(
            f"{path.name} is truncated or corrupt ({_short(exc)}); "
            "export the image again"
        ) from None
    if not np.isfinite(data).all():
        raise ImageReadError(f"{path.name} contains NaN or infinite voxel values")
    # nibabel silently replaces zero pixdims by 1 on load: check the raw header
    _check_zooms(_raw_pixdim(path), path.name)
    affine = np.asarray(img.affine, dtype=float)
    return _to_display(
        data,
        affine,
        sha256=file_sha256(path),
        name=_strip_nii(path.name),
        path=str(path),
        metadata={"format": "NIfTI"},
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


# -------------------------------------------------------- orientation


def _to_display(data, affine, *, sha256, name, path, metadata):
    """Permute and flip a (i, j, k) array with a RAS affine into contract 1."""
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
    transform = ornt.ornt_transform(source, ornt.axcodes2ornt(DISPLAY_AXCODES))
    display = np.ascontiguousarray(ornt.apply_orientation(data, transform), dtype=np.float32)
    display_affine = affine @ ornt.inv_ornt_aff(transform, data.shape)
    spacing = tuple(float(s) for s in np.linalg.norm(display_affine[:3, :3], axis=0))
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
            f"no DICOM images found in {folder}; choose the folder holding the "
            "series exported from PACS"
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


def _read_dicom_folder(folder, *, series=None):
    found = find_dicom_series(folder)
    if series is None:
        if len(found) > 1:
            listing = "; ".join(f"{k!r} ({v['n']} files)" for k, v in found.items())
            raise ImageReadError(
                f"{folder.name} holds {len(found)} series or slabs: {listing}; "
                "choose one with series=..."
            )
        key = next(iter(found))
    else:
        matches = [
            k for k, v in found.items()
            if str(series) in (k, v["description"], v["uid"]) or str(series) == k.split(":")[0]
        ]
        if len(matches) != 1:
            raise ImageReadError(
                f"series {series!r} {'is ambiguous' if matches else 'not found'} in "
                f"{folder.name}; available: {', '.join(map(repr, found))}"
            )
        key = matches[0]
    return _read_dicom_files(found[key]["files"], name=key, path=str(folder))


def _read_dicom_files(files, *, name, path=None):
    datasets = []
    for f in files:
        ds = _dcmread(f, pixels=True)
        if ds is None:
            raise ImageReadError(f"{Path(f).name} is not a readable DICOM file")
        datasets.append((f, ds))
    first = datasets[0][1]
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
