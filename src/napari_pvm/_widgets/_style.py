"""Colours and names of the six outlines (no napari import).

Psoas green and erector spinae / multifidus red as in the seed paper's
Figure 3; the patient's left is the brighter shade, the right the darker one.
"""

from ..core import schema

ROI_COLORS = {
    "PS_L": "#39ff14",
    "PS_R": "#0f9d0f",
    "ES_L": "#ff3b3b",
    "ES_R": "#b00000",
    "MF_L": "#ff8a65",
    "MF_R": "#c2410c",
}
SAMPLE_COLORS = {"muscle": "#00bcd4", "fat": "#ffd600"}
FAT_OVERLAY_COLOR = "#ffeb3b"  # yellow fat map, as in Figure 3


def roi_label(key):
    """'PS_L' → 'PS L' (shown next to the outline)."""
    muscle, side = key.split("_")
    return f"{muscle} {side}"


def roi_shapes_kwargs(keys, *, scale, name="muscle outlines"):
    """Keyword arguments of a napari Shapes layer holding outlines ``keys``."""
    keys = list(keys)
    return {
        "name": name,
        "shape_type": ["polygon"] * len(keys),
        "features": {"roi": _categorical(keys, schema.ROI_KEYS)},
        "edge_color": [ROI_COLORS[k] for k in keys] if keys else ROI_COLORS[schema.ROI_KEYS[0]],
        "face_color": "transparent",
        "edge_width": 1.5,
        "scale": tuple(scale),
        "text": {"string": "{roi}", "color": "white", "size": 10, "anchor": "center"},
        "metadata": {"napari_pvm": "rois", "roi_keys": list(schema.ROI_KEYS)},
    }


def _categorical(values, categories):
    import pandas as pd

    return pd.Categorical(list(values), categories=list(categories))
