"""FI% methods behind classify_fat: bad input, accuracy on phantoms with
exact truth, the Dixon fat fraction on a Dixon phantom, quality flags."""

import numpy as np
import pytest

from napari_pvm.core.classify import FatClassifier, labels_from_samples
from napari_pvm.core.errors import ClassifierError, PvmError
from napari_pvm.core.fat_methods import METHOD_IDS, METHODS, FatResult, classify_fat
from napari_pvm.core.phantom import make_phantom

SPACING = (1.2, 1.2)


@pytest.fixture(scope="module")
def phantom():
    ph = make_phantom(seed=2, spacing=1.2, supersample=5, fat_fractions={"PS": 0.1, "ES": 0.3, "MF": 0.45})
    labels = labels_from_samples(ph.samples, ph.l4.shape)
    within = np.logical_or.reduce(list(ph.masks.values()))
    return ph, labels, within


def fi_error(ph, fat, key):
    m = ph.masks[key]
    return 100.0 * fat[m].mean() - 100.0 * (ph.fat_share[m] > 0.5).mean()


def dixon_images(ph, *, fat_to_water=3.0, noise=0.01, seed=0):
    """Water and fat images with the phantom's exact fat area fraction per
    pixel, a smooth coil shading (±25 %) and noise: pure fat gives
    ``fat_to_water`` times the signal of the same volume of lean muscle."""
    shape = ph.l4.shape
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]] / np.asarray(shape).reshape(2, 1, 1)
    shading = 1.0 + 0.25 * (rr - 0.5) - 0.15 * (cc - 0.5) ** 2
    tissue = ph.l4 > 0.1 * ph.l4.max()  # inside the body
    phi = np.where(tissue, ph.fat_share, 0.0)
    # subcutaneous fat and other bright tissue of the phantom count as fat
    outside = tissue & ~np.logical_or.reduce(list(ph.masks.values()))
    bright = ph.l4 > 0.5 * (np.median(ph.l4[ph.fat_share > 0.99]) + np.median(ph.l4[tissue & (ph.fat_share == 0)]))
    phi = np.where(outside, bright.astype(float), phi)
    rng = np.random.default_rng(seed)
    water = shading * (1.0 - phi) * tissue * 100.0 + rng.normal(0, noise * 100.0, shape)
    fat = shading * phi * fat_to_water * 100.0 + rng.normal(0, noise * 100.0, shape)
    return water, fat, phi


# ------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "otsu"}, "unknown FI% method 'otsu'; choose one of forest, threshold, gmm, dixon"),
        ({"method": "dixon"}, "dixon method needs the water and fat images"),
        ({"method": "threshold", "water": np.ones((4, 4)), "fat": np.ones((4, 4))}, "only by the dixon method"),
        ({"spacing": (0.0, 1.0)}, "spacing must be two positive numbers"),
        ({"within": np.ones((5, 5), bool)}, "outline mask has shape"),
        ({"within": "empty"}, "no pixel lies inside the outlines"),
    ],
)
def test_bad_input_is_refused_clearly(phantom, kwargs, match):
    ph, labels, within = phantom
    args = {"within": within, "spacing": SPACING, "method": "threshold"}
    args.update(kwargs)
    if isinstance(args["within"], str):
        args["within"] = np.zeros_like(within)
    with pytest.raises(PvmError, match=match):
        classify_fat(ph.l4, labels, **args)


@pytest.mark.parametrize("method", ["forest", "threshold", "gmm"])
def test_single_class_samples_are_refused(phantom, method):
    ph, labels, within = phantom
    with pytest.raises(ClassifierError, match="no muscle sample"):
        classify_fat(ph.l4, np.where(labels == 2, 2, 0).astype(np.uint8), within=within, spacing=SPACING, method=method)


def test_dixon_images_of_another_shape_are_refused(phantom):
    ph, labels, within = phantom
    water, fat, _ = dixon_images(ph)
    with pytest.raises(ClassifierError, match="water image has shape"):
        classify_fat(ph.l4, labels, within=within, spacing=SPACING, method="dixon", water=water[:-1], fat=fat)


# --------------------------------------------------------------- results
@pytest.mark.parametrize("method", ["forest", "threshold", "gmm"])
def test_t2_methods_on_a_phantom(phantom, method):
    """Exact truth (area fraction per pixel > ½): every muscle within 3
    points for every T2 method, the mixture included (it counts a pixel by
    its tissue fraction between the muscle and fat component means, not by
    component membership, which missed partial-volume fat by 6–9 points).
    The result says what it is."""
    ph, labels, within = phantom
    res = classify_fat(
        ph.l4,
        labels,
        within=within,
        spacing=SPACING,
        method=method,
        classifier=FatClassifier(n_trees=60) if method == "forest" else None,
    )
    assert isinstance(res, FatResult) and res.method == METHOD_IDS[method]
    assert res.fat.dtype == bool and res.fat.shape == ph.l4.shape and not res.fat[~within].any()
    errors = {k: round(fi_error(ph, res.fat, k), 2) for k in ph.masks}
    assert max(map(abs, errors.values())) <= 3.0, errors
    assert res.fat_fraction is None and res.qc_flags == ()
    assert 3.0 < res.fat_muscle_contrast < 6.0
    if method == "forest":
        assert res.settings == {"features_preset": "weka", "n_trees": 60, "seed": 0, "class_balance": False}
    else:
        assert res.settings == {}


def test_dixon_fat_fraction_on_a_dixon_phantom(phantom):
    """The tissue fat fraction recovers the phantom's known fat area
    fraction per pixel (fat gives 3× the signal of muscle, shading ±25 %):
    FI% per muscle within 1 point, mean fat fraction within 1 point, while
    the raw signal ratio F/(W+F) reads partly fatty pixels far too high."""
    ph, labels, within = phantom
    water, fat, phi = dixon_images(ph)
    res = classify_fat(water + fat, labels, within=within, spacing=SPACING, method="dixon", water=water, fat=fat)
    assert res.method == "dixon-tf/1" and res.settings == {}
    assert np.isnan(res.fat_fraction[~within]).all()
    for key, m in ph.masks.items():
        assert abs(fi_error(ph, res.fat, key)) <= 1.0, key
        mean_ff = 100 * np.nanmean(res.fat_fraction[m])
        assert abs(mean_ff - 100 * phi[m].mean()) <= 1.0, (key, mean_ff, 100 * phi[m].mean())
    # on partly fatty pixels the raw signal ratio reads far too high, the
    # tissue fraction does not
    partial = within & (phi > 0.2) & (phi < 0.8)
    signal_ratio = fat / np.maximum(water + fat, 1e-9)
    assert (signal_ratio - phi)[partial].mean() > 0.1
    assert abs((res.fat_fraction - phi)[partial].mean()) < 0.02


def test_methods_are_listed_with_ids():
    assert METHODS == ("forest", "threshold", "gmm", "dixon")
    assert set(METHOD_IDS) == set(METHODS) and all("/" in v for v in METHOD_IDS.values())


# ------------------------------------------------------------ quality flags
def test_low_contrast_is_flagged(phantom):
    """The same phantom with fat only 1.6 × as bright as muscle: the result
    carries ``low_contrast``."""
    ph, labels, within = phantom
    muscle = np.median(ph.l4[labels == 1])
    flat = muscle + (ph.l4 - muscle) * 0.15  # compress fat toward muscle
    res = classify_fat(flat, labels, within=within, spacing=SPACING, method="threshold")
    assert res.fat_muscle_contrast < 2.0 and "low_contrast" in res.qc_flags


def test_inhomogeneous_fat_sample_is_flagged(phantom):
    """A fat sample that reaches into muscle (half of it dark) is flagged."""
    ph, labels, within = phantom
    bad = labels.copy()
    rows, cols = np.nonzero(labels == 1)
    bad[rows, cols] = 2  # the muscle patch joins the fat sample
    keep = np.zeros_like(bad)
    fr, fc = np.nonzero(labels == 2)
    keep[fr[: len(rows)], fc[: len(rows)]] = 2
    bad = np.where(labels == 2, keep, bad).astype(np.uint8)
    bad[np.nonzero(within)[0][:40], np.nonzero(within)[1][:40]] = 1  # some muscle elsewhere
    res = classify_fat(ph.l4, bad, within=within, spacing=SPACING, method="threshold")
    assert "fat_sample_inhomogeneous" in res.qc_flags
