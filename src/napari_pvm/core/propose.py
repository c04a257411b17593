"""Outline proposals: six muscle outlines from clicks and earlier cases (contract 7).

:func:`propose_outlines` proposes the psoas (PS), erector spinae (ES) and
multifidus (MF) outlines of both sides on one axial slice. It learns only
from what the observer supplies at run time (no network, no weights):

- **the slice**: a smooth intensity bias (a surface coil's) is divided out,
  with fat as the reference tissue, so that muscle and fat have one level
  each across the slice;
- **clicks**: one point inside a muscle seeds a multi-label random walker with
  prior models (Grady 2005). Each muscle's prior is an anatomical ellipse of
  typical size around its click, lowered where the click can only be reached
  by crossing edges, tissue unlike it or, for the back muscles, a thin fat
  plane brighter than its own texture (a geodesic detour: a fascia cuts off
  the next muscle), times how much a pixel's intensity looks like the
  muscle's tissue: for the back muscles (ES, MF), which fat surrounds,
  anything between dark tissue and the half-way level to fat (the
  partial-volume midpoint where an outline along the fascia lies); for the
  psoas, whose neighbours have any level, near the click's own level;
- **examples**: the observer's own earlier outlined slices are aligned to the
  slice (a similarity from the example muscles' centroids to the clicks, an
  affine search on normalised cross-correlation with every click kept in the
  inner half of its muscle, then a TV-L1 deformable refinement), their
  outlines are fused by locally weighted voting into a prior, and the
  intensity level at which this observer puts an outline between muscle and
  fat is measured on them and applied in a narrow band around each border;
  no muscle is proposed larger than the largest of its examples (at this
  body's size). Examples that fit this body with a near-similarity (the same
  body, or one of the same proportions) are trusted for a clicked muscle's
  shape and tissue in place of the click's generic ellipse and intensity
  model; examples that had to be stretched unevenly only scale the ellipse.

No muscle crosses the midline (the back's axis of mirror symmetry between the
left and right clicks of a pair).

Each muscle then becomes one connected, hole-free, smooth region; pixels are
never shared (contract 1 order) and each region is traced into a polygon
whose pixel-centre rasterisation reproduces it. A muscle with neither a click
nor an example is not proposed.

What the code knows in advance is generic anatomy, written as parameters
below with their sources: typical muscle sizes at L4, where muscles lie
relative to the midline and to each other, and that outlines follow the
fascia (intramuscular fat inside). Nothing is fitted to any particular scan;
see ``docs/proposals.md``.
"""

import numpy as np

from . import schema
from .errors import PvmError

__all__ = ["ProposalError", "propose_outlines", "mask_to_polygon"]


class ProposalError(PvmError):
    """Clicks or examples cannot be used for a proposal."""


#: Half-depth (anterior-posterior) and half-width (left-right) in mm of an
#: average adult muscle at L4, as the ellipse of its typical cross-sectional
#: area (ES ≈ 20 cm², MF ≈ 7 cm², PS ≈ 10 cm²; Fortin & Battié 2012, Si et al. 2023).
HALF_AXES_MM = {"PS": (15.0, 21.0), "ES": (19.0, 34.0), "MF": (20.0, 11.0)}
#: Radius (mm) of the seed disk placed at a click.
CLICK_SEED_MM = 2.5
#: Radius (mm) around a click whose darker 60 % describe the muscle's tissue.
CLICK_TISSUE_MM = 5.0
#: Random-walker edge sensitivity on the image normalised to muscle 0, fat 1.
BETA = 60.0
#: Weight of the priors against the image edges in the random walker.
GAMMA = 0.05
#: Scale of the half-axes in a click's spatial prior.
CLICK_SPREAD = 1.0
#: Spatial prior of a click: 1 within PLATEAU half-axes, then a Gaussian of FALLOFF half-axes.
PLATEAU = 0.6
FALLOFF = 0.6
#: Geodesic reach from a click: cost of crossing unlike tissue and edges, and
#: the detour (mm) over which the spatial prior falls by e.
GEODESIC = True
GEO_UNLIKE = 4.0
GEO_EDGE = 40.0
EXCESS_MM = 10.0
#: For the back muscles, crossing a thin fat plane (a fascia, which the streak
#: opening below removes from the intensities) costs this much per unit of
#: its brightness above the muscle's own texture: the 90th percentile of the
#: same measure within 15 mm of the click (noise and intramuscular streaks,
#: which observers keep inside the outline). A fascia 2 mm wide crossing
#: that disk covers less than a tenth of it, so it does not raise the level
#: wherever in the muscle's inner half the click lies.
GEO_PLANE = 60.0
TEXTURE_MM = 15.0
TEXTURE_PERCENTILE = 90
#: With a click, the example prior only scales the click's prior between this and 1.
PRIOR_FLOOR = 0.5
#: Blur (mm) of the example prior: registration is never exact.
PRIOR_BLUR_MM = 3.0
#: Floor of the intensity spread of a muscle (normalised units).
MIN_SD = 0.08
#: Radius (mm) of the grey opening that removes thin intramuscular fat streaks
#: before intensities are compared (observers outline the fascia, streaks included).
STREAK_MM = 3.0
#: Background prior where no muscle is expected.
BACKGROUND_FLOOR = 0.5
#: Smoothing radius (mm) of each proposed region (observers trace smooth curves).
SMOOTH_MM = 1.5
#: Closing radius (mm): notches from intramuscular fat streaks are filled.
CLOSE_MM = 6.0
#: Muscles bordered by fat all round (the back muscles inside the thoracolumbar
#: fascia): their intensity model is "between dark tissue and fat" rather than
#: "near the click's level", so a smooth residual bias cannot shrink them.
FAT_BORDERED = ("ES", "MF")
#: Their border lies half-way between muscle (0) and fat (1), the partial-volume
#: midpoint; the logistic width is in the same units.
LIKE_LEVEL = 0.5
LIKE_WIDTH = 0.08
#: Tissue darker than the muscle by this share of the muscle-fat contrast is
#: not muscle (ligaments, cortical bone, fascia).
LIKE_DARK = 0.3
#: With examples, an outline is moved to the intensity level (between muscle
#: and fat) at which the observer put it on them, within this band (mm) around
#: the random walker's border. Without examples the border is left as found.
ADJUST_MM = 3.0
#: Body outline: brighter than this share of the brightest tissue (fat) after
#: smoothing; air is near 0, lean muscle on fat-bright images above 5 %.
BODY_LEVEL = 0.05
#: Pixel size (mm) of the grid the random walker is solved on (speed).
WORK_MM = 1.25
#: Finer pixel spacing (mm) is refused: no MRI of the lumbar muscles has it, and
#: the mm-sized filters would need thousands of pixels (a wrong header).
MIN_SPACING_MM = 0.1
#: With examples, a proposed muscle larger than the largest of its examples
#: (in mm², brought to this body's size by the alignment's scale) times
#: (1 + AREA_MARGIN) is shrunk to that area, keeping the pixels the random
#: walker is surest of. The examples already span the observer's range of
#: levels and bodies, so a proposal beyond all of them is taken as a leak
#: (compared on TUM01 only: margins 0 and 0.25, and the examples' median
#: instead of their largest; see docs/proposals.md).
AREA_MARGIN = 0.0
#: Midline search: rows within this distance (mm) of the paired clicks, the
#: width (mm) compared on either side of a candidate column, and the mirror
#: correlation below which the image is taken to show no symmetry (then the
#: mean of the pairs' midpoints is used).
MIDLINE_ROWS_MM = 15.0
MIDLINE_HALF_MM = 25.0
MIDLINE_MIN_NCC = 0.3
#: Trust in the examples' shapes from their mean anisotropy (log ratio of the
#: affine fit's largest to smallest stretch): full below the first value, none
#: above the second. With full trust the examples alone shape each clicked
#: muscle; with none, the click's ellipse does and the examples scale it
#: between PRIOR_FLOOR and 1.
TRUST_ANISOTROPY = (0.08, 0.20)
#: With trusted examples, the clicked muscle's intensity model counts as
#: much less as they are trusted (likelihood ** (1 - trust)): the examples
#: show which tissue this observer puts inside the fascia (marbling included).
TRUST_LIKELIHOOD = 1.0


# --------------------------------------------------------------------- input
def _check_inputs(image, spacing, clicks, examples, rois):
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 16:
        raise ProposalError(f"the image must be one 2D slice of at least 16×16 pixels, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise ProposalError("the image must hold real numbers")
    image = image.astype(np.float64)
    if not np.all(np.isfinite(image)):
        raise ProposalError("the image contains NaN or infinite values")
    spacing = _check_spacing(spacing, "spacing")
    keys = schema.ROI_KEYS if rois is None else (rois,) if isinstance(rois, str) else tuple(rois)
    bad = [k for k in keys if k not in schema.ROI_KEYS]
    if bad:
        raise ProposalError(f"unknown outline(s) {', '.join(map(str, bad))}; use {', '.join(schema.ROI_KEYS)}")
    wanted = tuple(k for k in schema.ROI_KEYS if k in set(keys))
    points = {}
    for key, point in dict(clicks or {}).items():
        if key not in schema.ROI_KEYS:
            raise ProposalError(f"click for unknown outline {key!r}; use {', '.join(schema.ROI_KEYS)}")
        try:
            p = np.asarray(point, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            raise ProposalError(f"click {key}: must be [row, col] numbers, got {point!r}") from None
        if p.shape != (2,) or not np.all(np.isfinite(p)):
            raise ProposalError(f"click {key}: must be one finite [row, col] pair, got {point!r}")
        if not (-0.5 <= p[0] <= image.shape[0] - 0.5 and -0.5 <= p[1] <= image.shape[1] - 0.5):
            raise ProposalError(
                f"click {key} at row {p[0]:.1f}, column {p[1]:.1f} lies outside the "
                f"{image.shape[0]}×{image.shape[1]} slice; click inside the muscle"
            )
        points[key] = p
    if np.ptp(image) <= 1e-9 * max(float(np.abs(image).max()), 1.0):
        raise ProposalError("the image is uniform (no contrast between tissues); check the image and slice shown")
    checked = []
    for i, example in enumerate(examples or ()):
        try:
            ex_image, ex_spacing, ex_rois = example
        except (TypeError, ValueError):
            raise ProposalError(f"example {i}: must be (image2d, spacing, {{roi_key: vertices}})") from None
        ex_image = np.asarray(ex_image)
        if ex_image.ndim != 2 or min(ex_image.shape) < 16:
            raise ProposalError(f"example {i}: the image must be one 2D slice, got shape {ex_image.shape}")
        if not np.issubdtype(ex_image.dtype, np.number) or np.iscomplexobj(ex_image):
            raise ProposalError(f"example {i}: the image must hold real numbers, got {ex_image.dtype}")
        ex_image = ex_image.astype(np.float64)
        if not np.all(np.isfinite(ex_image)):
            raise ProposalError(f"example {i}: the image contains NaN or infinite values")
        ex_spacing = _check_spacing(ex_spacing, f"example {i} spacing")
        if not isinstance(ex_rois, dict):
            raise ProposalError(f"example {i}: outlines must be a {{roi_key: vertices}} mapping")
        masks = {}
        from .rois import roi_mask, swapped_sides, validate_polygon

        for key, verts in ex_rois.items():
            if key not in schema.ROI_KEYS:
                raise ProposalError(f"example {i}: unknown outline {key!r}")
            try:
                v = validate_polygon(verts, ex_image.shape, name=f"example {i} {key}")
            except PvmError as exc:
                raise ProposalError(str(exc)) from None
            m = roi_mask(v, ex_image.shape)
            if m.any():
                masks[key] = m
        swapped = swapped_sides({k: v for k, v in ex_rois.items() if k in masks})
        if swapped is not None:  # it would teach mirrored sides
            m, col_l, col_r = swapped
            raise ProposalError(
                f"example {i}: {m}_L (column {col_l:.0f}) lies on the patient's right of {m}_R "
                f"(column {col_r:.0f}); column 0 is the patient's right, so the example's left and right "
                "outlines look swapped (was its image flipped?)"
            )
        if masks:  # an example without outlines teaches nothing: skipped
            checked.append((ex_image, ex_spacing, masks))
    return image, spacing, points, checked, wanted


def _check_spacing(spacing, what):
    try:
        s = tuple(float(x) for x in spacing)
    except (TypeError, ValueError):
        raise ProposalError(f"{what} must be (row, col) in mm, got {spacing!r}") from None
    if len(s) != 2 or not all(np.isfinite(s)) or min(s) <= 0 or max(s) > 20:
        raise ProposalError(f"{what} must be two positive (row, col) values in mm, got {spacing!r}")
    if min(s) < MIN_SPACING_MM:
        raise ProposalError(
            f"{what} {s[0]:g} × {s[1]:g} mm is finer than {MIN_SPACING_MM:g} mm, finer than any MRI of the "
            "lumbar muscles; check the pixel spacing in the image header"
        )
    return s


# ------------------------------------------------------------- image model
def _body_mask(image, spacing):
    """The patient's cross-section: the large bright regions, filled in."""
    from scipy import ndimage as ndi

    smooth = ndi.gaussian_filter(image, sigma=[1.5 / s for s in spacing])
    high = np.percentile(smooth, 99.5)
    body = smooth > BODY_LEVEL * high
    lab, n = ndi.label(body)
    if n == 0:
        return np.ones(image.shape, bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    # every large bright part (dark organs can split the body's bright tissue)
    body = sizes[lab] >= 0.05 * sizes.max()
    # fill between the outermost body pixels of every row and every column: dark
    # tissue inside (psoas on T1, bowel gas) is body even where the field of
    # view cuts the body and a hole would touch the image border
    rows = np.maximum.accumulate(body, axis=1) & np.maximum.accumulate(body[:, ::-1], axis=1)[:, ::-1]
    cols = np.maximum.accumulate(body, axis=0) & np.maximum.accumulate(body[::-1], axis=0)[::-1]
    return rows & cols


def _levels(image, body, points, spacing):
    """Muscle level (median at the clicks) and fat level (bright body pixels)."""
    from scipy import ndimage as ndi

    smooth = ndi.gaussian_filter(image, sigma=[0.7 / s for s in spacing])
    inside = smooth[body]
    fat = float(np.percentile(inside, 97))
    if points:
        vals = []
        for p in points.values():
            disk = _disk_mask(image.shape, p, CLICK_SEED_MM, spacing)
            vals.append(np.median(smooth[disk]))
        muscle = float(np.median(vals))
    else:
        muscle = float(np.percentile(inside, 35))
    if fat - muscle <= 1e-6 * max(abs(fat), 1.0):
        muscle = float(np.percentile(inside, 10))
    if not fat - muscle > 1e-6 * max(abs(fat), 1.0):  # nothing to scale the image by
        raise ProposalError("the slice shows no contrast between muscle and fat; check the image and slice shown")
    return muscle, fat


def _disk_mask(shape, centre, radius_mm, spacing):
    """Pixels within ``radius_mm`` of ``centre``, and always the pixel the centre lies in."""
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    disk = ((rr - centre[0]) * spacing[0]) ** 2 + ((cc - centre[1]) * spacing[1]) ** 2 <= radius_mm**2
    r, c = int(round(centre[0])), int(round(centre[1]))
    if 0 <= r < shape[0] and 0 <= c < shape[1]:  # a disk finer than the pixels (coarse spacing)
        disk[r, c] = True
    return disk


# --------------------------------------------------------- example priors
def _outline_level(image, spacing, masks, body):
    """Where an observer's outline sits between muscle (0) and fat (1).

    Measured on one outlined example: the median normalised intensity of the
    pixels just inside and just outside the outline where it borders brighter
    tissue (fat), averaged. Returns None when the example has no such border.
    """
    from scipy import ndimage as ndi

    union = np.zeros(image.shape, bool)
    for m in masks.values():
        union |= m
    fat = float(np.percentile(image[body], 97))
    rr, cc = np.nonzero(union)
    pad = [int(np.ceil(10.0 / s)) for s in spacing]
    box = np.s_[max(rr.min() - pad[0], 0) : rr.max() + pad[0] + 1, max(cc.min() - pad[1], 0) : cc.max() + pad[1] + 1]
    image, union, body = image[box], union[box], body[box]
    smooth = ndi.gaussian_filter(image, sigma=[0.6 / s for s in spacing])
    muscle = float(np.median(smooth[union]))
    if fat - muscle <= 0:
        return None
    norm = (smooth - muscle) / (fat - muscle)
    inner = union & ~ndi.binary_erosion(union)
    outer = ndi.binary_dilation(union) & ~union & body
    # only borders with fat (not with bone, fluid or another muscle)
    fatty = ndi.binary_dilation(norm > 0.8, structure=_disk_structure(2.5, spacing))
    inner, outer = inner & fatty, outer & fatty
    if inner.sum() < 20 or outer.sum() < 20:
        return None
    return 0.5 * (float(np.median(norm[inner])) + float(np.median(norm[outer])))


def _example_prior(image, body, spacing, examples, wanted, points=None):
    """Fused example outlines ({key: probability map}), the observer's outline
    levels, the examples' muscle areas and how far their shapes can be trusted.

    ``examples`` are ``(bias-corrected image, spacing, {key: mask}, body mask)``.
    """
    if not examples:
        return {}, [], {}, 0.0
    from ._propose_atlas import atlas_prior

    levels = []
    for ex_image, ex_spacing, ex_masks, ex_body in examples:
        level = _outline_level(ex_image, ex_spacing, ex_masks, ex_body)
        if level is not None:
            levels.append(level)
    prior, areas, anisotropy = atlas_prior(image, spacing, body, examples, wanted, points or {})
    return prior, levels, areas, _shape_trust(anisotropy)


def _shape_trust(anisotropy):
    """How far the examples' outlines can stand for this slice's shapes (0–1).

    Examples that fit this body with a near-similarity (the same body a few
    slices away, or a body of the same proportions) are trusted for the
    muscles' shapes; examples whose body had to be stretched unevenly to fit
    are a looser guide, and the clicks' anatomical ellipses keep the weight.
    """
    if not anisotropy:
        return 0.0
    low, high = TRUST_ANISOTROPY
    return float(np.clip((high - np.mean(anisotropy)) / (high - low), 0.0, 1.0))


# ---------------------------------------------------------- segmentation
def _segment(image, spacing, points, prior, wanted, *, level=None, areas=None, trust=0.0):
    """Multi-label random walker with priors, seeded at the clicks.

    Each label (background and every wanted muscle) has a prior probability
    per pixel: where it may be (the aligned examples, or the reach of its
    click) times how its intensity looks (the click's neighbourhood). The
    walker (Grady 2005, "Multilabel random walker image segmentation using
    prior models") balances those priors against the image edges.
    """
    from scipy import ndimage as ndi

    body = _body_mask(image, spacing)
    muscle, fat = _levels(image, body, points, spacing)
    contrast = fat - muscle
    norm = (ndi.gaussian_filter(image, sigma=[0.6 / s for s in spacing]) - muscle) / contrast
    keys = [k for k in wanted if k in points or (k in prior and prior[k].max() >= 0.5)]
    if not keys:
        return {}
    # where each muscle may be (mm-scaled spatial prior)
    spatial = {}
    for k in keys:
        if k in prior:
            sp = ndi.gaussian_filter(prior[k].astype(float), sigma=[PRIOR_BLUR_MM / s for s in spacing])
        else:
            sp = None
        if k in points:
            half_depth, half_width = HALF_AXES_MM[k.split("_")[0]]
            rr, cc = np.ogrid[: image.shape[0], : image.shape[1]]
            d2 = (((rr - points[k][0]) * spacing[0]) / (CLICK_SPREAD * half_depth)) ** 2 + (
                ((cc - points[k][1]) * spacing[1]) / (CLICK_SPREAD * half_width)
            ) ** 2
            # flat within the typical ellipse around the click, falling off beyond it
            beyond = np.maximum(np.sqrt(d2) - PLATEAU, 0.0)
            near = np.exp(-0.5 * (beyond / FALLOFF) ** 2)
            if sp is None:
                sp = near
            else:  # trusted examples shape the muscle; the ellipse only where they are not
                floor = PRIOR_FLOOR * (1.0 - trust)
                sp = near ** (1.0 - trust) * (floor + (1.0 - floor) * sp)
        spatial[k] = sp
    region = np.zeros(image.shape, bool)
    for k in keys:
        region |= spatial[k] > 0.02
    region &= body
    rows, cols = np.nonzero(region)
    if not len(rows):
        return {}
    pad = 3
    r0, r1 = max(rows.min() - pad, 0), min(rows.max() + pad + 1, image.shape[0])
    c0, c1 = max(cols.min() - pad, 0), min(cols.max() + pad + 1, image.shape[1])
    crop = np.s_[r0:r1, c0:c1]
    data = norm[crop]
    # intensity likelihood of each muscle around its own level (from its click),
    # on an image whose thin bright streaks (intramuscular fat) are opened away
    opened = ndi.grey_opening(data, footprint=_disk_structure(STREAK_MM, spacing))
    likelihood, levels = {}, {}
    for k in keys:
        if k in points:
            p = (points[k][0] - r0, points[k][1] - c0)
            # the lean tissue around the click: a click may land on intramuscular
            # fat, and fat is the brighter tissue, so the darker part is kept
            vals = opened[_disk_mask(data.shape, p, CLICK_TISSUE_MM, spacing)]
            vals = vals[vals <= np.percentile(vals, 60)]
            mu = float(np.median(vals))
            sd = 1.4826 * float(np.median(np.abs(vals - mu)))
        else:  # no click: the muscle's level where the examples agree it lies
            core = spatial[k][crop] >= 0.75 * spatial[k][crop].max()
            vals = opened[core] if core.any() else np.zeros(1)
            mu = float(np.median(vals))
            sd = 1.4826 * float(np.median(np.abs(vals - mu)))
        sd = max(sd, MIN_SD)
        if k.split("_")[0] in FAT_BORDERED:
            # the back muscles border fat: muscle up to half-way to fat (partial
            # volume), and down to LIKE_DARK below its own level (darker tissue
            # is ligament, cortical bone or fascia)
            frac = np.clip((opened - mu) / max(1.0 - mu, 1e-6), -30.0, 30.0)  # exp stays finite
            likelihood[k] = 1.0 / (
                (1.0 + np.exp((frac - LIKE_LEVEL) / LIKE_WIDTH)) * (1.0 + np.exp((-frac - LIKE_DARK) / LIKE_WIDTH))
            )
        else:  # psoas: neighbours of any level (bowel, kidney, vessels); stay near its own level
            likelihood[k] = np.exp(-0.5 * ((opened - mu) / sd) ** 2)
        levels[k] = (mu, sd)
        if k in prior and k in points and trust > 0:
            likelihood[k] = likelihood[k] ** (1.0 - TRUST_LIKELIHOOD * trust)
    local = {k: spatial[k][crop] for k in keys}
    if GEODESIC:
        # a muscle continues only where it can be reached from its click without
        # crossing edges or tissue unlike it: the detour over the straight
        # distance lowers the spatial prior (a fat plane cuts off the next muscle)
        from skimage.graph import MCP_Geometric

        grad = ndi.gaussian_gradient_magnitude(opened, sigma=0.7)
        # what the opening removed: thin bright lines, fascial fat planes and streaks alike
        plane = np.clip(data - opened, 0.0, None)
        flat = MCP_Geometric(np.ones(data.shape), sampling=spacing)
        for k in keys:
            if k not in points:
                continue
            mu, sd = levels[k]
            z = np.abs(opened - mu) / sd
            # start from the muscle-like pixels of the seed disk (not from a fat blob)
            p = (points[k][0] - r0, points[k][1] - c0)
            disk = _disk_mask(data.shape, p, CLICK_SEED_MM, spacing)
            start = np.argwhere(disk & (z < 2.5))
            if not len(start):
                start = [(int(round(p[0])), int(round(p[1])))]
            cost = 1.0 + GEO_EDGE * grad**2
            if k.split("_")[0] in FAT_BORDERED:
                cost += GEO_UNLIKE * (1.0 - likelihood[k])
                # a fat plane brighter than the muscle's own texture is a fascia;
                # trusted examples know better where this observer's outline runs
                texture = np.percentile(plane[_disk_mask(data.shape, p, TEXTURE_MM, spacing)], TEXTURE_PERCENTILE)
                shaped = trust if k in prior else 0.0
                cost += GEO_PLANE * (1.0 - shaped) * np.maximum(plane - texture, 0.0)
            else:
                cost += GEO_UNLIKE / (1.0 + np.exp(-2.0 * (z - 3.0)))
            geo = MCP_Geometric(cost, sampling=spacing).find_costs(start)[0]
            base = flat.find_costs(start)[0]
            local[k] = local[k] * np.exp(-np.maximum(geo - base, 0.0) / EXCESS_MM)
    stack = [local[k] * likelihood[k] for k in keys]
    like_any = np.max(np.stack([likelihood[k] for k in keys]), axis=0)
    spatial_sum = np.clip(sum(local[k] for k in keys), 0, 1)
    # background: where no muscle is expected, or where nothing looks like the muscles
    background = np.maximum(BACKGROUND_FLOOR * (1.0 - spatial_sum), 1.0 - like_any)
    lam = np.stack([background] + stack)
    lam /= lam.sum(axis=0, keepdims=True) + 1e-12
    seeds = np.zeros(data.shape, np.int32)
    seeds[~body[crop]] = 1
    seeds[0, :] = np.where(seeds[0, :] == 0, 1, seeds[0, :])
    seeds[-1, :] = 1
    seeds[:, 0] = 1
    seeds[:, -1] = 1
    label_of = {k: i + 2 for i, k in enumerate(keys)}
    for k in keys:
        if k in points:
            p = (points[k][0] - r0, points[k][1] - c0)
            seeds[_disk_mask(data.shape, p, CLICK_SEED_MM, spacing)] = label_of[k]
    # solve on a grid of about WORK_MM pixels (speed), read back at full resolution
    factor = [min(1.0, sp / WORK_MM) for sp in spacing]
    if min(factor) < 0.95:
        from skimage.transform import resize

        small = tuple(max(8, int(round(n * f))) for n, f in zip(data.shape, factor))
        work_spacing = tuple(sp * n / m for sp, n, m in zip(spacing, data.shape, small))
        w_data = resize(data, small, order=1, anti_aliasing=False)
        w_lam = np.stack([resize(layer, small, order=1, anti_aliasing=False) for layer in lam])
        w_seeds = resize(seeds, small, order=0, preserve_range=True, anti_aliasing=False).astype(np.int32)
        prob = _walk(w_data, w_seeds, w_lam, spacing=work_spacing, beta=BETA, gamma=GAMMA)
        prob = np.stack([resize(layer, data.shape, order=1, anti_aliasing=False) for layer in prob])
    else:
        prob = _walk(data, seeds, lam, spacing=spacing, beta=BETA, gamma=GAMMA)
    labels = np.argmax(prob, axis=0) + 1
    labels[seeds > 0] = seeds[seeds > 0]
    local_points = {k: (p[0] - r0, p[1] - c0) for k, p in points.items()}
    found = {k: labels == label_of[k] for k in keys}
    if level is not None and ADJUST_MM > 0:
        found = _adjust_to_level(found, data, levels, level, spacing)
    if areas:
        found = _bound_areas(found, prob, label_of, areas, spacing)
    found = _keep_own_side(found, local_points, data, spacing)
    cleaned = _clean(found, local_points, spacing, body[crop])
    out = {}
    for k, m in cleaned.items():
        full = np.zeros(image.shape, bool)
        full[crop] = m
        out[k] = full
    return out


def _adjust_to_level(masks, data, levels, level, spacing):
    """Move each muscle's border towards fat to where the observer puts it.

    Within ADJUST_MM of the random walker's border, a pixel is inside when
    its intensity lies below ``level`` on the scale from the muscle's own
    level (0) to fat (1); pixels of other muscles are never taken.
    """
    from scipy import ndimage as ndi

    near = _disk_structure(ADJUST_MM, spacing)
    others_all = np.zeros(data.shape, bool)
    for m in masks.values():
        others_all |= m
    out = {}
    for k, m in masks.items():
        mu = levels[k][0]
        scaled = (data - mu) / max(1.0 - mu, 1e-6)
        others = others_all & ~m
        grown = ndi.binary_dilation(m, structure=near) & ~others
        core = ndi.binary_erosion(m, structure=near)
        band = grown & ~core
        out[k] = core | (band & (scaled < level))
    return out


def _keep_own_side(masks, points, image, spacing):
    """No muscle crosses the midline (the spinous processes and their ligaments).

    The midline is the axis of left-right mirror symmetry of the back
    (:func:`_midline_column`), searched between the left and right clicks of
    the pairs (contract 1: column 0 is the patient's right). Without such a
    pair nothing is cut.
    """
    midline = _midline_column(image, points, spacing)
    if midline is None:
        return masks
    out = {}
    for k, m in masks.items():
        cols = np.arange(m.shape[1])
        own = cols > midline if k.endswith("_L") else cols < midline
        out[k] = m & own[None, :]
    return out


def _midline_column(image, points, spacing):
    """The column about which the back is most nearly mirror-symmetric.

    Searched between the innermost left and right clicks of the pairs, on
    the rows of the clicks (±MIDLINE_ROWS_MM), comparing MIDLINE_HALF_MM on
    either side by normalised cross-correlation. The mean of the pairs'
    midpoints when the image shows no symmetry (correlation below
    MIDLINE_MIN_NCC); None without a pair.
    """
    pairs = _click_pairs(points)
    if not pairs:
        return None
    fallback = _pairs_midpoint(pairs)
    lo = max(r[1] for r, _ in pairs)  # innermost right-side click
    hi = min(q[1] for _, q in pairs)  # innermost left-side click
    rows = [p[0] for pair in pairs for p in pair]
    pad = MIDLINE_ROWS_MM / spacing[0]
    r0, r1 = int(max(min(rows) - pad, 0)), int(min(max(rows) + pad + 1, image.shape[0]))
    half = int(round(MIDLINE_HALF_MM / spacing[1]))
    band = image[r0:r1]
    best, best_score = None, -np.inf
    for c in range(int(np.ceil(lo)), int(np.floor(hi)) + 1):
        w = min(half, c, band.shape[1] - 1 - c)
        if w < 3:
            continue
        right = band[:, c - w : c][:, ::-1].ravel()
        left = band[:, c + 1 : c + 1 + w].ravel()
        right, left = right - right.mean(), left - left.mean()
        score = float(right @ left) / (np.sqrt((right @ right) * (left @ left)) + 1e-12)
        if score > best_score:
            best, best_score = float(c), score
    return fallback if best is None or best_score < MIDLINE_MIN_NCC else best


def _click_pairs(points):
    """[(right click, left click)] of the muscles clicked on both sides."""
    return [(points[f"{m}_R"], points[f"{m}_L"]) for m in schema.MUSCLES if f"{m}_R" in points and f"{m}_L" in points]


def _pairs_midpoint(pairs):
    """Mean column of the pairs' midpoints (column 0 is the patient's right)."""
    return float(np.mean([(right[1] + left[1]) / 2.0 for right, left in pairs]))


def _bound_areas(masks, prob, label_of, areas, spacing):
    """Shrink a muscle larger than its examples allow to their largest area.

    ``areas`` holds each muscle's areas (mm²) on the aligned examples. A
    region above ``max(areas) * (1 + AREA_MARGIN)`` keeps that many of its
    pixels, those where the random walker's probability of the muscle is
    highest (the seed and the pixels most tied to it).
    """
    pixel = spacing[0] * spacing[1]
    out = dict(masks)
    for k, m in masks.items():
        if k not in areas or not areas[k]:
            continue
        keep = int(max(areas[k]) * (1.0 + AREA_MARGIN) / pixel)
        n = int(m.sum())
        if n <= keep or keep <= 0:
            continue
        p = prob[label_of[k] - 1][m]
        threshold = np.partition(p, n - keep)[n - keep]
        out[k] = m & (prob[label_of[k] - 1] >= threshold)
    return out


def _distance2_mm(shape, centre, spacing):
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return ((rr - centre[0]) * spacing[0]) ** 2 + ((cc - centre[1]) * spacing[1]) ** 2


def _walk(data, seeds, priors, *, spacing, beta, gamma):
    """Random walker with prior models on a 4-connected grid.

    ``seeds``: 0 unknown, 1..K fixed label; ``priors``: (K, M, N) label
    probabilities. Solves (L_U + gamma * diag(sum priors)) x_s = gamma * prior_s
    - B m_s for every label s and returns the (K, M, N) label probabilities.
    """
    from scipy import sparse
    from scipy.sparse.linalg import splu

    m, n = data.shape
    idx = np.arange(m * n).reshape(m, n)
    edges, weights = [], []
    for axis, h in ((0, spacing[0]), (1, spacing[1])):
        a = idx[:-1, :] if axis == 0 else idx[:, :-1]
        b = idx[1:, :] if axis == 0 else idx[:, 1:]
        diff = np.diff(data, axis=axis) / h * min(spacing)
        edges.append(np.stack([a.ravel(), b.ravel()]))
        weights.append(np.exp(-beta * diff.ravel() ** 2) / h * min(spacing) + 1e-6)
    e = np.concatenate(edges, axis=1)
    w = np.concatenate(weights)
    size = m * n
    W = sparse.coo_matrix((np.r_[w, w], (np.r_[e[0], e[1]], np.r_[e[1], e[0]])), shape=(size, size)).tocsr()
    L = sparse.diags(np.asarray(W.sum(axis=1)).ravel()) - W
    flat_seeds = seeds.ravel()
    unknown = flat_seeds == 0
    k = priors.shape[0]
    pri = priors.reshape(k, -1)
    L_uu = L[unknown][:, unknown]
    L_um = L[unknown][:, ~unknown]
    A = (L_uu + gamma * sparse.diags(pri[:, unknown].sum(axis=0))).tocsc()
    lu = splu(A)
    marked = flat_seeds[~unknown]
    rhs = np.stack([gamma * pri[s, unknown] - L_um @ (marked == s + 1).astype(float) for s in range(k)], axis=1)
    x = lu.solve(rhs)
    prob = np.zeros((k, m * n))
    prob[:, unknown] = x.T
    for s in range(k):
        prob[s, ~unknown] = marked == s + 1
    return prob.reshape(k, m, n)


def _disk_structure(radius_mm, spacing):
    rr = int(np.ceil(radius_mm / spacing[0]))
    cc = int(np.ceil(radius_mm / spacing[1]))
    y, x = np.ogrid[-rr : rr + 1, -cc : cc + 1]
    return (y * spacing[0]) ** 2 + (x * spacing[1]) ** 2 <= radius_mm**2


def _clean(masks, points, spacing, body):
    """One connected, hole-free, smooth region per muscle, no shared pixels."""
    from scipy import ndimage as ndi

    taken = np.zeros(body.shape, bool)
    out = {}
    for key in schema.ROI_KEYS:
        if key not in masks:
            continue
        m = masks[key] & body & ~taken
        if SMOOTH_MM > 0:
            m = ndi.binary_opening(m, structure=_disk_structure(SMOOTH_MM, spacing))
            # intramuscular fat streaks reaching the edge are inside the fascia: close them
            st = _disk_structure(CLOSE_MM, spacing)
            pad = st.shape[0]
            m = ndi.binary_closing(np.pad(m, pad), structure=st)[pad:-pad, pad:-pad] & ~taken & body
        m = _keep_component(m, points.get(key))
        if m is None:
            continue
        m = ndi.binary_fill_holes(m) & ~taken
        m = _keep_component(m, points.get(key))
        if m is None or m.sum() < 10:
            continue
        out[key] = m
        taken |= m
    return out


def _keep_component(mask, point):
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask)
    if n == 0:
        return None
    if point is not None:
        r, c = int(round(point[0])), int(round(point[1]))
        r = min(max(r, 0), mask.shape[0] - 1)
        c = min(max(c, 0), mask.shape[1] - 1)
        if lab[r, c]:
            return lab == lab[r, c]
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == np.argmax(sizes)


# -------------------------------------------------------------- polygons
def mask_to_polygon(mask, *, tolerance=0.35):
    """Trace a one-component, hole-free mask into polygon vertices.

    The polygon follows the iso-line half-way between pixel centres, then is
    simplified by at most ``tolerance`` pixels; the result's pixel-centre
    rasterisation (``skimage.draw.polygon2mask``) reproduces the mask up to
    a few boundary pixels.

    Examples
    --------
    >>> m = np.zeros((8, 8), bool); m[2:6, 3:7] = True
    >>> from skimage.draw import polygon2mask
    >>> bool((polygon2mask(m.shape, mask_to_polygon(m)) == m).all())
    True
    """
    from skimage.measure import find_contours

    padded = np.pad(np.asarray(mask, dtype=float), 1)
    contours = find_contours(padded, 0.5)
    if not contours:
        return None
    outer = max(contours, key=len) - 1.0
    if len(outer) > 1 and np.allclose(outer[0], outer[-1]):
        outer = outer[:-1]
    if tolerance > 0:
        simple = _simplify_closed(outer, tolerance)
        if len(simple) >= 3:
            outer = simple
    return outer


def _simplify_closed(points, tolerance):
    """Douglas-Peucker simplification of a closed curve (split at two far points).

    Written here because ``skimage.measure.approximate_polygon`` imports
    ``scipy.signal`` (seconds on a first call).
    """
    n = len(points)
    if n < 8:
        return points
    far = int(np.argmax(np.sum((points - points[0]) ** 2, axis=1)))
    keep = np.zeros(n, bool)
    keep[0] = keep[far] = True
    for lo, hi in ((0, far), (far, n)):
        stack = [(lo, hi)]
        while stack:
            a, b = stack.pop()
            end = points[b % n]
            if b - a < 2:
                continue
            seg = points[a + 1 : b]
            d = end - points[a]
            length = np.hypot(*d)
            if length < 1e-12:
                dist = np.hypot(*(seg - points[a]).T)
            else:
                dist = np.abs(d[0] * (seg[:, 1] - points[a][1]) - d[1] * (seg[:, 0] - points[a][0])) / length
            i = int(np.argmax(dist))
            if dist[i] > tolerance:
                keep[a + 1 + i] = True
                stack += [(a, a + 1 + i), (a + 1 + i, b)]
    return points[keep]


def _polygons(masks, shape):
    """Polygons whose rasterisations do not overlap, in contract order."""
    from .rois import roi_mask, validate_polygon

    out = {}
    taken = np.zeros(shape, bool)
    for key in schema.ROI_KEYS:
        if key not in masks:
            continue
        m = masks[key] & ~taken
        verts = None
        for tol in (0.35, 0.2, 0.0):
            v = mask_to_polygon(m, tolerance=tol)
            if v is None or len(v) < 3:
                break
            try:
                v = validate_polygon(v, shape, name=key)
            except PvmError:
                continue
            r = roi_mask(v, shape)
            if not (r & taken).any() and r.any():
                verts = v
                break
        if verts is None:
            continue
        out[key] = verts
        taken |= roi_mask(verts, shape)
    return out


# -------------------------------------------------------------------- API
def propose_outlines(image, *, spacing, clicks=None, examples=(), rois=None):
    """Propose muscle outlines on one axial slice.

    Parameters
    ----------
    image : (M, N) array
        The slice in contract-1 orientation (row 0 anterior, column 0 the
        patient's right).
    spacing : (float, float)
        (row, col) pixel spacing in mm.
    clicks : dict, optional
        ``{roi_key: (row, col)}``, one point inside each muscle clicked.
    examples : sequence, optional
        Earlier outlined slices ``(image2d, spacing, {roi_key: vertices})``
        of the same observer.
    rois : sequence of str, optional
        Outlines wanted (default all six: PS_L, PS_R, ES_L, ES_R, MF_L, MF_R).

    Returns
    -------
    dict
        ``{roi_key: (N, 2) float array of [row, col] vertices}``; valid,
        non-overlapping polygons (contract 1). A muscle without a click and
        without an example is absent (never guessed). Same inputs, same result.

    Raises
    ------
    ProposalError
        Bad image, spacing, clicks or examples, or clicks that contradict
        anatomy (a left muscle clicked on the patient's right, a multifidus
        clicked lateral to the erector spinae of its side, a psoas clicked
        behind the back muscles, a click outside the body).
    """
    image, spacing, points, examples, wanted = _check_inputs(image, spacing, clicks, examples, rois)
    points = {k: p for k, p in points.items() if k in wanted}
    if not points and not examples:
        return {}
    body = _body_mask(image, spacing)
    _check_anatomy(points, body, spacing)
    # a surface coil's bias would make one muscle look like two tissues: remove it,
    # with fat as the reference tissue, on the slice and on every example
    from ._propose_atlas import fat_bias

    image = image / fat_bias(image, spacing, body)
    corrected = []
    for ex_image, ex_spacing, ex_masks in examples:
        ex_body = _body_mask(ex_image, ex_spacing)
        corrected.append((ex_image / fat_bias(ex_image, ex_spacing, ex_body), ex_spacing, ex_masks, ex_body))
    examples = corrected
    prior, levels, areas, trust = _example_prior(image, body, spacing, examples, wanted, points=points)
    level = float(np.clip(np.median(levels), 0.2, 0.9)) if levels else None
    masks = _segment(image, spacing, points, prior, wanted, level=level, areas=areas, trust=trust)
    return _polygons(masks, image.shape)


def _check_anatomy(points, body, spacing):
    """Refuse clicks that cannot be the muscle they are said to be."""
    for key, p in points.items():
        r, c = int(round(p[0])), int(round(p[1]))
        r = min(max(r, 0), body.shape[0] - 1)
        c = min(max(c, 0), body.shape[1] - 1)
        if not body[r, c]:
            raise ProposalError(
                f"click {key} at row {p[0]:.0f}, column {p[1]:.0f} lies outside the body; click inside the muscle"
            )
    keys = list(points)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            apart = float(np.hypot(*((points[a] - points[b]) * np.asarray(spacing))))
            if apart < 2 * CLICK_SEED_MM:  # their seed disks would overlap
                raise ProposalError(
                    f"clicks {a} and {b} are {apart:.1f} mm apart, too close for two muscles; "
                    "click once inside each muscle, nearer its middle"
                )
    cols = np.nonzero(body.any(axis=0))[0]
    # the midline: between the two sides' clicks when both are given, else the body's middle
    pairs = _click_pairs(points)
    midline = _pairs_midpoint(pairs) if pairs else (cols.min() + cols.max()) / 2.0
    for key, p in points.items():
        side = key.split("_")[1]
        # column 0 is the patient's right: left-side muscles lie at larger columns
        if (side == "L" and p[1] < midline) or (side == "R" and p[1] > midline):
            other = "right" if side == "L" else "left"
            raise ProposalError(
                f"click {key} lies on the patient's {other} side (column {p[1]:.0f}, midline near "
                f"{midline:.0f}; column 0 is the patient's right); click the muscle on the patient's "
                f"{'left' if side == 'L' else 'right'}"
            )
    for side in "LR":
        es, mf, ps = (points.get(f"{m}_{side}") for m in ("ES", "MF", "PS"))
        if es is not None and mf is not None and abs(mf[1] - midline) > abs(es[1] - midline) + 5.0 / spacing[1]:
            raise ProposalError(
                f"clicks MF_{side} and ES_{side} look swapped: the multifidus lies next to the spine, "
                f"medial to the erector spinae; click MF_{side} nearer the midline"
            )
        for back, name in ((es, "ES"), (mf, "MF")):
            if ps is not None and back is not None and ps[0] > back[0] + 5.0 / spacing[0]:
                raise ProposalError(
                    f"clicks PS_{side} and {name}_{side} look swapped: the psoas lies in front of "
                    f"(at smaller rows than) the back muscles; check which muscle you clicked"
                )
