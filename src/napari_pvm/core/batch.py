"""Cohort batch mode: measure many annotated cases in parallel with Dask.

Each case goes through exactly the code path of ``napari-pvm measure``
(:func:`measure_case` → :func:`napari_pvm.core.measure.measure_annotation`).
Workers return rows; only the calling process appends them to the shared
CSV through :mod:`napari_pvm.core.store`, one durable append per case, so an
interrupted batch loses nothing that was reported done. Re-running skips
cases already in the CSV with the same patient, observer, level, session,
image and annotation content and classifier settings.
"""

import dataclasses
import os
import time
import warnings
from pathlib import Path

from .errors import PvmError

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
    "features_preset",
    "n_trees",
    "seed",
    "class_balance",
)
WORKLIST_COLUMNS = ("patient_id", "image", "observer_id", "annotation", "slice_index", "level", "session")


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


@dataclasses.dataclass
class BatchSummary:
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


def read_worklist(path, *, columns=None):
    """Read a worklist CSV (contract 4) into :class:`Case` objects.

    Paths are relative to the worklist's folder. IDs are read as text.

    Parameters
    ----------
    columns : sequence of str, optional
        Read only these columns; any other column (an outcome, say) is
        skipped by the CSV parser, never loaded and not an error. By default
        every column is read and an unknown one is refused.
    """
    import pandas as pd

    path = Path(path)
    usecols = None if columns is None else (lambda c: str(c).strip() in set(columns))
    try:
        with warnings.catch_warnings():
            # more fields on a line than in the header: pandas would shift the
            # columns or drop data, and a row could land under the wrong patient
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", usecols=usecols,
                                index_col=False)
    except pd.errors.ParserWarning:
        raise PvmError(
            f"{path.name} has lines with more fields than its header (a stray or trailing comma?); "
            "fix the worklist so every line has one value per column"
        ) from None
    except FileNotFoundError:
        raise PvmError(f"worklist not found: {path}") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PvmError(f"{path.name} is not a readable CSV worklist ({' '.join(str(exc).split())[:120]})") from None
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in ("patient_id", "image") if c not in table.columns]
    if missing:
        raise PvmError(f"{path.name} lacks the column(s) {', '.join(missing)}; a worklist needs patient_id and image")
    if table.empty:
        raise PvmError(f"{path.name} lists no cases")
    unknown = [c for c in table.columns if c not in WORKLIST_COLUMNS]
    if unknown:
        raise PvmError(f"{path.name} has unknown column(s) {', '.join(unknown)}; allowed: {', '.join(WORKLIST_COLUMNS)}")
    base = path.resolve().parent
    cases = []
    for i, rec in enumerate(table.to_dict(orient="records"), start=2):  # line 1 is the header
        image = rec.get("image", "").strip()
        annotation = rec.get("annotation", "").strip()
        cases.append(
            Case(
                line=i,
                patient_id=rec.get("patient_id", "").strip(),
                image=str(base / image) if image else "",
                annotation=str(base / annotation) if annotation else "",
                observer_id=rec.get("observer_id", "").strip(),
                session=rec.get("session", "").strip(),
                level=rec.get("level", "").strip(),
                slice_index=rec.get("slice_index", "").strip(),
            )
        )
    return cases


def measure_case(case, settings=None, done_keys=frozenset()):
    """Measure one case in a worker; never raises.

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
            volume = read_volume(case.image)
            annotation = read_annotation(case.annotation)
            if case.level and annotation.level != case.level:
                raise PvmError(f"worklist level {case.level} differs from the annotation's {annotation.level}")
            if case.slice_index and str(annotation.slice_index) != case.slice_index:
                raise PvmError(
                    f"worklist slice_index {case.slice_index} differs from the annotation's {annotation.slice_index}"
                )
            key = _predicted_key(case, volume, annotation, settings)
            if key is not None and key in done_keys:
                return {"status": "skipped", "reason": "already measured with the same image, annotation and settings"}
            result = measure_annotation(
                volume,
                annotation,
                patient_id=case.patient_id,
                observer_id=case.observer_id or None,
                session=case.session or None,
                **settings,
            )
        if not result.row["observer_id"]:
            raise PvmError("no observer ID (worklist observer_id or the annotation's)")
        return {"status": "measured", "row": result.row}
    except PvmError as exc:
        return {"status": "failed", "reason": " ".join(str(exc).split())}
    except OSError as exc:
        return {"status": "failed", "reason": f"{exc.strerror or exc}: {exc.filename or ''}".strip()}
    except Exception as exc:  # a batch must go on; the reason is recorded
        return {"status": "failed", "reason": f"unexpected {type(exc).__name__}: {exc}"}


def _predicted_key(case, volume, annotation, settings):
    """The resume key this case's row will have, computed before measuring
    (by the same functions that fill the row)."""
    from .measure import classifier_for, row_identity

    params = classifier_for(annotation.classifier, **settings).params
    ident = row_identity(volume, annotation, params, patient_id=case.patient_id,
                         observer_id=case.observer_id or None, session=case.session or None)
    return _key(ident)


def _key(row):
    return tuple(str(row.get(k, "")).strip().lower() if k == "class_balance" else str(row.get(k, "")).strip()
                 for k in RESUME_KEY)


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


def run_batch(worklist, csv_path, *, workers=None, scheduler=None, settings=None, progress=None):
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
        Classifier overrides (``preset``, ``n_trees``, ``seed``, ``class_balance``).
    progress : callable, optional
        ``progress(done, failed, skipped, total, eta_seconds)`` after each case.

    Returns
    -------
    BatchSummary
    """
    from .store import append_rows

    from .measure import classifier_for

    t0 = time.perf_counter()
    cases = read_worklist(worklist)
    csv_path = Path(csv_path)
    # a bad invocation is refused before any case runs (exit 2, nothing written)
    classifier_for({}, **(settings or {}))
    if csv_path.is_dir() or not csv_path.resolve().parent.is_dir():
        raise PvmError(f"cannot write {csv_path}: its folder does not exist or it is a folder itself")
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

    client, cluster = _client(workers, scheduler)
    summary.workers = len(client.scheduler_info().get("workers", {})) if client else 0
    summary.startup_seconds = time.perf_counter() - t0
    started = time.perf_counter()
    finished = 0
    try:
        from distributed import as_completed

        # scatter once as one object (a bare set would be scattered element-wise)
        done_future = client.scatter([done], broadcast=True)[0] if done else done
        futures = {
            client.submit(measure_case, case, settings, done_future, pure=False, key=f"case-{case.line}-{os.getpid()}"): case
            for case in todo
        }
        for future in as_completed(futures):
            case = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # a worker died: record it and go on
                outcome = {"status": "failed", "reason": f"worker error: {type(exc).__name__}: {exc}"}
            if outcome["status"] == "measured":
                try:
                    append_rows(csv_path, [outcome["row"]])
                    summary.measured += 1
                except PvmError as exc:
                    summary.failed += 1
                    problems.append((case, "failed", f"not stored: {exc}"))
            elif outcome["status"] == "skipped":
                summary.skipped += 1
            else:
                summary.failed += 1
                problems.append((case, "failed", outcome["reason"]))
            finished += 1
            if progress:
                elapsed = time.perf_counter() - started
                eta = elapsed / finished * (len(todo) - finished)
                progress(summary.measured + summary.skipped, summary.failed, summary.skipped, summary.cases, eta)
    finally:
        _write_errors(errors_path, problems)
        client.close()
        if cluster is not None:
            cluster.close()
    summary.seconds = time.perf_counter() - t0
    return summary


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
    with dask.config.set({"distributed.worker.daemon": False, "logging.distributed": "error",
                          "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=40,
            env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                 "NUMBA_NUM_THREADS": "1"},
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
        writer.writerow([case.line, _safe(case.patient_id), _safe(case.observer_id), case.image, case.annotation,
                         status, _safe(reason)])
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


def _safe(text):
    """Neutralise spreadsheet formulas in free text (IDs from a worklist)."""
    text = str(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
