"""Synthetic sagittal lumbar phantom for the spine measures, with exact truth.

A T1-weighted-like sagittal stack of the lumbar spine (contract 8 display:
row 0 superior, column 0 anterior, slices right → left): vertebral bodies
L1–L5 with a cortical rim and a known marrow signal per level, L2 fractured
and wedged (lower, oedema-like signal), intervertebral discs, the spinal
canal filled with CSF (with the conus of the cord above L2), posterior
elements, muscle and subcutaneous fat. The superior endplate of L1 and the
inferior endplate of L3 are tilted so that the local kyphotic angle across
the L2 fracture equals a chosen value. Tissue is rendered on a grid
``supersample`` times finer and averaged down (partial volume at every
boundary); an optional smooth shading field and Gaussian noise follow.

Truth (``sagittal_truth.json``):
- ``local_kyphosis_deg`` is the generation parameter itself; the annotation's
  endplate lines are placed exactly on the tilted endplates in millimetres.
- ``vbq`` is recomputed from the stored pixels of the ROIs in the
  annotation, with a membership test written independently of the
  measuring code (half-plane tests of convex polygons at pixel centres).
  With ``noise=0`` and ``shading=0`` every ROI lies in uniform tissue, so
  the medians equal the set signals and VBQ equals their ratio exactly
  (``vbq_set`` records that ratio).
"""

import dataclasses

import numpy as np

from .errors import PvmError

__all__ = ["SagittalPhantom", "make_sagittal_phantom", "write_sagittal_phantom", "SAGITTAL_SIGNAL"]

#: T1-weighted-like signal of each tissue (integers, so clean medians are exact).
SAGITTAL_SIGNAL = {
    "air": 0,
    "soft": 150,  # abdominal wall, viscera, psoas
    "muscle": 170,
    "fat": 420,
    "cortex": 40,
    "disc": 130,
    "csf": 100,
    "cord": 240,
    "posterior": 260,  # posterior elements (marrow of arch and spinous process)
}
#: Marrow signal of each vertebral body; L2 is the fractured level.
MARROW_SIGNAL = {"L1": 300, "L2": 190, "L3": 320, "L4": 310, "L5": 290}
LEVELS = ("L1", "L2", "L3", "L4", "L5")
FRACTURED = "L2"

_HEIGHT_MM, _WIDTH_MM = 250.0, 170.0
_ANTERIOR_MM, _POSTERIOR_MM = 45.0, 82.0  # vertebral body front and back
_BODY_H_MM, _DISC_H_MM = 27.0, 9.0
_TOP_MM = 32.0  # superior endplate of L1 at the body's mid-depth
_CORTEX_MM = 1.5
_CANAL = (85.0, 99.0)  # spinal canal, anterior and posterior wall
_CONUS_END_MM = None  # set from L2's mid-height


@dataclasses.dataclass
class SagittalPhantom:
    """A synthetic sagittal lumbar stack and its truth.

    Attributes
    ----------
    data : ndarray (K, M, N), float32
        Contract-8 display: slices right → left, rows superior → inferior,
        columns anterior → posterior.
    spacing : tuple of 3 floats
        (slice, row, col) in mm.
    mid_index : int
        The mid-sagittal slice.
    annotation : dict
        A ``napari-pvm.spine/1`` annotation with the true ROIs and lines.
    truth : dict
        ``vbq``, ``local_kyphosis_deg`` and their parts.
    """

    data: np.ndarray
    spacing: tuple
    mid_index: int
    annotation: dict
    truth: dict


def _inside_convex(vertices, rows, cols):
    """Pixel centres inside a convex polygon by half-plane tests (independent
    of skimage, used for the truth only)."""
    v = np.asarray(vertices, dtype=float)
    inside = np.ones(np.broadcast(rows, cols).shape, bool)
    sign = None
    area = 0.5 * np.sum(v[:, 0] * np.roll(v[:, 1], -1) - v[:, 1] * np.roll(v[:, 0], -1))
    sign = np.sign(area)
    for a, b in zip(v, np.roll(v, -1, axis=0)):
        cross = (b[0] - a[0]) * (cols - a[1]) - (b[1] - a[1]) * (rows - a[0])
        inside &= sign * cross > 0
    return inside


def _endplates(kyphosis_deg):
    """Superior and inferior endplates of each level as (y at mid-depth, tilt deg).

    Tilt is the inclination from the anterior → posterior direction, positive
    when the endplate descends towards posterior (rows grow). The local
    kyphotic angle is tilt(L3 inferior) − tilt(L1 superior); L2 is wedged
    (anterior height 60 % of posterior), the other endplates are level.
    """
    half = kyphosis_deg / 2.0
    plates = {}
    y = _TOP_MM
    for level in LEVELS:
        sup_tilt = -half if level == "L1" else 0.0
        inf_tilt = half if level == "L3" else 0.0
        plates[level] = {"sup": (y, sup_tilt), "inf": (y + _BODY_H_MM, inf_tilt)}
        y += _BODY_H_MM + _DISC_H_MM
    return plates


def _plate_y(plate, x):
    """mm row position of an endplate at depth x (mm from the image's anterior edge)."""
    y_mid, tilt = plate
    x_mid = 0.5 * (_ANTERIOR_MM + _POSTERIOR_MM)
    return y_mid + np.tan(np.radians(tilt)) * (x - x_mid)


def _body_polygon(plates, level):
    """Corners (y, x) in mm of a vertebral body: sup-ant, sup-post, inf-post, inf-ant.

    L2's anterior wall is collapsed: its superior endplate's anterior corner
    drops by 40 % of the body height (a wedge fracture)."""
    sup, inf = plates[level]["sup"], plates[level]["inf"]
    sa = [_plate_y(sup, _ANTERIOR_MM), _ANTERIOR_MM]
    sp = [_plate_y(sup, _POSTERIOR_MM), _POSTERIOR_MM]
    ip = [_plate_y(inf, _POSTERIOR_MM), _POSTERIOR_MM]
    ia = [_plate_y(inf, _ANTERIOR_MM), _ANTERIOR_MM]
    if level == FRACTURED:
        sa[0] += 0.4 * _BODY_H_MM
    return np.array([sa, sp, ip, ia])


def _polygon_mask_mm(corners_mm, y, x):
    return _inside_convex(corners_mm, y, x)


def make_sagittal_phantom(
    *,
    seed=0,
    spacing=(0.75, 0.75),
    slice_spacing=4.0,
    n_slices=5,
    kyphosis_deg=12.0,
    noise=0.03,
    shading=0.15,
    supersample=5,
):
    """Build the sagittal phantom.

    Parameters
    ----------
    seed : int
        Seed of the noise and shading (every random choice).
    spacing : (float, float)
        (row, col) pixel spacing in mm; anisotropic values (e.g. (0.5, 1.2))
        show a wrong spacing order at once.
    slice_spacing : float
        Distance between sagittal slices in mm.
    n_slices : int
        Number of slices (odd; the middle one is the mid-sagittal slice).
    kyphosis_deg : float
        Local kyphotic angle across L2 (L1 superior to L3 inferior endplate),
        positive kyphosis, negative lordosis; |angle| ≤ 30.
    noise : float
        Gaussian noise σ as a share of the CSF signal (0: none).
    shading : float
        Peak-to-peak amplitude of a smooth multiplicative shading (0: none).
    supersample : int
        Odd sub-pixel factor of the tissue rendering.

    Examples
    --------
    >>> ph = make_sagittal_phantom(noise=0, shading=0)
    >>> ph.truth["vbq"] == ph.truth["vbq_set"] == 310 / 100
    True
    """
    dr, dc = (float(s) for s in spacing)
    for value, what in ((dr, "row spacing"), (dc, "column spacing"), (slice_spacing, "slice spacing")):
        if not 0.2 <= value <= 5.0:
            raise PvmError(f"sagittal phantom: {what} {value} mm is outside 0.2–5 mm")
    if not abs(kyphosis_deg) <= 30:
        raise PvmError(f"sagittal phantom: kyphosis_deg {kyphosis_deg} is outside −30…30°")
    if n_slices < 1 or n_slices % 2 == 0:
        raise PvmError("sagittal phantom: n_slices must be odd (the middle slice is mid-sagittal)")
    if supersample < 1 or supersample % 2 == 0:
        raise PvmError("sagittal phantom: supersample must be an odd positive integer")
    if not (0 <= noise <= 1 and 0 <= shading < 1):  # NaN fails both
        raise PvmError(f"sagittal phantom: noise must be in [0, 1] and shading in [0, 1), got {noise!r}, {shading!r}")
    # the NIfTI header stores float32: build with the spacing a reader will see
    dr, dc, slice_spacing = (float(np.float32(v)) for v in (dr, dc, slice_spacing))
    rng = np.random.default_rng(seed)
    rows, cols = int(round(_HEIGHT_MM / dr)), int(round(_WIDTH_MM / dc))
    ss = int(supersample)
    # fine-grid sample positions in mm (pixel (r, c) centre is at (r*dr, c*dc))
    fy = ((np.arange(rows * ss) + 0.5) / ss - 0.5) * dr
    fx = ((np.arange(cols * ss) + 0.5) / ss - 0.5) * dc
    y, x = np.meshgrid(fy, fx, indexing="ij")
    plates = _endplates(kyphosis_deg)
    tissue = np.full(y.shape, SAGITTAL_SIGNAL["soft"], dtype=np.float64)
    tissue[x < 12.0] = SAGITTAL_SIGNAL["fat"]  # anterior abdominal fat
    tissue[x > 118.0] = SAGITTAL_SIGNAL["muscle"]  # paraspinal muscles
    tissue[x > 150.0] = SAGITTAL_SIGNAL["fat"]  # subcutaneous fat
    # posterior elements behind the canal: laminae and spinous processes per level
    for level in LEVELS:
        y0 = plates[level]["sup"][0] + 2.0
        box = (x > _CANAL[1]) & (x < 140.0) & (y > y0) & (y < y0 + 20.0)
        tissue[box] = SAGITTAL_SIGNAL["posterior"]
    canal = (x >= _CANAL[0]) & (x <= _CANAL[1])
    tissue[canal] = SAGITTAL_SIGNAL["csf"]
    # conus medullaris: cord in the canal's middle, ending at L1–L2
    conus_end = plates["L2"]["sup"][0]
    centre = 0.5 * (_CANAL[0] + _CANAL[1])
    cord = canal & (np.abs(x - centre) < 3.5) & (y < conus_end)
    tissue[cord] = SAGITTAL_SIGNAL["cord"]
    # discs between bodies (a band across the body's depth)
    for upper, lower in zip(LEVELS[:-1], LEVELS[1:]):
        y_top = _plate_y(plates[upper]["inf"], x)
        y_bot = _plate_y(plates[lower]["sup"], x)
        if lower == FRACTURED:  # the disc follows the collapsed anterior wall down
            y_bot = y_bot + 0.4 * _BODY_H_MM * np.clip((_POSTERIOR_MM - x) / (_POSTERIOR_MM - _ANTERIOR_MM), 0, 1)
        disc = (x >= _ANTERIOR_MM - 1.0) & (x <= _POSTERIOR_MM + 1.0) & (y > y_top - 0.01) & (y < y_bot + 0.01)
        tissue[disc] = SAGITTAL_SIGNAL["disc"]
    bodies = {}
    for level in LEVELS:
        corners = _body_polygon(plates, level)
        bodies[level] = corners
        inside = _polygon_mask_mm(corners, y, x)
        tissue[inside] = SAGITTAL_SIGNAL["cortex"]
        # marrow: the body shrunk by the cortical thickness (a convex inset)
        marrow = _polygon_mask_mm(_inset(corners, _CORTEX_MM), y, x)
        tissue[marrow] = MARROW_SIGNAL[level]
    clean = tissue.reshape(rows, ss, cols, ss).mean(axis=(1, 3))
    slices = []
    mid = n_slices // 2
    for k in range(n_slices):
        # off-mid slices: the canal narrows out of plane (less CSF, more bone)
        factor = 1.0 if k == mid else 1.0 - 0.03 * abs(k - mid)
        slices.append(clean * factor)
    data = np.stack(slices).astype(np.float64)
    if shading > 0:
        yy, xx = np.meshgrid(np.arange(rows) * dr, np.arange(cols) * dc, indexing="ij")
        phase = rng.uniform(0, 2 * np.pi, size=2)
        field = 1.0 + 0.5 * shading * (
            0.6 * np.sin(2 * np.pi * yy / (1.7 * _HEIGHT_MM) + phase[0])
            + 0.4 * np.cos(2 * np.pi * xx / (1.3 * _WIDTH_MM) + phase[1])
        )
        data = data * field[None]
    if noise > 0:
        data = data + rng.normal(0.0, noise * SAGITTAL_SIGNAL["csf"], size=data.shape)
    data = data.astype(np.float32)
    annotation = _true_annotation(plates, bodies, spacing=(dr, dc), mid=mid)
    truth = _truth(data[mid], annotation, plates, kyphosis_deg)
    truth.update(seed=int(seed), spacing_mm=[float(slice_spacing), dr, dc], noise=float(noise), shading=float(shading))
    return SagittalPhantom(
        data=data, spacing=(float(slice_spacing), dr, dc), mid_index=mid, annotation=annotation, truth=truth
    )


def _inset(corners, mm):
    """Shrink a convex quadrilateral (y, x corners) by ``mm`` along every edge."""
    c = np.asarray(corners, dtype=float)
    n = len(c)
    area = 0.5 * np.sum(c[:, 0] * np.roll(c[:, 1], -1) - c[:, 1] * np.roll(c[:, 0], -1))
    lines = []
    for i in range(n):
        a, b = c[i], c[(i + 1) % n]
        d = (b - a) / np.linalg.norm(b - a)
        normal = np.array([-d[1], d[0]]) * np.sign(area)  # inward normal
        lines.append((a + normal * mm, d))
    out = []
    for i in range(n):
        (p, d), (q, e) = lines[i - 1], lines[i]
        t = np.linalg.solve(np.column_stack([d, -e]), q - p)[0]
        out.append(p + t * d)
    return np.array(out)


def _true_annotation(plates, bodies, *, spacing, mid):
    dr, dc = spacing
    to_px = np.array([1 / dr, 1 / dc])
    # a small shift keeps every ROI vertex and edge off exact pixel centres, so
    # no pixel centre lies on an edge (where membership rules may disagree)
    shift = np.array([0.0123, 0.0171])
    vertebrae = []
    for level in LEVELS[:4]:
        # an ROI in cancellous bone: the body inset by 5 mm (well clear of the cortex)
        roi_mm = _inset(bodies[level], 5.0)
        vertebrae.append({"level": level, "vertices": (roi_mm * to_px + shift).tolist()})
    y3 = 0.5 * (plates["L3"]["sup"][0] + plates["L3"]["inf"][0])
    csf_mm = np.array(
        [
            [y3 - 8.0, _CANAL[0] + 2.5],
            [y3 - 8.0, _CANAL[1] - 2.5],
            [y3 + 8.0, _CANAL[1] - 2.5],
            [y3 + 8.0, _CANAL[0] + 2.5],
        ]
    )
    x0, x1 = _ANTERIOR_MM + 2.0, _POSTERIOR_MM - 2.0

    def line(plate):
        return [[_plate_y(plate, x0) / dr, x0 / dc], [_plate_y(plate, x1) / dr, x1 / dc]]

    return {
        "format": "napari-pvm.spine/1",
        "slice_index": int(mid),
        "vertebrae": vertebrae,
        "csf": {"level": "L3", "vertices": (csf_mm * to_px + shift).tolist()},
        "excluded": [{"level": FRACTURED, "reason": "fracture"}],
        "angles": [{"name": "local_kyphosis", "upper": line(plates["L1"]["sup"]), "lower": line(plates["L3"]["inf"])}],
    }


def _truth(image, annotation, plates, kyphosis_deg):
    image = np.asarray(image, dtype=np.float64)  # medians in double precision, as measured
    rows, cols = np.meshgrid(np.arange(image.shape[0]), np.arange(image.shape[1]), indexing="ij")
    excluded = {e["level"] for e in annotation["excluded"]}
    si = {}
    for item in annotation["vertebrae"]:
        si[item["level"]] = float(np.median(image[_inside_convex(item["vertices"], rows, cols)]))
    included = [lv for lv in ("L1", "L2", "L3", "L4") if lv in si and lv not in excluded]
    csf = float(np.median(image[_inside_convex(annotation["csf"]["vertices"], rows, cols)]))
    set_si = [MARROW_SIGNAL[lv] for lv in included]
    return {
        "vbq": float(np.median([si[lv] for lv in included]) / csf),
        "local_kyphosis_deg": float(kyphosis_deg),
        "vbq_levels": ";".join(included),
        "vbq_si": si,
        "vbq_si_csf": csf,
        "vbq_set": float(np.median(set_si)) / SAGITTAL_SIGNAL["csf"],
        "excluded": {lv: "fracture" for lv in excluded},
        "angle_definition": "L1 superior endplate to L3 inferior endplate, across the L2 fracture",
    }


def write_sagittal_phantom(outdir, *, seed=0, **kwargs):
    """Write ``sagittal.nii.gz``, ``sagittal.pvm.json`` and ``sagittal_truth.json``.

    The NIfTI is stored with (L, P, S) axis codes, so that sagittal slice
    ``k`` of contract 8 is ``data[k, :, ::-1].T``. The same arguments give
    byte-identical files.

    Returns
    -------
    dict
        ``{"image": ..., "annotation": ..., "truth": ...}`` paths.
    """
    from pathlib import Path

    import nibabel as nib

    from .annotation import write_json_atomic
    from .io import file_sha256
    from .phantom import save_nifti_deterministic

    outdir = Path(outdir)
    ph = make_sagittal_phantom(seed=seed, **kwargs)
    outdir.mkdir(parents=True, exist_ok=True)
    ds, dr, dc = ph.spacing
    # display (k → L, row → I, col → P) → stored (i → L, j → P, k → S)
    stored = np.ascontiguousarray(ph.data.transpose(0, 2, 1)[:, :, ::-1])
    affine = np.diag([-ds, -dc, dr, 1.0])
    affine[:3, 3] = [ds * (stored.shape[0] // 2), dc * stored.shape[1] / 3, -dr * stored.shape[2] / 2]
    img = nib.Nifti1Image(stored, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    image_path = outdir / "sagittal.nii.gz"
    save_nifti_deterministic(img, image_path)
    annotation = dict(ph.annotation)
    annotation["image"] = {"sha256": file_sha256(image_path)}
    annotation_path = outdir / "sagittal.pvm.json"
    write_json_atomic(annotation_path, annotation)
    truth_path = outdir / "sagittal_truth.json"
    write_json_atomic(truth_path, ph.truth)
    return {"image": image_path, "annotation": annotation_path, "truth": truth_path}
