"""napari sample data: the synthetic lumbar phantom with its true outlines, and the sagittal spine phantom."""

import numpy as np


def make_phantom_sample():
    """Phantom stack (L4 in the middle) with scale, and the true outlines."""
    from .core.phantom import make_phantom
    from ._widgets._style import roi_shapes_kwargs

    ph = make_phantom(seed=0)
    metadata = {
        "source": "napari-pvm synthetic phantom (seed 0)",
        "spacing_mm": list(ph.spacing),
        "l4_index": ph.l4_index,
        "truth": {k: v for k, v in ph.truth.items() if not isinstance(v, dict)},
    }
    image = (
        ph.data,
        {
            "name": "phantom",
            "scale": ph.spacing,
            "units": ("mm", "mm", "mm"),
            "colormap": "gray",
            "metadata": {"napari_pvm": metadata},
        },
        "image",
    )
    keys = list(ph.rois)
    polygons = [np.column_stack([np.full(len(v), ph.l4_index, float), v]) for v in ph.rois.values()]
    shapes_kwargs = roi_shapes_kwargs(keys, scale=ph.spacing, name="phantom true outlines")
    shapes_kwargs["units"] = ("mm", "mm", "mm")
    shapes = (polygons, shapes_kwargs, "shapes")
    return [image, shapes]


def make_sagittal_sample():
    """Sagittal spine phantom (contract 8 display) with scale in mm; its true
    annotation and truth travel in the layer metadata."""
    from .core.phantom_sagittal import make_sagittal_phantom

    ph = make_sagittal_phantom(seed=0)
    metadata = {
        "source": "napari-pvm synthetic sagittal phantom (seed 0)",
        "spacing_mm": list(ph.spacing),
        "plane": "sagittal",
        "mid_index": ph.mid_index,
        "truth": {k: v for k, v in ph.truth.items() if not isinstance(v, dict)},
        "annotation": ph.annotation,
    }
    image = (
        ph.data,
        {
            "name": "sagittal phantom",
            "scale": ph.spacing,
            "units": ("mm", "mm", "mm"),
            "colormap": "gray",
            "metadata": {"napari_pvm": metadata},
        },
        "image",
    )
    return [image]
