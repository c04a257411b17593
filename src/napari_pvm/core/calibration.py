"""Per-patient intensity calibration of the fat classifier.

A T2-weighted (or water + fat) slice has no absolute intensity scale and
carries a smooth coil-shading field, so fat and muscle are defined per
patient, from the slice itself:

- **shading** (:func:`calibrate`): with the muscle outlines given, one
  log-quadratic field is fitted *jointly* to the lean muscle inside them
  (pixels within ±10 % of the fat–muscle span of the current muscle level)
  and the subcutaneous fat beside and behind them (:func:`subcutaneous_fat`),
  each tissue with its own level and each with the same total weight (the
  fat region holds several times more pixels than the lean muscle; unweighted,
  the field would bend to the fat's shape far from the outlines, where FI% is
  not measured). Four robust passes (residuals beyond 3 MAD dropped). The
  fitted offset between the two tissues is the fat:muscle contrast at equal
  coil sensitivity;
- **local lean level** inside the outlines: what the quadratic leaves
  (deep and medial muscle a few % darker than lateral muscle, shading at a
  slab edge that is not quadratic) is measured on the lean muscle itself,
  as a normalised Gaussian average (σ = 6 px, wider than the thickest fat
  streak) of the lean pixels' residual, and multiplied into the field inside
  the outlines. A pixel of tissue fraction *t* at coil sensitivity *s* gives
  ``s (lean + t (fat - lean))``, so the boundary ``t = ½`` is half-way between
  lean muscle and fat *at that pixel's own sensitivity*; a field that is 5 %
  off moves the boundary by several percent of tissue fraction;
- **levels**: ``muscle`` is the median lean level over the outlines, ``fat``
  that times the fitted contrast. The observer's samples only say which
  tissue is which (and seed the iteration), so the result hardly depends on
  which patch of fat was picked;
- without outlines (``within=None``) the older rule applies: a field fitted
  to every fat-like pixel of the slice and the two sample medians.

Intensities then map to ``x = (I / B - muscle) / (fat - muscle)``: 0 lean
muscle and 1 fat everywhere in the outlines, ½ a pixel of half fat (tissue
fraction ½, the FI% boundary).

This module also builds the *calibration canvas* the forest is trained on
(:func:`canvas`): muscle with sub-pixel fat streaks and blobs made of the
patient's own pixel values, labelled fat where more than half of a pixel is
fat. Its geometry and the subsample of it are fixed (:data:`CANVAS_SEED`),
so the classifier's seed changes only the forest.
"""

import dataclasses
import functools

import numpy as np
from scipy import ndimage as ndi

from .errors import ClassifierError

__all__ = [
    "CANVAS_SEED",
    "Calibration",
    "calibrate",
    "canvas",
    "canvas_take",
    "subcutaneous_fat",
]

#: Label values of training samples (Contract 2 painted labels).
MUSCLE, FAT = 1, 2
#: Seed of the canvas geometry and of every subsample (fixed: the
#: classifier's own seed changes only the forest).
CANVAS_SEED = 0x70766D
_CANVAS_SIZE = 128
_CANVAS_PIXELS = 2000
_CANVAS_SUPERSAMPLE = 8
_CANVAS_COVERS = (0.05, 0.25, 0.5, 0.75)
_CANVAS_MIXED_SHARE = 0.75
#: Lean-muscle window of the shading fit: |x| below this share of the span.
_LEAN_WINDOW = 0.1
#: Fat window of the shading fit: within this share of the current fat level.
_FAT_WINDOW = 0.25
#: Fewest lean-muscle and fat pixels the joint fit needs.
_MIN_LEAN_PIXELS = 200
_MIN_FAT_PIXELS = 30
#: Most lean-muscle and fat values kept for the canvas.
_MAX_TISSUE_VALUES = 2000
#: Gaussian scale (px) of the local lean level inside the outlines: wider
#: than the thickest fat streak or blob, so fat cannot pass for shading.
_LOCAL_SIGMA = 6.0
#: Weight (in lean pixels of the Gaussian's unit mass) pulling the local
#: level towards the quadratic field where little lean muscle is near.
_LOCAL_PRIOR = 0.05


# =====================================================================
# the calibration
# =====================================================================
@dataclasses.dataclass(frozen=True)
class Calibration:
    """Per-patient intensity model ``x = (I / B - muscle) / (fat - muscle)``.

    Attributes
    ----------
    shape : tuple
        Slice shape.
    muscle, fat : float
        Lean-muscle and fat levels (shading-corrected units).
    coef : ndarray or None
        Log-quadratic coefficients of the shading field ``B`` (None: B = 1).
    box : tuple
        (row0, row1, col0, col1) the field's coordinates are scaled to; the
        field is held constant beyond it.
    source : str
        ``"outlines"`` (lean muscle inside the outlines), ``"fat"`` (the
        older fat-like-pixel fit) or ``"none"``.
    fat_sample : float
        Median of the fat sample (shading-corrected).
    muscle_sample : float
        Median of the muscle sample (shading-corrected).
    fat_sample_spread : float
        Robust coefficient of variation of the fat sample (1.4826 MAD /
        median, shading-corrected).
    shading_range : float
        Largest over smallest field value inside the outlines (1 without
        outlines or correction).
    local : ndarray or None
        Local lean-level factor (image shape, 1 outside the outlines)
        multiplied into the quadratic field; None: quadratic only.
    tissue_values : tuple or None
        ``(lean, fat)``: normalised values ``x`` of up to
        ``_MAX_TISSUE_VALUES`` lean-muscle pixels of the outlines and
        subcutaneous-fat pixels the joint fit used (a fixed subsample); the
        canvas is built from them. None without the outline fit.
    """

    shape: tuple
    muscle: float
    fat: float
    coef: object = None
    box: tuple = None
    source: str = "none"
    fat_sample: float = float("nan")
    muscle_sample: float = float("nan")
    fat_sample_spread: float = float("nan")
    shading_range: float = 1.0
    local: object = dataclasses.field(default=None, compare=False, repr=False)
    tissue_values: object = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def contrast(self):
        """Fat:muscle contrast ``fat / muscle`` after shading correction."""
        return self.fat / self.muscle

    def field(self, rows, cols):
        """Multiplicative shading ``B`` at pixel coordinates (1 when uncorrected)."""
        if self.coef is None:
            return np.ones(np.shape(rows), np.float64)
        b = np.exp(_poly_design(rows, cols, self.box) @ self.coef)
        if self.local is not None:
            b = b * self.local[np.asarray(rows, np.intp), np.asarray(cols, np.intp)]
        return b

    def scale_offset(self, rows, cols):
        """Per-pixel ``(scale, offset)`` with ``x = I * scale + offset``."""
        span = self.fat - self.muscle
        return 1.0 / (self.field(rows, cols) * span), -self.muscle / span

    def normalised(self, image, rows, cols):
        """``x`` of ``image`` at the given pixels."""
        scale, offset = self.scale_offset(rows, cols)
        return np.asarray(image, np.float64)[rows, cols] * scale + offset


def _poly_design(rows, cols, box):
    r0, r1, c0, c1 = box
    r = np.clip(np.asarray(rows, np.float64), r0, r1 - 1)
    c = np.clip(np.asarray(cols, np.float64), c0, c1 - 1)
    u = (r - (r0 + r1) / 2.0) / max(r1 - r0, 1)
    v = (c - (c0 + c1) / 2.0) / max(c1 - c0, 1)
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)


def _lsq(a, b):
    # least squares through the normal equations (6 unknowns, well scaled)
    return np.linalg.solve(a.T @ a + 1e-9 * np.eye(a.shape[1]), a.T @ b)


def _robust_fit(design, logv, keep_mad=3.0, weights=None):
    """(Weighted) least squares, then again without residuals beyond
    ``keep_mad`` MAD."""
    w = np.ones(len(logv)) if weights is None else np.asarray(weights, np.float64)

    def solve(keep):
        sw = np.sqrt(w[keep])
        return _lsq(design[keep] * sw[:, None], logv[keep] * sw)

    c = solve(np.ones(len(logv), bool))
    res = logv - design @ c
    mid = np.median(res)
    mad = 1.4826 * np.median(np.abs(res - mid)) + 1e-12
    keep = np.abs(res - mid) < keep_mad * mad
    return solve(keep) if keep.sum() >= design.shape[1] * 4 else c


def body_mask(image, muscle_level):
    """The body: filled and opened region brighter than a fifth of the muscle."""
    return ndi.binary_opening(ndi.binary_fill_holes(image > 0.2 * muscle_level), iterations=2)


def subcutaneous_fat(image, within, *, muscle, fat):
    """The patient's subcutaneous fat seen on the slice.

    Regions of at least 30 pixels brighter than half-way between the
    muscle and fat levels, at least 3 px inside the skin and 3 px away from
    the outlines ``within``, that reach within 20 px of the skin.
    """
    img = np.asarray(image, np.float64)
    body = body_mask(img, muscle)
    # taxicab distance to the skin (= repeated erosion with the cross, in one pass)
    depth = ndi.distance_transform_cdt(np.pad(body, 1), metric="taxicab")[1:-1, 1:-1]
    near_skin = body & (depth <= 20)
    cand = (img > 0.5 * (muscle + fat)) & (depth > 3)
    if within is not None:
        cand &= ndi.distance_transform_cdt(~np.asarray(within, bool), metric="taxicab") > 3
    return _regions_reaching(cand, near_skin)


def _regions_reaching(candidates, near_skin, *, min_pixels=30):
    """The connected regions of ``candidates`` of at least ``min_pixels``
    pixels that overlap ``near_skin`` (shared with ``fi_validation``)."""
    lbl, n = ndi.label(candidates)
    if n == 0:
        return candidates
    idx = np.arange(1, n + 1)
    big = ndi.sum(candidates, lbl, idx) >= min_pixels
    touches = ndi.maximum(near_skin, lbl, idx) > 0
    return np.isin(lbl, idx[big & touches])


def calibrate(image, labels, *, within=None, bias_correction=True):
    """Calibrate intensities on this patient's own tissues.

    Parameters
    ----------
    image : float ndarray (M, N)
    labels : uint8 ndarray (M, N)
        Training samples (1 muscle, 2 fat), checked by the caller.
    within : bool ndarray (M, N), optional
        The muscle outlines; with them the shading is fitted to the lean
        muscle inside them and the fat level comes from the subcutaneous
        fat as a whole (module docstring).
    bias_correction : bool
        Correct coil shading at all.

    Returns
    -------
    Calibration

    Raises
    ------
    ClassifierError
        The fat sample is not brighter than the muscle sample, or barely.
    """
    img = np.asarray(image, np.float64)
    rows_f, cols_f = np.nonzero(labels == FAT)
    rows_m, cols_m = np.nonzero(labels == MUSCLE)
    muscle = float(np.median(img[rows_m, cols_m]))
    fat = float(np.median(img[rows_f, cols_f]))
    _check_contrast(img, muscle, fat)
    full = (0, img.shape[0], 0, img.shape[1])
    cal = Calibration(shape=img.shape, muscle=muscle, fat=fat, box=full)
    if bias_correction and within is not None and np.count_nonzero(within) >= _MIN_LEAN_PIXELS:
        cal = _calibrate_on_outlines(img, within, muscle, fat) or cal
    elif bias_correction:
        coef = _fit_field_to_fat(img, rows_f, cols_f, muscle, fat)
        if coef is not None:
            cal = dataclasses.replace(cal, coef=coef, source="fat")
            m = float(np.median(img[rows_m, cols_m] / cal.field(rows_m, cols_m)))
            f = float(np.median(img[rows_f, cols_f] / cal.field(rows_f, cols_f)))
            if f > m:
                cal = dataclasses.replace(cal, muscle=m, fat=f)
            else:  # pragma: no cover - guarded by _check_contrast
                cal = Calibration(shape=img.shape, muscle=muscle, fat=fat, box=full)
    # sample statistics after the correction (quality figures)
    bf = cal.field(rows_f, cols_f)
    fs = img[rows_f, cols_f] / bf
    f_med = float(np.median(fs))
    spread = float(1.4826 * np.median(np.abs(fs - f_med)) / f_med)
    m_med = float(np.median(img[rows_m, cols_m] / cal.field(rows_m, cols_m)))
    return dataclasses.replace(cal, fat_sample=f_med, muscle_sample=m_med, fat_sample_spread=spread)


def _calibrate_on_outlines(img, within, muscle, fat):
    """Joint shading fit over the lean muscle inside the outlines and the
    subcutaneous fat beside and behind them; None when either tissue has
    too few pixels."""
    w = np.asarray(within, bool)
    rows, cols = np.nonzero(w)
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    # the outlines' box, extended by half its height posteriorly (Contract 1:
    # row 0 anterior) and half its width to each side: the back's fat
    box = (
        r0,
        min(img.shape[0], r1 + (r1 - r0) // 2),
        max(0, c0 - (c1 - c0) // 2),
        min(img.shape[1], c1 + (c1 - c0) // 2),
    )
    sub = ndi.binary_erosion(subcutaneous_fat(img, w, muscle=muscle, fat=fat))  # no partial-volume rim
    near = np.zeros_like(sub)
    near[box[0] : box[1], box[2] : box[3]] = True
    fr, fc = np.nonzero(sub & near)
    if len(fr) < _MIN_FAT_PIXELS:
        return None
    design_m = _poly_design(rows, cols, box)
    design_f = _poly_design(fr, fc, box)
    log_m = np.log(np.maximum(img[rows, cols], 1e-12))
    log_f = np.log(np.maximum(img[fr, fc], 1e-12))
    contrast = fat / muscle
    level_m = np.full(len(rows), np.log(muscle))
    level_f = np.full(len(fr), np.log(fat))
    coef = None
    for _ in range(4):
        x = (np.exp(log_m - level_m) - 1.0) / (contrast - 1.0)
        lean = np.abs(x) < _LEAN_WINDOW
        is_fat = np.abs(np.exp(log_f - level_f) - 1.0) < _FAT_WINDOW
        if lean.sum() < _MIN_LEAN_PIXELS or is_fat.sum() < _MIN_FAT_PIXELS:
            return None
        design = np.vstack(
            [
                np.hstack([design_m[lean], np.zeros((lean.sum(), 1))]),
                np.hstack([design_f[is_fat], np.ones((is_fat.sum(), 1))]),
            ]
        )
        # each tissue carries the same total weight (module docstring)
        weights = np.concatenate([np.full(lean.sum(), 1.0 / lean.sum()), np.full(is_fat.sum(), 1.0 / is_fat.sum())])
        coef = _robust_fit(design, np.concatenate([log_m[lean], log_f[is_fat]]), weights=weights)
        contrast = float(np.exp(coef[-1]))
        level_m = design_m @ coef[:-1]
        level_f = design_f @ coef[:-1] + coef[-1]
        if not (np.all(np.isfinite(coef)) and contrast > 1.0):
            return None
    # the field is the shape of the lean level (median 1 over the outlines)
    field_coef = coef[:-1].copy()
    field = np.exp(level_m)
    norm = float(np.median(field))
    field_coef[0] -= np.log(norm)
    field = field / norm
    vals = img[rows, cols]
    m = float(np.median(vals[lean] / field[lean]))
    f = contrast * norm
    local = _local_lean_level(vals / (field * m), rows, cols, img.shape, span=f / m - 1.0)
    field = field * local[rows, cols]
    lean = np.abs((vals / field - m) / (f - m)) < _LEAN_WINDOW
    m = float(np.median(vals[lean] / field[lean]))
    rng = np.random.default_rng([CANVAS_SEED, 2])
    lean_x = (vals[lean] / field[lean] - m) / (f - m)
    field_f = np.exp(design_f[is_fat] @ field_coef)
    fat_x = (img[fr, fc][is_fat] / field_f - m) / (f - m)
    values = tuple(
        v if len(v) <= _MAX_TISSUE_VALUES else rng.choice(v, _MAX_TISSUE_VALUES, replace=False) for v in (lean_x, fat_x)
    )
    return Calibration(
        shape=img.shape,
        muscle=m,
        fat=f,
        coef=field_coef,
        box=box,
        source="outlines",
        shading_range=float(field.max() / field.min()),
        local=local,
        tissue_values=values,
    )


def _local_lean_level(ratio, rows, cols, shape, *, span):
    """Local lean level inside the outlines, relative to the quadratic fit.

    ``ratio`` is each outline pixel's signal over the fitted lean level.
    Lean pixels (within ±``_LEAN_WINDOW`` of the span of the local level)
    are averaged by a Gaussian of ``_LOCAL_SIGMA`` px, normalised by the
    density of lean pixels (normalised convolution) and pulled towards 1
    where little lean muscle is near (``_LOCAL_PRIOR``); two passes, the
    second selecting lean pixels around the first pass's level. Returns an
    image-shaped factor, 1 outside the outlines.
    """
    # work on the outlines' box plus the Gaussian's reach (scipy truncates at
    # 4 sigma): the same values as on the whole slice, at a fraction of the cost
    reach = int(np.ceil(4.0 * _LOCAL_SIGMA)) + 1
    r0, c0 = max(0, int(rows.min()) - reach), max(0, int(cols.min()) - reach)
    r1, c1 = min(shape[0], int(rows.max()) + 1 + reach), min(shape[1], int(cols.max()) + 1 + reach)
    lr, lc = rows - r0, cols - c0
    level = np.ones(len(rows))
    for _ in range(2):
        lean = np.abs((ratio / level - 1.0) / span) < _LEAN_WINDOW
        num = np.zeros((r1 - r0, c1 - c0))
        den = np.zeros_like(num)
        num[lr[lean], lc[lean]] = ratio[lean]
        den[lr[lean], lc[lean]] = 1.0
        num = ndi.gaussian_filter(num, _LOCAL_SIGMA)
        den = ndi.gaussian_filter(den, _LOCAL_SIGMA)
        level = ((num + _LOCAL_PRIOR) / (den + _LOCAL_PRIOR))[lr, lc]
    out = np.ones(shape)
    out[rows, cols] = level
    out.flags.writeable = False
    return out


def _fit_field_to_fat(img, rows_f, cols_f, muscle, fat):
    """Smooth log-quadratic shading field fitted to the slice's fat-like
    pixels (the rule without outlines). Returns coefficients normalised so
    that the field's median over the fat sample is 1, or None when the fit
    is not trustworthy (too few pixels, a field varying more than fourfold)."""
    shape = img.shape
    box = (0, shape[0], 0, shape[1])
    step = max(1, int(round(max(shape) / 128)))
    sub = img[::step, ::step]
    rr, cc = np.mgrid[0 : shape[0] : step, 0 : shape[1] : step]
    design = _poly_design(rr.ravel(), cc.ravel(), box)
    vals = sub.ravel()
    field = np.ones_like(vals)
    coef = None
    span = fat - muscle
    for _ in range(3):
        x = (vals / field - muscle) / span
        sel = (x > 0.65) & (x < 1.6) & (vals > 0)
        if sel.sum() < 300:
            return None
        c = _robust_fit(design[sel], np.log(vals[sel]))
        c = c.copy()
        c[0] -= np.median(_poly_design(rows_f, cols_f, box) @ c)
        coef = c
        field = np.exp(design @ coef)
    if not np.all(np.isfinite(coef)):
        return None
    inside = field[sel]
    if inside.max() / inside.min() > 4.0:  # not coil shading
        return None
    return coef


def _check_contrast(img, muscle, fat):
    sub = img[:: max(1, img.shape[0] // 128), :: max(1, img.shape[1] // 128)]
    lo, hi = np.percentile(sub, [0.5, 99.5])
    spread = float(hi - lo)
    if not fat > muscle:
        raise ClassifierError(
            f"the fat sample (median {fat:.4g}) is not brighter than the muscle sample (median {muscle:.4g}); "
            "on a T2-weighted image fat is bright: put the fat sample in subcutaneous fat and the "
            "muscle sample inside lean muscle"
        )
    if fat - muscle < 0.02 * max(spread, 1e-12):
        raise ClassifierError(
            "the fat and muscle samples have almost the same intensity; put the fat sample in bright "
            "subcutaneous fat and the muscle sample in dark, lean muscle"
        )


# =====================================================================
# the calibration canvas
# =====================================================================
def canvas(rng, muscle_vals, fat_vals):
    """Synthetic periodic calibration image from the patient's own pixels.

    The geometry (:func:`canvas_cover`) is fixed; each pixel's value mixes
    a muscle and a fat value drawn from the samples (normalised units) in
    proportion to its fat cover.

    Returns
    -------
    image : ndarray (size, size), float32
    cover : ndarray (size, size), float64, fat area fraction per pixel
    """
    cover = canvas_cover(CANVAS_SEED, _CANVAS_SIZE, _CANVAS_SUPERSAMPLE, _CANVAS_COVERS)
    m = rng.choice(muscle_vals, size=cover.shape)
    f = rng.choice(fat_vals, size=cover.shape)
    img = (1.0 - cover) * m + cover * f
    return img.astype(np.float32), cover


@functools.lru_cache(maxsize=8)
def canvas_cover(seed, size, ss, covers):
    """Fat area fraction per pixel of the calibration canvas.

    Muscle with fat streaks (0.5–4 px wide, 4–40 px long, any orientation),
    blobs (0.7–5 px radius) and a few large patches (6–14 px), drawn on a
    periodic grid ``ss`` times finer and averaged down, so fat covers
    pixels partially. The canvas is cut into bands whose fat cover aims at
    ``covers`` (by default 5, 25, 50 and 75 %, in random order), so the forest sees fat
    in lean and in fatty neighbourhoods alike.
    """
    rng = np.random.default_rng([seed, 0x63616E])
    n = size * ss
    fine = np.zeros((n, n), bool)
    targets = rng.permutation(np.asarray(covers, float))
    band = n // len(targets)
    for k, target in enumerate(targets):
        r_lo = k * band
        goal = target * band * n
        area = 0
        for _ in range(400):
            if area >= goal:
                break
            r0 = rng.uniform(r_lo, r_lo + band)
            c0 = rng.uniform(0, n)
            kind = rng.uniform()
            if kind < 0.6:  # streak
                width = rng.uniform(0.5, 4.0) * ss
                length = rng.uniform(4.0, 40.0) * ss
                shape = ("line", r0, c0, length, width, rng.uniform(0.0, np.pi))
            elif kind < 0.93:  # blob
                a = rng.uniform(0.7, 5.0) * ss
                shape = ("ellipse", r0, c0, a, a * rng.uniform(0.4, 1.0), rng.uniform(0.0, np.pi))
            else:  # large patch
                a = rng.uniform(6.0, 14.0) * ss
                shape = ("ellipse", r0, c0, a, a * rng.uniform(0.5, 1.0), rng.uniform(0.0, np.pi))
            area += _draw_periodic(fine, shape)
    cover = fine.reshape(size, ss, size, ss).mean(axis=(1, 3))
    cover.flags.writeable = False
    return cover


def _draw_periodic(fine, shape):
    """Set the pixels of a rotated rectangle or ellipse (wrapping around);
    return how many were newly set."""
    kind, r0, c0, a, b, ang = shape
    n = fine.shape[0]
    if kind == "line":
        half_len, half_w = a / 2.0, b / 2.0
    else:
        half_len, half_w = a, b
    reach = int(np.ceil(max(half_len, half_w))) + 1
    rr = np.arange(int(np.floor(r0)) - reach, int(np.floor(r0)) + reach + 2)
    cc = np.arange(int(np.floor(c0)) - reach, int(np.floor(c0)) + reach + 2)
    dr = rr[:, None] + 0.5 - r0
    dc = cc[None, :] + 0.5 - c0
    ca, sa = np.cos(ang), np.sin(ang)
    along = dr * sa + dc * ca
    across = dr * ca - dc * sa
    if kind == "line":
        inside = (np.abs(along) <= half_len) & (np.abs(across) <= half_w)
    else:
        inside = (along / half_len) ** 2 + (across / half_w) ** 2 <= 1.0
    ix = np.ix_(rr % n, cc % n)
    old = fine[ix]
    fine[ix] = old | inside
    return int(np.count_nonzero(inside & ~old))


def canvas_take(cover, rng, n=None):
    """Canvas pixels to train on: half of them partly covered by fat (where
    the fat/muscle decision is made), half pure, at random."""
    n = _CANVAS_PIXELS if n is None else n
    mixed = np.flatnonzero((cover > 0) & (cover < 1))
    pure = np.flatnonzero((cover == 0) | (cover == 1))
    k_mixed = min(len(mixed), int(round(n * _CANVAS_MIXED_SHARE)))
    k_pure = min(len(pure), n - k_mixed)
    take = np.concatenate([rng.choice(mixed, k_mixed, replace=False), rng.choice(pure, k_pure, replace=False)])
    return np.sort(take)


def canvas_features(img, preset):
    """Features of a periodic canvas (wrapped so every pixel is exact)."""
    from . import features as _features

    pad = _features.margin(preset)
    reps = int(np.ceil(pad / img.shape[0]))
    big = np.pad(img, pad, mode="wrap") if reps <= 1 else np.tile(img, (2 * reps + 1, 2 * reps + 1))
    if reps > 1:
        off = reps * img.shape[0]
        big = big[off - pad : off + img.shape[0] + pad, off - pad : off + img.shape[1] + pad]
    maps = _features.compute_features(big, preset, region=(pad, pad + img.shape[0], pad, pad + img.shape[1]))
    return maps.reshape(maps.shape[0], -1).T
