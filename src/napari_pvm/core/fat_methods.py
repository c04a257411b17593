"""FI% methods: which pixels inside the muscle outlines are fat.

:func:`classify_fat` is the one entry point ``measure`` uses. Every method
counts a pixel as fat when more than half of its volume is fat (tissue
fat fraction above ½), and every method is calibrated on this patient's
own tissues (:func:`napari_pvm.core.calibration.calibrate`: coil shading
measured on the lean muscle inside the outlines together with the
subcutaneous fat beside them):

``"forest"`` (default, method id :data:`napari_pvm.core.classify.METHOD`)
    The Weka-equivalent random forest (:class:`~napari_pvm.core.classify.FatClassifier`)
    trained on the samples and the calibration canvas.
``"threshold"`` (``threshold-halfway/2``)
    Fat where the shading-corrected intensity is above half-way between
    the muscle and fat levels.
``"gmm"`` (``gmm3/2``)
    A three-component Gaussian mixture (scikit-learn, ``random_state=0``,
    means started at muscle, half-way and fat) fitted to the corrected
    intensities inside the outlines, as in the muscle-MRI literature. Its
    lowest and highest components are the muscle and the fat *inside the
    outlines*; a pixel's tissue fraction is where its intensity lies between
    their means (linear mixing), and it is fat above ½ — the FI% definition,
    so a pixel that is 60 % fat counts even when the partial-volume
    component claims it.
``"dixon"`` (``dixon-tf/1``)
    From the water and fat images of a Dixon acquisition: the tissue fat
    fraction ``t = (F/F_ref) / (F/F_ref + W/W_ref)`` with ``F_ref`` the
    median fat signal of the fat sample and ``W_ref`` the median water
    signal of the muscle sample (both divided by the coil-shading field of
    W + F when it can be measured), so the signal ratio F/(W+F), in which
    fat gives about three times the signal of muscle, becomes a share of
    volume; fat where ``t > ½``. ``fat_fraction`` holds ``t``.

Each result carries quality flags (:data:`QC_FLAGS`), documented in
``docs/classifier.md``.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> img = np.full((60, 60), 100.0); img[:15] = 400.0; img[30:34, 10:50] = 400.0
>>> img += rng.normal(0, 5, img.shape)
>>> labels = np.zeros(img.shape, np.uint8); labels[3:12, 10:50] = 2; labels[40:50, 10:30] = 1
>>> within = np.zeros(img.shape, bool); within[25:55, 5:55] = True
>>> res = classify_fat(img, labels, within=within, spacing=(1.0, 1.0), method="threshold")
>>> res.method, round(float(100 * res.fat[within].mean()), 1)
('threshold-halfway/2', 10.7)
"""

import dataclasses

import numpy as np

from . import calibration as _cal
from . import classify as _classify
from .errors import ClassifierError

__all__ = ["METHODS", "METHOD_IDS", "QC_FLAGS", "FatResult", "classify_fat"]

#: FI% methods ``measure`` offers (``--method``).
METHODS = ("forest", "threshold", "gmm", "dixon")
#: Versioned identifier of each method, recorded in the CSV ``method`` column.
METHOD_IDS = {
    "forest": _classify.METHOD,
    "threshold": "threshold-halfway/2",
    "gmm": "gmm3/2",
    "dixon": "dixon-tf/1",
}
#: Quality flags and what each means (docs/classifier.md gives the reasons).
QC_FLAGS = {
    "low_contrast": "fat is less than {low_contrast}× as bright as lean muscle after shading correction",
    "fat_sample_inhomogeneous": "the fat sample's signal varies by more than {fat_sample_spread:.0%} (robust CV)",
    "shading_out_of_range": "the coil shading could not be measured on the outlines, or varies more than "
    "{shading_range}-fold inside them",
    "high_uncertainty": "the forest's mean uncertainty inside the outlines exceeds {uncertainty}",
}
#: Thresholds of the quality flags.
QC_LIMITS = {"low_contrast": 2.0, "fat_sample_spread": 0.2, "shading_range": 2.5, "uncertainty": 0.25}
_GMM_SEED = 0
#: A mixture component stands for the muscle (the fat) of the outlines only
#: when its mean lies within this share of the span of the calibrated lean
#: (fat) level; otherwise it is partial volume and the calibration's level stands.
_GMM_LEVEL_WINDOW = 0.25


@dataclasses.dataclass(frozen=True)
class FatResult:
    """Result of :func:`classify_fat`.

    Attributes
    ----------
    fat : bool ndarray
        Fat pixels within ``within`` (image shape).
    method : str
        Versioned method id for the CSV ``method`` column.
    settings : dict
        ``features_preset``, ``n_trees``, ``seed``, ``class_balance`` of the
        forest; empty for the other methods.
    fat_muscle_contrast : float
        Fat level / muscle level after shading correction.
    qc_flags : tuple of str
        Quality flags (:data:`QC_FLAGS`); empty when nothing is doubtful.
    fat_fraction : float ndarray or None
        Dixon only: per-pixel tissue fat fraction (0..1), NaN outside ``within``.
    """

    fat: np.ndarray
    method: str
    settings: dict
    fat_muscle_contrast: float
    qc_flags: tuple
    fat_fraction: object = None


def classify_fat(
    image, labels, *, within, spacing, method="forest", classifier=None, water=None, fat=None, progress=None
):
    """Fat pixels inside the outlines by the chosen method.

    Parameters
    ----------
    image : ndarray (M, N)
        The slice (T2-weighted or water + fat), Contract 1 orientation.
    labels : int ndarray (M, N)
        Samples: 0 unlabelled, 1 muscle, 2 fat
        (:func:`napari_pvm.core.classify.labels_from_samples`).
    within : bool ndarray (M, N)
        Union of the muscle outlines.
    spacing : pair of float
        Pixel spacing (row, col) in mm.
    method : {"forest", "threshold", "gmm", "dixon"}
    classifier : FatClassifier, optional
        Unfitted classifier for ``"forest"`` (default ``FatClassifier()``).
    water, fat : ndarray (M, N), optional
        Dixon water and fat images on the slice's grid (``"dixon"`` only).
    progress : callable, optional
        Called with a short message per stage.

    Returns
    -------
    FatResult

    Raises
    ------
    ClassifierError
        Unknown method, missing or misshapen inputs, samples of one class
        only or too small, a fat sample not brighter than the muscle
        sample, Dixon without its water and fat images.
    """
    say = progress or (lambda message: None)
    if method not in METHODS:
        raise ClassifierError(f"unknown FI% method {method!r}; choose one of {', '.join(METHODS)}")
    img = _classify._check_image(image)
    lab = _classify._check_labels(labels, img.shape)
    w = np.asarray(within)
    if w.shape != img.shape:
        raise ClassifierError(
            f"the outline mask has shape {w.shape} but the slice is {img.shape}; use outlines of this slice"
        )
    w = w.astype(bool)
    if not w.any():
        raise ClassifierError("no pixel lies inside the outlines; outline the muscles first")
    sp = np.asarray(spacing, float)
    if sp.shape != (2,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ClassifierError(f"spacing must be two positive numbers (row, col) in mm, got {spacing!r}")
    if method == "dixon":
        return _dixon(img, lab, w, water, fat, say)
    if water is not None or fat is not None:
        raise ClassifierError(
            f"water and fat images are used only by the dixon method, not {method!r}; "
            "leave them out or choose --method dixon"
        )
    if method == "forest":
        return _forest(img, lab, w, classifier, say)
    say("calibrating intensities on the samples")
    cal = _cal.calibrate(img, lab, within=w)
    rows, cols = np.nonzero(w)
    x = cal.normalised(img, rows, cols)
    say(f"classifying pixels ({method})")
    if method == "threshold":
        is_fat = x > 0.5
    else:
        is_fat = _gmm_fat(x)
    out = np.zeros(img.shape, bool)
    out[rows, cols] = is_fat
    return FatResult(
        fat=out, method=METHOD_IDS[method], settings={}, fat_muscle_contrast=cal.contrast, qc_flags=_flags(cal)
    )


def _forest(img, lab, within, classifier, say):
    clf = classifier if classifier is not None else _classify.FatClassifier()
    if not isinstance(clf, _classify.FatClassifier):
        raise ClassifierError("classifier must be a napari_pvm.core.classify.FatClassifier")
    say("training the fat classifier")
    clf.fit(img, lab, within=within)
    say("classifying pixels inside the outlines")
    proba = clf.predict_proba(img, within)
    fat = np.nan_to_num(proba, nan=0.0) > 0.5  # equals clf.predict (Contract 5)
    uncertainty = float(np.mean(1.0 - np.abs(2.0 * proba[within] - 1.0)))
    settings = {
        "features_preset": clf.preset,
        "n_trees": clf.n_trees,
        "seed": clf.seed,
        "class_balance": clf.class_balance,
    }
    cal = clf.calibration_model
    return FatResult(
        fat=fat,
        method=METHOD_IDS["forest"],
        settings=settings,
        fat_muscle_contrast=cal.contrast,
        qc_flags=_flags(cal, uncertainty=uncertainty),
    )


def _gmm_fat(x):
    """Three-component mixture on the corrected intensities ``x`` (0 lean
    muscle, 1 fat at the patient's own levels). The lowest and highest
    components are the muscle and the fat inside the outlines; a pixel
    mixes them linearly, so its tissue fraction is
    ``(x - mu_muscle) / (mu_fat - mu_muscle)`` and it is fat above ½, i.e.
    above half-way between the two means. A component is taken for the
    muscle (the fat) only when its mean lies within ``_GMM_LEVEL_WINDOW`` of
    the span from the calibrated lean (fat) level; otherwise it is partial
    volume or bright muscle (a healthy muscle has no fat component) and the
    calibration's level stands in."""
    from sklearn.mixture import GaussianMixture

    data = np.asarray(x, np.float64).reshape(-1, 1)
    if len(data) < 3:
        return data[:, 0] > 0.5
    gmm = GaussianMixture(n_components=3, means_init=[[0.0], [0.5], [1.0]], random_state=_GMM_SEED)
    means = np.sort(gmm.fit(data).means_[:, 0])
    mu_muscle = means[0] if abs(means[0]) < _GMM_LEVEL_WINDOW else 0.0
    mu_fat = means[-1] if abs(means[-1] - 1.0) < _GMM_LEVEL_WINDOW else 1.0
    return data[:, 0] > 0.5 * (mu_muscle + mu_fat)


def _dixon(img, lab, within, water, fat, say):
    if water is None or fat is None:
        raise ClassifierError(
            "the dixon method needs the water and fat images of the Dixon acquisition "
            "(--water W.nii.gz --fat F.nii.gz, or worklist columns water and fat)"
        )
    wat = np.asarray(water, np.float64)
    fa = np.asarray(fat, np.float64)
    for name, a in (("water", wat), ("fat", fa)):
        if a.shape != img.shape:
            raise ClassifierError(
                f"the {name} image has shape {a.shape} but the slice is {img.shape}; "
                "give water and fat images on the same grid as the image"
            )
        if not np.all(np.isfinite(a)):
            raise ClassifierError(f"the {name} image contains NaN or infinite values")
    say("calibrating the Dixon references on the samples")
    rows_f, cols_f = np.nonzero(lab == _cal.FAT)
    rows_m, cols_m = np.nonzero(lab == _cal.MUSCLE)
    # coil shading from water + fat (it multiplies both images alike)
    try:
        cal = _cal.calibrate(np.maximum(wat, 0) + np.maximum(fa, 0), lab, within=within)
    except ClassifierError:
        cal = None
    shading = cal if cal is not None and cal.source == "outlines" else None

    def corrected(a, r, c):
        return a[r, c] / shading.field(r, c) if shading is not None else a[r, c]

    f_ref = float(np.median(corrected(fa, rows_f, cols_f)))
    w_ref = float(np.median(corrected(wat, rows_m, cols_m)))
    if not (f_ref > 0 and w_ref > 0):
        raise ClassifierError(
            "the fat sample has no fat signal or the muscle sample no water signal in the Dixon images; "
            "check that --water and --fat are not swapped and the samples lie in fat and lean muscle"
        )
    say("computing the tissue fat fraction")
    a = np.maximum(fa, 0.0) / f_ref
    b = np.maximum(wat, 0.0) / w_ref
    total = a + b
    t = np.divide(a, total, out=np.zeros_like(total), where=total > 0)
    fraction = np.where(within, t, np.nan)
    is_fat = within & (t > 0.5)
    contrast = (
        cal.contrast
        if cal is not None
        else float(np.median(img[rows_f, cols_f]) / max(float(np.median(img[rows_m, cols_m])), 1e-12))
    )
    flags = []
    sample_t = t[rows_f, cols_f]
    if float(np.mean(sample_t < 0.5)) > 0.1:
        flags.append("fat_sample_inhomogeneous")
    if shading is None:
        flags.append("shading_out_of_range")
    return FatResult(
        fat=is_fat,
        method=METHOD_IDS["dixon"],
        settings={},
        fat_muscle_contrast=float(contrast),
        qc_flags=tuple(flags),
        fat_fraction=fraction,
    )


def _flags(cal, *, uncertainty=None):
    flags = []
    if not cal.contrast >= QC_LIMITS["low_contrast"]:
        flags.append("low_contrast")
    if cal.fat_sample_spread > QC_LIMITS["fat_sample_spread"]:
        flags.append("fat_sample_inhomogeneous")
    if cal.source != "outlines" or cal.shading_range > QC_LIMITS["shading_range"]:
        flags.append("shading_out_of_range")
    if uncertainty is not None and uncertainty > QC_LIMITS["uncertainty"]:
        flags.append("high_uncertainty")
    return tuple(flags)
