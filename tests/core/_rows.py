"""A valid measurement row for tests (contract 3), shared by test modules.

``make_example_row()`` gives a row that ``napari_pvm.core.store`` accepts
(schema version 2): all six outlines drawn and every measure consistent
(lean = total - fat, FI% = 100 × fat / total, bilateral and ES+MF values
summed and pooled), with outline origins, a fat:muscle contrast and a
vertebral-body area; ``dixon=True`` gives a Dixon row (forest settings
empty, mean fat fractions filled and pooled by area). It leaves out
``row_id``, ``measured_at`` and ``schema_version``, which ``append_rows``
fills in. ``make_spine_row()`` gives a valid spine-table row (contract 8).
"""

from napari_pvm import __version__
from napari_pvm.core.schema import (
    GROUPS,
    MEASURES,
    ROI_KEYS,
    SIDES,
    SPINE_LEVELS,
    measure_column,
)

__all__ = ["make_example_row", "make_spine_row"]

#: (total, fat) area in cm² of each outline; arbitrary but realistic.
_AREAS = {
    "PS_L": (10.2375, 0.84375),
    "PS_R": (9.9, 0.7125),
    "ES_L": (14.4375, 3.09375),
    "ES_R": (15.1125, 2.8875),
    "MF_L": (5.34375, 1.6875),
    "MF_R": (5.68125, 1.575),
}
#: Mean Dixon fat fraction in % of each outline (for ``dixon=True``).
_MEAN_FF = {"PS_L": 6.5, "PS_R": 5.75, "ES_L": 18.25, "ES_R": 16.0, "MF_L": 27.5, "MF_R": 25.125}


def _group_rois(group, side):
    muscles = ("ES", "MF") if group == "ESMF" else (group,)
    sides = ("L", "R") if side == "B" else (side,)
    return [f"{m}_{s}" for m in muscles for s in sides]


def make_example_row(*, absent=(), dixon=False, **overrides):
    """Return a valid row without the ``absent`` outlines, then ``overrides``.

    Parameters
    ----------
    absent : iterable of str
        Outline keys (``ROI_KEYS``, e.g. ``"MF_R"``) treated as not drawn:
        they leave ``rois_present`` and every measure that needs them is None.
    dixon : bool
        A Dixon row: method "dixon", the forest settings empty and every
        ``*_mean_ff_pct`` of a drawn group filled.
    **overrides
        Column values set last, as given (use them to break a rule).
    """
    absent = set(absent)
    unknown = absent - set(ROI_KEYS)
    if unknown:
        raise ValueError(f"not outline keys: {sorted(unknown)}")
    row = {
        "patient_id": "P001",
        "observer_id": "obs1",
        "session": "read1",
        "level": "L4",
        "slice_index": 16,
        "row_spacing_mm": 0.6875,
        "col_spacing_mm": 0.6875,
        "image_sha256": "ab" * 32,
        "annotation_sha256": "",
        "method": "random_forest",
        "features_preset": "weka",
        "n_trees": 200,
        "seed": 0,
        "class_balance": "balanced",
        "rois_present": ";".join(k for k in ROI_KEYS if k not in absent),
        "software_version": __version__,
        "outline_origin": ";".join(f"{k}:drawn" for k in ROI_KEYS if k not in absent),
        "fat_muscle_contrast": 3.375,
        "qc_flags": "",
        "VB_total_area_cm2": 15.5,
    }
    if dixon:
        row.update(method="dixon", features_preset="", n_trees=None, seed=None, class_balance="")
    for group in GROUPS:
        for side in SIDES:
            rois = _group_rois(group, side)
            cols = [measure_column(group, side, m) for m in MEASURES]
            if absent & set(rois):
                row.update(dict.fromkeys(cols, None))
                continue
            total = sum(_AREAS[r][0] for r in rois)
            fat = sum(_AREAS[r][1] for r in rois)
            row.update(zip(cols, (total, total - fat, fat, 100 * fat / total)))
            if dixon:
                ff = sum(_AREAS[r][0] * _MEAN_FF[r] for r in rois) / total
                row[measure_column(group, side, "mean_ff_pct")] = ff
    row.update(overrides)
    return row


def make_spine_row(**overrides):
    """Return a valid spine-table row (VBQ from L1-L4 but L2, and an angle),
    then ``overrides``. VBQ = median(300, 280, 320) / 100 = 3.0."""
    signals = {"L1": 300.0, "L2": None, "L3": 280.0, "L4": 320.0}
    row = {
        "patient_id": "P001",
        "observer_id": "obs1",
        "session": "read1",
        "slice_index": 12,
        "row_spacing_mm": 0.9375,
        "col_spacing_mm": 0.9375,
        "image_sha256": "cd" * 32,
        "software_version": __version__,
        "vbq": 3.0,
        "vbq_levels": ";".join(k for k in SPINE_LEVELS if signals[k]),
        "vbq_si_csf": 100.0,
        "local_kyphosis_deg": 12.5,
    }
    row.update({f"vbq_si_{k}": v for k, v in signals.items()})
    row.update(overrides)
    return row
