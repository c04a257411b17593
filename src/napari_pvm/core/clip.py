"""Resolve overlapping outlines while the observer draws (contract 1).

Two muscles that touch share a border; an outline traced along it by hand
crosses into the neighbour by a few pixels. Instead of refusing the
measurement later, the Measure dock clips the new or edited outline to its
neighbours at once: the clipped outline holds exactly the pixels (contract 1
pixel-centre rule) of the drawn outline that lie in no neighbour, so no pixel
is ever counted twice. A clip that would cut the outline in pieces or leave a
hole in it (a neighbour lying inside it) is refused with the place where it
happens, because either result means the observer drew something else than
one muscle beside another.
"""

import dataclasses

import numpy as np

from .errors import AnnotationError
from .rois import roi_mask

__all__ = ["ClipError", "ClipResult", "clip_outline", "mask_to_polygon"]

#: Simplification tolerances (pixels) tried in turn when turning a clipped
#: mask back into a polygon; the first whose rasterisation equals the mask wins.
_TOLERANCES = (0.75, 0.6, 0.45, 0.3, 0.15)


class ClipError(AnnotationError):
    """A clip that would split an outline or leave a hole in it.

    Attributes
    ----------
    location : tuple of float
        ``(row, col)`` of the problem in the slice, for a marker on the canvas.
    neighbour : str or None
        The outline that caused it.
    """

    def __init__(self, message, *, location, neighbour=None):
        super().__init__(message)
        self.location = (float(location[0]), float(location[1]))
        self.neighbour = neighbour


@dataclasses.dataclass(frozen=True)
class ClipResult:
    """An outline after clipping.

    Attributes
    ----------
    vertices : ndarray of shape (N, 2)
        ``[row, col]`` vertices; the input vertices when nothing was clipped.
    removed_pixels : int
        Pixels of the drawn outline that belonged to neighbours.
    clipped_by : tuple of str
        Names of the neighbours it was clipped against, in the given order.
    """

    vertices: np.ndarray
    removed_pixels: int
    clipped_by: tuple

    @property
    def changed(self):
        return self.removed_pixels > 0


def clip_outline(vertices, neighbours, *, shape, name="outline"):
    """Clip an outline so that it shares no pixel with its neighbours.

    Parameters
    ----------
    vertices : array_like of shape (N, 2)
        ``[row, col]`` vertices of the new or edited outline.
    neighbours : dict
        ``{name: (M, 2) vertices}`` of the outlines it must not overlap.
    shape : tuple of 2 ints
        Shape of the slice.
    name : str
        Name of the outline, for messages.

    Returns
    -------
    ClipResult
        The clipped outline covers exactly the outline's pixels that lie in
        no neighbour (``roi_mask(result.vertices) == mask & ~neighbours``).

    Raises
    ------
    ClipError
        The outline lies entirely inside a neighbour, the clip would cut it
        in two or more pieces, or a neighbour lies inside it (a hole); the
        error carries the ``location`` to show on the canvas.

    Examples
    --------
    >>> left = [[-0.5, -0.5], [-0.5, 9.5], [9.5, 9.5], [9.5, -0.5]]
    >>> right = [[-0.5, 7.5], [-0.5, 14.5], [9.5, 14.5], [9.5, 7.5]]
    >>> res = clip_outline(right, {"left": left}, shape=(20, 20))
    >>> res.removed_pixels, res.clipped_by
    (20, ('left',))
    >>> int(roi_mask(res.vertices, (20, 20)).sum()), int(roi_mask(res.vertices, (20, 20))[:, :10].sum())
    (50, 0)
    """
    from scipy import ndimage

    v = np.asarray(vertices, dtype=float)
    shape = tuple(int(s) for s in shape)
    mask = roi_mask(v, shape)
    others = {}
    for other, verts in neighbours.items():
        m = roi_mask(np.asarray(verts, dtype=float), shape)
        if np.any(m & mask):
            others[other] = m
    if not others:
        return ClipResult(vertices=v, removed_pixels=0, clipped_by=())
    union = np.logical_or.reduce(list(others.values()))
    clipped = mask & ~union
    removed = int(np.count_nonzero(mask & union))
    by = tuple(others)

    def culprit(region):
        """The neighbour touching ``region`` the most (for the message)."""
        grown = ndimage.binary_dilation(region, iterations=2)
        return max(by, key=lambda k: int(np.count_nonzero(grown & others[k])))

    if not clipped.any():
        r, c = ndimage.center_of_mass(mask)
        raise ClipError(
            f"{name} lies entirely inside {' and '.join(by)} (near row {r:.0f}, column {c:.0f}); "
            f"draw {name} beside it, or choose {by[0]} to redraw that outline",
            location=(r, c),
            neighbour=by[0],
        )
    pieces, n = ndimage.label(clipped)  # 4-connected, as the traced polygon is
    if n > 1:
        sizes = ndimage.sum_labels(clipped, pieces, index=np.arange(1, n + 1))
        order = np.argsort(sizes)[::-1]
        small = pieces == order[1] + 1
        r, c = ndimage.center_of_mass(small)
        who = culprit(small)
        raise ClipError(
            f"{name} crosses {who}: clipping it to {who}'s border would cut it into {n} pieces "
            f"(a piece of {int(sizes[order[1]])} pixels near row {r:.0f}, column {c:.0f}); "
            f"undo (Ctrl-Z) and redraw {name} so that it stays on its side of {who}",
            location=(r, c),
            neighbour=who,
        )
    background, _ = ndimage.label(np.pad(~clipped, 1, constant_values=True), structure=np.ones((3, 3), bool))
    outside = background[0, 0]
    holes = (background != outside) & (background > 0)
    holes = holes[1:-1, 1:-1]
    if holes.any():
        parts, m = ndimage.label(holes, structure=np.ones((3, 3), bool))
        sizes = ndimage.sum_labels(holes, parts, index=np.arange(1, m + 1))
        biggest = parts == int(np.argmax(sizes)) + 1
        r, c = ndimage.center_of_mass(biggest)
        who = culprit(biggest)
        raise ClipError(
            f"{name} surrounds {who}: clipping it would leave a hole in {name} near row {r:.0f}, "
            f"column {c:.0f}; undo (Ctrl-Z) and draw {name} beside {who}, not around it",
            location=(r, c),
            neighbour=who,
        )
    return ClipResult(vertices=mask_to_polygon(clipped), removed_pixels=removed, clipped_by=by)


def mask_to_polygon(mask):
    """A polygon whose pixel-centre rasterisation is exactly ``mask``.

    ``mask`` must be one 4-connected region without holes. The polygon is the
    region's boundary traced half-way between pixel centres, simplified as
    far as the rasterisation stays the same.

    Examples
    --------
    >>> m = np.zeros((6, 6), bool); m[1:4, 2:5] = True
    >>> poly = mask_to_polygon(m)
    >>> bool((roi_mask(poly, m.shape) == m).all()), len(poly)
    (True, 4)
    """
    from skimage.measure import approximate_polygon, find_contours

    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask, 1).astype(float)
    contours = find_contours(padded, 0.5, fully_connected="low")
    if not contours:
        raise AnnotationError("the outline contains no pixel centre")
    contour = max(contours, key=len) - 1.0
    for tolerance in _TOLERANCES:
        simple = approximate_polygon(contour, tolerance)[:-1]
        if len(simple) >= 3 and np.array_equal(roi_mask(simple, mask.shape), mask):
            return simple
    return contour[:-1]
