"""Spine measures: exactness over many sagittal phantoms, and speed.

    .venv/bin/python benchmarks/bench_spine.py [--cases 24] [--repeats 5]

For held-out phantoms (seeds 100, 101, …; spacings drawn from isotropic and
anisotropic sets in both orders; true angles drawn uniformly in −25…25°;
noise and shading on), written to disk and read back through the reader:

- VBQ relative error of ``core.spine.spine_row`` against the phantom truth
  (recomputed from the stored pixels independently of the measuring code);
- angle error in degrees against the generation parameter;
- the same with the spacing order deliberately swapped, to show that the
  check can fail.

Speed: median time of one ``spine_row`` (validation, five ROI medians, the
angle, the row) against a baseline measured in the same run: the bare
computation (``skimage.draw.polygon2mask`` + ``np.median`` for the five ROIs
and ``np.arctan2`` for the two lines).
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SPACINGS = [(0.75, 0.75), (1.0, 1.0), (0.5, 1.2), (1.2, 0.5), (0.4, 0.9), (0.9, 0.4)]


def baseline(image, ann, spacing):
    from skimage.draw import polygon2mask

    medians = [float(np.median(image[polygon2mask(image.shape, np.asarray(v["vertices"]))])) for v in ann["vertebrae"]]
    csf = float(np.median(image[polygon2mask(image.shape, np.asarray(ann["csf"]["vertices"]))]))
    excluded = {e["level"] for e in ann["excluded"]}
    kept = [m for m, v in zip(medians, ann["vertebrae"]) if v["level"] not in excluded]
    vbq = float(np.median(kept)) / csf
    a = ann["angles"][0]
    u, lo = (np.asarray(a[k]) * spacing for k in ("upper", "lower"))
    du, dl = u[1] - u[0], lo[1] - lo[0]
    angle = np.degrees(np.arctan2(dl[0], dl[1]) - np.arctan2(du[0], du[1]))
    return vbq, angle


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from napari_pvm.core.io import read_volume
    from napari_pvm.core.phantom_sagittal import write_sagittal_phantom
    from napari_pvm.core.spine import line_angle_deg, parse_spine_annotation, spine_row

    rng = np.random.default_rng(2026)  # picks spacings and angles; recorded by the seed itself
    vbq_err, ang_err, swapped_err = [], [], []
    t_full, t_base = [], []
    with tempfile.TemporaryDirectory(prefix="pvm-bench-spine-") as tmp:
        for i in range(args.cases):
            spacing = SPACINGS[i % len(SPACINGS)]
            angle = float(rng.uniform(-25, 25))
            files = write_sagittal_phantom(Path(tmp) / f"c{i}", seed=100 + i, spacing=spacing, kyphosis_deg=angle)
            truth = json.loads(files["truth"].read_text())
            obj = json.loads(files["annotation"].read_text())
            volume = read_volume(files["image"])
            ann = parse_spine_annotation(obj)
            row, _ = spine_row(volume, ann)
            vbq_err.append(abs(row["vbq"] / truth["vbq"] - 1))
            ang_err.append(abs(row["local_kyphosis_deg"] - truth["local_kyphosis_deg"]))
            upper, lower = ann.angles["local_kyphosis"]
            if spacing[0] != spacing[1]:
                swapped = line_angle_deg(upper, lower, spacing=volume.pixel_spacing[::-1])
                swapped_err.append(abs(swapped - truth["local_kyphosis_deg"]))
            image = volume.slice(obj["slice_index"]).astype(np.float64)
            for _ in range(args.repeats):
                start = time.perf_counter()
                spine_row(volume, ann)
                t_full.append(time.perf_counter() - start)
                start = time.perf_counter()
                baseline(image, obj, np.asarray(volume.pixel_spacing))
                t_base.append(time.perf_counter() - start)
    full, base = statistics.median(t_full), statistics.median(t_base)
    print(f"cases: {args.cases} (seeds 100–{99 + args.cases}), spacings {SPACINGS}, angles uniform −25…25°")
    print(f"VBQ relative error: max {max(vbq_err):.3g}")
    print(f"angle error: max {max(ang_err):.3g}°")
    print(
        f"angle error with the spacing order swapped (anisotropic cases): min {min(swapped_err):.3g}°, "
        f"median {statistics.median(swapped_err):.3g}°"
    )
    print(
        f"spine_row median {full * 1e3:.2f} ms; baseline (polygon2mask + median + arctan2) {base * 1e3:.2f} ms; "
        f"ratio {full / base:.2f}"
    )


if __name__ == "__main__":
    main()
