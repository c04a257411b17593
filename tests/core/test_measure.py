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
