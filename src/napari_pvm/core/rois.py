"""Muscle outlines: validation and rasterisation (contract 1).

Vertices are ``[row, col]`` floats in the slice array; integer coordinates
are pixel centres. A pixel belongs to an outline when its centre lies inside
the polygon (``skimage.draw.polygon2mask``); polygons close implicitly.

No pixel counts in two outlines (:func:`exclusive_masks`): a pixel centre
inside more than one outline belongs to the first of them in the order
PS_L, PS_R, ES_L, ES_R, MF_L, MF_R (``schema.ROI_KEYS``), so ES+MF is both
the union and the sum of ES and MF. An overlap is a drawing slip only while
it is small: two outlines sharing more than :data:`MAX_OVERLAP_PIXELS` pixels
are refused, and so is an outline that the rule would cut in two or leave
with a hole (an earlier outline crossing it, or lying inside it); the
message says which outline and where. Overlaps do not reach measurement
from the Measure dock, which clips each outline to its neighbours while the
observer draws (:mod:`napari_pvm.core.clip`).
"""

import numpy as np

from . import schema
from .errors import AnnotationError

__all__ = [
    "MAX_OVERLAP_PIXELS",
    "check_no_overlap",
    "exclusive_masks",
    "polygon_area_px",
    "roi_mask",
    "swapped_sides",
    "validate_polygon",
]

#: Pixels two outlines may share before the pair is refused as a drawing
#: error: a shared border of about 20 pixels traced one pixel into the
#: neighbour. At a typical 0.7 mm pixel that is 0.1 cm², under 2 % of the
#: smallest outlined muscle (multifidus, about 5 cm² at L4), so the
#: first-in-order rule moves at most that much area between two muscles.
MAX_OVERLAP_PIXELS = 20


def roi_mask(vertices, shape):
    """Boolean mask of the pixels whose centre lies inside the polygon.

    Parameters
    ----------
    vertices : array_like of shape (N, 2)
        ``[row, col]`` vertices; the polygon closes implicitly.
    shape : tuple of 2 ints
        Shape of the slice.

    Examples
    --------
    >>> int(roi_mask([[0.5, 0.5], [0.5, 3.5], [3.5, 3.5], [3.5, 0.5]], (5, 5)).sum())
    9
    """
    from skimage.draw import polygon2mask

    return polygon2mask(tuple(shape), np.asarray(vertices, dtype=float))


def polygon_area_px(vertices):
    """Exact (shoelace) area of a polygon in pixel units."""
    v = np.asarray(vertices, dtype=float)
    r, c = v[:, 0], v[:, 1]
    return 0.5 * abs(float(np.dot(r, np.roll(c, -1)) - np.dot(c, np.roll(r, -1))))


def validate_polygon(vertices, shape, *, name="outline"):
    """Check an outline and return it as an (N, 2) float array.

    Raises
    ------
    AnnotationError
        Fewer than 3 distinct vertices, non-finite values, vertices outside
        the image, a self-intersecting or zero-area polygon.
    """
    try:
        v = np.asarray(vertices, dtype=float)
    except (TypeError, ValueError):
        raise AnnotationError(f"{name}: vertices must be a list of [row, col] numbers") from None
    if v.ndim != 2 or v.shape[1] != 2:
        raise AnnotationError(f"{name}: vertices must be [row, col] pairs, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise AnnotationError(f"{name}: vertices contain NaN or infinite values")
    # drop a repeated closing vertex and consecutive duplicates
    keep = np.ones(len(v), bool)
    keep[1:] = np.any(np.abs(np.diff(v, axis=0)) > 1e-9, axis=1)
    v = v[keep]
    if len(v) > 1 and np.allclose(v[0], v[-1]):
        v = v[:-1]
    if len(v) < 3:
        raise AnnotationError(f"{name}: an outline needs at least 3 distinct vertices, it has {len(v)}")
    rows, cols = shape
    lo, hi = v.min(axis=0), v.max(axis=0)
    if lo[0] < -0.5 or lo[1] < -0.5 or hi[0] > rows - 0.5 or hi[1] > cols - 0.5:
        raise AnnotationError(
            f"{name}: vertices lie outside the {rows}×{cols} image "
            f"(rows {lo[0]:.1f}–{hi[0]:.1f}, columns {lo[1]:.1f}–{hi[1]:.1f}); redraw it on the image"
        )
    crossing = _self_intersection(v)
    if crossing is not None:
        raise AnnotationError(
            f"{name}: the outline crosses itself near row {crossing[0]:.0f}, column "
            f"{crossing[1]:.0f}; redraw it without a figure-of-eight"
        )
    if polygon_area_px(v) < 1.0:
        raise AnnotationError(f"{name}: the outline encloses no area; redraw it")
    return v


def _self_intersection(v):
    """First crossing point of two non-adjacent edges, or None (O(N²), N small)."""
    n = len(v)
    a = v
    b = np.roll(v, -1, axis=0)
    for i in range(n):
        p, r = a[i], b[i] - a[i]
        j = np.arange(i + 2, n)
        if i == 0:
            j = j[j != n - 1]
        if not len(j):
            continue
        q, s = a[j], b[j] - a[j]
        denom = r[0] * s[:, 1] - r[1] * s[:, 0]
        qp = q - p
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (qp[:, 0] * s[:, 1] - qp[:, 1] * s[:, 0]) / denom
            u = (qp[:, 0] * r[1] - qp[:, 1] * r[0]) / denom
        hit = (np.abs(denom) > 1e-12) & (t > 1e-9) & (t < 1 - 1e-9) & (u > 1e-9) & (u < 1 - 1e-9)
        if hit.any():
            k = np.argmax(hit)
            return p + t[k] * r
    return None


def check_no_overlap(masks, *, max_pixels=MAX_OVERLAP_PIXELS):
    """Refuse outlines of different muscles that share more than a few pixels.

    Parameters
    ----------
    masks : dict
        ``{"PS_L": bool array, ...}``.
    """
    keys = [k for k in schema.ROI_KEYS if k in masks] + [k for k in masks if k not in schema.ROI_KEYS]
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            shared = int(np.count_nonzero(masks[a] & masks[b]))
            if shared > max_pixels:
                raise AnnotationError(
                    f"outlines {a} and {b} overlap by {shared} pixels; outlines of different "
                    "muscles must not overlap — move the shared border"
                )


def _centre(region):
    """(row, col) of the centre of ``region``."""
    from scipy import ndimage

    return tuple(float(x) for x in ndimage.center_of_mass(region))


def _where(point):
    return f"row {point[0]:.0f}, column {point[1]:.0f}"


def _pieces(mask):
    """Labels of the 4-connected pieces of ``mask`` (the pixel-centre set of
    a traced polygon is 4-connected) and their number."""
    from scipy import ndimage

    return ndimage.label(mask)


def _holes(mask):
    """Pixels outside ``mask`` that are enclosed by it (8-connected background)."""
    from scipy import ndimage

    outside, _ = ndimage.label(np.pad(~mask, 1, constant_values=True), structure=np.ones((3, 3), bool))
    return ((outside != outside[0, 0]) & (outside > 0))[1:-1, 1:-1]


def exclusive_masks(masks, *, max_overlap=MAX_OVERLAP_PIXELS):
    """Give each pixel to the first outline that contains it (contract 1).

    Parameters
    ----------
    masks : dict
        ``{"PS_L": bool (M, N), ...}``: pixel-centre masks of the outlines
        (:func:`roi_mask`). Keys of ``schema.ROI_KEYS`` come first, in that
        order; other keys follow in the given order.
    max_overlap : int
        Pixels two outlines may share; more is refused.

    Returns
    -------
    dict
        The same keys with disjoint masks: each outline keeps the pixels
        that no earlier outline has.

    Raises
    ------
    napari_pvm.core.clip.ClipError
        (an AnnotationError) Two outlines share more than ``max_overlap``
        pixels; or the rule would leave an outline empty, cut it into more
        pieces than it had, or leave a hole in it. The message names the
        outlines and gives the row and column of the problem; the error's
        ``location`` is that (row, col) and ``neighbour`` the earlier
        outline, for a marker on the canvas.

    Examples
    --------
    >>> ps = np.zeros((5, 8), bool); ps[1:4, 1:5] = True    # 12 pixels
    >>> es = np.zeros((5, 8), bool); es[1:4, 4:7] = True    #  9, 3 shared
    >>> out = exclusive_masks({"ES_L": es, "PS_L": ps})
    >>> int(out["PS_L"].sum()), int(out["ES_L"].sum())
    (12, 6)
    """
    from .clip import ClipError  # clip builds on this module

    keys = [k for k in schema.ROI_KEYS if k in masks] + [k for k in masks if k not in schema.ROI_KEYS]
    masks = {k: np.asarray(masks[k], dtype=bool) for k in keys}
    out, taken = {}, None
    for i, key in enumerate(keys):
        mask = masks[key]
        if taken is None or not np.any(mask & taken):
            out[key] = mask
            taken = mask.copy() if taken is None else taken | mask
            continue
        for earlier in keys[:i]:
            shared = mask & masks[earlier]
            if np.count_nonzero(shared) > max_overlap:
                where = _centre(shared)
                raise ClipError(
                    f"outlines {earlier} and {key} overlap by {int(np.count_nonzero(shared))} pixels "
                    f"(around {_where(where)}); more than {max_overlap} shared pixels is a drawing "
                    f"error: move the border of {key} off {earlier}",
                    location=where,
                    neighbour=earlier,
                )
        kept = mask & ~taken
        if not kept.any():
            where = _centre(mask)
            raise ClipError(
                f"{key} lies entirely inside earlier outlines (around {_where(where)}); redraw {key}",
                location=where,
            )
        before, n_before = _pieces(mask)
        pieces, n_after = _pieces(kept)
        if n_after > n_before:
            sizes = np.bincount(pieces.ravel())[1:]
            smallest = pieces == int(np.argmin(sizes)) + 1
            who = [k for k in keys[:i] if np.any(mask & masks[k])]
            where = _centre(smallest)
            raise ClipError(
                f"{key} is cut into {n_after} pieces by {' and '.join(who)}, which comes first "
                f"(a piece of {int(sizes.min())} pixels around {_where(where)}); "
                f"redraw {key} so that it stays on its side of {who[0]}",
                location=where,
                neighbour=who[0],
            )
        new_holes = _holes(kept) & ~_holes(mask)
        if new_holes.any():
            who = [k for k in keys[:i] if np.any(new_holes & masks[k])] or keys[:i]
            where = _centre(new_holes)
            raise ClipError(
                f"{key} surrounds part of {who[0]}, leaving a hole in {key} around "
                f"{_where(where)}; draw {key} beside {who[0]}, not around it",
                location=where,
                neighbour=who[0],
            )
        out[key] = kept
        taken |= mask
    return out


def swapped_sides(rois):
    """The first muscle whose left outline lies at smaller columns than its
    right one, or None.

    Contract 1 puts the patient's right at column 0, so a left muscle's
    vertices lie, on average, at larger columns than its right partner's;
    outlines the other way round were drawn with left and right swapped, or
    on a flipped image.

    Parameters
    ----------
    rois : dict
        ``{roi_key: (N, 2) [row, col] vertices}``.

    Returns
    -------
    tuple or None
        ``(muscle, left mean column, right mean column)``.

    Examples
    --------
    >>> left = [[0, 30], [0, 40], [10, 35]]
    >>> right = [[0, 5], [0, 15], [10, 10]]
    >>> swapped_sides({"ES_L": left, "ES_R": right}) is None
    True
    >>> swapped_sides({"ES_L": right, "ES_R": left})[0]
    'ES'
    """
    for muscle in schema.MUSCLES:
        left, right = rois.get(f"{muscle}_L"), rois.get(f"{muscle}_R")
        if left is None or right is None:
            continue
        col_l, col_r = float(np.mean(np.asarray(left, float)[:, 1])), float(np.mean(np.asarray(right, float)[:, 1]))
        if col_l <= col_r:
            return muscle, col_l, col_r
    return None
