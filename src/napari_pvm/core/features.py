"""Pixel features for the fat classifier, computed once per slice and cached.

A *preset* names a fixed list of feature maps. ``"weka"`` reproduces the
default 2D feature stack of Fiji's Trainable Weka Segmentation (TWS,
``trainableSegmentation.FeatureStack``, defaults of ``WekaSegmentation``)
for a greyscale image, map for map and in the same order (76 maps):

- ``original``;
- ``Sobel_filter_0.0`` and the 8 ``Hessian_*_0.0`` maps on the unblurred
  image (TWS adds them because its minimum sigma is below 2);
- for each sigma of the ladder 1, 2, 4, 8, 16: ``Gaussian_blur_s``,
  ``Sobel_filter_s`` and the 8 Hessian maps of the image blurred with a
  Gaussian of standard deviation ``0.4 * s`` (TWS's "0.4 factor"), then the
  differences of Gaussians ``G(t) - G(s)`` for every smaller ``t`` of the
  ladder;
- 6 ``Membrane_projections``: the image correlated with a 19 × 19 line
  kernel (the two middle columns set, as TWS's ``membraneSize = 1``
  produces) rotated by nearest neighbour in 10 steps of 18°, then projected
  over the 10 angles by mean, maximum, minimum, sum, standard deviation
  (n − 1) and median.

Derivatives are TWS's 3 × 3 Sobel kernels (the Hessian is the Sobel of the
Sobel), its eigenvalue, orientation and eigenvalue-difference formulas are
used as written in its source, and image borders repeat the edge pixel as
ImageJ does. Gaussian blurs use scipy's sampled kernel truncated where
ImageJ's ``accuracy = 0.0002`` truncates it; ImageJ's kernel-tail
correction and its down-scaling shortcut for wide kernels are not
reproduced, so maps agree to within that accuracy, not bit for bit.

Other presets (``"weka-s4"``, ``"weka-s2"``) are the same stack with a
shorter sigma ladder; ``docs/classifier.md`` gives the measurements behind
each.

Every map is affine-equivariant in a known way: when the image ``I`` is
replaced by ``a * I + b`` (``a > 0``), map ``k`` becomes
``a ** power[k] * map + offset[k] * b``. :func:`normalise` uses this to
turn cached raw-intensity features into the features of the intensity-
normalised image without recomputing them.
"""

import collections
import dataclasses
import functools
import hashlib
import threading

import numpy as np

__all__ = [
    "PRESETS",
    "FeatureCache",
    "FeatureSet",
    "compute_features",
    "feature_names",
    "image_key",
    "margin",
    "normalise",
    "shared_cache",
]

#: ImageJ's Gaussian accuracy for float images in TWS (kernel cut-off).
_IJ_ACCURACY = 0.0002
_TRUNCATE = float(np.sqrt(-2.0 * np.log(_IJ_ACCURACY)))  # 4.127 standard deviations
#: TWS blurs with a Gaussian of standard deviation 0.4 × the nominal sigma.
SIGMA_FACTOR = 0.4

_HESSIAN_NAMES = (
    "Hessian_{s}",
    "Hessian_Trace_{s}",
    "Hessian_Determinant_{s}",
    "Hessian_Eigenvalue_1_{s}",
    "Hessian_Eigenvalue_2_{s}",
    "Hessian_Orientation_{s}",
    "Hessian_Square_Eigenvalue_Difference_{s}",
    "Hessian_Normalized_Eigenvalue_Difference_{s}",
)
# power of the intensity scale each Hessian map carries (see module doc)
_HESSIAN_POWERS = (1, 1, 2, 1, 1, 0, 4, 2)


@dataclasses.dataclass(frozen=True)
class _Spec:
    """A TWS-style stack: sigma ladder and which filter groups are on."""

    sigmas: tuple
    membrane: bool = True
    membrane_patch: int = 19
    membrane_angles: int = 10


#: Feature presets by name.
PRESETS = {
    "weka": _Spec(sigmas=(1.0, 2.0, 4.0, 8.0, 16.0)),
    "weka-s4": _Spec(sigmas=(1.0, 2.0, 4.0)),
    "weka-s2": _Spec(sigmas=(1.0, 2.0)),
}


def _spec(preset):
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown feature preset {preset!r}; choose one of {', '.join(PRESETS)}") from None


def _fmt(s):
    return f"{float(s):.1f}"


@functools.cache
def _layout(preset):
    """Names, intensity powers and offset coefficients of a preset's maps."""
    spec = _spec(preset)
    names, powers, offsets = ["original"], [1], [1.0]

    def sobel_hessian(s):
        names.append(f"Sobel_filter_{_fmt(s)}")
        powers.append(1)
        offsets.append(0.0)
        for n, p in zip(_HESSIAN_NAMES, _HESSIAN_POWERS):
            names.append(n.format(s=_fmt(s)))
            powers.append(p)
            offsets.append(0.0)

    if min(spec.sigmas) < 2:
        sobel_hessian(0.0)
    for i, s in enumerate(spec.sigmas):
        names.append(f"Gaussian_blur_{_fmt(s)}")
        powers.append(1)
        offsets.append(1.0)
        sobel_hessian(s)
        for t in spec.sigmas[:i]:
            names.append(f"Difference_of_gaussians_{_fmt(s)}_{_fmt(t)}")
            powers.append(1)
            offsets.append(0.0)
    if spec.membrane:
        n = spec.membrane_angles
        p = spec.membrane_patch
        # mean, max, min, sum, SD, median over the angles
        for k, (pw, off) in enumerate([(1, 1.0), (1, 1.0), (1, 1.0), (1, float(n)), (1, 0.0), (1, 1.0)]):
            names.append(f"Membrane_projections_{k}_{p}_1")
            powers.append(pw)
            offsets.append(off)
    powers = np.array(powers, dtype=np.int8)
    offsets = np.array(offsets, dtype=np.float32)
    powers.flags.writeable = False  # cached: shared by every caller
    offsets.flags.writeable = False
    return tuple(names), powers, offsets


def feature_names(preset="weka"):
    """Names of a preset's feature maps, in stack order.

    Examples
    --------
    >>> names = feature_names("weka")
    >>> len(names), names[0], names[-1]
    (76, 'original', 'Membrane_projections_5_19_1')
    """
    return _layout(preset)[0]


def margin(preset="weka"):
    """Pixels of context a map needs on each side to be exact inside a crop.

    A crop computed with this many extra pixels on every side (or reaching
    the image border) gives maps identical to the whole-slice computation.
    """
    spec = _spec(preset)
    g = int(_TRUNCATE * SIGMA_FACTOR * max(spec.sigmas) + 0.5)
    need = g + 2  # Hessian: two 3 × 3 Sobel passes on the blur
    if spec.membrane:
        need = max(need, spec.membrane_patch // 2)
    return need


# --------------------------------------------------------------- filters
_SMOOTH = np.array([1.0, 2.0, 1.0], dtype=np.float32)
_DIFF = np.array([1.0, 0.0, -1.0], dtype=np.float32)


def _sobel_rows(a):
    """TWS ``sobelFilter_x`` ({1,2,1; 0,0,0; -1,-2,-1}, correlation)."""
    from scipy import ndimage as ndi

    out = ndi.correlate1d(a, _DIFF, axis=0, mode="nearest")
    return ndi.correlate1d(out, _SMOOTH, axis=1, mode="nearest", output=out)


def _sobel_cols(a):
    """TWS ``sobelFilter_y`` ({1,0,-1; 2,0,-2; 1,0,-1}, correlation)."""
    from scipy import ndimage as ndi

    out = ndi.correlate1d(a, _SMOOTH, axis=0, mode="nearest")
    return ndi.correlate1d(out, _DIFF, axis=1, mode="nearest", output=out)


def _blur(a, s):
    from scipy import ndimage as ndi

    if s <= 0:
        return a
    return ndi.gaussian_filter(a, SIGMA_FACTOR * s, mode="nearest", truncate=_TRUNCATE)


def _sobel_hessian(g, out):
    """Fill ``out`` (9 maps) with TWS's Sobel magnitude and 8 Hessian maps."""
    sx = _sobel_rows(g)
    sy = _sobel_cols(g)
    np.hypot(sx, sy, out=out[0])
    a = _sobel_rows(sx)  # s_xx
    b = _sobel_cols(sx)  # s_xy
    d = _sobel_cols(sy)  # s_yy
    a2, b2, d2 = a * a, b * b, d * d
    np.sqrt(a2 + b2 + d2, out=out[1])
    trace = np.add(a, d, out=out[2])
    np.subtract(a * d, b2, out=out[3])
    amd = a - d
    disc = amd * amd + 4.0 * b2  # (a - d)^2 + 4 b^2
    root = np.sqrt(disc / 2.0)  # TWS: sqrt((4b^2 + (a-d)^2) / 2)
    np.add(trace / 2.0, root, out=out[4])
    np.subtract(trace / 2.0, root, out=out[5])
    with np.errstate(invalid="ignore", divide="ignore"):
        ori = 0.5 * np.arccos(amd / np.sqrt(disc))
    ori = np.where(b < 0, -ori, ori)
    out[6] = np.nan_to_num(ori, nan=0.0)
    np.multiply(trace * trace, disc, out=out[7])  # t = 1 ** 0.75 = 1
    out[8] = disc


def _membrane_offsets(patch, angles):
    """Non-zero taps of TWS's rotated membrane kernels (nearest neighbour).

    Returns a list (one per angle) of (drow, dcol) integer offsets; every
    tap of one kernel has the same weight, 1 / number of taps.
    """
    base = np.zeros((patch, patch), dtype=np.float32)
    middle = patch // 2
    base[:, middle : middle + 2] = 1.0  # membraneSize 1: columns middle..middle+1
    c = (patch - 1) / 2.0
    ys, xs = np.mgrid[0:patch, 0:patch].astype(np.float64)
    step = float(180 // angles)
    out = []
    for i in range(angles):
        rad = -(i * step) / (180.0 / np.pi)
        ca, sa = np.cos(rad), np.sin(rad)
        src_x = (xs - c) * ca - (ys - c) * sa + c
        src_y = (xs - c) * sa + (ys - c) * ca + c
        inside = (src_x >= -0.01) & (src_x < patch) & (src_y >= -0.01) & (src_y < patch)
        ix = np.minimum((src_x + 0.5).astype(int), patch - 1)
        iy = np.minimum((src_y + 0.5).astype(int), patch - 1)
        ix = np.clip(ix, 0, patch - 1)
        iy = np.clip(iy, 0, patch - 1)
        kernel = np.where(inside, base[iy, ix], 0.0)
        rr, cc = np.nonzero(kernel)
        out.append(np.column_stack([rr - middle, cc - middle]))
    return out


_MEMBRANE_CACHE = {}


def _membrane(img, spec, out):
    key = (spec.membrane_patch, spec.membrane_angles)
    if key not in _MEMBRANE_CACHE:
        _MEMBRANE_CACHE[key] = _membrane_offsets(*key)
    taps = _MEMBRANE_CACHE[key]
    r = spec.membrane_patch // 2
    pad = np.pad(img, r, mode="edge")
    h, w = img.shape
    stack = np.empty((len(taps), h, w), dtype=np.float32)
    for k, offs in enumerate(taps):
        acc = stack[k]
        acc[...] = 0.0
        for dr, dc in offs:
            acc += pad[r + dr : r + dr + h, r + dc : r + dc + w]
        acc /= len(offs)
    np.mean(stack, axis=0, out=out[0])
    np.sum(stack, axis=0, out=out[3])
    np.std(stack, axis=0, ddof=1, out=out[4])
    stack.sort(axis=0)  # min, max and median (mean of the middle two) from the order
    out[1] = stack[-1]
    out[2] = stack[0]
    n = len(taps)
    if n % 2:
        out[5] = stack[n // 2]
    else:
        np.add(stack[n // 2 - 1], stack[n // 2], out=out[5])
        out[5] /= 2


def compute_features(image, preset="weka", *, region=None):
    """Compute a preset's feature maps.

    Parameters
    ----------
    image : ndarray of shape (M, N)
        One slice (any real dtype; computed in float32).
    preset : str
        A key of :data:`PRESETS`.
    region : tuple of 4 ints, optional
        ``(r0, r1, c0, c1)``: compute only this window (half-open). The
        window is computed with :func:`margin` pixels of context, so its maps
        equal those of the whole slice there.

    Returns
    -------
    ndarray of shape (n_features, h, w), float32
        ``h, w`` the region's (or the image's) shape.

    Examples
    --------
    >>> img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    >>> compute_features(img).shape
    (76, 64, 64)
    """
    spec = _spec(preset)
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"features need a 2D slice, got shape {img.shape}")
    m, n = img.shape
    if region is None:
        region = (0, m, 0, n)
    r0, r1, c0, c1 = (int(v) for v in region)
    if not (0 <= r0 < r1 <= m and 0 <= c0 < c1 <= n):
        raise ValueError(f"region {region} lies outside the {m}×{n} image")
    pad = margin(preset)
    R0, R1, C0, C1 = max(0, r0 - pad), min(m, r1 + pad), max(0, c0 - pad), min(n, c1 + pad)
    crop = np.ascontiguousarray(img[R0:R1, C0:C1])
    inner = (slice(r0 - R0, r1 - R0), slice(c0 - C0, c1 - C0))
    names = feature_names(preset)
    out = np.empty((len(names), r1 - r0, c1 - c0), dtype=np.float32)
    work = np.empty((9,) + crop.shape, dtype=np.float32)

    # Sobel/Hessian need 2 pixels of context, membranes half their patch:
    # compute those on the smallest sub-window that keeps the maps exact.
    def grown(by):
        a0, a1 = max(0, inner[0].start - by), min(crop.shape[0], inner[0].stop + by)
        b0, b1 = max(0, inner[1].start - by), min(crop.shape[1], inner[1].stop + by)
        sub = (slice(a0, a1), slice(b0, b1))
        rel = (slice(inner[0].start - a0, inner[0].stop - a0), slice(inner[1].start - b0, inner[1].stop - b0))
        return sub, rel

    hsub, hrel = grown(2)
    hshape = (hsub[0].stop - hsub[0].start, hsub[1].stop - hsub[1].start)
    work = np.empty((9,) + hshape, dtype=np.float32)
    k = 0
    out[k] = crop[inner]
    k += 1
    if min(spec.sigmas) < 2:
        _sobel_hessian(np.ascontiguousarray(crop[hsub]), work)
        out[k : k + 9] = work[(slice(None),) + hrel]
        k += 9
    blurs = []
    for s in spec.sigmas:
        full = _blur(crop, s)
        g = full[inner]
        out[k] = g
        k += 1
        _sobel_hessian(np.ascontiguousarray(full[hsub]), work)
        out[k : k + 9] = work[(slice(None),) + hrel]
        k += 9
        for t_blur in blurs:
            np.subtract(t_blur, g, out=out[k])
            k += 1
        blurs.append(g)
    if spec.membrane:
        msub, mrel = grown(spec.membrane_patch // 2)
        region_m = np.ascontiguousarray(crop[msub])
        mem = np.empty((6,) + region_m.shape, dtype=np.float32)
        _membrane(region_m, spec, mem)
        out[k : k + 6] = mem[(slice(None),) + mrel]
        k += 6
    assert k == len(names)
    return out


def normalise(features, preset, scale, offset):
    """Features of ``scale * image + offset`` from the features of ``image``.

    Exact for a constant ``scale``; for a ``scale`` that varies smoothly
    across the slice (a bias-field correction) it is the usual
    locally-constant approximation.

    Parameters
    ----------
    features : ndarray of shape (n_features, ...)
        Maps, or per-pixel columns, of the raw image.
    preset : str
    scale : float or ndarray
        Positive; an array must broadcast against ``features.shape[1:]``.
    offset : float

    Returns
    -------
    ndarray, float32, same shape as ``features``
    """
    scale = np.asarray(scale, dtype=np.float64)
    if not np.all(scale > 0):
        raise ValueError("the intensity scale must be positive")
    _, powers, offsets = _layout(preset)
    if len(powers) != features.shape[0]:
        raise ValueError(f"{features.shape[0]} maps given, preset {preset!r} has {len(powers)}")
    out = np.empty(features.shape, dtype=np.float32)
    cache = {}
    for k in range(features.shape[0]):
        p = int(powers[k])
        if p not in cache:
            cache[p] = (scale**p).astype(np.float32) if scale.ndim else np.float32(scale**p)
        np.multiply(features[k], cache[p], out=out[k])
        if offsets[k]:
            out[k] += np.float32(offsets[k] * offset)
    return out


# ----------------------------------------------------------------- cache
def image_key(image, preset):
    """Content key of a slice and preset: sha1 of bytes, shape, dtype, preset."""
    a = np.ascontiguousarray(image)
    h = hashlib.sha1()
    h.update(a.view(np.uint8).reshape(-1).data if a.size else b"")
    h.update(repr((a.shape, a.dtype.str, preset)).encode())
    return h.hexdigest()


@dataclasses.dataclass
class FeatureSet:
    """Cached maps of one slice: ``maps[:, r - r0, c - c0]`` for the window."""

    key: str
    preset: str
    shape: tuple
    window: tuple  # (r0, r1, c0, c1)
    maps: np.ndarray

    def covers(self, window):
        r0, r1, c0, c1 = window
        w0, w1, v0, v1 = self.window
        return w0 <= r0 and r1 <= w1 and v0 <= c0 and c1 <= v1

    def at(self, rows, cols):
        """Per-pixel feature rows (n_pixels, n_features) at absolute coords."""
        r0, _, c0, _ = self.window
        return self.maps[:, rows - r0, cols - c0].T


class FeatureCache:
    """Bounded, thread-safe cache of feature maps keyed by image content.

    Each entry holds the maps of one (slice content, preset) over a window
    that grows to the union of the windows asked for. Least recently used
    entries are dropped once the total exceeds ``max_bytes``.

    Parameters
    ----------
    max_bytes : int
        Memory bound (default 512 MB: about six 512 × 512 slices of the
        76-map "weka" preset).
    """

    def __init__(self, max_bytes=512 * 2**20):
        self.max_bytes = int(max_bytes)
        self._entries = collections.OrderedDict()
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0

    def __len__(self):
        return len(self._entries)

    @property
    def nbytes(self):
        return sum(e.maps.nbytes for e in self._entries.values())

    def clear(self):
        with self._lock:
            self._entries.clear()

    def get(self, image, preset="weka", window=None, *, key=None):
        """Maps of ``image`` covering ``window`` (whole slice when None)."""
        img = np.asarray(image)
        shape = img.shape
        if window is None:
            window = (0, shape[0], 0, shape[1])
        window = tuple(int(v) for v in window)
        key = key or image_key(img, preset)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.covers(window):
                self._entries.move_to_end(key)
                self.hits += 1
                return entry
        self.misses += 1
        if entry is not None:  # grow to the union
            w0, w1, v0, v1 = entry.window
            window = (min(w0, window[0]), max(w1, window[1]), min(v0, window[2]), max(v1, window[3]))
        maps = compute_features(img, preset, region=window)
        entry = FeatureSet(key=key, preset=preset, shape=shape, window=window, maps=maps)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > 1 and self.nbytes > self.max_bytes:
                self._entries.popitem(last=False)
        return entry


_SHARED = FeatureCache()


def shared_cache():
    """The process-wide cache :class:`~napari_pvm.core.classify.FatClassifier` uses."""
    return _SHARED
