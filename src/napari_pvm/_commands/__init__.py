"""Subcommands of ``napari-pvm``; each module has ``add_arguments`` and ``run``."""

import dataclasses
import math
from pathlib import Path

import numpy as np

__all__ = ["Outcome", "jsonable"]


@dataclasses.dataclass
class Outcome:
    """What a subcommand produced.

    ``data`` is printed as JSON with ``--json``; ``text`` is printed otherwise;
    ``status`` is the exit status.
    """

    data: object
    text: str = ""
    status: int = 0


def jsonable(value):
    """Convert numpy scalars, arrays, paths and NaN (→ null) for ``json.dumps``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict") and hasattr(value, "columns"):
        return [jsonable(r) for r in value.to_dict(orient="records")]
    return value
