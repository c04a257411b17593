"""Areas (cm²) and fat infiltration (FI%) per muscle, side and bilaterally.

Area = pixels inside the outline × pixel area from the header (contract 1's
pixel-centre rule). Fat area = pixels inside the outline that the fat
classifier labels fat × pixel area; lean (muscle) area = total − fat; FI% =
fat area / total area × 100. Bilateral values are sums of areas, and FI% is
pooled over both sides' pixels. ES+MF (``ESMF``) is the union of ES and MF,
which equals their sum because outlines may not overlap.
"""

import dataclasses
import datetime
import re

import numpy as np

from . import schema
from .schema import DEFAULT_SESSION
from .errors import AnnotationError

__all__ = [
    "ImageMismatchError",
    "Measurement",
    "check_image_matches",
    "measure_annotation",
    "measure_masks",
    "outline_masks",
    "rois_present",
]



class ImageMismatchError(AnnotationError):
    """The annotation was drawn on another image (sha256 differs)."""


@dataclasses.dataclass
class Measurement:
    """One measured case: the CSV row and the masks behind it."""

    row: dict
    masks: dict
    fat: np.ndarray
    classifier_params: dict


def measure_masks(masks, fat, *, spacing):
    """Contract-3 measure columns from outline masks and a fat mask.

    Parameters
    ----------
    masks : dict
        ``{"PS_L": bool (M, N), ...}``; absent outlines are simply missing.
    fat : ndarray of bool, shape (M, N)
        Fat pixels (only pixels inside outlines matter).
    spacing : tuple of 2 floats
        (row, column) pixel spacing in mm.

    Returns
    -------
    dict
        ``{"PS_L_total_area_cm2": ..., ...}`` for every column of
        ``schema.MEASURE_COLUMNS``; None where the outlines are absent.

    Examples
    --------
    >>> m = np.zeros((4, 4), bool); m[:2, :2] = True
    >>> f = np.zeros((4, 4), bool); f[0, 0] = True
    >>> out = measure_masks({"PS_L": m}, f, spacing=(1.0, 2.0))
    >>> out["PS_L_total_area_cm2"], out["PS_L_fi_pct"]
    (0.08, 25.0)
    """
    row_mm, col_mm = (float(s) for s in spacing)
    if not (np.isfinite(row_mm) and np.isfinite(col_mm) and row_mm > 0 and col_mm > 0):
        raise AnnotationError(f"pixel spacing {spacing} mm must be finite and positive")
    pixel_cm2 = row_mm * col_mm / 100.0
    fat = np.asarray(fat, dtype=bool)
    out = dict.fromkeys(schema.MEASURE_COLUMNS)
    for group in schema.GROUPS:
        members = ("ES", "MF") if group == "ESMF" else (group,)
        for side in schema.SIDES:
            sides = ("L", "R") if side == "B" else (side,)
            keys = [f"{m}_{s}" for m in members for s in sides]
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
    return out


def rois_present(keys):
    """';'-joined outline keys in contract order, e.g. ``"ES_L;ES_R;MF_L;MF_R"``."""
    return ";".join(k for k in schema.ROI_KEYS if k in set(keys))


def outline_masks(rois, shape):
    """Validate outlines and rasterise them; refuse overlaps between muscles."""
    from .rois import check_no_overlap, roi_mask, validate_polygon

    masks = {}
    for key in schema.ROI_KEYS:
        if key not in rois:
            continue
        verts = validate_polygon(rois[key], shape, name=key)
        mask = roi_mask(verts, shape)
        if not mask.any():
            raise AnnotationError(f"{key}: the outline contains no pixel centre; draw it larger")
        masks[key] = mask
    check_no_overlap(masks)
    return masks


def check_image_matches(annotation, volume):
    """Raise :class:`ImageMismatchError` if the annotation names another image."""
    stored = (annotation.image_sha256 or "").lower()
    if stored and stored != volume.sha256:
        raise ImageMismatchError(
            f"the annotation was drawn on another image (sha256 {stored[:12]}… in the "
            f"annotation, {volume.sha256[:12]}… for {volume.name}); open the matching image"
        )


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
    check_image=True,
    progress=None,
):
    """Classify fat and measure one annotated case.

    Parameters
    ----------
    volume : Volume
        The image (``napari_pvm.core.io.read_volume``).
    annotation : Annotation
        Outlines and samples (``napari_pvm.core.annotation.read_annotation``).
    patient_id, observer_id, session : str, optional
        Override the annotation's values (command-line flags win).
    preset, n_trees, seed, class_balance : optional
        Classifier settings; override the annotation's ``classifier`` values,
        which override the defaults of ``FatClassifier``.
    check_image : bool
        Refuse an annotation whose stored image sha256 differs.
    progress : callable, optional
        Called with short messages as the work proceeds.

    Returns
    -------
    Measurement
    """
    from .classify import labels_from_samples
    from .._version import __version__

    say = progress or (lambda message: None)
    if check_image:
        check_image_matches(annotation, volume)
    if not annotation.rois:
        raise AnnotationError("the annotation has no outlines; outline PS, ES and MF first")
    image = volume.slice(annotation.slice_index)
    shape = image.shape
    masks = outline_masks(annotation.rois, shape)
    clf = classifier_for(annotation.classifier, preset=preset, n_trees=n_trees, seed=seed, class_balance=class_balance)
    labels = labels_from_samples(annotation.samples, shape, painted=annotation.sample_labels)
    within = np.logical_or.reduce(list(masks.values()))
    say("training the fat classifier")
    clf.fit(image, labels, within=within)  # one feature pass for samples and outlines
    say("classifying pixels inside the outlines")
    fat = np.asarray(clf.predict(image, within=within), dtype=bool) & within
    measures = measure_masks(masks, fat, spacing=volume.pixel_spacing)
    params = dict(clf.params)
    row = row_identity(volume, annotation, params, patient_id=patient_id, observer_id=observer_id, session=session)
    row.update(rois_present=rois_present(masks), software_version=__version__, measured_at=_utc_now())
    row.update(measures)
    return Measurement(row=row, masks=masks, fat=fat, classifier_params=params)


def classifier_for(stored, **overrides):
    """The unfitted FatClassifier a case is measured with: the settings
    ``stored`` in its annotation (``annotation.classifier``), non-None
    ``overrides`` (command-line flags) on top, FatClassifier's defaults for
    the rest. Bad settings raise a PvmError."""
    from .classify import FatClassifier

    settings = dict(stored)
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return FatClassifier(**_classifier_kwargs(settings))


def row_identity(volume, annotation, params, *, patient_id=None, observer_id=None, session=None):
    """The identification columns of a case's row that are known before
    measuring (all but ``rois_present``, ``software_version``, ``measured_at``
    and ``row_id``): the given IDs, else the annotation's; the settings in
    ``params`` (``FatClassifier.params``)."""
    from .annotation import annotation_sha256, check_identifier

    pid = patient_id if patient_id not in (None, "") else annotation.patient_id
    oid = observer_id if observer_id not in (None, "") else annotation.observer_id
    ses = session if session not in (None, "") else (annotation.session or DEFAULT_SESSION)
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
        "method": params.get("method", "random-forest"),
        "features_preset": params.get("preset"),
        "n_trees": int(params.get("n_trees")),
        "seed": int(params.get("seed")),
        "class_balance": str(params.get("class_balance")).lower(),
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
