"""Plain JSON values from numpy/pandas results: NaN is never a result."""

import math
import sys
from pathlib import Path

import numpy as np

__all__ = ["finite_or_none", "json_safe"]


def finite_or_none(value):
    """A finite float, or None (for None, non-numbers, NaN and infinities)."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def json_safe(value):
    """Convert for ``json.dumps(..., allow_nan=False)``: dicts, lists, tuples,
    arrays and DataFrames (as lists of records) recursively; numpy scalars to
    Python; NaN, infinities, ``pd.NA`` and ``NaT`` to None; paths to text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a DataFrame
        return [json_safe(r) for r in value.to_dict(orient="records")]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    pd = sys.modules.get("pandas")  # only values from pandas can be NA/NaT
    if pd is not None and (value is pd.NA or value is pd.NaT):
        return None
    return value
