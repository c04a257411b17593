"""Where the true muscle borders show in the image, and where the proposals miss.

Usage (from the repository root):

    python benchmarks/bench_border_visibility.py                  # Dixon (W+F, fat fraction) + phantom
    python benchmarks/bench_border_visibility.py --proposals      # and the proposals' border error there
    python benchmarks/bench_border_visibility.py --data musclemap # test-only scan: figures stay local

Issue 12 asks for proposal borders within 3 mm of the masks' (HD95) and Dice
0.90. A border can be found from the image only where the image shows it.
For every pixel on a true outline this script asks whether an edge or a
thin bright line (a fat-bearing fascia) stands out there from the muscle's
own texture:

- *edge*: the Gaussian gradient magnitude (sigma 1 pixel);
- *line*: a white top-hat (5 × 5 pixels) of the image smoothed at 0.7 pixel;
- a border pixel is *visible* when either, at its maximum within one pixel
  of the border, exceeds the 95th percentile of the same measure inside
  the slice's muscles (pixels at least 4 pixels from their own outline). The
  same test on those inner pixels gives the rate at which texture alone
  passes it (*chance*).

Border pixels are grouped by what lies across: the same side's other back
muscle (the ES|MF border), the other multifidus (midline), or outside
tissue, split into fat (mean fat fraction >= 0.5 over the non-muscle pixels
within 2 pixels: subcutaneous or perimuscular fat) and lean tissue or bone
(quadratus lumborum, the transverse processes, the lamina). On the Dixon
subjects the test runs on the W+F image (the image the proposals get, issue 12 item 2) and on the fat
fraction F / (W + F), the contrast made for fat.

With ``--proposals`` each true border pixel is also scored by its distance
to the proposal's border (clicks and examples as in ``bench_propose.py``):
the share within 3 mm (the issue's HD95 bound), for visible and invisible
border pixels apart; for the erector's visible border against fat, also by
the muscle's front and back half with the signed distance (a constant
offset would show as a median far from zero).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "src"))

import bench_propose as bp  # noqa: E402

#: Inner pixels at least this far (pixels) from every outline set the texture level.
INNER_PX = 4
#: Percentile of the inner texture a border must exceed.
TEXTURE_PERCENTILE = 95
#: A proposal border within this distance (mm) of a true border pixel finds it.
WITHIN_MM = 3.0


def visibility(image, masks):
    """Per pixel: does an edge or thin bright line stand out from the muscles' texture?

    ``masks``: the true muscle masks; each is eroded on its own, so that the
    border two muscles share is not taken for texture. Returns the boolean
    map and the rate at which inner muscle pixels pass.
    """
    edge = ndi.gaussian_gradient_magnitude(image.astype(float), 1.0)
    smooth = ndi.gaussian_filter(image.astype(float), 0.7)
    line = smooth - ndi.grey_opening(smooth, size=(5, 5))
    inner = np.any([ndi.binary_erosion(m, iterations=INNER_PX) for m in masks], axis=0)
    visible = np.zeros(image.shape, bool)
    for measure in (edge, line):
        level = np.percentile(measure[inner], TEXTURE_PERCENTILE)
        visible |= ndi.maximum_filter(measure, 3) > level
    return visible, float(visible[inner].mean())


def border_kinds(truth, fat_fraction):
    """Each true border pixel with what lies across it.

    ``truth`` maps ROI keys (``ES_R`` ...) to masks. Returns a list of
    ``(kind, roi, row, col)``; the ES|MF border is counted once (on the ES).
    """
    label = np.zeros(next(iter(truth.values())).shape, np.int32)
    keys = sorted(truth)
    for i, k in enumerate(keys, start=1):
        label[truth[k]] = i
    outside = (label == 0).astype(float)
    # mean fat fraction of the tissue across the border (the non-muscle pixels within 2 pixels)
    fat_near = ndi.uniform_filter(fat_fraction * outside, 5) / np.maximum(ndi.uniform_filter(outside, 5), 1e-9)
    out = []
    for i, k in enumerate(keys, start=1):
        mask = label == i
        muscle, side = k.split("_")
        for r, c in zip(*np.nonzero(mask & ~ndi.binary_erosion(mask))):
            across = {
                keys[j - 1] for j in np.unique(label[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]) if j not in (0, i)
            }
            partner = "MF" if muscle == "ES" else "ES"
            if f"{partner}_{side}" in across:
                if muscle == "MF":
                    continue
                kind = "ES|MF border"
            elif muscle == "MF" and any(a.startswith("MF") for a in across):
                kind = "MF|MF midline"
            elif fat_near[r, c] >= 0.5:
                kind = f"{muscle}|fat"
            else:
                kind = f"{muscle}|lean tissue or bone"
            out.append((kind, k, r, c))
    return out


def dixon_slices():
    from napari_pvm.core.io import read_volume

    d = bp.real_root() / "myosegmentum_dixon_lpm"
    for subject in ("TUM01", "TUM02"):
        water = read_volume(d / f"{subject}_water_img_img_L2-L5.nii.gz").data.astype(np.float64)
        fat = read_volume(d / f"{subject}_fat_img_img_L2-L5.nii.gz").data.astype(np.float64)
        labels = read_volume(d / f"{subject}_fat_manual_label_segmentation_L2-L5.nii.gz").data.astype(np.int32)
        for k in range(labels.shape[0]):
            truth = bp.truth_masks(labels[k], bp.DIXON_LABELS)
            if len(truth) < 4:
                continue
            total = water[k] + fat[k]
            fraction = fat[k] / np.maximum(total, 0.02 * total.max())  # no division by air's noise
            yield subject, k, {"W+F": total, "fat fraction": fraction}, fraction, truth


def phantom_slices(n=4):
    """Lean phantoms (no intramuscular fat): every border is drawn into the
    image, so nearly all of it should pass (the test's positive control)."""
    from napari_pvm.core.phantom import make_phantom

    lean = {"PS": 0.0, "ES": 0.0, "MF": 0.0}
    for seed in range(n):
        ph = make_phantom(seed=seed, n_slices=1, spacing=0.9, fat_fractions=lean)
        image = ph.l4.astype(np.float64)
        fat = np.percentile(image, 99)
        yield "phantom", seed, {"phantom": image}, np.clip(image / fat, 0, 1), dict(ph.masks)


def musclemap_slices():
    image, labels, _ = bp.load_musclemap()
    fat = np.percentile(image, 99)
    for k in range(13, 20):
        truth = bp.truth_masks(labels[k], bp.MUSCLEMAP_LABELS)
        back = {key: m for key, m in truth.items() if not key.startswith("PS")}
        yield "musclemap", k, {"image": image[k]}, np.clip(image[k] / fat, 0, 1), back


def proposal_masks(subject, k, truth, condition):
    """The proposal's masks per ROI for one slice, as in bench_propose."""
    from napari_pvm.core.propose import propose_outlines
    from napari_pvm.core.rois import roi_mask

    case = _case(subject, k, condition)
    name, image, spacing, _, examples = case
    kwargs = {"spacing": spacing, "rois": list(truth), "clicks": bp.case_clicks(name, truth, spacing)}
    if condition != "click":
        kwargs["examples"] = examples
    out = propose_outlines(image, **kwargs)
    return {key: roi_mask(out[key], image.shape) for key in truth if key in out}, spacing


_CASES = {}


def _case(subject, k, condition):
    """The bench_propose case (image, spacing, examples) of one Dixon slice."""
    source = "same" if condition == "click+same-subject examples" else "other"
    if (source, subject) not in _CASES:
        subset = "tune" if subject == "TUM01" else "holdout"
        cases = bp.dixon_same_cases(subset) if source == "same" else bp.dixon_cases(subset)
        _CASES[source, subject] = {int(case[0].split("/")[1]): case for case in cases}
    return _CASES[source, subject][k]


def main(argv=None):
    import pandas as pd

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=("default", "dixon", "phantom", "musclemap"), default="default")
    p.add_argument("--proposals", action="store_true", help="also score the proposals' borders (Dixon only)")
    args = p.parse_args(argv)
    sources = {"dixon": dixon_slices, "phantom": phantom_slices, "musclemap": musclemap_slices}
    datasets = ["dixon", "phantom"] if args.data == "default" else [args.data]
    conditions = ("click", "click+other-subject examples", "click+same-subject examples")
    rows, chance, found = [], [], []
    for data in datasets:
        for subject, k, images, fraction, truth in sources[data]():
            pixels = border_kinds(truth, fraction)
            for image_name, image in images.items():
                visible, rate = visibility(image, list(truth.values()))
                chance.append(dict(data=subject, image=image_name, chance=rate))
                rows += [
                    dict(data=subject, image=image_name, kind=kind, visible=visible[r, c]) for kind, _, r, c in pixels
                ]
                if args.proposals and data == "dixon" and image_name == "W+F":
                    for condition in conditions:
                        masks, spacing = proposal_masks(subject, k, truth, condition)
                        for key in truth:
                            front = np.nonzero(truth[key])[0].mean()  # rows above the centroid: the front half
                            if key in masks:
                                m = masks[key]
                                dist = ndi.distance_transform_edt(~(m & ~ndi.binary_erosion(m)), sampling=spacing)
                                # signed: > 0 where the true border lies outside the proposal
                                signed = ndi.distance_transform_edt(~m, sampling=spacing) - ndi.distance_transform_edt(
                                    m, sampling=spacing
                                )
                            for kind, roi, r, c in pixels:
                                if roi == key:
                                    found.append(
                                        dict(
                                            data=subject,
                                            condition=condition,
                                            kind=kind,
                                            half="front" if r < front else "back",
                                            visible=visible[r, c],
                                            found=key in masks and dist[r, c] <= WITHIN_MM,
                                            signed_mm=signed[r, c] if key in masks else np.nan,
                                        )
                                    )
    df = pd.DataFrame(rows)
    table = df.groupby(["data", "image", "kind"]).agg(border_px=("visible", "size"), visible_pct=("visible", "mean"))
    table["visible_pct"] *= 100
    rates = pd.DataFrame(chance).groupby(["data", "image"])["chance"].mean() * 100
    share = df.groupby(["data", "image", "kind"]).size() / df.groupby(["data", "image"]).size() * 100
    table["share_of_border_pct"] = share
    pd.set_option("display.width", 160)
    print("\nTrue border pixels where an edge or thin bright line stands out from the muscle texture")
    print(table.round(1).to_string())
    print("\nChance (inner muscle pixels passing the same test), %")
    print(rates.round(1).to_string())
    if found:
        f = pd.DataFrame(found)
        g = f.groupby(["data", "condition", "kind", "visible"])["found"].agg(["size", "mean"])
        g["mean"] *= 100
        g = g.rename(columns={"size": "border_px", "mean": f"within_{WITHIN_MM:g}mm_pct"})
        print(f"\nTrue border pixels within {WITHIN_MM:g} mm of the proposal's border, visible or not (W+F)")
        print(g.round(1).to_string())
        fat = f[(f["kind"] == "ES|fat") & f["visible"]]
        h = fat.groupby(["data", "condition", "half"]).agg(
            border_px=("found", "size"),
            within_pct=("found", "mean"),
            signed_median_mm=("signed_mm", "median"),
            signed_sd_mm=("signed_mm", "std"),
        )
        h["within_pct"] *= 100
        print(f"\nVisible ES border against fat by half of the muscle: within {WITHIN_MM:g} mm, and the signed")
        print("distance to the proposal (> 0: the true border lies outside it)")
        print(h.round(1).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
