"""Synthetic lumbar phantom with exact ground truth.

The phantom is an axial T2-weighted-like stack of a lumbar body at L4: skin
and subcutaneous fat, abdominal wall and viscera, vertebral body, spinal canal
and spinous process, and psoas (PS), erector spinae (ES) and multifidus (MF)
on both sides at realistic sizes. Intramuscular fat is drawn as blobs and as
thin streaks (marbling) at a chosen fraction per muscle. Tissue is rendered on
a grid ``supersample`` times finer and averaged down, so every boundary and
every thin streak carries partial volume; a smooth coil-like bias field and
Rician noise follow. Nothing real is in it: the truth is exact by
construction.

Truth conventions (see docs/phantom.md):
- an outline's mask is the set of pixels whose centre lies inside its polygon
  (``skimage.draw.polygon2mask``), the rule ``measure`` uses;
- a pixel is fat when more than half of its area is fat tissue (any fat: a
  boundary pixel whose larger part is subcutaneous fat is fat too);
- FI% = true fat pixels / mask pixels × 100; ``subpixel_fat_pct`` gives the
  area-weighted fat share as well.
"""

import dataclasses

import numpy as np

from . import schema
from .errors import PvmError

__all__ = ["Phantom", "make_phantom", "write_phantom", "DEFAULT_FAT_FRACTIONS"]

#: Intramuscular fat area fraction per muscle (left and right alike) by default.
DEFAULT_FAT_FRACTIONS = {"PS": 0.06, "ES": 0.18, "MF": 0.28}

# T2 TSE-like signal of each tissue relative to subcutaneous fat.
_SIGNAL = {
    "air": 0.0,
    "fat": 1.0,
    "skin": 0.45,
    "muscle": 0.24,
    "viscera": 0.42,
    "marrow": 0.55,
    "cortex": 0.08,
    "csf": 0.92,
    "fascia": 0.12,
}

# Anatomy in mm: x towards the patient's left, y towards posterior, from the
# body centre. (centre_x, centre_y, half-width, half-depth, rotation in deg)
_MUSCLES = {
    "PS": (50.0, 6.0, 19.0, 14.0, -20.0),
    "ES": (46.0, 70.0, 19.0, 29.0, -8.0),
    "MF": (15.0, 72.0, 9.0, 19.0, 0.0),
}
_BODY = (165.0, 118.0)  # half-width, half-depth of the skin outline
_SUBCUT = 19.0  # mean subcutaneous fat thickness


@dataclasses.dataclass
class Phantom:
    """A synthetic lumbar stack and its ground truth.

    Attributes
    ----------
    data : ndarray of shape (K, M, N), float32
        Contract-1 orientation (slices inferior → superior, row 0 anterior,
        column 0 patient right).
    spacing : tuple of 3 floats
        (slice, row, column) spacing in mm.
    l4_index : int
        The L4 slice, in the middle of the stack.
    rois : dict
        ``{"PS_L": vertices, ...}``, vertices an (N, 2) array of [row, col].
    samples : list of dict
        ``{"class": "fat" | "muscle", "vertices": (N, 2) array}``.
    masks : dict
        Boolean (M, N) mask of each outline (polygon2mask rule).
    fat_share : ndarray of shape (M, N)
        Area fraction of fat in each pixel of the L4 slice.
    truth : dict
        Contract-3 names → true values, plus ``subpixel_fat_pct`` and the
        phantom's parameters.
    """

    data: np.ndarray
    spacing: tuple
    l4_index: int
    rois: dict
    samples: list
    masks: dict
    fat_share: np.ndarray
    truth: dict

    @property
    def l4(self):
        """The L4 slice (float32, shape (M, N))."""
        return self.data[self.l4_index]

    @property
    def fat_truth(self):
        """Boolean (M, N): pixels whose area is more than half fat."""
        return self.fat_share > 0.5

    def annotation(self):
        """The contract-2 annotation dict with the true outlines and samples."""
        rois = []
        for key, verts in self.rois.items():
            muscle, side = key.split("_")
            rois.append({"muscle": muscle, "side": side, "vertices": _plain_vertices(verts)})
        return {
            "format": "napari-pvm.annotation/1",
            "image": {},
            "slice_index": int(self.l4_index),
            "level": "L4",
            "rois": rois,
            "samples": [{"class": s["class"], "vertices": _plain_vertices(s["vertices"])} for s in self.samples],
            "patient_id": "PHANTOM",
        }


def _plain_vertices(verts):
    # full precision: the written outlines must rasterise exactly to the truth masks
    return [[float(r), float(c)] for r, c in verts]


def make_phantom(
    *,
    seed=0,
    spacing=0.78125,
    shape=None,
    n_slices=5,
    slice_thickness=4.0,
    fat_fractions=None,
    bias=0.25,
    noise=0.03,
    supersample=5,
    streak_share=0.5,
):
    """Make a synthetic lumbar stack with exact ground truth at L4.

    Parameters
    ----------
    seed : int
        Seed of every random choice; the same seed gives the same phantom.
    spacing : float
        In-plane pixel spacing in mm (0.6 to 1.2 is typical of lumbar T2).
    shape : tuple of 2 ints, optional
        Slice shape; by default a 400 mm field of view rounded up to a
        multiple of 16 pixels (512 × 512 at the default spacing).
    n_slices : int
        Number of axial slices; L4 is the middle one.
    slice_thickness : float
        Slice spacing in mm.
    fat_fractions : dict, optional
        Intramuscular fat area fraction per muscle (``{"PS": 0.05, ...}``) or
        per outline (``{"ES_L": 0.4, ...}``); see ``DEFAULT_FAT_FRACTIONS``.
    bias : float
        Half-range of the multiplicative coil-like bias field (0 for none).
    noise : float
        Rician noise standard deviation relative to fat signal (0 for none).
    supersample : int
        Fine-grid factor for partial volume; odd, so that no pixel is
        exactly half fat (a tie the "more than half" rule would call muscle).
    streak_share : float
        Share of intramuscular fat drawn as thin streaks (the rest: blobs).

    Returns
    -------
    Phantom

    Examples
    --------
    >>> ph = make_phantom(seed=1, spacing=1.2)
    >>> ph.data.shape[0], ph.l4_index
    (5, 2)
    >>> 15 < ph.truth["ES_L_total_area_cm2"] < 22
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PvmError(f"phantom seed must be a whole number ≥ 0, got {seed!r}")
    if not (0.2 <= float(spacing) <= 3.0):  # before float32, which overflows past 3.4e38
        raise PvmError(f"phantom spacing {spacing} mm is outside 0.2–3 mm")
    # NIfTI headers hold float32: use the value the file will carry, so that
    # areas from the written file equal the truth to the last digit
    spacing = float(np.float32(spacing))
    slice_thickness = float(np.float32(slice_thickness))
    if not (0.2 <= spacing <= 3.0):
        raise PvmError(f"phantom spacing {spacing} mm is outside 0.2–3 mm")
    if shape is None:
        n = int(np.ceil(400.0 / spacing / 16.0) * 16)
        shape = (n, n)
    shape = tuple(int(s) for s in shape)
    if min(shape) * spacing < 360:
        raise PvmError(
            f"a {shape} slice at {spacing} mm is {min(shape) * spacing:.0f} mm wide; "
            "the phantom body needs a field of view of at least 360 mm"
        )
    if n_slices < 1:
        raise PvmError("n_slices must be at least 1")
    fractions = _fat_fraction_table(fat_fractions)
    rng = np.random.default_rng(seed)
    l4 = n_slices // 2
    geometry = _Geometry(shape, spacing, rng)
    slices, truth_parts = [], None
    for k in range(n_slices):
        # Off-L4 slices: same anatomy, slightly resized, cheaper rendering.
        scale = 1.0 + 0.03 * (k - l4)
        is_l4 = k == l4
        ss = int(supersample) if is_l4 else 1
        tissue, fat_fine, parts = geometry.render(
            scale=scale if not is_l4 else 1.0,
            supersample=ss,
            fractions=fractions,
            rng=np.random.default_rng([seed, k]),
            streak_share=streak_share,
        )
        if is_l4:
            truth_parts = parts
            fat_share = _block_mean(fat_fine, ss)
        slices.append(_block_mean(tissue, ss))
    data = np.stack(slices).astype(np.float64)
    field = _bias_field(shape, spacing, geometry.centre, bias, rng)
    data *= field[None]
    if noise > 0:
        n1 = rng.normal(0.0, noise, data.shape)
        n2 = rng.normal(0.0, noise, data.shape)
        data = np.sqrt((data + n1) ** 2 + n2**2)
    data = (1000.0 * data).astype(np.float32)

    rois, masks, samples = truth_parts
    truth = _truth(masks, fat_share, spacing)
    truth["parameters"] = {
        "seed": int(seed),
        "spacing_mm": spacing,
        "shape": list(shape),
        "n_slices": int(n_slices),
        "slice_thickness_mm": float(slice_thickness),
        "l4_index": int(l4),
        "fat_fractions": {k: float(v) for k, v in fractions.items()},
        "bias": float(bias),
        "noise": float(noise),
        "supersample": int(supersample),
        "streak_share": float(streak_share),
    }
    return Phantom(
        data=data,
        spacing=(float(slice_thickness), spacing, spacing),
        l4_index=l4,
        rois=rois,
        samples=samples,
        masks=masks,
        fat_share=fat_share,
        truth=truth,
    )


def _fat_fraction_table(fat_fractions):
    table = {key: DEFAULT_FAT_FRACTIONS[key.split("_")[0]] for key in schema.ROI_KEYS}
    for key, value in (fat_fractions or {}).items():
        targets = [k for k in schema.ROI_KEYS if k == key or k.split("_")[0] == key]
        if not targets:
            raise PvmError(f"unknown muscle {key!r} in fat_fractions; use PS, ES, MF or e.g. ES_L")
        if not 0.0 <= float(value) <= 0.8:
            raise PvmError(f"fat fraction {value} for {key} must lie between 0 and 0.8")
        for k in targets:
            table[k] = float(value)
    return table


class _Geometry:
    """Anatomy of one phantom body, drawn at any resolution."""

    def __init__(self, shape, spacing, rng):
        self.shape = shape
        self.spacing = spacing
        # body centre: middle column, a little anterior of the middle row
        self.centre = (shape[0] / 2.0 - 8.0 / spacing, (shape[1] - 1) / 2.0)
        # smooth random shape perturbations, fixed per phantom
        self.wobble = {
            name: (rng.uniform(-amp, amp, 3), rng.uniform(0, 2 * np.pi, 3))
            for name, amp in [("body", 0.025), ("subcut", 0.025)] + [(f"{m}_{s}", 0.06) for m in _MUSCLES for s in "LR"]
        }
        self.jitter = {f"{m}_{s}": rng.uniform(-1.0, 1.0, 2) * 1.5 for m in _MUSCLES for s in "LR"}
        self._separate_back_muscles()

    def _separate_back_muscles(self):
        """Move each ES laterally, 0.5 mm at a time, until it keeps at least
        one pixel away from the MF beside it (outlines must not overlap)."""
        from scipy import ndimage as ndi
        from skimage.draw import polygon2mask

        for side in "LR":
            mf = ndi.binary_dilation(polygon2mask(self.shape, self.outline(f"MF_{side}")), iterations=1)
            for _ in range(40):
                if not (mf & polygon2mask(self.shape, self.outline(f"ES_{side}"))).any():
                    break
                self.jitter[f"ES_{side}"][0] += 0.5

    # ------------------------------------------------------------ outlines
    def outline(self, name, scale=1.0, n=64):
        """Vertices [row, col] (coarse pixel units) of a named outline."""
        if name in ("body", "subcut"):
            hx, hy = _BODY
            if name == "subcut":
                hx, hy = hx - _SUBCUT * 1.1, hy - _SUBCUT
            cx, cy, rot = 0.0, 0.0, 0.0
        else:
            muscle, side = name.split("_")
            cx, cy, hx, hy, rot = _MUSCLES[muscle]
            jx, jy = self.jitter[name]
            sign = 1.0 if side == "L" else -1.0
            cx, cy, rot = sign * (cx + jx), cy + jy, sign * rot
        amp, phase = self.wobble[name]
        t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
        radius = 1.0 + sum(a * np.cos((i + 2) * t + p) for i, (a, p) in enumerate(zip(amp, phase)))
        x, y = hx * radius * np.cos(t), hy * radius * np.sin(t)
        a = np.deg2rad(rot)
        x, y = x * np.cos(a) - y * np.sin(a), x * np.sin(a) + y * np.cos(a)
        x, y = (cx + x) * scale, (cy + y) * scale
        rows = self.centre[0] + y / self.spacing
        cols = self.centre[1] + x / self.spacing
        return np.column_stack([rows, cols])

    # ------------------------------------------------------------- render
    def render(self, *, scale, supersample, fractions, rng, streak_share):
        from skimage.draw import polygon2mask

        ss = supersample
        fine_shape = (self.shape[0] * ss, self.shape[1] * ss)
        px = self.spacing / ss  # fine pixel size in mm

        def fine(verts):
            return (verts + 0.5) * ss - 0.5

        def mask(verts):
            return polygon2mask(fine_shape, fine(verts))

        rr, cc = np.mgrid[0 : fine_shape[0], 0 : fine_shape[1]].astype(np.float32)
        y = ((rr + 0.5) / ss - 0.5 - self.centre[0]) * self.spacing / scale
        x = ((cc + 0.5) / ss - 0.5 - self.centre[1]) * self.spacing / scale
        del rr, cc

        tissue = np.zeros(fine_shape, np.float32)
        fat = np.zeros(fine_shape, bool)
        body = mask(self.outline("body", scale))
        inner = mask(self.outline("subcut", scale))
        tissue[body] = _SIGNAL["skin"]
        skin = body & ~_erode_mm(body, 1.5, px)
        fat_layer = body & ~skin & ~inner
        tissue[fat_layer] = _SIGNAL["fat"]
        fat |= fat_layer
        # fascia: a thin dark line between subcutaneous fat and deep tissue
        fascia = inner & ~_erode_mm(inner, 0.8, px)
        viscera = inner & ~fascia
        texture = _smooth_noise(fine_shape, 6.0 / px, rng)
        tissue[viscera] = (_SIGNAL["viscera"] * (1 + 0.25 * texture))[viscera]
        tissue[fascia] = _SIGNAL["fascia"]
        # abdominal wall muscle: anterior and lateral band inside the fascia
        wall = inner & ~_erode_mm(inner, 9.0, px) & ~fascia & (y < 35)
        tissue[wall] = _SIGNAL["muscle"]
        # behind the vertebral body: fat around the back muscles, separated
        # from the viscera by a curved fascial plane; quadratus lumborum laterally
        plane = 30.0 + 0.0025 * x**2
        back = inner & (y > plane) & ~fascia
        tissue[back] = _SIGNAL["fat"]
        fat |= back
        tissue[inner & (np.abs(y - plane) < 0.6)] = _SIGNAL["fascia"]
        fat[inner & (np.abs(y - plane) < 0.6)] = False
        ql = back & (((np.abs(x) - 82.0) / 16.0) ** 2 + ((y - 52.0) / 11.0) ** 2 <= 1)
        tissue[ql] = (_SIGNAL["muscle"] * (1 + 0.07 * texture))[ql]
        fat[ql] = False
        # vertebral body, canal, spinous process
        vb = ((x / 24.0) ** 2 + ((y - 16.0) / 17.0) ** 2) <= 1
        vb_inner = ((x / 22.5) ** 2 + ((y - 16.0) / 15.5) ** 2) <= 1
        tissue[vb] = _SIGNAL["cortex"]
        tissue[vb_inner] = (_SIGNAL["marrow"] * (1 + 0.12 * texture))[vb_inner]
        canal_wall = ((x / 12.0) ** 2 + ((y - 44.0) / 10.0) ** 2) <= 1
        canal = ((x / 9.0) ** 2 + ((y - 44.0) / 7.5) ** 2) <= 1
        spinous = (np.abs(x) < 3.5) & (y > 52) & (y < 96)
        lamina = (np.abs(x) < 22) & (y > 50) & (y < 56) & ~canal_wall
        fat[vb | canal_wall | spinous | lamina] = False
        tissue[canal_wall | spinous | lamina] = _SIGNAL["cortex"]
        tissue[canal] = _SIGNAL["csf"]

        rois, masks, samples = {}, {}, []
        muscle_texture = _smooth_noise(fine_shape, 1.5 / px, rng)
        exclusion = {
            "PS_L": (1.0, 0.0, 6.0),  # (offset along x, along y, radius) of a lean patch in mm
            "ES_R": (0.0, -6.0, 7.0),
        }
        for key in schema.ROI_KEYS:
            verts = self.outline(key, scale)
            region = mask(verts)
            tissue[region] = (_SIGNAL["muscle"] * (1 + 0.07 * muscle_texture))[region]
            fat[region] = False
            lean_patch = None
            if key in exclusion:
                c = verts.mean(axis=0)
                dx, dy, radius = exclusion[key]
                centre = (c[0] + dy / self.spacing, c[1] + dx / self.spacing)
                lean_patch = _circle(centre, radius / self.spacing)
                samples.append({"class": "muscle", "vertices": _circle(centre, (radius - 2.0) / self.spacing)})
            streaks = _marbling(
                region,
                fractions[key],
                px=px,
                ss=ss,
                rng=rng,
                streak_share=streak_share,
                exclude=None if lean_patch is None else mask(lean_patch),
                axis_deg=90.0 + _MUSCLES[key.split("_")[0]][4] * (1 if key.endswith("L") else -1),
            )
            tissue[streaks] = _SIGNAL["fat"]
            fat |= streaks
            rois[key] = verts
            masks[key] = None  # filled on the coarse grid below
        # posterior subcutaneous fat sample, behind the right back muscles,
        # between the skin and the deepest point of the erector spinae
        outline = self.outline("body", scale, n=720)
        posterior = outline[outline[:, 0] > self.centre[0]]
        at = posterior[np.argmin(np.abs(posterior[:, 1] - (self.centre[1] - 28.0 / self.spacing)))]
        deepest = max(v[:, 0].max() for k, v in rois.items() if not k.startswith("PS"))
        top, bottom = deepest + 2.0 / self.spacing, at[0] - 3.0 / self.spacing
        fat_centre = ((top + bottom) / 2, at[1])
        samples.insert(0, {"class": "fat", "vertices": _rectangle(fat_centre, (bottom - top) / 2, 20.0 / self.spacing)})
        tissue[~body] = _SIGNAL["air"]
        for key, verts in rois.items():
            masks[key] = polygon2mask(self.shape, verts)
        return tissue, fat.astype(np.float32), (rois, masks, samples)


def _marbling(region, fraction, *, px, ss, rng, streak_share, exclude, axis_deg):
    """Blobs and 1–3 px streaks covering ``fraction`` of ``region`` (fine grid)."""
    from skimage.draw import ellipse, polygon

    out = np.zeros(region.shape, bool)
    allowed = region if exclude is None else region & ~exclude
    total = int(region.sum())
    target = fraction * total
    if target <= 0 or total == 0:
        return out
    rows, cols = np.nonzero(allowed)
    streak_target = streak_share * target
    area = 0
    guard = 0
    while area < target and guard < 5000:
        guard += 1
        i = rng.integers(len(rows))
        r0, c0 = rows[i], cols[i]
        if area < streak_target:
            # streak: 1–3 coarse pixels wide, 8–35 mm long, along the fibres
            width = rng.uniform(1.0, 3.0) * ss
            length = rng.uniform(8.0, 35.0) / px
            ang = np.deg2rad(axis_deg + rng.normal(0.0, 15.0))
            dr, dc = np.sin(ang), np.cos(ang)
            nr, nc = -dc, dr
            h, w = length / 2, width / 2
            pr = [r0 - h * dr - w * nr, r0 + h * dr - w * nr, r0 + h * dr + w * nr, r0 - h * dr + w * nr]
            pc = [c0 - h * dc - w * nc, c0 + h * dc - w * nc, c0 + h * dc + w * nc, c0 - h * dc + w * nc]
            rr, cc = polygon(pr, pc, shape=region.shape)
        else:
            a = rng.uniform(1.0, 4.0) / px
            b = a * rng.uniform(0.5, 1.0)
            rr, cc = ellipse(r0, c0, a, b, shape=region.shape, rotation=rng.uniform(0, np.pi))
        keep = allowed[rr, cc] & ~out[rr, cc]
        out[rr[keep], cc[keep]] = True
        area += int(keep.sum())
    return out


def _circle(centre, radius, n=24):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([centre[0] + radius * np.sin(t), centre[1] + radius * np.cos(t)])


def _rectangle(centre, half_h, half_w):
    r, c = centre
    return np.array(
        [[r - half_h, c - half_w], [r - half_h, c + half_w], [r + half_h, c + half_w], [r + half_h, c - half_w]]
    )


def _erode_mm(mask, mm, px):
    from scipy import ndimage as ndi

    iterations = max(1, int(round(mm / px)))
    return ndi.binary_erosion(mask, iterations=iterations)


def _smooth_noise(shape, sigma_px, rng):
    """Zero-mean, unit-range smooth noise (computed coarse, then upsampled)."""
    from scipy import ndimage as ndi

    step = max(1, int(sigma_px // 2))
    small = rng.standard_normal((shape[0] // step + 2, shape[1] // step + 2))
    small = ndi.gaussian_filter(small, max(sigma_px / step, 0.5))
    small /= np.abs(small).max() + 1e-12
    big = ndi.zoom(small, step, order=1)[: shape[0], : shape[1]]
    return big.astype(np.float32)


def _block_mean(a, factor):
    if factor == 1:
        return a.astype(np.float32, copy=False)
    m, n = a.shape[0] // factor, a.shape[1] // factor
    return a.reshape(m, factor, n, factor).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def _bias_field(shape, spacing, centre, bias, rng):
    """Smooth multiplicative field of a posterior spine coil: bright at the
    back, falling off anteriorly, with a gentle left–right tilt."""
    if bias <= 0:
        return np.ones(shape)
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    coil_row = centre[0] + (_BODY[1] + 40.0) / spacing
    d = np.hypot((rr - coil_row) * spacing, (cc - centre[1]) * spacing * 0.6)
    field = np.exp(-d / 220.0) * (1.0 + 0.15 * rng.uniform(-1, 1) * (cc - centre[1]) * spacing / 165.0)
    body = ((cc - centre[1]) * spacing / _BODY[0]) ** 2 + ((rr - centre[0]) * spacing / _BODY[1]) ** 2 <= 1
    lo, hi = field[body].min(), field[body].max()
    return 1.0 - bias + 2.0 * bias * (field - lo) / (hi - lo)


def _truth(masks, fat_share, spacing):
    pixel_cm2 = spacing * spacing / 100.0
    fat = fat_share > 0.5
    truth, subpixel = {}, {}
    roi = dict(masks)
    for side in ("L", "R"):
        roi[f"ESMF_{side}"] = masks[f"ES_{side}"] | masks[f"MF_{side}"]
    for group in schema.GROUPS:
        for side in schema.SIDES:
            sides = ("L", "R") if side == "B" else (side,)
            m = np.zeros_like(fat)
            for s in sides:
                m |= roi[f"{group}_{s}"]
            n = int(m.sum())
            n_fat = int((m & fat).sum())
            total = n * pixel_cm2
            fat_cm2 = n_fat * pixel_cm2
            truth[schema.measure_column(group, side, "total_area_cm2")] = total
            truth[schema.measure_column(group, side, "fat_area_cm2")] = fat_cm2
            truth[schema.measure_column(group, side, "muscle_area_cm2")] = total - fat_cm2
            truth[schema.measure_column(group, side, "fi_pct")] = 100.0 * n_fat / n
            subpixel[f"{group}_{side}"] = 100.0 * float(fat_share[m].sum()) / n
    overlap = sum(int(a.sum()) for a in masks.values()) - int(np.logical_or.reduce(list(masks.values())).sum())
    if overlap:
        raise PvmError(f"phantom outlines overlap by {overlap} pixels (internal error)")
    truth["subpixel_fat_pct"] = subpixel
    return truth


def write_phantom(outdir, *, seed=0, **kwargs):
    """Write ``phantom.nii.gz``, ``phantom.pvm.json`` and ``truth.json``.

    The NIfTI is stored with (L, P, S) axis codes, like most lumbar exports,
    so that slice ``k`` of contract 1 is ``data[:, :, k].T``. The same seed
    gives byte-identical files.

    Returns
    -------
    dict
        Paths written: ``{"image": ..., "annotation": ..., "truth": ...}``.
    """
    from pathlib import Path

    import nibabel as nib

    from .annotation import write_json_atomic
    from .io import file_sha256

    outdir = Path(outdir)
    ph = make_phantom(seed=seed, **kwargs)  # validates before anything is created
    outdir.mkdir(parents=True, exist_ok=True)
    dz, dr, dc = ph.spacing
    # (k, row, col) → (i=col towards L, j=row towards P, k towards S)
    stored = np.ascontiguousarray(ph.data.transpose(2, 1, 0))
    affine = np.diag([-dc, -dr, dz, 1.0])
    affine[:3, 3] = [dc * stored.shape[0] / 2, dr * stored.shape[1] / 2, -dz * ph.l4_index]
    img = nib.Nifti1Image(stored, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    image_path = outdir / "phantom.nii.gz"
    save_nifti_deterministic(img, image_path)
    annotation = ph.annotation()
    annotation["image"] = {"sha256": file_sha256(image_path)}
    annotation_path = outdir / "phantom.pvm.json"
    write_json_atomic(annotation_path, annotation)
    truth_path = outdir / "truth.json"
    write_json_atomic(truth_path, ph.truth)
    return {"image": image_path, "annotation": annotation_path, "truth": truth_path}


def save_nifti_deterministic(img, path):
    """Save a NIfTI as gzip with no timestamp, so equal data give equal bytes."""
    import gzip
    import os
    import tempfile

    from .annotation import readable_by_others

    raw = img.to_bytes()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".nii.gz")
    try:
        with os.fdopen(fd, "wb") as fh:
            readable_by_others(fh.fileno())
            with gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
                gz.write(raw)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
