"""Benchmark of the fat classifier against scikit-image's trainable segmentation.

One command (from the repository root)::

    .venv/bin/python benchmarks/bench_classifier.py            # speed, ~1 min
    .venv/bin/python benchmarks/bench_classifier.py --accuracy # + phantoms across FI% and the Dixon subjects
    .venv/bin/python benchmarks/bench_classifier.py --ablation # + variants of the defaults on tuning phantoms

Speed, on a 512 × 512 phantom slice (``make_phantom(seed=7)``, the L4 slice)
with the phantom's fat sample and its two lean-muscle patches painted a
little wider (≥ 300 pixels per class):

- *cold*: ``FatClassifier()`` (the defaults ``napari-pvm measure`` uses:
  preset "weka", 200 trees, seed 0) with an empty feature cache:
  features + fit + predict inside the six muscle outlines;
- *baseline*: ``multiscale_basic_features`` (defaults) +
  ``skimage.future.fit_segmenter`` with
  ``RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=0)``
  + ``predict_segmenter``, on the same slice and labels;
- *warm*: one more painted stroke, then retrain and predict inside the
  outlines with the features cached: the live preview
  (``fit_preview``) and, for reference, the full model.

Runs alternate between the methods so both see the same machine load;
medians of ``--repeats`` runs are printed with the ratio cold / baseline,
the peak memory of one run of each (tracemalloc), the machine's load
average and the FI% errors of both methods against the phantom's truth.
"""

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

GROUPS = {"PS": ("PS",), "ES": ("ES",), "MF": ("MF",), "ESMF": ("ES", "MF")}
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "myosegmentum_dixon_lpm"


# ----------------------------------------------------------------- inputs
def bench_inputs(seed=7):
    """Phantom slice, painted labels (≥ 300 px per class), outlines, stroke."""
    from skimage.draw import disk

    from napari_pvm.core.classify import labels_from_samples
    from napari_pvm.core.phantom import make_phantom

    ph = make_phantom(seed=seed)
    img = ph.l4
    spacing = ph.spacing[1]
    painted = np.zeros(img.shape, np.uint8)
    for s in ph.samples:
        if s["class"] == "muscle":  # the phantom's lean patch is 6 mm wide; paint 5.5 mm
            c = np.asarray(s["vertices"]).mean(axis=0)
            rr, cc = disk(tuple(c), 5.5 / spacing, shape=img.shape)
            painted[rr, cc] = 1
    labels = labels_from_samples(ph.samples, img.shape, painted=painted)
    within = np.logical_or.reduce(list(ph.masks.values()))
    # one new stroke: 3 px wide, 40 px long, in posterior subcutaneous fat
    # on the other side of the midline from the fat sample
    fat_rows, fat_cols = np.nonzero(labels == 2)
    r = int(np.median(fat_rows))
    c = int(img.shape[1] - 1 - np.median(fat_cols))
    stroke = labels.copy()
    stroke[r - 1 : r + 2, c - 20 : c + 20] = 2
    return ph, labels, within, stroke


def fi_errors(ph, pred):
    """FI% minus truth per group and side, measured as `measure` measures."""
    from napari_pvm.core.measure import measure_masks

    out = measure_masks(ph.masks, pred, spacing=ph.spacing[1:])
    return {
        f"{g}_{side}": out[f"{g}_{side}_fi_pct"] - ph.truth[f"{g}_{side}_fi_pct"]
        for g in GROUPS
        for side in ("L", "R", "B")
    }


def worst(errors):
    b = max(abs(errors[f"{g}_B"]) for g in GROUPS)
    s = max(abs(errors[f"{g}_{x}"]) for g in GROUPS for x in "LR")
    return b, s


# ---------------------------------------------------------------- methods
def run_ours(img, labels, within, **kw):
    from napari_pvm.core import features
    from napari_pvm.core.classify import FatClassifier

    features.shared_cache().clear()
    t0, c0 = time.perf_counter(), time.process_time()
    clf = FatClassifier(**kw).fit(img, labels, within=within)
    pred = clf.predict(img, within)
    return (time.perf_counter() - t0, time.process_time() - c0), pred, clf


def run_baseline(img, labels, within):
    from skimage.feature import multiscale_basic_features
    from skimage.future import fit_segmenter, predict_segmenter
    from sklearn.ensemble import RandomForestClassifier

    t0, c0 = time.perf_counter(), time.process_time()
    feats = multiscale_basic_features(img)
    clf = fit_segmenter(labels, feats, RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=0))
    seg = predict_segmenter(feats, clf)
    return (time.perf_counter() - t0, time.process_time() - c0), (seg == 2) & within


def run_warm(clf, img, stroke, within, full=False):
    t0 = time.perf_counter()
    if full:
        model = clf.__class__(clf.preset, clf.n_trees, clf.seed, clf.class_balance).fit(img, stroke)
    else:
        model = clf.fit_preview(img, stroke)
    model.predict(img, within)
    return time.perf_counter() - t0


def peak_mb(fn, *args, **kw):
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn(*args, **kw)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


# --------------------------------------------------------------- accuracy
def accuracy_phantoms(seeds, levels, spacing, supersample):
    from skimage.feature import multiscale_basic_features
    from sklearn.ensemble import RandomForestClassifier

    from napari_pvm.core.classify import FatClassifier, labels_from_samples
    from napari_pvm.core.phantom import make_phantom

    rows = []
    for seed in seeds:
        for lvl in levels:
            kw = {} if supersample is None else {"supersample": supersample}
            ph = make_phantom(seed=seed, spacing=spacing, fat_fractions={"PS": lvl, "ES": lvl, "MF": lvl}, **kw)
            img = ph.l4
            lab = labels_from_samples(ph.samples, img.shape)
            within = np.logical_or.reduce(list(ph.masks.values()))
            ours = FatClassifier().fit(img, lab, within=within).predict(img, within)
            feats = multiscale_basic_features(img)
            rf = RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=0)
            rf.fit(feats[lab > 0], lab[lab > 0])
            base = np.zeros(img.shape, bool)
            base[within] = rf.predict(feats[within]) == 2
            rows.append((seed, lvl, ph.truth["ESMF_B_fi_pct"], fi_errors(ph, ours), fi_errors(ph, base)))
    return rows


def dixon_inputs(subject):
    """Contract-1 slice (W + F), manual masks, fat/muscle samples, reference x."""
    import nibabel as nib
    from scipy import ndimage as ndi

    z = {"TUM01": 15, "TUM02": 13}[subject]
    w = np.asarray(nib.load(REAL / f"{subject}_water_img_img_L2-L5.nii.gz").dataobj, np.float64)[:, :, z].T
    f = np.asarray(nib.load(REAL / f"{subject}_fat_img_img_L2-L5.nii.gz").dataobj, np.float64)[:, :, z].T
    lab = np.asarray(nib.load(REAL / f"{subject}_fat_manual_label_segmentation_L2-L5.nii.gz").dataobj)[:, :, z].T
    labels = dixon_samples(w, f, lab, ndi)
    f_sat = np.median(f[labels == 2])
    w_lean = np.median(w[labels == 1])
    a, b = f / f_sat, w / w_lean
    x = a / np.maximum(a + b, 1e-12)
    return (w + f).astype(np.float32), lab, labels, x


def dixon_samples(w, f, lab, ndi):
    """Fat sample: the posterior part of the subcutaneous fat ring (the
    largest connected region with F/(W+F) > 0.9, 3 px inside the skin),
    behind the back muscles; muscle sample: a 5 px disc at the deepest
    point of each erector spinae."""
    muscles = lab > 0
    ff = f / np.maximum(w + f, 1e-6)
    inten = w + f
    body = ndi.binary_fill_holes(inten > 0.15 * np.median(inten[muscles]))
    body = ndi.binary_opening(body, iterations=2)
    fat = (ff > 0.9) & ndi.binary_erosion(body, iterations=3)
    lbl, n = ndi.label(fat)
    ring = lbl == 1 + int(np.argmax(ndi.sum(fat, lbl, range(1, n + 1))))
    rows = np.nonzero(muscles.any(axis=1))[0]
    cols = np.nonzero(muscles.any(axis=0))[0]
    region = np.zeros_like(ring)
    region[rows.max() - 10 :, cols.min() - 30 : cols.max() + 31] = True
    fat_sample = ndi.binary_erosion(ring & region & ~ndi.binary_dilation(muscles, iterations=3))
    muscle_sample = np.zeros_like(muscles)
    rr, cc = np.ogrid[: lab.shape[0], : lab.shape[1]]
    for v in (1, 4):  # erector spinae right and left
        dt = ndi.distance_transform_edt(lab == v)
        r, c = np.unravel_index(np.argmax(dt), dt.shape)
        muscle_sample |= (rr - r) ** 2 + (cc - c) ** 2 <= 25
    labels = np.zeros(lab.shape, np.uint8)
    labels[muscle_sample] = 1
    labels[fat_sample] = 2
    return labels


def accuracy_dixon():
    from skimage.feature import multiscale_basic_features
    from sklearn.ensemble import RandomForestClassifier

    from napari_pvm.core.classify import FatClassifier

    out = []
    for subject in ("TUM01", "TUM02"):
        img, lab, labels, x = dixon_inputs(subject)
        within = lab > 0
        ref = 100.0 * (x[within] > 0.5).mean()
        ours = FatClassifier().fit(img, labels, within=within).predict(img, within)
        feats = multiscale_basic_features(img)
        rf = RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=0)
        rf.fit(feats[labels > 0], labels[labels > 0])
        base = rf.predict(feats[within]) == 2
        n_fat, n_muscle = int((labels == 2).sum()), int((labels == 1).sum())
        out.append((subject, ref, 100.0 * ours[within].mean(), 100.0 * base.mean(), n_fat, n_muscle))
    return out


ABLATIONS = {
    "default": ({}, {}),
    "samples only (TWS-style training)": ({"calibration": False, "bias_correction": False}, {}),
    "no calibration canvas": ({"calibration": False}, {}),
    "no bias-field correction": ({"bias_correction": False}, {}),
    'preset "weka-s4" (sigma <= 4)': ({"preset": "weka-s4"}, {}),
    'preset "weka-s2" (sigma <= 2)': ({"preset": "weka-s2"}, {}),
    "criterion gini": ({"criterion": "gini"}, {}),
    "class balance on": ({"class_balance": True}, {}),
    "9 features per split (sqrt rule)": ({"max_features": 9}, {}),
    "canvas drawn at 4x (not 8x) sub-pixels": ({}, {"_CANVAS_SUPERSAMPLE": 4}),
    "canvas covers up to 60 % (not 75 %)": ({}, {"_CANVAS_COVERS": (0.05, 0.2, 0.4, 0.6)}),
    "1000 canvas pixels (not 2000)": ({}, {"_CANVAS_PIXELS": 1000}),
}


def ablation(seeds=(100, 101, 102, 103, 104, 105), classifier_seeds=(0, 1, 2), spacing=1.2, supersample=5):
    """FI% errors of variants of the defaults on the tuning phantoms."""
    from napari_pvm.core import calibration
    from napari_pvm.core.classify import FatClassifier, labels_from_samples
    from napari_pvm.core.phantom import make_phantom

    phantoms = []
    for seed in seeds:
        for lvl in (0.05, 0.15, 0.3, 0.45, 0.6):
            ph = make_phantom(
                seed=seed, spacing=spacing, supersample=supersample, fat_fractions={"PS": lvl, "ES": lvl, "MF": lvl}
            )
            phantoms.append(
                (ph, labels_from_samples(ph.samples, ph.l4.shape), np.logical_or.reduce(list(ph.masks.values())))
            )
    print(
        f"\nablation: {len(seeds)} phantom seeds {seeds} x 5 FI levels, {spacing} mm, supersample {supersample}; "
        f"classifier seeds {classifier_seeds}; worst |bilateral| and |side| error over all, "
        "mean and RMS of bilateral errors"
    )
    for name, (kw, internals) in ABLATIONS.items():
        saved = {k: getattr(calibration, k) for k in internals}
        try:
            for k, v in internals.items():
                setattr(calibration, k, v)
            calibration.canvas_cover.cache_clear()
            errs, wb, ws = [], 0.0, 0.0
            for cs in classifier_seeds:
                for ph, lab, within in phantoms:
                    pred = FatClassifier(seed=cs, **kw).fit(ph.l4, lab, within=within).predict(ph.l4, within)
                    e = fi_errors(ph, pred)
                    b, s = worst(e)
                    wb, ws = max(wb, b), max(ws, s)
                    errs += [e[f"{g}_B"] for g in GROUPS]
        finally:
            for k, v in saved.items():
                setattr(calibration, k, v)
            calibration.canvas_cover.cache_clear()
        errs = np.array(errs)
        rms = np.sqrt((errs**2).mean())
        print(f"  {name:42s} worst B {wb:6.2f}  worst side {ws:6.2f}  mean {errs.mean():+6.2f}  RMS {rms:5.2f}")


# ------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed runs per method (medians are printed)")
    ap.add_argument("--accuracy", action="store_true", help="also measure FI%% accuracy on phantoms and Dixon data")
    ap.add_argument("--seeds", default="0,1,2", help="phantom seeds for --accuracy")
    ap.add_argument(
        "--ablation", action="store_true", help="also compare variants of the defaults on the tuning phantoms (~5 min)"
    )
    args = ap.parse_args(argv)

    import numba

    from napari_pvm.core import classify

    print(
        f"machine: {os.cpu_count()} cores, numba {numba.__version__} ({numba.get_num_threads()} threads), "
        f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    t0 = time.perf_counter()
    ph, labels, within, stroke = bench_inputs()
    img = ph.l4
    print(
        f"phantom: {img.shape[0]}×{img.shape[1]} slice, {int((labels == 2).sum())} fat + "
        f"{int((labels == 1).sum())} muscle sample pixels, {int(within.sum())} pixels inside the six outlines "
        f"({time.perf_counter() - t0:.1f} s to render)"
    )

    t0 = time.perf_counter()
    classify.warm_up()
    print(f"engine: compiled or loaded from numba's cache in {time.perf_counter() - t0:.2f} s (not counted below)")
    run_ours(img, labels, within)  # warm the code paths once
    run_baseline(img, labels, within)

    cold, base, warm, warm_full, cold_cpu, base_cpu = [], [], [], [], [], []
    for _ in range(args.repeats):
        (dt, cpu), pred_ours, clf = run_ours(img, labels, within)
        cold.append(dt)
        cold_cpu.append(cpu)
        (dt, cpu), pred_base = run_baseline(img, labels, within)
        base.append(dt)
        base_cpu.append(cpu)
        warm.append(run_warm(clf, img, stroke, within))
        warm_full.append(run_warm(clf, img, stroke, within, full=True))
    med = statistics.median
    e_ours, e_base = fi_errors(ph, pred_ours), fi_errors(ph, pred_base)
    mem_ours = peak_mb(run_ours, img, labels, within)
    mem_base = peak_mb(run_baseline, img, labels, within)
    print(
        f"settings: {clf.params['method']} preset={clf.preset} n_trees={clf.n_trees} "
        f"max_features={clf.max_features} seed={clf.seed}"
    )
    print(
        f"cold  (features + fit + predict in outlines): median {1000 * med(cold):7.1f} ms  "
        f"[{1000 * min(cold):.1f}–{1000 * max(cold):.1f}]  peak {mem_ours:.0f} MB"
    )
    print(
        f"baseline (skimage features + fit + predict):  median {1000 * med(base):7.1f} ms  "
        f"[{1000 * min(base):.1f}–{1000 * max(base):.1f}]  peak {mem_base:.0f} MB"
    )
    print(
        f"ratio cold / baseline: {med(cold) / med(base):.2f}  (target ≤ 0.33); "
        f"CPU time (all threads) {1000 * med(cold_cpu):.0f} ms / {1000 * med(base_cpu):.0f} ms = "
        f"{med(cold_cpu) / med(base_cpu):.2f}"
    )
    print(
        f"warm  (new stroke, preview retrain + predict): median {1000 * med(warm):6.1f} ms  "
        f"[{1000 * min(warm):.1f}–{1000 * max(warm):.1f}]  (target ≤ 150 ms)"
    )
    print(f"warm, full 200-tree model (for reference):     median {1000 * med(warm_full):6.1f} ms")
    bo, so = worst(e_ours)
    bb, sb = worst(e_base)
    print(
        f"FI% error on this phantom (worst |bilateral| / |side|): ours {bo:.2f} / {so:.2f}, "
        f"baseline {bb:.2f} / {sb:.2f}"
    )
    print("  ours:     " + " ".join(f"{k} {v:+.1f}" for k, v in e_ours.items()))
    print("  baseline: " + " ".join(f"{k} {v:+.1f}" for k, v in e_base.items()))
    print(
        f"peak RSS of this process: {_maxrss_mb():.0f} MB; load average after: "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )

    if args.accuracy:
        seeds = [int(s) for s in args.seeds.split(",")]
        levels = (0.05, 0.15, 0.3, 0.45, 0.6)
        # the phantom's default grid (5×5 sub-pixels: no pixel is exactly half fat), then an
        # even grid whose exact-half pixels the "more than half" truth calls muscle
        for supersample in (None, 4):
            label = "phantom defaults" if supersample is None else "supersample=4 (ties at exactly half fat)"
            rows = accuracy_phantoms(seeds, levels, 0.78125, supersample)
            print(f"\nphantoms 512×512, seeds {seeds}, {label}: FI% error, ours | baseline")
            cols = "  PS_B   ES_B   MF_B ESMF_B worst-side"
            print(f"seed  level  truth ESMF_B |{cols} |{cols}")
            wb = ws = 0.0
            for seed, lvl, truth, eo, eb in rows:
                b1, s1 = worst(eo)
                _, s2 = worst(eb)
                wb, ws = max(wb, b1), max(ws, s1)
                print(
                    f"{seed:4d} {lvl:6.2f} {truth:12.1f} | "
                    + " ".join(f"{eo[g + '_B']:+6.1f}" for g in GROUPS)
                    + f" {s1:10.1f} | "
                    + " ".join(f"{eb[g + '_B']:+6.1f}" for g in GROUPS)
                    + f" {s2:10.1f}"
                )
            print(f"ours: worst |bilateral| {wb:.2f}, worst |side| {ws:.2f}")
        if REAL.exists():
            print("\nDixon subjects (input W + F; reference: share of mask pixels with tissue fat fraction > 0.5)")
            for subject, ref, ours, base, n_fat, n_muscle in accuracy_dixon():
                print(
                    f"{subject}: reference {ref:.2f} %, ours {ours:.2f} % ({ours - ref:+.2f}), "
                    f"baseline {base:.2f} % ({base - ref:+.2f}); samples {n_fat} fat, {n_muscle} muscle px"
                )
        else:
            print(f"\n{REAL} not found: Dixon subjects skipped")
    if args.ablation:
        ablation()
    return 0


def _maxrss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    sys.exit(main())
