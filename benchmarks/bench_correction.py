"""How much work is left after a proposal: reshape strokes versus drawing by hand.

Usage (from the repository root):

    python benchmarks/bench_correction.py                       # phantom + Dixon, click and click+examples
    python benchmarks/bench_correction.py --data dixon --target 0.90
    python benchmarks/bench_correction.py --csv /tmp/correction.csv
    python benchmarks/bench_correction.py --joint            # a slice's outlines together, as the dock
    python benchmarks/bench_correction.py --joint --yield-only --data dixon

The cases, clicks and examples are those of ``bench_propose.py`` (same
generators and seeds). A simulated observer corrects each proposed outline
with the Measure dock's Reshape tool (:func:`napari_pvm.core.reshape.reshape_outline`):
while the outline's Dice with the true mask is below ``--target``, it takes
the largest region where proposal and truth disagree and drags one stroke
along the true border there, from where the two borders agree to where they
agree again, starting and ending it on the proposal's border (as an observer
who sees that border does); a stroke that makes the outline worse is turned
round once (Shift-T). It gives up after 8 strokes, or when a stroke is
refused or does not help; a given-up or missing outline is drawn by hand.
Each muscle is corrected on its own; with ``--joint`` a slice's outlines are
corrected together and a stroke on a shared border moves the neighbour's
border too, as in the dock (``--yield-only``: the neighbour only yields).

The baseline, in the same run, is drawing the outline by hand: the fewest
polygon vertices (clicks) whose outline reaches the same Dice, from the true
border simplified as far as it still does (``skimage.measure.approximate_polygon``).
Real observers click more than this lower bound. Speed: the median time of
one reshape against the clip the dock already runs after every edit.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "src"))

import bench_propose as bp  # noqa: E402

from napari_pvm.core.clip import clip_outline, mask_to_polygon  # noqa: E402
from napari_pvm.core.propose import propose_outlines  # noqa: E402
from napari_pvm.core.errors import AnnotationError  # noqa: E402
from napari_pvm.core.reshape import ReshapeError, reshape_neighbours, reshape_outline  # noqa: E402
from napari_pvm.core.rois import roi_mask  # noqa: E402

MAX_STROKES = 8
#: Border vertices this close (pixels) to a disagreement are traced by the stroke.
NEAR_PX = 1.5
#: Vertices added at each end of the traced run, so the stroke starts and
#: ends where proposal and truth agree.
RUN_MARGIN = 2


def dice(a, b):
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def true_border(truth):
    """The true mask's outline (largest piece, holes filled), as ordered vertices."""
    return mask_to_polygon(ndi.binary_fill_holes(bp.largest_piece(truth)))


def stroke_along_truth(border, error_region):
    """The run of true-border vertices next to ``error_region``, with margins."""
    far = ndi.distance_transform_edt(~error_region)
    rc = np.clip(np.round(border).astype(int), 0, np.array(error_region.shape) - 1)
    near = far[rc[:, 0], rc[:, 1]] <= NEAR_PX
    n = len(border)
    if not near.any():
        return None
    if near.all():  # the disagreement runs all round: one stroke per half
        near[n // 2 :] = False
    # the longest cyclic run of near vertices
    best, start = (0, 0), None
    for i in range(n):
        if near[i] and not near[i - 1]:
            k = 0
            while near[(i + k) % n] and k < n:
                k += 1
            if k > best[0]:
                best, start = (k, i), i
    length = best[0] + 2 * RUN_MARGIN
    return border[[(start - RUN_MARGIN + j) % n for j in range(min(length, n - 1))]]


def attach(stroke, vertices):
    """Start and end the stroke on the outline's border, as an observer who
    sees that border does: its nearest border points are added at both ends."""
    v = np.asarray(vertices, dtype=float)
    d = np.roll(v, -1, axis=0) - v

    def nearest(p):
        u = np.clip(((p - v) * d).sum(axis=1) / np.maximum((d**2).sum(axis=1), 1e-12), 0, 1)
        q = v + u[:, None] * d
        return q[np.argmin(np.hypot(*(q - p).T))]

    return np.vstack([[nearest(stroke[0])], stroke, [nearest(stroke[-1])]])


def next_stroke(vertices, truth, border, shape):
    """The observer's next stroke on an outline: along the true border where
    outline and truth disagree most, attached to the outline's border (None
    when no run of the true border borders the disagreement)."""
    stroke = stroke_along_truth(border, bp.largest_piece(roi_mask(vertices, shape) ^ truth))
    return None if stroke is None else attach(stroke, vertices)


def correct(vertices, truth, shape, spacing, target):
    """The simulated observer's corrections: (strokes, turns, final dice, fixed).

    A stroke that makes the outline worse is turned round once (Shift-T, one
    action) before the observer gives up."""
    border = true_border(truth)
    v = np.asarray(vertices, dtype=float)
    d = dice(roi_mask(v, shape), truth)
    strokes = turns = 0
    while d < target and strokes < MAX_STROKES:
        stroke = next_stroke(v, truth, border, shape)
        if stroke is None:
            break
        try:
            new = reshape_outline(v, stroke, shape=shape, spacing=spacing).vertices
        except ReshapeError:
            break
        strokes += 1
        new_d = dice(roi_mask(new, shape), truth)
        if new_d <= d:
            turns += 1
            try:
                new = reshape_outline(v, stroke, shape=shape, spacing=spacing, other_side=True).vertices
            except ReshapeError:
                break
            new_d = dice(roi_mask(new, shape), truth)
            if new_d <= d:
                break
        v, d = new, new_d
    return strokes, turns, d, d >= target


def correct_slice(outlines, truths, shape, spacing, target):
    """The same observer on a whole slice, as the dock applies strokes: a
    stroke on one outline also moves a neighbour's border where they share
    one (:func:`napari_pvm.core.reshape.reshape_neighbours`).

    Each step strokes the outline with the lowest Dice still below
    ``target``; a stroke that does not raise the slice's mean Dice is turned
    round once, and when that does not either, that outline is given up
    (drawn by hand). Returns ``{key: (strokes, turns, dice, fixed)}``.
    """
    current = {k: np.asarray(v, dtype=float) for k, v in outlines.items()}
    borders = {k: true_border(m) for k, m in truths.items()}
    counts = {k: [0, 0] for k in current}
    given_up = set()

    def dices(state):
        return {k: dice(roi_mask(v, shape), truths[k]) for k, v in state.items()}

    d = dices(current)
    while True:
        todo = [k for k in current if d[k] < target and k not in given_up and counts[k][0] < MAX_STROKES]
        if not todo:
            break
        key = min(todo, key=lambda k: (d[k], k))
        stroke = next_stroke(current[key], truths[key], borders[key], shape)
        if stroke is None:
            given_up.add(key)
            continue
        best = None
        for other_side in (False, True):
            try:
                moved = reshape_outline(
                    current[key], stroke, shape=shape, spacing=spacing, other_side=other_side
                ).vertices
                others = {k: v for k, v in current.items() if k != key}
                state = dict(
                    current, **reshape_neighbours(key, current[key], moved, others, shape=shape), **{key: moved}
                )
            except AnnotationError:
                break
            counts[key][1 if other_side else 0] += 1
            new = dices(state)
            if np.mean(list(new.values())) > np.mean(list(d.values())):
                best = (state, new)
                break
        if best is None:
            given_up.add(key)
            continue
        current, d = best
    return {k: (counts[k][0], counts[k][1], d[k], d[k] >= target) for k in current}


def manual_vertices(truth, target):
    """Fewest vertices of a hand-drawn polygon (simplified true border) reaching ``target``."""
    from skimage.measure import approximate_polygon

    border = true_border(truth)
    shape = truth.shape
    best = len(border)
    for tolerance in np.arange(0.25, 8.01, 0.25):
        poly = approximate_polygon(np.vstack([border, border[:1]]), tolerance)[:-1]
        if len(poly) >= 3 and dice(roi_mask(poly, shape), truth) >= target:
            best = min(best, len(poly))
    return best


def evaluate(cases, condition, target, seed=bp.SEED, joint=False):
    rows, timing = [], {"reshape": [], "clip": []}
    for name, image, spacing, truth, examples in cases:
        clicks = bp.case_clicks(name, truth, spacing, seed)  # as bench_propose
        kwargs = {"spacing": spacing, "rois": list(truth), "clicks": clicks}
        if condition == "click+examples":
            kwargs["examples"] = examples
        out = propose_outlines(image, **kwargs)
        shape = image.shape
        if joint:
            done = correct_slice({k: v for k, v in out.items() if k in truth}, truth, shape, spacing, target)
        for key, m in truth.items():
            hand = manual_vertices(m, target)
            if key not in out:
                rows.append(
                    dict(
                        case=name,
                        condition=condition,
                        roi=key,
                        dice_proposed=0.0,
                        strokes=0,
                        turns=0,
                        dice_corrected=0.0,
                        fixed=False,
                        hand_vertices=hand,
                    )
                )
                continue
            if joint:
                strokes, turns, d, fixed = done[key]
            else:
                strokes, turns, d, fixed = correct(out[key], m, shape, spacing, target)
            rows.append(
                dict(
                    case=name,
                    condition=condition,
                    roi=key,
                    dice_proposed=dice(roi_mask(out[key], shape), m),
                    strokes=strokes,
                    turns=turns,
                    dice_corrected=d,
                    fixed=fixed,
                    hand_vertices=hand,
                )
            )
        _time_one_reshape(out, truth, shape, spacing, timing)
    return rows, timing


def _time_one_reshape(out, truth, shape, spacing, timing):
    """One stroke on the first proposed outline against the clip the dock runs after every edit."""
    for key, m in truth.items():
        if key not in out:
            continue
        border = true_border(m)
        error = roi_mask(out[key], shape) ^ m
        stroke = stroke_along_truth(border, error)
        if stroke is None:
            continue
        stroke = attach(stroke, out[key])
        others = {k: v for k, v in out.items() if k != key}
        try:
            t0 = time.perf_counter()
            reshape_outline(out[key], stroke, shape=shape, spacing=spacing)
            t1 = time.perf_counter()
            clip_outline(out[key], others, shape=shape, name=key)
            t2 = time.perf_counter()
        except Exception:  # a refused stroke or clip is not a timing
            continue
        timing["reshape"].append(t1 - t0)
        timing["clip"].append(t2 - t1)
        return


def summarise(rows, timing, label, target):
    import pandas as pd

    df = pd.DataFrame(rows)
    df["muscle"] = df["roi"].str[:2]
    df["subject"] = df["case"].str.split("/").str[0]
    # actions: a proposed outline costs its click, its strokes and turns; a given-up one is drawn by hand too
    done = 1 + df["strokes"] + df["turns"]
    df["actions"] = np.where(df["fixed"], done, done + df["hand_vertices"] + 1)
    df["hand_actions"] = df["hand_vertices"] + 1  # the vertices and Enter
    g = df.groupby(["subject", "condition", "muscle"]).agg(
        n=("roi", "size"),
        dice_proposed=("dice_proposed", "mean"),
        dice_corrected=("dice_corrected", "mean"),
        fixed_pct=("fixed", lambda f: 100.0 * f.mean()),
        strokes_median=("strokes", "median"),
        strokes_p90=("strokes", lambda s: s.quantile(0.9)),
        turns=("turns", "sum"),
        actions_mean=("actions", "mean"),
        hand_actions_mean=("hand_actions", "mean"),
    )
    g["ratio"] = g["actions_mean"] / g["hand_actions_mean"]
    print(f"\n== {label}: target Dice {target}")
    print(g.round(3).to_string())
    if timing["reshape"]:
        r, c = np.median(timing["reshape"]) * 1e3, np.median(timing["clip"]) * 1e3
        print(f"one reshape: median {r:.1f} ms; clip after an edit (baseline) {c:.1f} ms; ratio {r / c:.2f}")
    return g


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=("phantom", "dixon", "default"), default="default")
    p.add_argument("--subset", choices=("tune", "holdout", "all"), default="all")
    p.add_argument("--conditions", default="click,click+examples")
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument(
        "--joint",
        action="store_true",
        help="correct each slice's outlines together, a stroke moving a shared border for both (as the dock does)",
    )
    p.add_argument("--csv", help="write per-outline rows to this CSV")
    p.add_argument(
        "--yield-only",
        action="store_true",
        help="with --joint: the neighbour only yields what a stroke takes (nothing cut off is handed over)",
    )
    args = p.parse_args(argv)
    if args.yield_only:
        import napari_pvm.core.reshape as reshape

        reshape.SHARED_BORDER = np.inf  # no piece reaches the share: none is handed over
    datasets = ["phantom", "dixon"] if args.data == "default" else [args.data]
    all_rows = []
    for data in datasets:
        for condition in args.conditions.split(","):
            cases = bp.phantom_cases() if data == "phantom" else bp.dixon_cases(args.subset)
            rows, timing = evaluate(cases, condition, args.target, joint=args.joint)
            summarise(rows, timing, f"{data} {condition}{' (joint)' if args.joint else ''}", args.target)
            all_rows += rows
    if args.csv:
        bp.write_rows(all_rows, args.csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
