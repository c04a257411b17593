"""Example outlines as a prior: bias correction, alignment and label fusion.

Private helpers of :mod:`napari_pvm.core.propose` (contract 7). An observer's
earlier outlined slices (the *examples*) are brought onto the slice being
outlined in three steps, each a standard method of multi-atlas segmentation:

1. **Intensity bias**: a surface coil makes the same tissue brighter near the
   coil. Fat, the brightest tissue, serves as the reference: the bias field
   is the local fat level (a normalised convolution of the fat pixels with a
   wide Gaussian) over the slice's median fat level. Dividing by it makes
   muscle and fat levels the same across the slice.
2. **Affine alignment** in millimetres: a similarity transform from the
   example muscles' centroids to the observer's clicks (Umeyama 1991) starts
   an affine search that maximises the normalised cross-correlation of the
   smoothed images around the example's muscles, with each click kept in the
   inner half of its muscle on the example.
3. **Atlas selection, deformable refinement and fusion**: the SELECT_MAX
   examples that correlate best with the slice after the affine fit
   (Aljabar et al. 2009) are kept; a TV-L1 optical flow (Zach et al.
   2007; ``skimage.registration.optical_flow_tvl1``) between the slice and
   each of them on a coarse grid, then locally weighted voting
   (Artaechevarria et al. 2009): each example's warped outlines count where
   its warped image locally looks like the slice.

Nothing here is learned in advance; everything comes from the examples given.
"""

import numpy as np

#: Bias field: Gaussian width (mm) of the fat-level interpolation, and its grid (mm).
BIAS_SIGMA_MM = 25.0
BIAS_GRID_MM = 4.0
#: Affine search: comparison grid (mm), margin around the example's muscles (mm),
#: cost evaluations, and the weight of "each click in the inner half of its muscle".
REG_GRID_MM = 4.0
REG_MARGIN_MM = 25.0
REG_EVALUATIONS = 120
CLICK_ALIGN = 1.0
#: Deformable step: grid (mm), TV-L1 attachment (smaller is smoother), warps and iterations (speed).
ATLAS_MM = 2.0
FLOW_ATTACHMENT = 15.0
FLOW_WARPS = 3
FLOW_ITERATIONS = 10
#: Locally weighted voting: window (mm) and the squared-difference scale.
LWV_SIGMA_MM = 4.0
LWV_H = 0.05
#: Atlas selection: only the examples most like the slice after the affine fit
#: (normalised cross-correlation) are refined and fused. Examples of other
#: levels or unlike bodies blur the fused outlines; three is the fewest that
#: can still outvote one misfit.
SELECT_MAX = 3
#: An example whose best affine fit correlates less than this with the slice
#: shows another anatomy (another level, a cut field of view): when no example
#: reaches it, the examples place no muscle (clicked muscles are then proposed
#: from their clicks alone). With clicks, on the tuning subject, examples of
#: the other subject at the same level reached 0.77-0.93 (0.72 on the lowest
#: slice of the stack), examples 12 slices (48 mm) or more off the level
#: mostly 0.61-0.79. Without clicks the fit is free and reaches 0.76-0.87
#: even at the wrong level, so the rule rarely acts there.
MIN_FIT_NCC = 0.75


def fat_bias(image, spacing, body, *, iterations=4):
    """Smooth multiplicative intensity bias, referenced to fat.

    Returns an array of the image's shape, about 1 where fat has its median
    level; ``image / fat_bias(...)`` has the same fat level everywhere.
    Each iteration takes the fat pixels of the image corrected so far, so fat
    that a strong bias made darker than the threshold joins in later.

    Examples
    --------
    >>> yy, xx = np.mgrid[:100, :100]                        # 200 mm at 2 mm pixels
    >>> tissue = np.where((xx // 5) % 2 == 0, 1.0, 0.3)      # fat and muscle bands
    >>> biased = tissue * (0.6 + 0.8 * yy / 99)              # a coil's bias
    >>> flat = biased / fat_bias(biased, (2.0, 2.0), np.ones((100, 100), bool))
    >>> bool(np.std(flat[tissue == 1.0]) < 0.5 * np.std(biased[tissue == 1.0]))
    True
    """
    from scipy import ndimage as ndi
    from skimage.transform import resize

    f = [BIAS_GRID_MM / s for s in spacing]
    small = tuple(max(4, int(round(n / ff))) for n, ff in zip(image.shape, f))
    im = resize(ndi.gaussian_filter(image, [1.0 / s for s in spacing]), small, order=1, anti_aliasing=True)
    inside = resize(body.astype(float), small, order=1) > 0.5
    if inside.sum() < 4:
        return np.ones(image.shape)
    field = np.ones(small)
    sigma = BIAS_SIGMA_MM / BIAS_GRID_MM
    for _ in range(iterations):
        corrected = im / field
        vals = corrected[inside]
        fat, low = np.percentile(vals, 97), np.percentile(vals, 20)
        fatty = inside & (corrected > low + 0.6 * (fat - low))
        if fatty.sum() < 4:
            break
        num = ndi.gaussian_filter(np.where(fatty, im, 0.0), sigma)
        den = ndi.gaussian_filter(fatty.astype(float), sigma)
        ref = float(np.median(im[fatty]))
        if ref <= 0:
            break
        field = np.clip(np.where(den > 1e-3, num / np.maximum(den, 1e-6) / ref, 1.0), 0.3, 3.0)
    return resize(field, image.shape, order=1)


def _moments(mask, spacing):
    rr, cc = np.nonzero(mask)
    pts = np.column_stack([rr * spacing[0], cc * spacing[1]])
    return pts.mean(axis=0), pts.std(axis=0) + 1e-6


def similarity_from_points(src, dst):
    """Least-squares similarity ``dst ≈ A @ src + t`` in 2D (Umeyama 1991).

    The scale is kept within 0.7–1.4 (bodies differ, not tenfold).

    Examples
    --------
    >>> src = np.array([[0.0, 0.0], [0.0, 10.0], [10.0, 0.0]])
    >>> A, t = similarity_from_points(src, 1.2 * src + [5.0, -3.0])
    >>> np.allclose(A, 1.2 * np.eye(2)) and np.allclose(t, [5.0, -3.0])
    True
    """
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    if len(src) == 1:
        return np.eye(2), dst[0] - src[0]
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - ms, dst - md
    u, s, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = float(np.clip(np.trace(np.diag(s) @ d) / ((a**2).sum() / len(src)), 0.7, 1.4))
    A = scale * rot
    return A, md - A @ ms


def align_example(t_smooth, t_spacing, t_body, ex_smooth, ex_spacing, ex_masks, ex_body, points):
    """Affine map from the slice to an example.

    Returns ``mapping(rows, cols) -> (example_rows, example_cols)`` in
    pixels, for resampling the example on the slice's grid.
    """
    from scipy import ndimage as ndi
    from scipy.optimize import minimize

    keys = [k for k in points if k in ex_masks]
    centres = {k: _moments(ex_masks[k], ex_spacing)[0] for k in keys}
    if len(keys) >= 2:
        A0, t0 = similarity_from_points(
            [centres[k] for k in keys], [np.asarray(points[k]) * np.asarray(t_spacing) for k in keys]
        )
    else:  # the bodies' centres and spreads; one click fixes the translation
        ct, st = _moments(t_body, t_spacing)
        ce, se = _moments(ex_body, ex_spacing)
        A0 = np.diag(np.clip(np.sqrt(st / se), 0.8, 1.25))
        t0 = ct - A0 @ ce
        if keys:
            t0 = np.asarray(points[keys[0]]) * np.asarray(t_spacing) - A0 @ centres[keys[0]]
    union = np.zeros(ex_smooth.shape, bool)
    for m in ex_masks.values():
        union |= m
    rr, cc = np.nonzero(union)
    r0, r1 = rr.min() * ex_spacing[0] - REG_MARGIN_MM, rr.max() * ex_spacing[0] + REG_MARGIN_MM
    c0, c1 = cc.min() * ex_spacing[1] - REG_MARGIN_MM, cc.max() * ex_spacing[1] + REG_MARGIN_MM
    gy, gx = np.mgrid[r0:r1:REG_GRID_MM, c0:c1:REG_GRID_MM]
    grid = np.stack([gy.ravel(), gx.ravel()])
    e_vals = ndi.map_coordinates(ex_smooth, [grid[0] / ex_spacing[0], grid[1] / ex_spacing[1]], order=1, mode="nearest")
    e_vals = (e_vals - e_vals.mean()) / (e_vals.std() + 1e-9)
    # each click should lie in the inner half of its example muscle (a disk of half its radius)
    clicked = np.array([np.asarray(points[k]) * np.asarray(t_spacing) for k in keys]).reshape(-1, 2)
    centre_of = np.array([centres[k] for k in keys]).reshape(-1, 2)
    half_radius = np.array([0.5 * np.sqrt(ex_masks[k].sum() * ex_spacing[0] * ex_spacing[1] / np.pi) for k in keys])
    pivot = np.array([(r0 + r1) / 2, (c0 + c1) / 2])

    def affine(params):
        # log scales, rotation (degrees), shear and translation (mm) after the start
        ly, lx, rot, shear, ty, tx = params
        a = np.deg2rad(rot)
        A = (
            A0
            @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            @ np.array([[np.exp(ly), shear], [0.0, np.exp(lx)]])
        )
        return A, A0 @ pivot + t0 - A @ pivot + np.array([ty, tx])

    def similarity(A, t):
        q = A @ grid + t[:, None]
        t_vals = ndi.map_coordinates(t_smooth, [q[0] / t_spacing[0], q[1] / t_spacing[1]], order=1, mode="nearest")
        t_vals = (t_vals - t_vals.mean()) / (t_vals.std() + 1e-9)
        return float(np.mean(t_vals * e_vals))

    def cost(params):
        A, t = affine(params)
        penalty = 0.0
        if len(keys):
            back = np.linalg.solve(A, (clicked - t).T).T
            d = np.maximum(np.hypot(*(back - centre_of).T) - half_radius, 0.0)
            penalty = CLICK_ALIGN * float(np.mean((d / 5.0) ** 2))
        ly, lx, rot, shear, _, _ = params
        return -similarity(A, t) + penalty + 0.5 * (ly**2 + lx**2 + shear**2) + 1e-4 * rot**2

    best = minimize(cost, np.zeros(6), method="Powell", options={"xtol": 0.01, "ftol": 1e-4, "maxfev": REG_EVALUATIONS})
    A, t = affine(best.x)
    A_inv = np.linalg.inv(A)
    area_scale = abs(float(np.linalg.det(A)))  # example mm² -> slice mm²

    def mapping(rows, cols):
        y, x = rows * t_spacing[0] - t[0], cols * t_spacing[1] - t[1]
        return (A_inv[0, 0] * y + A_inv[0, 1] * x) / ex_spacing[0], (A_inv[1, 0] * y + A_inv[1, 1] * x) / ex_spacing[1]

    mapping.area_scale = area_scale
    mapping.similarity = similarity(A, t)  # normalised cross-correlation after the fit
    # how far the example's body shape had to be changed to fit: the log ratio
    # of the affine map's largest to smallest stretch (0 for a similarity)
    stretch = np.linalg.svd(A, compute_uv=False)
    mapping.anisotropy = float(np.log(stretch.max() / stretch.min()))
    return mapping


def atlas_prior(image, spacing, body, examples, wanted, points):
    """Fused probability map ``{roi_key: (M, N) array}`` of the examples' outlines,
    each muscle's areas on the examples ``{roi_key: [mm², ...]}`` scaled
    by the affine alignment onto the slice (so a larger body's example
    counts at this body's size), and each example's anisotropy (the log
    ratio of its affine map's largest to smallest stretch: near 0 when the
    example's body has this body's proportions). All empty when no example
    correlates with the slice by MIN_FIT_NCC after its fit.

    ``examples`` are ``(image, spacing, {key: mask}, body mask)`` with
    bias-corrected images; ``points`` the clicks ``{key: (row, col)}``.
    """
    from scipy import ndimage as ndi
    from skimage.registration import optical_flow_tvl1
    from skimage.transform import resize

    smooth = ndi.gaussian_filter(image, [1.0 / s for s in spacing])
    aligned = []
    # where the examples' muscles land, on a grid of every 4th pixel (speed)
    coarse = np.mgrid[0 : image.shape[0] : 4, 0 : image.shape[1] : 4].astype(float)
    landed = np.zeros(coarse.shape[1:], bool)
    areas, anisotropy = {}, []
    fitted = []
    for ex_image, ex_spacing, ex_masks, ex_body in examples:
        ex_smooth = ndi.gaussian_filter(ex_image, [1.0 / s for s in ex_spacing])
        mapping = align_example(smooth, spacing, body, ex_smooth, ex_spacing, ex_masks, ex_body, points)
        fitted.append((ex_image, ex_spacing, ex_masks, ex_body, ex_smooth, mapping))
    # atlas selection: the examples that look most like this slice after the fit
    fitted = sorted(fitted, key=lambda f: -f[5].similarity)[:SELECT_MAX]
    if fitted and fitted[0][5].similarity < MIN_FIT_NCC:
        return {}, {}, []  # no example looks like this slice: they cannot place its muscles
    for ex_image, ex_spacing, ex_masks, ex_body, ex_smooth, mapping in fitted:
        anisotropy.append(mapping.anisotropy)
        for k, m in ex_masks.items():
            if k in wanted:
                areas.setdefault(k, []).append(float(m.sum()) * ex_spacing[0] * ex_spacing[1] * mapping.area_scale)
        ex_union = np.zeros(ex_image.shape, np.float32)
        for m in ex_masks.values():
            ex_union[m] = 1.0
        landed |= ndi.map_coordinates(ex_union, mapping(*coarse), order=1, mode="constant") > 0.5
        aligned.append((ex_smooth, ex_body, ex_masks, mapping))
    if not landed.any():
        return {}, areas, anisotropy
    rr, cc = np.nonzero(landed)
    rr, cc = rr * 4, cc * 4
    pad = [int(np.ceil(20.0 / s)) for s in spacing]
    r0, r1 = max(rr.min() - pad[0], 0), min(rr.max() + pad[0] + 1, image.shape[0])
    c0, c1 = max(cc.min() - pad[1], 0), min(cc.max() + pad[1] + 1, image.shape[1])
    step = [ATLAS_MM / s for s in spacing]
    gr, gc = np.meshgrid(np.arange(r0, r1, step[0]), np.arange(c0, c1, step[1]), indexing="ij")
    core = ndi.map_coordinates(landed.astype(float), [gr / 4.0, gc / 4.0], order=1) > 0.5
    if not core.any():  # muscles landed on isolated pixels only: use the whole window
        core = np.ones(gr.shape, bool)

    def normalised(values, smooth_image, inside):
        # muscle 0 (median where the muscles are), fat 1 (bright body pixels), clipped
        fat = float(np.percentile(smooth_image[inside], 97))
        muscle = float(np.median(values[core]))
        return np.clip((values - muscle) / max(fat - muscle, 1e-9), -1.0, 2.0).astype(np.float32)

    target = normalised(ndi.map_coordinates(smooth, [gr, gc], order=1, mode="nearest"), smooth, body)
    ident = np.stack(np.meshgrid(np.arange(gr.shape[0]), np.arange(gr.shape[1]), indexing="ij")).astype(np.float32)
    fused, weight_sum = {}, np.zeros(gr.shape)
    for ex_smooth, ex_body, ex_masks, mapping in aligned:
        ey, ex = mapping(gr, gc)
        moving = normalised(ndi.map_coordinates(ex_smooth, [ey, ex], order=1, mode="nearest"), ex_smooth, ex_body)
        labels = {
            k: ndi.map_coordinates(m.astype(np.float32), [ey, ex], order=1, mode="constant")
            for k, m in ex_masks.items()
            if k in wanted
        }
        flow = optical_flow_tvl1(
            target, moving, attachment=FLOW_ATTACHMENT, num_warp=FLOW_WARPS, num_iter=FLOW_ITERATIONS
        )
        coords = ident + flow
        moving = ndi.map_coordinates(moving, coords, order=1, mode="nearest")
        labels = {k: ndi.map_coordinates(m, coords, order=1, mode="nearest") for k, m in labels.items()}
        local = ndi.gaussian_filter((target - moving) ** 2, LWV_SIGMA_MM / ATLAS_MM)
        w = np.maximum(np.exp(-local / LWV_H), 1e-6)
        weight_sum += w
        for k, m in labels.items():
            fused[k] = fused.get(k, 0.0) + w * m
    out = {}
    for k, v in fused.items():
        full = np.zeros(image.shape)
        full[r0:r1, c0:c1] = resize(v / weight_sum, (r1 - r0, c1 - c0), order=1, anti_aliasing=False)
        out[k] = full
    return out, areas, anisotropy
