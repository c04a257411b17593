"""Compiled random-forest engine of the fat classifier.

A two-class random forest with the rules of Weka's FastRandomForest, which
Fiji's Trainable Weka Segmentation uses: every tree is grown on a 100 %
bootstrap sample, tries ``k_try`` random features per split (and more, one
at a time, while none of them splits with a positive gain), splits on
information gain (or Gini), grows to pure leaves, and the forest's
probability is the mean over trees of the leaf's fat share.

The kernels are plain Python functions over numpy arrays. :func:`engine`
compiles them with numba (cached on disk) when it is installed; without
numba the same functions run as Python, bit for bit the same, far slower.
Random numbers come from a Park–Miller generator seeded per tree from
``numpy.random.SeedSequence(seed)``, so trees do not depend on the number
or order of threads.

Public entry points: :func:`grow` (fit), :class:`Forest` (``proba`` and
``decide``) and :func:`warm_up` (compile ahead of first use). Targets are
0 (muscle) and 1 (fat).

Examples
--------
>>> import numpy as np
>>> x = np.array([[0.0], [0.1], [0.9], [1.0]] * 5, np.float32)
>>> y = np.array([0, 0, 1, 1] * 5)
>>> f = grow(x, y, n_trees=5, k_try=1, seed=0, class_weight=(1.0, 1.0), criterion="entropy")
>>> f.decide(np.array([[0.05], [0.95]], np.float32)).tolist()
[False, True]
"""

import dataclasses
import math
import types
import warnings

import numpy as np

__all__ = ["CRITERIA", "Forest", "engine", "grow", "warm_up"]

#: Park–Miller "minimal standard" generator: modulus 2^31 - 1, multiplier 48271.
LCG_MOD = 2147483647
LCG_MUL = 48271

prange = range  # replaced by numba.prange in the compiled kernels

# Impurity modes of the tree grower: entropy over integer (bootstrap-count)
# weights from a table of k ln k, entropy over real weights, Gini.
ENTROPY_COUNTS = 0
ENTROPY = 1
GINI = 2
#: Split criteria a caller can ask for.
CRITERIA = ("entropy", "gini")


def _lcg(state):
    """Park–Miller step (LCG_MUL x mod LCG_MOD), without a division;
    states lie in [1, LCG_MOD - 1]."""
    x = state * LCG_MUL
    x = (x & LCG_MOD) + (x >> 31)
    if x >= LCG_MOD:
        x -= LCG_MOD
    return x


def _impurity(a, b, mode, table):
    """(a + b) × impurity of a node with class weights a and b."""
    if mode == ENTROPY_COUNTS:  # table[k] = k ln k
        return table[int(a + b)] - table[int(a)] - table[int(b)]
    t = a + b
    if t <= 0.0:
        return 0.0
    if mode == GINI:
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


def engine():
    """The forest kernels by name: compiled by numba (cached on disk) when
    it is installed, else the same Python functions (same results, far
    slower)."""
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
        _ENGINE = python_kernels()
        return _ENGINE
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


def python_kernels():
    """The kernels as plain Python functions (the engine without numba)."""
    return {name.lstrip("_"): globals()[name] for name in _KERNELS}


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
        forest = grow(x, y, n_trees=2, k_try=2, seed=0, class_weight=cw, criterion=criterion)
    forest.proba(x)
    forest.decide(x)


@dataclasses.dataclass(frozen=True)
class Forest:
    """A grown forest: per tree and node the feature, threshold, left child
    (a leaf points at itself) and fat share; per tree its depth."""

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
            engine()["eval_forest"](x, self.feat, self.thr, self.left, self.val, self.depth, decide, out_p, out_d)
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
    return raw % (LCG_MOD - 1) + 1


def grow(x, y, *, n_trees, k_try, seed, class_weight, criterion, max_bins=256):
    """Grow a forest on rows ``x`` (n, n_features) with targets ``y``.

    Parameters
    ----------
    x : ndarray (n, n_features)
        Training rows (cast to float32).
    y : int ndarray (n,)
        0 (muscle) or 1 (fat).
    n_trees, k_try, seed : int
        Trees, features tried per split, seed of every random choice.
    class_weight : pair of float
        Weight of a muscle and of a fat row (``(1, 1)``: unweighted).
    criterion : {"entropy", "gini"}
    max_bins : int
        Most cut points searched per feature, plus one.

    Returns
    -------
    Forest
    """
    eng = engine()
    xt = np.ascontiguousarray(np.asarray(x, dtype=np.float32).T)
    y = np.ascontiguousarray(y, dtype=np.int64)
    nf, n = xt.shape
    cuts = np.zeros((nf, max_bins - 1), np.float32)
    xb = np.zeros((nf, n), np.uint8)
    nbins = np.ones(nf, np.int64)
    eng["bin_all"](xt, max_bins, cuts, xb, nbins)
    cw = np.asarray(class_weight, np.float64)
    if criterion == "gini":
        mode = GINI
    elif np.all(cw == 1.0):
        mode = ENTROPY_COUNTS  # bootstrap counts are integers: tabulate k ln k
    else:
        mode = ENTROPY
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
        xb,
        nbins,
        cuts,
        y,
        cw,
        int(k_try),
        mode,
        table,
        _tree_seeds(seed, n_trees),
        feat,
        thr,
        left,
        val,
        sizes,
        depths,
    )
    top = int(sizes.max())
    return Forest(
        feat=np.ascontiguousarray(feat[:, :top]),
        thr=np.ascontiguousarray(thr[:, :top]),
        left=np.ascontiguousarray(left[:, :top]),
        val=np.ascontiguousarray(val[:, :top]),
        depth=depths,
    )
