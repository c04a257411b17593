"""Names of the measurement columns (DESIGN.md, contract 3).

One row of the shared CSV identifies the case, the method and its settings,
then carries ``{group}_{side}_{measure}`` columns for every muscle group,
side and measure. This module only names things; ``measure`` fills rows and
``store`` writes them.
"""

__all__ = [
    "COLUMNS",
    "DEFAULT_SESSION",
    "GROUPS",
    "ID_COLUMNS",
    "INTEGER_COLUMNS",
    "MEASURES",
    "MEASURE_COLUMNS",
    "MUSCLES",
    "NUMERIC_COLUMNS",
    "ROI_KEYS",
    "SAMPLE_CLASSES",
    "SCHEMA_VERSION",
    "SIDES",
    "measure_column",
]

SCHEMA_VERSION = "1"
#: Reading label of a first reading (a repeat reading is e.g. "read2").
DEFAULT_SESSION = "read1"

#: Muscles outlined by the observer (psoas major, erector spinae, multifidus).
MUSCLES = ("PS", "ES", "MF")
#: Reported groups: the three muscles and ES+MF together, as in the paper.
GROUPS = ("PS", "ES", "MF", "ESMF")
#: The patient's left, right, and both sides together (bilateral).
SIDES = ("L", "R", "B")
MEASURES = ("total_area_cm2", "muscle_area_cm2", "fat_area_cm2", "fi_pct")
#: The six outlines, as ``{muscle}_{side}``, in the order rois_present lists them.
ROI_KEYS = tuple(f"{m}_{s}" for m in MUSCLES for s in ("L", "R"))
SAMPLE_CLASSES = ("muscle", "fat")

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


def measure_column(group, side, measure):
    """Return the contract-3 column name, e.g. ``ESMF_B_fi_pct``."""
    if group not in GROUPS or side not in SIDES or measure not in MEASURES:
        raise ValueError(f"no such measure column: {group}_{side}_{measure}")
    return f"{group}_{side}_{measure}"


MEASURE_COLUMNS = tuple(
    measure_column(g, s, m) for g in GROUPS for s in SIDES for m in MEASURES
)
COLUMNS = ID_COLUMNS + MEASURE_COLUMNS
INTEGER_COLUMNS = ("slice_index", "n_trees", "seed")
NUMERIC_COLUMNS = ("row_spacing_mm", "col_spacing_mm") + INTEGER_COLUMNS + MEASURE_COLUMNS
