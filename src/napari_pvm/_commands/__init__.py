"""Subcommands of ``napari-pvm``; each module has ``add_arguments`` and ``run``."""

import dataclasses

from ..core._json import json_safe

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


#: NaN → null, numpy and paths → plain values (shared with the statistics core).
jsonable = json_safe
