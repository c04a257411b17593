"""Outline proposals (contract 7) against phantoms with exact outlines, real slices, and bad input."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_pvm.core import schema
from napari_pvm.core.measure import outline_masks
from napari_pvm.core.phantom import make_phantom
from napari_pvm.core.propose import ProposalError, mask_to_polygon, propose_outlines
from napari_pvm.core.rois import roi_mask


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def inner_click(mask, spacing, rng):
    """A point of the muscle's inner half (distance to the edge ≥ half the largest)."""
    dist = ndi.distance_transform_edt(mask, sampling=spacing)
    rr, cc = np.nonzero(dist >= 0.5 * dist.max())
    i = rng.integers(len(rr))
    return (float(rr[i]), float(cc[i]))


def scores_without_swaps(out, truth, label):
    """Dice per outline (0 when missing); a proposal never overlaps another
    muscle or side more than its own."""
    masks = outline_masks(out, next(iter(truth.values())).shape)
    scores = {}
    for key, m in truth.items():
        d = dice(masks[key], m) if key in masks else 0.0
        if key in masks:
            assert all(dice(masks[key], truth[o]) < d for o in truth if o != key), (label, key)
        scores[key] = d
    return scores


@pytest.fixture(scope="module")
def phantoms():
    """A target phantom slice and three example slices (other seeds, other spacing)."""
    target = make_phantom(seed=7, n_slices=1, spacing=0.9, supersample=1)
    examples = [
        make_phantom(seed=s, n_slices=1, spacing=sp, supersample=1) for s, sp in ((21, 0.9), (22, 1.0), (23, 0.8))
    ]
    return target, examples


@pytest.fixture(scope="module")
def clicks(phantoms):
    target, _ = phantoms
    rng = np.random.default_rng(3)
    return {k: inner_click(m, target.spacing[1:], rng) for k, m in target.masks.items()}


@pytest.fixture(scope="module")
def proposed(phantoms, clicks):
    target, _ = phantoms
    return propose_outlines(target.l4, spacing=target.spacing[1:], clicks=clicks)


def test_clicks_find_every_phantom_muscle(phantoms, proposed):
    target, _ = phantoms
    assert set(proposed) == set(schema.ROI_KEYS)
    masks = outline_masks(proposed, target.l4.shape)  # valid polygons, no overlap (contract 1)
    # floors are what the method reaches (docs/proposals.md), not the targets
    scores = {key: dice(mask, target.masks[key]) for key, mask in masks.items()}
    assert np.mean(list(scores.values())) >= 0.75, scores
    for key, mask in masks.items():
        # the multifidus with 28 % marbling is the weak case (benchmark minimum ~0.64)
        assert scores[key] >= (0.5 if key.startswith("MF") else 0.7), (key, scores[key])
        # never the other side or another muscle: it overlaps its own muscle most
        assert all(dice(mask, target.masks[o]) < scores[key] for o in schema.ROI_KEYS if o != key), key


def test_proposals_are_disjoint_and_valid_polygons(phantoms, proposed):
    target, _ = phantoms
    taken = np.zeros(target.l4.shape, bool)
    for key in schema.ROI_KEYS:
        v = proposed[key]
        assert v.ndim == 2 and v.shape[1] == 2 and len(v) >= 3 and v.dtype == float
        m = roi_mask(v, target.l4.shape)
        assert not (m & taken).any(), key
        taken |= m


def test_deterministic(phantoms, clicks, proposed):
    target, _ = phantoms
    again = propose_outlines(target.l4, spacing=target.spacing[1:], clicks=clicks)
    assert set(again) == set(proposed)
    for key in proposed:
        np.testing.assert_array_equal(again[key], proposed[key])


def test_examples_of_other_size_and_spacing_are_aligned(phantoms, clicks):
    target, examples = phantoms
    ex = [(p.l4, p.spacing[1:], p.rois) for p in examples]
    assert {p.l4.shape for p in examples} != {target.l4.shape}  # really another size
    out = propose_outlines(target.l4, spacing=target.spacing[1:], clicks=clicks, examples=ex)
    masks = outline_masks(out, target.l4.shape)
    assert set(masks) == set(schema.ROI_KEYS)
    assert np.mean([dice(masks[k], target.masks[k]) for k in masks]) >= 0.78
    # alignment, optical flow and fusion are deterministic too
    again = propose_outlines(target.l4, spacing=target.spacing[1:], clicks=clicks, examples=ex)
    for key in out:
        np.testing.assert_array_equal(again[key], out[key])


def test_midline_is_the_axis_of_mirror_symmetry_not_the_clicks_mean():
    """A back mirrored about column 47, clicked off-centre (the pairs' mean
    column is 52): the cut follows the image's axis; without a pair, no cut."""
    from napari_pvm.core.propose import _keep_own_side, _midline_column

    rng = np.random.default_rng(5)
    half = ndi.gaussian_filter(rng.random((60, 47)), 2.0)
    image = np.concatenate([half, rng.random((60, 1)), half[:, ::-1]], axis=1)  # columns 0–94, axis 47
    points = {"MF_R": (30.0, 38.0), "MF_L": (30.0, 60.0), "ES_R": (35.0, 20.0), "ES_L": (35.0, 90.0)}
    assert _midline_column(image, points, (1.0, 1.0)) == 47.0
    masks = {"MF_L": np.ones(image.shape, bool)}
    cut = _keep_own_side(masks, points, image, (1.0, 1.0))["MF_L"]
    assert cut[:, 48:].all() and not cut[:, :48].any()
    assert _midline_column(image, {"MF_R": (30.0, 38.0)}, (1.0, 1.0)) is None


def test_the_examples_most_like_the_slice_are_fused(phantoms, clicks, monkeypatch):
    """Of four examples, the slice itself (correlation 1 after an identity
    fit) is among the SELECT_MAX fused; the others are not all used."""
    from napari_pvm.core import _propose_atlas
    from napari_pvm.core.propose import _body_mask

    target, others = phantoms
    spacing = target.spacing[1:]
    bodies = [_body_mask(target.l4, spacing)] + [_body_mask(p.l4, p.spacing[1:]) for p in others]
    examples = [(target.l4, spacing, dict(target.masks), bodies[0])]
    examples += [(p.l4, p.spacing[1:], dict(p.masks), b) for p, b in zip(others, bodies[1:])]
    fits = []
    align = _propose_atlas.align_example

    def spy(*args, **kwargs):
        fits.append(align(*args, **kwargs))
        return fits[-1]

    monkeypatch.setattr(_propose_atlas, "align_example", spy)
    _, areas, anisotropy = _propose_atlas.atlas_prior(
        target.l4, spacing, bodies[0], examples[::-1], ("ES_L", "MF_L"), clicks
    )
    assert len(fits) == 4 and len(anisotropy) == _propose_atlas.SELECT_MAX == 3
    best = sorted(fits, key=lambda f: -f.similarity)[:3]
    assert anisotropy == [f.anisotropy for f in best]
    assert fits[-1].similarity == max(f.similarity for f in fits) > 0.95  # the slice itself
    assert len(areas["ES_L"]) == 3


def test_examples_of_another_anatomy_place_no_muscle(phantoms, clicks):
    """An example turned upside down (the back in front) cannot be fitted to
    the slice with the clicks inside its muscles: it is not used."""
    from napari_pvm.core import _propose_atlas
    from napari_pvm.core.propose import _body_mask

    target, others = phantoms
    spacing = target.spacing[1:]
    body = _body_mask(target.l4, spacing)
    upside_down = others[0].l4[::-1]
    masks = {k: m[::-1] for k, m in others[0].masks.items()}
    example = (upside_down, others[0].spacing[1:], masks, _body_mask(upside_down, others[0].spacing[1:]))
    assert _propose_atlas.atlas_prior(target.l4, spacing, body, [example], ("ES_L", "MF_L"), clicks) == ({}, {}, [])
    # the same example the right way up is used
    example = (others[0].l4, others[0].spacing[1:], dict(others[0].masks), _body_mask(others[0].l4, spacing))
    prior, areas, anisotropy = _propose_atlas.atlas_prior(target.l4, spacing, body, [example], ("ES_L",), clicks)
    assert set(prior) == {"ES_L"} and len(anisotropy) == 1


def test_shape_trust_follows_the_examples_anisotropy():
    """Examples fitted by a near-similarity shape the muscles; stretched ones do not."""
    from napari_pvm.core.propose import TRUST_ANISOTROPY, _shape_trust

    low, high = TRUST_ANISOTROPY
    assert _shape_trust([]) == 0.0
    assert _shape_trust([0.0, low]) == 1.0
    assert _shape_trust([high, 2 * high]) == 0.0
    assert _shape_trust([low, high]) == pytest.approx(0.5)


def test_an_example_of_the_same_body_shapes_the_proposal(phantoms, clicks, monkeypatch):
    """The slice itself as its only example (the same body, fitted by an
    identity) is trusted for the shapes and the tissue it encloses: every
    muscle reaches Dice 0.93, the multifidus with 28 % marbling included
    (0.61 from its click alone, whose intensity model leaves the marbled half
    out). The same example stretched by 40 % left-right is recognised as
    another body's shape (anisotropy near log 1.4 = 0.34)."""
    from napari_pvm.core import _propose_atlas

    target, _ = phantoms
    spacing = target.spacing[1:]
    same = [(target.l4, spacing, target.rois)]
    alone = outline_masks(propose_outlines(target.l4, spacing=spacing, clicks=clicks), target.l4.shape)
    out = outline_masks(propose_outlines(target.l4, spacing=spacing, clicks=clicks, examples=same), target.l4.shape)
    scores = {key: dice(mask, target.masks[key]) for key, mask in out.items()}
    assert set(scores) == set(schema.ROI_KEYS)
    for key, d in scores.items():
        assert d >= dice(alone[key], target.masks[key]) - 0.01, key
    assert min(scores.values()) >= 0.93, scores

    recorded = []
    align = _propose_atlas.align_example

    def spy(*args, **kwargs):
        mapping = align(*args, **kwargs)
        recorded.append(mapping.anisotropy)
        return mapping

    stretched = ndi.zoom(target.l4, (1.0, 1.4), order=1)
    rois = {k: np.asarray(v) * [1.0, 1.4] + [0.0, 0.2] for k, v in target.rois.items()}
    monkeypatch.setattr(_propose_atlas, "align_example", spy)
    propose_outlines(target.l4, spacing=spacing, clicks=clicks, examples=[(stretched, spacing, rois)])
    propose_outlines(target.l4, spacing=spacing, clicks=clicks, examples=same)
    assert recorded[0] > 0.2 and recorded[1] < 0.05, recorded


def test_a_coil_bias_changes_proposals_little(phantoms, clicks, proposed):
    """A smooth intensity bias (0.6 anterior to 1.4 posterior, as from a
    posterior surface coil) is removed with fat as the reference tissue, so
    the proposals barely change; without the correction the psoas moves by
    0.06 Dice and 20 % of its area."""
    target, _ = phantoms
    rows = np.linspace(0.0, 1.0, target.l4.shape[0])[:, None]
    biased = target.l4 * (0.6 + 0.8 * rows)
    out = propose_outlines(biased, spacing=target.spacing[1:], clicks=clicks)
    plain = outline_masks(proposed, target.l4.shape)
    masks = outline_masks(out, target.l4.shape)
    assert set(masks) == set(schema.ROI_KEYS)
    for key in schema.ROI_KEYS:
        before, after = dice(plain[key], target.masks[key]), dice(masks[key], target.masks[key])
        assert abs(after - before) <= 0.04, (key, before, after)


def test_fat_bias_flattens_fat_on_a_phantom(phantoms):
    from napari_pvm.core._propose_atlas import fat_bias
    from napari_pvm.core.propose import _body_mask

    target, _ = phantoms
    rows = np.linspace(0.0, 1.0, target.l4.shape[0])[:, None]
    biased = target.l4 * (0.6 + 0.8 * rows)
    fat = target.fat_share > 0.99  # pure fat pixels
    field = fat_bias(biased, target.spacing[1:], _body_mask(biased, target.spacing[1:]))
    third = target.l4.shape[0] // 3
    front, back = fat.copy(), fat.copy()
    front[third:] = False
    back[: 2 * third] = False

    def imbalance(im):  # |log| of the posterior over the anterior fat level
        return abs(np.log(np.median(im[back]) / np.median(im[front])))

    assert imbalance(biased / field) < 0.5 * imbalance(biased), (imbalance(biased / field), imbalance(biased))


def test_similarity_from_clicks_recovers_a_known_transform():
    from napari_pvm.core._propose_atlas import similarity_from_points

    rng = np.random.default_rng(5)
    src = rng.uniform(0, 100, size=(6, 2))
    angle = np.deg2rad(7.0)
    A = 1.1 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    got_A, got_t = similarity_from_points(src, src @ A.T + [12.0, -4.0])
    np.testing.assert_allclose(got_A, A, atol=1e-9)
    np.testing.assert_allclose(got_t, [12.0, -4.0], atol=1e-9)


def test_examples_only_find_muscles_without_clicks(phantoms):
    target, examples = phantoms
    ex = [(p.l4, p.spacing[1:], p.rois) for p in examples]
    out = propose_outlines(target.l4, spacing=target.spacing[1:], examples=ex, rois=["ES_L", "ES_R"])
    assert set(out) <= {"ES_L", "ES_R"}
    masks = outline_masks(out, target.l4.shape)
    for key, m in masks.items():
        assert dice(m, target.masks[key]) >= 0.6, key


def test_nothing_to_go_on_gives_nothing(phantoms):
    target, _ = phantoms
    assert propose_outlines(target.l4, spacing=target.spacing[1:]) == {}
    assert propose_outlines(target.l4, spacing=target.spacing[1:], examples=[]) == {}


def test_only_wanted_outlines(phantoms, clicks):
    target, _ = phantoms
    out = propose_outlines(target.l4, spacing=target.spacing[1:], clicks=clicks, rois=["MF_L"])
    assert set(out) == {"MF_L"}


def test_example_without_outlines_is_skipped(phantoms, clicks):
    target, _ = phantoms
    empty = [(target.l4, target.spacing[1:], {})]
    a = propose_outlines(target.l4, spacing=target.spacing[1:], clicks={"ES_L": clicks["ES_L"]}, examples=empty)
    b = propose_outlines(target.l4, spacing=target.spacing[1:], clicks={"ES_L": clicks["ES_L"]})
    np.testing.assert_array_equal(a["ES_L"], b["ES_L"])


@pytest.mark.parametrize(
    "clicks, message",
    [
        ({"ES_L": (-5.0, 10.0)}, "outside the"),
        ({"ES_L": (3.0, 3.0)}, "outside the body"),
        ({"XX_L": (200.0, 200.0)}, "unknown outline"),
        ({"ES_L": (float("nan"), 1.0)}, "finite"),
    ],
)
def test_bad_clicks_are_refused(phantoms, clicks, message):
    target, _ = phantoms
    with pytest.raises(ProposalError, match=message):
        propose_outlines(target.l4, spacing=target.spacing[1:], clicks=clicks)


def test_click_on_the_wrong_side_or_muscle_is_refused(phantoms, clicks):
    target, _ = phantoms
    sp = target.spacing[1:]
    swapped_sides = dict(clicks, ES_L=clicks["ES_R"], ES_R=clicks["ES_L"])
    with pytest.raises(ProposalError, match="patient's"):
        propose_outlines(target.l4, spacing=sp, clicks=swapped_sides)
    swapped_muscles = dict(clicks, ES_L=clicks["MF_L"], MF_L=clicks["ES_L"])
    with pytest.raises(ProposalError, match="swapped"):
        propose_outlines(target.l4, spacing=sp, clicks=swapped_muscles)
    psoas_behind = dict(clicks, PS_L=clicks["ES_L"], ES_L=clicks["PS_L"])
    with pytest.raises(ProposalError, match="swapped"):
        propose_outlines(target.l4, spacing=sp, clicks=psoas_behind)


@pytest.mark.parametrize(
    "example, message",
    [
        ((np.zeros((4, 4)), (1.0, 1.0), {}), "2D slice"),
        ((np.zeros((64, 64)), (0.0, 1.0), {}), "spacing"),
        ((np.zeros((64, 64)), (1.0, 1.0), {"ES_L": [[0, 0], [1, 1]]}), "3 distinct"),
        ((np.zeros((64, 64)), (1.0, 1.0), {"QL_L": [[1, 1], [1, 9], [9, 9]]}), "unknown outline"),
        (("not", "an"), "must be"),
    ],
)
def test_bad_examples_are_refused(phantoms, clicks, example, message):
    target, _ = phantoms
    with pytest.raises(ProposalError, match=message):
        propose_outlines(target.l4, spacing=target.spacing[1:], clicks=clicks, examples=[example])


def test_bad_image_or_spacing_is_refused():
    with pytest.raises(ProposalError, match="2D"):
        propose_outlines(np.zeros((3, 64, 64)), spacing=(1, 1), clicks={"ES_L": (5, 5)})
    with pytest.raises(ProposalError, match="spacing"):
        propose_outlines(np.zeros((64, 64)), spacing=(1, -1), clicks={"ES_L": (5, 5)})
    with pytest.raises(ProposalError, match="unknown outline"):
        propose_outlines(np.zeros((64, 64)), spacing=(1, 1), rois=["QL_L"])
    # a uniform slice has no muscle-fat contrast to scale by (it crashed the geodesic step)
    for value in (0.0, 5.0):
        with pytest.raises(ProposalError, match="uniform"):
            propose_outlines(np.full((64, 64), value), spacing=(0.9, 0.9), clicks={"ES_L": (32, 40)})
    # a header spacing finer than any lumbar MRI would make the mm-sized filters huge
    with pytest.raises(ProposalError, match="finer than 0.1 mm"):
        propose_outlines(np.eye(64), spacing=(0.01, 0.01), clicks={"ES_L": (32, 40)})


def test_two_muscles_clicked_at_one_place_are_refused(phantoms, clicks):
    target, _ = phantoms
    same = dict(clicks, MF_L=clicks["ES_L"])
    with pytest.raises(ProposalError, match="clicks ES_L and MF_L are 0.0 mm apart"):
        propose_outlines(target.l4, spacing=target.spacing[1:], clicks=same)


def test_an_example_with_left_and_right_swapped_is_refused(phantoms, clicks):
    """Without clicks such an example would put every muscle on the wrong side."""
    target, _ = phantoms
    swapped = {k[:-1] + {"L": "R", "R": "L"}[k[-1]]: v for k, v in target.rois.items()}
    with pytest.raises(ProposalError, match="example 0: PS_L .* look swapped"):
        propose_outlines(target.l4, spacing=target.spacing[1:], examples=[(target.l4, target.spacing[1:], swapped)])


def test_one_wanted_outline_may_be_named_alone(phantoms, clicks):
    target, _ = phantoms
    out = propose_outlines(target.l4, spacing=target.spacing[1:], clicks=clicks, rois="MF_L")
    assert set(out) == {"MF_L"}


def test_area_bound_keeps_the_surest_pixels_up_to_the_largest_example():
    """A region larger than its largest example (mm²) keeps exactly that area,
    the pixels with the highest random-walker probability; smaller regions
    and muscles without examples are left alone."""
    from napari_pvm.core import propose as P

    spacing = (0.5, 2.0)  # 1 mm² pixels
    region = np.zeros((20, 20), bool)
    region[5:15, 5:15] = True  # 100 mm²
    prob = np.zeros((3, 20, 20))
    prob[1] = np.linspace(0.0, 1.0, 400).reshape(20, 20)  # label 2 (ES_L): rises row by row
    masks = {"ES_L": region, "MF_L": region.copy()}
    out = P._bound_areas(masks, prob, {"ES_L": 2, "MF_L": 3}, {"ES_L": [30.0, 40.0 / (1 + P.AREA_MARGIN)]}, spacing)
    assert out["ES_L"].sum() == 40 and (out["ES_L"] <= region).all()
    assert out["ES_L"][11:15, 5:15].all()  # the highest-probability rows are kept
    assert (out["MF_L"] == region).all()  # no examples of MF_L: unchanged
    small = P._bound_areas(masks, prob, {"ES_L": 2, "MF_L": 3}, {"ES_L": [120.0]}, spacing)
    assert (small["ES_L"] == region).all()


def test_no_muscle_crosses_the_midline_between_paired_clicks():
    from napari_pvm.core import propose as P

    full = np.ones((10, 40), bool)
    flat = np.ones((10, 40))  # no symmetry to find: the pairs' mean column
    clicks = {"ES_R": (5.0, 5.0), "ES_L": (5.0, 25.0), "MF_L": (5.0, 17.0)}  # midline at column 15
    out = P._keep_own_side({"ES_R": full, "ES_L": full, "MF_L": full}, clicks, flat, (1.0, 1.0))
    assert out["ES_R"][:, :15].all() and not out["ES_R"][:, 15:].any()
    assert out["ES_L"][:, 16:].all() and not out["ES_L"][:, :16].any()
    assert (out["MF_L"] == out["ES_L"]).all()
    # one side clicked only: no midline known, nothing cut
    assert P._keep_own_side({"ES_L": full}, {"ES_L": (5.0, 25.0)}, flat, (1.0, 1.0))["ES_L"].all()


@pytest.mark.parametrize("click_row", [129.0, 135.0, 141.0])
def test_a_faint_fat_plane_holds_a_back_muscle_to_its_side(click_row):
    """A back muscle and a lean neighbour of the same signal (the quadratus
    lumborum in front of the erector spinae) meet at a fat plane 2 mm thick
    that rises only a quarter of the way to fat, as fasciae do on a W+F Dixon
    image. Wherever in the muscle's inner half (rows 129-142) the click lies,
    the muscle stays behind the plane (it takes 0-10 % of the neighbour);
    without the plane cost it took 11 %, 28 % and 44 % from rows 141, 135
    and 129."""
    rr, cc = np.mgrid[:200, :200]
    fat, lean = 100.0, 30.0
    image = np.where(((rr - 100) / 90.0) ** 2 + ((cc - 100) / 95.0) ** 2 <= 1, fat, 2.0)
    behind = (rr >= 122) & (rr < 150) & (cc >= 40) & (cc < 95)
    in_front = (rr >= 85) & (rr < 122) & (cc >= 40) & (cc < 95)
    image[behind | in_front] = lean
    image[120:122, 40:95] = lean + 0.25 * (fat - lean)
    image = ndi.gaussian_filter(image, 0.7) + np.random.default_rng(0).normal(0.0, 1.5, image.shape)
    out = propose_outlines(image, spacing=(1.0, 1.0), clicks={"ES_R": (click_row, 67.0)}, rois=["ES_R"])
    mask = roi_mask(out["ES_R"], image.shape)
    assert (mask & behind).sum() >= 0.95 * behind.sum()
    assert (mask & in_front).sum() <= 0.15 * in_front.sum()


def test_a_click_between_coarse_pixels_still_reads_its_tissue():
    """At 8 mm pixels the 2.5 mm seed disk around a click between pixel
    centres holds no pixel; the click's own pixel is read (it used to give
    an empty median and the misleading 'no contrast between muscle and fat')."""
    rr, cc = np.mgrid[:40, :40]
    image = np.where(((rr - 20) / 18.0) ** 2 + ((cc - 20) / 18.8) ** 2 <= 1, 100.0, 2.0)
    muscle = (rr > 22) & (rr < 32) & (np.abs(cc - 20) > 2) & (np.abs(cc - 20) < 12)
    image[muscle] = 30.0
    out = propose_outlines(image, spacing=(8.0, 8.0), clicks={"ES_R": (28.5, 14.5)})
    assert set(out) == {"ES_R"}
    assert roi_mask(out["ES_R"], image.shape)[28, 14]


def test_mask_to_polygon_reproduces_masks():
    rng = np.random.default_rng(0)
    for _ in range(5):
        blob = ndi.gaussian_filter(rng.random((60, 70)), 6) > 0.5
        lab, _ = ndi.label(blob)
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        blob = ndi.binary_fill_holes(lab == np.argmax(sizes))
        for tol in (0.0, 0.35):
            back = roi_mask(mask_to_polygon(blob, tolerance=tol), blob.shape)
            assert np.count_nonzero(back ^ blob) <= (0 if tol == 0 else 0.02 * blob.sum())


# ------------------------------------------------------------ real slices
DIXON_LABELS = {"ES_R": 1, "MF_R": 2, "MF_L": 3, "ES_L": 4}
#: Floors on held-out data: what the method reaches there with a margin (see
#: docs/benchmarks.md, "Outline proposals"), below the issue's targets
#: (0.85 with clicks, 0.90 with clicks and examples), which are not reached.
#: Reached in round 3: 0.769; ES 0.822 and MF 0.753; 0.788. Round 4 (trust in
#: near-similar examples, symmetric midline, converged flow, atlas selection,
#: the 0.75 fit rule; on the whole held-out subject ES +0.020 and MF -0.006
#: with the other subject's examples, +0.051 and +0.081 with the same
#: subject's): 0.770 (click alone); ES 0.822 and MF 0.708 on these three
#: slices (their MF lost 0.045); same body ES 0.852 and MF 0.875; MuscleMap
#: with examples ES 0.899, MF 0.847, PS 0.937. Round 7 (thin fat planes in
#: the back muscles' geodesic): 0.801 (click alone); ES 0.846 and MF 0.732;
#: same body ES 0.861 and MF 0.877; MuscleMap click alone ES 0.851 -> 0.869,
#: MF 0.693 -> 0.743, with examples unchanged.
MIN_DIXON_CLICK = 0.76
MIN_DIXON_EXAMPLES = {"ES": 0.79, "MF": 0.68}
MIN_MUSCLEMAP_CLICK = 0.76
MIN_DIXON_SAME_BODY = {"ES": 0.80, "MF": 0.83}
MIN_MUSCLEMAP_EXAMPLES = {"ES": 0.86, "MF": 0.80, "PS": 0.91}


MUSCLEMAP_LABELS = {"MF_R": 1, "MF_L": 2, "ES_R": 3, "ES_L": 4, "PS_R": 5, "PS_L": 6}


def dixon_subject(real_data, subject):
    """A Dixon subject as (slice image, slice truth, spacing): the water + fat
    sum (the fat-bright image of issue 12) and the four labelled muscles."""
    from napari_pvm.core.io import read_volume

    folder = real_data / "myosegmentum_dixon_lpm"
    water = read_volume(folder / f"{subject}_water_img_img_L2-L5.nii.gz")
    fat = read_volume(folder / f"{subject}_fat_img_img_L2-L5.nii.gz")
    labels = read_volume(folder / f"{subject}_fat_manual_label_segmentation_L2-L5.nii.gz")

    def image_of(k):
        return water.slice(k).astype(float) + fat.slice(k)

    def truth_of(k):
        return {key: labels.slice(k) == v for key, v in DIXON_LABELS.items()}

    return image_of, truth_of, labels.pixel_spacing


def musclemap_scan(real_data):
    """The MuscleMap scan as (slice image, slice truth, spacing), six muscles."""
    from napari_pvm.core.io import read_volume

    folder = real_data / "musclemap_lumbar_axial"
    image = read_volume(folder / "image.nii.gz")
    labels = read_volume(folder / "image_dseg_musclemap_pred.nii.gz")

    def truth_of(k):
        return {key: labels.slice(k) == v for key, v in MUSCLEMAP_LABELS.items()}

    return image.slice, truth_of, image.pixel_spacing


def example_of(image_of, truth_of, spacing, j):
    """Slice ``j`` as an observer's earlier outlined case."""
    return (image_of(j), spacing, {key: mask_to_polygon(m) for key, m in truth_of(j).items() if m.any()})


@pytest.mark.real
def test_real_dixon_slices_with_clicks(real_data):
    """Held-out subject TUM02 (never used for tuning), three L4 slices, one
    inner-half click per muscle. The floor is what the method reaches, below
    the issue's 0.85 target (see docs/proposals.md); the figures are printed."""
    image_of, truth_of, spacing = dixon_subject(real_data, "TUM02")
    rng = np.random.default_rng(12)
    scores = []
    for k in (11, 13, 15):
        image, truth = image_of(k), truth_of(k)
        clicks = {key: inner_click(m, spacing, rng) for key, m in truth.items()}
        out = propose_outlines(image, spacing=spacing, clicks=clicks, rois=list(truth))
        scores += list(scores_without_swaps(out, truth, k).values())
    print("TUM02 slices 11, 13, 15, click only: Dice", np.round(scores, 3))
    assert np.mean(scores) >= MIN_DIXON_CLICK


@pytest.mark.real
def test_real_dixon_slices_with_clicks_and_examples(real_data):
    """Held-out subject TUM02, three L4 slices, one inner-half click per
    muscle and three examples from the other subject (TUM01, the slices
    around the same level: mid-L4 is slice 15 there, 13 here). Floors are
    what the method reaches (docs/benchmarks.md), below the issue's 0.90."""
    image_of, truth_of, spacing = dixon_subject(real_data, "TUM02")
    other = dixon_subject(real_data, "TUM01")
    rng = np.random.default_rng(12)
    scores, area_errors = {}, {}
    for k in (11, 13, 15):
        image, truth = image_of(k), truth_of(k)
        clicks = {key: inner_click(m, spacing, rng) for key, m in truth.items()}
        examples = [example_of(*other, j) for j in (k, k + 2, k + 4)]
        out = propose_outlines(image, spacing=spacing, clicks=clicks, examples=examples, rois=list(truth))
        masks = outline_masks(out, image.shape)
        for key, d in scores_without_swaps(out, truth, k).items():
            if key in masks:
                m = truth[key]
                area_errors.setdefault(key[:2], []).append(100.0 * abs(masks[key].sum() - m.sum()) / m.sum())
            scores.setdefault(key[:2], []).append(d)
    print(
        "TUM02 slices 11, 13, 15, click + 3 examples: mean Dice",
        {m: round(float(np.mean(v)), 3) for m, v in scores.items()},
        "mean |area error| %",
        {m: round(float(np.mean(v)), 1) for m, v in area_errors.items()},
    )
    for muscle, floor in MIN_DIXON_EXAMPLES.items():
        assert np.mean(scores[muscle]) >= floor, (muscle, scores[muscle])


def _mean_dice_with_examples(image_of, truth_of, spacing, slices, example_slices, rois=None):
    """Dice per muscle (ES, MF, PS) over ``slices``, one inner-half click per
    muscle (seed 12) and the examples ``example_slices(k)`` of the same scan."""
    rng = np.random.default_rng(12)
    scores = {}
    for k in slices:
        truth = truth_of(k)
        clicks = {key: inner_click(m, spacing, rng) for key, m in truth.items()}
        examples = [example_of(image_of, truth_of, spacing, j) for j in example_slices(k)]
        out = propose_outlines(image_of(k), spacing=spacing, clicks=clicks, examples=examples, rois=rois)
        for key, d in scores_without_swaps(out, truth, k).items():
            scores.setdefault(key[:2], []).append(d)
    return scores


@pytest.mark.real
def test_real_dixon_slices_with_examples_of_the_same_body(real_data):
    """Held-out subject TUM02, three L4 slices, one inner-half click per
    muscle and three examples of the same subject at least 3 slices (12 mm)
    away. Examples that fit with a near-similarity shape the muscles; the
    floors are what the method reaches (docs/benchmarks.md), below the
    issue's 0.90."""
    image_of, truth_of, spacing = dixon_subject(real_data, "TUM02")
    scores = _mean_dice_with_examples(
        image_of, truth_of, spacing, (11, 13, 15), lambda k: (k - 4, k + 3, k + 5), rois=list(DIXON_LABELS)
    )
    print(
        "TUM02 slices 11, 13, 15, click + 3 examples of TUM02: mean Dice",
        {m: round(float(np.mean(v)), 3) for m, v in scores.items()},
    )
    for muscle, floor in MIN_DIXON_SAME_BODY.items():
        assert np.mean(scores[muscle]) >= floor, (muscle, scores[muscle])


@pytest.mark.real
def test_real_musclemap_slices_with_clicks(real_data):
    """The MuscleMap scan (test-only, held out of all tuning), slices 14, 16
    and 18 at L4, all six muscles, one inner-half click each. Figures are
    printed here only (never in the docs); the floor is below the issue's
    target, see docs/proposals.md."""
    image_of, truth_of, spacing = musclemap_scan(real_data)
    rng = np.random.default_rng(12)
    scores = {}
    for k in (14, 16, 18):
        truth = truth_of(k)
        clicks = {key: inner_click(m, spacing, rng) for key, m in truth.items()}
        out = propose_outlines(image_of(k), spacing=spacing, clicks=clicks)
        for key, d in scores_without_swaps(out, truth, k).items():
            scores.setdefault(key[:2], []).append(d)
    print(
        "MuscleMap slices 14, 16, 18, click only: mean Dice",
        {m: round(float(np.mean(v)), 3) for m, v in scores.items()},
    )
    assert np.mean([d for v in scores.values() for d in v]) >= MIN_MUSCLEMAP_CLICK


@pytest.mark.real
def test_real_musclemap_slices_with_clicks_and_examples(real_data):
    """The MuscleMap scan (test-only, held out of all tuning), slices 14, 16
    and 18, one inner-half click per muscle and three examples of the same
    scan at least 3 slices away. Figures are printed here only."""
    image_of, truth_of, spacing = musclemap_scan(real_data)
    # the scan's 20 slices end at 19
    scores = _mean_dice_with_examples(image_of, truth_of, spacing, (14, 16, 18), lambda k: (k - 5, k - 4, k - 3))
    print(
        "MuscleMap slices 14, 16, 18, click + 3 examples: mean Dice",
        {m: round(float(np.mean(v)), 3) for m, v in scores.items()},
    )
    for muscle, floor in MIN_MUSCLEMAP_EXAMPLES.items():
        assert np.mean(scores[muscle]) >= floor, (muscle, scores[muscle])
