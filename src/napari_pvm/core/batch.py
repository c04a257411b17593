"""Cohort batch mode: measure many annotated cases in parallel.

Each case goes through exactly the code path of ``napari-pvm measure``
(:func:`measure_case` → :func:`napari_pvm.core.measure.measure_annotation`).
Local workers are processes forked from a fork server that imported the
measuring code once (POSIX; elsewhere a Dask LocalCluster), so they start in
milliseconds; with a scheduler address the cases run on that
dask.distributed cluster. Workers
return rows; only the calling process appends them to the shared
CSV through :mod:`napari_pvm.core.store`, one durable append per case, so an
interrupted batch loses nothing that was reported done. Re-running skips
cases already in the CSV with the same patient, observer, level, session,
image and annotation content and classifier settings.
"""

import dataclasses
import os
import re
import time
from pathlib import Path

from .annotation import probe_writable
from .errors import PvmError
from .schema import METHOD_SETTING_COLUMNS

__all__ = ["BatchSummary", "Case", "measure_case", "read_worklist", "run_batch"]

#: Columns of a row that make two measurements "the same" for resuming.
RESUME_KEY = (
    "patient_id",
    "observer_id",
    "level",
    "session",
    "image_sha256",
    "annotation_sha256",
    "method",
    *METHOD_SETTING_COLUMNS,
)
#: Columns of a worklist (contract 4); paths are relative to the worklist.
WORKLIST_COLUMNS = (
    "patient_id",
    "image",
    "observer_id",
    "annotation",
    "slice_index",
    "level",
    "session",
    "method",
    "water",
    "fat",
    "sagittal_image",
)
_PATH_COLUMNS = ("image", "annotation", "water", "fat", "sagittal_image")


@dataclasses.dataclass(frozen=True)
class Case:
    """One worklist line, with paths resolved against the worklist's folder."""

    line: int
    patient_id: str
    image: str
    annotation: str
    observer_id: str = ""
    session: str = ""
    level: str = ""
    slice_index: str = ""
    method: str = ""
    water: str = ""
    fat: str = ""
    sagittal_image: str = ""


@dataclasses.dataclass
class BatchSummary:
    """What a batch did: case counts, time, workers and where the errors are listed."""

    cases: int = 0
    measured: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    errors_csv: str = ""
    workers: int = 0
    startup_seconds: float = 0.0

    def as_dict(self):
        return dataclasses.asdict(self)


def read_worklist(path, *, columns=None, required=("patient_id", "image")):
    """Read a worklist (contract 4) into :class:`Case` objects.

    Paths are relative to the worklist's folder. IDs are read as text. A
    worklist saved by a spreadsheet (``;`` separators, UTF-8 with BOM,
    Windows-1252) is read as well (:func:`napari_pvm.core.tables.read_table`).

    Parameters
    ----------
    path : str or Path
    columns : sequence of str, optional
        Read only these columns; any other column (an outcome, say) is
        skipped by the parser, never loaded and not an error. By default
        every column is read and an unknown one is refused.
    required : sequence of str, optional
        Columns the caller needs (``batch`` adds ``annotation``).

    Raises
    ------
    PvmError
        A missing file, an unreadable table, a missing or unknown column, or
        no cases; the message names the file and the fix.
    """
    from .tables import read_table, suggest

    path = Path(path)
    table = read_table(path, what="worklist", usecols=columns)
    missing = [c for c in required if c not in table.columns]
    if missing:
        hints = [
            f" ({c!r}: did you mean {' or '.join(map(repr, suggest(c, table.columns)))}?)"
            for c in missing
            if suggest(c, table.columns)
        ]
        raise PvmError(
            f"{path.name} lacks the column(s) {', '.join(missing)}{''.join(hints)}; "
            f"a worklist needs {', '.join(required)}"
        )
    if table.empty:
        raise PvmError(f"{path.name} lists no cases")
    unknown = [c for c in table.columns if c not in WORKLIST_COLUMNS]
    if unknown:
        raise PvmError(
            f"{path.name} has unknown column(s) {', '.join(unknown)}; allowed: {', '.join(WORKLIST_COLUMNS)}"
        )
    base = path.resolve().parent
    cases = []
    for i, rec in enumerate(table.to_dict(orient="records"), start=2):  # line 1 is the header
        text = {k: ("" if v is None else str(v).strip()) for k, v in rec.items()}
        fields = {k: text.get(k, "") for k in WORKLIST_COLUMNS}
        for k in _PATH_COLUMNS:
            fields[k] = str(base / fields[k]) if fields[k] else ""
        cases.append(Case(line=i, **fields))
    return cases


def measure_case(case, settings=None, done_keys=frozenset(), *, allow_unusual_spacing=False):
    """Measure one case in a worker; never raises.

    ``allow_unusual_spacing`` is passed to
    :func:`napari_pvm.core.io.read_volume` for the image and the Dixon images.

    Returns
    -------
    dict
        ``{"status": "measured", "row": {...}}``, ``{"status": "skipped",
        "reason": ...}`` or ``{"status": "failed", "reason": ...}``.
    """
    from threadpoolctl import threadpool_limits

    from .annotation import read_annotation
    from .io import read_volume
    from .measure import measure_annotation

    settings = dict(settings or {})
    try:
        if not case.image:
            raise PvmError("no image given")
        if not case.annotation:
            raise PvmError("no annotation given; batch mode measures saved annotations")
        with threadpool_limits(1):
            volume = read_volume(case.image, allow_unusual_spacing=allow_unusual_spacing)
            annotation = read_annotation(case.annotation)
            if case.level and annotation.level != case.level:
                raise PvmError(f"worklist level {case.level} differs from the annotation's {annotation.level}")
            if case.slice_index and _slice_number(case.slice_index) != annotation.slice_index:
                raise PvmError(
                    f"worklist slice_index {case.slice_index} differs from the annotation's {annotation.slice_index}"
                )
            method = case.method or settings.pop("method", None)
            settings.pop("method", None)
            if bool(case.water) != bool(case.fat):
                raise PvmError("give both water and fat images of a Dixon acquisition, or neither")
            dixon = (
                {
                    "water": read_volume(case.water, allow_unusual_spacing=allow_unusual_spacing),
                    "fat": read_volume(case.fat, allow_unusual_spacing=allow_unusual_spacing),
                }
                if case.water
                else {}
            )
            key = _predicted_key(case, volume, annotation, dict(settings, method=method))
            if key is not None and key in done_keys:
                return {"status": "skipped", "reason": "already measured with the same image, annotation and settings"}
            result = measure_annotation(
                volume,
                annotation,
                patient_id=case.patient_id,
                observer_id=case.observer_id or None,
                session=case.session or None,
                method=method,
                **dixon,
                **settings,
            )
        if not result.row["observer_id"]:
            raise PvmError("no observer ID (worklist observer_id or the annotation's)")
        return {"status": "measured", "row": result.row}
    except PvmError as exc:
        return {"status": "failed", "reason": _public(" ".join(str(exc).split()))}
    except OSError as exc:
        return {"status": "failed", "reason": _public(f"{exc.strerror or exc}: {exc.filename or ''}".strip())}
    except Exception as exc:  # a batch must go on; the reason is recorded
        return {"status": "failed", "reason": _public(f"unexpected {type(exc).__name__}: {exc}")}


def _slice_number(text):
    """A worklist's slice_index as a whole number; a spreadsheet may have
    written ``2`` as ``2.0`` or ``2,0``.

    Examples
    --------
    >>> _slice_number("2"), _slice_number("2.0"), _slice_number("2,0")
    (2, 2, 2)
    """
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise PvmError(f"worklist slice_index {text!r} is not a whole slice number; write it like 12")
    return int(value)


#: Internal files a message must not name: the store's and our hidden
#: temporary, lock and writer files, and Dask's scratch space.
_INTERNAL = re.compile(r"(?:[^\s'\"]*/)?(?:\.[^\s'\"/]+\.(?:tmp|lock|writer)|dask-scratch-space[^\s'\"]*)")


def _public(message):
    """A reason for the user: internal temporary files named as such, not by path.

    Examples
    --------
    >>> _public("cannot write /data/.out.errors.csv.tmp: disk full")
    'cannot write (a temporary file of napari-pvm): disk full'
    """
    return _INTERNAL.sub("(a temporary file of napari-pvm)", message)


def _predicted_key(case, volume, annotation, settings):
    """The resume key this case's row will have, computed before measuring
    (by the same functions that fill the row)."""
    from .measure import classifier_for, row_identity

    method = settings.pop("method", None)
    params = classifier_for(annotation.classifier, method=method, **settings).params
    ident = row_identity(
        volume,
        annotation,
        params,
        patient_id=case.patient_id,
        observer_id=case.observer_id or None,
        session=case.session or None,
    )
    return _key(ident)


def _key(row):
    return tuple(
        str(row.get(k, "")).strip().lower() if k == "class_balance" else str(row.get(k, "")).strip() for k in RESUME_KEY
    )


def _done_keys(csv_path):
    from .store import read_rows

    if not Path(csv_path).exists() or Path(csv_path).stat().st_size == 0:
        return frozenset()
    rows = read_rows(csv_path)
    keys = set()
    for rec in rows.to_dict(orient="records"):
        for k in ("n_trees", "seed"):
            value = rec.get(k)
            rec[k] = "" if value is None else str(int(value))
        keys.add(_key(rec))
    return frozenset(keys)


def run_batch(
    worklist, csv_path, *, workers=None, scheduler=None, settings=None, progress=None, allow_unusual_spacing=False
):
    """Measure every case of a worklist in parallel and append the rows.

    Parameters
    ----------
    worklist : str or Path
        Worklist CSV (contract 4).
    csv_path : str or Path
        Shared measurements CSV; failed cases go to ``<csv stem>.errors.csv``
        beside it.
    workers : int, optional
        Local worker processes (one thread each); default: the machine's cores.
    scheduler : str, optional
        Address of an existing dask.distributed scheduler (``tcp://host:8786``).
    settings : dict, optional
        Classifier overrides (``preset``, ``n_trees``, ``seed``,
        ``class_balance``) and ``method``, the FI% method of cases whose
        worklist line names none.
    progress : callable, optional
        ``progress(done, failed, skipped, total, eta_seconds)`` after each case.
    allow_unusual_spacing : bool, optional
        Read images whose pixel spacing is outside the plausible range
        (:func:`napari_pvm.core.io.read_volume`).

    Returns
    -------
    BatchSummary
    """
    from .store import append_rows, check_appendable

    from .measure import classifier_for

    t0 = time.perf_counter()
    if not scheduler:
        _start_fork_server()  # it imports the measuring code while this process checks the input
    worklist = Path(worklist)
    cases = read_worklist(worklist, required=("patient_id", "image", "annotation"))
    csv_path = Path(csv_path)
    # a bad invocation is refused before any case runs (exit 2, nothing written)
    settings = dict(settings or {})
    for method in {settings.get("method")} | {c.method for c in cases if c.method}:
        classifier_for({}, **dict(settings, method=method))
    _check_writable(csv_path)
    check_appendable(csv_path)  # a file with another header (version 1: migrate-csv) is refused now, not per case
    errors_path = csv_path.with_name(csv_path.stem + ".errors.csv")
    done = _done_keys(csv_path)
    summary = BatchSummary(cases=len(cases), errors_csv=str(errors_path))
    problems = []
    todo = []
    seen = {}
    for case in cases:
        ident = (case.patient_id, case.observer_id, case.level, case.session, case.image, case.annotation)
        if ident in seen:
            summary.skipped += 1
            problems.append((case, "skipped", f"duplicate of worklist line {seen[ident]}"))
            continue
        seen[ident] = case.line
        todo.append(case)

    pool = _pool(workers, scheduler)
    summary.workers = pool.n_workers
    summary.startup_seconds = time.perf_counter() - t0
    started = time.perf_counter()
    finished = 0
    try:
        for case, outcome in pool.map_unordered(todo, settings, done, allow_unusual_spacing):
            if outcome["status"] == "measured":
                try:
                    append_rows(csv_path, [outcome["row"]])
                    summary.measured += 1
                except PvmError as exc:
                    summary.failed += 1
                    problems.append((case, "failed", _public(f"not stored: {exc}")))
            elif outcome["status"] == "skipped":
                summary.skipped += 1
            else:
                summary.failed += 1
                problems.append((case, "failed", _public(outcome["reason"])))
            finished += 1
            if progress:
                elapsed = time.perf_counter() - started
                eta = elapsed / finished * (len(todo) - finished)
                progress(summary.measured + summary.skipped, summary.failed, summary.skipped, summary.cases, eta)
    finally:
        _write_errors(errors_path, problems)
        pool.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _check_writable(csv_path):
    """Refuse an output the batch could not write, before any case is measured."""
    folder = csv_path.resolve().parent
    if csv_path.is_dir() or not folder.is_dir():
        raise PvmError(f"cannot write {csv_path}: its folder does not exist or it is a folder itself")
    try:
        probe_writable(folder)
        if csv_path.exists():
            with open(csv_path, "ab"):
                pass
    except OSError as exc:
        raise PvmError(
            f"cannot write {csv_path} (or the errors file beside it): {exc.strerror or exc}; "
            "choose a folder you can write to"
        ) from None


#: Modules a local worker needs, imported once by the fork server.
_WORKER_MODULES = ["napari_pvm.core.annotation", "napari_pvm.core.io", "napari_pvm.core.measure", "threadpoolctl"]


class _ForkPool:
    """Local workers forked from a fork server (POSIX) that imported the
    measuring code once, so a batch costs little more to start than one
    ``measure``. Workers are never forked from the calling process itself:
    after it has measured, its OpenMP threads make fork() unsafe."""

    def __init__(self, n):
        from concurrent.futures import ProcessPoolExecutor

        context = _start_fork_server()
        self.n_workers = n
        self._executor = ProcessPoolExecutor(max_workers=n, mp_context=context, initializer=_one_thread)

    def map_unordered(self, cases, settings, done, allow_unusual_spacing=False):
        from concurrent.futures import as_completed

        futures = {
            self._executor.submit(measure_case, case, settings, done, allow_unusual_spacing=allow_unusual_spacing): case
            for case in cases
        }
        yield from _outcomes(futures, as_completed)

    def close(self):
        self._executor.shutdown(wait=True, cancel_futures=True)


class _DaskPool:
    """Workers of a dask.distributed cluster: an existing scheduler, or a local
    cluster where processes cannot be forked."""

    def __init__(self, workers, scheduler):
        self._client, self._cluster = _client(workers, scheduler)
        self.n_workers = len(self._client.scheduler_info().get("workers", {}))

    def map_unordered(self, cases, settings, done, allow_unusual_spacing=False):
        from distributed import as_completed

        client = self._client
        # scatter once as one object (a bare set would be scattered element-wise)
        done_future = client.scatter([done], broadcast=True)[0] if done else done
        futures = {
            client.submit(
                measure_case,
                case,
                settings,
                done_future,
                allow_unusual_spacing=allow_unusual_spacing,
                pure=False,
                key=f"case-{case.line}-{os.getpid()}",
            ): case
            for case in cases
        }
        yield from _outcomes(futures, as_completed)

    def close(self):
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def _start_fork_server():
    """Start (once) the fork server of local workers, importing :data:`_WORKER_MODULES`."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_WORKER_MODULES)
    forkserver.ensure_running()
    return context


def _outcomes(futures, as_completed):
    """(case, outcome) of each finished future; a dead worker is a failed case."""
    for future in as_completed(futures):
        try:
            outcome = future.result()
        except Exception as exc:  # a worker died: record it and go on
            outcome = {"status": "failed", "reason": f"worker error: {type(exc).__name__}: {exc}"}
        yield futures[future], outcome


def _one_thread():
    """Worker set-up: one thread for every numerical library (the workers are the parallelism)."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = "1"
    try:
        import numba

        numba.set_num_threads(1)
    except (ImportError, ValueError):
        pass


def _pool(workers, scheduler):
    n = int(workers) if workers else (os.cpu_count() or 1)
    if n < 1:
        raise PvmError("--workers must be at least 1")
    import multiprocessing

    if scheduler or "forkserver" not in multiprocessing.get_all_start_methods():
        return _DaskPool(workers, scheduler)
    return _ForkPool(n)


def _client(workers, scheduler):
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="10s"), None
        except (OSError, TimeoutError) as exc:
            raise PvmError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
    n = int(workers) if workers else (os.cpu_count() or 1)
    if n < 1:
        raise PvmError("--workers must be at least 1")
    # Dask sets MALLOC_TRIM_THRESHOLD_ in workers by default, which also turns off
    # glibc's dynamic mmap threshold: every large numpy temporary is then mapped
    # and unmapped afresh, and a case took ~45 % longer. Unset it (None unsets).
    with dask.config.set(
        {
            "distributed.worker.daemon": False,
            "logging.distributed": "error",
            "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        }
    ):
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=40,
            env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"},
        )
    return Client(cluster), cluster


def _write_errors(path, problems):
    """Write the failed and skipped-with-reason cases (atomically); remove a
    stale errors file when there is nothing to report."""
    import csv
    import io

    if not problems:
        if path.exists():
            path.unlink()
        return
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["line", "patient_id", "observer_id", "image", "annotation", "status", "reason"])
    for case, status, reason in sorted(problems, key=lambda p: p[0].line):
        writer.writerow(
            [
                case.line,
                _safe(case.patient_id),
                _safe(case.observer_id),
                case.image,
                case.annotation,
                status,
                _safe(reason),
            ]
        )
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


def _safe(text):
    """Neutralise spreadsheet formulas in free text (IDs from a worklist)."""
    text = str(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
