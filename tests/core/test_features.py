"""Feature presets (TWS's default stack), crop exactness, normalisation, cache."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_pvm.core import features as F


@pytest.fixture(scope="module")
def noise_image():
    rng = np.random.default_rng(1)
    img = ndi.gaussian_filter(rng.random((96, 112)), 1.5) * 1000
    return img.astype(np.float32)


@pytest.fixture(scope="module")
def noise_maps(noise_image):
    return F.compute_features(noise_image, "weka")


# ------------------------------------------------------------------ names
def test_weka_preset_is_tws_default_stack():
    names = F.feature_names("weka")
    assert len(names) == 76
    assert names[:2] == ("original", "Sobel_filter_0.0")
    assert names[2:10] == tuple(
        n.format(s="0.0")
        for n in (
            "Hessian_{s}",
            "Hessian_Trace_{s}",
            "Hessian_Determinant_{s}",
            "Hessian_Eigenvalue_1_{s}",
            "Hessian_Eigenvalue_2_{s}",
            "Hessian_Orientation_{s}",
            "Hessian_Square_Eigenvalue_Difference_{s}",
            "Hessian_Normalized_Eigenvalue_Difference_{s}",
        )
    )
    blurs = [n for n in names if n.startswith("Gaussian_blur_")]
    assert blurs == [f"Gaussian_blur_{s:.1f}" for s in (1, 2, 4, 8, 16)]
    dogs = [n for n in names if n.startswith("Difference_of_gaussians_")]
    assert len(dogs) == 10 and "Difference_of_gaussians_16.0_1.0" in dogs
    last_hessian_2 = names.index("Hessian_Normalized_Eigenvalue_Difference_2.0")
    assert names.index("Difference_of_gaussians_2.0_1.0") == last_hessian_2 + 1
    assert names[-6:] == tuple(f"Membrane_projections_{k}_19_1" for k in range(6))
    assert sum(n.startswith("Hessian") for n in names) == 6 * 8
    assert sum(n.startswith("Sobel_filter") for n in names) == 6


def test_other_presets_and_unknown_name():
    assert len(F.feature_names("weka-s4")) == 1 + 9 + 3 * 10 + 3 + 6
    assert len(F.feature_names("weka-s2")) == 1 + 9 + 2 * 10 + 1 + 6
    with pytest.raises(ValueError, match="unknown feature preset"):
        F.feature_names("ilastik")


# ------------------------------------------------------------ definitions
def test_shapes_dtype_finite(noise_maps, noise_image):
    assert noise_maps.shape == (76,) + noise_image.shape
    assert noise_maps.dtype == np.float32
    assert np.all(np.isfinite(noise_maps))
    np.testing.assert_array_equal(noise_maps[0], noise_image)


def test_gaussian_blur_uses_the_0_4_factor(noise_image, noise_maps):
    names = F.feature_names("weka")
    for s in (1, 4, 16):
        want = ndi.gaussian_filter(noise_image, 0.4 * s, mode="nearest", truncate=F._TRUNCATE)
        got = noise_maps[names.index(f"Gaussian_blur_{s:.1f}")]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_difference_of_gaussians_is_small_minus_large(noise_maps):
    names = F.feature_names("weka")
    dog = noise_maps[names.index("Difference_of_gaussians_8.0_2.0")]
    want = noise_maps[names.index("Gaussian_blur_2.0")] - noise_maps[names.index("Gaussian_blur_8.0")]
    np.testing.assert_allclose(dog, want, atol=1e-3)


def test_sobel_and_hessian_follow_tws_formulas():
    rows, cols = np.mgrid[0:40, 0:40].astype(np.float32)
    names = F.feature_names("weka")
    inner = (slice(5, -5), slice(5, -5))
    # a ramp: TWS's 3 × 3 Sobel gives 8 × the slope per axis
    maps = F.compute_features(rows + cols, "weka")
    np.testing.assert_allclose(maps[names.index("Sobel_filter_0.0")][inner], np.hypot(8, 8), rtol=1e-5)
    # a parabola along the rows: s_xx = 128, s_xy = s_yy = 0
    maps = F.compute_features(rows**2, "weka")
    a = 128.0

    def at(name):
        return maps[names.index(name)][inner]

    np.testing.assert_allclose(at("Hessian_0.0"), a, rtol=1e-5)
    np.testing.assert_allclose(at("Hessian_Trace_0.0"), a, rtol=1e-5)
    np.testing.assert_allclose(at("Hessian_Determinant_0.0"), 0.0, atol=1e-2)
    # TWS: trace / 2 ± sqrt((4 b² + (a - d)²) / 2)
    np.testing.assert_allclose(at("Hessian_Eigenvalue_1_0.0"), a / 2 + np.sqrt(a * a / 2), rtol=1e-5)
    np.testing.assert_allclose(at("Hessian_Eigenvalue_2_0.0"), a / 2 - np.sqrt(a * a / 2), rtol=1e-5)
    np.testing.assert_allclose(at("Hessian_Orientation_0.0"), 0.0, atol=1e-6)
    np.testing.assert_allclose(at("Hessian_Square_Eigenvalue_Difference_0.0"), a**4, rtol=1e-5)
    np.testing.assert_allclose(at("Hessian_Normalized_Eigenvalue_Difference_0.0"), a**2, rtol=1e-5)


def test_membrane_kernels_and_projections(noise_maps):
    taps = F._membrane_offsets(19, 10)
    assert len(taps) == 10
    # angle 0: the two middle columns of the 19 × 19 patch (membraneSize 1)
    first = {tuple(t) for t in taps[0]}
    assert first == {(dr, dc) for dr in range(-9, 10) for dc in (0, 1)}
    assert all(len(t) >= 30 for t in taps)
    mean, mx, mn, total, sd, median = noise_maps[-6:]
    assert np.all(mx >= mean - 1e-3) and np.all(mn <= mean + 1e-3)
    assert np.all((median >= mn - 1e-3) & (median <= mx + 1e-3))
    np.testing.assert_allclose(total, 10 * mean, rtol=1e-5)
    assert np.all(sd >= 0)


# ------------------------------------------------------------------ crops
@pytest.mark.parametrize("region", [(30, 60, 40, 90), (0, 20, 0, 112), (70, 96, 100, 112)])
def test_crop_equals_whole_slice(noise_image, noise_maps, region):
    r0, r1, c0, c1 = region
    got = F.compute_features(noise_image, "weka", region=region)
    np.testing.assert_array_equal(got, noise_maps[:, r0:r1, c0:c1])


def test_region_outside_image_is_refused(noise_image):
    with pytest.raises(ValueError, match="outside"):
        F.compute_features(noise_image, region=(0, 200, 0, 10))
    with pytest.raises(ValueError, match="2D"):
        F.compute_features(np.zeros((3, 8, 8)))


# ----------------------------------------------------------- normalisation
@pytest.mark.parametrize("preset", ["weka", "weka-s2"])
def test_normalise_equals_features_of_the_mapped_image(noise_image, preset):
    scale, offset = 1.0 / 700.0, -0.3
    raw = F.compute_features(noise_image, preset)
    direct = F.compute_features(noise_image.astype(np.float64) * scale + offset, preset)
    mapped = F.normalise(raw, preset, scale, offset)
    names = F.feature_names(preset)
    for k, name in enumerate(names):
        tol = 1e-4 * max(1.0, float(np.abs(direct[k]).max()))
        if "Orientation" in name:  # scale-free, but acos near ±π/2 amplifies float32 rounding
            tol = 2e-3
        np.testing.assert_allclose(mapped[k], direct[k], atol=tol, err_msg=name)


def test_normalise_per_pixel_scale_and_checks(noise_maps):
    scale = np.full(noise_maps.shape[1:], 2.0)
    np.testing.assert_allclose(F.normalise(noise_maps, "weka", scale, 0.0), F.normalise(noise_maps, "weka", 2.0, 0.0))
    with pytest.raises(ValueError, match="positive"):
        F.normalise(noise_maps, "weka", -1.0, 0.0)
    with pytest.raises(ValueError, match="maps"):
        F.normalise(noise_maps[:10], "weka", 1.0, 0.0)


# ------------------------------------------------------------------ cache
def test_cache_is_keyed_by_content_and_grows_windows(noise_image, noise_maps):
    cache = F.FeatureCache()
    a = cache.get(noise_image, "weka", (10, 20, 10, 20))
    assert cache.misses == 1
    same = cache.get(noise_image.copy(), "weka", (12, 18, 12, 18))  # another object, same bytes
    assert same is a and cache.hits == 1
    grown = cache.get(noise_image, "weka", (40, 50, 40, 50))
    assert grown.window == (10, 50, 10, 50) and cache.misses == 2
    np.testing.assert_array_equal(grown.at(np.array([45, 10]), np.array([41, 49])), noise_maps[:, [45, 10], [41, 49]].T)
    other = noise_image.copy()
    other[0, 0] += 1
    cache.get(other, "weka", (10, 20, 10, 20))
    assert cache.misses == 3 and len(cache) == 2


def test_cache_is_bounded(noise_image):
    cache = F.FeatureCache(max_bytes=1)
    for k in range(3):
        cache.get(noise_image + k, "weka-s2", (0, 8, 0, 8))
    assert len(cache) == 1
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0


def test_image_key_depends_on_content_shape_dtype_preset(noise_image):
    k = F.image_key(noise_image, "weka")
    assert k == F.image_key(noise_image.copy(), "weka")
    assert k != F.image_key(noise_image, "weka-s2")
    assert k != F.image_key(noise_image.astype(np.float64), "weka")
    assert k != F.image_key(noise_image.reshape(112, 96), "weka")
