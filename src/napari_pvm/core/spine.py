"""Spine measures on a sagittal slice: VBQ score and local kyphotic angle (contract 8).

- Vertebral bone quality score (VBQ, Ehresman et al. 2020): on the
  mid-sagittal T1-weighted slice, the median over the included L1–L4
  vertebral ROIs of each ROI's median signal, divided by the median signal
  of a CSF ROI at L3 (L2 or L1 when L3's CSF is obscured). Levels marked
  excluded (fracture, cement, haemangioma, ...) are left out and recorded.
  ROI membership follows the pixel-centre rule of contract 1
  (``skimage.draw.polygon2mask``, as :func:`napari_pvm.core.rois.roi_mask`).
- An angle between two lines, e.g. the local kyphotic angle between the
  superior endplate of the vertebra above a fracture and the inferior
  endplate of the vertebra below it: the acute angle between the lines in
  millimetres (pixel spacing applied first), in degrees, positive when the
  lines converge anteriorly (kyphosis), negative when they converge
  posteriorly. The upper line is the one whose midpoint is higher.

Sagittal slices are in the display of contract 8: row 0 superior, column 0
anterior. The annotation file format is ``napari-pvm.spine/1``.
"""

import dataclasses
import datetime
from pathlib import Path

import numpy as np

from . import schema
from .annotation import _read_json, _vertices
from .errors import AnnotationError

__all__ = [
    "CSF_LEVELS",
    "CSF_MAX_IQR_SHARE",
    "FORMAT",
    "SpineAnnotation",
    "SpineResult",
    "VBQ_LEVELS",
    "line_angle_deg",
    "measure_spine",
    "parse_spine_annotation",
    "read_spine_annotation",
    "roi_median",
    "spine_row",
    "write_spine_annotation",
]

FORMAT = "napari-pvm.spine/1"
#: Vertebrae whose median signal enters VBQ.
VBQ_LEVELS = getattr(schema, "SPINE_LEVELS", ("L1", "L2", "L3", "L4"))
#: Levels at which the CSF ROI may lie: L3 by definition, L2 or L1 when the
#: CSF at L3 is obscured (Ehresman et al. 2020).
CSF_LEVELS = ("L3", "L2", "L1")
#: A CSF ROI whose interquartile range exceeds this share of its median is
#: flagged as not homogeneous. Noise alone gives IQR = 1.35 σ, i.e. a share of
#: 0.34 at an SNR of 4 in CSF; clinical T1 CSF has a higher SNR, so a larger
#: spread means the ROI includes cord, nerve roots, fat or bone.
CSF_MAX_IQR_SHARE = 0.35
#: Names of the angles an annotation may hold (the row's column is ``{name}_deg``).
ANGLE_NAMES = ("local_kyphosis",)
#: Reasons offered for excluding a level (free text is accepted too).
EXCLUSION_REASONS = ("fracture", "cement", "haemangioma", "metal", "other")

_KNOWN = {
    "format",
    "image",
    "slice_index",
    "vertebrae",
    "csf",
    "excluded",
    "angles",
    "patient_id",
    "observer_id",
    "session",
    "anterior",
}


@dataclasses.dataclass(frozen=True)
class SpineAnnotation:
    """What the observer drew on the sagittal slice (contract 8).

    Attributes
    ----------
    slice_index : int or None
        The (mid-)sagittal slice the ROIs were drawn on.
    vertebrae : dict
        ``{level: (N, 2) array of [row, col] vertices}`` for L1–L4.
    csf : dict or None
        ``{"level": "L3", "vertices": (N, 2) array}``.
    excluded : dict
        ``{level: reason}``.
    angles : dict
        ``{name: (upper (2, 2) array, lower (2, 2) array)}``; which of the
        two lines is upper is decided again by position when measuring.
    roi_slices : dict
        Slice on which an ROI (``"L1"`` ... or ``"csf"``) was drawn, when it
        differs from ``slice_index`` or is recorded per ROI.
    anterior : dict or None
        For radiographs: ``{"side_in_file": "left"|"right", "source": ...}``.
    extra : dict
        Unknown keys, kept when the file is written again.
    """

    slice_index: object = None
    vertebrae: dict = dataclasses.field(default_factory=dict)
    csf: object = None
    excluded: dict = dataclasses.field(default_factory=dict)
    angles: dict = dataclasses.field(default_factory=dict)
    roi_slices: dict = dataclasses.field(default_factory=dict)
    image_sha256: object = None
    patient_id: object = None
    observer_id: object = None
    session: object = None
    anterior: object = None
    extra: dict = dataclasses.field(default_factory=dict)

    def to_dict(self):
        """The JSON-able contract-8 dict (vertices at full precision)."""
        out = {"format": FORMAT}
        if self.image_sha256:
            out["image"] = {"sha256": self.image_sha256}
        for key in ("patient_id", "observer_id", "session"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.slice_index is not None:
            out["slice_index"] = int(self.slice_index)
        vertebrae = []
        for level in sorted(self.vertebrae, key=_level_order):
            item = {"level": level, "vertices": _plain(self.vertebrae[level])}
            if level in self.roi_slices:
                item["slice_index"] = int(self.roi_slices[level])
            vertebrae.append(item)
        out["vertebrae"] = vertebrae
        if self.csf is not None:
            out["csf"] = {"level": self.csf["level"], "vertices": _plain(self.csf["vertices"])}
            if "csf" in self.roi_slices:
                out["csf"]["slice_index"] = int(self.roi_slices["csf"])
        out["excluded"] = [
            {"level": lv, "reason": r} for lv, r in sorted(self.excluded.items(), key=lambda x: _level_order(x[0]))
        ]
        out["angles"] = [
            {"name": name, "upper": _plain(upper), "lower": _plain(lower)}
            for name, (upper, lower) in self.angles.items()
        ]
        if self.anterior:
            out["anterior"] = dict(self.anterior)
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


@dataclasses.dataclass(frozen=True)
class SpineResult:
    """Spine measures of one annotation.

    Attributes
    ----------
    vbq : float or None
        The VBQ score (None when the annotation has no ROIs).
    levels : tuple of str
        Levels included in VBQ, in order.
    si : dict
        ``{level: median signal}`` of every drawn vertebral ROI, included or not.
    si_csf : float or None
        Median signal of the CSF ROI.
    csf_iqr_share : float or None
        Interquartile range of the CSF ROI / its median.
    angles : dict
        ``{name: degrees}`` (signed, see :func:`line_angle_deg`).
    excluded : dict
        ``{level: reason}``.
    warnings : tuple of str
        Things an observer should look at (the measure is still computed).
    """

    vbq: object
    levels: tuple
    si: dict
    si_csf: object
    csf_iqr_share: object
    angles: dict
    excluded: dict
    warnings: tuple


# ------------------------------------------------------------ file format


def _plain(vertices):
    return [[float(r), float(c)] for r, c in np.asarray(vertices, dtype=float)]


def _level_order(level):
    return VBQ_LEVELS.index(level) if level in VBQ_LEVELS else len(VBQ_LEVELS)


def _slice_value(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AnnotationError(f"{what}: slice_index must be a non-negative integer, got {value!r}")
    return value


def _check_line(value, what):
    line = _vertices(value, what)
    if line.shape != (2, 2):
        raise AnnotationError(f"{what}: a line is two points [[row, col], [row, col]], got {len(line)} points")
    if np.allclose(line[0], line[1], rtol=0, atol=1e-9):
        raise AnnotationError(
            f"{what}: the line's two points are equal; draw the line from one end of the endplate to the other"
        )
    return line


def parse_spine_annotation(obj, *, source="spine annotation"):
    """Build a :class:`SpineAnnotation` from decoded JSON, checking its shape.

    Unknown keys are accepted and kept. Polygons are checked against the
    image later (:func:`measure_spine`); here: the format tag, levels,
    reasons, and lines of two distinct points.

    Examples
    --------
    >>> ann = parse_spine_annotation({"format": "napari-pvm.spine/1",
    ...     "angles": [{"name": "local_kyphosis", "upper": [[0, 0], [0, 10]], "lower": [[20, 0], [22, 10]]}]})
    >>> list(ann.angles)
    ['local_kyphosis']
    """
    if not isinstance(obj, dict):
        raise AnnotationError(f"{source}: the file must hold a JSON object")
    if obj.get("format") == "napari-pvm.annotation/1":
        raise AnnotationError(
            f"{source} is a muscle annotation (napari-pvm.annotation/1, for 'measure'); spine measures "
            f"need a {FORMAT} annotation drawn on the sagittal image (Spine measures dock)"
        )
    if obj.get("format") != FORMAT:
        raise AnnotationError(f"{source}: format tag is {obj.get('format')!r}, expected {FORMAT!r}")
    slice_index = obj.get("slice_index")
    if slice_index is not None:
        _slice_value(slice_index, source)
    roi_slices = {}
    vertebrae = {}
    items = obj.get("vertebrae") or []
    if not isinstance(items, list):
        raise AnnotationError(f"{source}: 'vertebrae' must be a list")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not {"level", "vertices"} <= item.keys():
            raise AnnotationError(f"{source}: vertebrae[{i}] needs 'level' and 'vertices'")
        level = item["level"]
        if level not in VBQ_LEVELS:
            raise AnnotationError(
                f"{source}: vertebrae[{i}] has level {level!r}; VBQ uses {', '.join(VBQ_LEVELS)} only"
            )
        if level in vertebrae:
            raise AnnotationError(f"{source}: {level} has two ROIs; keep one")
        vertebrae[level] = _vertices(item["vertices"], f"{source}: {level} ROI")
        if item.get("slice_index") is not None:
            roi_slices[level] = _slice_value(item["slice_index"], f"{source}: {level} ROI")
    csf = obj.get("csf")
    if csf is not None:
        if not isinstance(csf, dict) or "vertices" not in csf:
            raise AnnotationError(f"{source}: 'csf' needs 'level' and 'vertices'")
        level = csf.get("level") or "L3"
        if level not in CSF_LEVELS:
            raise AnnotationError(f"{source}: the CSF ROI's level is {level!r}; use L3 (or L2, L1 when L3 is obscured)")
        csf = {"level": level, "vertices": _vertices(csf["vertices"], f"{source}: CSF ROI")}
        if obj["csf"].get("slice_index") is not None:
            roi_slices["csf"] = _slice_value(obj["csf"]["slice_index"], f"{source}: CSF ROI")
    excluded = {}
    items = obj.get("excluded") or []
    if not isinstance(items, list):
        raise AnnotationError(f"{source}: 'excluded' must be a list")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "level" not in item:
            raise AnnotationError(f"{source}: excluded[{i}] needs 'level' and 'reason'")
        if item["level"] not in VBQ_LEVELS:
            raise AnnotationError(
                f"{source}: excluded[{i}] has level {item['level']!r}; use one of {', '.join(VBQ_LEVELS)}"
            )
        reason = str(item.get("reason") or "").strip()
        if not reason:
            raise AnnotationError(
                f"{source}: excluded level {item['level']} needs a reason (e.g. fracture, cement, haemangioma)"
            )
        excluded[item["level"]] = reason
    angles = {}
    items = obj.get("angles") or []
    if not isinstance(items, list):
        raise AnnotationError(f"{source}: 'angles' must be a list")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not {"upper", "lower"} <= item.keys():
            raise AnnotationError(f"{source}: angles[{i}] needs 'upper' and 'lower' lines")
        name = item.get("name") or "local_kyphosis"
        if name not in ANGLE_NAMES:
            raise AnnotationError(f"{source}: angles[{i}] has name {name!r}; known angles: {', '.join(ANGLE_NAMES)}")
        if name in angles:
            raise AnnotationError(f"{source}: the angle {name} is given twice")
        angles[name] = (
            _check_line(item["upper"], f"{source}: {name} upper line"),
            _check_line(item["lower"], f"{source}: {name} lower line"),
        )
    image = obj.get("image") or {}
    if not isinstance(image, dict):
        raise AnnotationError(f"{source}: 'image' must be an object")
    ids = {}
    if any(obj.get(k) not in (None, "") for k in ("patient_id", "observer_id", "session")):
        from .annotation import check_identifier

        for key in ("patient_id", "observer_id", "session"):
            if obj.get(key) not in (None, ""):
                ids[key] = check_identifier(obj[key], key.replace("_", " "))
    anterior = obj.get("anterior")
    if anterior is not None:
        if not isinstance(anterior, dict) or anterior.get("side_in_file") not in ("left", "right"):
            raise AnnotationError(f'{source}: \'anterior\' must be {{"side_in_file": "left" or "right", ...}}')
    return SpineAnnotation(
        slice_index=slice_index,
        vertebrae=vertebrae,
        csf=csf,
        excluded=excluded,
        angles=angles,
        roi_slices=roi_slices,
        image_sha256=image.get("sha256") or None,
        anterior=dict(anterior) if anterior else None,
        extra={k: v for k, v in obj.items() if k not in _KNOWN},
        **ids,
    )


def read_spine_annotation(path):
    """Read and check a ``napari-pvm.spine/1`` file."""
    path = Path(path)
    return parse_spine_annotation(_read_json(path, what="spine annotation"), source=path.name)


def write_spine_annotation(path, annotation):
    """Write a spine annotation atomically (temporary file, fsync, rename)."""
    from .annotation import write_json_atomic

    obj = annotation.to_dict() if isinstance(annotation, SpineAnnotation) else dict(annotation)
    parse_spine_annotation(obj, source=Path(path).name)  # never write what cannot be read back
    write_json_atomic(path, obj)


# ------------------------------------------------------------ measures


def roi_median(image, vertices, *, name="ROI"):
    """Median signal of the pixels whose centre lies inside the polygon.

    Parameters
    ----------
    image : ndarray of shape (M, N)
    vertices : array_like of shape (K, 2)
        ``[row, col]`` vertices; at least 3 distinct.

    Returns
    -------
    median : float
    values : ndarray
        The signals inside (for further statistics).

    Examples
    --------
    >>> image = np.arange(25.0).reshape(5, 5)
    >>> float(roi_median(image, [[0.5, 0.5], [0.5, 2.5], [2.5, 2.5], [2.5, 0.5]])[0])
    9.0
    """
    from .rois import roi_mask, validate_polygon

    image = np.asarray(image)
    v = validate_polygon(vertices, image.shape, name=name)
    mask = roi_mask(v, image.shape)
    values = image[mask]
    if values.size == 0:
        raise AnnotationError(f"{name}: the ROI holds no pixel centre; draw it larger")
    return float(np.median(values)), values


def _line_mm(line, spacing):
    line = np.asarray(line, dtype=float) * np.asarray(spacing, dtype=float)
    return line


def line_angle_deg(line_a, line_b, *, spacing=(1.0, 1.0)):
    """Signed acute angle between two lines on a sagittal slice, in degrees.

    The lines are ``[[row, col], [row, col]]`` in pixels of a contract-8
    slice (row 0 superior, column 0 anterior); ``spacing`` (row, col) in mm
    is applied before the angle is taken. The upper line is the one whose
    midpoint is higher (smaller row in mm), whichever argument it is. The
    angle is positive when the lines converge anteriorly (kyphosis), negative
    when they converge posteriorly (lordosis).

    Examples
    --------
    >>> upper = [[10, 0], [5, 10]]   # rises towards posterior
    >>> lower = [[30, 0], [30, 10]]  # flat
    >>> round(line_angle_deg(lower, upper), 6)
    26.565051
    >>> round(line_angle_deg(upper, lower, spacing=(1.0, 2.0)), 6)  # wider pixels, flatter line
    14.036243
    """
    a, b = _line_mm(line_a, spacing), _line_mm(line_b, spacing)
    for line, what in ((a, "first"), (b, "second")):
        if np.allclose(line[0], line[1], rtol=0, atol=1e-12):
            raise AnnotationError(
                f"the {what} line's two points are equal; draw it from one end of the endplate to the other"
            )
    upper, lower = (a, b) if a[:, 0].mean() <= b[:, 0].mean() else (b, a)

    def inclination(line):
        # angle from the anterior→posterior direction, positive when the line
        # descends (rows increase) towards posterior
        d = line[1] - line[0]
        return np.degrees(np.arctan2(d[0], d[1]))

    diff = inclination(lower) - inclination(upper)
    # the acute angle between two undirected lines, signed: wrap to [-90, 90)
    diff = (diff + 90.0) % 180.0 - 90.0
    return float(diff)


def measure_spine(image, annotation, *, spacing, n_slices=None):
    """VBQ and angles of one annotation on one sagittal slice.

    Parameters
    ----------
    image : ndarray of shape (M, N)
        The annotated sagittal slice (contract 8 display).
    annotation : SpineAnnotation
    spacing : tuple of 2 floats
        (row, col) pixel spacing in mm.

    Returns
    -------
    SpineResult

    Raises
    ------
    AnnotationError
        An ROI with fewer than 3 vertices or outside the image, an angle's
        line with an end outside it, vertebral ROIs without a CSF ROI, every
        vertebra excluded, nothing to measure.
    """
    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise AnnotationError(f"measure_spine needs one 2D slice, got an array of shape {image.shape}")
    warnings = []
    has_rois = bool(annotation.vertebrae) or annotation.csf is not None
    if not has_rois and not annotation.angles:
        raise AnnotationError(
            "the spine annotation holds neither ROIs nor angles; draw the L1–L4 and CSF ROIs, "
            "the two endplate lines, or both"
        )
    si, vbq, si_csf, share, levels = {}, None, None, None, ()
    if has_rois:
        if annotation.csf is None:
            raise AnnotationError("the CSF ROI is missing; draw one in the CSF at L3 (L2 or L1 when L3 is obscured)")
        if not annotation.vertebrae:
            raise AnnotationError("no vertebral ROI: draw an ROI in the cancellous bone of each of L1–L4")
        for level in VBQ_LEVELS:
            if level in annotation.vertebrae:
                si[level], _ = roi_median(image, annotation.vertebrae[level], name=f"{level} ROI")
        levels = tuple(lv for lv in VBQ_LEVELS if lv in si and lv not in annotation.excluded)
        if not levels:
            raise AnnotationError(
                "every vertebral ROI is excluded; VBQ needs at least one included level of L1–L4 "
                "(two or more for a trustworthy score)"
            )
        si_csf, values = roi_median(image, annotation.csf["vertices"], name="CSF ROI")
        if not si_csf > 0:
            raise AnnotationError(
                f"the CSF ROI's median signal is {si_csf:g}; VBQ divides by it, so it must be positive "
                "(is this a magnitude T1-weighted image?)"
            )
        q1, q3 = np.percentile(values, [25, 75])
        share = float((q3 - q1) / si_csf)
        vbq = float(np.median([si[lv] for lv in levels]) / si_csf)
        if len(levels) < 2:
            warnings.append(f"only {len(levels)} vertebra left in VBQ ({levels[0]}); the score rests on one level")
        missing = [lv for lv in VBQ_LEVELS if lv not in si and lv not in annotation.excluded]
        if missing:
            warnings.append(f"no ROI and not excluded: {', '.join(missing)}")
        if share > CSF_MAX_IQR_SHARE:
            warnings.append(
                f"CSF ROI not homogeneous: interquartile range {share:.0%} of its median "
                f"(limit {CSF_MAX_IQR_SHARE:.0%}); it may include cord, nerve roots, fat or bone"
            )
        if annotation.csf["level"] != "L3":
            warnings.append(f"CSF ROI at {annotation.csf['level']} instead of L3 (allowed when L3's CSF is obscured)")
    on_other = sorted(
        name
        for name, k in annotation.roi_slices.items()
        if annotation.slice_index is not None and k != annotation.slice_index
    )
    if on_other:
        warnings.append(f"ROI on another slice than the marked slice {annotation.slice_index}: {', '.join(on_other)}")
    rows, cols = image.shape
    for name, lines in annotation.angles.items():
        for which, line in zip(("upper", "lower"), lines, strict=True):
            line = np.asarray(line, dtype=float)
            if not ((line[:, 0] >= -0.5).all() and (line[:, 0] <= rows - 0.5).all()) or not (
                (line[:, 1] >= -0.5).all() and (line[:, 1] <= cols - 0.5).all()
            ):
                raise AnnotationError(
                    f"{name}: an end of the {which} line lies outside the {rows}×{cols} slice; draw it on the image"
                )
    angles = {name: line_angle_deg(upper, lower, spacing=spacing) for name, (upper, lower) in annotation.angles.items()}
    return SpineResult(
        vbq=vbq,
        levels=levels,
        si=si,
        si_csf=si_csf,
        csf_iqr_share=share,
        angles=angles,
        excluded=dict(annotation.excluded),
        warnings=tuple(warnings),
    )


def spine_row(volume, annotation, *, patient_id=None, observer_id=None, session=None, check_image=True):
    """Measure a spine annotation on its image and return the contract-8 row.

    Parameters
    ----------
    volume : Volume
        A sagittal image (``napari_pvm.core.io.read_volume``); axial images
        are refused.
    annotation : SpineAnnotation
    patient_id, observer_id, session : str, optional
        Override the annotation's values.
    check_image : bool
        Refuse an annotation whose stored image sha256 differs.

    Returns
    -------
    row : dict
        Keys of ``schema.SPINE_COLUMNS`` (``row_id`` empty until stored).
    result : SpineResult
    """
    from .._version import __version__
    from .annotation import check_identifier
    from .io import require_plane

    require_plane(volume, "sagittal", what="spine")
    stored = (annotation.image_sha256 or "").lower()
    if check_image and stored and stored != volume.sha256:
        raise AnnotationError(
            f"the spine annotation was drawn on another image (sha256 {stored[:12]}… in the "
            f"annotation, {volume.sha256[:12]}… for {volume.name}); open the matching image"
        )
    if annotation.angles and volume.metadata.get("anterior_source") == "unconfirmed":
        raise AnnotationError(
            f"{volume.name}: the radiograph does not say where anterior is (no PatientOrientation), so the "
            "angle's sign is unknown; confirm the side (command line: --anterior left|right)"
        )
    k = annotation.slice_index
    if k is None:
        if volume.n_slices != 1:
            raise AnnotationError("the spine annotation has no slice_index; mark the mid-sagittal slice")
        k = 0
    image = volume.slice(k)
    result = measure_spine(image, annotation, spacing=volume.pixel_spacing)
    ids = {}
    for key, value in (("patient_id", patient_id), ("observer_id", observer_id), ("session", session)):
        value = value if value not in (None, "") else getattr(annotation, key)
        ids[key] = check_identifier(value, key.replace("_", " ")) if value not in (None, "") else ""
    row = {
        "schema_version": getattr(schema, "SPINE_SCHEMA_VERSION", "1"),
        "row_id": "",
        "patient_id": ids["patient_id"],
        "observer_id": ids["observer_id"],
        "session": ids["session"] or schema.DEFAULT_SESSION,
        "slice_index": int(k),
        "row_spacing_mm": float(volume.pixel_spacing[0]),
        "col_spacing_mm": float(volume.pixel_spacing[1]),
        "image_sha256": volume.sha256,
        "software_version": __version__,
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds"),
        "vbq": result.vbq,
        "vbq_levels": ";".join(result.levels),
    }
    for level in VBQ_LEVELS:
        row[f"vbq_si_{level}"] = result.si[level] if level in result.levels else None
    row["vbq_si_csf"] = result.si_csf
    row["local_kyphosis_deg"] = result.angles.get("local_kyphosis")
    columns = getattr(schema, "SPINE_COLUMNS", tuple(row))
    return {c: row.get(c) for c in columns}, result
