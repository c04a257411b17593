"""Correct an outline with one stroke (the Measure dock's Reshape tool).

Moving vertices one at a time is slow when a proposed outline is wrong over a
stretch of its border. A stroke drawn from the outline's border, along where
the border should be, back to the border replaces the stretch of border
between its two ends. Of the two ways to close the stroke with the rest of
the border, the one that changes fewer pixels is kept, so a stroke outside
the outline adds the region between them and a stroke across it cuts off the
smaller part; the observer can ask for the other way round
(``other_side=True``), for a cut that keeps the smaller part.

A stroke that starts or ends a little past the border (an overshoot of up to
``reach_mm``) is trimmed at the border. All distances are in millimetres
(``spacing``), so the tool behaves the same on every scanner.

On a border two outlines share, the stroke is the new border of both
(:func:`reshape_neighbours`): the neighbour yields what the stroke takes,
and takes what the stroke cuts off along their shared border.
"""

import dataclasses
import itertools

import numpy as np

from .errors import AnnotationError
from .rois import roi_mask, validate_polygon

__all__ = ["REACH_MM", "ReshapeError", "ReshapeResult", "reshape_neighbours", "reshape_outline", "reshape_target"]

#: How far (mm) a stroke's ends may lie from the border they attach to:
#: about the width of a drawn line at the zoom observers outline at.
REACH_MM = 4.0
#: A piece cut off an outline goes to a neighbour when neighbours border at
#: least this share of the piece's outer edge (the one bordering most takes it);
#: otherwise it lies mostly beside fat or bone and belongs to no outline.
SHARED_BORDER = 0.5


class ReshapeError(AnnotationError):
    """A stroke that cannot reshape an outline; ``location`` is ``(row, col)``
    of the problem in the slice (for a marker on the canvas), or None."""

    def __init__(self, message, *, location=None):
        super().__init__(message)
        self.location = None if location is None else (float(location[0]), float(location[1]))


@dataclasses.dataclass(frozen=True)
class ReshapeResult:
    """An outline after a reshape stroke.

    Attributes
    ----------
    vertices : ndarray of shape (N, 2)
        ``[row, col]`` vertices of the reshaped outline.
    added_pixels, removed_pixels : int
        Pixels (contract 1 pixel-centre rule) the stroke added and removed.
    """

    vertices: np.ndarray
    added_pixels: int
    removed_pixels: int

    @property
    def changed(self):
        return self.added_pixels + self.removed_pixels > 0


def _stroke_array(stroke, shape):
    try:
        s = np.asarray(stroke, dtype=float)
    except (TypeError, ValueError):
        raise ReshapeError("the stroke must be a list of [row, col] points") from None
    if s.ndim != 2 or s.shape[1] != 2 or not np.all(np.isfinite(s)):
        raise ReshapeError("the stroke must be finite [row, col] points")
    # a stroke dragged past the image edge follows the edge
    s = np.clip(s, -0.5, np.asarray(shape, dtype=float) - 0.5)
    keep = np.ones(len(s), bool)
    keep[1:] = np.any(np.abs(np.diff(s, axis=0)) > 1e-9, axis=1)
    s = s[keep]
    if len(s) < 2:
        raise ReshapeError("the stroke is a single point: drag from the border along the new border")
    return s


def _crossings(s, v):
    """Where the stroke polyline ``s`` crosses the closed polygon ``v``:
    array of (stroke position i + t, polygon position j + u), by stroke position."""
    a, r = s[:-1, None, :], (s[1:] - s[:-1])[:, None, :]
    b = v[None, :, :]
    q = (np.roll(v, -1, axis=0) - v)[None, :, :]
    denom = r[..., 0] * q[..., 1] - r[..., 1] * q[..., 0]
    ba = b - a
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (ba[..., 0] * q[..., 1] - ba[..., 1] * q[..., 0]) / denom
        u = (ba[..., 0] * r[..., 1] - ba[..., 1] * r[..., 0]) / denom
    hit = (np.abs(denom) > 1e-12) & (t >= 0) & (t <= 1) & (u >= 0) & (u < 1)
    i, j = np.nonzero(hit)
    out = np.column_stack([i + t[i, j], j + u[i, j]])
    return out[np.argsort(out[:, 0], kind="stable")] if len(out) else out.reshape(0, 2)


def _nearest_on_border(v, p):
    """(distance, polygon position j + u) of the border point nearest to ``p``."""
    a = v
    d = np.roll(v, -1, axis=0) - v
    length2 = np.maximum((d**2).sum(axis=1), 1e-12)
    u = np.clip(((p - a) * d).sum(axis=1) / length2, 0.0, 1.0)
    dist = np.hypot(*(a + u[:, None] * d - p).T)
    j = int(np.argmin(dist))
    return float(dist[j]), j + float(u[j]) if u[j] < 1 else float((j + 1) % len(v))


def _point_at(path, position):
    """Point of a polyline (or closed polygon) at position i + t."""
    i = int(np.floor(position))
    t = position - i
    n = len(path)
    return (1 - t) * path[i % n] + t * path[(i + 1) % n]


def _border_between(n, start, stop, forward):
    """Vertex indices strictly between border positions ``start`` and ``stop``,
    walking forwards or backwards round a polygon of ``n`` vertices."""
    k = np.arange(n, dtype=float)
    if forward:
        ahead, span = (k - start) % n, (stop - start) % n
    else:
        ahead, span = (start - k) % n, (start - stop) % n
    inside = (ahead > 1e-9) & (ahead < span - 1e-9)
    return np.nonzero(inside)[0][np.argsort(ahead[inside], kind="stable")]


def _end_options(s_mm, v_mm, reach_mm, name):
    """Where the stroke may attach to the border at each end, in order of preference.

    Returns ``[start options, end options]``, each a list of ``(stroke
    position, border position)``; a stroke position of None means the
    stroke's own end, projected onto the border. First the overshoot
    reading: the crossing farthest from the end within ``reach_mm`` (and
    within the stroke's nearer half) is where the stroke meets the border,
    what lies beyond it is trimmed; without such a crossing, the end's
    projection when it is within ``reach_mm``. Then, for a stroke whose
    outline would cross itself that way, the crossing nearest to the end and
    the end's projection.
    """
    length = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(s_mm, axis=0).T))])
    cross = _crossings(s_mm, v_mm)
    along = np.interp(cross[:, 0], np.arange(len(s_mm)), length) if len(cross) else np.empty(0)
    options = []
    for which in ("starts", "ends"):
        point = s_mm[0] if which == "starts" else s_mm[-1]
        dist, pos = _nearest_on_border(v_mm, point)
        from_end = along if which == "starts" else length[-1] - along
        by_distance = np.argsort(from_end, kind="stable")  # nearest to this end first
        in_half = [k for k in by_distance if from_end[k] <= min(reach_mm, 0.5 * length[-1])]
        in_reach = [k for k in by_distance if from_end[k] <= reach_mm]
        mine = [(float(cross[k, 0]), float(cross[k, 1])) for k in in_half[-1:] + in_reach[:1]]
        if dist <= reach_mm:
            mine.insert(1 if in_half else 0, (None, pos))
        mine = list(dict.fromkeys(mine))
        if not mine:
            raise ReshapeError(
                f"the stroke {which} {dist:.1f} mm from {name}'s border; start and end it on the border "
                f"(within {reach_mm:g} mm)"
            )
        options.append(mine)
    return options


def reshape_outline(
    vertices, stroke, *, shape, spacing=(1.0, 1.0), reach_mm=REACH_MM, other_side=False, name="outline"
):
    """Replace the stretch of an outline's border between a stroke's ends by the stroke.

    Parameters
    ----------
    vertices : array_like of shape (N, 2)
        The outline's ``[row, col]`` vertices (contract 1).
    stroke : array_like of shape (M, 2)
        ``[row, col]`` points of the stroke, in drawing order, from the border
        along the new border back to the border.
    shape : tuple of 2 ints
        Shape of the slice.
    spacing : tuple of 2 floats
        Pixel spacing (row, col) in mm.
    reach_mm : float
        How far the stroke's ends may lie from the border.
    other_side : bool
        Keep the other way round, the one that changes more pixels: a cut
        that keeps the smaller part (a proposal twice the muscle's size is
        trimmed to the muscle), or the region between the stroke and the
        border alone.
    name : str
        The outline's name in messages.

    Returns
    -------
    ReshapeResult

    Raises
    ------
    ReshapeError
        A stroke that does not start and end on the border (within
        ``reach_mm``), ends where it started, or crosses the border between
        its ends so that the outline would cross itself either way round;
        bad ``shape``, ``spacing`` or ``reach_mm``.

    Examples
    --------
    A square pushed out on its right side by a stroke from its top-right to
    its bottom-right corner:

    >>> square = [[10, 10], [10, 20], [20, 20], [20, 10]]
    >>> res = reshape_outline(square, [[10, 20], [15, 26], [20, 20]], shape=(40, 40))
    >>> res.added_pixels > 0, res.removed_pixels
    (True, 0)
    """
    shape = _shape_pair(shape)
    sp = _spacing_pair(spacing)
    try:
        reach_mm = float(reach_mm)
    except (TypeError, ValueError):
        reach_mm = np.nan
    if not (np.isfinite(reach_mm) and reach_mm >= 0):
        raise ReshapeError(f"reach_mm must be a finite distance in mm, got {reach_mm!r}")
    v = validate_polygon(vertices, shape, name=name)
    s = _stroke_array(stroke, shape)
    starts, stops = _end_options(s * sp, v * sp, reach_mm, name)
    before = roi_mask(v, shape)
    refusal = None
    # the most likely reading of the stroke's ends first; a reading whose
    # outline would cross itself either way round gives way to the next
    for (sa, ba), (sb, bb) in itertools.product(starts, stops):
        if (len(s) - 1 if sb is None else sb) - (0 if sa is None else sa) < 1e-9:
            refusal = refusal or ReshapeError(
                "the stroke only touches the border: drag from the border along the new border back to it"
            )
            continue
        apart = abs(ba - bb) % len(v)
        if min(apart, len(v) - apart) < 1e-9:
            refusal = refusal or ReshapeError(
                f"the stroke starts and ends at the same place on {name}'s border; "
                "end it where the new border meets the old one"
            )
            continue
        lo = 0 if sa is None else int(np.floor(sa)) + 1
        hi = len(s) if sb is None else int(np.floor(sb)) + 1
        # where the stroke attaches: its crossing with the border, or its end's nearest border point
        a = _point_at(s, sa) if sa is not None else _point_at(v, ba)
        b = _point_at(s, sb) if sb is not None else _point_at(v, bb)
        path = np.vstack([[a], s[lo:hi], [b]])
        candidates, problem = _closings(path, v, ba, bb, shape, before, name)
        if candidates:
            break
        refusal = refusal or _crossing_refusal(path, v, a, b, name, problem)
    else:
        raise refusal
    candidates.sort(key=lambda c: c[0])
    if other_side:
        if len(candidates) < 2:
            raise ReshapeError(
                f"the other way round, {name}'s outline would cross itself; undo (Ctrl-Z) and draw the stroke again"
            ) from problem
        candidates = candidates[::-1]
    _, ring, after = candidates[0]
    if not after.any():
        raise ReshapeError(f"the stroke would leave {name} without a pixel; draw it again")
    return ReshapeResult(
        vertices=ring,
        added_pixels=int(np.count_nonzero(after & ~before)),
        removed_pixels=int(np.count_nonzero(before & ~after)),
    )


def _closings(path, v, ba, bb, shape, before, name):
    """The two ways to close ``path`` (from border position ``ba`` to ``bb``)
    with the rest of the border: ``[(pixels changed, ring, mask)]`` of those
    that give a valid outline, and the refusal of the last that does not."""
    candidates, problem = [], None
    for forward in (True, False):
        ring = np.vstack([path, v[_border_between(len(v), bb, ba, forward)]])
        try:
            ring = validate_polygon(ring, shape, name=name)
            after = roi_mask(ring, shape)
            ring = _traced_if_overlapping(ring, after)
        except AnnotationError as exc:
            problem = exc
            continue
        candidates.append((int(np.count_nonzero(after != before)), ring, after))
    return candidates, problem


def _crossing_refusal(path, v, a, b, name, problem):
    points = [_point_at(v, pos) for _, pos in _crossings(path, v)]
    away = [p for p in points if min(np.hypot(*(p - a)), np.hypot(*(p - b))) > 1e-6]
    refusal = ReshapeError(
        f"the stroke crosses {name}'s border between its ends; draw it from the border to the border "
        "without crossing it in between (or in two strokes)",
        location=away[0] if away else None,
    )
    refusal.__cause__ = problem
    return refusal


def _traced_if_overlapping(ring, after):
    """The ring, or, when two of its edges lie on each other (a stroke laid
    along the border, or drawn back over it) and its pixels ``after`` are one
    piece without holes, the outline traced round those pixels: such a
    ring's area by vertices is not its pixels' area. (validate_polygon finds
    crossings only.)"""
    from scipy import ndimage

    from .clip import mask_to_polygon

    if not _edges_overlap(ring):
        return ring
    _, pieces = ndimage.label(after)
    if pieces != 1 or not np.array_equal(ndimage.binary_fill_holes(after), after):
        return ring  # its pixels are what is measured (contract 1), whatever its vertices' area
    return mask_to_polygon(after)


def _edges_overlap(ring):
    """Whether two edges of a closed ring overlap along a stretch: edges are
    grouped by the line they lie on (direction and offset), and within a
    line their extents are compared; O(N log N), for strokes of any length."""
    d = np.roll(ring, -1, axis=0) - ring
    length = np.hypot(d[:, 0], d[:, 1])
    keep = length > 1e-12
    start, d, length = ring[keep], d[keep], length[keep]
    u = d / length[:, None]
    u[(u[:, 0] < 0) | ((u[:, 0] == 0) & (u[:, 1] < 0))] *= -1  # one direction per line
    offset = start[:, 0] * u[:, 1] - start[:, 1] * u[:, 0]
    t0, t1 = (start * u).sum(axis=1), ((start + d) * u).sum(axis=1)
    lo, hi = np.minimum(t0, t1), np.maximum(t0, t1)
    lines = {}
    for i, key in enumerate(map(tuple, np.round(np.column_stack([u, offset]), 6))):
        lines.setdefault(key, []).append(i)
    for edges in lines.values():
        reach = -np.inf
        for i in sorted(edges, key=lambda i: lo[i]):
            if lo[i] < reach - 1e-9:  # starts before the previous edge on this line ends
                return True
            reach = max(reach, hi[i])
    return False


def _shape_pair(shape):
    try:
        rows, cols = (int(n) for n in shape)
    except (TypeError, ValueError):
        raise ReshapeError(f"shape must be the slice's (rows, columns), got {shape!r}") from None
    return rows, cols


def _spacing_pair(spacing):
    try:
        sp = np.asarray(spacing, dtype=float)
    except (TypeError, ValueError):
        sp = np.empty(0)
    if sp.shape != (2,) or not np.all(np.isfinite(sp) & (sp > 0)):
        raise ReshapeError(f"spacing must be two positive numbers in mm, got {spacing!r}")
    return sp


def reshape_target(outlines, stroke, *, spacing=(1.0, 1.0), prefer=None, reach_mm=REACH_MM, shape=None):
    """The outline a stroke reshapes: one whose border both ends reach.

    ``outlines`` is ``{key: vertices}``; ``prefer`` (the outline chosen in
    the draw list) wins when both ends reach it, else the outline whose
    border is nearest to the farther end. With ``shape``, stroke points past
    the image edge follow the edge, as in :func:`reshape_outline`. Raises
    :class:`ReshapeError` when no outline is within ``reach_mm`` of both ends.
    """
    sp = _spacing_pair(spacing)
    s = _stroke_array(stroke, (np.inf, np.inf) if shape is None else _shape_pair(shape))
    reach = {}
    for key, vertices in outlines.items():
        v = np.asarray(vertices, dtype=float)
        if v.ndim != 2 or v.shape[1:] != (2,) or len(v) < 2:
            continue  # not an outline a stroke can follow
        v = v * sp
        far = max(_nearest_on_border(v, s[0] * sp)[0], _nearest_on_border(v, s[-1] * sp)[0])
        if far <= reach_mm:
            reach[key] = far
    if not reach:
        raise ReshapeError(
            f"the stroke does not start and end on an outline's border (within {reach_mm:g} mm); "
            "drag from a border along the new border back to it",
            location=tuple(s[0]),
        )
    if prefer in reach:
        return prefer
    return min(reach, key=lambda k: (reach[k], k))


def reshape_neighbours(name, before, after, neighbours, *, shape):
    """The neighbours of outline ``name`` once a stroke has moved its border.

    The stroke is the new border of both outlines on a shared border: a
    neighbour yields the pixels the stroke gave to ``name`` (the clip of
    :func:`napari_pvm.core.clip.clip_outline`), and each piece the stroke
    cut off ``name`` whose outer edge borders outlines for at least
    :data:`SHARED_BORDER` of its length goes to the neighbour that borders
    most of it; a piece bordered mostly by fat or bone belongs to no outline.

    Parameters
    ----------
    name : str
        The reshaped outline.
    before, after : array_like of shape (N, 2)
        Its ``[row, col]`` vertices before and after the stroke.
    neighbours : dict
        ``{key: vertices}`` of the other outlines.
    shape : tuple of 2 ints
        Shape of the slice.

    Returns
    -------
    dict
        ``{key: vertices}`` of the neighbours that changed.

    Raises
    ------
    napari_pvm.core.clip.ClipError
        A neighbour would be cut into pieces or left with a hole.

    Examples
    --------
    Two squares side by side; a stroke moves the left one's right border two
    columns to the left, and the right square takes the strip:

    >>> left = [[-0.5, -0.5], [-0.5, 9.5], [9.5, 9.5], [9.5, -0.5]]
    >>> right = [[-0.5, 9.5], [-0.5, 19.5], [9.5, 19.5], [9.5, 9.5]]
    >>> moved = reshape_outline(left, [[-0.5, 7.5], [9.5, 7.5]], shape=(12, 24)).vertices
    >>> grown = reshape_neighbours("left", left, moved, {"right": right}, shape=(12, 24))
    >>> int(roi_mask(grown["right"], (12, 24)).sum())
    120
    """
    from scipy import ndimage

    from .clip import clip_outline, mask_to_polygon

    changed = {}
    masks = {}
    # only an outline within a pixel of the reshaped one, before or after, can be touched
    both = np.vstack([np.asarray(before, dtype=float), np.asarray(after, dtype=float)])
    lo, hi = both.min(axis=0) - 1.5, both.max(axis=0) + 1.5
    for key, vertices in neighbours.items():
        v = np.asarray(vertices, dtype=float)
        if np.any(v.max(axis=0) < lo) or np.any(v.min(axis=0) > hi):
            continue
        clipped = clip_outline(v, {name: after}, shape=shape, name=key)
        if clipped.changed:
            changed[key] = clipped.vertices
        masks[key] = roi_mask(clipped.vertices, shape)
    after_mask = roi_mask(after, shape)
    cut = roi_mask(before, shape) & ~after_mask
    pieces, n = ndimage.label(cut)  # 4-connected, as outlines are
    for i in range(1, n + 1):
        piece = pieces == i
        edge = ndimage.binary_dilation(piece) & ~piece & ~after_mask  # not the stroke's side
        if not edge.any() or not masks:
            continue
        shares = {key: np.count_nonzero(edge & m) for key, m in masks.items()}
        if sum(shares.values()) < SHARED_BORDER * np.count_nonzero(edge):
            continue  # mostly fat or bone around it
        key = max(shares, key=lambda k: (shares[k], k))
        grown = masks[key] | piece
        if not np.array_equal(ndimage.binary_fill_holes(grown), grown):
            continue  # the piece would close a hole in the neighbour: leave it unassigned
        masks[key] = grown
        changed[key] = mask_to_polygon(grown)
    return changed
