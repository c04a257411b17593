"""Measure every annotated case of a worklist in parallel (Dask) into the shared CSV."""

import sys
import time
from pathlib import Path

from . import Outcome


def add_arguments(parser):
    parser.add_argument("worklist", help="worklist CSV: patient_id, image, observer_id, annotation, … (paths relative to it)")
    parser.add_argument("--csv", required=True, help="shared measurements CSV to append to")
    parser.add_argument("--workers", type=int, help="local worker processes, one thread each (default: number of cores)")
    parser.add_argument("--scheduler", help="address of an existing dask.distributed scheduler, e.g. tcp://host:8786")
    parser.add_argument("--preset", help="feature preset of the fat classifier")
    parser.add_argument("--trees", type=int, help="number of trees")
    parser.add_argument("--seed", type=int, help="seed of the random forest")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args):
    from ..core.batch import run_batch
    from ..core.errors import PvmError

    if args.workers is not None and args.workers < 1:
        raise PvmError("--workers must be at least 1")
    settings = {k: v for k, v in (("preset", args.preset), ("n_trees", args.trees), ("seed", args.seed)) if v is not None}
    bar = _ProgressBar()
    summary = run_batch(args.worklist, args.csv, workers=args.workers, scheduler=args.scheduler,
                        settings=settings, progress=bar)
    bar.close()
    data = summary.as_dict()
    text = (
        f"{summary.cases} cases: {summary.measured} measured, {summary.failed} failed, "
        f"{summary.skipped} skipped in {summary.seconds:.1f} s ({summary.workers} workers)"
    )
    if Path(summary.errors_csv).exists():
        text += f"\ncases not measured, with reasons: {summary.errors_csv}"
    return Outcome(data, text, status=1 if summary.failed else 0)


class _ProgressBar:
    """One line on stderr: a bar, done / failed counts and the expected time left."""

    def __init__(self, stream=None, width=30):
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._last = 0.0

    def __call__(self, done, failed, skipped, total, eta):
        finished = done + failed
        now = time.monotonic()
        if not self.tty and finished < total and now - self._last < 5:
            return
        self._last = now
        filled = int(self.width * finished / max(total, 1))
        line = (f"[{'#' * filled}{'.' * (self.width - filled)}] {finished}/{total} "
                f"({failed} failed, {skipped} skipped) ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
