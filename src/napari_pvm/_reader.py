"""npe2 reader: NIfTI files, DICOM files or folders and radiographs → Image layers in mm.

Axial images are shown as contract 1 says (row 0 anterior, column 0 the
patient's right), sagittal ones and lateral radiographs as contract 8 says
(row 0 superior, column 0 anterior, slices right → left). Layers carry
their spacing as ``scale`` and "mm" as units, so scale bars and axes read mm.
"""

from .core.io import find_dicom_series, is_readable_path, read_volume


def get_reader(path):
    """Return a reader for ``path`` if it looks like an image we read, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return read_layers if is_readable_path(path) else None


def read_layers(path):
    """Read ``path`` into one Image layer per series (or slab) with its scale.

    Raises :class:`~napari_pvm.core.errors.ImageReadError` with a clear
    message on bad input; napari shows it as a notification.
    """
    import os

    if isinstance(path, list):
        path = path[0]
    if os.path.isdir(path):
        keys = list(find_dicom_series(path))
        volumes = [read_volume(path, series=k) for k in keys] if len(keys) > 1 else [read_volume(path)]
    else:
        volumes = [read_volume(path)]
    return [volume_layer_tuple(v) for v in volumes]


#: Contrast limits are percentiles of at most this many voxels (an even stride
#: through the volume): napari calls the reader on its GUI thread, and exact
#: percentiles of a large series cost a few hundred milliseconds there.
CONTRAST_SAMPLE = 262_144  # 512 × 512


def volume_layer_tuple(volume):
    """(data, kwargs, 'image') of a Volume, carrying its spacing as scale.

    The display range runs from the minimum to the 99.5th percentile of the
    brighter half of the voxels (the body, not the air around it).
    """
    import numpy as np

    flat = volume.data.reshape(-1)
    sample = flat[:: max(1, flat.size // CONTRAST_SAMPLE)]
    body = sample[sample > np.percentile(sample, 50)]
    hi = float(np.percentile(body, 99.5)) if body.size else float(sample.max())
    lo = float(flat.min())
    return (
        volume.data,
        {
            "name": volume.name,
            "scale": volume.spacing,
            "units": ("mm",) * volume.data.ndim,
            "colormap": "gray",
            "contrast_limits": (lo, hi if hi > lo else lo + 1.0),
            "metadata": {"napari_pvm": volume.layer_metadata()},
        },
        "image",
    )
