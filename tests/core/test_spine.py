"""Spine measures (contract 8): VBQ, the signed local kyphotic angle, the
napari-pvm.spine/1 file and the sagittal phantom's exact truth."""

import json

import numpy as np
import pytest

from napari_pvm.core.errors import AnnotationError, ImageReadError
from napari_pvm.core.phantom_sagittal import MARROW_SIGNAL, SAGITTAL_SIGNAL, make_sagittal_phantom
from napari_pvm.core.spine import (
    CSF_MAX_IQR_SHARE,
    line_angle_deg,
    measure_spine,
    parse_spine_annotation,
    read_spine_annotation,
    roi_median,
    write_spine_annotation,
)


@pytest.fixture(scope="module")
def clean_phantom():
    return make_sagittal_phantom(noise=0, shading=0, seed=0)


@pytest.fixture(scope="module")
def noisy_anisotropic():
    # anisotropic pixels (rows 0.5 mm, columns 1.2 mm), lordotic angle, seed 7
    return make_sagittal_phantom(spacing=(0.5, 1.2), kyphosis_deg=-8.5, seed=7)


def measure(ph, obj=None):
    ann = parse_spine_annotation(obj or ph.annotation)
    return measure_spine(ph.data[ph.mid_index], ann, spacing=ph.spacing[1:])


# ------------------------------------------------------------ VBQ


def test_roi_median_uses_the_pixel_centre_rule():
    image = np.arange(36.0).reshape(6, 6)
    # a triangle whose hypotenuse passes between pixel centres: centres (1,1), (2,1), (2,2) inside
    tri = [[0.6, 0.6], [2.4, 0.6], [2.4, 2.4]]
    median, values = roi_median(image, tri)
    assert sorted(values.tolist()) == [7.0, 13.0, 14.0]
    assert median == 13.0


def test_clean_phantom_medians_equal_the_set_signals(clean_phantom):
    result = measure(clean_phantom)
    assert result.si == {lv: float(MARROW_SIGNAL[lv]) for lv in ("L1", "L2", "L3", "L4")}
    assert result.si_csf == SAGITTAL_SIGNAL["csf"]
    assert result.levels == ("L1", "L3", "L4")  # L2 fractured, excluded
    assert result.vbq == 310 / 100 == clean_phantom.truth["vbq"]
    assert result.excluded == {"L2": "fracture"}
    assert result.warnings == ()


def test_noisy_phantom_vbq_equals_independent_truth(noisy_anisotropic):
    result = measure(noisy_anisotropic)
    truth = noisy_anisotropic.truth
    assert result.vbq == pytest.approx(truth["vbq"], rel=1e-9)
    assert result.vbq != pytest.approx(truth["vbq_set"], rel=1e-6)  # the noise matters: the truth is recomputed
    for level, si in truth["vbq_si"].items():
        assert result.si[level] == pytest.approx(si, rel=1e-12)


def test_fewer_than_two_levels_warns_and_all_excluded_is_refused(clean_phantom):
    obj = json.loads(json.dumps(clean_phantom.annotation))
    obj["excluded"] += [{"level": "L3", "reason": "cement"}, {"level": "L4", "reason": "haemangioma"}]
    result = measure(clean_phantom, obj)
    assert result.levels == ("L1",) and result.vbq == 3.0
    assert any("only 1 vertebra" in w for w in result.warnings)
    obj["excluded"].append({"level": "L1", "reason": "fracture"})
    with pytest.raises(AnnotationError, match="every vertebral ROI is excluded"):
        measure(clean_phantom, obj)


def test_csf_roi_over_the_cord_is_flagged(clean_phantom):
    obj = json.loads(json.dumps(clean_phantom.annotation))
    dr, dc = clean_phantom.spacing[1:]
    # at L1 the conus sits in the canal's middle (85–99 mm deep): an ROI across the canal catches it
    r0, r1 = 45.0 / dr, 55.0 / dr
    c0, c1 = 86.0 / dc, 98.0 / dc
    obj["csf"] = {"level": "L1", "vertices": [[r0, c0], [r0, c1], [r1, c1], [r1, c0]]}
    result = measure(clean_phantom, obj)
    assert result.csf_iqr_share > CSF_MAX_IQR_SHARE
    assert any("CSF ROI not homogeneous" in w for w in result.warnings)
    assert any("instead of L3" in w for w in result.warnings)


def test_roi_on_another_slice_is_flagged(clean_phantom):
    obj = json.loads(json.dumps(clean_phantom.annotation))
    obj["vertebrae"][0]["slice_index"] = clean_phantom.mid_index + 1
    result = measure(clean_phantom, obj)
    assert any("another slice" in w and "L1" in w for w in result.warnings)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda o: o["vertebrae"][0].update(vertices=[[10, 10], [20, 20]]), "at least 3 distinct vertices"),
        (lambda o: o.pop("csf"), "CSF ROI is missing"),
        (lambda o: o["angles"][0].update(upper=[[5, 5], [5, 5]]), "two points are equal"),
        (lambda o: o["vertebrae"][1].update(level="L5"), "VBQ uses L1, L2, L3, L4 only"),
        (lambda o: o["excluded"][0].update(reason=""), "needs a reason"),
        (lambda o: o.update(format="napari-pvm.annotation/2"), "format tag"),
        (lambda o: o.update(format="napari-pvm.annotation/1"), "is a muscle annotation"),
        (lambda o: [o.update(vertebrae=[]), o.pop("csf"), o.update(angles=[])], "neither ROIs nor angles"),
    ],
)
def test_bad_annotations_get_one_clear_error(clean_phantom, edit, match):
    obj = json.loads(json.dumps(clean_phantom.annotation))
    edit(obj)
    with pytest.raises(AnnotationError, match=match):
        measure(clean_phantom, obj)


def test_annotation_with_only_angles_or_only_rois(clean_phantom):
    obj = json.loads(json.dumps(clean_phantom.annotation))
    angles_only = {"format": obj["format"], "slice_index": 2, "angles": obj["angles"]}
    result = measure(clean_phantom, angles_only)
    assert result.vbq is None and result.angles["local_kyphosis"] == pytest.approx(12.0, abs=1e-9)
    obj["angles"] = []
    result = measure(clean_phantom, obj)
    assert result.angles == {} and result.vbq == pytest.approx(3.1, rel=1e-12)


# ------------------------------------------------------------ angles


def test_an_angle_line_outside_the_slice_is_refused(clean_phantom):
    obj = json.loads(json.dumps(clean_phantom.annotation))
    obj["angles"][0]["upper"] = [[1e15, 0], [5, 10]]  # was measured (-39°) and stored
    with pytest.raises(AnnotationError, match="an end of the upper line lies outside the"):
        measure(clean_phantom, obj)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.5, 1.2), (1.2, 0.5)])
@pytest.mark.parametrize("true_deg", [14.0, -6.5])
def test_angle_is_measured_in_mm_with_its_sign(spacing, true_deg):
    dr, dc = spacing
    # lines built in mm: the upper one tilted up towards posterior by half the angle
    half = np.radians(true_deg / 2)
    upper_mm = np.array([[40.0, 10.0], [40.0 - 30 * np.tan(half), 40.0]])
    lower_mm = np.array([[80.0, 10.0], [80.0 + 30 * np.tan(half), 40.0]])
    upper, lower = upper_mm / spacing, lower_mm / spacing
    assert line_angle_deg(upper, lower, spacing=spacing) == pytest.approx(true_deg, abs=1e-9)
    # which line is upper is decided by position, not by the argument order
    assert line_angle_deg(lower, upper, spacing=spacing) == pytest.approx(true_deg, abs=1e-9)
    # the direction in which each line was drawn does not matter
    assert line_angle_deg(upper[::-1], lower[::-1], spacing=spacing) == pytest.approx(true_deg, abs=1e-9)
    if spacing[0] != spacing[1]:  # the test can fail: a swapped spacing gives another angle
        assert abs(line_angle_deg(upper, lower, spacing=spacing[::-1]) - true_deg) > 1.0


@pytest.mark.parametrize("kw", [dict(), dict(spacing=(0.5, 1.2), kyphosis_deg=-8.5, seed=7)], ids=["iso", "aniso"])
def test_phantom_angle_equals_its_generation_parameter(kw, clean_phantom, noisy_anisotropic):
    ph = clean_phantom if not kw else noisy_anisotropic
    assert measure(ph).angles["local_kyphosis"] == pytest.approx(ph.truth["local_kyphosis_deg"], abs=1e-9)


def test_the_acute_angle_is_taken_between_steep_lines():
    # two lines 170° apart as drawn are 10° apart as lines
    a = [[0.0, 0.0], [0.0, 10.0]]
    b = [[20.0, 10.0], [20.0 + 10 * np.tan(np.radians(10)), 0.0]]
    assert abs(line_angle_deg(a, b)) == pytest.approx(10.0, abs=1e-9)


# ------------------------------------------------------------ file format


def test_spine_annotation_round_trip_keeps_unknown_keys(tmp_path, clean_phantom):
    obj = json.loads(json.dumps(clean_phantom.annotation))
    obj["comment"] = {"by": "a later version"}
    obj["patient_id"] = "007"
    path = tmp_path / "case.pvm.json"
    write_spine_annotation(path, parse_spine_annotation(obj))
    back = read_spine_annotation(path)
    assert back.extra == {"comment": {"by": "a later version"}}
    assert back.patient_id == "007"
    assert back.to_dict()["angles"] == obj["angles"]  # full precision
    np.testing.assert_array_equal(back.vertebrae["L1"], np.asarray(obj["vertebrae"][0]["vertices"]))
    assert back.excluded == {"L2": "fracture"}


def test_invalid_annotation_is_not_written(tmp_path):
    path = tmp_path / "bad.pvm.json"
    with pytest.raises(AnnotationError):
        write_spine_annotation(
            path, {"format": "napari-pvm.spine/1", "angles": [{"upper": [[1, 1], [1, 1]], "lower": [[5, 1], [5, 9]]}]}
        )
    assert list(tmp_path.iterdir()) == []


def test_bad_json_file(tmp_path):
    path = tmp_path / "x.pvm.json"
    path.write_text("{not json")
    with pytest.raises(AnnotationError, match="not valid JSON"):
        read_spine_annotation(path)


# ------------------------------------------------------------ rows and images


def test_spine_row_refuses_an_axial_image(phantom_files, clean_phantom):
    from napari_pvm.core.io import read_volume
    from napari_pvm.core.spine import spine_row

    volume = read_volume(phantom_files["image"])
    ann = parse_spine_annotation({**clean_phantom.annotation})
    with pytest.raises(ImageReadError, match="axial image; spine needs a sagittal image"):
        spine_row(volume, ann)


def test_sagittal_phantom_files_are_deterministic_and_read_sagittal(tmp_path):
    from napari_pvm.core.io import read_volume
    from napari_pvm.core.phantom_sagittal import write_sagittal_phantom

    a = write_sagittal_phantom(tmp_path / "a", seed=3, spacing=(1.0, 1.0))
    b = write_sagittal_phantom(tmp_path / "b", seed=3, spacing=(1.0, 1.0))
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes()
    volume = read_volume(a["image"])
    assert volume.plane == "sagittal" and volume.pixel_spacing == (1.0, 1.0)
    ph = make_sagittal_phantom(seed=3, spacing=(1.0, 1.0))
    np.testing.assert_array_equal(volume.data, ph.data)
