"""Reshaping an outline with one stroke (napari_pvm.core.reshape): known
answers on squares and on a phantom muscle, the stroke's ends measured in mm,
and strokes that cannot reshape refused with a reason."""

import numpy as np
import pytest
from scipy import ndimage

from napari_pvm.core.reshape import ReshapeError, reshape_neighbours, reshape_outline, reshape_target
from napari_pvm.core.rois import polygon_area_px, roi_mask

SQUARE = np.array([[10.0, 10.0], [10.0, 20.0], [20.0, 20.0], [20.0, 10.0]])
SHAPE = (40, 40)


def test_a_stroke_outside_adds_the_region_between_it_and_the_border():
    bump = [[10, 20], [15, 26], [20, 20]]
    res = reshape_outline(SQUARE, bump, shape=SHAPE)
    assert polygon_area_px(res.vertices) == pytest.approx(100 + 0.5 * 10 * 6)
    triangle = roi_mask(bump, SHAPE) & ~roi_mask(SQUARE, SHAPE)
    assert res.added_pixels == triangle.sum() > 0 and res.removed_pixels == 0
    np.testing.assert_array_equal(roi_mask(res.vertices, SHAPE), roi_mask(SQUARE, SHAPE) | triangle)


def test_a_stroke_across_cuts_off_the_smaller_part():
    res = reshape_outline(SQUARE, [[10, 12.5], [20, 12.5]], shape=SHAPE)
    cols = np.arange(SHAPE[1])[None, :] * np.ones(SHAPE)
    np.testing.assert_array_equal(roi_mask(res.vertices, SHAPE), roi_mask(SQUARE, SHAPE) & (cols > 12.5))
    assert res.removed_pixels == 3 * 11 and res.added_pixels == 0


def test_the_other_side_keeps_the_smaller_part():
    res = reshape_outline(SQUARE, [[10, 12.5], [20, 12.5]], shape=SHAPE, other_side=True)
    cols = np.arange(SHAPE[1])[None, :] * np.ones(SHAPE)
    np.testing.assert_array_equal(roi_mask(res.vertices, SHAPE), roi_mask(SQUARE, SHAPE) & (cols < 12.5))
    assert res.removed_pixels == 8 * 11 and res.added_pixels == 0


def test_overshoot_direction_and_winding_do_not_matter():
    want = roi_mask(reshape_outline(SQUARE, [[10, 12.5], [20, 12.5]], shape=SHAPE).vertices, SHAPE)
    for outline in (SQUARE, SQUARE[::-1]):
        for stroke in ([[7, 12.5], [23, 12.5]], [[23, 12.5], [15, 12.5], [7, 12.5]]):
            got = reshape_outline(outline, stroke, shape=SHAPE).vertices
            np.testing.assert_array_equal(roi_mask(got, SHAPE), want)


def test_the_stroke_ends_are_measured_in_mm():
    stroke = [[12, 23], [15, 26], [18, 23]]  # both ends 3 pixels right of the border
    assert reshape_outline(SQUARE, stroke, shape=SHAPE, spacing=(1.0, 1.0)).added_pixels > 0
    with pytest.raises(ReshapeError, match=r"starts 6\.0 mm from ES_L's border"):
        reshape_outline(SQUARE, stroke, shape=SHAPE, spacing=(1.0, 2.0), name="ES_L")


def test_a_stroke_along_the_true_border_removes_a_proposals_bulge():
    from napari_pvm.core.clip import mask_to_polygon
    from napari_pvm.core.phantom import make_phantom

    ph = make_phantom(seed=3, n_slices=1, spacing=0.9)
    truth = ph.masks["MF_L"]
    shape = truth.shape
    # the proposal leaks up to 9 px across the lateral border over a stretch of the muscle
    rows, cols = np.nonzero(truth)
    centre = (rows.mean(), cols.max() if cols.mean() > shape[1] / 2 else cols.min())
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    disk = (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= 9**2
    proposal = ndimage.binary_fill_holes(truth | disk)
    wrong = mask_to_polygon(proposal)
    # the observer traces the true border where the bulge is, from border to border
    border = mask_to_polygon(truth)
    near = np.hypot(border[:, 0] - centre[0], border[:, 1] - centre[1]) <= 12
    n = len(border)
    first = next(i for i in range(n) if near[i] and not near[i - 1])  # the run of border near the bulge
    stroke = border[[(first + k) % n for k in range(int(near.sum()))]]
    res = reshape_outline(wrong, stroke, shape=shape, spacing=ph.spacing[1:])
    got = roi_mask(res.vertices, shape)
    dice_before = 2 * (proposal & truth).sum() / (proposal.sum() + truth.sum())
    dice_after = 2 * (got & truth).sum() / (got.sum() + truth.sum())
    assert dice_before < 0.95 and dice_after > 0.99, (dice_before, dice_after)
    assert res.removed_pixels > 0.9 * (proposal & ~truth).sum()


def test_uneven_overshoots_across_a_thin_strip_give_the_same_cut():
    strip = [[9.5, 9.5], [9.5, 30.5], [12.5, 30.5], [12.5, 9.5]]  # rows 10-12, columns 10-30
    want = roi_mask(strip, SHAPE) & (np.arange(SHAPE[1]) > 15.5)[None, :]  # columns 10-15 cut off
    for down in ([[8.5, 15.5], [13.5, 15.5]], [[6, 15.5], [13, 15.5]], [[9, 15.5], [16, 15.5]]):
        for stroke in (down, down[::-1]):
            got = reshape_outline(strip, stroke, shape=SHAPE)
            np.testing.assert_array_equal(roi_mask(got.vertices, SHAPE), want)
            assert got.removed_pixels == 3 * 6


@pytest.mark.parametrize(
    "stroke",
    [
        [[10, 15], [5, 12], [5, 18], [10, 15]],  # a loop from one border point back to it
        [[8, 22], [4, 26], [6, 30], [9, 23]],  # both ends nearest to the same corner
    ],
)
def test_a_stroke_ending_where_it_started_is_refused(stroke):
    with pytest.raises(ReshapeError, match="starts and ends at the same place"):
        reshape_outline(SQUARE, stroke, shape=SHAPE)


def test_a_stroke_running_back_over_the_border_gives_a_simple_outline():
    """Along the top border, out and back onto it short of where it left: the
    closed ring would run over itself (its area by vertices 95, its pixels
    128), so the outline is traced round its pixels instead."""
    res = reshape_outline(SQUARE, [[10, 12], [10, 18], [5, 18], [10, 16]], shape=SHAPE)
    want = roi_mask([[10, 10], [10, 16], [5, 18], [10, 18], [10, 20], [20, 20], [20, 10]], SHAPE)
    got = roi_mask(res.vertices, SHAPE)
    np.testing.assert_array_equal(got, want)
    assert res.added_pixels == 7 and res.removed_pixels == 0
    assert abs(polygon_area_px(res.vertices) - got.sum()) < 0.05 * got.sum()


def test_bad_arguments_are_refused_with_a_reason():
    stroke = [[10, 12.5], [20, 12.5]]
    with pytest.raises(ReshapeError, match="spacing"):
        reshape_outline(SQUARE, stroke, shape=SHAPE, spacing=(np.inf, 1.0))
    with pytest.raises(ReshapeError, match="reach_mm"):
        reshape_outline(SQUARE, stroke, shape=SHAPE, reach_mm=np.nan)
    with pytest.raises(ReshapeError, match="spacing"):
        reshape_target({"ES_L": SQUARE}, stroke, spacing=(1, 1, 1))
    with pytest.raises(ReshapeError, match="points"):
        reshape_target({"ES_L": SQUARE}, [[10, 20], [15]])
    # a float shape is a shape; an empty outline is no target
    assert reshape_outline(SQUARE, stroke, shape=(40.0, 40.0)).removed_pixels == 33
    assert reshape_target({"PS_L": np.zeros((0, 2)), "ES_L": SQUARE}, stroke) == "ES_L"


def test_the_target_and_the_reshape_agree_at_the_image_edge():
    edge = [[-0.5, -0.5], [-0.5, 10], [10, 10], [10, -0.5]]  # an outline on the image's top edge
    stroke = [[-20, 5], [5, 15], [10, 5]]  # dragged past the top: it follows the edge
    assert reshape_target({"ES_L": edge}, stroke, shape=SHAPE) == "ES_L"
    assert reshape_outline(edge, stroke, shape=SHAPE).added_pixels > 0


LEFT = np.array([[9.5, 9.5], [9.5, 19.5], [20.5, 19.5], [20.5, 9.5]])  # columns 10-19, rows 10-20


def _neighbours_after(stroke, right, **kw):
    moved = reshape_outline(LEFT, stroke, shape=SHAPE, **kw).vertices
    return moved, reshape_neighbours("MF_L", LEFT, moved, {"ES_L": right}, shape=SHAPE)


def test_on_a_shared_border_the_stroke_is_the_new_border_of_both():
    right = LEFT + [0, 10]  # columns 20-29: shares the border at column 19.5
    union = roi_mask(LEFT, SHAPE) | roi_mask(right, SHAPE)
    # cut the left outline back by 3 columns: the right one takes the strip
    moved, changed = _neighbours_after([[9.5, 16.5], [20.5, 16.5]], right)
    got = roi_mask(changed["ES_L"], SHAPE)
    np.testing.assert_array_equal(got, union & ~roi_mask(moved, SHAPE))
    # push it 3 columns into the right one: the right one yields them
    moved, changed = _neighbours_after([[9.5, 19.5], [12, 22.5], [18, 22.5], [20.5, 19.5]], right)
    got = roi_mask(changed["ES_L"], SHAPE)
    assert not (got & roi_mask(moved, SHAPE)).any()
    np.testing.assert_array_equal(got | roi_mask(moved, SHAPE), union)


def test_a_piece_cut_off_beside_fat_belongs_to_no_outline():
    right = LEFT + [0, 13]  # a 3-column fat gap between the two
    moved, changed = _neighbours_after([[9.5, 16.5], [20.5, 16.5]], right)
    assert changed == {}
    # cut a corner whose edge is mostly fat even though it touches the neighbour's column
    right = LEFT + [0, 10]
    moved, changed = _neighbours_after([[9.5, 14.5], [12.5, 19.5]], right)
    assert changed == {}


def test_a_piece_between_two_neighbours_goes_to_the_one_bordering_most():
    right = LEFT + [0, 10]  # columns 20-29
    below = np.array([[20.5, 9.5], [20.5, 29.5], [30.5, 29.5], [30.5, 9.5]])  # rows 21-30
    stroke = [[9.5, 17.5], [17.5, 17.5], [17.5, 9.5]]  # cuts off the lower right corner
    moved = reshape_outline(LEFT, stroke, shape=SHAPE).vertices
    piece = roi_mask(LEFT, SHAPE) & ~roi_mask(moved, SHAPE)
    edge = ndimage.binary_dilation(piece) & ~piece & ~roi_mask(moved, SHAPE)
    by_right = (edge & roi_mask(right, SHAPE)).sum()
    by_below = (edge & roi_mask(below, SHAPE)).sum()
    assert max(by_right, by_below) < 0.5 * edge.sum() <= by_right + by_below  # neither alone has half
    changed = reshape_neighbours("MF_L", LEFT, moved, {"ES_L": right, "PS_L": below}, shape=SHAPE)
    winner = "ES_L" if by_right > by_below else "PS_L"
    assert list(changed) == [winner]
    grown = roi_mask(changed[winner], SHAPE)
    np.testing.assert_array_equal(grown, roi_mask(right if winner == "ES_L" else below, SHAPE) | piece)


def test_a_stroke_that_would_cut_the_neighbour_in_two_is_refused():
    from napari_pvm.core.clip import ClipError

    thin = np.array([[9.5, 19.5], [9.5, 21.5], [20.5, 21.5], [20.5, 19.5]])  # columns 20-21
    moved = reshape_outline(LEFT, [[12.5, 19.5], [14, 25], [16, 25], [17.5, 19.5]], shape=SHAPE).vertices
    with pytest.raises(ClipError, match="pieces"):
        reshape_neighbours("MF_L", LEFT, moved, {"ES_L": thin}, shape=SHAPE)


@pytest.mark.parametrize(
    ("stroke", "message"),
    [
        ([[30, 30], [35, 35]], "starts .* mm from outline's border"),
        ([[10, 15]], "single point"),
        ([[10, 15], [np.nan, 3]], "finite"),
        ([[10, 15, 1], [20, 15, 1]], "finite \\[row, col\\]"),
        # crosses the left and the right border between its ends: both ways round would cross themselves
        ([[10, 15], [15, 5], [15, 25], [20, 15]], "crosses outline's border between its ends"),
    ],
)
def test_strokes_that_cannot_reshape_are_refused(stroke, message):
    with pytest.raises(ReshapeError, match=message):
        reshape_outline(SQUARE, stroke, shape=SHAPE)


def test_the_crossing_is_located_for_the_marker():
    with pytest.raises(ReshapeError) as info:
        reshape_outline(SQUARE, [[10, 15], [15, 5], [15, 25], [20, 15]], shape=SHAPE)
    r, c = info.value.location
    assert 10 <= r <= 20 and c in (10.0, 20.0)


def test_the_target_is_the_outline_both_ends_reach():
    left = SQUARE
    right = SQUARE + [0, 10]  # shares the column-20 border
    along = [[10, 20], [15, 22], [20, 20]]
    assert reshape_target({"ES_L": left, "MF_L": right}, along, prefer="MF_L") == "MF_L"
    assert reshape_target({"ES_L": left, "MF_L": right}, along, prefer="ES_L") == "ES_L"
    assert reshape_target({"ES_L": left, "MF_L": right}, [[10, 29], [15, 33], [20, 29]]) == "MF_L"
    with pytest.raises(ReshapeError, match="does not start and end on an outline's border"):
        reshape_target({"ES_L": left}, [[30, 30], [35, 35]])


def test_random_strokes_give_a_valid_outline_or_a_reason():
    """Seeded strokes of every kind on star-shaped outlines: each either gives a
    valid outline whose pixel counts match, or is refused with ReshapeError."""
    from napari_pvm.core.rois import validate_polygon

    rng = np.random.default_rng(20261207)
    shape = (64, 64)
    outcomes = {"reshaped": 0, "refused": 0}
    for _ in range(300):
        n = int(rng.integers(5, 25))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(8, 20, n)
        outline = np.column_stack([32 + radii * np.sin(angles), 32 + radii * np.cos(angles)])
        if np.max(np.diff(np.r_[angles, angles[0] + 2 * np.pi])) >= np.pi:
            continue  # not star-shaped about the centre: it may cross itself
        # a stroke from near one border point to near another, through random points
        ends = outline[rng.choice(n, 2, replace=False)] + rng.normal(0, 1.5, (2, 2))
        middle = rng.uniform(8, 56, (int(rng.integers(0, 5)), 2))
        stroke = np.vstack([ends[:1], middle, ends[1:]])
        try:
            res = reshape_outline(outline, stroke, shape=shape, spacing=(0.8, 0.8))
        except ReshapeError:
            outcomes["refused"] += 1
            continue
        validate_polygon(res.vertices, shape)
        before, after = roi_mask(outline, shape), roi_mask(res.vertices, shape)
        assert res.added_pixels == np.count_nonzero(after & ~before)
        assert res.removed_pixels == np.count_nonzero(before & ~after)
        outcomes["reshaped"] += 1
    assert outcomes["reshaped"] > 100 and outcomes["refused"] > 10, outcomes
