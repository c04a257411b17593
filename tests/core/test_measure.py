"""Areas and FI% from masks: exact against the phantom's truth."""

import numpy as np
import pytest

from napari_pvm.core import schema
from napari_pvm.core.errors import AnnotationError
from napari_pvm.core.measure import measure_masks, outline_masks, rois_present


def test_true_fat_gives_truth_exactly(small_phantom):
    ph = small_phantom
    out = measure_masks(ph.masks, ph.fat_truth, spacing=ph.spacing[1:])
    for column in schema.MEASURE_COLUMNS:
        assert out[column] == pytest.approx(ph.truth[column], rel=1e-12), column


def test_anisotropic_spacing_scales_areas():
    m = np.zeros((10, 10), bool)
    m[2:6, 3:8] = True  # 20 pixels
    out = measure_masks({"ES_L": m, "MF_L": m[::-1]}, np.zeros_like(m), spacing=(0.5, 2.0))
    assert out["ES_L_total_area_cm2"] == pytest.approx(20 * 1.0 / 100)
    assert out["ESMF_L_total_area_cm2"] == pytest.approx(40 / 100)
    assert out["ES_B_total_area_cm2"] is None  # right side not outlined
    assert out["PS_L_fi_pct"] is None


def test_bilateral_fi_is_pooled_not_averaged():
    a = np.zeros((10, 10), bool)
    a[:2, :] = True  # 20 px, 10 fat
    b = np.zeros((10, 10), bool)
    b[5:6, :] = True  # 10 px, 0 fat
    fat = np.zeros((10, 10), bool)
    fat[0, :] = True
    out = measure_masks({"PS_L": a, "PS_R": b}, fat, spacing=(1, 1))
    assert out["PS_B_fi_pct"] == pytest.approx(100 * 10 / 30)
    assert out["PS_B_muscle_area_cm2"] + out["PS_B_fat_area_cm2"] == pytest.approx(out["PS_B_total_area_cm2"])


def test_rois_present_in_contract_order():
    assert rois_present({"MF_R": 1, "ES_L": 1, "PS_L": 1}) == "PS_L;ES_L;MF_R"


def test_overlapping_outlines_refused():
    sq = [[10, 10], [10, 30], [30, 30], [30, 10]]
    shifted = [[20, 20], [20, 40], [40, 40], [40, 20]]
    with pytest.raises(AnnotationError, match="overlap"):
        outline_masks({"ES_L": sq, "MF_L": shifted}, (50, 50))


@pytest.mark.parametrize(
    "verts, message",
    [
        ([[1, 1], [5, 5]], "at least 3"),
        ([[1, 1], [1, 20], [20, 1], [20, 20]], "crosses itself"),
        ([[1, 1], [1, 80], [20, 20]], "outside"),
        ([[1, 1], [2, 2], [3, 3]], "no area"),
    ],
)
def test_bad_outlines(verts, message):
    with pytest.raises(AnnotationError, match=message):
        outline_masks({"PS_L": verts}, (50, 50))


def test_bad_spacing():
    with pytest.raises(AnnotationError, match="spacing"):
        measure_masks({}, np.zeros((2, 2), bool), spacing=(0, 1))


# --- contract 1: a pixel inside two outlines belongs to the first in order ---

from napari_pvm.core.rois import MAX_OVERLAP_PIXELS, exclusive_masks, roi_mask  # noqa: E402


def square(r0, c0, r1, c1):
    """Outline through pixel edges: pixel centres r0..r1-1 × c0..c1-1 inside."""
    return [[r0 - 0.5, c0 - 0.5], [r0 - 0.5, c1 - 0.5], [r1 - 0.5, c1 - 0.5], [r1 - 0.5, c0 - 0.5]]


def test_first_in_order_rule_exact_pixel_counts():
    # ES_L 10×10 = 100 px; MF_L 10×8 = 80 px, sharing a 10×1 column (10 px)
    # with ES_L; PS_R 4×4 = 16 px, sharing 2 px with MF_L (PS_R comes first)
    rois = {"MF_L": square(10, 19, 20, 27), "ES_L": square(10, 10, 20, 20), "PS_R": square(18, 25, 22, 29)}
    masks = outline_masks(rois, (40, 40))
    assert list(masks) == ["PS_R", "ES_L", "MF_L"]
    assert [int(masks[k].sum()) for k in masks] == [16, 100, 80 - 10 - 4]
    assert not (masks["ES_L"] & masks["MF_L"]).any() and not (masks["PS_R"] & masks["MF_L"]).any()
    out = measure_masks(masks, np.zeros((40, 40), bool), spacing=(1.0, 1.0))
    # ES+MF is the union and the sum
    union = int((roi_mask(rois["ES_L"], (40, 40)) | roi_mask(rois["MF_L"], (40, 40))).sum())
    assert out["ESMF_L_total_area_cm2"] == pytest.approx((union - 4) / 100)
    assert out["ESMF_L_total_area_cm2"] == pytest.approx(out["ES_L_total_area_cm2"] + out["MF_L_total_area_cm2"])


def test_the_overlap_limit_is_per_pair_and_documented():
    assert MAX_OVERLAP_PIXELS == 20
    base = {"ES_L": square(10, 10, 30, 20)}
    ok = dict(base, MF_L=square(10, 19, 30, 30))  # 20 shared pixels: accepted
    assert int(outline_masks(ok, (40, 40))["MF_L"].sum()) == 20 * 11 - 20
    bad = dict(base, MF_L=square(9, 19, 31, 30))  # 20 rows 10..29 only: still 20
    assert int(outline_masks(bad, (40, 40))["MF_L"].sum()) == 22 * 11 - 20
    bad = dict(base, MF_L=square(10, 18, 30, 30))  # 40 shared
    with pytest.raises(AnnotationError, match=r"ES_L and MF_L overlap by 40 pixels \(around row 20, column 18"):
        outline_masks(bad, (40, 40))
    with pytest.raises(AnnotationError, match="MF_L lies entirely inside"):
        exclusive_masks({"ES_L": np.ones((3, 3), bool), "MF_L": np.ones((3, 3), bool)}, max_overlap=9)


def test_an_outline_split_in_two_is_refused_saying_where():
    # PS_L is a thin vertical bar crossing the horizontal ES_L bar: 3×1
    # overlap, and ES_L would fall into a left and a right piece
    rois = {"PS_L": square(5, 20, 35, 21), "ES_L": square(19, 5, 22, 35)}
    with pytest.raises(
        AnnotationError,
        match=r"ES_L is cut into 2 pieces by PS_L, which comes first \(a piece of 42 pixels around row 20, column 28\)",
    ):
        outline_masks(rois, (40, 40))
    from napari_pvm.core.clip import ClipError

    with pytest.raises(ClipError) as info:
        outline_masks(rois, (40, 40))
    assert info.value.neighbour == "PS_L" and info.value.location == (20.0, 27.5)


def test_an_outline_with_a_hole_is_refused_saying_where():
    # ES_R (first) lies inside MF_R (later): MF_R would get a hole
    rois = {"ES_R": square(18, 18, 21, 21), "MF_R": square(10, 10, 30, 30)}
    with pytest.raises(
        AnnotationError, match=r"MF_R surrounds part of ES_R, leaving a hole in MF_R around row 19, column 19"
    ):
        outline_masks(rois, (40, 40))
    # an outline entirely inside an earlier one
    with pytest.raises(AnnotationError, match="MF_L lies entirely inside"):
        outline_masks({"ES_L": square(10, 10, 30, 30), "MF_L": square(12, 12, 14, 14)}, (40, 40))


def test_a_thin_outline_already_in_pieces_is_not_blamed_on_a_neighbour():
    # a diagonal sliver whose pixel centres are not 4-connected by themselves
    sliver = [[2.0, 2.0], [2.6, 2.0], [9.0, 8.6], [9.0, 9.0], [8.4, 9.0]]
    alone = roi_mask(sliver, (20, 20))
    from scipy import ndimage

    assert ndimage.label(alone)[1] > 1
    masks = exclusive_masks({"PS_L": roi_mask(square(8, 8, 11, 11), (20, 20)), "ES_L": alone})
    assert (masks["ES_L"] == (alone & ~masks["PS_L"])).all() and (alone & masks["PS_L"]).any()


# --- annotation: origins, reference outlines, unknown keys ------------------------


def _annotation_dict():
    return {
        "format": "napari-pvm.annotation/1",
        "slice_index": 0,
        "rois": [
            {"muscle": "ES", "side": "L", "vertices": square(10, 10, 20, 20), "origin": "edited", "score": 0.8},
            {"muscle": "PS", "side": "R", "vertices": square(25, 25, 30, 30), "origin": "proposed"},
            {"muscle": "MF", "side": "L", "vertices": square(10, 20, 20, 26)},
        ],
        "reference": [{"structure": "VB", "vertices": square(30, 5, 35, 15)}],
        "samples": [],
        "future_key": {"kept": True},
    }


def test_annotation_origins_reference_and_unknown_keys_round_trip(tmp_path):
    from napari_pvm.core.annotation import annotation_sha256, parse_annotation, read_annotation, write_annotation

    ann = parse_annotation(_annotation_dict())
    assert ann.origins == {"ES_L": "edited", "PS_R": "proposed"}
    assert ann.origin("MF_L") == "drawn" and ann.origin("ES_L") == "edited"
    assert list(ann.reference) == ["VB"] and ann.reference["VB"].shape == (4, 2)
    assert ann.roi_extra == {"ES_L": {"score": 0.8}}
    path = tmp_path / "a.pvm.json"
    write_annotation(path, ann)
    back = read_annotation(path)
    assert back.origins == ann.origins and back.extra == {"future_key": {"kept": True}}
    assert back.roi_extra == ann.roi_extra
    np.testing.assert_array_equal(back.reference["VB"], ann.reference["VB"])
    assert "origin" not in [r for r in back.to_dict()["rois"] if r["muscle"] == "MF"][0]
    assert annotation_sha256(back) == annotation_sha256(ann)
    # the origin is measured content (outline_origin), an unknown outline key is not
    changed = parse_annotation(
        _annotation_dict() | {"rois": [dict(r, origin="drawn") for r in _annotation_dict()["rois"]]}
    )
    assert annotation_sha256(changed) != annotation_sha256(ann)
    rescored = _annotation_dict()
    rescored["rois"][0]["score"] = 0.1
    assert annotation_sha256(parse_annotation(rescored)) == annotation_sha256(ann)


def test_an_annotation_without_new_keys_keeps_its_digest():
    from napari_pvm.core.annotation import annotation_sha256, parse_annotation

    plain = _annotation_dict()
    plain.pop("reference")
    for roi in plain["rois"]:
        roi.pop("origin", None)
        roi.pop("score", None)
    ann = parse_annotation(plain)
    d = ann.to_dict()
    import hashlib
    import json

    content = {k: d.get(k) for k in ("slice_index", "level", "rois", "samples", "classifier", "sample_labels")}
    expected = hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert annotation_sha256(ann) == expected


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda d: d["rois"][0].update(origin="traced"),
            "ES_L has origin 'traced'; use one of drawn, proposed, edited",
        ),
        (lambda d: d.update(reference={"VB": []}), "'reference' must be a list"),
        (lambda d: d["reference"].append(d["reference"][0]), "VB is given twice"),
        (lambda d: d["reference"][0].pop("vertices"), r"reference\[0\] needs"),
        (lambda d: d["reference"][0].update(structure="a b"), "structure 'a b'"),
    ],
)
def test_bad_origin_or_reference_is_refused(edit, message):
    from napari_pvm.core.annotation import parse_annotation

    d = _annotation_dict()
    edit(d)
    with pytest.raises(AnnotationError, match=message):
        parse_annotation(d)


# --- measure_annotation: the version-2 row ---------------------------------------

import dataclasses  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402


def _volume(image, *, spacing=(3.0, 0.8, 0.5), sha="ab" * 32):
    from napari_pvm.core.io import Volume

    data = np.asarray(image, dtype=np.float32)[None]
    return Volume(
        data=data,
        spacing=spacing,
        affine=np.eye(4),
        source_axcodes=("L", "P", "S"),
        obliquity_deg=0.0,
        sha256=sha,
        name="test",
        path="test",
    )


def _case():
    """A 40×40 slice: muscle 100, fat 400 (subcutaneous band rows 0-3 and a
    3×10 streak inside ES_L); samples in the band and in PS_R."""
    from napari_pvm.core.annotation import parse_annotation

    image = np.full((40, 40), 100.0)
    image[:4, :] = 400.0
    image[12:15, 10:20] = 400.0  # 30 fat pixels inside ES_L
    d = _annotation_dict()
    d["samples"] = [
        {"class": "fat", "vertices": square(0, 2, 3, 38)},
        {"class": "muscle", "vertices": square(25, 25, 30, 30)},
    ]
    d["patient_id"], d["observer_id"] = "007", "A"
    return image, parse_annotation(d)


class _FakeMethods(types.ModuleType):
    """Stands for napari_pvm.core.fat_methods with the agreed interface:
    fat = pixels above the half-way value; dixon: fraction = F / (W + F)."""

    METHODS = ("forest", "threshold", "gmm", "dixon")

    def __init__(self):
        super().__init__("napari_pvm.core.fat_methods")
        self.calls = []

        @dataclasses.dataclass(frozen=True)
        class FatResult:
            fat: np.ndarray
            method: str
            settings: dict
            fat_muscle_contrast: float
            qc_flags: tuple
            fat_fraction: np.ndarray

        self.FatResult = FatResult

    def classify_fat(
        self, image, labels, *, within, spacing, method="forest", classifier=None, water=None, fat=None, progress=None
    ):
        self.calls.append(dict(method=method, classifier=classifier, spacing=spacing, water=water))
        fraction = None if water is None else fat / (water + fat)
        mask = (fraction > 0.5) if fraction is not None else image > 250
        settings = (
            {
                "features_preset": classifier.preset,
                "n_trees": classifier.n_trees,
                "seed": classifier.seed,
                "class_balance": classifier.class_balance,
            }
            if method == "forest"
            else {}
        )
        return self.FatResult(
            fat=mask & within,
            method=f"{method}/test",
            settings=settings,
            fat_muscle_contrast=4.0,
            qc_flags=("low_contrast",) if method == "gmm" else (),
            fat_fraction=fraction,
        )


@pytest.fixture
def fake_methods(monkeypatch):
    fake = _FakeMethods()
    monkeypatch.setitem(sys.modules, "napari_pvm.core.fat_methods", fake)
    return fake


def _check_v2_row(row):
    from napari_pvm.core.store import validate_row

    checked = validate_row(row)
    assert list(row) == [c for c in schema.COLUMNS if c != "row_id"]
    return checked


def test_threshold_row_has_empty_settings_origins_and_vb(fake_methods):
    from napari_pvm.core.measure import measure_annotation

    image, ann = _case()
    m = measure_annotation(_volume(image), ann, method="threshold")
    row = _check_v2_row(m.row)
    assert fake_methods.calls[0]["method"] == "threshold" and fake_methods.calls[0]["spacing"] == (0.8, 0.5)
    assert row["method"] == "threshold/test"
    assert (row["features_preset"], row["n_trees"], row["seed"], row["class_balance"]) == ("", None, None, "")
    assert row["outline_origin"] == "PS_R:proposed;ES_L:edited;MF_L:drawn"
    assert row["rois_present"] == "PS_R;ES_L;MF_L"
    pixel_cm2 = 0.8 * 0.5 / 100
    assert row["VB_total_area_cm2"] == pytest.approx(5 * 10 * pixel_cm2)
    assert row["ES_L_total_area_cm2"] == pytest.approx(100 * pixel_cm2)
    assert row["ES_L_fi_pct"] == pytest.approx(30.0)  # 30 of 100 pixels
    assert row["fat_muscle_contrast"] == 4.0 and row["qc_flags"] == ""
    assert all(row[c] is None for c in schema.MEAN_FF_COLUMNS)
    gmm = measure_annotation(_volume(image), ann, method="gmm").row
    assert gmm["qc_flags"] == "low_contrast"


def test_forest_row_records_the_settings_and_the_classifier_is_passed(fake_methods):
    from napari_pvm.core.classify import FatClassifier
    from napari_pvm.core.measure import measure_annotation

    image, ann = _case()
    row = _check_v2_row(measure_annotation(_volume(image), ann, n_trees=7, seed=3).row)
    clf = fake_methods.calls[0]["classifier"]
    assert isinstance(clf, FatClassifier) and (clf.n_trees, clf.seed) == (7, 3)
    assert (row["method"], row["n_trees"], row["seed"]) == ("forest/test", 7, 3)
    assert row["features_preset"] == clf.preset and row["class_balance"] == str(clf.class_balance).lower()


def test_dixon_mean_fat_fraction_is_pooled_over_pixels(fake_methods):
    from napari_pvm.core.measure import measure_annotation

    image, ann = _case()
    water = np.full((40, 40), 90.0)
    fat = np.full((40, 40), 10.0)  # fraction 0.1 everywhere ...
    water[10:20, 10:20], fat[10:20, 10:20] = 40.0, 60.0  # ... 0.6 in ES_L
    m = measure_annotation(_volume(image), ann, method="dixon", water=_volume(water), fat=_volume(fat))
    row = _check_v2_row(m.row)
    assert row["ES_L_mean_ff_pct"] == pytest.approx(60.0) and row["ES_L_fi_pct"] == pytest.approx(100.0)
    assert row["MF_L_mean_ff_pct"] == pytest.approx(10.0)
    # ES_L 100 px at 60 %, MF_L 60 px at 10 %: pooled by pixels, not averaged
    assert row["ESMF_L_mean_ff_pct"] == pytest.approx((100 * 60 + 60 * 10) / 160)
    assert row["PS_R_mean_ff_pct"] == pytest.approx(10.0) and row["PS_B_mean_ff_pct"] is None
    assert row["n_trees"] is None and row["method"] == "dixon/test"
    assert m.fat_fraction is not None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="dixon"), "method dixon needs the water and fat images"),
        (dict(method="dixon", water="w"), "give both the water and the fat image"),
        (dict(method="threshold", water="w", fat="f"), "used only by method dixon"),
        (dict(method="svm"), "unknown FI% method 'svm'; use one of forest, threshold, gmm, dixon"),
        (dict(method="dixon", water=(41, 40), fat=(40, 40)), "water image test has 1 slices of 41×40"),
        (dict(method="dixon", water=(40, 40), fat=(40, 40, "spacing")), "fat image test has voxel spacing"),
    ],
)
def test_bad_method_or_dixon_images_are_refused(fake_methods, kwargs, message):
    from napari_pvm.core.errors import PvmError
    from napari_pvm.core.measure import measure_annotation

    def image(spec):
        if isinstance(spec, tuple):
            spacing = (3.0, 0.8, 0.6) if spec[-1] == "spacing" else (3.0, 0.8, 0.5)
            return _volume(np.ones(spec[:2]), spacing=spacing)
        return _volume(np.ones((40, 40)))

    kwargs = {k: (image(v) if k in ("water", "fat") else v) for k, v in kwargs.items()}
    img, ann = _case()
    with pytest.raises(PvmError, match=message):
        measure_annotation(_volume(img), ann, **kwargs)
    assert not fake_methods.calls


def test_without_fat_methods_the_forest_still_measures(monkeypatch):
    from napari_pvm.core.errors import PvmError
    from napari_pvm.core.measure import available_methods, measure_annotation

    monkeypatch.setitem(sys.modules, "napari_pvm.core.fat_methods", None)
    assert available_methods() == ("forest",)
    image, ann = _case()
    m = measure_annotation(_volume(image), ann, n_trees=20)
    row = _check_v2_row(m.row)
    from napari_pvm.core.classify import METHOD

    assert row["method"] == METHOD and row["n_trees"] == 20
    assert row["ES_L_fi_pct"] == pytest.approx(30.0, abs=3.0)
    assert row["outline_origin"] == "PS_R:proposed;ES_L:edited;MF_L:drawn"
    with pytest.raises(PvmError, match="unknown FI% method 'threshold'"):
        measure_annotation(_volume(image), ann, method="threshold")


def test_row_identity_predicts_the_method_and_settings(fake_methods):
    from napari_pvm.core.measure import MethodSettings, classifier_for, row_identity

    image, ann = _case()
    volume = _volume(image)
    forest = row_identity(volume, ann, classifier_for({"n_trees": 9}).params)
    assert forest["n_trees"] == 9 and forest["features_preset"]
    other = classifier_for({"n_trees": 9}, method="gmm")
    assert other == MethodSettings("gmm")
    ident = row_identity(volume, ann, other.params)
    assert ident["method"] == "gmm" and (ident["n_trees"], ident["features_preset"]) == (None, "")
    with pytest.raises(AnnotationError, match="n_trees must be an integer"):
        classifier_for({"n_trees": "many"}, method="gmm")
