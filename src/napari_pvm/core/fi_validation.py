"""Validation family for FI%: real anatomy with known added fat infiltration.

The fat classifier is validated on real water–fat (Dixon) slices whose
anatomy, coil shading and noise are kept, with intramuscular fat of known
sub-pixel tissue fraction added inside the manual muscle masks:

1. *References* (:func:`tissue_references`): the fat signal of pure fat,
   ``F_fat``, at the coil sensitivity of the lean muscle (from a joint
   smooth-field fit over the subcutaneous fat beside the muscles and the
   lean muscle),
   and the water signal of lean muscle, ``W_lean`` (median water image over
   the eroded muscle masks where the signal fat fraction is low).
2. *Tissue fraction* (:func:`tissue_fraction`): the share of a pixel's
   volume that is fat, ``t = (F/F_fat) / (F/F_fat + W/W_lean)``. Coil
   sensitivity multiplies W and F alike, so ``t`` does not depend on it.
3. *Coil sensitivity* (:func:`coil_sensitivity`): ``W/W_lean + F/F_fat`` is
   the sensitivity at any tissue pixel (a pixel of fat fraction ``t`` gives
   ``s (1 - t) + s t``); smoothed over the muscle masks only (3 px), so
   bone, fascia and air beside the muscles do not lower it.
4. *Infiltration* (:func:`infiltration_cover`, :func:`infiltrate`): streaks
   0.7–3 px wide and blobs drawn on a 5 × finer grid inside the masks give
   each pixel a fat area fraction ``phi``; that share of the pixel's volume
   is *replaced* by fat at the pixel's own sensitivity (linear mixing):
   ``W' = (1 - phi) W``, ``F' = (1 - phi) F + phi s F_fat`` (plus fat-like
   noise), so the tissue fraction becomes ``(1 - phi) t + phi``.
5. *T2-like image* (:func:`t2_like`): ``W' + c F'`` with ``c`` chosen so that
   the fat:muscle contrast ``c F_fat / W_lean`` is what is asked (2.5–4.5
   for T2-weighted TSE; the plain sum W + F has about 1.8).
6. *Truth*: a pixel is fat when its tissue fraction exceeds ½; FI% is the
   share of such pixels in a mask (pixels are of equal area).
7. *Samples* (:func:`sample_placements`): fat samples in posterior
   subcutaneous fat at the midline and left and right of it; muscle
   samples as small discs in the deepest part of the erector spinae or of
   the multifidus.

Everything here is a pure function of arrays and seeds; no image data is
part of the package. Masks follow Contract 1 (row 0 anterior, column 0 the
patient's right). ``benchmarks/bench_fi_real.py`` builds the whole family
from the two MyoSegmenTUM subjects and ``docs/benchmarks.md`` reports it.

Examples
--------
>>> import numpy as np
>>> w = np.array([[100.0, 50.0, 0.0]])
>>> f = np.array([[0.0, 150.0, 300.0]])
>>> tissue_fraction(w, f, f_fat=300.0, w_lean=100.0).round(2).tolist()
[[0.0, 0.5, 1.0]]
"""

import dataclasses

import numpy as np
from scipy import ndimage as ndi

from .calibration import _regions_reaching

__all__ = [
    "FAMILY_CONTRASTS",
    "FAMILY_LEVELS",
    "HELD_OUT_SEEDS",
    "MUSCLE_KEYS",
    "CaseImages",
    "case_settings",
    "coil_sensitivity",
    "family_case",
    "fi_by_muscle",
    "infiltrate",
    "infiltration_cover",
    "is_held_out_slice",
    "load_lpm_subject",
    "sample_placements",
    "subcutaneous_fat",
    "t2_like",
    "tissue_fraction",
    "tissue_references",
]

#: Label values of the LPM_Segmentator masks and the Contract 3 keys.
MUSCLE_KEYS = {1: "ES_R", 2: "MF_R", 3: "MF_L", 4: "ES_L"}
#: Fat:muscle contrasts of the family (T2-weighted TSE range).
FAMILY_CONTRASTS = (2.5, 3.5, 4.5)
#: Target FI% levels of the family (the added infiltration aims at these).
FAMILY_LEVELS = (5.0, 15.0, 30.0, 50.0)
#: Infiltration seeds kept out of all tuning (seed 0 was used for tuning).
HELD_OUT_SEEDS = (1,)
#: Pixel fat signal fraction F/(W+F) above which a pixel counts as fat
#: when the subcutaneous fat region is found.
_SUBCUT_SIGNAL_FRACTION = 0.9
_SUPERSAMPLE = 5  # odd: a pixel is never exactly half covered by a symmetric shape
#: Gaussian scale (px) of the coil sensitivity over the muscles where fat is added.
_SENSITIVITY_SIGMA = 3.0


def is_held_out_slice(slice_index):
    """Slices kept out of all tuning: every fourth slice (index % 4 == 3)."""
    return int(slice_index) % 4 == 3


def tissue_fraction(water, fat, *, f_fat, w_lean):
    """Per-pixel tissue fat fraction ``(F/F_fat) / (F/F_fat + W/W_lean)``.

    Parameters
    ----------
    water, fat : ndarray
        Separated water and fat images (same shape).
    f_fat, w_lean : float
        Fat signal of pure fat and water signal of lean muscle.

    Returns
    -------
    ndarray of float64 in [0, 1] (0 where both signals vanish)
    """
    a = np.maximum(np.asarray(fat, np.float64), 0.0) / float(f_fat)
    b = np.maximum(np.asarray(water, np.float64), 0.0) / float(w_lean)
    total = a + b
    return np.divide(a, total, out=np.zeros_like(total), where=total > 0)


def body_mask(image):
    """The body: filled, opened region brighter than a fifth of the median
    of the brighter half of the slice."""
    img = np.asarray(image, np.float64)
    level = 0.2 * np.median(img[img > np.median(img)])
    return ndi.binary_opening(ndi.binary_fill_holes(img > level), iterations=2)


def subcutaneous_fat(water, fat, muscles):
    """Subcutaneous fat: connected regions of at least 30 pixels whose signal
    fat fraction exceeds 0.9, at least 3 px inside the skin and 3 px from
    the muscle masks, that reach within 20 px of the skin."""
    w = np.asarray(water, np.float64)
    f = np.asarray(fat, np.float64)
    inten = w + f
    body = body_mask(inten)
    sff = np.divide(f, inten, out=np.zeros_like(inten), where=inten > 0)
    cand = (sff > _SUBCUT_SIGNAL_FRACTION) & ndi.binary_erosion(body, iterations=3)
    cand &= ~ndi.binary_dilation(muscles, iterations=3)
    near_skin = body & ~ndi.binary_erosion(body, iterations=20)
    return _regions_reaching(cand, near_skin)


def _quadratic_design(rows, cols, box):
    r0, r1, c0, c1 = box
    u = (np.clip(rows, r0, r1 - 1) - (r0 + r1) / 2.0) / max(r1 - r0, 1)
    v = (np.clip(cols, c0, c1 - 1) - (c0 + c1) / 2.0) / max(c1 - c0, 1)
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)


def tissue_references(water, fat, muscles):
    """``(f_fat, w_lean)``: signals of pure fat and lean muscle at the same
    coil sensitivity, from large regions of this slice.

    ``w_lean`` is the median water signal over the muscle masks eroded by
    2 px where the signal fat fraction is below 0.2. Fat and muscle lie at
    different depths, so their raw medians see different coil
    sensitivities (subcutaneous fat behind the back muscles sits nearer
    the coil than the muscles' centre). The fat reference is therefore
    taken at the muscles' sensitivity: one smooth log-quadratic field is
    fitted jointly to log W over the lean muscle and log F over the
    subcutaneous fat (:func:`subcutaneous_fat`) level with and beside the
    muscles, with one offset per tissue; ``f_fat = w_lean × exp(offset_fat
    - offset_muscle)``.
    """
    w = np.asarray(water, np.float64)
    f = np.asarray(fat, np.float64)
    muscles = np.asarray(muscles, bool)
    inner = ndi.binary_erosion(muscles, iterations=2)
    sff = f / np.maximum(w + f, 1e-9)
    lean = inner & (sff < 0.2)
    if lean.sum() < 20:
        lean = muscles & (sff < 0.2)
    w_lean = float(np.median(w[lean]))
    sub = subcutaneous_fat(w, f, muscles)
    rows, cols = np.nonzero(muscles)
    height, width = rows.max() + 1 - rows.min(), cols.max() + 1 - cols.min()
    box = (
        int(rows.min()),
        int(rows.max()) + 1 + height // 2,
        int(cols.min()) - width // 2,
        int(cols.max()) + 1 + width // 2,
    )
    near = np.zeros_like(sub)
    near[box[0] : box[1], max(0, box[2]) : box[3]] = True
    fr, fc = np.nonzero(sub & near)
    if len(fr) < 100:  # too little fat near the muscles: the raw medians
        return float(np.median(f[sub])), w_lean
    lr, lc = np.nonzero(lean)
    design = np.vstack(
        [
            np.hstack([_quadratic_design(lr, lc, box), np.zeros((len(lr), 1))]),
            np.hstack([_quadratic_design(fr, fc, box), np.ones((len(fr), 1))]),
        ]
    )
    logv = np.log(np.maximum(np.concatenate([w[lr, lc], f[fr, fc]]), 1e-9))
    coef = np.linalg.lstsq(design, logv, rcond=None)[0]
    res = logv - design @ coef
    keep = np.abs(res - np.median(res)) < 3.0 * 1.4826 * np.median(np.abs(res - np.median(res)))
    coef = np.linalg.lstsq(design[keep], logv[keep], rcond=None)[0]
    return w_lean * float(np.exp(coef[-1])), w_lean


def coil_sensitivity(water, fat, *, f_fat, w_lean, sigma=6.0, within=None):
    """Relative coil sensitivity ``W/W_lean + F/F_fat``, smoothed over tissue.

    A pixel of tissue fat fraction ``t`` at sensitivity ``s`` gives
    ``W = s (1 - t) W_lean`` and ``F = s t F_fat``, so the sum is ``s``
    whatever the tissue. It is smoothed by a Gaussian of ``sigma`` pixels
    normalised over ``within`` (default: the body; normalised convolution).
    """
    w = np.asarray(water, np.float64)
    f = np.asarray(fat, np.float64)
    raw = np.maximum(w, 0) / w_lean + np.maximum(f, 0) / f_fat
    body = (body_mask(w + f) if within is None else np.asarray(within, bool)).astype(np.float64)
    num = ndi.gaussian_filter(raw * body, sigma)
    den = ndi.gaussian_filter(body, sigma)
    return np.divide(num, den, out=np.ones_like(num), where=den > 1e-3)


def _draw(fine, kind, r0, c0, a, b, ang):
    """Rasterise one streak (rotated rectangle of length ``a``, width ``b``)
    or ellipse (half-axes ``a``, ``b``) on the fine grid, clipped to it."""
    reach = int(np.ceil(max(a, b))) + 1
    r_lo, r_hi = max(0, int(r0) - reach), min(fine.shape[0], int(r0) + reach + 2)
    c_lo, c_hi = max(0, int(c0) - reach), min(fine.shape[1], int(c0) + reach + 2)
    if r_lo >= r_hi or c_lo >= c_hi:
        return
    dr = np.arange(r_lo, r_hi)[:, None] + 0.5 - r0
    dc = np.arange(c_lo, c_hi)[None, :] + 0.5 - c0
    ca, sa = np.cos(ang), np.sin(ang)
    along = dr * sa + dc * ca
    across = dr * ca - dc * sa
    if kind == "streak":
        inside = (np.abs(along) <= a / 2.0) & (np.abs(across) <= b / 2.0)
    else:
        inside = (along / a) ** 2 + (across / b) ** 2 <= 1.0
    fine[r_lo:r_hi, c_lo:c_hi] |= inside


def infiltration_cover(mask, target_fi_pct, *, seed, keep_out=None, supersample=_SUPERSAMPLE):
    """Fat area fraction per pixel from streaks and blobs inside ``mask``.

    Streaks are 0.7–3 px wide and 3–25 px long at any orientation; blobs
    have radii of 0.7–4 px. Shapes are drawn on a grid ``supersample``
    times finer, clipped to the mask (and away from ``keep_out``), until
    the share of mask pixels more than half covered reaches
    ``target_fi_pct``.

    Parameters
    ----------
    mask : bool ndarray (M, N)
    target_fi_pct : float
        Aimed share (%) of mask pixels that end up more than half fat.
    seed : int
        Seed of every random choice.
    keep_out : bool ndarray (M, N), optional
        Pixels that stay free of added fat (e.g. where the muscle sample is).

    Returns
    -------
    ndarray of float64 (M, N), 0 outside the mask

    Examples
    --------
    >>> m = np.zeros((40, 40), bool); m[5:35, 5:35] = True
    >>> cover = infiltration_cover(m, 20.0, seed=0)
    >>> bool(abs(100 * (cover[m] > 0.5).mean() - 20.0) < 3)
    True
    """
    mask = np.asarray(mask, bool)
    allowed = mask & ~(np.asarray(keep_out, bool) if keep_out is not None else np.zeros_like(mask))
    cover = np.zeros(mask.shape)
    if not allowed.any() or target_fi_pct <= 0:
        return cover
    rows, cols = np.nonzero(allowed)
    r_lo, r_hi, c_lo, c_hi = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    ss = int(supersample)
    sub_allowed = np.repeat(np.repeat(allowed[r_lo:r_hi, c_lo:c_hi], ss, 0), ss, 1)
    fine = np.zeros(sub_allowed.shape, bool)
    rng = np.random.default_rng([int(seed), 0x66692D76])
    n_mask = int(mask.sum())
    goal = target_fi_pct / 100.0 * n_mask
    sub = np.zeros(allowed[r_lo:r_hi, c_lo:c_hi].shape)
    done = 0
    for _ in range(400):
        for _ in range(max(1, int((goal - done) / 60))):  # a batch of shapes, then check
            k = rng.integers(len(rows))
            r0 = (rows[k] - r_lo + rng.uniform()) * ss
            c0 = (cols[k] - c_lo + rng.uniform()) * ss
            ang = rng.uniform(0.0, np.pi)
            if rng.uniform() < 0.65:
                _draw(fine, "streak", r0, c0, rng.uniform(3.0, 25.0) * ss, rng.uniform(0.7, 3.0) * ss, ang)
            else:
                a = rng.uniform(0.7, 4.0) * ss
                _draw(fine, "blob", r0, c0, a, a * rng.uniform(0.5, 1.0), ang)
        fine &= sub_allowed
        sub = fine.reshape(sub.shape[0], ss, sub.shape[1], ss).mean(axis=(1, 3))
        done = int((sub > 0.5).sum())
        if done >= goal:
            break
    cover[r_lo:r_hi, c_lo:c_hi] = sub
    return cover


def infiltrate(water, fat, cover, *, sensitivity, f_fat, fat_noise=0.0, seed=0):
    """Replace the share ``cover`` of each pixel's volume by fat.

    ``W' = (1 - cover) W`` and ``F' = (1 - cover) F + cover · s · F_fat``
    (+ ``cover · fat_noise`` Gaussian noise, seeded): the replaced volume
    takes its own water *and* fat signal with it, and the fat put in its
    place gives the signal of pure fat at the pixel's sensitivity ``s``.
    A pixel of tissue fraction ``t`` thus gets ``(1 - cover) t + cover``
    (linear mixing at equal coil sensitivity); a lean pixel gets ``cover``.
    (Keeping ``F`` whole would add the muscle's own fat twice, making a fully
    replaced pixel brighter than pure fat.)

    Examples
    --------
    >>> w, f = np.array([90.0]), np.array([30.0])  # t = 0.1 at s = 1 (w_lean 100, f_fat 300)
    >>> w2, f2 = infiltrate(w, f, np.array([0.5]), sensitivity=np.array([1.0]), f_fat=300.0)
    >>> float(tissue_fraction(w2, f2, f_fat=300.0, w_lean=100.0)[0])
    0.55
    """
    w = np.asarray(water, np.float64)
    f = np.asarray(fat, np.float64)
    cover = np.asarray(cover, np.float64)
    rng = np.random.default_rng([int(seed), 0x6E6F6973])
    noise = rng.normal(0.0, 1.0, w.shape) * fat_noise if fat_noise > 0 else 0.0
    return (1.0 - cover) * w, (1.0 - cover) * f + cover * (sensitivity * f_fat + noise)


def t2_like(water, fat, *, contrast, f_fat, w_lean):
    """``W + c F`` with ``c = contrast · W_lean / F_fat`` (fat:muscle contrast)."""
    c = float(contrast) * float(w_lean) / float(f_fat)
    return np.asarray(water, np.float64) + c * np.asarray(fat, np.float64)


def _disc(shape, centre, radius):
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius**2


def _deepest(mask):
    return np.unravel_index(int(np.argmax(ndi.distance_transform_edt(mask))), mask.shape)


def sample_placements(water, fat, labels):
    """Fat and muscle sample placements an observer could choose.

    Fat: the subcutaneous fat (:func:`subcutaneous_fat`, eroded by 1 px)
    behind the back muscles (rows beyond the muscles' posterior end minus
    10 px), in a 31-px wide column band at the midline between the
    multifidi (``"midline"``) and at the lateral edges of the left and
    right erector spinae (``"left"``, ``"right"``; patient sides, Contract
    1); where that holds fewer than 30 pixels, the band widens and then
    reaches further forward, as an observer takes the nearest fat. Muscle: 4-px discs at the deepest point of each erector spinae
    (``"ES"``) or of each multifidus (``"MF"``).

    Returns
    -------
    fat : dict name -> bool ndarray
    muscle : dict name -> bool ndarray
    """
    labels = np.asarray(labels)
    shape = labels.shape
    muscles = labels > 0
    sub_wide = subcutaneous_fat(water, fat, muscles)
    sub = ndi.binary_erosion(sub_wide)
    rows = np.nonzero(muscles.any(axis=1))[0]
    posterior = np.zeros(shape, bool)
    posterior[max(0, rows.max() - 10) :, :] = True
    posterior_wide = np.zeros(shape, bool)
    posterior_wide[max(0, (rows.min() + rows.max()) // 2) :, :] = True
    mf_cols = np.nonzero(np.isin(labels, (2, 3)).any(axis=0))[0]
    midline = int(round((mf_cols.min() + mf_cols.max()) / 2))
    es_r_cols = np.nonzero((labels == 1).any(axis=0))[0]  # patient right: low columns
    es_l_cols = np.nonzero((labels == 4).any(axis=0))[0]
    centres = {"midline": midline, "left": int(es_l_cols.max()) - 8, "right": int(es_r_cols.min()) + 8}
    fat_samples = {}
    for name, c in centres.items():
        # an observer who finds little fat right there takes the nearest fat
        for half, region, where in (
            (15, sub, posterior),
            (30, sub, posterior),
            (30, sub_wide, posterior),
            (45, sub_wide, posterior_wide),
        ):
            band = np.zeros(shape, bool)
            band[:, max(0, c - half) : c + half + 1] = True
            fat_samples[name] = region & where & band
            if fat_samples[name].sum() >= 30:
                break
    muscle_samples = {}
    for name, values in (("ES", (1, 4)), ("MF", (2, 3))):
        m = np.zeros(shape, bool)
        for v in values:
            m |= _disc(shape, _deepest(labels == v), 4)
        muscle_samples[name] = m & muscles
    return fat_samples, muscle_samples


def fi_by_muscle(fat_mask, labels):
    """FI% per muscle and side, per muscle bilaterally and ES+MF bilaterally
    (equal pixel areas): keys ``ES_L`` … ``MF_R``, ``ES_B``, ``MF_B``,
    ``ESMF_B``."""
    fat_mask = np.asarray(fat_mask, bool)
    labels = np.asarray(labels)
    out = {}
    for v, key in MUSCLE_KEYS.items():
        m = labels == v
        out[key] = 100.0 * fat_mask[m].mean() if m.any() else np.nan
    for g, values in (("ES", (1, 4)), ("MF", (2, 3)), ("ESMF", (1, 2, 3, 4))):
        m = np.isin(labels, values)
        out[f"{g}_B"] = 100.0 * fat_mask[m].mean()
    return out


@dataclasses.dataclass(frozen=True)
class CaseImages:
    """One member of the family: the T2-like image, the separated images,
    the truth and the settings it was made with."""

    image: np.ndarray
    water: np.ndarray
    fat: np.ndarray
    tissue_fraction: np.ndarray
    labels: np.ndarray
    truth_fi: dict
    contrast: float
    target_fi_pct: float
    seed: int
    f_fat: float
    w_lean: float


def family_case(water, fat, labels, *, contrast, target_fi_pct, seed, keep_out=None):
    """Build one case of the family from a real water/fat slice.

    Parameters
    ----------
    water, fat : ndarray (M, N)
        Separated images of one slice (Contract 1 orientation).
    labels : int ndarray (M, N)
        Manual masks (1 ES_R, 2 MF_R, 3 MF_L, 4 ES_L).
    contrast : float
        Fat:muscle contrast of the T2-like image.
    target_fi_pct : float
        FI% the added infiltration aims at (per muscle).
    seed : int
        Seed of the infiltration geometry and noise.
    keep_out : bool ndarray, optional
        Pixels left free of added fat (the muscle sample placements).

    Returns
    -------
    CaseImages
    """
    w = np.asarray(water, np.float64)
    f = np.asarray(fat, np.float64)
    labels = np.asarray(labels)
    muscles = labels > 0
    f_fat, w_lean = tissue_references(w, f, muscles)
    # sensitivity where fat is added: over the muscle tissue only
    sens = coil_sensitivity(w, f, f_fat=f_fat, w_lean=w_lean, sigma=_SENSITIVITY_SIGMA, within=muscles)
    sub = subcutaneous_fat(w, f, muscles)
    # fat-like noise: the spread of the fat image around its local mean in
    # subcutaneous fat, relative to the fat level
    resid = f - ndi.uniform_filter(f, 5)
    fat_noise = 1.4826 * float(np.median(np.abs(resid[sub])))
    cover = np.zeros(w.shape)
    for k, v in enumerate(sorted(MUSCLE_KEYS)):
        cover += infiltration_cover(labels == v, target_fi_pct, seed=int(seed) * 16 + k, keep_out=keep_out)
    w2, f2 = infiltrate(w, f, cover, sensitivity=sens, f_fat=f_fat, fat_noise=fat_noise, seed=seed)
    t = tissue_fraction(w2, f2, f_fat=f_fat, w_lean=w_lean)
    image = t2_like(w2, f2, contrast=contrast, f_fat=f_fat, w_lean=w_lean)
    return CaseImages(
        image=image.astype(np.float32),
        water=w2,
        fat=f2,
        tissue_fraction=t,
        labels=labels,
        truth_fi=fi_by_muscle(t > 0.5, labels),
        contrast=float(contrast),
        target_fi_pct=float(target_fi_pct),
        seed=int(seed),
        f_fat=f_fat,
        w_lean=w_lean,
    )


def case_settings(slice_index, subject_index=0):
    """Contrast and target FI% of a slice's family case: the contrasts
    cycle with the slice, the levels every third slice, offset per subject,
    so every contrast meets every level."""
    k, s = int(slice_index), int(subject_index)
    return FAMILY_CONTRASTS[(k + s) % len(FAMILY_CONTRASTS)], FAMILY_LEVELS[(k // 3 + s) % len(FAMILY_LEVELS)]


def load_lpm_subject(folder, subject):
    """Water, fat and label volumes of one LPM_Segmentator/MyoSegmenTUM
    subject (``{subject}_water_img_img_L2-L5.nii.gz`` etc. in ``folder``),
    as float64, float64 and int arrays of shape (X, Y, Z); slice ``k`` in
    Contract 1 orientation is ``volume[:, :, k].T``. Test data only."""
    import pathlib

    import nibabel as nib

    folder = pathlib.Path(folder)

    def read(name):
        return np.asarray(nib.load(folder / f"{subject}_{name}.nii.gz").dataobj)

    water = read("water_img_img_L2-L5").astype(np.float64)
    fat = read("fat_img_img_L2-L5").astype(np.float64)
    labels = read("fat_manual_label_segmentation_L2-L5").astype(np.int16)
    return water, fat, labels
