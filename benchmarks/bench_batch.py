"""Benchmark of `napari-pvm batch` against a sequential scikit-image baseline.

    .venv/bin/python benchmarks/bench_batch.py [--cases 40] [--repeats 1]
    .venv/bin/python benchmarks/bench_batch.py --startup [--repeats 5]

Generates phantom cases (512 × 512 L4 slices with their annotations), then
measures them

- with the scikit-image baseline, sequentially in this process:
  ``multiscale_basic_features`` + ``fit_segmenter`` / ``predict_segmenter``
  (RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=0)) on
  the same samples, FI% inside the same outlines;
- with ``run_batch`` on a dask.distributed LocalCluster of 1 and of 2 worker
  processes (one thread each), started before the clock runs (start-up is
  reported separately).

Prints cases per minute, ratios (2 workers vs baseline, 2 vs 1 worker), the
peak memory of each worker, and the FI% error of both methods against the
phantoms' truth.
"""

import argparse
import json
import os
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

WORK = Path(__file__).resolve().parent / "_work" / "batch"


def _make_case(i):
    from napari_pvm.core.phantom import write_phantom

    folder = WORK / f"case{i:03d}"
    if not (folder / "truth.json").exists():
        rng = np.random.default_rng(1000 + i)
        fractions = {m: float(rng.uniform(0.05, 0.45)) for m in ("PS", "ES", "MF")}
        write_phantom(folder, seed=1000 + i, n_slices=3, fat_fractions=fractions)
    return folder


def make_cases(n):
    import pandas as pd

    WORK.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        folders = list(pool.map(_make_case, range(n)))
    rows = [
        {
            "patient_id": f"B{i:03d}",
            "observer_id": "bench",
            "image": f"{f.name}/phantom.nii.gz",
            "annotation": f"{f.name}/phantom.pvm.json",
        }
        for i, f in enumerate(folders)
    ]
    worklist = WORK / f"worklist_{n}.csv"
    pd.DataFrame(rows).to_csv(worklist, index=False)
    return worklist, folders


def baseline(folders):
    """Sequential scikit-image trainable segmentation; returns (seconds, FI errors)."""
    from skimage.feature import multiscale_basic_features
    from skimage.future import fit_segmenter, predict_segmenter
    from sklearn.ensemble import RandomForestClassifier

    from napari_pvm.core.annotation import read_annotation
    from napari_pvm.core.classify import labels_from_samples
    from napari_pvm.core.io import read_volume
    from napari_pvm.core.measure import measure_masks, outline_masks

    errors = []
    t0 = time.perf_counter()
    for folder in folders:
        volume = read_volume(folder / "phantom.nii.gz")
        ann = read_annotation(folder / "phantom.pvm.json")
        image = volume.slice(ann.slice_index)
        labels = labels_from_samples(ann.samples, image.shape)
        masks = outline_masks(ann.rois, image.shape)
        feats = multiscale_basic_features(image)
        clf = fit_segmenter(labels, feats, RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=0))
        fat = predict_segmenter(feats, clf) == 2
        out = measure_masks(masks, fat, spacing=volume.pixel_spacing)
        errors.append(_fi_error(out, folder))
    return time.perf_counter() - t0, errors


def _fi_error(row, folder):
    truth = json.loads((folder / "truth.json").read_text())
    return max(abs(row[f"{g}_B_fi_pct"] - truth[f"{g}_B_fi_pct"]) for g in ("PS", "ES", "MF", "ESMF"))


def ours(worklist, n_workers):
    """run_batch on a fresh LocalCluster; returns a dict of timings."""
    import dask
    from distributed import Client, LocalCluster

    from napari_pvm.core.batch import run_batch
    from napari_pvm.core.store import read_rows

    out = WORK / f"out_{n_workers}w_{time.time_ns()}.csv"
    t0 = time.perf_counter()
    # the same worker environment as `napari-pvm batch` (see core.batch._client)
    with dask.config.set(
        {"distributed.worker.daemon": False, "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    ):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=40,
            env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"},
        )
    client = Client(cluster)
    # warm each worker (imports, compiled kernels) so that the clock measures cases, not start-up
    client.run(_warm_up)
    startup = time.perf_counter() - t0
    summary = run_batch(worklist, out, scheduler=cluster.scheduler_address)
    peak = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    client.close()
    cluster.close()
    rows = read_rows(out)
    folders = {f"B{i:03d}": WORK / f"case{i:03d}" for i in range(len(rows))}
    errors = [_fi_error(rec, folders[rec["patient_id"]]) for rec in rows.to_dict(orient="records")]
    out.unlink()
    return {
        "startup_s": startup,
        "batch_s": summary.seconds,
        "measured": summary.measured,
        "failed": summary.failed,
        "peak_mb": sorted(peak.values()),
        "errors": errors,
    }


def _warm_up():
    from napari_pvm.core.classify import FatClassifier
    from napari_pvm.core.phantom import make_phantom

    ph = make_phantom(seed=0, spacing=1.2, n_slices=1, supersample=1)
    from napari_pvm.core.classify import labels_from_samples

    FatClassifier(n_trees=4).fit(ph.l4, labels_from_samples(ph.samples, ph.l4.shape)).predict(ph.l4)
    return True


def startup(repeats):
    """Fixed start-up cost of a local batch, as the issue defines it: the wall
    time of a 2-case `napari-pvm batch --workers 2` minus that of one
    `napari-pvm measure` of the same case (fresh processes, alternated)."""
    import subprocess
    import sys

    exe = str(Path(sys.executable).with_name("napari-pvm"))
    folder = WORK / "startup"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        subprocess.run(
            [exe, "phantom", str(folder / f"c{i}"), "--seed", str(i + 1), "--force"], check=True, capture_output=True
        )
    (folder / "wl.csv").write_text(
        "patient_id,observer_id,image,annotation\n"
        + "".join(f"P{i},A,c{i}/phantom.nii.gz,c{i}/phantom.pvm.json\n" for i in range(2))
    )
    batch, measure, inside = [], [], []
    for _ in range(repeats):
        for f in folder.glob("out*.csv"):
            f.unlink()
        t = time.perf_counter()
        out = subprocess.run(
            [exe, "batch", str(folder / "wl.csv"), "--csv", str(folder / "out.csv"), "--workers", "2", "--json"],
            check=True,
            capture_output=True,
            text=True,
        )
        batch.append(time.perf_counter() - t)
        inside.append(json.loads(out.stdout)["startup_seconds"])
        t = time.perf_counter()
        subprocess.run(
            [
                exe,
                "measure",
                str(folder / "c0/phantom.nii.gz"),
                str(folder / "c0/phantom.pvm.json"),
                "--patient",
                "P0",
                "--observer",
                "A",
            ],
            check=True,
            capture_output=True,
        )
        measure.append(time.perf_counter() - t)
    med = statistics.median
    print(f"batch --workers 2 (2 cases): median {med(batch):.2f} s; measure (1 case): median {med(measure):.2f} s")
    print(
        f"fixed start-up = difference of medians: {med(batch) - med(measure):.2f} s (target <= 1 s); "
        f"start-up reported by run_batch: median {med(inside):.2f} s"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--startup", action="store_true", help="measure the fixed start-up cost only")
    args = parser.parse_args()
    if args.startup:
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        startup(max(args.repeats, 3))
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    t = time.perf_counter()
    worklist, folders = make_cases(args.cases)
    print(f"{args.cases} phantom cases ready in {time.perf_counter() - t:.1f} s ({WORK})")

    base = [baseline(folders) for _ in range(args.repeats)]
    base_s = statistics.median(b[0] for b in base)
    runs = {n: [ours(worklist, n) for _ in range(args.repeats)] for n in (1, 2)}

    def per_min(seconds):
        return 60.0 * args.cases / seconds

    print()
    print(f"{'method':<34}{'cases/min':>10}{'start-up s':>12}{'peak MB/worker':>16}{'max |ΔFI| pp':>14}")
    print(
        f"{'scikit-image baseline (sequential)':<34}{per_min(base_s):>10.1f}{'-':>12}{'-':>16}{max(base[0][1]):>14.2f}"
    )
    for n, rs in runs.items():
        s = statistics.median(r["batch_s"] for r in rs)
        up = statistics.median(r["startup_s"] for r in rs)
        peak = max(max(r["peak_mb"]) for r in rs)
        err = max(max(r["errors"]) for r in rs)
        print(f"{f'napari-pvm batch, {n} worker(s)':<34}{per_min(s):>10.1f}{up:>12.1f}{peak:>16.0f}{err:>14.2f}")
    one = statistics.median(r["batch_s"] for r in runs[1])
    two = statistics.median(r["batch_s"] for r in runs[2])
    print()
    print(f"throughput 2 workers / baseline: {base_s / two:.2f}x (target >= 3)")
    print(f"throughput 2 workers / 1 worker: {one / two:.2f}x (target >= 1.7)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
