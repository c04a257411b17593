"""Outlines traced from the real MuscleMap masks reproduce the documented areas."""

import numpy as np
import pytest

from napari_pvm.core.io import read_volume
from napari_pvm.core.measure import measure_masks, outline_masks

# PROVENANCE.md of musclemap_lumbar_axial, slice 16 (pixel count × 0.9375² / 100)
DOCUMENTED_CM2 = {"MF_R": 6.15, "MF_L": 5.60, "ES_R": 19.45, "ES_L": 19.98, "PS_R": 8.23, "PS_L": 8.32}
LABELS = {"MF_R": 1, "MF_L": 2, "ES_R": 3, "ES_L": 4, "PS_R": 5, "PS_L": 6}


def trace(mask):
    """The outer contour of the largest component, as [row, col] vertices, the
    way an observer would trace it along the muscle's edge."""
    from skimage.measure import find_contours, label

    lab = label(mask)
    largest = lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1
    contours = find_contours(np.pad(largest, 1).astype(float), 0.5)
    outer = max(contours, key=len) - 1.0
    return outer[::2]  # an observer clicks fewer vertices than the pixel edge has


@pytest.mark.real
def test_traced_outlines_match_documented_areas(real_data):
    folder = real_data / "musclemap_lumbar_axial"
    labels = read_volume(folder / "image_dseg_musclemap_pred.nii.gz")
    k16 = labels.slice(16)
    rois = {key: trace(k16 == value) for key, value in LABELS.items()}
    masks = outline_masks(rois, k16.shape)
    out = measure_masks(masks, np.zeros(k16.shape, bool), spacing=labels.pixel_spacing)
    for key, documented in DOCUMENTED_CM2.items():
        assert out[f"{key}_total_area_cm2"] == pytest.approx(documented, rel=0.02), key
    # and the side convention: the patient's left psoas is on the viewer's right
    assert np.mean(rois["PS_L"][:, 1]) > k16.shape[1] / 2
