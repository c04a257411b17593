"""Muscle outlines: validation and rasterisation (contract 1).

Vertices are ``[row, col]`` floats in the slice array; integer coordinates
are pixel centres. A pixel belongs to an outline when its centre lies inside
the polygon (``skimage.draw.polygon2mask``); polygons close implicitly.
"""

import numpy as np

from . import schema
from .errors import AnnotationError

__all__ = [
    "MAX_OVERLAP_PIXELS",
    "check_no_overlap",
    "polygon_area_px",
    "roi_mask",
    "validate_polygon",
]

#: Pixels two outlines may share (a shared boundary drawn twice); more is refused.
MAX_OVERLAP_PIXELS = 5


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
    >>> roi_mask([[0.5, 0.5], [0.5, 3.5], [3.5, 3.5], [3.5, 0.5]], (5, 5)).sum()
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
