"""Per-patient calibration (core.calibration) on a synthetic slice with a
known coil shading and known sub-pixel fat: the shading inside the outlines
is recovered where a quadratic alone cannot follow it, and the half-way
threshold then counts the fat of the truth's definition."""

import numpy as np
import pytest

from napari_pvm.core import calibration as C
from napari_pvm.core.fat_methods import classify_fat

LEAN, FAT = 100.0, 350.0


def _streaks(shape, boxes, *, seed, ss=5, n=60):
    """Fat area fraction per pixel: random streaks 0.7-3 px wide drawn on an
    ``ss`` times finer grid inside the boxes."""
    rng = np.random.default_rng(seed)
    fine = np.zeros((shape[0] * ss, shape[1] * ss), bool)
    rr, cc = np.mgrid[0 : fine.shape[0], 0 : fine.shape[1]] + 0.5
    for r0, r1, c0, c1 in boxes:
        for _ in range(n):
            r, c = rng.uniform(r0, r1) * ss, rng.uniform(c0, c1) * ss
            ang, half_len, half_w = rng.uniform(0, np.pi), rng.uniform(3, 12) * ss, rng.uniform(0.35, 1.5) * ss
            along = (rr - r) * np.sin(ang) + (cc - c) * np.cos(ang)
            across = (rr - r) * np.cos(ang) - (cc - c) * np.sin(ang)
            fine |= (np.abs(along) <= half_len) & (np.abs(across) <= half_w)
    inside = np.zeros(shape, bool)
    for r0, r1, c0, c1 in boxes:
        inside[r0:r1, c0:c1] = True
    phi = fine.reshape(shape[0], ss, shape[1], ss).mean(axis=(1, 3))
    return np.where(inside, phi, 0.0)


@pytest.fixture(scope="module")
def slice_with_bump():
    """Two muscles (rows 60-130) in a body with posterior subcutaneous fat;
    the coil shading is a smooth quadratic times a local 9 % dip over the
    medial half of the right-hand muscle (what a quadratic cannot follow)."""
    shape = (200, 200)
    boxes = [(60, 130, 40, 90), (60, 130, 110, 160)]
    phi = _streaks(shape, boxes, seed=3)
    within = np.zeros(shape, bool)
    for r0, r1, c0, c1 in boxes:
        within[r0:r1, c0:c1] = True
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]] / 200.0
    shading = np.exp(0.35 * rr - 0.2 * (cc - 0.5) ** 2)  # brighter posteriorly, near the coil
    shading *= 1.0 - 0.09 * np.exp(-((rr * 200 - 95) ** 2 + (cc * 200 - 125) ** 2) / (2 * 14.0**2))
    tissue = np.full(shape, LEAN)
    tissue[140:188, 15:185] = FAT  # subcutaneous fat behind the muscles, reaching the skin
    tissue = np.where(within, LEAN * (1 - phi) + FAT * phi, tissue)
    body = np.zeros(shape, bool)
    body[10:190, 10:190] = True
    rng = np.random.default_rng(0)
    image = np.where(body, shading * tissue, 0.0) * (1 + 0.02 * rng.standard_normal(shape))
    labels = np.zeros(shape, np.uint8)
    labels[150:160, 90:110] = C.FAT
    labels[70:76, 60:66] = C.MUSCLE
    return image.astype(np.float32), labels, within, shading, phi


def test_shading_recovered_inside_the_outlines(slice_with_bump):
    image, labels, within, shading, phi = slice_with_bump
    cal = C.calibrate(image, labels, within=within)
    assert cal.source == "outlines" and cal.local is not None
    rows, cols = np.nonzero(within & (phi < 0.05))
    ratio = cal.field(rows, cols) / shading[rows, cols]
    ratio /= np.median(ratio)
    # within 2.5 % at 95 % of the lean pixels, the dip included (the
    # quadratic alone is off by more than 5 % at 5 % of them)
    assert np.percentile(np.abs(ratio - 1.0), 95) < 0.025
    assert abs(cal.contrast - FAT / LEAN) < 0.05 * FAT / LEAN


@pytest.mark.parametrize("method", ["threshold", "gmm"])
def test_half_way_counts_the_true_fat(slice_with_bump, method):
    """FI% per muscle within 1 point of the share of pixels more than half
    fat, the truth's definition, under a shading that is not quadratic."""
    image, labels, within, _, phi = slice_with_bump
    res = classify_fat(image, labels, within=within, spacing=(1.0, 1.0), method=method)
    for c0, c1 in ((40, 90), (110, 160)):
        m = np.zeros_like(within)
        m[60:130, c0:c1] = True
        truth = 100 * (phi[m] > 0.5).mean()
        assert 10 < truth < 60
        assert abs(100 * res.fat[m].mean() - truth) < 1.0, (c0, 100 * res.fat[m].mean(), truth)
