"""The ``napari-pvm`` command (DESIGN.md, contract 4).

Each subcommand lives in ``napari_pvm._commands.<name>`` with
``add_arguments(parser)`` and ``run(args) -> Outcome``; this module only
parses, dispatches and prints. Bad input (a :class:`~napari_pvm.core.errors.PvmError`,
a missing or unreadable file, a bad flag) prints one ``error: ...`` line on
stderr and exits 2, with nothing written.
"""

import argparse
import importlib
import json
import os
import sys

from ._version import __version__

COMMANDS = ("phantom", "measure", "propose", "spine", "stats", "reliability", "batch", "migrate-csv", "gui")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line and exit status 2."""

    def error(self, message):
        sys.stderr.write(f"error: {self.prog}: {message}\n")
        raise SystemExit(2)


def build_parser():
    parser = _Parser(
        prog="napari-pvm",
        description="Paravertebral muscle areas and fat infiltration on lumbar MRI.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"napari_pvm._commands.{name.replace('-', '_')}")
        doc = (module.__doc__ or "").strip()
        p = sub.add_parser(name, help=doc.splitlines()[0] if doc else None, description=doc)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    """Entry point of the ``napari-pvm`` console script; returns the exit status."""
    from ._commands import jsonable
    from .core.errors import PvmError

    args = build_parser().parse_args(argv)
    try:
        outcome = args._run(args)
    except PvmError as exc:
        return _fail(exc)
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except Exception as exc:  # an input we did not foresee: still one line
        if os.environ.get("PVM_DEBUG"):
            raise
        sys.stderr.write(
            f"error: unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
            "(set PVM_DEBUG=1 for the traceback and please report it)\n"
        )
        return 2
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(jsonable(outcome.data), allow_nan=False) + "\n")
    elif outcome.text:
        sys.stdout.write(outcome.text.rstrip("\n") + "\n")
    sys.stdout.flush()
    return outcome.status


def _fail(exc):
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and getattr(exc, "filename", None) and exc.strerror:
        message = f"{exc.strerror}: {exc.filename}"
    sys.stderr.write(f"error: {message}\n")
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
