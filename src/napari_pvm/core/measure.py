"""Areas (cm²) and fat infiltration (FI%) per muscle, side and bilaterally.

Area = pixels inside the outline × pixel area from the header (contract 1's
pixel-centre rule; a pixel inside two outlines counts once, for the first in
contract order, :func:`napari_pvm.core.rois.exclusive_masks`). Fat area =
pixels inside the outline that the FI% method labels fat × pixel area; lean
(muscle) area = total − fat; FI% = fat area / total area × 100. Bilateral
values are sums of areas, and FI% is pooled over both sides' pixels. ES+MF
(``ESMF``) is the union of ES and MF, which is also their sum.

:func:`measure_annotation` fills one row of the shared muscle table, schema
version 2 (contract 3): identity, method and settings (empty for settings
the method does not use), the measures, how each outline was made
(``outline_origin``), the quality of the fat classification, the mean Dixon
fat fraction when the method has one, and the area of the vertebral-body
reference outline when there is one.
"""

import dataclasses
import datetime
import importlib
import re

import numpy as np

from . import schema
from .errors import AnnotationError, ClassifierError, ImageReadError, PvmError
from .schema import DEFAULT_SESSION

__all__ = [
    "FOREST",
    "ImageMismatchError",
    "Measurement",
    "MethodSettings",
    "available_methods",
    "check_image_matches",
    "check_same_grid",
    "classifier_for",
    "measure_annotation",
    "measure_masks",
    "outline_masks",
    "outline_origin",
    "reference_area_cm2",
    "rois_present",
    "row_identity",
]

#: Name of the default FI% method (the Weka-equivalent random forest).
FOREST = "forest"
_SETTINGS = {"preset": "features_preset", "n_trees": "n_trees", "seed": "seed", "class_balance": "class_balance"}


class ImageMismatchError(AnnotationError):
    """The annotation was drawn on another image (sha256 differs)."""


@dataclasses.dataclass
class Measurement:
    """One measured case: the CSV row and what is behind it.

    Attributes
    ----------
    row : dict
        The version-2 row (``schema.COLUMNS``), as ``store.append_rows`` takes it.
    masks : dict
        ``{"PS_L": bool (M, N)}``: disjoint outline masks (first-in-order rule).
    fat : ndarray of bool
        Fat pixels inside the outlines.
    classifier_params : dict
        Settings the method recorded (``FatClassifier.params`` for the
        forest, ``{"method": name}`` otherwise).
    fat_fraction : ndarray of float or None
        Per-pixel tissue fat fraction 0..1 (Dixon), else None.
    fat_result : object or None
        The method's full result (``fat_methods.FatResult``) when the
        ``napari_pvm.core.fat_methods`` module ran it.
    """

    row: dict
    masks: dict
    fat: np.ndarray
    classifier_params: dict
    fat_fraction: np.ndarray = None
    fat_result: object = None


def _group_keys(group, side):
    members = ("ES", "MF") if group == "ESMF" else (group,)
    sides = ("L", "R") if side == "B" else (side,)
    return [f"{m}_{s}" for m in members for s in sides]


def measure_masks(masks, fat, *, spacing, fat_fraction=None):
    """Contract-3 measure columns from outline masks and a fat mask.

    Parameters
    ----------
    masks : dict
        ``{"PS_L": bool (M, N), ...}``; absent outlines are simply missing.
        They should not overlap (:func:`outline_masks` makes them so).
    fat : ndarray of bool, shape (M, N)
        Fat pixels (only pixels inside outlines matter).
    spacing : tuple of 2 floats
        (row, column) pixel spacing in mm.
    fat_fraction : ndarray of float, shape (M, N), optional
        Tissue fat fraction 0..1 per pixel (a Dixon method); when given,
        ``{group}_{side}_mean_ff_pct`` are filled too: the mean over the
        group's pixels × 100, pooled over both sides' pixels for B.

    Returns
    -------
    dict
        ``{"PS_L_total_area_cm2": ..., ...}`` for every column of
        ``schema.MEASURE_COLUMNS`` (and of ``schema.MEAN_FF_COLUMNS`` when
        ``fat_fraction`` is given); None where the outlines are absent.

    Examples
    --------
    >>> m = np.zeros((4, 4), bool); m[:2, :2] = True
    >>> f = np.zeros((4, 4), bool); f[0, 0] = True
    >>> out = measure_masks({"PS_L": m}, f, spacing=(1.0, 2.0))
    >>> out["PS_L_total_area_cm2"], out["PS_L_fi_pct"]
    (0.08, 25.0)
    >>> ff = np.full((4, 4), 0.25)
    >>> measure_masks({"PS_L": m}, f, spacing=(1.0, 2.0), fat_fraction=ff)["PS_L_mean_ff_pct"]
    25.0
    """
    row_mm, col_mm = (float(s) for s in spacing)
    if not (np.isfinite(row_mm) and np.isfinite(col_mm) and row_mm > 0 and col_mm > 0):
        raise AnnotationError(f"pixel spacing {spacing} mm must be finite and positive")
    pixel_cm2 = row_mm * col_mm / 100.0
    fat = np.asarray(fat, dtype=bool)
    out = dict.fromkeys(schema.MEASURE_COLUMNS)
    if fat_fraction is not None:
        fat_fraction = np.asarray(fat_fraction, dtype=float)
        if fat_fraction.shape != fat.shape:
            raise ClassifierError(f"the fat fraction map has shape {fat_fraction.shape}, the slice {fat.shape}")
        out.update(dict.fromkeys(schema.MEAN_FF_COLUMNS))
        for key, mask in masks.items():
            values = fat_fraction[mask]
            if not np.all(np.isfinite(values)):
                raise ClassifierError(
                    f"the fat fraction is not a number at {int(np.count_nonzero(~np.isfinite(values)))} pixels "
                    f"inside {key}; check the water and fat images"
                )
    for group in schema.GROUPS:
        for side in schema.SIDES:
            keys = _group_keys(group, side)
            if not all(k in masks for k in keys):
                continue
            n_total = sum(int(np.count_nonzero(masks[k])) for k in keys)
            n_fat = sum(int(np.count_nonzero(masks[k] & fat)) for k in keys)
            total = n_total * pixel_cm2
            fat_cm2 = n_fat * pixel_cm2
            out[schema.measure_column(group, side, "total_area_cm2")] = total
            out[schema.measure_column(group, side, "fat_area_cm2")] = fat_cm2
            out[schema.measure_column(group, side, "muscle_area_cm2")] = total - fat_cm2
            out[schema.measure_column(group, side, "fi_pct")] = 100.0 * n_fat / n_total if n_total else 0.0
            if fat_fraction is not None and n_total:
                ff_sum = sum(float(fat_fraction[masks[k]].sum()) for k in keys)
                out[schema.measure_column(group, side, "mean_ff_pct")] = 100.0 * ff_sum / n_total
    return out


def rois_present(keys):
    """';'-joined outline keys in contract order, e.g. ``"ES_L;ES_R;MF_L;MF_R"``."""
    return ";".join(k for k in schema.ROI_KEYS if k in set(keys))


def outline_origin(keys, origins=None):
    """The ``outline_origin`` cell: ``KEY:origin`` for each outline in
    ``keys``, in contract order; an outline missing from ``origins`` was drawn.

    Examples
    --------
    >>> outline_origin(["ES_L", "PS_R"], {"ES_L": "edited"})
    'PS_R:drawn;ES_L:edited'
    """
    origins = origins or {}
    return ";".join(f"{k}:{origins.get(k, 'drawn')}" for k in schema.ROI_KEYS if k in set(keys))


def outline_masks(rois, shape):
    """Validate outlines and rasterise them into disjoint masks.

    A pixel inside two outlines goes to the first in contract order
    (:func:`napari_pvm.core.rois.exclusive_masks`, which also refuses
    overlaps beyond ``rois.MAX_OVERLAP_PIXELS`` and outlines the rule would
    split or hollow out).
    """
    from .rois import exclusive_masks, roi_mask, validate_polygon

    masks = {}
    for key in schema.ROI_KEYS:
        if key not in rois:
            continue
        verts = validate_polygon(rois[key], shape, name=key)
        mask = roi_mask(verts, shape)
        if not mask.any():
            raise AnnotationError(f"{key}: the outline contains no pixel centre; draw it larger")
        masks[key] = mask
    return exclusive_masks(masks)


def reference_area_cm2(vertices, shape, *, spacing, name="VB"):
    """Area in cm² of a reference outline (pixel-centre rule).

    Examples
    --------
    >>> reference_area_cm2([[0.5, 0.5], [0.5, 3.5], [3.5, 3.5], [3.5, 0.5]], (5, 5), spacing=(1.0, 2.0))
    0.18
    """
    from .rois import roi_mask, validate_polygon

    mask = roi_mask(validate_polygon(vertices, shape, name=f"reference {name}"), shape)
    if not mask.any():
        raise AnnotationError(f"reference {name}: the outline contains no pixel centre; draw it larger")
    return int(np.count_nonzero(mask)) * float(spacing[0]) * float(spacing[1]) / 100.0


def check_image_matches(annotation, volume):
    """Raise :class:`ImageMismatchError` if the annotation names another image."""
    stored = (annotation.image_sha256 or "").lower()
    if stored and stored != volume.sha256:
        raise ImageMismatchError(
            f"the annotation was drawn on another image (sha256 {stored[:12]}… in the "
            f"annotation, {volume.sha256[:12]}… for {volume.name}); open the matching image"
        )


def check_same_grid(volume, other, *, what):
    """Refuse an image (``what``: "water" or "fat") whose grid differs from
    ``volume``'s: another number of slices or pixels, or another spacing."""
    if other.data.shape != volume.data.shape:
        raise ImageReadError(
            f"the {what} image {other.name} has {other.data.shape[0]} slices of {other.data.shape[1]}×"
            f"{other.data.shape[2]} pixels, the image {volume.name} {volume.data.shape[0]} of "
            f"{volume.data.shape[1]}×{volume.data.shape[2]}; give the {what} image of the same acquisition"
        )
    if not np.allclose(other.spacing, volume.spacing, rtol=1e-4, atol=0):
        raise ImageReadError(
            f"the {what} image {other.name} has voxel spacing {tuple(round(float(s), 4) for s in other.spacing)} "
            f"mm, the image {volume.name} {tuple(round(float(s), 4) for s in volume.spacing)} mm; give the "
            f"{what} image on the same grid"
        )


def _fat_methods():
    """``napari_pvm.core.fat_methods``, or None in a build without it."""
    try:
        return importlib.import_module(f"{__package__}.fat_methods")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.fat_methods":
            raise
        return None


def available_methods():
    """Names of the FI% methods this installation can run, default first
    (``napari_pvm.core.fat_methods.METHODS``; only ``"forest"`` without it).

    Examples
    --------
    >>> available_methods()[0]
    'forest'
    """
    module = _fat_methods()
    return tuple(module.METHODS) if module is not None else (FOREST,)


def _check_method(method):
    name = FOREST if method in (None, "") else str(method)
    if name not in available_methods():
        raise ClassifierError(f"unknown FI% method {name!r}; use one of {', '.join(available_methods())}")
    return name


@dataclasses.dataclass(frozen=True)
class _PlainResult:
    """What the forest path gives when ``fat_methods`` is not available."""

    fat: np.ndarray
    method: str
    settings: dict
    fat_muscle_contrast: float = None
    qc_flags: tuple = ()
    fat_fraction: np.ndarray = None


def measure_annotation(
    volume,
    annotation,
    *,
    patient_id=None,
    observer_id=None,
    session=None,
    preset=None,
    n_trees=None,
    seed=None,
    class_balance=None,
    method=None,
    water=None,
    fat=None,
    check_image=True,
    progress=None,
):
    """Classify fat and measure one annotated case (a schema-2 row).

    Parameters
    ----------
    volume : Volume
        The image (``napari_pvm.core.io.read_volume``).
    annotation : Annotation
        Outlines and samples (``napari_pvm.core.annotation.read_annotation``).
    patient_id, observer_id, session : str, optional
        Override the annotation's values (command-line flags win).
    preset, n_trees, seed, class_balance : optional
        Forest settings; override the annotation's ``classifier`` values,
        which override the defaults of ``FatClassifier``. Checked for every
        method, recorded only for the forest.
    method : str, optional
        The FI% method, one of ``napari_pvm.core.fat_methods.METHODS``
        (default ``"forest"``).
    water, fat : Volume, optional
        Water and fat images of a Dixon acquisition on the same grid as
        ``volume``; both or neither, required by and only used with
        ``method="dixon"``.
    check_image : bool
        Refuse an annotation whose stored image sha256 differs.
    progress : callable, optional
        Called with short messages as the work proceeds (passed on to the
        FI% method).

    Returns
    -------
    Measurement
        ``row`` has every column of ``schema.COLUMNS`` but ``row_id``:
        ``outline_origin`` from the outlines' origins, ``fat_muscle_contrast``
        and ``qc_flags`` from the method, ``*_mean_ff_pct`` when the method
        gives a fat-fraction map, ``VB_total_area_cm2`` from the annotation's
        VB reference outline (else empty).

    Raises
    ------
    PvmError
        Bad outlines (overlapping, split or hollowed by the first-in-order
        rule), samples, settings, method, or water/fat images.
    """
    from .._version import __version__
    from .classify import labels_from_samples

    say = progress or (lambda message: None)
    method = _check_method(method)
    if (water is None) != (fat is None):
        raise PvmError("give both the water and the fat image of the Dixon acquisition, or neither")
    if method == "dixon" and water is None:
        raise PvmError("method dixon needs the water and fat images (--water W --fat F)")
    if method != "dixon" and water is not None:
        raise PvmError(f"the water and fat images are used only by method dixon, not {method}; leave them out")
    if getattr(volume, "plane", "axial") != "axial":
        from .io import require_plane

        require_plane(volume, "axial", what="measuring the muscles")
    if check_image:
        check_image_matches(annotation, volume)
    if not annotation.rois:
        raise AnnotationError("the annotation has no outlines; outline PS, ES and MF first")
    image = volume.slice(annotation.slice_index)
    shape = image.shape
    water_image = fat_image = None
    if water is not None:
        check_same_grid(volume, water, what="water")
        check_same_grid(volume, fat, what="fat")
        water_image = water.slice(annotation.slice_index)
        fat_image = fat.slice(annotation.slice_index)
    masks = outline_masks(annotation.rois, shape)
    reference = getattr(annotation, "reference", None) or {}
    vb_cm2 = reference_area_cm2(reference["VB"], shape, spacing=volume.pixel_spacing) if "VB" in reference else None
    clf = classifier_for(annotation.classifier, preset=preset, n_trees=n_trees, seed=seed, class_balance=class_balance)
    # IDs and settings are checked before the classification, which takes seconds
    row = row_identity(volume, annotation, clf.params, patient_id=patient_id, observer_id=observer_id, session=session)
    labels = labels_from_samples(annotation.samples, shape, painted=annotation.sample_labels)
    within = np.logical_or.reduce(list(masks.values()))
    module = _fat_methods()
    if module is not None:
        result = module.classify_fat(
            image,
            labels,
            within=within,
            spacing=volume.pixel_spacing,
            method=method,
            classifier=clf,
            water=water_image,
            fat=fat_image,
            progress=progress,
        )
        params = dict(clf.params) if method == FOREST else {"method": result.method}
    else:  # the forest of core.classify (FatClassifier), as before fat_methods existed
        say("training the fat classifier")
        clf.fit(image, labels, within=within)  # one feature pass for samples and outlines
        say("classifying pixels inside the outlines")
        params = dict(clf.params)
        result = _PlainResult(
            fat=np.asarray(clf.predict(image, within=within), dtype=bool),
            method=params.get("method", FOREST),
            settings={col: params.get(key) for key, col in _SETTINGS.items()},
        )
    fat_mask = np.asarray(result.fat, dtype=bool) & within
    measures = measure_masks(masks, fat_mask, spacing=volume.pixel_spacing, fat_fraction=result.fat_fraction)
    row.update(_recorded_settings(result, params if method == FOREST else {}))
    row.update(
        rois_present=rois_present(masks),
        software_version=__version__,
        measured_at=_utc_now(),
        outline_origin=outline_origin(masks, getattr(annotation, "origins", None)),
        fat_muscle_contrast=_contrast(result.fat_muscle_contrast),
        qc_flags=_flags(result.qc_flags),
        VB_total_area_cm2=vb_cm2,
    )
    row.update(dict.fromkeys(schema.MEAN_FF_COLUMNS))
    row.update(measures)
    row = {c: row.get(c) for c in schema.COLUMNS if c != "row_id"}
    return Measurement(
        row=row,
        masks=masks,
        fat=fat_mask,
        classifier_params=params,
        fat_fraction=result.fat_fraction,
        fat_result=result if module is not None else None,
    )


def _flags(flags):
    """The ``qc_flags`` cell: codes joined by ``;`` (a str is taken as one cell)."""
    if not flags:
        return ""
    return flags if isinstance(flags, str) else ";".join(str(f) for f in flags)


def _contrast(value):
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) and value > 0 else None


def _recorded_settings(result, params):
    """The method and settings columns as the method reports them: the
    forest's four settings (from ``params``, the classifier's, where the
    result lacks them), or all empty (version 2) for other methods."""
    settings = {col: params.get(key) for key, col in _SETTINGS.items() if key in params}
    settings.update(result.settings or {})
    out = {"method": result.method}
    for key, col in _SETTINGS.items():
        value = settings.get(col, settings.get(key))
        if col in ("n_trees", "seed"):
            out[col] = None if value in (None, "") else int(value)
        elif col == "class_balance":
            out[col] = "" if value in (None, "") else str(value).lower()
        else:
            out[col] = "" if value is None else str(value)
    return out


@dataclasses.dataclass(frozen=True)
class MethodSettings:
    """Settings of a case measured by a method other than the forest: only
    its name (``params == {"method": name}``); the forest's settings do not
    apply and stay empty in the row."""

    method: str

    @property
    def params(self):
        return {"method": self.method}


def classifier_for(stored, *, method=None, **overrides):
    """What a case is measured with, before measuring.

    For the forest (``method`` None or ``"forest"``): the unfitted
    FatClassifier with the settings ``stored`` in its annotation
    (``annotation.classifier``), non-None ``overrides`` (command-line flags)
    on top, FatClassifier's defaults for the rest. For another method: a
    :class:`MethodSettings` (its ``params`` name the method only), after
    checking the overrides all the same. Either has ``params`` for
    :func:`row_identity`. Bad settings or an unknown method raise a PvmError.
    """
    from .classify import FatClassifier

    name = _check_method(method)
    settings = dict(stored)
    settings.pop("method", None)
    settings.update({k: v for k, v in overrides.items() if v is not None})
    clf = FatClassifier(**_classifier_kwargs(settings))
    return clf if name == FOREST else MethodSettings(_method_label(name))


def _method_label(name):
    """What the row's ``method`` column will say for method ``name``."""
    module = _fat_methods()
    label = getattr(module, "method_label", None) if module is not None else None
    return label(name) if callable(label) else name


def row_identity(volume, annotation, params, *, patient_id=None, observer_id=None, session=None):
    """The identification columns of a case's row that are known before
    measuring (all but ``rois_present``, ``software_version``, ``measured_at``,
    ``row_id`` and the version-2 measures): the given IDs, else the
    annotation's; the method and settings in ``params`` (``.params`` of
    :func:`classifier_for`'s result): the forest's four settings, or empty
    ones for a method without them."""
    from .annotation import annotation_sha256, check_identifier

    pid = patient_id if patient_id not in (None, "") else annotation.patient_id
    oid = observer_id if observer_id not in (None, "") else annotation.observer_id
    ses = session if session not in (None, "") else (annotation.session or DEFAULT_SESSION)
    forest = params.get("preset") is not None
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "patient_id": check_identifier(pid, "patient ID") if pid not in (None, "") else "",
        "observer_id": check_identifier(oid, "observer ID") if oid not in (None, "") else "",
        "session": check_identifier(ses, "session label"),
        "level": annotation.level,
        "slice_index": int(annotation.slice_index),
        "row_spacing_mm": float(volume.pixel_spacing[0]),
        "col_spacing_mm": float(volume.pixel_spacing[1]),
        "image_sha256": volume.sha256,
        "annotation_sha256": annotation_sha256(annotation),
        "method": params.get("method", FOREST),
        "features_preset": params.get("preset") if forest else "",
        "n_trees": int(params.get("n_trees")) if forest else None,
        "seed": int(params.get("seed")) if forest else None,
        "class_balance": str(params.get("class_balance")).lower() if forest else "",
    }


def _classifier_kwargs(settings):
    kwargs = {}
    if "preset" in settings:
        kwargs["preset"] = str(settings["preset"])
    for key in ("n_trees", "seed"):
        if key in settings:
            value = settings[key]
            if isinstance(value, bool) or not re.fullmatch(r"-?\d+", str(value)):
                raise AnnotationError(f"classifier {key} must be an integer, got {value!r}")
            kwargs[key] = int(value)
    if "class_balance" in settings:
        value = settings["class_balance"]
        if isinstance(value, str):
            if value.lower() not in ("true", "false"):
                raise AnnotationError(f"classifier class_balance must be true or false, got {value!r}")
            value = value.lower() == "true"
        kwargs["class_balance"] = bool(value)
    return kwargs


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
