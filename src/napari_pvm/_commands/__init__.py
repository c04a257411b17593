"""Subcommands of ``napari-pvm``; each module has ``add_arguments`` and ``run``."""

import dataclasses

from ..core._json import json_safe

__all__ = ["Outcome", "add_spacing_override", "jsonable"]


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


def add_spacing_override(parser):
    """The ``--allow-unusual-spacing`` flag of every command that reads an image."""
    parser.add_argument(
        "--allow-unusual-spacing",
        action="store_true",
        help="accept a pixel spacing outside the plausible 0.05–10 mm for MRI and radiographs "
        "(refused by default, naming the header field)",
    )
