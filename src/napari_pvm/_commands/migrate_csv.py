"""Bring a shared measurement CSV written by an older napari-pvm to the current schema.

The file is rewritten atomically under the store's lock; the original is kept
as FILE.v1.bak beside it; old rows keep their values and the new columns are
empty (outline_origin says drawn for every outline, as version 1 had no
proposals). A file of the current version is left as it is.
"""

from . import Outcome


def add_arguments(parser):
    parser.add_argument("csv", metavar="FILE", help="the shared measurement CSV (muscle table)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for an observer who is appending (default 30)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(args):
    import dataclasses

    from ..core.migrate import migrate_csv
    from ._notes import plain_notes

    with plain_notes():  # a torn last line moved to the quarantine is a note, not Python's warning text
        result = migrate_csv(args.csv, timeout=args.timeout)
    if result.migrated:
        text = (
            f"migrated {result.path} from schema version {result.from_version} to "
            f"{result.to_version}: {result.rows} rows kept; backup {result.backup}"
        )
    else:
        text = f"{result.path} is already schema version {result.to_version}; nothing written"
    return Outcome(dataclasses.asdict(result), text)
