"""measure (not implemented yet)."""

from ..core.errors import PvmError


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args):
    raise PvmError("'napari-pvm measure' is not implemented yet")
