"""Per-patient random-forest fat classifier (contract 5).

:class:`FatClassifier` does the job of Fiji's Trainable Weka Segmentation
(TWS) in the seed paper: a random forest, trained on this patient's own fat
and muscle samples, labels every pixel inside the muscle outlines as fat or
muscle. It keeps TWS's defaults where they are defaults of the method (the
76-map feature stack, 200 trees, 2 features tried per split, unlimited
depth, information gain, 100 % bootstrap) and differs where TWS is weak for
this task:

- **reproducible**: the forest's seed is a parameter (0 by default) and is
  recorded; the same image, samples and settings give the same mask with
  any number of threads, with or without numba (across machines, up to the
  floating-point rounding of the features);
- **calibrated on this patient**: intensities are mapped so that the
  muscle sample's median is 0 and the fat sample's median is 1, after
  dividing out a smooth coil-shading field fitted to the patient's own fat
  (``bias_correction``);
- **partial volume and thin fat** (``calibration``): besides the sampled
  pixels the forest sees a small synthetic *calibration canvas* built from
  this patient's own sample pixels: muscle with fat streaks and blobs of
  every width and orientation, mixed at sub-pixel resolution, each canvas
  pixel labelled fat when more than half of its area is fat. A forest
  trained on thick subcutaneous fat alone learns "subcutaneous context"
  and misses intramuscular streaks; the canvas teaches it "fat signal in
  a muscle neighbourhood" and puts the decision at the 50 % partial-volume
  point that FI% is defined by;
- **fast**: features are cached per slice content and computed only
  around the pixels that matter; the forest is grown and applied by a
  small compiled engine (numba) instead of Weka or scikit-learn.

``docs/classifier.md`` gives the evidence for each choice and
``docs/benchmarks.md`` the measured accuracy and speed.
"""

import dataclasses
import functools
import math
import warnings

import numpy as np

from . import features as _features
from .errors import ClassifierError

__all__ = [
    "METHOD",
    "MIN_SAMPLE_PIXELS",
    "FatClassifier",
    "PreviewClassifier",
    "labels_from_samples",
    "warm_up",
]

#: Identifier of the algorithm (bumped whenever results could change).
METHOD = "rf-weka/1"
#: Fewest pixels a class needs to be trained on.
MIN_SAMPLE_PIXELS = 10
MUSCLE, FAT = 1, 2

# Training-set sizes: at most this many sampled pixels per class (a
# deterministic subsample beyond that) and this many canvas pixels.
_MAX_PER_CLASS = 500
_CANVAS_SIZE = 128
_CANVAS_PIXELS = 2000
_CANVAS_SUPERSAMPLE = 8


# =====================================================================
# training labels
# =====================================================================
def labels_from_samples(samples, shape, painted=None):
    """Label image from contract-2 sample polygons and/or painted labels.

    Parameters
    ----------
    samples : list of dict or None
        ``{"class": "fat" | "muscle", "vertices": [[row, col], ...]}``.
    shape : tuple of 2 ints
        Slice shape.
    painted : ndarray of shape ``shape``, optional
        Painted labels (0 unlabelled, 1 muscle, 2 fat), e.g. a napari
        Labels layer's data for this slice.

    Returns
    -------
    ndarray of uint8, shape ``shape``
        0 unlabelled, 1 muscle, 2 fat. A pixel claimed by both classes is
        left unlabelled.

    Raises
    ------
    ClassifierError
        A polygon lies outside the image, has too few vertices or an
        unknown class; painted labels of another shape or with values
        other than 0, 1, 2.

    Examples
    --------
    >>> lab = labels_from_samples(
    ...     [{"class": "fat", "vertices": [[1, 1], [1, 4], [4, 4], [4, 1]]}], (8, 8))
    >>> int((lab == 2).sum())
    16
    """
    from .rois import roi_mask

    shape = tuple(int(s) for s in shape)
    fat = np.zeros(shape, bool)
    muscle = np.zeros(shape, bool)
    for i, s in enumerate(samples or []):
        cls = s.get("class") if isinstance(s, dict) else None
        if cls not in ("fat", "muscle"):
            raise ClassifierError(f"sample {i + 1} has class {cls!r}; a sample is 'fat' or 'muscle'")
        try:
            v = np.asarray(s.get("vertices"), dtype=float)
        except (TypeError, ValueError):
            raise ClassifierError(f"{cls} sample {i + 1}: vertices must be [row, col] numbers") from None
        if v.ndim != 2 or v.shape[1] != 2 or len(v) < 3 or not np.all(np.isfinite(v)):
            raise ClassifierError(
                f"{cls} sample {i + 1}: a sample outline needs at least 3 finite [row, col] vertices; redraw it"
            )
        lo, hi = v.min(axis=0), v.max(axis=0)
        if lo[0] < -0.5 or lo[1] < -0.5 or hi[0] > shape[0] - 0.5 or hi[1] > shape[1] - 0.5:
            raise ClassifierError(
                f"{cls} sample {i + 1} lies outside the {shape[0]}×{shape[1]} slice (rows {lo[0]:.0f}–{hi[0]:.0f}, "
                f"columns {lo[1]:.0f}–{hi[1]:.0f}); draw it again on this slice"
            )
        (fat if cls == "fat" else muscle)[...] |= roi_mask(v, shape)
    if painted is not None:
        p = np.asarray(painted)
        if p.shape != shape:
            raise ClassifierError(
                f"painted labels have shape {p.shape} but the slice is {shape}; paint on the slice being measured"
            )
        bad = ~np.isin(p, (0, MUSCLE, FAT))
        if bad.any():
            raise ClassifierError(
                f"painted labels hold values other than 0, 1 (muscle) and 2 (fat), e.g. {p[bad].flat[0]!r}; "
                "paint with label 1 for muscle and 2 for fat"
            )
        fat |= p == FAT
        muscle |= p == MUSCLE
    out = np.zeros(shape, np.uint8)
    out[muscle] = MUSCLE
    out[fat] = FAT
    out[fat & muscle] = 0
    return out


# =====================================================================
# forest engine (compiled with numba when available)
# =====================================================================
_LCG_MOD = 2147483647  # Park–Miller "minimal standard" generator, 31 bits
_LCG_MUL = 48271


prange = range  # replaced by numba.prange in the compiled kernels

# impurity modes of the tree grower
_ENTROPY_COUNTS, _ENTROPY, _GINI = 0, 1, 2


def _lcg(state):
    """Park–Miller "minimal standard" step (48271 x mod 2^31 - 1), without
    a division; states lie in [1, 2^31 - 2]."""
    x = state * 48271
    x = (x & 2147483647) + (x >> 31)
    if x >= 2147483647:
        x -= 2147483647
    return x


def _impurity(a, b, mode, table):
    """(a + b) × impurity of a node with class weights a and b."""
    if mode == 0:  # entropy, integer weights: table[k] = k ln k
        return table[int(a + b)] - table[int(a)] - table[int(b)]
    t = a + b
    if t <= 0.0:
        return 0.0
    if mode == 2:
        return t - (a * a + b * b) / t
    r = t * math.log(t)
    if a > 0.0:
        r -= a * math.log(a)
    if b > 0.0:
        r -= b * math.log(b)
    return r


def _bin_feature(col, max_bins, cuts, xb):
    """Cut points of one feature and its bin per training row; returns
    the number of bins. Cut points are midpoints between consecutive
    distinct values (all of them when there are at most ``max_bins``
    distinct values, else ``max_bins - 1`` at quantiles)."""
    n = col.shape[0]
    order = np.argsort(col)
    s = col[order]
    nd = 1
    for i in range(1, n):
        if s[i] > s[i - 1]:
            nd += 1
    c = 0
    if nd <= max_bins:
        for i in range(1, n):
            if s[i] > s[i - 1]:
                lo = s[i - 1]
                hi = s[i]
                m = np.float32((np.float64(lo) + np.float64(hi)) / 2.0)
                if m >= hi:
                    m = lo
                cuts[c] = m
                c += 1
    else:
        last = -np.inf
        for k in range(1, max_bins):
            pos = (k * n) // max_bins
            lo = s[pos - 1]
            hi = s[pos]
            if lo < hi and lo > last:
                m = np.float32((np.float64(lo) + np.float64(hi)) / 2.0)
                if m >= hi:
                    m = lo
                cuts[c] = m
                c += 1
                last = lo
    b = 0  # bin = number of cut points below the value, walking in order
    for j in range(n):
        v = s[j]
        while b < c and cuts[b] < v:
            b += 1
        xb[order[j]] = b
    return c + 1


def _bin_all(xt, max_bins, cuts, xb, nbins):
    for f in prange(xt.shape[0]):
        nbins[f] = _bin_feature(xt[f], max_bins, cuts[f], xb[f])


def _grow_tree(xb, nbins, cuts, y, cw, k_try, mode, table, seed, feat, thr, left, val):
    """Grow one tree (TWS/FastRandomForest rules); return (nodes, depth).

    ``xb`` is the binned training matrix, feature-major. Node ``i`` is a
    leaf when ``left[i] == i`` (its threshold is +inf, so a fixed-depth
    walk stays there); otherwise its children are ``left[i]`` (value at or
    below ``thr[i]``) and ``left[i] + 1``. ``val`` is the weighted fat
    share of the node's bootstrap sample.
    """
    nf, n = xb.shape
    state = seed
    counts = np.zeros(n, np.int64)
    for _ in range(n):  # bootstrap: n draws with replacement (100 % bag)
        state = _lcg(state)
        counts[(state * n) >> 31] += 1
    idx = np.empty(n, np.int64)
    w = np.zeros(n, np.float64)
    m = 0
    for i in range(n):
        if counts[i] > 0:
            idx[m] = i
            m += 1
            w[i] = counts[i] * cw[y[i]]
    perm = np.arange(nf)
    hist = np.zeros((256, 2), np.float64)
    sb = np.zeros(32, np.int64)  # bins, targets and weights of a small node
    sy = np.zeros(32, np.int64)
    sw = np.zeros(32, np.float64)
    st_node = np.empty(2 * m + 2, np.int64)
    st_s = np.empty(2 * m + 2, np.int64)
    st_e = np.empty(2 * m + 2, np.int64)
    st_d = np.empty(2 * m + 2, np.int64)
    st_w0 = np.empty(2 * m + 2, np.float64)
    st_w1 = np.empty(2 * m + 2, np.float64)
    st_node[0] = 0
    st_s[0] = 0
    st_e[0] = m
    st_d[0] = 0
    st_w0[0] = 0.0
    st_w1[0] = 0.0
    for t in range(m):
        i = idx[t]
        if y[i] == 0:
            st_w0[0] += w[i]
        else:
            st_w1[0] += w[i]
    sp = 1
    n_nodes = 1
    depth = 0
    while sp > 0:
        sp -= 1
        node = st_node[sp]
        s = st_s[sp]
        e = st_e[sp]
        d = st_d[sp]
        if d > depth:
            depth = d
        w0 = st_w0[sp]  # class weights of the node, carried from the split
        w1 = st_w1[sp]
        wt = w0 + w1
        if w0 < 1e-9 * wt:
            w0 = 0.0
        if w1 < 1e-9 * wt:
            w1 = 0.0
        left[node] = node
        feat[node] = 0
        thr[node] = np.inf
        val[node] = w1 / (w0 + w1)
        if w0 == 0.0 or w1 == 0.0:
            continue
        parent = _impurity(w0, w1, mode, table)
        tol = 1e-9 * wt
        best_gain = tol
        best_f = -1
        best_c = -1
        best_l0 = 0.0
        best_l1 = 0.0
        k = 0
        # try k_try random features, and more while none of them splits
        # with a positive gain (FastRandomForest's "sensible split" rule)
        while k < nf and (k < k_try or best_f < 0):
            state = _lcg(state)
            j = k + ((state * (nf - k)) >> 31)
            f = perm[j]
            perm[j] = perm[k]
            perm[k] = f
            k += 1
            nb = nbins[f]
            if nb < 2:
                continue
            xf = xb[f]
            size = e - s
            if size * 8 < nb:
                # small node: sort its samples by bin instead of a histogram
                for t in range(size):
                    i = idx[s + t]
                    b = xf[i]
                    j = t
                    while j > 0 and sb[j - 1] > b:
                        sb[j] = sb[j - 1]
                        sy[j] = sy[j - 1]
                        sw[j] = sw[j - 1]
                        j -= 1
                    sb[j] = b
                    sy[j] = y[i]
                    sw[j] = w[i]
                l0 = 0.0
                l1 = 0.0
                t = 0
                prev_kind = -1
                while t < size:  # one group of equal bins at a time
                    g0 = 0.0
                    g1 = 0.0
                    u = t
                    while u < size and sb[u] == sb[t]:
                        if sy[u] == 0:
                            g0 += sw[u]
                        else:
                            g1 += sw[u]
                        u += 1
                    kind = 2
                    if g1 <= 0.0:
                        kind = 0
                    elif g0 <= 0.0:
                        kind = 1
                    evaluate = t > 0 and (kind == 2 or kind != prev_kind)
                    cut = sb[t - 1] if t > 0 else 0
                    if evaluate:
                        gain = parent - _impurity(l0, l1, mode, table) - _impurity(w0 - l0, w1 - l1, mode, table)
                        if gain > best_gain:
                            best_gain = gain
                            best_f = f
                            best_c = cut
                            best_l0 = l0
                            best_l1 = l1
                    l0 += g0
                    l1 += g1
                    prev_kind = kind
                    t = u
                continue
            for b in range(nb):
                hist[b, 0] = 0.0
                hist[b, 1] = 0.0
            for t in range(s, e):
                i = idx[t]
                hist[xf[i], y[i]] += w[i]
            # Cuts between non-empty bins; a cut between two bins that hold
            # the same single class cannot be the best one (Fayyad & Irani's
            # boundary points), so it is not evaluated.
            l0 = 0.0
            l1 = 0.0
            prev = -1
            prev_kind = -1  # 0: only muscle, 1: only fat, 2: both
            for b in range(nb):
                h0 = hist[b, 0]
                h1 = hist[b, 1]
                if h0 + h1 <= 0.0:
                    continue
                kind = 2
                if h1 <= 0.0:
                    kind = 0
                elif h0 <= 0.0:
                    kind = 1
                if prev >= 0 and (kind == 2 or kind != prev_kind):
                    gain = parent - _impurity(l0, l1, mode, table) - _impurity(w0 - l0, w1 - l1, mode, table)
                    if gain > best_gain:
                        best_gain = gain
                        best_f = f
                        best_c = prev
                        best_l0 = l0
                        best_l1 = l1
                l0 += h0
                l1 += h1
                prev = b
                prev_kind = kind
        if best_f < 0:
            continue
        xf = xb[best_f]
        a = s
        z = e - 1
        while a <= z:
            if xf[idx[a]] <= best_c:
                a += 1
            else:
                tmp = idx[a]
                idx[a] = idx[z]
                idx[z] = tmp
                z -= 1
        feat[node] = best_f
        thr[node] = cuts[best_f, best_c]
        left[node] = n_nodes
        st_node[sp] = n_nodes + 1
        st_s[sp] = a
        st_e[sp] = e
        st_d[sp] = d + 1
        st_w0[sp] = w0 - best_l0
        st_w1[sp] = w1 - best_l1
        sp += 1
        st_node[sp] = n_nodes
        st_s[sp] = s
        st_e[sp] = a
        st_d[sp] = d + 1
        st_w0[sp] = best_l0
        st_w1[sp] = best_l1
        sp += 1
        n_nodes += 2
    return n_nodes, depth


def _grow_forest(xb, nbins, cuts, y, cw, k_try, mode, table, seeds, feat, thr, left, val, sizes, depths):
    for t in prange(seeds.shape[0]):
        nn, dd = _grow_tree(xb, nbins, cuts, y, cw, k_try, mode, table, seeds[t], feat[t], thr[t], left[t], val[t])
        sizes[t] = nn
        depths[t] = dd


def _eval_forest(x, feat, thr, left, val, depth, decide, out_p, out_d):
    """Average leaf value over the trees, 8 pixels at a time.

    Each tree is walked to its full depth without branching (leaves loop on
    themselves), 8 independent walks interleaved. With ``decide`` only the
    fat/muscle decision (mean > 0.5) is wanted, and a block stops once the
    remaining trees can no longer change any of its decisions.
    """
    n_pix = x.shape[0]
    n_trees = feat.shape[0]
    half = 0.5 * n_trees
    n_blocks = (n_pix + 7) // 8
    for blk in prange(n_blocks):
        p0 = blk * 8
        nb = min(8, n_pix - p0)
        acc = np.zeros(8)
        nodes = np.zeros(8, np.int64)
        done_at = n_trees - 1
        for t in range(n_trees):
            for k in range(8):
                nodes[k] = 0
            for _ in range(depth[t]):
                moved = False
                for k in range(nb):
                    nd = nodes[k]
                    nxt = left[t, nd] + (x[p0 + k, feat[t, nd]] > thr[t, nd])
                    if nxt != nd:
                        moved = True
                    nodes[k] = nxt
                if not moved:
                    break
            for k in range(nb):
                acc[k] += val[t, nodes[k]]
            if decide and (t & 7) == 7:
                rest = n_trees - 1 - t
                settled = True
                for k in range(nb):
                    if not (acc[k] > half + 1e-6 or acc[k] + rest < half - 1e-6):
                        settled = False
                        break
                if settled:
                    done_at = t
                    break
        for k in range(nb):
            if decide:
                if done_at < n_trees - 1:
                    out_d[p0 + k] = acc[k] > half + 1e-6
                else:
                    out_d[p0 + k] = acc[k] / n_trees > 0.5
            else:
                out_p[p0 + k] = acc[k] / n_trees


_KERNELS = ("_lcg", "_impurity", "_bin_feature", "_bin_all", "_grow_tree", "_grow_forest", "_eval_forest")
_ENGINE = None


def _engine():
    """The forest kernels: compiled by numba (cached on disk) when it is
    installed, else the same Python functions (same results, far slower)."""
    global _ENGINE
    if _ENGINE is not None:
        return _ENGINE
    try:
        import numba
    except ImportError:  # pragma: no cover - exercised only without numba
        warnings.warn(
            "numba is not installed: the fat classifier grows its forest in plain Python, "
            "with the same results but far slower (pip install numba)",
            RuntimeWarning,
            stacklevel=3,
        )
        _ENGINE = {name.lstrip("_"): globals()[name] for name in _KERNELS}
        return _ENGINE
    import types

    env = dict(globals())
    env["prange"] = numba.prange

    def rebuild(name):
        fn = globals()[name]
        return types.FunctionType(fn.__code__, env, fn.__name__, fn.__defaults__)

    serial = numba.njit(cache=True, nogil=True)
    parallel = numba.njit(cache=True, nogil=True, parallel=True)
    for name in ("_lcg", "_impurity", "_bin_feature", "_grow_tree"):
        env[name] = serial(rebuild(name))
    for name in ("_bin_all", "_grow_forest", "_eval_forest"):
        env[name] = parallel(rebuild(name))
    _ENGINE = {name.lstrip("_"): env[name] for name in _KERNELS}
    return _ENGINE


def warm_up():
    """Compile the forest engine (or load it from numba's disk cache).

    The first use in a process otherwise pays this cost (seconds the very
    first time on a machine, a fraction of a second afterwards); a widget
    can call this in a worker when it opens.
    """
    rng = np.random.default_rng(0)
    x = rng.random((64, 3)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    for criterion, cw in (("entropy", (1.0, 1.0)), ("entropy", (1.0, 2.0)), ("gini", (1.0, 1.0))):
        forest = _grow(x, y, n_trees=2, k_try=2, seed=0, class_weight=cw, criterion=criterion)
    forest.proba(x)
    forest.decide(x)


@dataclasses.dataclass
class _Forest:
    feat: np.ndarray
    thr: np.ndarray
    left: np.ndarray
    val: np.ndarray
    depth: np.ndarray

    @property
    def n_trees(self):
        return self.feat.shape[0]

    def _eval(self, x, decide):
        x = np.ascontiguousarray(x, dtype=np.float32)
        out_p = np.zeros(x.shape[0], np.float64)
        out_d = np.zeros(x.shape[0], np.bool_)
        if x.shape[0]:
            _engine()["eval_forest"](x, self.feat, self.thr, self.left, self.val, self.depth, decide, out_p, out_d)
        return out_d if decide else out_p

    def proba(self, x):
        """Mean over trees of the leaf's fat share, per row of ``x``."""
        return self._eval(x, False)

    def decide(self, x):
        """``proba(x) > 0.5``, with an exact early exit."""
        return self._eval(x, True)


def _tree_seeds(seed, n_trees):
    ss = np.random.SeedSequence(int(seed))
    raw = ss.generate_state(n_trees, np.uint32).astype(np.int64)
    return raw % (_LCG_MOD - 1) + 1


def _grow(x, y, *, n_trees, k_try, seed, class_weight, criterion, max_bins=256):
    """Grow a forest on rows ``x`` (n, n_features) with 0/1 targets ``y``."""
    eng = _engine()
    xt = np.ascontiguousarray(np.asarray(x, dtype=np.float32).T)
    y = np.ascontiguousarray(y, dtype=np.int64)
    nf, n = xt.shape
    cuts = np.zeros((nf, max_bins - 1), np.float32)
    xb = np.zeros((nf, n), np.uint8)
    nbins = np.ones(nf, np.int64)
    eng["bin_all"](xt, max_bins, cuts, xb, nbins)
    cw = np.asarray(class_weight, np.float64)
    if criterion == "gini":
        mode = _GINI
    elif np.all(cw == 1.0):
        mode = _ENTROPY_COUNTS  # bootstrap counts are integers: tabulate k ln k
    else:
        mode = _ENTROPY
    k = np.arange(n + 1, dtype=np.float64)
    table = k * np.log(np.maximum(k, 1.0))
    size = 2 * n + 1
    feat = np.zeros((n_trees, size), np.int32)
    thr = np.zeros((n_trees, size), np.float32)
    left = np.zeros((n_trees, size), np.int32)
    val = np.zeros((n_trees, size), np.float64)
    sizes = np.zeros(n_trees, np.int64)
    depths = np.zeros(n_trees, np.int64)
    eng["grow_forest"](
        xb, nbins, cuts, y, cw, int(k_try), mode, table, _tree_seeds(seed, n_trees),
        feat, thr, left, val, sizes, depths,
    )
    top = int(sizes.max())
    return _Forest(
        feat=np.ascontiguousarray(feat[:, :top]),
        thr=np.ascontiguousarray(thr[:, :top]),
        left=np.ascontiguousarray(left[:, :top]),
        val=np.ascontiguousarray(val[:, :top]),
        depth=depths,
    )


# =====================================================================
# calibration: intensity normalisation, bias field, canvas
# =====================================================================
@dataclasses.dataclass(frozen=True)
class _Calibration:
    """Per-patient intensity model: x = (I / B - muscle) / (fat - muscle)."""

    shape: tuple
    muscle: float  # median of the bias-corrected muscle sample
    fat: float  # median of the bias-corrected fat sample
    coef: object  # log-field polynomial coefficients, or None (no correction)

    def field(self, rows, cols):
        """Multiplicative shading B at pixel coordinates (1 when uncorrected)."""
        if self.coef is None:
            return np.ones(np.shape(rows), np.float64)
        return np.exp(_poly_design(rows, cols, self.shape) @ self.coef)

    def scale_offset(self, rows, cols):
        span = self.fat - self.muscle
        return 1.0 / (self.field(rows, cols) * span), -self.muscle / span


def _poly_design(rows, cols, shape):
    u = (np.asarray(rows, np.float64) - shape[0] / 2.0) / shape[0]
    v = (np.asarray(cols, np.float64) - shape[1] / 2.0) / shape[1]
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)


def _fit_field(img, rows_f, cols_f, muscle, fat):
    """Smooth log-quadratic shading field fitted to the image's fat.

    Fat is the brightest tissue of a T2-weighted (or water + fat) image and
    lies all around the body, so pixels whose normalised intensity is
    fat-like sample the coil shading everywhere. Returns coefficients
    normalised so that the field's median over the fat sample is 1, or
    None when the fit is not trustworthy.
    """
    shape = img.shape
    step = max(1, int(round(max(shape) / 128)))
    sub = img[::step, ::step].astype(np.float64)
    rr, cc = np.mgrid[0 : shape[0] : step, 0 : shape[1] : step]
    design = _poly_design(rr.ravel(), cc.ravel(), shape)
    vals = sub.ravel()
    field = np.ones_like(vals)
    coef = None
    span = fat - muscle
    for _ in range(3):
        x = (vals / field - muscle) / span
        sel = (x > 0.65) & (x < 1.6) & (vals > 0)
        if sel.sum() < 300:
            return None
        logv = np.log(vals[sel])
        a = design[sel]
        c = _lsq(a, logv)
        res = logv - a @ c
        mid = np.median(res)
        mad = np.median(np.abs(res - mid)) + 1e-12
        keep = np.abs(res - mid) < 3.0 * 1.4826 * mad
        if keep.sum() < 300:
            return None
        c = _lsq(a[keep], logv[keep])
        ref = np.median(_poly_design(rows_f, cols_f, shape) @ c)
        c = c.copy()
        c[0] -= ref
        coef = c
        field = np.exp(design @ coef)
    if not np.all(np.isfinite(coef)):
        return None
    # a field that varies more than fourfold over the fat it was fitted to
    # is not coil shading
    inside = field[sel]
    if inside.max() / inside.min() > 4.0:
        return None
    return coef


def _lsq(a, b):
    # least squares through the normal equations (6 unknowns, well scaled)
    return np.linalg.solve(a.T @ a + 1e-9 * np.eye(a.shape[1]), a.T @ b)


def _calibrate(img, labels, bias_correction):
    rows_f, cols_f = np.nonzero(labels == FAT)
    rows_m, cols_m = np.nonzero(labels == MUSCLE)
    muscle = float(np.median(img[rows_m, cols_m]))
    fat = float(np.median(img[rows_f, cols_f]))
    _check_contrast(img, rows_f, cols_f, rows_m, cols_m, muscle, fat)
    coef = _fit_field(img, rows_f, cols_f, muscle, fat) if bias_correction else None
    cal = _Calibration(shape=img.shape, muscle=muscle, fat=fat, coef=coef)
    if coef is not None:
        muscle = float(np.median(img[rows_m, cols_m] / cal.field(rows_m, cols_m)))
        fat = float(np.median(img[rows_f, cols_f] / cal.field(rows_f, cols_f)))
        if not fat > muscle:  # pragma: no cover - guarded by _check_contrast
            coef = None
            muscle = float(np.median(img[rows_m, cols_m]))
            fat = float(np.median(img[rows_f, cols_f]))
        cal = _Calibration(shape=img.shape, muscle=muscle, fat=fat, coef=coef)
    return cal


def _check_contrast(img, rows_f, cols_f, rows_m, cols_m, muscle, fat):
    sub = img[:: max(1, img.shape[0] // 128), :: max(1, img.shape[1] // 128)]
    lo, hi = np.percentile(sub, [0.5, 99.5])
    spread = float(hi - lo)
    if not fat > muscle:
        raise ClassifierError(
            f"the fat sample (median {fat:.4g}) is not brighter than the muscle sample (median {muscle:.4g}); "
            "on a T2-weighted image fat is bright: put the fat sample in subcutaneous fat and the "
            "muscle sample inside lean muscle"
        )
    if fat - muscle < 0.02 * max(spread, 1e-12):
        raise ClassifierError(
            "the fat and muscle samples have almost the same intensity; put the fat sample in bright "
            "subcutaneous fat and the muscle sample in dark, lean muscle"
        )


def _canvas(rng, muscle_vals, fat_vals, seed=0):
    """Synthetic periodic calibration image from the patient's own pixels.

    The geometry (:func:`_canvas_cover`) depends on the seed only; each
    pixel's value mixes a muscle and a fat value drawn from the samples
    (normalised units) in proportion to its fat cover.

    Returns
    -------
    image : ndarray (size, size), float32
    cover : ndarray (size, size), float64, fat area fraction per pixel
    """
    cover = _canvas_cover(int(seed), _CANVAS_SIZE, _CANVAS_SUPERSAMPLE, _CANVAS_COVERS)
    m = rng.choice(muscle_vals, size=cover.shape)
    f = rng.choice(fat_vals, size=cover.shape)
    img = (1.0 - cover) * m + cover * f
    return img.astype(np.float32), cover


@functools.lru_cache(maxsize=8)
def _canvas_cover(seed, size, ss, covers):
    """Fat area fraction per pixel of the calibration canvas.

    Muscle with fat streaks (0.5–4 px wide, 4–40 px long, any orientation),
    blobs (0.7–5 px radius) and a few large patches (6–14 px), drawn on a
    periodic grid ``ss`` times finer and averaged down, so fat covers
    pixels partially. The canvas is cut into bands whose fat cover aims at
    ``covers`` (by default 5, 25, 50 and 75 %, in random order), so the forest sees fat
    in lean and in fatty neighbourhoods alike.
    """
    rng = np.random.default_rng([seed, 0x63616E])
    n = size * ss
    fine = np.zeros((n, n), bool)
    targets = rng.permutation(np.asarray(covers, float))
    band = n // len(targets)
    for k, target in enumerate(targets):
        r_lo = k * band
        goal = target * band * n
        area = 0
        for _ in range(400):
            if area >= goal:
                break
            r0 = rng.uniform(r_lo, r_lo + band)
            c0 = rng.uniform(0, n)
            kind = rng.uniform()
            if kind < 0.6:  # streak
                width = rng.uniform(0.5, 4.0) * ss
                length = rng.uniform(4.0, 40.0) * ss
                shape = ("line", r0, c0, length, width, rng.uniform(0.0, np.pi))
            elif kind < 0.93:  # blob
                a = rng.uniform(0.7, 5.0) * ss
                shape = ("ellipse", r0, c0, a, a * rng.uniform(0.4, 1.0), rng.uniform(0.0, np.pi))
            else:  # large patch
                a = rng.uniform(6.0, 14.0) * ss
                shape = ("ellipse", r0, c0, a, a * rng.uniform(0.5, 1.0), rng.uniform(0.0, np.pi))
            area += _draw_periodic(fine, shape)
    cover = fine.reshape(size, ss, size, ss).mean(axis=(1, 3))
    cover.flags.writeable = False
    return cover


_CANVAS_COVERS = (0.05, 0.25, 0.5, 0.75)


def _draw_periodic(fine, shape):
    """Set the pixels of a rotated rectangle or ellipse (wrapping around);
    return how many were newly set."""
    kind, r0, c0, a, b, ang = shape
    n = fine.shape[0]
    if kind == "line":
        half_len, half_w = a / 2.0, b / 2.0
    else:
        half_len, half_w = a, b
    reach = int(np.ceil(max(half_len, half_w))) + 1
    rr = np.arange(int(np.floor(r0)) - reach, int(np.floor(r0)) + reach + 2)
    cc = np.arange(int(np.floor(c0)) - reach, int(np.floor(c0)) + reach + 2)
    dr = rr[:, None] + 0.5 - r0
    dc = cc[None, :] + 0.5 - c0
    ca, sa = np.cos(ang), np.sin(ang)
    along = dr * sa + dc * ca
    across = dr * ca - dc * sa
    if kind == "line":
        inside = (np.abs(along) <= half_len) & (np.abs(across) <= half_w)
    else:
        inside = (along / half_len) ** 2 + (across / half_w) ** 2 <= 1.0
    ix = np.ix_(rr % n, cc % n)
    old = fine[ix]
    fine[ix] = old | inside
    return int(np.count_nonzero(inside & ~old))


def _canvas_take(cover, rng, n=None):
    """Canvas pixels to train on: half of them partly covered by fat (where
    the fat/muscle decision is made), half pure, at random."""
    n = _CANVAS_PIXELS if n is None else n
    mixed = np.flatnonzero((cover > 0) & (cover < 1))
    pure = np.flatnonzero((cover == 0) | (cover == 1))
    k_mixed = min(len(mixed), int(round(n * _CANVAS_MIXED_SHARE)))
    k_pure = min(len(pure), n - k_mixed)
    take = np.concatenate([rng.choice(mixed, k_mixed, replace=False), rng.choice(pure, k_pure, replace=False)])
    return np.sort(take)


_CANVAS_MIXED_SHARE = 0.75


def _canvas_features(img, preset):
    """Features of a periodic canvas (wrapped so every pixel is exact)."""
    pad = _features.margin(preset)
    reps = int(np.ceil(pad / img.shape[0]))
    big = np.pad(img, pad, mode="wrap") if reps <= 1 else np.tile(img, (2 * reps + 1, 2 * reps + 1))
    if reps > 1:
        off = reps * img.shape[0]
        big = big[off - pad : off + img.shape[0] + pad, off - pad : off + img.shape[1] + pad]
    maps = _features.compute_features(big, preset, region=(pad, pad + img.shape[0], pad, pad + img.shape[1]))
    return maps.reshape(maps.shape[0], -1).T


# =====================================================================
# the classifier
# =====================================================================
class FatClassifier:
    """Random-forest fat/muscle pixel classifier trained per patient.

    Parameters
    ----------
    preset : str
        Feature preset (see :data:`napari_pvm.core.features.PRESETS`);
        ``"weka"`` is TWS's default 2D stack.
    n_trees : int
        Trees in the forest (TWS: 200).
    seed : int
        Seed of every random choice (bootstrap, features tried, canvas).
    class_balance : bool
        Weight the classes equally (TWS's "Balance classes"); off by
        default, as in TWS.
    max_features : int
        Features tried per split (TWS: 2).
    criterion : {"entropy", "gini"}
        Split criterion (TWS: information gain = entropy).
    bias_correction : bool
        Divide out a smooth shading field fitted to the image's fat before
        normalising intensities.
    calibration : bool
        Train on the synthetic calibration canvas as well as the samples.
    cache : FeatureCache, optional
        Feature cache; by default the process-wide one.

    Examples
    --------
    >>> from napari_pvm.core.phantom import make_phantom
    >>> ph = make_phantom(seed=3, spacing=1.2)
    >>> clf = FatClassifier().fit(ph.l4, labels_from_samples(ph.samples, ph.l4.shape))
    >>> within = ph.masks["ES_L"]
    >>> fi = 100 * clf.predict(ph.l4, within=within)[within].mean()
    >>> abs(fi - ph.truth["ES_L_fi_pct"]) < 3
    True
    """

    def __init__(
        self,
        preset="weka",
        n_trees=200,
        seed=0,
        class_balance=False,
        *,
        max_features=2,
        criterion="entropy",
        bias_correction=True,
        calibration=True,
        cache=None,
    ):
        if preset not in _features.PRESETS:
            raise ClassifierError(
                f"unknown feature preset {preset!r}; choose one of {', '.join(_features.PRESETS)}"
            )
        for name, value, low in (("n_trees", n_trees, 1), ("seed", seed, 0), ("max_features", max_features, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ClassifierError(f"{name} must be an integer of at least {low}, got {value!r}")
        if criterion not in ("entropy", "gini"):
            raise ClassifierError(f"criterion must be 'entropy' or 'gini', got {criterion!r}")
        self.preset = preset
        self.n_trees = int(n_trees)
        self.seed = int(seed)
        self.class_balance = bool(class_balance)
        self.max_features = int(max_features)
        self.criterion = criterion
        self.bias_correction = bool(bias_correction)
        self.calibration = bool(calibration)
        self.cache = cache if cache is not None else _features.shared_cache()
        self._forest = None
        self._cal = None
        self._train = None
        self._info = {}

    # ------------------------------------------------------------ info
    @property
    def params(self):
        """Settings actually used (for the measurement row)."""
        p = {
            "method": METHOD,
            "preset": self.preset,
            "n_trees": self.n_trees,
            "seed": self.seed,
            "class_balance": self.class_balance,
            "max_features": self.max_features,
            "criterion": self.criterion,
            "bias_correction": self.bias_correction,
            "calibration": self.calibration,
        }
        p.update(self._info)
        return p

    #: Full, seeded model: its results may be measured and saved.
    is_preview = False

    @property
    def is_fitted(self):
        return self._forest is not None

    def __repr__(self):
        return (
            f"FatClassifier(preset={self.preset!r}, n_trees={self.n_trees}, seed={self.seed}, "
            f"class_balance={self.class_balance})"
        )

    # ------------------------------------------------------------- fit
    def fit(self, image, labels, *, within=None):
        """Train on one slice and its labels (0 unlabelled, 1 muscle, 2 fat).

        Parameters
        ----------
        image : ndarray (M, N)
        labels : int ndarray (M, N)
            See :func:`labels_from_samples`.
        within : bool ndarray (M, N), optional
            The pixels that will be classified next (the muscle outlines).
            Only a hint: features are then computed once for the samples
            and these pixels together. The model does not depend on it.

        Returns
        -------
        self

        Raises
        ------
        ClassifierError
            No or too few sample pixels of a class, labels of another
            shape (samples drawn on another slice), a constant or
            non-finite image, a fat sample not brighter than the muscle
            sample. The message says what to paint.
        """
        img = _check_image(image)
        lab = _check_labels(labels, img.shape)
        cal = _calibrate(img, lab, self.bias_correction)
        rng = np.random.default_rng([self.seed, 0x70766D])
        rows, cols, y = _training_pixels(lab, rng)
        key = _features.image_key(img, self.preset)  # hash the slice once
        if within is not None:
            w = self._within(img, within)
            if w.any():  # one feature window for samples and outlines
                wr, wc = np.nonzero(w)
                window = (
                    int(min(rows.min(), wr.min())), int(max(rows.max(), wr.max())) + 1,
                    int(min(cols.min(), wc.min())), int(max(cols.max(), wc.max())) + 1,
                )
                self.cache.get(img, self.preset, window, key=key)
        x = self._rows(img, rows, cols, cal, key=key)
        n_real = {"fat": int((lab == FAT).sum()), "muscle": int((lab == MUSCLE).sum())}
        if self.calibration:
            cx, cy = self._canvas_rows(img, lab, cal, rng)
            x = np.concatenate([x, cx])
            y = np.concatenate([y, cy])
        self._forest = self._grow(x, y, self.n_trees, self.seed)
        self._cal = cal
        self._train = (x, y, len(rows))
        self._info = {
            "training_pixels": n_real,
            "bias_field": "poly2" if cal.coef is not None else "none",
            "muscle_level": cal.muscle,
            "fat_level": cal.fat,
        }
        return self

    def _grow(self, x, y, n_trees, seed):
        if self.class_balance:
            counts = np.bincount(y, minlength=2).astype(np.float64)
            cw = len(y) / (2.0 * np.maximum(counts, 1.0))
        else:
            cw = np.ones(2)
        return _grow(
            x, y, n_trees=n_trees, k_try=self.max_features, seed=seed, class_weight=cw, criterion=self.criterion
        )

    def _rows(self, img, rows, cols, cal, key=None):
        """Normalised feature rows (n, n_features) at pixel coordinates."""
        if len(rows) == 0:
            return np.zeros((0, len(_features.feature_names(self.preset))), np.float32)
        window = (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)
        fs = self.cache.get(img, self.preset, window, key=key)
        raw = fs.maps[:, rows - fs.window[0], cols - fs.window[2]]
        scale, offset = cal.scale_offset(rows, cols)
        return _features.normalise(raw, self.preset, scale, offset).T

    def _canvas_rows(self, img, lab, cal, rng):
        rows, cols = np.nonzero(lab > 0)
        scale, offset = cal.scale_offset(rows, cols)
        norm = img[rows, cols] * scale + offset
        is_fat = lab[rows, cols] == FAT
        canvas, cover = _canvas(rng, norm[~is_fat], norm[is_fat], seed=self.seed)
        x = _canvas_features(canvas, self.preset)
        take = _canvas_take(cover.ravel(), rng)
        return x[take], (cover.ravel()[take] > 0.5).astype(np.int64)

    # --------------------------------------------------------- predict
    def _within(self, img, within):
        if within is None:
            return np.ones(img.shape, bool)
        w = np.asarray(within)
        if w.shape != img.shape:
            raise ClassifierError(
                f"the outline mask has shape {w.shape} but the slice is {img.shape}; use outlines of this slice"
            )
        return w.astype(bool, copy=False)

    def _predict_rows(self, image, within):
        if self._forest is None:
            raise ClassifierError("the classifier is not trained yet: paint or outline fat and muscle samples first")
        img = _check_image(image)
        if img.shape != self._cal.shape:
            raise ClassifierError(
                f"the classifier was trained on a {self._cal.shape[0]}×{self._cal.shape[1]} slice and cannot "
                f"classify a {img.shape[0]}×{img.shape[1]} one; train it on this slice"
            )
        w = self._within(img, within)
        rows, cols = np.nonzero(w)
        return img, w, rows, cols

    def predict_proba(self, image, within=None):
        """Probability of fat per pixel; NaN outside ``within``.

        Parameters
        ----------
        image : ndarray (M, N)
        within : bool ndarray (M, N), optional
            Pixels to classify (e.g. the union of the muscle outlines);
            features are computed only around them.

        Returns
        -------
        ndarray of float64, shape (M, N)
        """
        img, w, rows, cols = self._predict_rows(image, within)
        out = np.full(img.shape, np.nan)
        if len(rows):
            out[rows, cols] = self._forest.proba(self._rows(img, rows, cols, self._cal))
        return out

    def predict(self, image, within=None):
        """Fat mask: probability of fat above 0.5, False outside ``within``.

        Equal to ``predict_proba(image, within) > 0.5``, computed with an
        exact early exit per pixel.
        """
        img, w, rows, cols = self._predict_rows(image, within)
        out = np.zeros(img.shape, bool)
        if len(rows):
            out[rows, cols] = self._forest.decide(self._rows(img, rows, cols, self._cal))
        return out

    def uncertainty(self, image, within=None):
        """Ensemble margin ``1 - |p(fat) - p(muscle)|`` (ilastik's definition).

        0 where all trees agree, 1 where they split evenly; NaN outside
        ``within``. Paint more samples where it is high.
        """
        p = self.predict_proba(image, within)
        return 1.0 - np.abs(2.0 * p - 1.0)

    # --------------------------------------------------------- preview
    def fit_preview(self, image, labels, *, n_trees=24, max_pixels=600):
        """A light model for live feedback while the observer paints.

        Trained on a deterministic subsample (``max_pixels`` per class and
        of the canvas) with ``n_trees`` trees, reusing this classifier's
        last calibration canvas when it has one. Its results are for
        display only: the returned :class:`PreviewClassifier` says so
        (``is_preview`` is True, ``params["preview"]`` is True), and code
        that measures or saves results must use the full model instead.
        """
        img = _check_image(image)
        lab = _check_labels(labels, img.shape)
        cal = _calibrate(img, lab, self.bias_correction)
        rng = np.random.default_rng([self.seed, 0x7076, 1])
        rows, cols, y = _training_pixels(lab, rng, per_class=max_pixels)
        x = self._rows(img, rows, cols, cal)
        if self.calibration:
            if self._train is not None:
                tx, ty, n_real = self._train
                cx, cy = tx[n_real:], ty[n_real:]
            else:
                cx, cy = self._canvas_rows(img, lab, cal, rng)
            take = rng.choice(len(cy), size=min(max_pixels, len(cy)), replace=False)
            x = np.concatenate([x, cx[take]])
            y = np.concatenate([y, cy[take]])
        forest = self._grow(x, y, int(n_trees), self.seed)
        return PreviewClassifier(self, forest, cal, int(n_trees))


class PreviewClassifier:
    """Live-preview model from :meth:`FatClassifier.fit_preview` (display only)."""

    is_preview = True

    def __init__(self, parent, forest, cal, n_trees):
        self._parent = parent
        self._forest = forest
        self._cal = cal
        self.params = dict(parent.params, n_trees=n_trees, preview=True)

    def predict_proba(self, image, within=None):
        return FatClassifier.predict_proba(self, image, within)

    def predict(self, image, within=None):
        return FatClassifier.predict(self, image, within)

    def _predict_rows(self, image, within):
        return FatClassifier._predict_rows(self, image, within)

    def _within(self, img, within):
        return FatClassifier._within(self, img, within)

    def _rows(self, img, rows, cols, cal):
        return FatClassifier._rows(self._parent, img, rows, cols, cal)


# =====================================================================
# input checks
# =====================================================================
def _check_image(image):
    img = np.asarray(image)
    if img.ndim != 2:
        raise ClassifierError(f"the classifier works on one 2D slice; got an array of shape {img.shape}")
    if img.size == 0 or min(img.shape) < 3:
        raise ClassifierError(f"the slice {img.shape} is too small to classify")
    if not np.issubdtype(img.dtype, np.number) or np.iscomplexobj(img):
        raise ClassifierError(f"the slice must hold real numbers, not {img.dtype}")
    img = img.astype(np.float32, copy=False)
    if not np.all(np.isfinite(img)):
        raise ClassifierError("the slice contains NaN or infinite values; load the image again")
    if float(img.max()) == float(img.min()):
        raise ClassifierError(
            "the slice is constant (every pixel has the same value), so fat and muscle cannot be told apart; "
            "check that the right image and slice are loaded"
        )
    return img


def _check_labels(labels, shape):
    lab = np.asarray(labels)
    if lab.shape != shape:
        raise ClassifierError(
            f"the training labels have shape {lab.shape} but the slice is {shape}: the samples were drawn "
            "on another image or slice; paint the fat and muscle samples on this slice"
        )
    if lab.dtype == bool or not np.issubdtype(lab.dtype, np.integer):
        if not (np.issubdtype(lab.dtype, np.floating) and np.all(np.mod(lab, 1) == 0)):
            raise ClassifierError("training labels must be integers: 0 unlabelled, 1 muscle, 2 fat")
    bad = ~np.isin(lab, (0, MUSCLE, FAT))
    if bad.any():
        raise ClassifierError(
            f"training labels hold values other than 0, 1 (muscle) and 2 (fat), e.g. {lab[bad].flat[0]!r}; "
            "paint with label 1 for muscle and 2 for fat"
        )
    lab = lab.astype(np.uint8, copy=False)
    n_fat = int((lab == FAT).sum())
    n_muscle = int((lab == MUSCLE).sum())
    if n_fat == 0 and n_muscle == 0:
        raise ClassifierError(
            "no training samples: outline or paint a patch of subcutaneous fat (label 2) and a patch of "
            "lean muscle (label 1) on this slice"
        )
    if n_fat == 0:
        raise ClassifierError(
            "no fat sample: outline or paint a patch of subcutaneous fat (label 2), e.g. behind the back muscles"
        )
    if n_muscle == 0:
        raise ClassifierError("no muscle sample: outline or paint a patch of lean muscle (label 1) inside a muscle")
    for name, n, what in (("fat", n_fat, "subcutaneous fat (label 2)"), ("muscle", n_muscle, "lean muscle (label 1)")):
        if n < MIN_SAMPLE_PIXELS:
            raise ClassifierError(
                f"the {name} sample covers only {n} pixel{'s' if n != 1 else ''}; at least {MIN_SAMPLE_PIXELS} are "
                f"needed: paint or outline a larger patch of {what}"
            )
    return lab


def _training_pixels(lab, rng, per_class=_MAX_PER_CLASS):
    """Coordinates and 0/1 (muscle/fat) targets of the sampled pixels."""
    rows, cols, ys = [], [], []
    for value, target in ((MUSCLE, 0), (FAT, 1)):
        r, c = np.nonzero(lab == value)
        if len(r) > per_class:
            take = np.sort(rng.choice(len(r), size=per_class, replace=False))
            r, c = r[take], c[take]
        rows.append(r)
        cols.append(c)
        ys.append(np.full(len(r), target, np.int64))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(ys)
