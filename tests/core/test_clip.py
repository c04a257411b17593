"""Overlap resolution while drawing: exact pixel sets, refusals with locations."""

import numpy as np
import pytest

from napari_pvm.core.clip import ClipError, clip_outline, mask_to_polygon
from napari_pvm.core.measure import outline_masks
from napari_pvm.core.rois import roi_mask

SHAPE = (64, 64)


def _box(r0, c0, r1, c1):
    """Polygon covering pixel centres r0..r1, c0..c1 (inclusive)."""
    return np.array([[r0 - 0.5, c0 - 0.5], [r0 - 0.5, c1 + 0.5], [r1 + 0.5, c1 + 0.5], [r1 + 0.5, c0 - 0.5]])


def test_no_overlap_returns_the_drawn_vertices_unchanged():
    drawn = _box(10, 10, 20, 20)
    res = clip_outline(drawn, {"ES_L": _box(10, 30, 20, 40)}, shape=SHAPE)
    assert not res.changed and res.clipped_by == ()
    np.testing.assert_array_equal(res.vertices, drawn)


def test_clip_keeps_exactly_the_pixels_outside_the_neighbour():
    # an irregular neighbour (a disk) and a drawn outline crossing into it
    rr, cc = np.mgrid[: SHAPE[0], : SHAPE[1]]
    disk = (rr - 30) ** 2 + (cc - 24) ** 2 <= 12**2
    neighbour = mask_to_polygon(disk)
    assert np.array_equal(roi_mask(neighbour, SHAPE), disk)
    drawn = np.array([[18.3, 30.2], [20.1, 50.7], [44.6, 49.9], [41.2, 31.4]])
    expected = roi_mask(drawn, SHAPE) & ~disk
    res = clip_outline(drawn, {"MF_L": neighbour}, shape=SHAPE, name="ES_L")
    assert res.clipped_by == ("MF_L",)
    assert res.removed_pixels == int(np.count_nonzero(roi_mask(drawn, SHAPE) & disk)) > 0
    assert np.array_equal(roi_mask(res.vertices, SHAPE), expected)
    # measurement accepts the pair: no pixel in both
    masks = outline_masks({"ES_L": res.vertices, "MF_L": neighbour}, SHAPE)
    assert not np.any(masks["ES_L"] & masks["MF_L"])


def test_clip_against_two_neighbours_and_few_vertices():
    drawn = _box(10, 10, 40, 40)
    res = clip_outline(drawn, {"A": _box(5, 5, 40, 15), "B": _box(5, 35, 40, 50)}, shape=SHAPE)
    assert res.clipped_by == ("A", "B")
    assert np.array_equal(roi_mask(res.vertices, SHAPE), roi_mask(_box(10, 16, 40, 34), SHAPE))
    assert len(res.vertices) == 4  # a rectangle stays a rectangle, not a staircase


def test_split_is_refused_at_the_cut_off_piece():
    # a thin neighbour crossing the whole drawn outline would cut it in two
    drawn = _box(10, 10, 30, 40)
    wall = _box(5, 34, 35, 35)
    with pytest.raises(ClipError, match="cut it into 2 pieces") as info:
        clip_outline(drawn, {"MF_R": wall}, shape=SHAPE, name="ES_R")
    r, c = info.value.location
    assert 10 <= r <= 30 and 36 <= c <= 40  # the small piece right of the wall
    assert info.value.neighbour == "MF_R"
    assert "ES_R crosses MF_R" in str(info.value)


def test_hole_is_refused_where_the_neighbour_lies():
    drawn = _box(10, 10, 40, 40)
    inside = _box(20, 20, 25, 25)
    with pytest.raises(ClipError, match="hole") as info:
        clip_outline(drawn, {"MF_L": inside}, shape=SHAPE, name="ES_L")
    r, c = info.value.location
    assert 20 <= r <= 25 and 20 <= c <= 25


def test_outline_inside_neighbour_is_refused():
    with pytest.raises(ClipError, match="entirely inside PS_L"):
        clip_outline(_box(20, 20, 22, 22), {"PS_L": _box(10, 10, 40, 40)}, shape=SHAPE, name="PS_R")


def test_mask_to_polygon_is_exact_on_random_blobs():
    from scipy import ndimage

    rng = np.random.default_rng(7)  # seeded: the same blobs every run
    for _ in range(10):
        noise = ndimage.gaussian_filter(rng.normal(size=SHAPE), 4)
        blob = noise > 0.02
        labels, n = ndimage.label(blob)
        if n == 0:
            continue
        sizes = ndimage.sum_labels(blob, labels, np.arange(1, n + 1))
        region = ndimage.binary_fill_holes(labels == np.argmax(sizes) + 1)
        region = ndimage.binary_opening(region)  # no one-pixel diagonal bridges
        labels, n = ndimage.label(region)
        region = labels == 1
        if ndimage.binary_fill_holes(region).sum() != region.sum():
            continue
        poly = mask_to_polygon(region)
        assert np.array_equal(roi_mask(poly, SHAPE), region)


@pytest.mark.real
def test_real_shared_borders_traced_twice_are_resolved(real_data):
    """MuscleMap slice 16: each muscle traced one pixel outside its border (as
    a careful observer's line lands on the shared border) overlaps its
    neighbour; clipping each new outline to the ones drawn before removes the
    overlap exactly and measurement accepts the set."""
    from scipy import ndimage

    from napari_pvm.core.io import read_volume

    folder = real_data / "musclemap_lumbar_axial"
    labels = read_volume(folder / "image_dseg_musclemap_pred.nii.gz").slice(16).round().astype(int)
    values = {"MF_R": 1, "MF_L": 2, "ES_R": 3, "ES_L": 4, "PS_R": 5, "PS_L": 6}
    shape = labels.shape
    drawn = {}
    shared_before = 0
    for key in ("ES_L", "ES_R", "MF_L", "MF_R", "PS_L", "PS_R"):  # an observer's drawing order
        region = ndimage.binary_fill_holes(labels == values[key])
        pieces, n = ndimage.label(region)
        region = pieces == (np.argmax(ndimage.sum_labels(region, pieces, range(1, n + 1))) + 1)
        traced = ndimage.binary_dilation(region)  # the line one pixel outside the border
        polygon = mask_to_polygon(traced)
        shared_before += sum(
            int(np.count_nonzero(roi_mask(polygon, shape) & roi_mask(v, shape))) for v in drawn.values()
        )
        res = clip_outline(polygon, drawn, shape=shape, name=key)
        expected = traced.copy()
        for v in drawn.values():
            expected &= ~roi_mask(v, shape)
        assert np.array_equal(roi_mask(res.vertices, shape), expected), key
        drawn[key] = res.vertices
    assert shared_before > 20  # without clipping, measurement would refuse these outlines
    masks = outline_masks(drawn, shape)
    keys = list(masks)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            assert not np.any(masks[a] & masks[b])
