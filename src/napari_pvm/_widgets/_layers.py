"""The one place that converts between napari layers and core types.

Vertices go through world coordinates, so a Shapes or Labels layer with
another scale or translate than the image still lands on the right pixels.
Layers made here copy the image's scale and translate.
"""

import numpy as np

from ..core import schema
from ..core.errors import AnnotationError
from ._style import FAT_OVERLAY_COLOR, ROI_COLORS, SAMPLE_COLORS, _categorical, roi_shapes_kwargs

ORIGINS = ("drawn", "proposed", "edited")

ROI_LAYER = "muscle outlines"
SAMPLE_LAYER = "fat/muscle samples"
PAINT_LAYER = "painted samples"
FAT_LAYER = "fat map"


def image_spacing(image):
    """(row, col) pixel spacing in mm from the image layer's scale."""
    return tuple(float(s) for s in image.scale[-2:])


def volume_from_layer(image):
    """A core Volume of an image layer: its data, spacing from ``scale``, and
    the file's sha256 when our reader opened it (else a digest of the array)."""
    import hashlib

    from ..core.io import Volume

    data = np.asarray(image.data, dtype=np.float32)
    scale = tuple(float(s) for s in image.scale)
    if data.ndim == 2:
        data, scale = data[None], (1.0, *scale)
    meta = image.metadata.get("napari_pvm")
    sha = meta.get("sha256") if isinstance(meta, dict) else None
    if not sha:
        sha = hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()
    return Volume(
        data=data,
        spacing=scale,
        affine=np.diag([*scale, 1.0]),
        source_axcodes=("S", "P", "L"),
        obliquity_deg=0.0,
        sha256=sha,
        name=image.name,
        path=str(image.source.path or image.name),
    )


def current_slice_index(image, viewer):
    """Index of the image's slice shown by the viewer (0 for a 2D image)."""
    if image.ndim == 2:
        return 0
    world = list(viewer.dims.point)[-image.ndim :]
    index = int(round(float(image.world_to_data(world)[0])))
    return int(np.clip(index, 0, image.data.shape[0] - 1))


def image_slice(image, index):
    """The 2D float32 array of slice ``index``."""
    data = image.data if image.ndim == 2 else image.data[int(index)]
    return np.asarray(data, dtype=np.float32)


def _to_image_data(layer, image, vertices):
    """``layer``'s data coordinates (N, D) as ``image``'s, through world coordinates."""
    pts = np.asarray(vertices, dtype=float)
    if pts.size == 0:
        return np.empty((0, image.ndim))
    pts = np.atleast_2d(pts)
    if pts.shape[1] == layer.ndim == image.ndim:
        try:
            # the transforms napari's data_to_world / world_to_data use, applied to all
            # vertices at once (point by point costs tens of ms on the GUI thread per case)
            world = layer._transforms[1:].simplified(pts)
            return np.asarray(image._transforms[1:].simplified.inverse(world), dtype=float)
        except AttributeError:  # napari without these internals: the public path below
            pass
    world = np.array([layer.data_to_world(p) for p in pts])
    return np.array([image.world_to_data(w) for w in world])


def _polygons(layer, image, *, feature, slice_index, allowed):
    """[(name, (N, 2) [row, col] in image pixels)] of a Shapes layer, in order.

    Raises
    ------
    AnnotationError
        A shape that is not a polygon, has no valid name, or lies off the
        slice ``slice_index``.
    """
    out = []
    names = list(layer.features[feature]) if feature in layer.features else [None] * len(layer.data)
    for i, (verts, kind, name) in enumerate(zip(layer.data, layer.shape_type, names)):
        label = name if isinstance(name, str) and name else f"shape {i + 1}"
        if kind not in ("polygon", "rectangle", "ellipse"):
            raise AnnotationError(f"{label}: draw outlines as polygons (this one is a {kind})")
        if name not in allowed:
            raise AnnotationError(f"{label}: unknown name {name!r}; use one of {', '.join(allowed)}")
        data = _to_image_data(layer, image, verts)
        if image.ndim == 3:
            ks = data[:, 0]
            if np.any(np.abs(ks - slice_index) > 0.5):
                raise AnnotationError(
                    f"{label} is drawn on slice {int(round(ks.mean()))}, not on the L4 slice "
                    f"{slice_index}; draw it on slice {slice_index}"
                )
        out.append((name, data[:, -2:]))
    return out


def rois_from_layer(layer, image, slice_index):
    """{"PS_L": (N, 2) [row, col], ...} from the outlines layer."""
    rois = {}
    for name, rc in _polygons(layer, image, feature="roi", slice_index=slice_index, allowed=schema.ROI_KEYS):
        if name in rois:
            raise AnnotationError(f"{name} is outlined twice; delete one of the outlines")
        rois[name] = rc
    return rois


def samples_from_layer(layer, image, slice_index):
    """[{"class": "fat" | "muscle", "vertices": ...}] in drawing order."""
    polys = _polygons(layer, image, feature="class", slice_index=slice_index, allowed=schema.SAMPLE_CLASSES)
    return [{"class": name, "vertices": rc} for name, rc in polys]


def painted_labels(layer, image, slice_index):
    """Painted samples (0/1 muscle/2 fat) on the image's slice grid, or None."""
    if layer is None:
        return None
    data = np.asarray(layer.data)
    if data.ndim == 3:
        data = data[int(slice_index)]
    if data.shape != image.data.shape[-2:]:
        raise AnnotationError(
            f"painted samples have shape {data.shape}, the image slice {image.data.shape[-2:]}; "
            "paint in the layer napari-pvm created"
        )
    bad = ~np.isin(data, (0, 1, 2))
    if bad.any():
        raise AnnotationError("painted samples may only use label 1 (muscle) or 2 (fat)")
    return data.astype(np.uint8) if data.any() else None


def _lift(vertices, image, slice_index):
    v = np.asarray(vertices, dtype=float)
    if image.ndim == 3:
        v = np.column_stack([np.full(len(v), float(slice_index)), v])
    return v


#: Old kind names (metadata strings of earlier versions) and the contract 6 roles.
_ROLES = {
    "rois": "outlines",
    "outlines": "outlines",
    "samples": "samples",
    "paint": "paint",
    "overlay": "overlay",
    "map": "map",
    "clicks": "clicks",
    "stroke": "stroke",
    "marker": "marker",
}


def layer_role(layer):
    """Contract 6 role of a layer napari-pvm made (``metadata["napari_pvm"]["role"]``), or None."""
    meta = layer.metadata.get("napari_pvm")
    if isinstance(meta, dict):
        return meta.get("role")
    return _ROLES.get(meta) if isinstance(meta, str) else None


def image_meta(image):
    """The reader's metadata of an image layer (a dict, maybe empty)."""
    meta = image.metadata.get("napari_pvm")
    return meta if isinstance(meta, dict) else {}


def same(a, b):
    """Whether two layer references are the same layer (napari may hand plugins proxies)."""
    if a is None or b is None:
        return False
    return getattr(a, "__wrapped__", a) is getattr(b, "__wrapped__", b)


def _image_key(image):
    return str(getattr(image, "unique_id", "")) or image.name


def belongs_to(layer, image):
    """Whether ``layer`` was made by napari-pvm for ``image`` (by identity, so
    renaming the image keeps its layers)."""
    meta = layer.metadata.get("napari_pvm")
    if isinstance(meta, dict) and meta.get("image_id"):
        return meta["image_id"] == _image_key(image)
    return layer.metadata.get("image") == image.name


def _metadata(role, image):
    return {"napari_pvm": {"role": role, "image_id": _image_key(image)}, "image": image.name}


def owned_layer(viewer, kind, image):
    """The layer of ``kind`` (a role: "outlines", "samples", "paint", …; the
    old name "rois" works too) that napari-pvm made for ``image``."""
    role = _ROLES.get(kind, kind)
    for layer in viewer.layers:
        if layer_role(layer) == role and belongs_to(layer, image):
            return layer
    return None


def owned_layers(viewer, image):
    """All layers napari-pvm made for ``image``."""
    return [layer for layer in viewer.layers if layer_role(layer) is not None and belongs_to(layer, image)]


def image_layers(viewer):
    """Image layers a measurement can use (not our own maps), in layer order."""
    return [
        layer
        for layer in viewer.layers
        if layer._type_string == "image" and layer_role(layer) is None and layer.ndim in (2, 3)
    ]


def image_names(viewer):
    """Names of the image layers a measurement can use (not our own maps)."""
    return [layer.name for layer in image_layers(viewer)]


def set_mm_units(layer):
    """Give a layer millimetre units (napari ≥ 0.6; older versions have none)."""
    try:
        if tuple(str(u) for u in layer.units) != ("millimeter",) * layer.ndim:
            layer.units = ("mm",) * layer.ndim
    except Exception:  # older napari: no layer units
        pass


def show_in_mm(viewer, image):
    """Scale bar and axes in millimetres for ``image`` (layers carry the mm
    scale; napari ≥ 0.6 also needs their units, the same on every layer)."""
    pixel = np.asarray(image.scale[-2:], dtype=float)
    for layer in viewer.layers:
        if same(layer, image) or (layer.ndim >= 2 and np.allclose(np.asarray(layer.scale[-2:], float), pixel)):
            set_mm_units(layer)
    canvas = getattr(viewer, "canvas", None)  # napari >= 0.9 keeps overlays on the canvas
    scale_bar = canvas.overlays.scale_bar if hasattr(canvas, "overlays") else viewer.scale_bar
    scale_bar.visible = True
    if not hasattr(image, "units"):  # older napari: the unit is the scale bar's
        try:
            scale_bar.unit = "mm"
        except Exception:
            pass
    labels = ("slice (I→S)", "row (A→P) mm", "column (R→L) mm")[-image.ndim :]
    try:
        if len(viewer.dims.axis_labels) == image.ndim:
            viewer.dims.axis_labels = labels
    except Exception:
        pass


class _keep_active:
    """Context manager: adding a layer must not take the active layer (and
    its drawing mode) away from the observer."""

    def __init__(self, viewer):
        self.viewer = viewer

    def __enter__(self):
        self.active = self.viewer.layers.selection.active
        self.mode = getattr(self.active, "mode", None)
        return self

    def __exit__(self, *exc):
        active = self.active
        if active is not None and any(same(active, layer) for layer in self.viewer.layers):
            self.viewer.layers.selection.active = active
            if self.mode is not None and getattr(active, "mode", None) != self.mode:
                active.mode = self.mode
        return False


def _units(image):
    return {"units": ("mm",) * image.ndim} if _supports_units() else {}


def _supports_units():
    from napari.layers import Shapes

    import inspect

    return "units" in inspect.signature(Shapes.__init__).parameters


def outline_layer(viewer, image, *, create=True):
    """The outlines Shapes layer for ``image`` (created with its scale)."""
    layer = owned_layer(viewer, "rois", image)
    if layer is not None or not create:
        return layer
    kwargs = roi_shapes_kwargs([], scale=image.scale, name=f"{image.name} {ROI_LAYER}")
    kwargs["translate"] = tuple(image.translate)
    kwargs["ndim"] = image.ndim
    kwargs["metadata"] = _metadata("outlines", image)
    kwargs["features"] = {"roi": _categorical([], schema.ROI_KEYS), "origin": _categorical([], ORIGINS)}
    kwargs.update(_units(image))
    layer = viewer.add_shapes(None, **kwargs)
    layer.feature_defaults = {"roi": schema.ROI_KEYS[0], "origin": "drawn"}
    return layer


def sample_layer(viewer, image, *, create=True):
    """The sample polygons Shapes layer (feature 'class': fat or muscle)."""
    layer = owned_layer(viewer, "samples", image)
    if layer is not None or not create:
        return layer
    layer = viewer.add_shapes(
        None,
        ndim=image.ndim,
        name=f"{image.name} {SAMPLE_LAYER}",
        scale=image.scale,
        translate=image.translate,
        features={"class": _categorical([], schema.SAMPLE_CLASSES)},
        face_color="transparent",
        edge_width=1.5,
        metadata=_metadata("samples", image),
        **_units(image),
    )
    layer.feature_defaults = {"class": "fat"}
    return layer


def paint_layer(viewer, image, *, create=True):
    """A Labels layer to paint samples in (1 muscle, 2 fat), with the image's scale."""
    layer = owned_layer(viewer, "paint", image)
    if layer is not None or not create:
        return layer
    layer = viewer.add_labels(
        np.zeros(image.data.shape, dtype=np.uint8),
        name=f"{image.name} {PAINT_LAYER}",
        scale=image.scale,
        translate=image.translate,
        metadata=_metadata("paint", image),
        opacity=0.6,
        **_units(image),
    )
    _set_label_colors(layer, {1: SAMPLE_COLORS["muscle"], 2: SAMPLE_COLORS["fat"]})
    layer.selected_label = 2
    return layer


def set_rois(layer, image, slice_index, rois):
    """Replace the outlines in ``layer`` by ``rois`` ({key: [row, col] vertices})."""
    keys = [k for k in schema.ROI_KEYS if k in rois]
    layer.selected_data = set(range(len(layer.data)))
    layer.remove_selected()
    if keys:
        layer.add_polygons([_lift(rois[k], image, slice_index) for k in keys])
        layer.features = {"roi": _categorical(keys, schema.ROI_KEYS)}
        layer.edge_color = [ROI_COLORS[k] for k in keys]
    layer.refresh_text()


def set_samples(layer, image, slice_index, samples):
    layer.selected_data = set(range(len(layer.data)))
    layer.remove_selected()
    if samples:
        layer.add_polygons([_lift(s["vertices"], image, slice_index) for s in samples])
        layer.features = {"class": _categorical([s["class"] for s in samples], schema.SAMPLE_CLASSES)}
        layer.edge_color = [SAMPLE_COLORS[s["class"]] for s in samples]


def show_mask(viewer, image, slice_index, mask, *, name, color=FAT_OVERLAY_COLOR, opacity=0.55, keep_active=False):
    """Show a 2D boolean mask on ``slice_index`` as a Labels layer (upsert);
    ``keep_active``: a new layer does not become the active one."""
    shape = image.data.shape
    full = np.zeros(shape, dtype=np.uint8)
    if image.ndim == 3:
        full[int(slice_index)] = mask
    else:
        full[:] = mask
    for layer in viewer.layers:
        if layer.name == name and layer_role(layer) == "overlay":
            layer.data = full
            return layer
    with _keep_active(viewer) if keep_active else _nothing():
        layer = viewer.add_labels(
            full,
            name=name,
            scale=image.scale,
            translate=image.translate,
            opacity=opacity,
            metadata=_metadata("overlay", image),
            **_units(image),
        )
        _set_label_colors(layer, {1: color})
    return layer


def show_map(viewer, image, slice_index, values, *, name, colormap):
    """Show a float map (NaN outside the outlines) on one slice (upsert)."""
    full = np.full(image.data.shape, np.nan, dtype=np.float32)
    if image.ndim == 3:
        full[int(slice_index)] = values
    else:
        full[:] = values
    for layer in viewer.layers:
        if layer.name == name and layer_role(layer) == "map":
            layer.data = full
            return layer
    return viewer.add_image(
        full,
        name=name,
        scale=image.scale,
        translate=image.translate,
        colormap=colormap,
        contrast_limits=(0.0, 1.0),
        blending="translucent",
        opacity=0.7,
        metadata=_metadata("map", image),
        **_units(image),
    )


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def clicks_layer(viewer, image):
    """Points layer the observer clicks into for outline proposals (one point
    per muscle, in the draw-list order)."""
    layer = owned_layer(viewer, "clicks", image)
    if layer is not None:
        return layer
    return viewer.add_points(
        np.empty((0, image.ndim)),
        ndim=image.ndim,
        name=f"{image.name} proposal clicks",
        scale=image.scale,
        translate=image.translate,
        size=4 * float(min(image.scale[-2:])),
        face_color="#ffffff",
        border_color="#000000",
        metadata=_metadata("clicks", image),
        **_units(image),
    )


def stroke_layer(viewer, image):
    """Shapes layer the observer drags reshape strokes on (each stroke is
    applied to an outline and removed at once)."""
    layer = owned_layer(viewer, "stroke", image)
    if layer is not None:
        return layer
    return viewer.add_shapes(
        None,
        ndim=image.ndim,
        name=f"{image.name} reshape stroke",
        scale=image.scale,
        translate=image.translate,
        edge_color="#ffff00",
        face_color="transparent",
        edge_width=1.0,
        metadata=_metadata("stroke", image),
        **_units(image),
    )


def clicks_from_layer(layer, image, slice_index, keys=schema.ROI_KEYS):
    """{roi key: (row, col)}: the n-th point for the n-th of ``keys``."""
    if layer is None or not len(layer.data):
        return {}
    points = _to_image_data(layer, image, np.asarray(layer.data))[:, -2:]
    return {key: (float(r), float(c)) for key, (r, c) in zip(keys, points)}


def show_marker(viewer, image, slice_index, location, text, *, keep_active=True):
    """Mark a problem at image pixel ``location`` (row, col) with a red ring
    and a short text; ``location=None`` clears the marker."""
    layer = owned_layer(viewer, "marker", image)
    if location is None:
        if layer is not None and len(layer.data):
            layer.data = np.empty((0, layer.ndim))
        return layer
    point = _lift([location], image, slice_index if slice_index is not None else 0)
    if layer is None:
        with _keep_active(viewer) if keep_active else _nothing():
            layer = viewer.add_points(
                point,
                ndim=image.ndim,
                name=f"{image.name} problems",
                scale=image.scale,
                translate=image.translate,
                size=10 * float(min(image.scale[-2:])),
                face_color="transparent",
                border_color="#ff1744",
                border_width=0.15,
                features={"text": [text]},
                text={"string": "{text}", "color": "#ff1744", "size": 12, "anchor": "upper_left"},
                metadata=_metadata("marker", image),
                **_units(image),
            )
        return layer
    layer.data = point
    layer.features = {"text": [text]}
    layer.refresh_text() if hasattr(layer, "refresh_text") else None
    return layer


def _label_colormap(colors):
    """Labels colormap: 0 transparent, label k the k-th of ``colors`` ({1: …, 2: …}).

    A cyclic colormap, napari's default kind, rather than a direct one: napari
    maps a direct colormap's colours through numba code (a typed dict) that is
    compiled on the GUI thread, not cached on disk; about a second the first
    time a fat map or painted samples are shown in a process. The labels used
    here are 1 … n without gaps, so both kinds show the same colours.
    """
    from napari.utils.colormaps import CyclicLabelColormap
    from napari.utils.colormaps.standardize_color import transform_color

    labels = sorted(colors)
    if labels != list(range(1, len(labels) + 1)):
        raise ValueError(f"labels must be 1 … n, got {labels}")
    rgba = np.concatenate([[[0.0, 0.0, 0.0, 0.0]], transform_color([colors[k] for k in labels])])
    return CyclicLabelColormap(colors=rgba, background_value=0)


def _set_label_colors(layer, colors):
    layer.colormap = _label_colormap(colors)


def warm_up_label_colors():
    """Build the colour texture of a uint8 Labels layer with fixed colours
    once, off the GUI thread (napari loads the numba code behind it from its
    disk cache on first use). Safe to call from any thread (no Qt)."""
    colormap = _label_colormap({1: SAMPLE_COLORS["muscle"], 2: SAMPLE_COLORS["fat"]})
    # the same call napari's Labels visual makes for uint8 data
    colormap.map(np.zeros(1, dtype=np.uint8))


def notify(message, level="info"):
    """Show a napari notification (info, warning or error)."""
    from napari.utils import notifications

    show = {"info": notifications.show_info, "warning": notifications.show_warning, "error": notifications.show_error}[
        level
    ]
    show(message)
