"""Accuracy and speed of outline proposals (napari_pvm.core.propose).

Usage (from the repository root):

    python benchmarks/bench_propose.py                  # phantom + Dixon, every condition
    python benchmarks/bench_propose.py --data dixon --subset holdout
    python benchmarks/bench_propose.py --data dixon-same --conditions click+examples,examples
    python benchmarks/bench_propose.py --data dixon-spread --conditions click+examples
    python benchmarks/bench_propose.py --data dixon-far --conditions click,click+examples
    python benchmarks/bench_propose.py --data musclemap   # test-only scan: figures stay local
    python benchmarks/bench_propose.py --speed            # 512×512 slice, 6 clicks, 10 examples

Real data is read from ``../shared/data/real`` (or ``$PVM_REAL_DATA``); it is
test-only and never shipped. Conditions (issue 12, item 2):

- ``click``: one click per muscle, no examples;
- ``click+examples``: one click per muscle and 5 examples;
- ``examples``: 5 examples, no clicks;
- ``baseline``: the planning's method in the same run, scikit-image's
  ``random_walker`` from one disk per click with bright-fat and far-away
  background seeds (no priors, no examples).

Clicks are drawn (seeded) from the inner half of each true muscle: pixels
whose distance to the muscle's edge is at least half the largest such
distance. Examples come only from the other subject (Dixon: the other
subject's slices around the same level, offset by the documented mid-L4
difference of 2 slices) or from slices at least 3 slices away (MuscleMap
scan; Dixon with ``--data dixon-same``: the same subject's nearest slices at
least 3 slices away), or phantom seeds other than the target's. With
``--data dixon-spread`` the examples are ten slices of the other subject
spread over its levels (every third slice); with ``--data dixon-far``, three
slices of the other subject at least 12 slices off the level. A missing outline counts as
Dice 0.

Tuning used only the Dixon subject TUM01 (``--subset tune``); TUM02
(``--subset holdout``) and the MuscleMap scan were never looked at while
choosing parameters.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_pvm.core.propose import propose_outlines  # noqa: E402
from napari_pvm.core.rois import roi_mask  # noqa: E402

DIXON_LABELS = {"ES_R": 1, "MF_R": 2, "MF_L": 3, "ES_L": 4}
MUSCLEMAP_LABELS = {"MF_R": 1, "MF_L": 2, "ES_R": 3, "ES_L": 4, "PS_R": 5, "PS_L": 6}
#: Mid-L4 slice of each Dixon subject, from PROVENANCE.md (marrow-fat reading).
DIXON_MID_L4 = {"TUM01": 15, "TUM02": 13}
N_EXAMPLES = 5
SEED = 12


def real_root():
    env = os.environ.get("PVM_REAL_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "real"


# ------------------------------------------------------------------ cases
def largest_piece(mask):
    """The largest 4-connected piece of ``mask`` (None when it is empty)."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask)
    if n == 0:
        return None
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == np.argmax(sizes)


def trace(mask):
    """Outline of a mask as an observer would store it (contract-2 vertices)."""
    from napari_pvm.core.propose import mask_to_polygon
    from scipy import ndimage as ndi

    piece = largest_piece(mask)
    if piece is None:
        return None
    return mask_to_polygon(ndi.binary_fill_holes(piece), tolerance=0.35)


def load_dixon(subject):
    from napari_pvm.core.io import read_volume

    d = real_root() / "myosegmentum_dixon_lpm"
    water = read_volume(d / f"{subject}_water_img_img_L2-L5.nii.gz")
    fat = read_volume(d / f"{subject}_fat_img_img_L2-L5.nii.gz")
    labels = read_volume(d / f"{subject}_fat_manual_label_segmentation_L2-L5.nii.gz")
    image = water.data.astype(np.float64) + fat.data.astype(np.float64)
    return image, labels.data.astype(np.int32), tuple(labels.pixel_spacing)


def load_musclemap():
    from napari_pvm.core.io import read_volume

    d = real_root() / "musclemap_lumbar_axial"
    image = read_volume(d / "image.nii.gz")
    labels = read_volume(d / "image_dseg_musclemap_pred.nii.gz")
    return image.data.astype(np.float64), labels.data.astype(np.int32), tuple(image.pixel_spacing)


def truth_masks(label_slice, mapping):
    return {k: label_slice == v for k, v in mapping.items() if (label_slice == v).any()}


def example_from(image_slice, spacing, masks):
    rois = {k: trace(m) for k, m in masks.items()}
    return (image_slice, spacing, {k: v for k, v in rois.items() if v is not None})


def _other_subject_cases(subset, example_slices, tag=""):
    """Every slice with all four labels, examples from the other subject.

    ``example_slices(level, n)`` picks the other subject's slice indices for
    a slice at ``level`` on the other subject's stack of ``n`` slices (the
    documented mid-L4 difference of 2 slices applied).
    """
    subjects = {"tune": ["TUM01"], "holdout": ["TUM02"], "all": ["TUM01", "TUM02"]}[subset]
    data = {s: load_dixon(s) for s in ("TUM01", "TUM02")}
    for subject in subjects:
        other = "TUM02" if subject == "TUM01" else "TUM01"
        image, labels, spacing = data[subject]
        o_image, o_labels, o_spacing = data[other]
        offset = DIXON_MID_L4[other] - DIXON_MID_L4[subject]
        made = {}
        for k in range(image.shape[0]):
            truth = truth_masks(labels[k], DIXON_LABELS)
            if len(truth) < 4:
                continue
            for j in example_slices(k + offset, o_image.shape[0]):
                if j not in made:
                    made[j] = example_from(o_image[j], o_spacing, truth_masks(o_labels[j], DIXON_LABELS))
            examples = [made[j] for j in example_slices(k + offset, o_image.shape[0])]
            yield f"{subject}{tag}/{k}", image[k], spacing, truth, examples


def dixon_cases(subset):
    """The other subject's slices around the same level (k-4 ... k+4, every second)."""
    return _other_subject_cases(subset, lambda level, n: [min(max(level + d, 0), n - 1) for d in (-4, -2, 0, 2, 4)])


def dixon_spread_cases(subset):
    """Ten examples of the other subject spread over its levels (every third
    slice, L2 to the sacrum), as an observer's earlier cases at any level."""
    return _other_subject_cases(subset, lambda level, n: list(range(0, n, 3)), tag="-spread")


def dixon_far_cases(subset):
    """Three examples of the other subject at least 12 slices (48 mm) off the
    slice's level: examples of the wrong level, which must not override the
    clicks."""

    def far(level, n):
        away = [j for j in range(n) if abs(j - level) >= 12]
        return away[:3] if level >= n // 2 else away[-3:]

    return _other_subject_cases(subset, far, tag="-far")


def dixon_same_cases(subset):
    """Examples from the same subject, the nearest slices at least 3 slices (12 mm) away."""
    subjects = {"tune": ["TUM01"], "holdout": ["TUM02"], "all": ["TUM01", "TUM02"]}[subset]
    for subject in subjects:
        image, labels, spacing = load_dixon(subject)
        usable = [k for k in range(image.shape[0]) if len(truth_masks(labels[k], DIXON_LABELS)) == 4]
        for k in usable:
            truth = truth_masks(labels[k], DIXON_LABELS)
            far = sorted((j for j in usable if abs(j - k) >= 3), key=lambda j: (abs(j - k), j))[:N_EXAMPLES]
            examples = [example_from(image[j], spacing, truth_masks(labels[j], DIXON_LABELS)) for j in far]
            yield f"{subject}-same/{k}", image[k], spacing, truth, examples


def musclemap_cases():
    image, labels, spacing = load_musclemap()
    usable = [k for k in range(image.shape[0]) if len(truth_masks(labels[k], MUSCLEMAP_LABELS)) == 6]
    for k in range(13, 20):
        truth = truth_masks(labels[k], MUSCLEMAP_LABELS)
        far = sorted((j for j in usable if abs(j - k) >= 3), key=lambda j: (abs(j - k), j))[:N_EXAMPLES]
        examples = [example_from(image[j], spacing, truth_masks(labels[j], MUSCLEMAP_LABELS)) for j in far]
        yield f"musclemap/{k}", image[k], spacing, truth, examples


def phantom_cases(n=4):
    from napari_pvm.core.phantom import make_phantom

    phantoms = [make_phantom(seed=s, n_slices=1, spacing=0.9) for s in range(n + N_EXAMPLES)]
    for i in range(n):
        ph = phantoms[i]
        examples = [(p.l4, p.spacing[1:], p.rois) for p in phantoms[n:]]
        yield f"phantom/{i}", ph.l4, ph.spacing[1:], dict(ph.masks), examples


# ---------------------------------------------------------------- metrics
def inner_half_click(mask, spacing, rng):
    from scipy import ndimage as ndi

    dist = ndi.distance_transform_edt(mask, sampling=spacing)
    rr, cc = np.nonzero(dist >= 0.5 * dist.max())
    i = rng.integers(len(rr))
    return (float(rr[i]), float(cc[i]))


def case_clicks(name, truth, spacing, seed=SEED):
    """One inner-half click per true muscle, seeded by the case name (reproducible per case)."""
    rng = np.random.default_rng([seed] + [ord(ch) for ch in name])
    return {k: inner_half_click(m, spacing, rng) for k, m in sorted(truth.items())}


def dice(a, b):
    s = a.sum() + b.sum()
    return 2.0 * np.logical_and(a, b).sum() / s if s else 1.0


def hd95(a, b, spacing):
    from scipy import ndimage as ndi

    if not a.any() or not b.any():
        return float("nan")
    edge_a = a & ~ndi.binary_erosion(a)
    edge_b = b & ~ndi.binary_erosion(b)
    da = ndi.distance_transform_edt(~edge_b, sampling=spacing)[edge_a]
    db = ndi.distance_transform_edt(~edge_a, sampling=spacing)[edge_b]
    return float(np.percentile(np.concatenate([da, db]), 95))


def baseline_random_walker(image, *, spacing, clicks, rois=None):
    """The planning baseline: scikit-image's random walker seeded by one disk
    per click and background where the image is bright fat (top 10 % of the
    slice) or more than 60 mm from every click; no priors, no shape rules."""
    from scipy import ndimage as ndi
    from skimage.segmentation import random_walker

    from napari_pvm.core.propose import mask_to_polygon

    rr, cc = np.mgrid[: image.shape[0], : image.shape[1]]
    seeds = np.zeros(image.shape, np.int32)
    near = np.zeros(image.shape, bool)
    keys = sorted(clicks)
    for i, k in enumerate(keys):
        d2 = ((rr - clicks[k][0]) * spacing[0]) ** 2 + ((cc - clicks[k][1]) * spacing[1]) ** 2
        near |= d2 <= 60.0**2
        seeds[d2 <= 2.5**2] = i + 2
    smooth = ndi.gaussian_filter(image, 1.0)
    seeds[(~near | (smooth > np.percentile(smooth, 90))) & (seeds == 0)] = 1
    r, c = np.nonzero(near)
    box = np.s_[r.min() : r.max() + 1, c.min() : c.max() + 1]
    sub = seeds[box].copy()
    sub[[0, -1], :] = np.where(sub[[0, -1], :] == 0, 1, sub[[0, -1], :])
    sub[:, [0, -1]] = np.where(sub[:, [0, -1]] == 0, 1, sub[:, [0, -1]])
    data = (smooth[box] - smooth[box].min()) / (np.ptp(smooth[box]) + 1e-9)
    labels = np.zeros(image.shape, np.int32)
    labels[box] = random_walker(data, sub, beta=130, mode="bf", spacing=spacing)
    out = {}
    for i, k in enumerate(keys):
        lab, n = ndi.label(labels == i + 2)
        if n:
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            v = mask_to_polygon(ndi.binary_fill_holes(lab == np.argmax(sizes)), tolerance=0.35)
            if v is not None and len(v) >= 3:
                out[k] = v
    return out


def evaluate(cases, condition, seed=SEED):
    rows = []
    for name, image, spacing, truth, examples in cases:
        clicks = case_clicks(name, truth, spacing, seed)
        kwargs = {"spacing": spacing, "rois": list(truth)}
        if condition in ("click", "click+examples", "baseline"):
            kwargs["clicks"] = clicks
        if condition in ("examples", "click+examples"):
            kwargs["examples"] = examples
        t0 = time.perf_counter()
        if condition == "baseline":
            out = baseline_random_walker(image, spacing=spacing, clicks=clicks)
        else:
            out = propose_outlines(image, **kwargs)
        seconds = time.perf_counter() - t0
        for key, m in truth.items():
            if key in out:
                p = roi_mask(out[key], image.shape)
                # swap check: the proposal overlaps its own muscle more than any other
                swapped = any(dice(p, truth[o]) > dice(p, m) for o in truth if o != key)
                rows.append(
                    dict(
                        case=name,
                        condition=condition,
                        roi=key,
                        dice=dice(p, m),
                        hd95_mm=hd95(p, m, spacing),
                        area_err_pct=100.0 * (p.sum() - m.sum()) / m.sum(),
                        swapped=swapped,
                        seconds=seconds,
                    )
                )
            else:
                rows.append(
                    dict(
                        case=name,
                        condition=condition,
                        roi=key,
                        dice=0.0,
                        hd95_mm=float("nan"),
                        area_err_pct=-100.0,
                        swapped=False,
                        seconds=seconds,
                    )
                )
    return rows


def summarise(rows, label):
    import pandas as pd

    df = pd.DataFrame(rows)
    df["muscle"] = df["roi"].str[:2]
    df["subject"] = df["case"].str.split("/").str[0]  # TUM01 (tuning), TUM02 (held out), phantom, musclemap
    df["abs_area_err_pct"] = df["area_err_pct"].abs()
    g = df.groupby(["subject", "condition", "muscle"]).agg(
        n=("dice", "size"),
        dice_mean=("dice", "mean"),
        dice_min=("dice", "min"),
        hd95_mm_mean=("hd95_mm", "mean"),
        abs_area_err_pct=("abs_area_err_pct", "mean"),
        swaps=("swapped", "sum"),
        missing=("dice", lambda d: int((d == 0).sum())),
    )
    print(f"\n== {label}")
    print(g.round(3).to_string())
    secs = df.groupby("case")["seconds"].first()
    print(f"seconds per slice: median {secs.median():.2f}, max {secs.max():.2f}")
    return g


def speed(repeats=3):
    """All six outlines on a 512 × 512 phantom slice with 6 clicks and 10 examples, first call included."""
    from napari_pvm.core.phantom import make_phantom

    target = make_phantom(seed=100, n_slices=1)
    examples = [(p.l4, p.spacing[1:], p.rois) for p in (make_phantom(seed=200 + i, n_slices=1) for i in range(10))]
    rng = np.random.default_rng(SEED)
    clicks = {k: inner_half_click(m, target.spacing[1:], rng) for k, m in target.masks.items()}
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = propose_outlines(target.l4, spacing=target.spacing[1:], clicks=clicks, examples=examples)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    t0 = time.perf_counter()
    baseline_random_walker(target.l4, spacing=target.spacing[1:], clicks=clicks)
    baseline = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    propose_outlines(target.l4, spacing=target.spacing[1:], clicks=clicks)
    clicks_only, clicks_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"\n== speed: 512×512 slice, {len(out)} outlines, 6 clicks, 10 examples")
    print(
        f"wall: first call {times[0]:.2f} s, median of {repeats} {np.median(times):.2f} s; "
        f"clicks only {clicks_only:.2f} s; baseline random walker {baseline:.2f} s "
        f"(ratio clicks only / baseline {clicks_only / baseline:.2f})"
    )
    print(
        f"CPU time of this process: first call {cpu[0]:.2f} s, median {np.median(cpu):.2f} s; clicks only {clicks_cpu:.2f} s"
    )
    print(f"load average: {open('/proc/loadavg').read().strip() if os.path.exists('/proc/loadavg') else 'n/a'}")
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data",
        choices=("phantom", "dixon", "dixon-same", "dixon-spread", "dixon-far", "musclemap", "default"),
        default="default",
    )
    p.add_argument("--subset", choices=("tune", "holdout", "all"), default="all")
    p.add_argument("--conditions", default="baseline,click,click+examples,examples")
    p.add_argument("--speed", action="store_true")
    p.add_argument("--csv", help="write per-outline rows to this CSV")
    args = p.parse_args(argv)
    if args.speed:
        speed()
        return 0
    datasets = ["phantom", "dixon"] if args.data == "default" else [args.data]
    all_rows = []
    for data in datasets:
        for condition in args.conditions.split(","):
            if data == "phantom":
                cases = phantom_cases()
            elif data == "dixon":
                cases = dixon_cases(args.subset)
            elif data == "dixon-same":
                cases = dixon_same_cases(args.subset)
            elif data == "dixon-spread":
                cases = dixon_spread_cases(args.subset)
            elif data == "dixon-far":
                cases = dixon_far_cases(args.subset)
            else:
                cases = musclemap_cases()
            rows = evaluate(cases, condition)
            for r in rows:
                r["data"] = data
            summarise(rows, f"{data} ({args.subset if data.startswith('dixon') else 'all'}) {condition}")
            all_rows += rows
    if args.csv:
        write_rows(all_rows, args.csv)
    return 0


def write_rows(rows, path):
    """Per-outline rows as a CSV (``--csv``)."""
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)


if __name__ == "__main__":
    raise SystemExit(main())
