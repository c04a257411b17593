"""Measure every annotated case of a worklist in parallel (Dask) into the shared CSV.

The worklist needs patient_id, image and annotation (paths relative to it) and
may give observer_id, session, level, slice_index, method, water and fat per
case. On a terminal a progress bar runs on stderr; redirected, only the final
summary is printed. Exit 0 when every case was measured or skipped, 1 when
some failed (listed in OUT.errors.csv), 2 on a bad invocation.
"""

import sys
from pathlib import Path

from . import Outcome, add_spacing_override

__all__ = ["ProgressBar", "add_arguments", "run"]


def add_arguments(parser):
    parser.add_argument("worklist", help="worklist CSV: patient_id, image, annotation, … (paths relative to it)")
    parser.add_argument("--csv", required=True, help="shared measurements CSV to append to")
    parser.add_argument(
        "--workers", type=int, help="local worker processes, one thread each (default: number of cores)"
    )
    parser.add_argument("--scheduler", help="address of an existing dask.distributed scheduler, e.g. tcp://host:8786")
    parser.add_argument("--method", help="FI%% method of cases whose worklist line names none (default: forest)")
    parser.add_argument("--preset", help="feature preset of the fat classifier")
    parser.add_argument("--trees", type=int, help="number of trees")
    parser.add_argument("--seed", type=int, help="seed of the random forest")
    add_spacing_override(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args):
    from ..core.batch import run_batch
    from ..core.errors import PvmError

    if args.workers is not None and args.workers < 1:
        raise PvmError("--workers must be at least 1")
    options = (("preset", args.preset), ("n_trees", args.trees), ("seed", args.seed), ("method", args.method))
    settings = {k: v for k, v in options if v is not None}
    from ._notes import plain_notes

    bar = ProgressBar()
    try:
        with plain_notes():  # a torn last line moved to the quarantine is a note, not Python's warning text
            summary = run_batch(
                args.worklist,
                args.csv,
                workers=args.workers,
                scheduler=args.scheduler,
                settings=settings,
                progress=bar,
                allow_unusual_spacing=args.allow_unusual_spacing,
            )
    finally:
        bar.close()
    data = summary.as_dict()
    text = (
        f"{summary.cases} cases: {summary.measured} measured, {summary.failed} failed, "
        f"{summary.skipped} skipped in {summary.seconds:.1f} s ({summary.workers} workers)"
    )
    if Path(summary.errors_csv).exists():
        text += f"\ncases not measured, with reasons: {summary.errors_csv}"
    return Outcome(data, text, status=1 if summary.failed else 0)


class ProgressBar:
    """A tqdm bar on ``stream`` (stderr) when it is a terminal; silent otherwise.

    Called as ``bar(done, failed, skipped, total, eta)`` by
    :func:`napari_pvm.core.batch.run_batch`.
    """

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar = None

    def __call__(self, done, failed, skipped, total, eta):
        if not self.tty:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, file=self.stream, unit="case", dynamic_ncols=True, leave=True)
        self._bar.set_postfix_str(f"{failed} failed, {skipped} skipped", refresh=False)
        self._bar.update(done + failed - self._bar.n)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
