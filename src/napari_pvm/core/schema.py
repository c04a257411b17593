"""Names of the columns of the shared tables (DESIGN.md, contracts 3 and 8).

Two tables are kept in shared CSV files:

- the muscle table (contract 3): one row per measured case identifies the
  case, the method and its settings, then carries ``{group}_{side}_{measure}``
  columns for every muscle group, side and measure; version 2 adds the
  outline origins, the quality of the fat classification, the Dixon mean fat
  fraction and the vertebral-body reference area after the version-1 columns;
- the spine table (contract 8): identity columns, then the vertebral bone
  quality score (VBQ) with its parts and the local kyphotic angle.

This module only names things; ``measure`` fills rows and ``store`` checks
and writes them.
"""

__all__ = [
    "COLUMNS",
    "COLUMNS_BY_VERSION",
    "DEFAULT_SESSION",
    "GROUPS",
    "ID_COLUMNS",
    "INTEGER_COLUMNS",
    "LATEST_KEYS",
    "MEAN_FF_COLUMNS",
    "MEASURES",
    "MEASURE_COLUMNS",
    "METHOD_SETTING_COLUMNS",
    "MUSCLES",
    "NUMERIC_COLUMNS",
    "OUTLINE_ORIGINS",
    "QUALITY_COLUMNS",
    "REFERENCE_STRUCTURES",
    "ROI_KEYS",
    "SAMPLE_CLASSES",
    "SCHEMA_VERSION",
    "SIDES",
    "SPINE_COLUMNS",
    "SPINE_ID_COLUMNS",
    "SPINE_INTEGER_COLUMNS",
    "SPINE_LEVELS",
    "SPINE_NUMERIC_COLUMNS",
    "SPINE_SCHEMA_VERSION",
    "SPINE_VALUE_COLUMNS",
    "SPINE_VALUE_GROUPS",
    "TABLES",
    "V1_COLUMNS",
    "V2_COLUMNS",
    "measure_column",
]

#: Version of the muscle table written by this release (contract 3).
SCHEMA_VERSION = "2"
#: Reading label of a first reading (a repeat reading is e.g. "read2").
DEFAULT_SESSION = "read1"
#: The shared tables: muscle measures (contract 3) and spine measures (contract 8).
TABLES = ("muscle", "spine")

#: Muscles outlined by the observer (psoas major, erector spinae, multifidus).
MUSCLES = ("PS", "ES", "MF")
#: Reported groups: the three muscles and ES+MF together, as in the paper.
GROUPS = ("PS", "ES", "MF", "ESMF")
#: The patient's left, right, and both sides together (bilateral).
SIDES = ("L", "R", "B")
MEASURES = ("total_area_cm2", "muscle_area_cm2", "fat_area_cm2", "fi_pct")
#: The six outlines, as ``{muscle}_{side}``, in contract order: the order
#: rois_present and outline_origin list them, and the order in which a pixel
#: inside two outlines goes to the first (contract 1).
ROI_KEYS = tuple(f"{m}_{s}" for m in MUSCLES for s in ("L", "R"))
SAMPLE_CLASSES = ("muscle", "fat")
#: How an outline was made (contract 7): drawn by hand, proposed by the
#: software, or proposed then changed by the observer.
OUTLINE_ORIGINS = ("drawn", "proposed", "edited")
#: Reference outlines that are not muscles (contract 2): VB, the vertebral body.
REFERENCE_STRUCTURES = ("VB",)

ID_COLUMNS = (
    "schema_version",
    "row_id",
    "patient_id",
    "observer_id",
    "session",
    "level",
    "slice_index",
    "row_spacing_mm",
    "col_spacing_mm",
    "image_sha256",
    "annotation_sha256",
    "method",
    "features_preset",
    "n_trees",
    "seed",
    "class_balance",
    "rois_present",
    "software_version",
    "measured_at",
)
#: Settings of the forest; empty in version 2 for methods that do not use them.
METHOD_SETTING_COLUMNS = ("features_preset", "n_trees", "seed", "class_balance")

_MEAN_FF = "mean_ff_pct"


def measure_column(group, side, measure):
    """Return the contract-3 column name, e.g. ``ESMF_B_fi_pct``.

    ``measure`` is one of ``MEASURES`` or ``"mean_ff_pct"`` (version 2).

    Examples
    --------
    >>> measure_column("ESMF", "B", "fi_pct")
    'ESMF_B_fi_pct'
    """
    if group not in GROUPS or side not in SIDES or measure not in MEASURES + (_MEAN_FF,):
        raise ValueError(f"no such measure column: {group}_{side}_{measure}")
    return f"{group}_{side}_{measure}"


MEASURE_COLUMNS = tuple(measure_column(g, s, m) for g in GROUPS for s in SIDES for m in MEASURES)
#: Version-1 columns, in file order.
V1_COLUMNS = ID_COLUMNS + MEASURE_COLUMNS
#: Quality of the fat classification (version 2).
QUALITY_COLUMNS = ("fat_muscle_contrast", "qc_flags")
#: Mean Dixon fat fraction in % per group and side (version 2).
MEAN_FF_COLUMNS = tuple(measure_column(g, s, _MEAN_FF) for g in GROUPS for s in SIDES)
#: Version-2 columns, in file order: version 1, then what version 2 adds.
#: No further quality figures are defined in version 2.
V2_COLUMNS = V1_COLUMNS + ("outline_origin",) + QUALITY_COLUMNS + MEAN_FF_COLUMNS + ("VB_total_area_cm2",)
#: Columns of the muscle table as this release writes it.
COLUMNS = V2_COLUMNS
#: The muscle-table columns of each schema version a reader understands.
COLUMNS_BY_VERSION = {"1": V1_COLUMNS, "2": V2_COLUMNS}
INTEGER_COLUMNS = ("slice_index", "n_trees", "seed")
NUMERIC_COLUMNS = (
    ("row_spacing_mm", "col_spacing_mm")
    + INTEGER_COLUMNS
    + MEASURE_COLUMNS
    + ("fat_muscle_contrast",)
    + MEAN_FF_COLUMNS
    + ("VB_total_area_cm2",)
)

# --- spine table (contract 8) ---------------------------------------------

#: Version of the spine table written by this release.
SPINE_SCHEMA_VERSION = "1"
#: Vertebrae whose signal enters the VBQ score.
SPINE_LEVELS = ("L1", "L2", "L3", "L4")
SPINE_ID_COLUMNS = (
    "schema_version",
    "row_id",
    "patient_id",
    "observer_id",
    "session",
    "slice_index",
    "row_spacing_mm",
    "col_spacing_mm",
    "image_sha256",
    "software_version",
    "measured_at",
)
SPINE_VALUE_COLUMNS = (
    ("vbq", "vbq_levels") + tuple(f"vbq_si_{level}" for level in SPINE_LEVELS) + ("vbq_si_csf", "local_kyphosis_deg")
)
SPINE_COLUMNS = SPINE_ID_COLUMNS + SPINE_VALUE_COLUMNS
SPINE_INTEGER_COLUMNS = ("slice_index",)
SPINE_NUMERIC_COLUMNS = (
    ("slice_index", "row_spacing_mm", "col_spacing_mm", "vbq")
    + tuple(f"vbq_si_{level}" for level in SPINE_LEVELS)
    + ("vbq_si_csf", "local_kyphosis_deg")
)
#: The spine measures, each with the columns that belong to it. The latest
#: value of a measure is taken whole from one row (the latest in which its
#: first column is not empty), so a VBQ never mixes the levels of one
#: reading with the signals of another.
SPINE_VALUE_GROUPS = {
    "vbq": SPINE_VALUE_COLUMNS[:-1],
    "local_kyphosis_deg": ("local_kyphosis_deg",),
}

#: One reading of each table: ``latest_rows`` keeps the newest row per key.
LATEST_KEYS = {
    "muscle": ("patient_id", "observer_id", "level", "session"),
    "spine": ("patient_id", "observer_id", "session"),
}
