"""Fat classifier: bad input, determinism, contract 5, accuracy bounds."""

from pathlib import Path

import numpy as np
import pytest

from napari_pvm.core import classify as C
from napari_pvm.core import forest
from napari_pvm.core.classify import FatClassifier, labels_from_samples
from napari_pvm.core.errors import ClassifierError
from napari_pvm.core.phantom import make_phantom

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "myosegmentum_dixon_lpm"
GROUPS = {"PS": ("PS",), "ES": ("ES",), "MF": ("MF",), "ESMF": ("ES", "MF")}


# ---------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def toy():
    """A 64 × 64 slice: bright fat band on top, dark muscle below, noise."""
    rng = np.random.default_rng(5)
    img = np.full((64, 64), 250.0)
    img[:20] = 1000.0
    img[40:44, 10:50] = 1000.0  # a fat streak inside the muscle
    img += rng.normal(0, 20, img.shape)
    labels = np.zeros(img.shape, np.uint8)
    labels[4:14, 10:50] = 2
    labels[26:36, 10:30] = 1
    return img.astype(np.float32), labels


@pytest.fixture(scope="module")
def small_phantom():
    return make_phantom(seed=3, spacing=1.2, supersample=5)


def within_of(ph):
    return np.logical_or.reduce(list(ph.masks.values()))


def fi_errors(ph, pred):
    """FI% minus truth per group and side, measured as `measure` measures."""
    from napari_pvm.core.measure import measure_masks

    out = measure_masks(ph.masks, pred, spacing=ph.spacing[1:])
    return {
        f"{g}_{side}": out[f"{g}_{side}_fi_pct"] - ph.truth[f"{g}_{side}_fi_pct"]
        for g in GROUPS
        for side in ("L", "R", "B")
    }


# ---------------------------------------------------------------- samples
def test_labels_from_polygons_and_paint():
    square = [[1, 1], [1, 4], [4, 4], [4, 1]]
    lab = labels_from_samples([{"class": "fat", "vertices": square}], (10, 10))
    assert lab.dtype == np.uint8 and (lab == 2).sum() == 16
    painted = np.zeros((10, 10), np.uint8)
    painted[7:9, 7:9] = 1
    painted[1, 1] = 1  # claimed by both classes: left unlabelled
    lab = labels_from_samples([{"class": "fat", "vertices": square}], (10, 10), painted=painted)
    assert (lab == 1).sum() == 4 and (lab == 2).sum() == 15 and lab[1, 1] == 0
    assert (labels_from_samples(None, (5, 5), painted=np.full((5, 5), 2)) == 2).all()


@pytest.mark.parametrize(
    ("samples", "painted", "match"),
    [
        ([{"class": "fat", "vertices": [[1, 1], [1, 40], [9, 40]]}], None, "outside the 10×10 slice"),
        ([{"class": "bone", "vertices": [[1, 1], [1, 4], [4, 4]]}], None, "'fat' or 'muscle'"),
        ([{"class": "fat", "vertices": [[1, 1], [1, 4]]}], None, "at least 3"),
        ([{"class": "muscle", "vertices": "abc"}], None, "vertices"),
        (None, np.zeros((8, 8), np.uint8), "paint on the slice"),
        (None, np.full((10, 10), 3, np.uint8), "label 1 for muscle and 2 for fat"),
    ],
)
def test_bad_samples_say_what_to_draw(samples, painted, match):
    with pytest.raises(ClassifierError, match=match):
        labels_from_samples(samples, (10, 10), painted=painted)


# -------------------------------------------------------------- bad input
def test_no_samples(toy):
    img, _ = toy
    with pytest.raises(ClassifierError, match="no training samples: outline or paint a patch of subcutaneous fat"):
        FatClassifier().fit(img, np.zeros(img.shape, np.uint8))


@pytest.mark.parametrize(
    ("keep", "match"), [(2, "no muscle sample: outline or paint"), (1, "no fat sample: outline or paint")]
)
def test_only_one_class(toy, keep, match):
    img, labels = toy
    with pytest.raises(ClassifierError, match=match):
        FatClassifier().fit(img, np.where(labels == keep, labels, 0))


def test_sample_too_small(toy):
    img, labels = toy
    lab = np.where(labels == 2, 0, labels)
    lab[5, 5:8] = 2  # three fat pixels
    with pytest.raises(ClassifierError, match=r"fat sample covers only 3 pixels.*paint or outline a larger patch"):
        FatClassifier().fit(img, lab)


def test_samples_on_another_slice(toy):
    img, labels = toy
    with pytest.raises(ClassifierError, match="another image or slice; paint the fat and muscle samples on this slice"):
        FatClassifier().fit(img, labels[:32])
    clf = FatClassifier().fit(img, labels)
    with pytest.raises(ClassifierError, match="trained on a 64×64 slice"):
        clf.predict(img[:32, :32])
    with pytest.raises(ClassifierError, match="outlines of this slice"):
        clf.predict(img, within=np.ones((10, 10), bool))


def test_samples_outside_the_image(toy):
    img, _ = toy
    samples = [{"class": "fat", "vertices": [[-20, -20], [-20, -5], [-5, -5], [-5, -20]]}]
    with pytest.raises(ClassifierError, match="outside the 64×64 slice.*draw it again on this slice"):
        labels_from_samples(samples, img.shape)


def test_constant_and_broken_images(toy):
    _, labels = toy
    with pytest.raises(ClassifierError, match="constant"):
        FatClassifier().fit(np.full((64, 64), 7.0), labels)
    bad = np.ones((64, 64))
    bad[0, 0] = np.nan
    with pytest.raises(ClassifierError, match="NaN"):
        FatClassifier().fit(bad, labels)
    with pytest.raises(ClassifierError, match="2D slice"):
        FatClassifier().fit(np.ones((2, 64, 64)), labels)
    with pytest.raises(ClassifierError, match="0 unlabelled, 1 muscle, 2 fat"):
        FatClassifier().fit(toy[0], labels.astype(float) + 0.5)


def test_swapped_or_flat_samples(toy):
    img, labels = toy
    swapped = np.where(labels == 1, 2, np.where(labels == 2, 1, 0)).astype(np.uint8)
    with pytest.raises(ClassifierError, match="not brighter than the muscle sample.*subcutaneous fat"):
        FatClassifier().fit(img, swapped)
    flat = labels.copy()
    flat[labels == 2] = 0
    flat[26:36, 30:50] = 2  # "fat" painted on (slightly brighter) muscle
    brighter = img.copy()
    brighter[26:36, 30:50] += 8
    with pytest.raises(ClassifierError, match="almost the same intensity"):
        FatClassifier().fit(brighter, flat)


def test_predict_before_fit(toy):
    with pytest.raises(ClassifierError, match="not trained yet: paint or outline fat and muscle samples"):
        FatClassifier().predict(toy[0])


def test_bad_settings():
    with pytest.raises(ClassifierError, match="unknown feature preset 'nope'; choose one of weka"):
        FatClassifier(preset="nope")
    with pytest.raises(ClassifierError, match="n_trees must be an integer of at least 1"):
        FatClassifier(n_trees=0)
    with pytest.raises(ClassifierError, match="seed must be an integer of at least 0"):
        FatClassifier(seed=-1)
    with pytest.raises(ClassifierError, match="seed"):
        FatClassifier(seed=1.5)
    with pytest.raises(ClassifierError, match="criterion"):
        FatClassifier(criterion="mse")


# -------------------------------------------------------------- contract 5
def test_contract_outputs(toy):
    img, labels = toy
    within = np.zeros(img.shape, bool)
    within[24:50, 5:60] = True
    clf = FatClassifier(n_trees=50).fit(img, labels)
    proba = clf.predict_proba(img, within)
    mask = clf.predict(img, within)
    unc = clf.uncertainty(img, within)
    assert proba.dtype == np.float64 and mask.dtype == bool
    assert np.isnan(proba[~within]).all() and np.isfinite(proba[within]).all()
    assert not mask[~within].any()
    np.testing.assert_array_equal(mask, np.nan_to_num(proba) > 0.5)
    assert np.isnan(unc[~within]).all() and (unc[within] >= 0).all() and (unc[within] <= 1).all()
    # the streak inside the muscle is fat, the muscle around it is not
    assert mask[41:43, 15:45].all() and not mask[26:36, 10:50].any()
    whole = clf.predict_proba(img)
    np.testing.assert_allclose(whole[within], proba[within])
    p = clf.params
    assert p["method"] == C.METHOD and p["preset"] == "weka" and p["n_trees"] == 50 and p["seed"] == 0
    assert p["class_balance"] is False and p["max_features"] == 2 and p["criterion"] == "entropy"


def test_defaults_are_contract_defaults():
    clf = FatClassifier()
    assert (clf.preset, clf.n_trees, clf.seed, clf.class_balance) == ("weka", 200, 0, False)


def test_same_seed_same_mask_any_thread_count(small_phantom):
    ph = small_phantom
    lab = labels_from_samples(ph.samples, ph.l4.shape)
    within = within_of(ph)
    a = FatClassifier(seed=4).fit(ph.l4, lab, within=within)
    pa = a.predict_proba(ph.l4, within)
    b = FatClassifier(seed=4).fit(ph.l4.copy(), lab.copy(), within=within.copy())
    np.testing.assert_array_equal(pa, b.predict_proba(ph.l4, within))
    np.testing.assert_array_equal(a.predict(ph.l4, within), b.predict(ph.l4, within))
    numba = pytest.importorskip("numba")
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        c = FatClassifier(seed=4).fit(ph.l4, lab, within=within)
        np.testing.assert_array_equal(pa, c.predict_proba(ph.l4, within))
    finally:
        numba.set_num_threads(before)
    other = FatClassifier(seed=5).fit(ph.l4, lab, within=within).predict_proba(ph.l4, within)
    assert not np.array_equal(pa, other)


def test_python_fallback_matches_the_compiled_engine(monkeypatch):
    """Without numba the same kernels run as Python: same trees, same output."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(0)
    x = rng.random((300, 6)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.random(300) > 0.6).astype(np.int64)
    kw = {"n_trees": 3, "k_try": 2, "seed": 1, "class_weight": (1.0, 1.0), "criterion": "entropy"}
    compiled = forest.grow(x, y, **kw)
    monkeypatch.setattr(forest, "_ENGINE", forest.python_kernels())
    python = forest.grow(x, y, **kw)
    for name in ("feat", "thr", "left", "val", "depth"):
        np.testing.assert_array_equal(getattr(python, name), getattr(compiled, name))
    np.testing.assert_array_equal(python.proba(x), compiled.proba(x))
    np.testing.assert_array_equal(python.decide(x), compiled.decide(x))


def test_options_are_applied_and_recorded(toy):
    img, labels = toy
    for kw in ({"class_balance": True}, {"criterion": "gini"}, {"max_features": 9}):
        clf = FatClassifier(n_trees=20, **kw).fit(img, labels)
        assert clf.predict(img)[41:43, 15:45].mean() > 0.9
        assert all(clf.params[k] == v for k, v in kw.items())
    kw = {"preset": "weka-s2", "calibration": False, "bias_correction": False}
    clf = FatClassifier(n_trees=20, **kw).fit(img, labels)
    assert all(clf.params[k] == v for k, v in kw.items()) and clf.params["bias_field"] == "none"
    assert clf.predict(img)[:14].all()  # thick fat is found even without the canvas


def test_preview_is_marked_and_close_to_the_full_model(small_phantom):
    ph = small_phantom
    lab = labels_from_samples(ph.samples, ph.l4.shape)
    within = within_of(ph)
    full = FatClassifier().fit(ph.l4, lab, within=within)
    prev = full.fit_preview(ph.l4, lab)
    assert prev.params["preview"] is True and prev.params["n_trees"] < full.n_trees
    assert "preview" not in full.params
    agree = (prev.predict(ph.l4, within) == full.predict(ph.l4, within))[within].mean()
    assert agree > 0.95
    # a preview without a previous full fit builds its own canvas
    assert FatClassifier().fit_preview(ph.l4, lab).predict(ph.l4, within).shape == within.shape


# --------------------------------------------------------------- accuracy
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("level", [0.05, 0.3, 0.6])
def test_accuracy_bounds_on_phantoms(seed, level):
    """Bilateral FI% within 2 points, each side within 3, trained only on the
    phantom's sample polygons (odd supersampling: no exactly-half pixels,
    see docs/benchmarks.md)."""
    ph = make_phantom(seed=seed, spacing=1.2, supersample=5, fat_fractions={"PS": level, "ES": level, "MF": level})
    lab = labels_from_samples(ph.samples, ph.l4.shape)
    within = within_of(ph)
    pred = FatClassifier().fit(ph.l4, lab, within=within).predict(ph.l4, within)
    err = fi_errors(ph, pred)
    bilateral = {k: round(v, 2) for k, v in err.items() if k.endswith("_B")}
    sides = {k: round(v, 2) for k, v in err.items() if not k.endswith("_B")}
    assert max(map(abs, bilateral.values())) <= 2.0, bilateral
    assert max(map(abs, sides.values())) <= 3.0, sides


def test_sample_only_training_misses_thin_fat(small_phantom):
    """The failure the calibration canvas fixes: TWS-style training on the
    samples alone is far off on the same phantom."""
    ph = small_phantom
    lab = labels_from_samples(ph.samples, ph.l4.shape)
    within = within_of(ph)
    plain = FatClassifier(calibration=False, bias_correction=False).fit(ph.l4, lab).predict(ph.l4, within)
    ours = FatClassifier().fit(ph.l4, lab).predict(ph.l4, within)
    assert abs(fi_errors(ph, plain)["ESMF_B"]) > 5 * max(abs(fi_errors(ph, ours)["ESMF_B"]), 1.0)


# ------------------------------------------------------------- real data
def _dixon(subject):
    import nibabel as nib
    from scipy import ndimage as ndi

    z = {"TUM01": 15, "TUM02": 13}[subject]
    w = np.asarray(nib.load(REAL / f"{subject}_water_img_img_L2-L5.nii.gz").dataobj, np.float64)[:, :, z].T
    f = np.asarray(nib.load(REAL / f"{subject}_fat_img_img_L2-L5.nii.gz").dataobj, np.float64)[:, :, z].T
    lab = np.asarray(nib.load(REAL / f"{subject}_fat_manual_label_segmentation_L2-L5.nii.gz").dataobj)[:, :, z].T
    muscles = lab > 0
    # fat sample: posterior part of the subcutaneous fat ring (largest region
    # with F/(W+F) > 0.9, 3 px inside the skin) behind the back muscles
    inten = w + f
    body = ndi.binary_opening(ndi.binary_fill_holes(inten > 0.15 * np.median(inten[muscles])), iterations=2)
    fat = (f / np.maximum(inten, 1e-6) > 0.9) & ndi.binary_erosion(body, iterations=3)
    lbl, n = ndi.label(fat)
    ring = lbl == 1 + int(np.argmax(ndi.sum(fat, lbl, range(1, n + 1))))
    rows, cols = np.nonzero(muscles.any(axis=1))[0], np.nonzero(muscles.any(axis=0))[0]
    region = np.zeros_like(ring)
    region[rows.max() - 10 :, cols.min() - 30 : cols.max() + 31] = True
    labels = np.zeros(lab.shape, np.uint8)
    labels[ndi.binary_erosion(ring & region & ~ndi.binary_dilation(muscles, iterations=3))] = 2
    rr, cc = np.ogrid[: lab.shape[0], : lab.shape[1]]
    for v in (1, 4):  # muscle sample: 5 px disc at the deepest point of each erector spinae
        r, c = np.unravel_index(np.argmax(ndi.distance_transform_edt(lab == v)), lab.shape)
        labels[(rr - r) ** 2 + (cc - c) ** 2 <= 25] = 1
    # reference: tissue fat fraction from the separated images, normalised by
    # the patient's own fat and lean-muscle samples
    a = f / np.median(f[labels == 2])
    b = w / np.median(w[labels == 1])
    x = a / np.maximum(a + b, 1e-12)
    return inten.astype(np.float32), muscles, labels, 100.0 * (x[muscles] > 0.5).mean()


@pytest.mark.real
@pytest.mark.skipif(not REAL.exists(), reason=f"{REAL} not present")
@pytest.mark.parametrize("subject", ["TUM01", "TUM02"])
def test_real_dixon_subjects_within_2_points(subject):
    img, within, labels, reference = _dixon(subject)
    fi = 100.0 * FatClassifier().fit(img, labels, within=within).predict(img, within)[within].mean()
    assert abs(fi - reference) <= 2.0, (fi, reference)


# ------------------------------------------------ mistakes tests must catch
def test_seed_changes_only_the_forest(small_phantom):
    """Another seed grows other trees on exactly the same training set
    (samples, subsample and calibration canvas fixed); a forest that ignored
    its seed would give identical probabilities."""
    ph = small_phantom
    lab = labels_from_samples(ph.samples, ph.l4.shape)
    within = within_of(ph)
    a = FatClassifier(n_trees=30, seed=1).fit(ph.l4, lab, within=within)
    b = FatClassifier(n_trees=30, seed=2).fit(ph.l4, lab, within=within)
    for xa, xb in zip(a.training_set, b.training_set):
        np.testing.assert_array_equal(xa, xb)
    ca, cb = a.calibration_model, b.calibration_model
    assert (ca.muscle, ca.fat, ca.box) == (cb.muscle, cb.fat, cb.box)
    np.testing.assert_array_equal(ca.coef, cb.coef)
    pa, pb = a.predict_proba(ph.l4, within), b.predict_proba(ph.l4, within)
    assert np.mean(pa[within] != pb[within]) > 0.05  # different trees, different votes
    np.testing.assert_array_equal(
        pa, FatClassifier(n_trees=30, seed=1).fit(ph.l4, lab, within=within).predict_proba(ph.l4, within)
    )


def _imbalanced(n_muscle=2000, n_fat=100, seed=0):
    """Two overlapping 1-D classes, muscle ~ N(0, 1) and fat ~ N(1.5, 1)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0.0, 1.0, n_muscle), rng.normal(1.5, 1.0, n_fat)])[:, None]
    y = np.concatenate([np.zeros(n_muscle, np.int64), np.ones(n_fat, np.int64)])
    return x.astype(np.float32), y


def test_class_balance_weights_the_rare_class_up():
    """With balancing, the rare class (fat) weighs n / (2 n_fat) and the
    common one n / (2 n_muscle): in the overlap the balanced forest calls
    far more fat. Inverted weights would call even less fat than without
    balancing."""
    x, y = _imbalanced()
    clf = FatClassifier(n_trees=60, class_balance=True)
    balanced = clf._grow(x, y, 60, 0)
    plain = FatClassifier(n_trees=60)._grow(x, y, 60, 0)
    inverted = forest.grow(
        x,
        y,
        n_trees=60,
        k_try=2,
        seed=0,
        criterion="entropy",
        class_weight=(len(y) / (2.0 * 100), len(y) / (2.0 * 2000)),
    )
    grid = np.linspace(0.0, 1.5, 31, dtype=np.float32)[:, None]  # the overlap
    p_bal, p_plain, p_inv = (f.proba(grid).mean() for f in (balanced, plain, inverted))
    assert p_bal > 2.5 * p_plain and p_plain > 2.5 * p_inv, (p_bal, p_plain, p_inv)


def test_compiled_forest_agrees_with_scikit_learn(small_phantom):
    """Same settings (200 trees, 2 features per split, entropy, full
    bootstrap, unlimited depth), same training rows of the classifier,
    held-out outline pixels of the phantom: pixel accuracy against the
    phantom's truth within 1.5 points of scikit-learn's, and the two
    forests' fat probabilities correlate above 0.9."""
    from sklearn.ensemble import RandomForestClassifier

    ph = small_phantom
    lab = labels_from_samples(ph.samples, ph.l4.shape)
    within = within_of(ph)
    clf = FatClassifier().fit(ph.l4, lab, within=within)
    x, y, _ = clf.training_set
    rows, cols = np.nonzero(within)
    held_out = clf._rows(ph.l4.astype(np.float32), rows, cols, clf.calibration_model)
    truth = ph.fat_share[rows, cols] > 0.5
    ours = clf._forest.proba(held_out)
    ref = RandomForestClassifier(
        n_estimators=200, max_features=2, criterion="entropy", bootstrap=True, random_state=0, n_jobs=1
    ).fit(x, y)
    theirs = ref.predict_proba(held_out)[:, 1]
    acc_ours = np.mean((ours > 0.5) == truth)
    acc_theirs = np.mean((theirs > 0.5) == truth)
    assert acc_ours > 0.95 and abs(acc_ours - acc_theirs) < 0.015, (acc_ours, acc_theirs)
    assert np.corrcoef(ours, theirs)[0, 1] > 0.9
