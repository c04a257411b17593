"""The one JSON writer of napari-pvm: plain JSON values from numpy/pandas results.

Every command's ``--json`` output and every ``results.json`` goes through
:func:`json_safe` (NaN is never a result: it becomes null); tidy result
tables become lists of records with :func:`tidy_records`, which pairs
columns by name instead of copying them one by one.
"""

import math
import sys
from pathlib import Path

import numpy as np

__all__ = ["dumps", "finite_or_none", "json_safe", "tidy_records"]


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


def tidy_records(frame):
    """Rows of a tidy table as JSON records, paired columns folded together.

    ``X_ci_low`` and ``X_ci_high`` become ``X_ci: [low, high]`` (null when
    both are missing); ``X_0`` and ``X_1`` (the two outcome groups) become
    ``X: [group 0, group 1]``; a ``notes`` text joined by `` | `` becomes a
    list. Values pass through :func:`json_safe`.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"n_0": [3], "n_1": [4], "auc_ci_low": [0.6], "auc_ci_high": [0.9]})
    >>> tidy_records(frame)
    [{'n': [3, 4], 'auc_ci': [0.6, 0.9]}]
    """
    columns = [str(c) for c in frame.columns]
    present = set(columns)
    out = []
    for rec in frame.to_dict(orient="records"):
        rec = {str(k): json_safe(v) for k, v in rec.items()}
        item = {}
        for col in columns:
            if col.endswith("_ci_low") and col[: -len("_low")] + "_high" in present:
                low, high = rec[col], rec[col[: -len("_low")] + "_high"]
                item[col[: -len("_low")]] = None if low is None and high is None else [low, high]
            elif col.endswith("_ci_high") and col[: -len("_high")] + "_low" in present:
                continue
            elif col.endswith("_0") and col[:-2] + "_1" in present and col[:-2] not in present:
                item[col[:-2]] = [rec[col], rec[col[:-2] + "_1"]]
            elif col.endswith("_1") and col[:-2] + "_0" in present and col[:-2] not in present:
                continue
            elif col == "notes":
                item[col] = [t for t in str(rec[col] or "").split(" | ") if t]
            else:
                item[col] = rec[col]
        out.append(item)
    return out


def dumps(value, *, indent=None):
    """JSON text of ``value`` after :func:`json_safe` (never NaN or Infinity).

    Examples
    --------
    >>> dumps({"p": float("nan"), "n": 3})
    '{"p": null, "n": 3}'
    """
    import json

    return json.dumps(json_safe(value), indent=indent, allow_nan=False)
