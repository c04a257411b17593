"""Per-patient random-forest fat classifier (Contract 5).

:class:`FatClassifier` does the job of Fiji's Trainable Weka Segmentation
(TWS) in the seed paper: a random forest, trained on this patient's own fat
and muscle samples, labels every pixel inside the muscle outlines as fat or
muscle. It keeps TWS's defaults where they are defaults of the method (the
76-map feature stack, 200 trees, 2 features tried per split, unlimited
depth, information gain, 100 % bootstrap) and differs where TWS is weak for
this task:

- **reproducible**: the forest's seed is a parameter (0 by default) and is
  recorded; it changes only the forest (the calibration canvas and the
  subsample of large samples are fixed). The same image, samples and
  settings give the same mask with any number of threads, with or without
  numba;
- **calibrated on this patient** (:mod:`.calibration`): intensities are
  mapped so that lean muscle is 0 and fat 1 everywhere inside the
  outlines, after dividing out a coil-shading field fitted jointly to the
  lean muscle inside the outlines and the subcutaneous fat beside them
  (each tissue weighted equally) and refined by the local lean level inside
  the outlines;
- **partial volume and thin fat**: besides the sampled pixels the forest
  sees a small synthetic *calibration canvas* built from this patient's
  own sample pixels, labelled fat where more than half of a pixel's area
  is fat, which puts the decision at the 50 % point FI% is defined by;
- **fast**: features are cached per slice content and computed only
  around the pixels that matter; the forest is grown and applied by a
  small compiled engine (:mod:`.forest`).

The module layout follows the data flow: :mod:`.features` (feature maps),
:mod:`.calibration` (per-patient intensity model and canvas),
:mod:`.forest` (the engine), this module (the API), and
:mod:`.fat_methods` (the FI% methods ``measure`` chooses between).
``docs/classifier.md`` gives the evidence for each choice.
"""

import numpy as np

from . import calibration as _cal
from . import features as _features
from . import forest as _forest
from .calibration import FAT, MUSCLE
from .errors import ClassifierError

__all__ = [
    "FAT",
    "METHOD",
    "MIN_SAMPLE_PIXELS",
    "MUSCLE",
    "FatClassifier",
    "PreviewClassifier",
    "labels_from_samples",
    "warm_up",
]

#: Identifier of the algorithm (bumped whenever results could change).
METHOD = "rf-weka/3"
#: Fewest pixels a class needs to be trained on.
MIN_SAMPLE_PIXELS = 10
#: At most this many sampled pixels per class are trained on (a fixed
#: subsample beyond that).
MAX_PIXELS_PER_CLASS = 500
#: Largest seed: the range numpy's and scikit-learn's random states take (and
#: far inside the shared CSV's 64-bit integers).
MAX_SEED = 2**32 - 1
#: Most trees a forest may have (Weka's default is 100): beyond this a forest
#: only costs time and memory.
MAX_TREES = 10_000
#: Forest targets of the two classes.
_TARGET = {MUSCLE: 0, FAT: 1}

warm_up = _forest.warm_up


# =====================================================================
# training labels
# =====================================================================
def labels_from_samples(samples, shape, painted=None):
    """Label image from contract-2 sample polygons and/or painted labels.

    Parameters
    ----------
    samples : list of dict or None
        ``{"class": "fat" | "muscle", "vertices": [[row, col], ...]}``.
    shape : tuple of 2 ints
        Slice shape.
    painted : ndarray of shape ``shape``, optional
        Painted labels (0 unlabelled, 1 muscle, 2 fat), e.g. a napari
        Labels layer's data for this slice.

    Returns
    -------
    ndarray of uint8, shape ``shape``
        0 unlabelled, 1 muscle, 2 fat. A pixel claimed by both classes is
        left unlabelled.

    Raises
    ------
    ClassifierError
        A polygon lies outside the image, has too few vertices or an
        unknown class; painted labels of another shape or with values
        other than 0, 1, 2.

    Examples
    --------
    >>> lab = labels_from_samples(
    ...     [{"class": "fat", "vertices": [[1, 1], [1, 4], [4, 4], [4, 1]]}], (8, 8))
    >>> int((lab == 2).sum())
    16
    """
    from .rois import roi_mask

    shape = tuple(int(s) for s in shape)
    fat = np.zeros(shape, bool)
    muscle = np.zeros(shape, bool)
    for i, s in enumerate(samples or []):
        cls = s.get("class") if isinstance(s, dict) else None
        if cls not in ("fat", "muscle"):
            raise ClassifierError(f"sample {i + 1} has class {cls!r}; a sample is 'fat' or 'muscle'")
        try:
            v = np.asarray(s.get("vertices"), dtype=float)
        except (TypeError, ValueError):
            raise ClassifierError(f"{cls} sample {i + 1}: vertices must be [row, col] numbers") from None
        if v.ndim != 2 or v.shape[1] != 2 or len(v) < 3 or not np.all(np.isfinite(v)):
            raise ClassifierError(
                f"{cls} sample {i + 1}: a sample outline needs at least 3 finite [row, col] vertices; redraw it"
            )
        lo, hi = v.min(axis=0), v.max(axis=0)
        if lo[0] < -0.5 or lo[1] < -0.5 or hi[0] > shape[0] - 0.5 or hi[1] > shape[1] - 0.5:
            raise ClassifierError(
                f"{cls} sample {i + 1} lies outside the {shape[0]}×{shape[1]} slice (rows {lo[0]:.0f}–{hi[0]:.0f}, "
                f"columns {lo[1]:.0f}–{hi[1]:.0f}); draw it again on this slice"
            )
        (fat if cls == "fat" else muscle)[...] |= roi_mask(v, shape)
    if painted is not None:
        p = np.asarray(painted)
        if p.shape != shape:
            raise ClassifierError(
                f"painted labels have shape {p.shape} but the slice is {shape}; paint on the slice being measured"
            )
        bad = ~np.isin(p, (0, MUSCLE, FAT))
        if bad.any():
            raise ClassifierError(
                f"painted labels hold values other than 0, 1 (muscle) and 2 (fat), e.g. {p[bad].flat[0]!r}; "
                "paint with label 1 for muscle and 2 for fat"
            )
        fat |= p == FAT
        muscle |= p == MUSCLE
    out = np.zeros(shape, np.uint8)
    out[muscle] = MUSCLE
    out[fat] = FAT
    out[fat & muscle] = 0
    return out


# =====================================================================
# trained models
# =====================================================================
class _TrainedModel:
    """What a trained model does: predict inside the outlines.

    Subclasses set ``_forest`` (a :class:`~napari_pvm.core.forest.Forest`),
    ``_cal`` (a :class:`~napari_pvm.core.calibration.Calibration`),
    ``preset`` and ``cache``.
    """

    _forest = None
    _cal = None

    def _within(self, img, within):
        if within is None:
            return np.ones(img.shape, bool)
        w = np.asarray(within)
        if w.shape != img.shape:
            raise ClassifierError(
                f"the outline mask has shape {w.shape} but the slice is {img.shape}; use outlines of this slice"
            )
        return w.astype(bool, copy=False)

    def _rows(self, img, rows, cols, cal, key=None, field=None):
        """Normalised feature rows (n, n_features) at pixel coordinates;
        ``field`` overrides the calibration's shading at these pixels."""
        if len(rows) == 0:
            return np.zeros((0, len(_features.feature_names(self.preset))), np.float32)
        window = (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)
        fs = self.cache.get(img, self.preset, window, key=key)
        raw = fs.maps[:, rows - fs.window[0], cols - fs.window[2]]
        if field is None:
            scale, offset = cal.scale_offset(rows, cols)
        else:
            span = cal.fat - cal.muscle
            scale, offset = 1.0 / (field * span), -cal.muscle / span
        return _features.normalise(raw, self.preset, scale, offset).T

    def _predict_rows(self, image, within):
        if self._forest is None:
            raise ClassifierError("the classifier is not trained yet: paint or outline fat and muscle samples first")
        img = _check_image(image)
        if img.shape != self._cal.shape:
            raise ClassifierError(
                f"the classifier was trained on a {self._cal.shape[0]}×{self._cal.shape[1]} slice and cannot "
                f"classify a {img.shape[0]}×{img.shape[1]} one; train it on this slice"
            )
        w = self._within(img, within)
        rows, cols = np.nonzero(w)
        return img, w, rows, cols

    def predict_proba(self, image, within=None):
        """Probability of fat per pixel; NaN outside ``within``.

        Parameters
        ----------
        image : ndarray (M, N)
        within : bool ndarray (M, N), optional
            Pixels to classify (e.g. the union of the muscle outlines);
            features are computed only around them.

        Returns
        -------
        ndarray of float64, shape (M, N)
        """
        img, w, rows, cols = self._predict_rows(image, within)
        out = np.full(img.shape, np.nan)
        if len(rows):
            out[rows, cols] = self._forest.proba(self._rows(img, rows, cols, self._cal))
        return out

    def predict(self, image, within=None):
        """Fat mask: probability of fat above 0.5, False outside ``within``.

        Equal to ``predict_proba(image, within) > 0.5``, computed with an
        exact early exit per pixel.
        """
        img, w, rows, cols = self._predict_rows(image, within)
        out = np.zeros(img.shape, bool)
        if len(rows):
            out[rows, cols] = self._forest.decide(self._rows(img, rows, cols, self._cal))
        return out

    def uncertainty(self, image, within=None):
        """Ensemble margin ``1 - |p(fat) - p(muscle)|`` (ilastik's definition).

        0 where all trees agree, 1 where they split evenly; NaN outside
        ``within``. Paint more samples where it is high.
        """
        p = self.predict_proba(image, within)
        return 1.0 - np.abs(2.0 * p - 1.0)


class FatClassifier(_TrainedModel):
    """Random-forest fat/muscle pixel classifier trained per patient.

    Parameters
    ----------
    preset : str
        Feature preset (see :data:`napari_pvm.core.features.PRESETS`);
        ``"weka"`` is TWS's default 2D stack.
    n_trees : int
        Trees in the forest (TWS: 200).
    seed : int
        Seed of the forest (bootstrap samples and features tried).
    class_balance : bool
        Weight the classes equally (TWS's "Balance classes"); off by
        default, as in TWS.
    max_features : int
        Features tried per split (TWS: 2).
    criterion : {"entropy", "gini"}
        Split criterion (TWS: information gain = entropy).
    bias_correction : bool
        Divide out a smooth coil-shading field before normalising
        intensities (:func:`napari_pvm.core.calibration.calibrate`).
    calibration : bool
        Train on the synthetic calibration canvas as well as the samples.
    cache : FeatureCache, optional
        Feature cache; by default the process-wide one.

    Examples
    --------
    >>> from napari_pvm.core.phantom import make_phantom
    >>> ph = make_phantom(seed=3, spacing=1.2)
    >>> clf = FatClassifier().fit(ph.l4, labels_from_samples(ph.samples, ph.l4.shape))
    >>> within = ph.masks["ES_L"]
    >>> fi = 100 * clf.predict(ph.l4, within=within)[within].mean()
    >>> bool(abs(fi - ph.truth["ES_L_fi_pct"]) < 3)
    True
    """

    #: Full, seeded model: its results may be measured and saved.
    is_preview = False

    def __init__(
        self,
        preset="weka",
        n_trees=200,
        seed=0,
        class_balance=False,
        *,
        max_features=2,
        criterion="entropy",
        bias_correction=True,
        calibration=True,
        cache=None,
    ):
        if preset not in _features.PRESETS:
            raise ClassifierError(f"unknown feature preset {preset!r}; choose one of {', '.join(_features.PRESETS)}")
        for name, value, low, high in (
            ("n_trees", n_trees, 1, MAX_TREES),
            ("seed", seed, 0, MAX_SEED),
            ("max_features", max_features, 1, None),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ClassifierError(f"{name} must be an integer of at least {low}, got {value!r}")
            if high is not None and value > high:
                raise ClassifierError(f"{name} must be at most {high}, got {value!r}")
        if criterion not in _forest.CRITERIA:
            raise ClassifierError(f"criterion must be 'entropy' or 'gini', got {criterion!r}")
        self.preset = preset
        self.n_trees = int(n_trees)
        self.seed = int(seed)
        self.class_balance = bool(class_balance)
        self.max_features = int(max_features)
        self.criterion = criterion
        self.bias_correction = bool(bias_correction)
        self.calibration = bool(calibration)
        self.cache = cache if cache is not None else _features.shared_cache()
        self._forest = None
        self._cal = None
        self._train = None
        self._info = {}

    # ------------------------------------------------------------ info
    @property
    def params(self):
        """Settings actually used (for the measurement row)."""
        p = {
            "method": METHOD,
            "preset": self.preset,
            "n_trees": self.n_trees,
            "seed": self.seed,
            "class_balance": self.class_balance,
            "max_features": self.max_features,
            "criterion": self.criterion,
            "bias_correction": self.bias_correction,
            "calibration": self.calibration,
        }
        p.update(self._info)
        return p

    @property
    def is_fitted(self):
        return self._forest is not None

    @property
    def calibration_model(self):
        """The fitted :class:`~napari_pvm.core.calibration.Calibration` (None before ``fit``)."""
        return self._cal

    @property
    def training_set(self):
        """``(x, y, n_sampled)`` of the last fit: feature rows, 0/1 targets
        (muscle/fat), and how many leading rows are sampled pixels (the
        rest are canvas pixels). None before ``fit``."""
        return self._train

    def __repr__(self):
        return (
            f"FatClassifier(preset={self.preset!r}, n_trees={self.n_trees}, seed={self.seed}, "
            f"class_balance={self.class_balance})"
        )

    # ------------------------------------------------------------- fit
    def fit(self, image, labels, *, within=None):
        """Train on one slice and its labels (0 unlabelled, 1 muscle, 2 fat).

        Parameters
        ----------
        image : ndarray (M, N)
        labels : int ndarray (M, N)
            See :func:`labels_from_samples`.
        within : bool ndarray (M, N), optional
            The muscle outlines that will be classified next. With them the
            coil shading is measured on the lean muscle inside them and the
            fat level on the subcutaneous fat as a whole (what ``measure``
            does); features are then computed once for samples and outlines.
            Without them the shading is fitted to the slice's fat-like
            pixels and the levels are the sample medians.

        Returns
        -------
        self

        Raises
        ------
        ClassifierError
            No or too few sample pixels of a class, labels of another
            shape (samples drawn on another slice), a constant or
            non-finite image, a fat sample not brighter than the muscle
            sample. The message says what to paint.
        """
        img = _check_image(image)
        lab = _check_labels(labels, img.shape)
        w = self._within(img, within) if within is not None else None
        cal = _cal.calibrate(img, lab, within=w, bias_correction=self.bias_correction)
        rng = np.random.default_rng([_cal.CANVAS_SEED, 0])
        rows, cols, y = _training_pixels(lab, rng)
        key = _features.image_key(img, self.preset)  # hash the slice once
        if w is not None and w.any():  # one feature window for samples and outlines
            wr, wc = np.nonzero(w)
            window = (
                int(min(rows.min(), wr.min())),
                int(max(rows.max(), wr.max())) + 1,
                int(min(cols.min(), wc.min())),
                int(max(cols.max(), wc.max())) + 1,
            )
            self.cache.get(img, self.preset, window, key=key)
        x = self._sample_rows(img, rows, cols, y, cal, key=key)
        n_real = {"fat": int((lab == FAT).sum()), "muscle": int((lab == MUSCLE).sum())}
        if self.calibration:
            cx, cy = self._canvas_rows(x, y, rng, cal)
            x = np.concatenate([x, cx])
            y = np.concatenate([y, cy])
        self._forest = self._grow(x, y, self.n_trees, self.seed)
        self._cal = cal
        self._train = (x, y, len(rows))
        self._info = {
            "training_pixels": n_real,
            "bias_field": cal.source if cal.coef is not None else "none",
            "muscle_level": cal.muscle,
            "fat_level": cal.fat,
        }
        return self

    def _sample_rows(self, img, rows, cols, y, cal, key=None):
        """Normalised feature rows of the sampled pixels. With the shading
        measured on the outlines, the fat sample (outside them) is scaled
        so that its median is the patient's fat level: it *is* fat."""
        x = self._rows(img, rows, cols, cal, key=key)
        fat_rows = y == _TARGET[FAT]
        if cal.source == "outlines" and fat_rows.any():
            r, c = rows[fat_rows], cols[fat_rows]
            field = np.full(len(r), float(np.median(img[r, c])) / cal.fat)
            x[fat_rows] = self._rows(img, r, c, cal, key=key, field=field)
        return x

    def _grow(self, x, y, n_trees, seed):
        if self.class_balance:  # weight each class by n / (2 n_class)
            counts = np.bincount(y, minlength=2).astype(np.float64)
            cw = len(y) / (2.0 * np.maximum(counts, 1.0))
        else:
            cw = np.ones(2)
        return _forest.grow(
            x, y, n_trees=n_trees, k_try=self.max_features, seed=seed, class_weight=cw, criterion=self.criterion
        )

    def _canvas_rows(self, x, y, rng, cal):
        """Canvas feature rows built from the patient's lean muscle and
        subcutaneous fat as the calibration saw them (inside and beside the
        outlines), else from the sampled pixels' normalised intensities
        (feature 0, ``original``)."""
        if cal.tissue_values is not None:
            muscle_vals, fat_vals = cal.tissue_values
        else:
            norm = x[:, 0]
            is_fat = y == _TARGET[FAT]
            muscle_vals, fat_vals = norm[~is_fat], norm[is_fat]
        image, cover = _cal.canvas(rng, muscle_vals, fat_vals)
        cx = _cal.canvas_features(image, self.preset)
        take = _cal.canvas_take(cover.ravel(), rng)
        return cx[take], (cover.ravel()[take] > 0.5).astype(np.int64)

    # --------------------------------------------------------- preview
    def fit_preview(self, image, labels, *, n_trees=24, max_pixels=600, within=None):
        """A light model for live feedback while the observer paints.

        Trained on a fixed subsample (``max_pixels`` per class and of the
        canvas) with ``n_trees`` trees, reusing this classifier's last
        calibration canvas when it has one. Its results are for display
        only: the returned :class:`PreviewClassifier` says so
        (``is_preview`` is True, ``params["preview"]`` is True), and code
        that measures or saves results must use the full model instead.
        """
        img = _check_image(image)
        lab = _check_labels(labels, img.shape)
        w = self._within(img, within) if within is not None else None
        cal = _cal.calibrate(img, lab, within=w, bias_correction=self.bias_correction)
        rng = np.random.default_rng([_cal.CANVAS_SEED, 1])
        rows, cols, y = _training_pixels(lab, rng, per_class=max_pixels)
        x = self._sample_rows(img, rows, cols, y, cal)
        if self.calibration:
            if self._train is not None:
                tx, ty, n_real = self._train
                cx, cy = tx[n_real:], ty[n_real:]
            else:
                cx, cy = self._canvas_rows(x, y, rng, cal)
            take = rng.choice(len(cy), size=min(max_pixels, len(cy)), replace=False)
            x = np.concatenate([x, cx[take]])
            y = np.concatenate([y, cy[take]])
        forest = self._grow(x, y, int(n_trees), self.seed)
        return PreviewClassifier(self, forest, cal, int(n_trees))


class PreviewClassifier(_TrainedModel):
    """Live-preview model from :meth:`FatClassifier.fit_preview` (display only)."""

    is_preview = True

    def __init__(self, parent, forest, cal, n_trees):
        self.preset = parent.preset
        self.cache = parent.cache
        self._forest = forest
        self._cal = cal
        self.params = dict(parent.params, n_trees=n_trees, preview=True)


# =====================================================================
# input checks
# =====================================================================
def _check_image(image):
    img = np.asarray(image)
    if img.ndim != 2:
        raise ClassifierError(f"the classifier works on one 2D slice; got an array of shape {img.shape}")
    if img.size == 0 or min(img.shape) < 3:
        raise ClassifierError(f"the slice {img.shape} is too small to classify")
    if not np.issubdtype(img.dtype, np.number) or np.iscomplexobj(img):
        raise ClassifierError(f"the slice must hold real numbers, not {img.dtype}")
    img = img.astype(np.float32, copy=False)
    if not np.all(np.isfinite(img)):
        raise ClassifierError("the slice contains NaN or infinite values; load the image again")
    if float(img.max()) == float(img.min()):
        raise ClassifierError(
            "the slice is constant (every pixel has the same value), so fat and muscle cannot be told apart; "
            "check that the right image and slice are loaded"
        )
    return img


def _check_labels(labels, shape):
    lab = np.asarray(labels)
    if lab.shape != shape:
        raise ClassifierError(
            f"the training labels have shape {lab.shape} but the slice is {shape}: the samples were drawn "
            "on another image or slice; paint the fat and muscle samples on this slice"
        )
    if lab.dtype == bool or not np.issubdtype(lab.dtype, np.integer):
        if not (np.issubdtype(lab.dtype, np.floating) and np.all(np.mod(lab, 1) == 0)):
            raise ClassifierError("training labels must be integers: 0 unlabelled, 1 muscle, 2 fat")
    bad = ~np.isin(lab, (0, MUSCLE, FAT))
    if bad.any():
        raise ClassifierError(
            f"training labels hold values other than 0, 1 (muscle) and 2 (fat), e.g. {lab[bad].flat[0]!r}; "
            "paint with label 1 for muscle and 2 for fat"
        )
    lab = lab.astype(np.uint8, copy=False)
    n_fat = int((lab == FAT).sum())
    n_muscle = int((lab == MUSCLE).sum())
    if n_fat == 0 and n_muscle == 0:
        raise ClassifierError(
            "no training samples: outline or paint a patch of subcutaneous fat (label 2) and a patch of "
            "lean muscle (label 1) on this slice"
        )
    if n_fat == 0:
        raise ClassifierError(
            "no fat sample: outline or paint a patch of subcutaneous fat (label 2), e.g. behind the back muscles"
        )
    if n_muscle == 0:
        raise ClassifierError("no muscle sample: outline or paint a patch of lean muscle (label 1) inside a muscle")
    for name, n, what in (("fat", n_fat, "subcutaneous fat (label 2)"), ("muscle", n_muscle, "lean muscle (label 1)")):
        if n < MIN_SAMPLE_PIXELS:
            raise ClassifierError(
                f"the {name} sample covers only {n} pixel{'s' if n != 1 else ''}; at least {MIN_SAMPLE_PIXELS} are "
                f"needed: paint or outline a larger patch of {what}"
            )
    return lab


def _training_pixels(lab, rng, per_class=MAX_PIXELS_PER_CLASS):
    """Coordinates and 0/1 (muscle/fat) targets of the sampled pixels."""
    rows, cols, ys = [], [], []
    for value, target in _TARGET.items():
        r, c = np.nonzero(lab == value)
        if len(r) > per_class:
            take = np.sort(rng.choice(len(r), size=per_class, replace=False))
            r, c = r[take], c[take]
        rows.append(r)
        cols.append(c)
        ys.append(np.full(len(r), target, np.int64))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(ys)
